//! The broker over real TCP, driven by fe2o3-amqp's client.

use std::time::{Duration, Instant, SystemTime};

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Body, Message, MessageAnnotations, Properties, annotations::OwnedKey,
};
use fe2o3_amqp::types::primitives::{Array, OrderedMap, SimpleValue, Symbol, Uuid, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use sagahost_transport::embedded::{EmbeddedQueue, QueueDepth};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{BrokerConfig, serve_with};

pub(super) struct Broker {
    /// `amqp://127.0.0.1:<port>`.
    pub(super) address: String,
    pub(super) queue: EmbeddedQueue,
    shutdown: CancellationToken,
    _dir: TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub(super) async fn start(config: BrokerConfig) -> Broker {
    let dir = TempDir::new().unwrap();
    let queue = EmbeddedQueue::open(&dir.path().join("broker.db"), &[]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("amqp://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let shutdown = CancellationToken::new();
    tokio::spawn(serve_with(listener, queue.clone(), config, shutdown.clone()));
    Broker {
        address,
        queue,
        shutdown,
        _dir: dir,
    }
}

/// A connection that logs in with SASL PLAIN and the emulator's key (so it needs no token).
pub(super) async fn connect(broker: &Broker, name: &str) -> ConnectionHandle<()> {
    Connection::builder()
        .container_id(name)
        .sasl_profile(SaslProfile::Plain {
            username: "RootManageSharedAccessKey".into(),
            password: "SAS_KEY_VALUE".into(),
        })
        .open(broker.address.as_str())
        .await
        .expect("connect with SASL PLAIN")
}

fn annotation(message: &Message<Body<Value>>, name: &str) -> Option<Value> {
    let annotations: &MessageAnnotations = message.message_annotations.as_ref()?;
    annotations.0.get(&OwnedKey::Symbol(Symbol::from(name))).cloned()
}

/// The lock token a 16-byte delivery tag carries (the GUID in .NET byte order).
pub(super) fn lock_token(tag: &[u8]) -> [u8; 16] {
    let mut bytes: [u8; 16] = tag.try_into().expect("a 16-byte delivery tag");
    bytes[..4].reverse();
    bytes[4..6].reverse();
    bytes[6..8].reverse();
    bytes
}

pub(super) async fn wait_for_depth(queue: &EmbeddedQueue, name: &str, expected: QueueDepth) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let depth = queue.queue_depth(name).await.unwrap();
        if depth == expected || Instant::now() > deadline {
            assert_eq!(depth, expected);
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sasl_plain_with_a_wrong_key_is_refused() {
    let broker = start(BrokerConfig::default()).await;
    for (username, password) in [
        ("RootManageSharedAccessKey", "not the key"),
        ("SomeoneElse", "SAS_KEY_VALUE"),
    ] {
        let refused = Connection::builder()
            .container_id("intruder")
            .sasl_profile(SaslProfile::Plain {
                username: username.into(),
                password: password.into(),
            })
            .open(broker.address.as_str())
            .await;
        assert!(refused.is_err(), "{username}/{password} was let in");
    }
}

#[tokio::test]
async fn sasl_plain_send_receive_peek_lock_complete() {
    let broker = start(BrokerConfig::default()).await;
    let mut connection = connect(&broker, "client").await;
    let mut session = Session::begin(&mut connection).await.unwrap();

    let mut sender = Sender::attach(&mut session, "sender", "orders").await.unwrap();
    let message = Message::builder()
        .properties(Properties::builder().message_id(String::from("order-1")).build())
        .application_properties(ApplicationProperties::builder().insert("kind", "order").build())
        .data(b"hello".to_vec())
        .build();
    let outcome = sender.send(message).await.unwrap();
    assert!(outcome.is_accepted(), "{outcome:?}");
    assert_eq!(broker.queue.queue_depth("orders").await.unwrap().active, 1);

    let mut receiver = Receiver::attach(&mut session, "receiver", "orders").await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(5), receiver.recv::<Body<Value>>())
        .await
        .expect("a delivery")
        .unwrap();
    assert_eq!(delivery.delivery_tag().len(), 16, "the lock token is the delivery tag");
    let message = delivery.message();
    assert!(
        matches!(&message.body, Body::Data(data) if data.iter().next().map(|d| d.0.as_slice()) == Some(b"hello".as_slice()))
    );
    assert_eq!(annotation(message, "x-opt-sequence-number"), Some(Value::Long(1)));
    assert!(matches!(
        annotation(message, "x-opt-enqueued-time"),
        Some(Value::Timestamp(_))
    ));
    let Some(Value::Timestamp(locked_until)) = annotation(message, "x-opt-locked-until") else {
        panic!("no x-opt-locked-until");
    };
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(locked_until.milliseconds() > now_ms + 20_000, "locked for about 30 s");
    assert_eq!(message.header.as_ref().unwrap().delivery_count, 0);
    let properties = message.application_properties.as_ref().unwrap();
    assert_eq!(properties.0.get("kind"), Some(&SimpleValue::String("order".into())));

    // Locked: a second receiver gets nothing.
    let mut other = Receiver::attach(&mut session, "other", "orders").await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), other.recv::<Body<Value>>())
            .await
            .is_err()
    );

    receiver.accept(&delivery).await.unwrap();
    wait_for_depth(&broker.queue, "orders", QueueDepth::default()).await;

    other.close().await.unwrap();
    receiver.close().await.unwrap();
    sender.close().await.unwrap();
    session.end().await.unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_client_gone_mid_delivery_leaves_its_message_locked_until_the_lock_expires() {
    let lock = Duration::from_millis(1000);
    let broker = start(BrokerConfig {
        lock_duration: lock,
        ..BrokerConfig::default()
    })
    .await;

    let mut connection = connect(&broker, "first").await;
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "sender", "work").await.unwrap();
    sender.send(Message::from("job")).await.unwrap();
    let mut receiver = Receiver::attach(&mut session, "receiver", "work").await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), receiver.recv::<Body<Value>>())
        .await
        .expect("a delivery")
        .unwrap();
    let received_at = Instant::now();
    assert_eq!(first.message().header.as_ref().unwrap().delivery_count, 0);
    // The client goes away without settling.
    drop(receiver);
    drop(sender);
    drop(session);
    drop(connection);

    let mut connection = connect(&broker, "second").await;
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut receiver = Receiver::attach(&mut session, "receiver", "work").await.unwrap();
    let again = tokio::time::timeout(Duration::from_secs(5), receiver.recv::<Body<Value>>())
        .await
        .expect("redelivered after the lock expired")
        .unwrap();
    let waited = received_at.elapsed();
    assert!(
        waited >= lock - Duration::from_millis(100),
        "redelivered after {waited:?}, before the lock expired"
    );
    assert_eq!(
        again.message().header.as_ref().unwrap().delivery_count,
        1,
        "the lost delivery counts"
    );
    assert_ne!(again.delivery_tag(), first.delivery_tag(), "a new lock token");
    receiver.accept(&again).await.unwrap();
    wait_for_depth(&broker.queue, "work", QueueDepth::default()).await;
    receiver.close().await.unwrap();
    session.end().await.unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn management_renew_lock_extends_the_lock() {
    let broker = start(BrokerConfig {
        lock_duration: Duration::from_secs(5),
        ..BrokerConfig::default()
    })
    .await;
    let mut connection = connect(&broker, "client").await;
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "sender", "renewals").await.unwrap();
    sender.send(Message::from("slow")).await.unwrap();
    let mut receiver = Receiver::attach(&mut session, "receiver", "renewals").await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(5), receiver.recv::<Body<Value>>())
        .await
        .expect("a delivery")
        .unwrap();
    let Some(Value::Timestamp(locked_until)) = annotation(delivery.message(), "x-opt-locked-until") else {
        panic!("no x-opt-locked-until");
    };
    let token = lock_token(delivery.delivery_tag());

    let mut requests = Sender::attach(&mut session, "mgmt-requests", "renewals/$management")
        .await
        .unwrap();
    let mut replies = Receiver::builder()
        .name("mgmt-replies")
        .source("renewals/$management")
        .target("mgmt-reply-to")
        .attach(&mut session)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    let mut body = OrderedMap::new();
    body.insert(
        Value::String("lock-tokens".into()),
        Value::Array(Array::from(vec![Value::Uuid(Uuid::from(token))])),
    );
    let request = Message::builder()
        .properties(
            Properties::builder()
                .message_id(String::from("renew-1"))
                .reply_to("mgmt-reply-to")
                .build(),
        )
        .application_properties(
            ApplicationProperties::builder()
                .insert("operation", "com.microsoft:renew-lock")
                .build(),
        )
        .value(Value::Map(body))
        .build();
    requests.send(request).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), replies.recv::<Body<Value>>())
        .await
        .expect("a reply")
        .unwrap();
    replies.accept(&reply).await.unwrap();
    let reply = reply.message();
    let properties = reply.application_properties.as_ref().unwrap();
    assert_eq!(
        properties.0.get("statusCode"),
        Some(&SimpleValue::Int(200)),
        "{properties:?}"
    );
    assert_eq!(
        reply.properties.as_ref().unwrap().correlation_id,
        Some("renew-1".to_owned().into())
    );
    let Body::Value(value) = &reply.body else {
        panic!("the reply body is not a value: {:?}", reply.body);
    };
    let Value::Map(map) = &value.0 else {
        panic!("the reply body is not a map");
    };
    let Some(Value::Array(expirations)) = map.get(&Value::String("expirations".into())) else {
        panic!("no expirations in {map:?}");
    };
    let Some(Value::Timestamp(renewed)) = expirations.0.first() else {
        panic!("no expiration");
    };
    assert!(
        renewed.milliseconds() > locked_until.milliseconds(),
        "the lock was extended"
    );

    // A lock token the connection does not hold is reported as lost.
    let mut body = OrderedMap::new();
    body.insert(
        Value::String("lock-tokens".into()),
        Value::Array(Array::from(vec![Value::Uuid(Uuid::from([7u8; 16]))])),
    );
    let request = Message::builder()
        .properties(
            Properties::builder()
                .message_id(String::from("renew-2"))
                .reply_to("mgmt-reply-to")
                .build(),
        )
        .application_properties(
            ApplicationProperties::builder()
                .insert("operation", "com.microsoft:renew-lock")
                .build(),
        )
        .value(Value::Map(body))
        .build();
    requests.send(request).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), replies.recv::<Body<Value>>())
        .await
        .expect("a reply")
        .unwrap();
    replies.accept(&reply).await.unwrap();
    let properties = reply.message().application_properties.as_ref().unwrap();
    assert_eq!(properties.0.get("statusCode"), Some(&SimpleValue::Int(410)));
    assert_eq!(
        properties.0.get("errorCondition"),
        Some(&SimpleValue::Symbol("com.microsoft:message-lock-lost".into()))
    );

    receiver.accept(&delivery).await.unwrap();
    wait_for_depth(&broker.queue, "renewals", QueueDepth::default()).await;
    assert_eq!(uuid::Uuid::from_bytes(token).to_string().len(), 36);
    connection.close().await.unwrap();
}

/// A client that received (and holds the lock of) a message of queue `in`, with a transaction
/// controller and a sender to queue `out`: where the transaction tests start.
struct TransactionClient {
    connection: ConnectionHandle<()>,
    session: fe2o3_amqp::session::SessionHandle<()>,
    sender: Sender,
    receiver: Receiver,
    delivery: fe2o3_amqp::link::delivery::Delivery<Body<Value>>,
    controller: fe2o3_amqp::transaction::Controller,
    out: Sender,
}

impl TransactionClient {
    async fn start(broker: &Broker) -> Self {
        let mut connection = connect(broker, "client").await;
        let mut session = Session::begin(&mut connection).await.unwrap();
        let mut sender = Sender::attach(&mut session, "sender", "in").await.unwrap();
        sender
            .send(Message::builder().data(b"input".to_vec()).build())
            .await
            .unwrap();
        let mut receiver = Receiver::attach(&mut session, "receiver", "in").await.unwrap();
        let delivery = tokio::time::timeout(Duration::from_secs(5), receiver.recv::<Body<Value>>())
            .await
            .expect("a delivery")
            .unwrap();
        let controller = fe2o3_amqp::transaction::Controller::attach(&mut session, "controller")
            .await
            .unwrap();
        let out = Sender::attach(&mut session, "out", "out").await.unwrap();
        Self {
            connection,
            session,
            sender,
            receiver,
            delivery,
            controller,
            out,
        }
    }
}

#[tokio::test]
async fn a_rolled_back_transaction_stores_nothing_and_keeps_the_lock() {
    use fe2o3_amqp::transaction::{Transaction, TransactionDischarge, TransactionPosting, TransactionRetirement};
    let broker = start(BrokerConfig::default()).await;
    let TransactionClient {
        mut connection,
        mut session,
        mut sender,
        mut receiver,
        delivery,
        controller,
        mut out,
    } = TransactionClient::start(&broker).await;
    let transaction = Transaction::declare(&controller, None).await.unwrap();
    let posted = transaction
        .post(&mut out, Message::builder().data(b"output".to_vec()).build())
        .await
        .unwrap();
    assert!(posted.is_accepted(), "{posted:?}");
    transaction.accept(&mut receiver, &delivery).await.unwrap();
    // Nothing is applied before the discharge.
    assert_eq!(broker.queue.queue_depth("out").await.unwrap(), QueueDepth::default());
    transaction.rollback().await.unwrap();
    assert_eq!(broker.queue.queue_depth("out").await.unwrap(), QueueDepth::default());
    assert_eq!(broker.queue.queue_depth("in").await.unwrap().active, 1);

    // The input is still locked: another receiver does not get it.
    let mut other = Receiver::attach(&mut session, "other", "in").await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), other.recv::<Body<Value>>())
            .await
            .is_err()
    );
    other.close().await.unwrap();

    // A committed transaction applies both halves.
    sender
        .send(Message::builder().data(b"second".to_vec()).build())
        .await
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), receiver.recv::<Body<Value>>())
        .await
        .expect("a delivery")
        .unwrap();
    let transaction = Transaction::declare(&controller, None).await.unwrap();
    transaction
        .post(&mut out, Message::builder().data(b"output".to_vec()).build())
        .await
        .unwrap();
    transaction.accept(&mut receiver, &second).await.unwrap();
    transaction.commit().await.unwrap();
    assert_eq!(
        broker.queue.queue_depth("in").await.unwrap().active,
        1,
        "only the first is left"
    );
    assert_eq!(broker.queue.queue_depth("out").await.unwrap().active, 1);

    connection.close().await.unwrap();
}

/// A transaction holds its work in memory until its discharge: past Service Bus's 100 messages a
/// post is refused, and the commit is refused too (it would apply part of the work), so nothing
/// is stored and the input stays locked.
#[tokio::test]
async fn a_transaction_over_the_operation_limit_cannot_commit() {
    use fe2o3_amqp::transaction::{Transaction, TransactionDischarge, TransactionPosting, TransactionRetirement};
    use sagahost_transport::servicebus::dialect::MAX_TRANSACTION_MESSAGES;
    let broker = start(BrokerConfig::default()).await;
    let TransactionClient {
        mut connection,
        mut session,
        sender: _sender,
        mut receiver,
        delivery,
        controller,
        mut out,
    } = TransactionClient::start(&broker).await;
    let mut transaction = Transaction::declare(&controller, None).await.unwrap();
    // fe2o3 would roll the refused transaction back when dropped, and wait for the answer.
    transaction.set_rollback_on_drop_trials(0);
    transaction.accept(&mut receiver, &delivery).await.unwrap();
    for _ in 1..MAX_TRANSACTION_MESSAGES {
        let posted = transaction
            .post(&mut out, Message::builder().data(b"output".to_vec()).build())
            .await
            .unwrap();
        assert!(posted.is_accepted(), "{posted:?}");
    }
    let refused = transaction
        .post(&mut out, Message::builder().data(b"one too many".to_vec()).build())
        .await
        .unwrap();
    let text = format!("{refused:?}");
    assert!(
        refused.is_rejected() && text.contains("ResourceLimitExceeded") && text.contains("at most 100 messages"),
        "{text}"
    );
    let error = format!("{:?}", transaction.commit().await.unwrap_err());
    assert!(
        error.contains("Rollback") && error.contains("at most 100 messages"),
        "{error}"
    );
    assert_eq!(broker.queue.queue_depth("out").await.unwrap(), QueueDepth::default());
    assert_eq!(broker.queue.queue_depth("in").await.unwrap().active, 1);

    // The connection serves on: a transaction within the limit commits. (On a new controller:
    // the answer to fe2o3's rollback on drop could reach a declare on the old one.)
    let controller = fe2o3_amqp::transaction::Controller::attach(&mut session, "controller-2")
        .await
        .unwrap();
    let transaction = Transaction::declare(&controller, None).await.unwrap();
    transaction
        .post(&mut out, Message::builder().data(b"output".to_vec()).build())
        .await
        .unwrap();
    transaction.commit().await.unwrap();
    assert_eq!(broker.queue.queue_depth("out").await.unwrap().active, 1);
    connection.close().await.unwrap();
}

/// Each live transaction holds memory until discharged: a connection declaring without end is
/// refused past the bound, and may declare again once it discharges one.
#[tokio::test]
async fn declares_past_the_live_transaction_bound_are_refused() {
    use crate::transactions::MAX_LIVE_TRANSACTIONS;
    use fe2o3_amqp::transaction::{Controller, Transaction, TransactionDischarge};
    let broker = start(BrokerConfig::default()).await;
    let mut connection = connect(&broker, "client").await;
    let mut session = Session::begin(&mut connection).await.unwrap();
    let controller = Controller::attach(&mut session, "controller").await.unwrap();
    let mut live = Vec::new();
    for _ in 0..MAX_LIVE_TRANSACTIONS {
        let mut transaction = Transaction::declare(&controller, None).await.unwrap();
        transaction.set_rollback_on_drop_trials(0);
        live.push(transaction);
    }
    let error = format!("{:?}", Transaction::declare(&controller, None).await.unwrap_err());
    assert!(
        error.contains("ResourceLimitExceeded") && error.contains("at most 1024 transactions"),
        "{error}"
    );
    live.pop().unwrap().rollback().await.unwrap();
    let mut again = Transaction::declare(&controller, None).await.unwrap();
    again.set_rollback_on_drop_trials(0);
    connection.close().await.unwrap();
}

/// Reads from a raw socket until the broker closes it; returns what it sent first.
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt as _;
    let mut seen = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return seen,
            Ok(Ok(n)) => seen.extend_from_slice(&buffer[..n]),
            Err(_) => panic!("the broker kept a hostile connection open; it sent {seen:?}"),
        }
    }
}

/// Checks that the broker still serves: a message sent before the hostile clients is received
/// and completed by a well-behaved one.
pub(super) async fn assert_still_serves(broker: &Broker) {
    let mut connection = connect(broker, "good").await;
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut receiver = Receiver::attach(&mut session, "receiver", "kept").await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(5), receiver.recv::<Body<Value>>())
        .await
        .expect("the message sent before the garbage")
        .unwrap();
    receiver.accept(&delivery).await.unwrap();
    wait_for_depth(&broker.queue, "kept", QueueDepth::default()).await;
    connection.close().await.unwrap();
}

#[tokio::test]
async fn garbage_silence_and_bad_frames_close_the_connection_and_the_broker_keeps_serving() {
    use tokio::io::AsyncWriteExt as _;
    let broker = start(BrokerConfig {
        handshake_timeout: Duration::from_millis(300),
        ..BrokerConfig::default()
    })
    .await;
    let mut connection = connect(&broker, "sender").await;
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "sender", "kept").await.unwrap();
    sender.send(Message::from("keep me")).await.unwrap();
    connection.close().await.unwrap();
    let addr = broker.address.trim_start_matches("amqp://").to_string();

    // Not AMQP at all.
    let mut http = tokio::net::TcpStream::connect(&addr).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert_eq!(
        read_until_closed(&mut http).await,
        b"",
        "no answer to a non-AMQP client"
    );

    // Connects and says nothing: dropped at the handshake deadline.
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert_eq!(read_until_closed(&mut silent).await, b"");

    // A valid protocol header, then a frame claiming 4 GiB.
    let mut huge = tokio::net::TcpStream::connect(&addr).await.unwrap();
    huge.write_all(b"AMQP\x00\x01\x00\x00").await.unwrap();
    huge.write_all(&[0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0]).await.unwrap();
    assert_eq!(read_until_closed(&mut huge).await, b"AMQP\x00\x01\x00\x00");

    // A valid header, then a well-sized frame of noise.
    let mut noise = tokio::net::TcpStream::connect(&addr).await.unwrap();
    noise.write_all(b"AMQP\x00\x01\x00\x00").await.unwrap();
    let mut frame = vec![0, 0, 0, 40, 2, 0, 0, 0];
    frame.extend((0u8..32).map(|i| i.wrapping_mul(37)));
    noise.write_all(&frame).await.unwrap();
    let answer = read_until_closed(&mut noise).await;
    assert!(answer.starts_with(b"AMQP\x00\x01\x00\x00"), "{answer:?}");

    // A SASL init that does not decode.
    let mut sasl = tokio::net::TcpStream::connect(&addr).await.unwrap();
    sasl.write_all(b"AMQP\x03\x01\x00\x00").await.unwrap();
    sasl.write_all(&[0, 0, 0, 12, 2, 1, 0, 0, 0xde, 0xad, 0xbe, 0xef])
        .await
        .unwrap();
    let answer = read_until_closed(&mut sasl).await;
    assert!(answer.starts_with(b"AMQP\x03\x01\x00\x00"), "{answer:?}");

    assert_still_serves(&broker).await;
}

#[tokio::test]
async fn a_connected_client_that_never_settles_loses_its_lock_to_the_next_receiver() {
    let lock = Duration::from_millis(800);
    let broker = start(BrokerConfig {
        lock_duration: lock,
        ..BrokerConfig::default()
    })
    .await;
    let mut hoarder = connect(&broker, "hoarder").await;
    let mut hoarding = Session::begin(&mut hoarder).await.unwrap();
    let mut sender = Sender::attach(&mut hoarding, "sender", "jobs").await.unwrap();
    sender.send(Message::from("job")).await.unwrap();
    // One credit: once it holds the message, the hoarder is offered nothing more.
    let mut hoarding_receiver = Receiver::builder()
        .name("receiver")
        .source("jobs")
        .credit_mode(fe2o3_amqp::link::receiver::CreditMode::Manual)
        .attach(&mut hoarding)
        .await
        .unwrap();
    hoarding_receiver.set_credit(1).await.unwrap();
    let hoarded = tokio::time::timeout(Duration::from_secs(5), hoarding_receiver.recv::<Body<Value>>())
        .await
        .expect("a delivery")
        .unwrap();

    // The hoarder stays connected and never settles; another receiver gets the message once
    // the lock runs out.
    let mut worker = connect(&broker, "worker").await;
    let mut working = Session::begin(&mut worker).await.unwrap();
    let mut receiver = Receiver::attach(&mut working, "receiver", "jobs").await.unwrap();
    let again = tokio::time::timeout(Duration::from_secs(5), receiver.recv::<Body<Value>>())
        .await
        .expect("redelivered while the hoarder is still connected")
        .unwrap();
    assert_eq!(again.message().header.as_ref().unwrap().delivery_count, 1);
    receiver.accept(&again).await.unwrap();
    wait_for_depth(&broker.queue, "jobs", QueueDepth::default()).await;

    // Settling late changes nothing: the message is not completed twice or brought back.
    let _ = hoarding_receiver.accept(&hoarded).await;
    assert_eq!(broker.queue.queue_depth("jobs").await.unwrap(), QueueDepth::default());
    worker.close().await.unwrap();
    hoarder.close().await.unwrap();
}

#[tokio::test]
async fn a_receiver_on_a_deleted_queue_is_detached_with_not_found() {
    let broker = start(BrokerConfig::default()).await;
    let mut connection = connect(&broker, "client").await;
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut receiver = Receiver::attach(&mut session, "receiver", "doomed").await.unwrap();
    let waiting = tokio::spawn(async move {
        let received = tokio::time::timeout(Duration::from_secs(5), receiver.recv::<Body<Value>>()).await;
        (received, receiver)
    });
    // Give the receive time to be waiting on the queue.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(broker.queue.delete_queue("doomed").await.unwrap());
    let (received, _receiver) = waiting.await.unwrap();
    let error = received.expect("the link is detached, not left waiting").unwrap_err();
    let text = format!("{error:?}");
    assert!(text.contains("NotFound") && text.contains("doomed"), "{text}");
    // The connection serves on; naming the queue again creates it again, on first use.
    let mut sender = Sender::attach(&mut session, "sender", "doomed").await.unwrap();
    let outcome = sender
        .send(Message::builder().data(b"again".to_vec()).build())
        .await
        .unwrap();
    assert!(outcome.is_accepted(), "{outcome:?}");
}
