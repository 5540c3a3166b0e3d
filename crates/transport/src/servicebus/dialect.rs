//! The Service Bus dialect of AMQP 1.0: the names and conversions that this crate's client and
//! `sagahost-broker` both need, defined once so the two sides cannot drift apart.
//!
//! Service Bus layers its own conventions over plain AMQP: `x-opt-*` message annotations for
//! broker-assigned facts (sequence number, enqueued time, lock expiry), application properties
//! on dead letters, error conditions for dead-lettering and lost locks, and lock tokens that
//! are GUIDs in .NET byte order.

use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::{MessageAnnotations, MessageId};
use fe2o3_amqp::types::primitives::{SimpleValue, Value};
use uuid::Uuid;

/// The broker-assigned sequence number of a message (annotation).
pub const SEQUENCE_NUMBER: &str = "x-opt-sequence-number";
/// When the broker accepted a message (annotation).
pub const ENQUEUED_TIME: &str = "x-opt-enqueued-time";
/// Until when the receiver's lock on a message holds (annotation).
pub const LOCKED_UNTIL: &str = "x-opt-locked-until";
/// The lock token, for receivers that cannot read the delivery tag (annotation).
pub const LOCK_TOKEN: &str = "x-opt-lock-token";
/// When a scheduled message becomes visible (annotation, set by the sender).
pub const SCHEDULED_ENQUEUE_TIME: &str = "x-opt-scheduled-enqueue-time";
/// The queue a dead letter came from (annotation).
pub const DEAD_LETTER_SOURCE: &str = "x-opt-deadletter-source";

/// Why a message was dead-lettered: an application property on the dead letter, and an info
/// key of the `rejected` outcome that dead-letters it.
pub const DEAD_LETTER_REASON: &str = "DeadLetterReason";
/// The longer explanation beside [`DEAD_LETTER_REASON`].
pub const DEAD_LETTER_DESCRIPTION: &str = "DeadLetterErrorDescription";

/// Messages one transaction may send and settle, together: Service Bus's limit per transaction.
/// A step settles its input and sends what it forwards in one.
pub const MAX_TRANSACTION_MESSAGES: usize = 100;

/// The suffix that names an entity's dead-letter queue: `orders/$DeadLetterQueue`.
pub const DEAD_LETTER_QUEUE_SUFFIX: &str = "/$DeadLetterQueue";

/// The path of `entity`'s dead-letter queue.
pub fn dead_letter_queue(entity: &str) -> String {
    format!("{entity}{DEAD_LETTER_QUEUE_SUFFIX}")
}

/// What separates a topic from a subscription's name in an entity path.
pub const SUBSCRIPTIONS_SEGMENT: &str = "/Subscriptions/";

/// The entity path of a subscription: `<topic>/Subscriptions/<subscription>`, the name to receive
/// from (and, with `/$DeadLetterQueue`, its dead-letter queue).
pub fn subscription_path(topic: &str, subscription: &str) -> String {
    format!("{topic}{SUBSCRIPTIONS_SEGMENT}{subscription}")
}

/// What separates a subscription's entity path from a rule's name in the entity-management API.
pub const RULES_SEGMENT: &str = "/Rules/";

/// The path of a subscription's rule in the entity-management API:
/// `<topic>/Subscriptions/<subscription>/Rules/<rule>`.
pub fn rule_path(topic: &str, subscription: &str, rule: &str) -> String {
    format!("{}{RULES_SEGMENT}{rule}", subscription_path(topic, subscription))
}

/// Splits a subscription's entity path into its topic and subscription names.
pub fn parse_subscription_path(path: &str) -> Option<(&str, &str)> {
    let (topic, subscription) = path.split_once(SUBSCRIPTIONS_SEGMENT)?;
    (!topic.is_empty() && !subscription.is_empty() && !subscription.contains('/')).then_some((topic, subscription))
}

/// The entity a transaction sends through (send-via) when it settles a message received from
/// `path`: the queue itself, a queue for its dead-letter queue, and the topic for a subscription
/// or its dead-letter queue (`contacts/Subscriptions/mdm` sends via `contacts`), since Service
/// Bus takes no sends on dead-letter queues or subscriptions and wants the topic as the transfer
/// entity for a subscription.
pub fn transfer_entity(path: &str) -> &str {
    let entity = path.strip_suffix(DEAD_LETTER_QUEUE_SUFFIX).unwrap_or(path);
    parse_subscription_path(entity).map_or(entity, |(topic, _)| topic)
}

/// The error condition of a `rejected` outcome that dead-letters a message.
pub const DEAD_LETTER_CONDITION: &str = "com.microsoft:dead-letter";
/// The error condition for a settlement or renewal whose message lock is gone.
pub const LOCK_LOST_CONDITION: &str = "com.microsoft:message-lock-lost";
/// The error condition for a session operation whose session lock is gone.
pub const SESSION_LOCK_LOST_CONDITION: &str = "com.microsoft:session-lock-lost";
/// The error condition of a session receiver's detach when the session it named is locked by
/// another receiver.
pub const SESSION_CANNOT_BE_LOCKED_CONDITION: &str = "com.microsoft:session-cannot-be-locked";
/// The error condition of an operation that ran out of time on the service, such as accepting the
/// next available session when none became available.
pub const TIMEOUT_CONDITION: &str = "com.microsoft:timeout";

/// The source filter that makes a receiver a session receiver: its value is the session id asked
/// for, or null for the next available session; the attach that answers it names the session.
pub const SESSION_FILTER: &str = "com.microsoft:session-filter";
/// The attach property with which the service answers a session receiver: when the session's lock
/// ends, in .NET ticks (100 ns since 0001-01-01) as a long.
pub const SESSION_LOCKED_UNTIL: &str = "com.microsoft:locked-until-utc";
/// The attach property with which a client bounds how long the service may take, in milliseconds
/// (a uint); the SDKs send it when accepting the next available session.
pub const OPERATION_TIMEOUT: &str = "com.microsoft:timeout";
/// .NET ticks at the Unix epoch.
const TICKS_AT_UNIX_EPOCH: i64 = 621_355_968_000_000_000;

/// `time` in .NET ticks, as Service Bus writes times into attach properties.
pub fn dotnet_ticks(time: std::time::SystemTime) -> i64 {
    let since = time.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let ticks = i64::try_from(since.as_nanos() / 100).unwrap_or(i64::MAX - TICKS_AT_UNIX_EPOCH);
    TICKS_AT_UNIX_EPOCH + ticks
}

/// The time that `ticks` (.NET ticks, as in [`SESSION_LOCKED_UNTIL`]) names; `None` before the
/// Unix epoch, which no lock expiry is.
pub fn from_dotnet_ticks(ticks: i64) -> Option<std::time::SystemTime> {
    let since = u64::try_from(ticks.checked_sub(TICKS_AT_UNIX_EPOCH)?).ok()?;
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(since.saturating_mul(100)))
}

/// The `$management` operation that renews a session's lock: body `{session-id}`, answer
/// `{expiration}` (a timestamp).
pub const RENEW_SESSION_LOCK_OPERATION: &str = "com.microsoft:renew-session-lock";
/// The `$management` operation that reads a session's state: body `{session-id}`, answer
/// `{session-state}` (binary, or null when none is set).
pub const GET_SESSION_STATE_OPERATION: &str = "com.microsoft:get-session-state";
/// The `$management` operation that replaces a session's state: body `{session-id,
/// session-state}` (binary, or null to clear it).
pub const SET_SESSION_STATE_OPERATION: &str = "com.microsoft:set-session-state";
/// The key of the session id in the body of a session operation.
pub const SESSION_ID_KEY: &str = "session-id";
/// The key of the session state in a session-state request or answer.
pub const SESSION_STATE_KEY: &str = "session-state";
/// The key of the new lock expiry in a renew-session-lock answer.
pub const EXPIRATION_KEY: &str = "expiration";

/// The attach property naming a send-via sender's final destination (transactions that span
/// entities send through the queue being settled).
pub const TRANSFER_DESTINATION: &str = "com.microsoft:transfer-destination-address";

/// The value of the message annotation `name`, if the message has it.
pub fn annotation<'a>(annotations: Option<&'a MessageAnnotations>, name: &str) -> Option<&'a Value> {
    annotations?
        .0
        .iter()
        .find(|(key, _)| matches!(key, OwnedKey::Symbol(symbol) if symbol.0 == name))
        .map(|(_, value)| value)
}

/// A message id as text, the way Service Bus SDKs show it: strings as they are, numbers in
/// decimal, UUIDs hyphenated, binary ids in lower-case hex.
pub fn message_id_text(id: &MessageId) -> String {
    match id {
        MessageId::String(text) => text.clone(),
        MessageId::Ulong(number) => number.to_string(),
        MessageId::Uuid(uuid) => Uuid::from_bytes(*uuid.as_inner()).to_string(),
        MessageId::Binary(bytes) => hex::encode(bytes.as_slice()),
    }
}

/// An application property's value as text, for hosts that keep properties as strings:
/// numbers in decimal, timestamps in Unix milliseconds, UUIDs hyphenated and binary in
/// lower-case hex (as [`message_id_text`] does).
pub fn property_text(value: &SimpleValue) -> String {
    match value {
        SimpleValue::String(text) => text.clone(),
        SimpleValue::Symbol(symbol) => symbol.0.clone(),
        SimpleValue::Bool(b) => b.to_string(),
        SimpleValue::Ubyte(n) => n.to_string(),
        SimpleValue::Ushort(n) => n.to_string(),
        SimpleValue::Uint(n) => n.to_string(),
        SimpleValue::Ulong(n) => n.to_string(),
        SimpleValue::Byte(n) => n.to_string(),
        SimpleValue::Short(n) => n.to_string(),
        SimpleValue::Int(n) => n.to_string(),
        SimpleValue::Long(n) => n.to_string(),
        SimpleValue::Float(n) => n.to_string(),
        SimpleValue::Double(n) => n.to_string(),
        SimpleValue::Char(c) => c.to_string(),
        SimpleValue::Timestamp(t) => t.milliseconds().to_string(),
        SimpleValue::Uuid(uuid) => Uuid::from_bytes(*uuid.as_inner()).to_string(),
        SimpleValue::Binary(bytes) => hex::encode(bytes.as_slice()),
        other => format!("{other:?}"),
    }
}

/// Any AMQP value that can be an application property's, as [`property_text`] writes it;
/// `None` for null and for values no property can hold (lists, maps, described values). The
/// SDKs' properties-to-modify arrive this way, as values of a map.
pub fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        other => SimpleValue::try_from(other.clone())
            .ok()
            .map(|simple| property_text(&simple)),
    }
}

/// The lock token a delivery tag carries: a 16-byte GUID laid out as .NET's
/// `Guid.ToByteArray` does (first three fields little-endian), as the Azure SDKs read it
/// (`uuid.UUID(bytes_le=tag)`).
pub fn lock_token_from_tag(tag: &[u8]) -> Option<Uuid> {
    let bytes: [u8; 16] = tag.try_into().ok()?;
    Some(Uuid::from_bytes_le(bytes))
}

/// The delivery tag for a lock token: the inverse of [`lock_token_from_tag`].
pub fn lock_token_tag(token: &str) -> Option<[u8; 16]> {
    Some(Uuid::parse_str(token).ok()?.to_bytes_le())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_tokens_travel_as_guids_in_dotnet_byte_order() {
        let token = "01020304-0506-0708-090a-0b0c0d0e0f10";
        let tag = lock_token_tag(token).unwrap();
        assert_eq!(tag, [4, 3, 2, 1, 6, 5, 8, 7, 9, 10, 11, 12, 13, 14, 15, 16]);
        assert_eq!(lock_token_from_tag(&tag).unwrap().to_string(), token);
        assert_eq!(lock_token_from_tag(&tag[..8]), None);
        assert_eq!(lock_token_tag("not a guid"), None);
    }

    #[test]
    fn message_ids_read_as_the_sdks_show_them() {
        use fe2o3_amqp::types::primitives::{Binary, Uuid as AmqpUuid};
        let uuid = Uuid::parse_str("6f9619ff-8b86-d011-b42d-00cf4fc964ff").unwrap();
        assert_eq!(
            message_id_text(&MessageId::Uuid(AmqpUuid::from(*uuid.as_bytes()))),
            uuid.to_string()
        );
        assert_eq!(message_id_text(&MessageId::Ulong(42)), "42");
        assert_eq!(
            message_id_text(&MessageId::Binary(Binary::from(vec![0xab, 0x01]))),
            "ab01"
        );
        assert_eq!(message_id_text(&MessageId::String("order-7".into())), "order-7");
    }

    #[test]
    fn property_values_read_as_text_and_other_values_do_not() {
        assert_eq!(value_text(&Value::String("x".into())).as_deref(), Some("x"));
        assert_eq!(value_text(&Value::Int(7)).as_deref(), Some("7"));
        assert_eq!(value_text(&Value::Bool(true)).as_deref(), Some("true"));
        assert_eq!(value_text(&Value::Null), None);
        assert_eq!(value_text(&Value::List(vec![Value::Int(1)])), None);
    }

    #[test]
    fn lock_expiries_travel_as_dotnet_ticks() {
        use std::time::{Duration, UNIX_EPOCH};
        // 2024-01-01T00:00:00Z, as .NET's `DateTimeOffset.UtcTicks` writes it.
        let new_year = UNIX_EPOCH + Duration::from_secs(1_704_067_200);
        assert_eq!(dotnet_ticks(new_year), 638_396_640_000_000_000);
        let precise = new_year + Duration::from_millis(123);
        assert_eq!(from_dotnet_ticks(dotnet_ticks(precise)), Some(precise));
        assert_eq!(from_dotnet_ticks(0), None, "before the Unix epoch");
    }

    #[test]
    fn a_transaction_sends_through_the_queue_or_the_topic() {
        assert_eq!(transfer_entity("orders"), "orders");
        assert_eq!(transfer_entity("orders/$DeadLetterQueue"), "orders");
        assert_eq!(transfer_entity("contacts/Subscriptions/mdm"), "contacts");
        assert_eq!(
            transfer_entity("contacts/Subscriptions/mdm/$DeadLetterQueue"),
            "contacts"
        );
    }
}
