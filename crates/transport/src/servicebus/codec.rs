//! Between the transport's messages and AMQP messages in the Service Bus dialect.
//!
//! Received: the lock token is the delivery tag (a GUID in .NET byte order), sequence number,
//! enqueued time and locked-until are the `x-opt-*` message annotations, and the header's
//! `delivery-count` counts earlier deliveries. Both ways the session id is the properties'
//! `group-id`. Sent: message id, correlation id and content type in the properties, string application properties, the time to live in the header and the schedule
//! in the `x-opt-scheduled-enqueue-time` annotation.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Body, Data, Header, Message, MessageAnnotations, MessageId, Properties,
};
use fe2o3_amqp::types::primitives::{Binary, OrderedMap, SimpleValue, Symbol, Timestamp, Value};

use super::dialect::{
    ENQUEUED_TIME, LOCK_TOKEN, LOCKED_UNTIL, SCHEDULED_ENQUEUE_TIME, SEQUENCE_NUMBER, annotation, lock_token_from_tag,
    message_id_text, property_text,
};
use crate::{OutgoingMessage, ReceivedMessage, StoredMessage};

pub fn to_unix_millis(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

pub fn from_unix_millis(millis: i64) -> SystemTime {
    if millis >= 0 {
        UNIX_EPOCH + Duration::from_millis(millis.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_millis(millis.unsigned_abs())
    }
}

fn as_time(value: &Value) -> Option<SystemTime> {
    match value {
        Value::Timestamp(t) => Some(from_unix_millis(t.milliseconds())),
        Value::Long(ms) => Some(from_unix_millis(*ms)),
        _ => None,
    }
}

fn as_long(value: &Value) -> Option<i64> {
    match value {
        Value::Long(n) => Some(*n),
        Value::Int(n) => Some(i64::from(*n)),
        Value::Ulong(n) => i64::try_from(*n).ok(),
        Value::Uint(n) => Some(i64::from(*n)),
        _ => None,
    }
}

/// A received AMQP message as the transport's [`ReceivedMessage`]; `tag` is the delivery tag.
pub fn received(queue: &str, tag: &[u8], message: &Message<Body<Value>>) -> anyhow::Result<ReceivedMessage> {
    let annotations = message.message_annotations.as_ref();
    let lock_token = match lock_token_from_tag(tag) {
        Some(token) => token,
        None => match annotation(annotations, LOCK_TOKEN) {
            Some(Value::Uuid(u)) => uuid::Uuid::from_bytes(*u.as_inner()),
            _ => bail!("delivery tag is {} bytes, not a 16-byte lock token", tag.len()),
        },
    };
    let stored = stored(queue, message)?;
    let locked_until = annotation(annotations, LOCKED_UNTIL)
        .and_then(as_time)
        .with_context(|| format!("message has no `{LOCKED_UNTIL}` annotation"))?;
    Ok(ReceivedMessage {
        queue: stored.queue,
        message_id: stored.message_id,
        correlation_id: stored.correlation_id,
        content_type: stored.content_type,
        properties: stored.properties,
        body: stored.body,
        session_id: stored.session_id,
        sequence_number: stored.sequence_number,
        // On a delivery the header counts the deliveries before this one.
        delivery_count: stored.delivery_count.saturating_add(1),
        enqueued_time: stored.enqueued_time,
        lock_token: lock_token.to_string(),
        locked_until,
    })
}

/// A peeked AMQP message (from `com.microsoft:peek-message`, or the common part of a received
/// one) as the transport's [`StoredMessage`].
pub fn stored(queue: &str, message: &Message<Body<Value>>) -> anyhow::Result<StoredMessage> {
    let annotations = message.message_annotations.as_ref();
    let sequence_number = annotation(annotations, SEQUENCE_NUMBER)
        .and_then(as_long)
        .with_context(|| format!("message has no `{SEQUENCE_NUMBER}` annotation"))?;
    let enqueued_time = annotation(annotations, ENQUEUED_TIME)
        .and_then(as_time)
        .with_context(|| format!("message has no `{ENQUEUED_TIME}` annotation"))?;
    let properties = message.properties.as_ref();
    let body = match &message.body {
        Body::Data(batch) => batch.iter().flat_map(|d| d.0.as_slice().iter().copied()).collect(),
        Body::Value(v) => match &v.0 {
            Value::Binary(b) => b.to_vec(),
            Value::String(s) => s.clone().into_bytes(),
            Value::Null => Vec::new(),
            other => bail!("message body is an AMQP value of an unsupported type ({other:?}); expected binary data"),
        },
        Body::Empty => Vec::new(),
        Body::Sequence(_) => bail!("message body is an AMQP sequence; expected binary data"),
    };
    Ok(StoredMessage {
        queue: queue.to_string(),
        sequence_number,
        message_id: properties
            .and_then(|p| p.message_id.as_ref())
            .map(message_id_text)
            .unwrap_or_default(),
        correlation_id: properties.and_then(|p| p.correlation_id.as_ref()).map(message_id_text),
        content_type: properties.and_then(|p| p.content_type.as_ref()).map(|s| s.0.clone()),
        properties: message
            .application_properties
            .as_ref()
            .map(|a| a.0.iter().map(|(k, v)| (k.clone(), property_text(v))).collect())
            .unwrap_or_default(),
        body,
        session_id: properties.and_then(|p| p.group_id.clone()),
        delivery_count: message.header.as_ref().map_or(0, |h| h.delivery_count),
        enqueued_time,
        scheduled_enqueue_time: annotation(annotations, SCHEDULED_ENQUEUE_TIME).and_then(as_time),
        expires_at: properties
            .and_then(|p| p.absolute_expiry_time.as_ref())
            .map(|t| from_unix_millis(t.milliseconds())),
        locked_until: annotation(annotations, LOCKED_UNTIL).and_then(as_time),
    })
}

/// The AMQP message for `message`; an empty message id is replaced by a fresh GUID.
pub fn outgoing(message: &OutgoingMessage) -> Message<Data> {
    let message_id = if message.message_id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        message.message_id.clone()
    };
    let header = Header {
        durable: true,
        ttl: message
            .time_to_live
            .map(|ttl| u32::try_from(ttl.as_millis()).unwrap_or(u32::MAX)),
        ..Header::default()
    };
    let properties = Properties {
        message_id: Some(MessageId::String(message_id)),
        correlation_id: message.correlation_id.clone().map(MessageId::String),
        content_type: message.content_type.clone().map(Symbol::from),
        group_id: message.session_id.clone(),
        ..Properties::default()
    };
    let application_properties = (!message.properties.is_empty()).then(|| {
        ApplicationProperties(
            message
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), SimpleValue::String(v.clone())))
                .collect::<OrderedMap<_, _>>(),
        )
    });
    let message_annotations = message.scheduled_enqueue_time.map(|at| {
        let mut annotations = OrderedMap::new();
        annotations.insert(
            OwnedKey::Symbol(Symbol::from(SCHEDULED_ENQUEUE_TIME)),
            Value::Timestamp(Timestamp::from_milliseconds(to_unix_millis(at))),
        );
        MessageAnnotations(annotations)
    });
    Message {
        header: Some(header),
        delivery_annotations: None,
        message_annotations,
        properties: Some(properties),
        application_properties,
        body: Data(Binary::from(message.body.clone())),
        footer: None,
    }
}
