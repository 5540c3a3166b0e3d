//! Who may use which entity, as Service Bus decides it with shared access keys (and, as a
//! stand-in for Entra ID, with bearer tokens the broker is told to accept).
//!
//! # What it owns
//! The key the broker checks against ([`SharedAccessKey`]), the [`BearerToken`]s it accepts, the
//! SASL mechanisms it accepts, the `$cbs` `put-token` answer, and each connection's [`Grants`]:
//! the entity paths its valid tokens cover, until they expire.
//!
//! # How a client is let in
//! - SASL `ANONYMOUS` or `MSSBCBS` (or no SASL at all) opens a connection that may use nothing
//!   but `$cbs` and `$coordinator` until it puts tokens, as Service Bus has it.
//! - `$cbs` `put-token` with a SAS token (`SharedAccessSignature sr=…&sig=…&se=…&skn=…`) whose key
//!   name is the configured one, whose HMAC-SHA256 signature is made with the configured key, and
//!   whose expiry is in the future grants the entity path of its `sr` (the host part is not
//!   checked: a local broker has no one namespace name) and every path below it; an `sr` with no
//!   path grants the whole namespace. A refused token is answered `401` with the reason.
//! - `$cbs` `put-token` with `type` = `jwt` and a token that is not a SAS token is an Entra ID
//!   access token. Service Bus checks its signature against Entra ID's keys and its roles; this
//!   broker cannot, and instead accepts exactly the tokens of [`BrokerConfig::bearer_tokens`]
//!   (compared in constant time), so that clients using a credential can be tested. Such a token
//!   grants the entity path of the request's `name` (the audience) and every path below it,
//!   until the request's `expiration` (a timestamp, as the SDKs send it) or, without one, for an
//!   hour, Entra ID's usual token lifetime. Any other jwt is refused `401`, as a bad SAS token is.
//! - SASL `PLAIN` with the key name as user name and the key as password (as Service Bus allows
//!   for JMS clients) grants the whole namespace; other credentials fail SASL.
//!
//! A link to an entity (a queue, a topic, a subscription (`<topic>/Subscriptions/<name>`, covered
//! by a token for its topic), their dead-letter queues and `$management` nodes, a send-via link's
//! via and destination entities) attaches only when a grant covers the entity at that
//! moment; otherwise it is detached with `amqp:unauthorized-access`. A key is all-or-nothing:
//! there are no Send / Listen / Manage claims.

use std::collections::HashMap;
use std::fmt;

use fe2o3_amqp_types::definitions::{AmqpError, Error as AmqpErrorInfo, ErrorCondition};
use fe2o3_amqp_types::primitives::{OrderedMap, SimpleValue, Value};
use sagahost_transport::sas;
use subtle::ConstantTimeEq;

use super::message::{self, Incoming};
use super::{BrokerConfig, entity_path};

/// The SASL mechanisms offered: the two Service Bus clients use before `$cbs`, and `PLAIN`.
pub const SASL_MECHANISMS: [&str; 3] = ["MSSBCBS", "ANONYMOUS", "PLAIN"];

/// The one shared access key (a namespace's authorization rule) the broker accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedAccessKey {
    /// The rule's name: a token's `skn`, SASL PLAIN's user name.
    pub name: String,
    /// The key: what tokens are signed with, SASL PLAIN's password.
    pub key: String,
}

impl Default for SharedAccessKey {
    /// The Service Bus emulator's well-known key, so its connection string works unchanged.
    fn default() -> Self {
        Self {
            name: Self::EMULATOR_NAME.to_owned(),
            key: Self::EMULATOR_KEY.to_owned(),
        }
    }
}

impl fmt::Debug for SharedAccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets.
        write!(f, "SharedAccessKey {{ name: {:?}, key: <redacted> }}", self.name)
    }
}

impl SharedAccessKey {
    /// The key name the Service Bus emulator's connection string documents.
    pub const EMULATOR_NAME: &str = "RootManageSharedAccessKey";
    /// The key the Service Bus emulator's connection string documents (literally `SAS_KEY_VALUE`):
    /// public, so it keeps out only clients that were not told where to connect.
    pub const EMULATOR_KEY: &str = "SAS_KEY_VALUE";

    /// Whether a SASL PLAIN initial response (`[authzid] NUL user NUL password`) names this key.
    pub fn matches_plain(&self, initial_response: &[u8]) -> bool {
        let mut parts = initial_response.split(|byte| *byte == 0);
        let (Some(_authzid), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let user_matches = user == self.name.as_bytes();
        let password_matches: bool = password.ct_eq(self.key.as_bytes()).into();
        user_matches & password_matches
    }
}

/// A token the broker accepts as an Entra ID access token: as a `jwt` on `$cbs` and as
/// `Authorization: Bearer` on the entity endpoint. A stand-in for Entra ID's validation, which
/// cannot run without Entra ID, for testing clients that use a credential. Prints `[redacted]`.
#[derive(Clone)]
pub struct BearerToken(String);

impl BearerToken {
    /// Accepts `token` exactly as a client will present it.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// Whether `presented` is this token; in constant time for tokens of the same length.
    pub fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

/// Whether `presented` is one of `accepted`.
pub(crate) fn accepts_bearer(accepted: &[BearerToken], presented: &str) -> bool {
    // Every token is compared, so the time taken does not tell which one nearly matched.
    accepted
        .iter()
        .fold(false, |found, token| token.matches(presented) | found)
}

/// How long a jwt grant lasts when the put-token carries no `expiration`.
const JWT_DEFAULT_LIFETIME_SECS: u64 = 3600;

/// The entities one connection may use.
#[derive(Debug, Default)]
pub struct Grants {
    /// Granted by SASL PLAIN with the key: everything, for the connection's life.
    namespace: bool,
    /// Lower-cased entity path a token covers (empty: the namespace) → its expiry, Unix seconds.
    tokens: HashMap<String, u64>,
}

/// Whether a grant for `granted` covers `entity` (both lower-cased, without surrounding `/`).
fn covers(granted: &str, entity: &str) -> bool {
    granted.is_empty() || entity == granted || entity.strip_prefix(granted).is_some_and(|below| below.starts_with('/'))
}

/// Whether a token signed for `resource` (its `sr`) covers `entity`, by the rule `$cbs` grants
/// follow: the management endpoint checks each request's token this way. A query in `resource`
/// is not part of the entity: the JavaScript SDK signs the whole request URL, `?api-version=…`
/// included.
pub(crate) fn token_covers(resource: &str, entity: &str) -> bool {
    let resource = resource.split_once('?').map_or(resource, |(path, _)| path);
    covers(
        &entity_path(resource).to_lowercase(),
        &entity.trim_matches('/').to_lowercase(),
    )
}

impl Grants {
    /// Everything, as SASL PLAIN with the key gives.
    pub fn namespace() -> Self {
        Self {
            namespace: true,
            tokens: HashMap::new(),
        }
    }

    /// Whether the connection may attach to `entity` (a path like `orders/$DeadLetterQueue`) at
    /// Unix time `now`. Entity names are case-insensitive, as in Service Bus.
    pub fn allows(&self, entity: &str, now: u64) -> bool {
        if self.namespace {
            return true;
        }
        let entity = entity.trim_matches('/').to_lowercase();
        self.tokens
            .iter()
            .any(|(granted, expiry)| *expiry > now && covers(granted, &entity))
    }

    /// Records a verified token; a newer token for the same path replaces the older one.
    fn add(&mut self, resource: &str, expiry: u64, now: u64) {
        self.tokens.retain(|_, expiry| *expiry > now);
        self.tokens.insert(entity_path(resource).to_lowercase(), expiry);
    }
}

/// The error an attach to an entity gets when no grant covers it.
pub fn unauthorized(entity: &str) -> AmqpErrorInfo {
    AmqpErrorInfo {
        condition: ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess),
        description: Some(format!(
            "Unauthorized access to `{entity}`: put a valid SAS token whose `sr` covers it (or an accepted jwt \
             for it) on `$cbs` first"
        )),
        info: None,
    }
}

fn text(properties: &OrderedMap<String, SimpleValue>, name: &str) -> Option<String> {
    match properties.get(name)? {
        SimpleValue::String(text) => Some(text.clone()),
        SimpleValue::Symbol(symbol) => Some(symbol.as_str().to_owned()),
        _ => None,
    }
}

/// Checks one `put-token` request; returns its status code and description.
fn check(config: &BrokerConfig, grants: &mut Grants, request: &Incoming, now: u64) -> (i32, String) {
    let empty = OrderedMap::new();
    let properties = request
        .application_properties
        .as_ref()
        .map_or(&empty, |properties| &properties.0);
    let operation = text(properties, "operation").unwrap_or_default();
    if operation != "put-token" {
        return (400, format!("operation `{operation}` is not supported on `$cbs`"));
    }
    let Some(Value::String(token)) = &request.value else {
        return (400, "the put-token body must be the token as a string".to_owned());
    };
    // The `type` alone does not decide: the Python SDK puts SAS tokens as `jwt`, and Service Bus
    // goes by the token itself.
    let kind = text(properties, "type").unwrap_or_default();
    if kind == "jwt" && !token.starts_with("SharedAccessSignature ") {
        return check_bearer(config, grants, properties, token, now);
    }
    match sas::verify(token, &config.key.name, &config.key.key, now) {
        Ok(verified) => {
            grants.add(&verified.resource, verified.expiry_unix_secs, now);
            (202, "Accepted".to_owned())
        }
        Err(error) => (401, format!("Unauthorized: {error}")),
    }
}

/// Checks a `jwt` put-token against [`BrokerConfig::bearer_tokens`] (see the module doc).
fn check_bearer(
    config: &BrokerConfig,
    grants: &mut Grants,
    properties: &OrderedMap<String, SimpleValue>,
    token: &str,
    now: u64,
) -> (i32, String) {
    if !accepts_bearer(&config.bearer_tokens, token) {
        return (
            401,
            "Unauthorized: the jwt is not one this broker accepts; it cannot validate Entra ID tokens and \
             accepts only those configured as bearer tokens"
                .to_owned(),
        );
    }
    let Some(audience) = text(properties, "name").filter(|name| !name.is_empty()) else {
        return (
            400,
            "a jwt put-token needs `name`, the audience (`sb://<namespace>/<entity>`)".to_owned(),
        );
    };
    let expiry = match properties.get("expiration") {
        // Rounded up to the next whole second, the unit grants are kept in, so a token is never
        // cut short.
        Some(SimpleValue::Timestamp(at)) => u64::try_from(at.milliseconds().div_euclid(1000) + 1).unwrap_or_default(),
        None => now + JWT_DEFAULT_LIFETIME_SECS,
        Some(_) => return (400, "the put-token's `expiration` must be a timestamp".to_owned()),
    };
    if expiry <= now {
        return (
            401,
            format!("Unauthorized: the token expired at {expiry} (Unix seconds)"),
        );
    }
    grants.add(&audience, expiry, now);
    (202, "Accepted".to_owned())
}

/// Answers a `$cbs` request, recording what a valid token grants; returns the encoded reply.
pub fn put_token(config: &BrokerConfig, grants: &mut Grants, request: &Incoming, now: u64) -> anyhow::Result<Vec<u8>> {
    let (status, description) = check(config, grants, request, now);
    if status != 202 {
        tracing::debug!(status, %description, "broker: refused a $cbs token");
    }
    let mut properties = OrderedMap::new();
    // Clients read either spelling.
    for (code, text) in [
        ("status-code", "status-description"),
        ("statusCode", "statusDescription"),
    ] {
        properties.insert(code.to_owned(), SimpleValue::Int(status));
        properties.insert(text.to_owned(), SimpleValue::String(description.clone()));
    }
    let correlation_id = request
        .properties
        .as_ref()
        .and_then(|properties| properties.message_id.clone());
    message::encode_reply(correlation_id, properties, Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_plain_needs_the_key_name_and_the_key() {
        let key = SharedAccessKey::default();
        assert!(key.matches_plain(b"\0RootManageSharedAccessKey\0SAS_KEY_VALUE"));
        assert!(key.matches_plain(b"someone\0RootManageSharedAccessKey\0SAS_KEY_VALUE"));
        assert!(!key.matches_plain(b"\0RootManageSharedAccessKey\0SAS_KEY_VALUE2"));
        assert!(!key.matches_plain(b"\0Other\0SAS_KEY_VALUE"));
        assert!(!key.matches_plain(b"\0RootManageSharedAccessKey"));
        assert!(!key.matches_plain(b"\0RootManageSharedAccessKey\0SAS_KEY_VALUE\0x"));
    }

    #[test]
    fn a_grant_covers_its_path_and_below_until_it_expires() {
        let mut grants = Grants::default();
        grants.add("sb://127.0.0.1:5672/Orders", 100, 0);
        assert!(grants.allows("orders", 99));
        assert!(grants.allows("orders/$DeadLetterQueue", 99));
        // A topic's token covers its subscriptions, their dead-letter queues and management nodes.
        assert!(grants.allows("orders/Subscriptions/mdm", 99));
        assert!(grants.allows("orders/Subscriptions/mdm/$DeadLetterQueue/$management", 99));
        assert!(!grants.allows("orders", 100), "expired");
        assert!(!grants.allows("orders2", 99), "a name that only starts alike");
        assert!(!grants.allows("payments", 99));
        grants.add("sb://localhost/", 200, 0);
        assert!(grants.allows("payments", 199), "a namespace token covers every entity");
        assert!(Grants::namespace().allows("anything", u64::MAX));
    }
}
