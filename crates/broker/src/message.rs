//! AMQP messages to and from the embedded queue's records, in the Service Bus dialect.
//!
//! Stored messages keep the common fields natively (message id, correlation id, content type,
//! string application properties, body bytes), so the saga engine reads what a Service Bus client
//! sent and the other way round. What the record has no column for is kept in reserved
//! application properties (prefix [`RESERVED_PREFIX`], never shown to clients): the encoded
//! `properties` section when it carries more than the native fields, the encoded
//! `application-properties` section when a value is not a string, and the encoded body sections
//! when the body is not exactly one `data` section. A message thus comes back byte-faithful.

use std::io::Cursor;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use fe2o3_amqp_types::messaging::{
    ApplicationProperties, Data, Header, MessageAnnotations, MessageId, Properties, annotations::OwnedKey,
};
use fe2o3_amqp_types::primitives::{Binary, OrderedMap, SimpleValue, Symbol, Timestamp, Value};
use fe2o3_amqp_types::transaction::{Declare, Discharge};
use serde::Serialize;

use sagahost_transport::OutgoingMessage;
use sagahost_transport::filter::{
    REPLY_TO_PROPERTY, REPLY_TO_SESSION_ID_PROPERTY, SESSION_ID_PROPERTY, SUBJECT_PROPERTY, TO_PROPERTY,
};
use sagahost_transport::servicebus::dialect::{
    DEAD_LETTER_DESCRIPTION, DEAD_LETTER_REASON, DEAD_LETTER_SOURCE, ENQUEUED_TIME, LOCKED_UNTIL,
    SCHEDULED_ENQUEUE_TIME, SEQUENCE_NUMBER, annotation, message_id_text, property_text,
};

/// Reserved application-property names start with this; they are stripped before delivery.
pub const RESERVED_PREFIX: &str = "x-sagahost-amqp-";
const RESERVED_PROPERTIES: &str = "x-sagahost-amqp-properties";
const RESERVED_APPLICATION_PROPERTIES: &str = "x-sagahost-amqp-application-properties";
const RESERVED_BODY: &str = "x-sagahost-amqp-body";

/// The message format Service Bus uses for a batch: each `data` section is one encoded message.
pub const BATCH_MESSAGE_FORMAT: u32 = 0x8001_3700;

/// Section descriptor codes (AMQP 1.0 part 3.2).
const HEADER: u64 = 0x70;
const MESSAGE_ANNOTATIONS: u64 = 0x72;
const PROPERTIES: u64 = 0x73;
const APPLICATION_PROPERTIES: u64 = 0x74;
const DATA: u64 = 0x75;
const AMQP_SEQUENCE: u64 = 0x76;
const AMQP_VALUE: u64 = 0x77;

/// One section of an encoded message: its descriptor code and its encoded bytes.
struct Section<'a> {
    code: u64,
    bytes: &'a [u8],
}

/// Splits an encoded message into its sections without decoding their contents twice.
fn sections(encoded: &[u8]) -> anyhow::Result<Vec<Section<'_>>> {
    let mut cursor = Cursor::new(encoded);
    let mut found = Vec::new();
    while (cursor.position() as usize) < encoded.len() {
        let start = cursor.position() as usize;
        let value: Value = serde_amqp::from_reader(&mut cursor).context("decoding a message section")?;
        let end = cursor.position() as usize;
        let Value::Described(described) = value else {
            bail!("a message section is not a described type");
        };
        let code = match described.descriptor {
            serde_amqp::descriptor::Descriptor::Code(code) => code,
            serde_amqp::descriptor::Descriptor::Name(name) => section_code(name.as_str())?,
        };
        found.push(Section {
            code,
            bytes: &encoded[start..end],
        });
    }
    Ok(found)
}

fn section_code(name: &str) -> anyhow::Result<u64> {
    Ok(match name {
        "amqp:header:list" => HEADER,
        "amqp:delivery-annotations:map" => 0x71,
        "amqp:message-annotations:map" => MESSAGE_ANNOTATIONS,
        "amqp:properties:list" => PROPERTIES,
        "amqp:application-properties:map" => APPLICATION_PROPERTIES,
        "amqp:data:binary" => DATA,
        "amqp:amqp-sequence:list" => AMQP_SEQUENCE,
        "amqp:amqp-value:*" => AMQP_VALUE,
        "amqp:footer:map" => 0x78,
        other => bail!("unknown message section `{other}`"),
    })
}

/// A message a client sent, decoded as far as the broker needs.
#[derive(Debug, Default)]
pub struct Incoming {
    pub header: Option<Header>,
    pub annotations: Option<MessageAnnotations>,
    pub properties: Option<Properties>,
    pub application_properties: Option<ApplicationProperties>,
    /// The encoded body sections, as sent.
    pub body_sections: Vec<u8>,
    /// The body when it is exactly one `data` section.
    pub data: Option<Vec<u8>>,
    /// The single `amqp-value` section's value, if that is the body (management requests).
    pub value: Option<Value>,
}

/// Decodes one encoded message.
pub fn decode(encoded: &[u8]) -> anyhow::Result<Incoming> {
    let mut message = Incoming::default();
    let mut data_sections = Vec::new();
    let mut body_count = 0;
    for section in sections(encoded)? {
        match section.code {
            HEADER => message.header = Some(serde_amqp::from_slice(section.bytes)?),
            MESSAGE_ANNOTATIONS => message.annotations = Some(serde_amqp::from_slice(section.bytes)?),
            PROPERTIES => message.properties = Some(serde_amqp::from_slice(section.bytes)?),
            APPLICATION_PROPERTIES => message.application_properties = Some(serde_amqp::from_slice(section.bytes)?),
            DATA | AMQP_SEQUENCE | AMQP_VALUE => {
                body_count += 1;
                message.body_sections.extend_from_slice(section.bytes);
                if section.code == DATA {
                    let data: Data = serde_amqp::from_slice(section.bytes)?;
                    data_sections.push(data.0.into_vec());
                } else if section.code == AMQP_VALUE {
                    let value: Value = serde_amqp::from_slice(section.bytes)?;
                    if let Value::Described(described) = value {
                        message.value = Some(described.value);
                    }
                }
            }
            // Delivery annotations and footers are hop-by-hop: not kept.
            _ => {}
        }
    }
    if body_count == 1 && data_sections.len() == 1 {
        message.data = data_sections.pop();
    }
    Ok(message)
}

/// A message on a `$coordinator` link.
#[derive(Debug, PartialEq, Eq)]
pub enum Control {
    Declare,
    Discharge { id: Vec<u8>, fail: bool },
}

/// Decodes a coordinator message: its body is one `amqp-value` holding `declare` or `discharge`.
pub fn decode_control(payload: &[u8]) -> anyhow::Result<Control> {
    let value = decode(payload)?
        .value
        .context("a coordinator message has no amqp-value body")?;
    let bytes = serde_amqp::to_vec(&value)?;
    if let Ok(discharge) = serde_amqp::from_slice::<Discharge>(&bytes) {
        return Ok(Control::Discharge {
            id: discharge.txn_id.into_vec(),
            fail: discharge.fail.unwrap_or(false),
        });
    }
    serde_amqp::from_slice::<Declare>(&bytes).context("a coordinator message is neither declare nor discharge")?;
    Ok(Control::Declare)
}

/// Decodes a transfer's payload into the messages it carries: one, or several for a batch.
pub fn decode_transfer(format: u32, payload: &[u8]) -> anyhow::Result<Vec<Incoming>> {
    if format != BATCH_MESSAGE_FORMAT {
        return Ok(vec![decode(payload)?]);
    }
    let mut messages = Vec::new();
    for section in sections(payload)? {
        if section.code == DATA {
            let data: Data = serde_amqp::from_slice(section.bytes)?;
            messages.push(decode(&data.0)?);
        }
    }
    Ok(messages)
}

fn encode<T: Serialize>(value: &T) -> anyhow::Result<Vec<u8>> {
    serde_amqp::to_vec(value).map_err(|error| anyhow!("encoding an AMQP value: {error}"))
}

fn timestamp_to_time(timestamp: &Timestamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(timestamp.milliseconds()).unwrap_or(0))
}

fn time_to_timestamp(time: SystemTime) -> Timestamp {
    let ms = time.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis());
    Timestamp::from_milliseconds(i64::try_from(ms).unwrap_or(i64::MAX))
}

impl Incoming {
    /// The message as the queue stores it.
    pub fn into_outgoing(self) -> anyhow::Result<OutgoingMessage> {
        let mut outgoing = OutgoingMessage::default();
        let mut reserved = Vec::new();
        if let Some(properties) = &self.properties {
            outgoing.message_id = properties.message_id.as_ref().map(message_id_text).unwrap_or_default();
            outgoing.correlation_id = properties.correlation_id.as_ref().map(message_id_text);
            outgoing.content_type = properties
                .content_type
                .as_ref()
                .map(|symbol| symbol.as_str().to_owned());
            outgoing.session_id = properties.group_id.clone();
            let native = Properties {
                message_id: properties.message_id.clone(),
                correlation_id: properties.correlation_id.clone(),
                content_type: properties.content_type.clone(),
                ..Properties::default()
            };
            // Kept as text too, for subscription filters (`sys.Label`, `sys.To`, ...) to read.
            let carried = [
                (SUBJECT_PROPERTY, properties.subject.as_deref()),
                (TO_PROPERTY, properties.to.as_deref()),
                (REPLY_TO_PROPERTY, properties.reply_to.as_deref()),
                (SESSION_ID_PROPERTY, properties.group_id.as_deref()),
                (REPLY_TO_SESSION_ID_PROPERTY, properties.reply_to_group_id.as_deref()),
            ];
            for (name, value) in carried {
                if let Some(value) = value {
                    reserved.push((name.to_owned(), value.to_owned()));
                }
            }
            let plain_ids = [&properties.message_id, &properties.correlation_id]
                .iter()
                .all(|id| matches!(id, None | Some(MessageId::String(_))));
            if !plain_ids || native != *properties {
                reserved.push((RESERVED_PROPERTIES.to_owned(), BASE64.encode(encode(properties)?)));
            }
        }
        if let Some(application_properties) = &self.application_properties {
            let mut typed = false;
            for (name, value) in application_properties.0.iter() {
                typed |= !matches!(value, SimpleValue::String(_));
                outgoing.properties.push((name.clone(), property_text(value)));
            }
            outgoing
                .properties
                .retain(|(name, _)| !name.starts_with(RESERVED_PREFIX));
            if typed {
                reserved.push((
                    RESERVED_APPLICATION_PROPERTIES.to_owned(),
                    BASE64.encode(encode(application_properties)?),
                ));
            }
        }
        match self.data {
            Some(data) => outgoing.body = data,
            None => {
                reserved.push((RESERVED_BODY.to_owned(), "sections".to_owned()));
                outgoing.body = self.body_sections;
            }
        }
        outgoing.properties.extend(reserved);
        if let Some(ttl) = self.header.as_ref().and_then(|header| header.ttl) {
            outgoing.time_to_live = Some(Duration::from_millis(u64::from(ttl)));
        }
        if let Some(annotations) = &self.annotations
            && let Some(Value::Timestamp(at)) = annotation(Some(annotations), SCHEDULED_ENQUEUE_TIME)
        {
            outgoing.scheduled_enqueue_time = Some(timestamp_to_time(at));
        }
        Ok(outgoing)
    }
}

/// A stored message as the broker delivers or shows it.
pub struct Outgoing<'a> {
    pub message_id: &'a str,
    pub correlation_id: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub properties: &'a [(String, String)],
    pub body: &'a [u8],
    /// The session it belongs to, delivered as the `group-id`.
    pub session_id: Option<&'a str>,
    pub sequence_number: i64,
    /// Deliveries before this one (the AMQP header's delivery count).
    pub prior_deliveries: u32,
    pub enqueued_time: SystemTime,
    pub locked_until: Option<SystemTime>,
    pub scheduled_enqueue_time: Option<SystemTime>,
    /// For a dead letter: its queue, reason and description.
    pub dead_letter: Option<(&'a str, &'a str, &'a str)>,
}

fn reserved<'a>(properties: &'a [(String, String)], name: &str) -> Option<&'a str> {
    properties
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn decode_reserved<T: for<'de> serde::Deserialize<'de>>(value: &str) -> anyhow::Result<T> {
    let bytes = BASE64.decode(value)?;
    Ok(serde_amqp::from_slice(&bytes)?)
}

impl Outgoing<'_> {
    /// Encodes the message with its Service Bus annotations.
    pub fn encode(&self) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.body.len() + 256);
        out.extend(encode_header(self.prior_deliveries));

        let mut annotations = OrderedMap::new();
        let mut annotate = |name: &str, value: Value| {
            annotations.insert(OwnedKey::Symbol(Symbol::from(name)), value);
        };
        annotate(SEQUENCE_NUMBER, Value::Long(self.sequence_number));
        annotate(ENQUEUED_TIME, Value::Timestamp(time_to_timestamp(self.enqueued_time)));
        if let Some(until) = self.locked_until {
            annotate(LOCKED_UNTIL, Value::Timestamp(time_to_timestamp(until)));
        }
        if let Some(at) = self.scheduled_enqueue_time {
            annotate(SCHEDULED_ENQUEUE_TIME, Value::Timestamp(time_to_timestamp(at)));
        }
        if let Some((queue, _, _)) = self.dead_letter {
            annotate(DEAD_LETTER_SOURCE, Value::String(queue.to_owned()));
        }
        out.extend(encode(&MessageAnnotations(annotations))?);

        let properties = match reserved(self.properties, RESERVED_PROPERTIES) {
            Some(encoded) => {
                let mut properties: Properties = decode_reserved(encoded)?;
                // Sent without one, the message got an id when stored: deliver that id, since
                // clients track messages by it (the JavaScript SDK's lock renewer fails without).
                if properties.message_id.is_none() && !self.message_id.is_empty() {
                    properties.message_id = Some(MessageId::String(self.message_id.to_owned()));
                }
                if properties.group_id.is_none() {
                    properties.group_id = self.session_id.map(str::to_owned);
                }
                properties
            }
            None => Properties {
                message_id: Some(MessageId::String(self.message_id.to_owned())),
                correlation_id: self.correlation_id.map(|id| MessageId::String(id.to_owned())),
                content_type: self.content_type.map(Symbol::from),
                group_id: self.session_id.map(str::to_owned),
                ..Properties::default()
            },
        };
        out.extend(encode(&properties)?);

        let mut application = match reserved(self.properties, RESERVED_APPLICATION_PROPERTIES) {
            Some(encoded) => decode_reserved::<ApplicationProperties>(encoded)?.0,
            None => {
                let mut map = OrderedMap::new();
                for (name, value) in self.properties {
                    if !name.starts_with(RESERVED_PREFIX) {
                        map.insert(name.clone(), SimpleValue::String(value.clone()));
                    }
                }
                map
            }
        };
        if let Some((_, reason, description)) = self.dead_letter {
            application.insert(DEAD_LETTER_REASON.to_owned(), SimpleValue::String(reason.to_owned()));
            application.insert(
                DEAD_LETTER_DESCRIPTION.to_owned(),
                SimpleValue::String(description.to_owned()),
            );
        }
        if !application.is_empty() {
            out.extend(encode(&ApplicationProperties(application))?);
        }

        if reserved(self.properties, RESERVED_BODY).is_some() {
            out.extend_from_slice(self.body);
        } else {
            out.extend(encode(&Data(Binary::from(self.body.to_vec())))?);
        }
        Ok(out)
    }
}

/// Encodes a header section with every field present. The codec leaves out trailing fields that
/// have their default value, and Service Bus clients read a missing `delivery-count` as none, not 0.
fn encode_header(delivery_count: u32) -> Vec<u8> {
    let mut out = vec![
        0x00,
        0x53,
        0x70, // described by the header's code
        0xc0,
        11,
        5,    // list8: size, five fields
        0x41, // durable: true
        0x50,
        4,                                             // priority: ubyte 4, the default
        0x40,                                          // ttl: none
        if delivery_count == 0 { 0x41 } else { 0x42 }, // first-acquirer
        0x70,                                          // delivery-count: uint
    ];
    out.extend_from_slice(&delivery_count.to_be_bytes());
    out
}

/// Encodes a management or CBS reply.
pub fn encode_reply(
    correlation_id: Option<MessageId>,
    application_properties: OrderedMap<String, SimpleValue>,
    body: Value,
) -> anyhow::Result<Vec<u8>> {
    let properties = Properties {
        correlation_id,
        ..Properties::default()
    };
    let mut out = encode(&properties)?;
    out.extend(encode(&ApplicationProperties(application_properties))?);
    out.extend(encode(&fe2o3_amqp_types::messaging::AmqpValue(body))?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_decodes_with_its_delivery_count() {
        let header: Header = serde_amqp::from_slice(&encode_header(3)).unwrap();
        assert_eq!(header.delivery_count, 3);
        assert!(header.durable && !header.first_acquirer);
    }

    #[test]
    fn typed_properties_and_value_bodies_survive_the_store() {
        let mut application = OrderedMap::new();
        application.insert("n".to_owned(), SimpleValue::Int(7));
        application.insert("s".to_owned(), SimpleValue::String("x".into()));
        let properties = Properties {
            message_id: Some(MessageId::Ulong(9)),
            subject: Some("label".into()),
            ..Properties::default()
        };
        let mut encoded = encode(&properties).unwrap();
        encoded.extend(encode(&ApplicationProperties(application.clone())).unwrap());
        encoded.extend(encode(&fe2o3_amqp_types::messaging::AmqpValue(Value::Long(42))).unwrap());
        let outgoing = decode(&encoded).unwrap().into_outgoing().unwrap();
        assert_eq!(outgoing.message_id, "9");
        assert!(outgoing.properties.contains(&("n".to_owned(), "7".to_owned())));

        let view = Outgoing {
            message_id: &outgoing.message_id,
            correlation_id: None,
            content_type: None,
            properties: &outgoing.properties,
            body: &outgoing.body,
            session_id: outgoing.session_id.as_deref(),
            sequence_number: 3,
            prior_deliveries: 0,
            enqueued_time: SystemTime::now(),
            locked_until: None,
            scheduled_enqueue_time: None,
            dead_letter: None,
        };
        let back = decode(&view.encode().unwrap()).unwrap();
        assert_eq!(back.properties.unwrap(), properties);
        assert_eq!(back.application_properties.unwrap().0, application);
        assert_eq!(back.value, Some(Value::Long(42)));
    }

    #[test]
    fn a_message_sent_without_an_id_is_delivered_with_the_one_it_got_when_stored() {
        let properties = Properties {
            subject: Some("hello".into()),
            ..Properties::default()
        };
        let mut encoded = encode(&properties).unwrap();
        encoded.extend(encode(&Data(Binary::from(b"x".to_vec()))).unwrap());
        let outgoing = decode(&encoded).unwrap().into_outgoing().unwrap();
        let view = Outgoing {
            message_id: "generated",
            correlation_id: None,
            content_type: None,
            properties: &outgoing.properties,
            body: &outgoing.body,
            session_id: outgoing.session_id.as_deref(),
            sequence_number: 1,
            prior_deliveries: 0,
            enqueued_time: SystemTime::now(),
            locked_until: None,
            scheduled_enqueue_time: None,
            dead_letter: None,
        };
        let back = decode(&view.encode().unwrap()).unwrap().properties.unwrap();
        assert_eq!(back.message_id, Some(MessageId::String("generated".into())));
        assert_eq!(back.subject.as_deref(), Some("hello"));
    }

    #[test]
    fn subject_to_reply_to_and_session_id_are_kept_for_filters_and_never_delivered() {
        use sagahost_transport::filter::MessageFields;
        for name in [
            SUBJECT_PROPERTY,
            TO_PROPERTY,
            REPLY_TO_PROPERTY,
            SESSION_ID_PROPERTY,
            REPLY_TO_SESSION_ID_PROPERTY,
        ] {
            assert!(name.starts_with(RESERVED_PREFIX), "{name} is stripped on delivery");
        }
        let properties = Properties {
            message_id: Some(MessageId::String("m".into())),
            subject: Some("Create".into()),
            to: Some("mdm".into()),
            reply_to: Some("replies".into()),
            group_id: Some("session-1".into()),
            reply_to_group_id: Some("session-2".into()),
            ..Properties::default()
        };
        let mut application = OrderedMap::new();
        application.insert("kind".to_owned(), SimpleValue::String("contact".into()));
        let mut encoded = encode(&properties).unwrap();
        encoded.extend(encode(&ApplicationProperties(application.clone())).unwrap());
        encoded.extend(encode(&Data(Binary::from(b"x".to_vec()))).unwrap());
        let outgoing = decode(&encoded).unwrap().into_outgoing().unwrap();
        let fields = MessageFields::stored(&outgoing.message_id, None, None, &outgoing.properties);
        assert_eq!(fields.subject, Some("Create"));
        assert_eq!(fields.to, Some("mdm"));
        assert_eq!(fields.reply_to, Some("replies"));
        assert_eq!(fields.session_id, Some("session-1"));
        assert_eq!(fields.reply_to_session_id, Some("session-2"));
        assert_eq!(
            outgoing.session_id.as_deref(),
            Some("session-1"),
            "stored with its session"
        );

        let view = Outgoing {
            message_id: &outgoing.message_id,
            correlation_id: None,
            content_type: None,
            properties: &outgoing.properties,
            body: &outgoing.body,
            session_id: outgoing.session_id.as_deref(),
            sequence_number: 1,
            prior_deliveries: 0,
            enqueued_time: SystemTime::now(),
            locked_until: None,
            scheduled_enqueue_time: None,
            dead_letter: None,
        };
        let back = decode(&view.encode().unwrap()).unwrap();
        assert_eq!(back.properties.unwrap(), properties);
        assert_eq!(
            back.application_properties.unwrap().0,
            application,
            "nothing reserved shows"
        );
    }

    #[test]
    fn a_message_stored_with_a_session_id_is_delivered_with_it_as_the_group_id() {
        // As the saga engine sends it: no reserved properties, the session id in its own column.
        let view = Outgoing {
            message_id: "m",
            correlation_id: None,
            content_type: None,
            properties: &[],
            body: b"x",
            session_id: Some("order-7"),
            sequence_number: 1,
            prior_deliveries: 0,
            enqueued_time: SystemTime::now(),
            locked_until: None,
            scheduled_enqueue_time: None,
            dead_letter: None,
        };
        let back = decode(&view.encode().unwrap()).unwrap().properties.unwrap();
        assert_eq!(back.group_id.as_deref(), Some("order-7"));
    }
}
