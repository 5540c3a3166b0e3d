//! What every format needs to know about the `Microsoft.Xrm.Sdk` data contracts:
//! their namespaces, the declared types of `RemoteExecutionContext` members, and
//! how errors name the member they are about.
//!
//! JSON and XML differ in what they say about a member's type: JSON has its own
//! kinds (number, string, array…), XML has `i:type` only where the declared type is
//! `object`. Both rely on the declared types here for the rest, so the knowledge
//! of which members are bags, images or nested contexts lives in one place.

use super::DecodeError;
use super::model::CompactString;

/// The Xrm data-contract namespace (`Entity`, `EntityReference`, the context itself).
pub(super) const CONTRACTS_NS: &str = "http://schemas.microsoft.com/xrm/2011/Contracts";
/// The namespace of `KeyValuePair` members (`key`, `value`).
pub(super) const GENERIC_NS: &str = "http://schemas.datacontract.org/2004/07/System.Collections.Generic";
/// XML Schema: the primitive types (`string`, `int`, `dateTime`…).
pub(super) const XSD_NS: &str = "http://www.w3.org/2001/XMLSchema";
/// XML Schema Instance: `i:type` and `i:nil`.
pub(super) const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// The data-contract serialization namespace: `guid`, `char`, `duration`.
pub(super) const SERIALIZATION_NS: &str = "http://schemas.microsoft.com/2003/10/Serialization/";
/// Arrays of primitives and of `object` (`ArrayOfstring`, `ArrayOfanyType`).
pub(super) const ARRAYS_NS: &str = "http://schemas.microsoft.com/2003/10/Serialization/Arrays";

/// The id Dataverse sends for an entity that has none yet.
pub(super) const EMPTY_GUID: &str = "00000000-0000-0000-0000-000000000000";

/// The declared type of a `RemoteExecutionContext` member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Member {
    /// `ParameterCollection`: string keys, `object` values.
    Bag,
    /// `EntityImageCollection`: string keys, `Entity` values.
    Images,
    /// `EntityReference`.
    EntityReference,
    /// `RemoteExecutionContext`.
    Context,
    Guid,
    Int,
    Bool,
    DateTime,
    String,
    /// A member this list does not know: its value says what it is.
    Unknown,
}

/// A GUID's text in lowercase, in place.
pub(super) fn lowercase(mut id: CompactString) -> CompactString {
    id.make_ascii_lowercase();
    id
}

/// The declared type of a context member, by data-contract member name.
pub(super) fn context_member(name: &str) -> Member {
    match name {
        "InputParameters" | "OutputParameters" | "SharedVariables" => Member::Bag,
        "PreEntityImages" | "PostEntityImages" => Member::Images,
        "OwningExtension" => Member::EntityReference,
        "ParentContext" => Member::Context,
        "BusinessUnitId"
        | "CorrelationId"
        | "InitiatingUserAzureActiveDirectoryObjectId"
        | "InitiatingUserId"
        | "OperationId"
        | "OrganizationId"
        | "PrimaryEntityId"
        | "RequestId"
        | "UserAzureActiveDirectoryObjectId"
        | "UserId"
        | "InitiatingUserApplicationId"
        | "AuthenticatedUserId"
        | "PortalsContactId" => Member::Guid,
        "Depth" | "IsolationMode" | "Mode" | "Stage" => Member::Int,
        "IsExecutingOffline"
        | "IsInTransaction"
        | "IsOfflinePlayback"
        | "IsPortalsClientCall"
        | "IsApplicationUser" => Member::Bool,
        "OperationCreatedOn" => Member::DateTime,
        "MessageName" | "OrganizationName" | "PrimaryEntityName" | "SecondaryEntityName" | "InitiatingUserAgent" => {
            Member::String
        }
        _ => Member::Unknown,
    }
}

/// Prefixes the member path of a shape or string error with `segment` as the error
/// travels up, so the path costs nothing unless decoding fails.
pub(super) fn at(segment: &str) -> impl FnOnce(DecodeError) -> DecodeError + '_ {
    move |err| match err {
        DecodeError::Shape { path, expected, found } => DecodeError::Shape {
            path: join(segment, &path),
            expected,
            found,
        },
        DecodeError::StringTooLong {
            format,
            path,
            size,
            limit,
        } => DecodeError::StringTooLong {
            format,
            path: join(segment, &path),
            size,
            limit,
        },
        other => other,
    }
}

/// A member that does not have the shape its contract gives it; [`at`] adds the path.
pub(super) fn shape(expected: &'static str, found: &'static str) -> DecodeError {
    DecodeError::Shape {
        path: String::new(),
        expected,
        found,
    }
}

/// [`at`] for the `i`th item of a list, its `[i]` written only if decoding fails.
pub(super) fn at_index(i: usize) -> impl FnOnce(DecodeError) -> DecodeError {
    move |err| at(&format!("[{i}]"))(err)
}

fn join(segment: &str, rest: &str) -> String {
    if rest.is_empty() || rest.starts_with('[') {
        format!("{segment}{rest}")
    } else {
        format!("{segment}.{rest}")
    }
}
