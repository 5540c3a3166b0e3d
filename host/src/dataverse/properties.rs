//! What Dataverse says about a message outside its body: Service Bus
//! application properties and webhook `x-ms-dynamics-*` headers.

/// The prefix of the Service Bus properties that carry the message's claims.
const CLAIMS_PREFIX: &str = "http://schemas.microsoft.com/xrm/2011/Claims/";

/// The webhook header Dataverse sets when it trimmed the context to fit.
const WEBHOOK_SIZE_EXCEEDED_HEADER: &str = "x-ms-dynamics-msg-size-exceeded";
/// The marker Dataverse puts in a Service Bus property when it trimmed the context.
const SIZE_EXCEEDED_MARKER: &str = "MessageMaxSizeExceeded";

/// Whether Dataverse dropped `ParentContext`, `InputParameters` and the images to
/// fit the message under the size limit.
///
/// Service Bus listeners match the marker as a substring of any property name or
/// value, because its exact placement has varied; webhooks send a header.
pub fn message_size_exceeded(properties: &[(String, String)]) -> bool {
    properties.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case(WEBHOOK_SIZE_EXCEEDED_HEADER)
            || name.contains(SIZE_EXCEEDED_MARKER)
            || value.contains(SIZE_EXCEEDED_MARKER)
    })
}

/// The claims Dataverse sets as Service Bus application properties, each named
/// `http://schemas.microsoft.com/xrm/2011/Claims/<claim>`. They survive when the
/// body was trimmed (see [`message_size_exceeded`]), so a listener can still tell
/// what happened. A claim that is absent or empty is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Claims {
    /// The organization's host name, e.g. `contoso.crm.dynamics.com`.
    pub organization: Option<String>,
    /// The `systemuser` id the step runs as.
    pub user: Option<String>,
    /// The `systemuser` id that started the operation.
    pub initiating_user: Option<String>,
    pub entity_logical_name: Option<String>,
    /// The SDK message, e.g. `Update`.
    pub request_name: Option<String>,
    pub initiating_user_agent: Option<String>,
}

/// Reads the claims out of Service Bus application properties. Claim names are
/// matched without regard to ASCII case; other properties are ignored, and when a
/// claim repeats the last one wins.
pub fn claims(properties: &[(String, String)]) -> Claims {
    let mut claims = Claims::default();
    for (name, value) in properties {
        let Some(claim) = name
            .get(..CLAIMS_PREFIX.len())
            .filter(|prefix| prefix.eq_ignore_ascii_case(CLAIMS_PREFIX))
            .map(|_| &name[CLAIMS_PREFIX.len()..])
        else {
            continue;
        };
        let slot = match claim.to_ascii_lowercase().as_str() {
            "organization" => &mut claims.organization,
            "user" => &mut claims.user,
            "initiatinguser" => &mut claims.initiating_user,
            "entitylogicalname" => &mut claims.entity_logical_name,
            "requestname" => &mut claims.request_name,
            "initiatinguseragent" => &mut claims.initiating_user_agent,
            _ => continue,
        };
        let value = value.trim();
        *slot = (!value.is_empty()).then(|| value.to_owned());
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_claims_and_ignores_other_properties() {
        let properties = props(&[
            (
                "http://schemas.microsoft.com/xrm/2011/Claims/Organization",
                "contoso.crm.dynamics.com",
            ),
            (
                "http://schemas.microsoft.com/xrm/2011/Claims/User",
                "75c2dd85-e89e-e711-8122-000d3aa2331c",
            ),
            (
                "http://schemas.microsoft.com/xrm/2011/Claims/InitiatingUser",
                "75c2dd85-e89e-e711-8122-000d3aa2331c",
            ),
            (
                "HTTP://schemas.microsoft.com/xrm/2011/Claims/entitylogicalname",
                "contact",
            ),
            ("http://schemas.microsoft.com/xrm/2011/Claims/RequestName", "Update"),
            ("http://schemas.microsoft.com/xrm/2011/Claims/InitiatingUserAgent", " "),
            ("http://schemas.microsoft.com/xrm/2011/Claims/Unknown", "x"),
            ("http://schemas.microsoft.com/xrm/2011/Claims", "x"),
            ("RequestName", "Create"),
            ("é", "multibyte names do not trip the prefix match"),
        ]);
        assert_eq!(
            claims(&properties),
            Claims {
                organization: Some("contoso.crm.dynamics.com".into()),
                user: Some("75c2dd85-e89e-e711-8122-000d3aa2331c".into()),
                initiating_user: Some("75c2dd85-e89e-e711-8122-000d3aa2331c".into()),
                entity_logical_name: Some("contact".into()),
                request_name: Some("Update".into()),
                initiating_user_agent: None,
            }
        );
        assert_eq!(claims(&[]), Claims::default());
    }

    fn props(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn detects_the_marker_in_names_values_and_the_webhook_header() {
        assert!(message_size_exceeded(&props(&[("MessageMaxSizeExceeded", "true")])));
        assert!(message_size_exceeded(&props(&[("x", "MessageMaxSizeExceeded")])));
        assert!(message_size_exceeded(&props(&[(
            "X-MS-Dynamics-Msg-Size-Exceeded",
            ""
        )])));
        assert!(!message_size_exceeded(&props(&[(
            "http://schemas.microsoft.com/xrm/2011/Claims/User",
            "u"
        )])));
    }
}
