use std::time::{Duration, UNIX_EPOCH};

use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::{Body, Data, Header, Message, MessageAnnotations, MessageId, Properties};
use fe2o3_amqp::types::primitives::{Binary, OrderedMap, Symbol, Timestamp, Value};

use super::*;
use super::{codec, dialect};
use crate::OutgoingMessage;

const KEY: &str = "SGVsbG8gV29ybGQhIFNlY3JldEtleQ==";

#[test]
fn parses_a_namespace_connection_string() {
    let parsed = ConnectionString::parse(&format!(
        "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={KEY}"
    ))
    .unwrap();
    assert_eq!(parsed.host, "contoso.servicebus.windows.net");
    assert_eq!(parsed.port, 5671);
    assert!(!parsed.use_development_emulator);
    assert_eq!(parsed.entity_path, None);
    assert_eq!(
        parsed.credential,
        Credential::SharedAccessKey {
            name: "RootManageSharedAccessKey".into(),
            key: KEY.into()
        }
    );
}

#[test]
fn parses_the_emulator_form_with_and_without_a_port() {
    let parsed = ConnectionString::parse(
        "Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;",
    )
    .unwrap();
    assert_eq!((parsed.host.as_str(), parsed.port), ("localhost", 5672));
    assert!(parsed.use_development_emulator);
    let parsed = ConnectionString::parse(
        "endpoint=sb://127.0.0.1:5673/;sharedaccesskeyname=k;sharedaccesskey=v;usedevelopmentemulator=TRUE;EntityPath=orders",
    )
    .unwrap();
    assert_eq!((parsed.host.as_str(), parsed.port), ("127.0.0.1", 5673));
    assert_eq!(parsed.entity_path.as_deref(), Some("orders"));
}

#[test]
fn accepts_a_ready_made_signature() {
    let parsed = ConnectionString::parse(
        "Endpoint=sb://x.servicebus.windows.net/;SharedAccessSignature=SharedAccessSignature sr=a&sig=b&se=1&skn=c",
    )
    .unwrap();
    assert_eq!(
        parsed.credential,
        Credential::SharedAccessSignature("SharedAccessSignature sr=a&sig=b&se=1&skn=c".into())
    );
}

#[test]
fn names_the_missing_key() {
    let error = |text: &str| ConnectionString::parse(text).unwrap_err().to_string();
    assert!(error("SharedAccessKeyName=k;SharedAccessKey=v").contains("no `Endpoint`"));
    assert!(error("Endpoint=sb://x/;SharedAccessKey=v").contains("no `SharedAccessKeyName`"));
    assert!(error("Endpoint=sb://x/;SharedAccessKeyName=k").contains("no `SharedAccessKey`"));
    assert!(error("Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=").contains("no `SharedAccessKey`"));
    assert!(error("Endpoint=sb://x/").contains("`SharedAccessKeyName` and `SharedAccessKey`"));
    assert!(error("Endpoint=x;SharedAccessKeyName=k;SharedAccessKey=v").contains("not a URL"));
    assert!(error("Endpoint=sb://x:port/;SharedAccessKeyName=k;SharedAccessKey=v").contains("bad port"));
    assert!(
        error("Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=yes")
            .contains("`true` or `false`")
    );
    // A malformed segment is reported without echoing it (it may hold the key).
    let text = error(&format!("Endpoint=sb://x/;SharedAccessKeyName=k;{KEY}"));
    assert!(!text.contains(KEY), "{text}");
    assert!(
        !format!(
            "{:?}",
            ConnectionString::parse(&format!("Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey={KEY}")).unwrap()
        )
        .contains(KEY)
    );
}

/// Cross-checked with Python: `quote_plus`, `hmac.new(key.encode(), f"{enc}\n{expiry}".encode(), sha256)`.
#[test]
fn sas_token_matches_the_sdk_construction() {
    let token = sas_token(
        "sb://contoso.servicebus.windows.net/orders",
        "RootManageSharedAccessKey",
        KEY,
        1_700_000_000,
    );
    assert_eq!(
        token,
        "SharedAccessSignature sr=sb%3A%2F%2Fcontoso.servicebus.windows.net%2Forders\
         &sig=Q0GLM8g7P%2BXtvruTrUyAy0ZsESXJwODpq2pR40isreU%3D&se=1700000000&skn=RootManageSharedAccessKey"
    );
}

fn annotations(entries: &[(&str, Value)]) -> MessageAnnotations {
    let mut map = OrderedMap::new();
    for (key, value) in entries {
        map.insert(OwnedKey::Symbol(Symbol::from(*key)), value.clone());
    }
    MessageAnnotations(map)
}

#[test]
fn reads_a_received_message() {
    let enqueued = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    let locked_until = enqueued + Duration::from_secs(30);
    let mut app = OrderedMap::new();
    app.insert(
        "saga-id".to_string(),
        fe2o3_amqp::types::primitives::SimpleValue::String("s1".into()),
    );
    app.insert(
        "attempt".to_string(),
        fe2o3_amqp::types::primitives::SimpleValue::Int(3),
    );
    let message = Message {
        header: Some(Header {
            delivery_count: 2,
            ..Header::default()
        }),
        delivery_annotations: None,
        message_annotations: Some(annotations(&[
            (dialect::SEQUENCE_NUMBER, Value::Long(42)),
            (
                dialect::ENQUEUED_TIME,
                Value::Timestamp(Timestamp::from_milliseconds(1_700_000_000_123)),
            ),
            (
                dialect::LOCKED_UNTIL,
                Value::Timestamp(Timestamp::from_milliseconds(1_700_000_030_123)),
            ),
        ])),
        properties: Some(Properties {
            message_id: Some(MessageId::String("m1".into())),
            correlation_id: Some(MessageId::String("c1".into())),
            content_type: Some(Symbol::from("application/json")),
            ..Properties::default()
        }),
        application_properties: Some(fe2o3_amqp::types::messaging::ApplicationProperties(app)),
        body: Body::<Value>::Data(
            vec![
                Data(Binary::from(b"{\"a\"".to_vec())),
                Data(Binary::from(b":1}".to_vec())),
            ]
            .into(),
        ),
        footer: None,
    };
    let tag: Vec<u8> = (1..=16).collect();
    let received = codec::received("orders", &tag, &message).unwrap();
    assert_eq!(received.queue, "orders");
    assert_eq!(received.message_id, "m1");
    assert_eq!(received.correlation_id.as_deref(), Some("c1"));
    assert_eq!(received.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        received.properties,
        vec![("saga-id".into(), "s1".into()), ("attempt".into(), "3".into())]
    );
    assert_eq!(received.body, b"{\"a\":1}");
    assert_eq!(received.sequence_number, 42);
    assert_eq!(received.delivery_count, 3, "header counts earlier deliveries");
    assert_eq!(received.enqueued_time, enqueued);
    assert_eq!(received.locked_until, locked_until);
    assert_eq!(received.lock_token, "04030201-0605-0807-090a-0b0c0d0e0f10");

    let mut bare = message.clone();
    bare.header = None;
    assert_eq!(codec::received("orders", &tag, &bare).unwrap().delivery_count, 1);
    let mut missing = message;
    missing.message_annotations = Some(annotations(&[(dialect::SEQUENCE_NUMBER, Value::Long(1))]));
    let error = codec::received("orders", &tag, &missing).unwrap_err().to_string();
    assert!(error.contains(dialect::ENQUEUED_TIME), "{error}");
}

#[test]
fn writes_an_outgoing_message() {
    let at = UNIX_EPOCH + Duration::from_millis(1_800_000_000_000);
    let message = codec::outgoing(&OutgoingMessage {
        message_id: "m2".into(),
        correlation_id: Some("c2".into()),
        content_type: Some("text/plain".into()),
        properties: vec![("k".into(), "v".into())],
        body: b"hello".to_vec(),
        scheduled_enqueue_time: Some(at),
        time_to_live: Some(Duration::from_secs(90)),
        session_id: Some("contact-1".into()),
    });
    assert_eq!(message.header.as_ref().unwrap().ttl, Some(90_000));
    let properties = message.properties.as_ref().unwrap();
    assert_eq!(properties.message_id, Some(MessageId::String("m2".into())));
    assert_eq!(properties.correlation_id, Some(MessageId::String("c2".into())));
    assert_eq!(properties.content_type, Some(Symbol::from("text/plain")));
    assert_eq!(
        properties.group_id.as_deref(),
        Some("contact-1"),
        "the session id is the group id"
    );
    let scheduled = message
        .message_annotations
        .as_ref()
        .unwrap()
        .0
        .get(&OwnedKey::Symbol(Symbol::from(dialect::SCHEDULED_ENQUEUE_TIME)));
    assert_eq!(
        scheduled,
        Some(&Value::Timestamp(Timestamp::from_milliseconds(1_800_000_000_000)))
    );
    assert_eq!(message.body.0.as_slice(), b"hello");

    let generated = codec::outgoing(&OutgoingMessage::default());
    let Some(MessageId::String(id)) = generated.properties.unwrap().message_id else {
        panic!("no id")
    };
    assert!(id.parse::<uuid::Uuid>().is_ok(), "{id}");
    assert!(generated.message_annotations.is_none());
    assert_eq!(generated.header.unwrap().ttl, None);
}

#[test]
fn reads_renew_lock_expirations() {
    let mut map = OrderedMap::new();
    map.insert(
        Value::String("expirations".into()),
        Value::Array(fe2o3_amqp::types::primitives::Array(vec![Value::Timestamp(
            Timestamp::from_milliseconds(5_000),
        )])),
    );
    assert_eq!(
        expirations(&Value::Map(map)),
        Some(vec![UNIX_EPOCH + Duration::from_secs(5)])
    );
    assert_eq!(expirations(&Value::Null), None);
}

#[test]
fn session_lock_times_are_dotnet_ticks() {
    // What the SDKs subtract before dividing by 10^7 (Python) or 10^4 (JavaScript).
    assert_eq!(dialect::dotnet_ticks(UNIX_EPOCH), 621_355_968_000_000_000);
    assert_eq!(
        dialect::dotnet_ticks(UNIX_EPOCH + Duration::from_millis(1500)),
        621_355_968_000_000_000 + 15_000_000
    );
}
