//! Service Bus sessions through the broker, driven by fe2o3-amqp's client: session receivers
//! (`connection/session_links.rs`) and the session operations of `$management`
//! (`management/sessions.rs`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fe2o3_amqp::link::{Receiver, Sender};
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::{AmqpValue, ApplicationProperties, Body, Message, Properties, Source};
use fe2o3_amqp::types::primitives::{Array, Binary, OrderedMap, SimpleValue, Symbol, Uuid, Value};
use fe2o3_amqp::{Delivery, Session};
use sagahost_transport::embedded::{QueueDepth, QueueSettings};
use sagahost_transport::servicebus::dialect::{OPERATION_TIMEOUT, SESSION_FILTER, SESSION_LOCKED_UNTIL, dotnet_ticks};

use super::BrokerConfig;
use super::tests::{Broker, connect, start, wait_for_depth};

/// A broker with the session-enabled queue `orders` (and no other queue declared).
async fn broker_with_sessions(lock: Duration) -> Broker {
    start(BrokerConfig {
        queues: vec![QueueSettings {
            lock_duration: lock,
            requires_session: true,
            ..QueueSettings::new("orders")
        }],
        ..BrokerConfig::default()
    })
    .await
}

fn message(session_id: Option<&str>, body: &str) -> Message<AmqpValue<Value>> {
    Message::builder()
        .properties(Properties {
            message_id: Some(body.to_owned().into()),
            group_id: session_id.map(str::to_owned),
            ..Properties::default()
        })
        .value(Value::String(body.to_owned()))
        .build()
}

/// Sends `(session, body)` pairs to `queue`, each accepted.
async fn send(session: &mut SessionHandle<()>, queue: &str, messages: &[(&str, &str)]) {
    let mut sender = Sender::attach(session, format!("sender-{queue}"), queue).await.unwrap();
    for (session_id, body) in messages {
        let outcome = sender.send(message(Some(session_id), body)).await.unwrap();
        assert!(outcome.is_accepted(), "{outcome:?}");
    }
    sender.close().await.unwrap();
}

/// Attaches a session receiver to `queue`: for session `id`, or the next available one; with the
/// client's `com.microsoft:timeout` when `wait` is given. The error text when refused.
async fn accept(
    session: &mut SessionHandle<()>,
    name: &str,
    queue: &str,
    id: Option<&str>,
    wait: Option<Duration>,
) -> Result<Receiver, String> {
    let mut filter = OrderedMap::new();
    filter.insert(
        Symbol::from(SESSION_FILTER),
        id.map_or(Value::Null, |id| Value::String(id.to_owned())),
    );
    let mut properties = OrderedMap::new();
    if let Some(wait) = wait {
        properties.insert(
            Symbol::from(OPERATION_TIMEOUT),
            Value::Uint(u32::try_from(wait.as_millis()).unwrap()),
        );
    }
    // fe2o3 would fail the attach of a refused receiver itself (its answer names no session)
    // before the detach that says why arrives.
    let attach = Receiver::builder()
        .name(name)
        .source(Source::builder().address(queue).filter(filter).build())
        .properties(properties)
        .verify_incoming_source(false)
        .attach(session);
    let mut receiver = tokio::time::timeout(Duration::from_secs(10), attach)
        .await
        .expect("the attach is answered")
        .map_err(|error| format!("{error:?}"))?;
    if session_of(&receiver).is_none() {
        // Refused: the detach with the reason follows the attach.
        let detached = tokio::time::timeout(Duration::from_secs(5), receiver.recv::<Body<Value>>())
            .await
            .expect("a refused receiver is detached");
        return Err(format!("{:?}", detached.err()));
    }
    Ok(receiver)
}

/// The session id the broker's attach named.
fn session_of(receiver: &Receiver) -> Option<String> {
    match receiver
        .source()
        .as_ref()?
        .filter
        .as_ref()?
        .get(&Symbol::from(SESSION_FILTER))?
    {
        Value::String(id) => Some(id.clone()),
        _ => None,
    }
}

async fn receive(receiver: &mut Receiver) -> Delivery<Body<Value>> {
    tokio::time::timeout(Duration::from_secs(5), receiver.recv::<Body<Value>>())
        .await
        .expect("a delivery")
        .unwrap()
}

fn body_of(delivery: &Delivery<Body<Value>>) -> String {
    match &delivery.message().body {
        Body::Value(value) => match &value.0 {
            Value::String(text) => text.clone(),
            other => panic!("a string body, not {other:?}"),
        },
        other => panic!("a value body, not {other:?}"),
    }
}

fn group_of(delivery: &Delivery<Body<Value>>) -> Option<String> {
    delivery.message().properties.as_ref()?.group_id.clone()
}

/// A `$management` request/reply pair of links on `queue`.
struct Management {
    requests: Sender,
    replies: Receiver,
    sent: u32,
}

/// What a management reply said.
struct Reply {
    status: i32,
    condition: Option<String>,
    body: OrderedMap<Value, Value>,
}

impl Management {
    async fn attach(session: &mut SessionHandle<()>, queue: &str) -> Self {
        let node = format!("{queue}/$management");
        let requests = Sender::attach(session, "mgmt-requests", node.as_str()).await.unwrap();
        let replies = Receiver::builder()
            .name("mgmt-replies")
            .source(node.as_str())
            .target("mgmt-reply-to")
            .attach(session)
            .await
            .unwrap();
        Self {
            requests,
            replies,
            sent: 0,
        }
    }

    async fn call(&mut self, operation: &str, fields: Vec<(&str, Value)>) -> Reply {
        self.sent += 1;
        let mut body = OrderedMap::new();
        for (key, value) in fields {
            body.insert(Value::String(key.to_owned()), value);
        }
        let request = Message::builder()
            .properties(
                Properties::builder()
                    .message_id(format!("request-{}", self.sent))
                    .reply_to("mgmt-reply-to")
                    .build(),
            )
            .application_properties(ApplicationProperties::builder().insert("operation", operation).build())
            .value(Value::Map(body))
            .build();
        self.requests.send(request).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), self.replies.recv::<Body<Value>>())
            .await
            .expect("a reply")
            .unwrap();
        self.replies.accept(&reply).await.unwrap();
        let reply = reply.message();
        let properties = &reply.application_properties.as_ref().unwrap().0;
        let Some(SimpleValue::Int(status)) = properties.get("statusCode") else {
            panic!("no statusCode in {properties:?}");
        };
        let condition = match properties.get("errorCondition") {
            Some(SimpleValue::Symbol(condition)) => Some(condition.as_str().to_owned()),
            _ => None,
        };
        let body = match &reply.body {
            Body::Value(value) => match &value.0 {
                Value::Map(map) => map.clone(),
                _ => OrderedMap::new(),
            },
            _ => OrderedMap::new(),
        };
        Reply {
            status: *status,
            condition,
            body,
        }
    }
}

impl Reply {
    fn get(&self, key: &str) -> Option<&Value> {
        self.body.get(&Value::String(key.to_owned()))
    }
}

fn session_id(id: &str) -> (&'static str, Value) {
    ("session-id", Value::String(id.to_owned()))
}

#[tokio::test]
async fn next_available_and_named_sessions_deliver_only_their_messages_in_order() {
    let broker = broker_with_sessions(Duration::from_secs(30)).await;
    let mut connection = connect(&broker, "client").await;
    let mut session = Session::begin(&mut connection).await.unwrap();
    send(
        &mut session,
        "orders",
        &[("a", "a1"), ("b", "b1"), ("a", "a2"), ("a", "a3")],
    )
    .await;

    let before = dotnet_ticks(SystemTime::now());
    let mut first = accept(&mut session, "first", "orders", None, None).await.unwrap();
    assert_eq!(
        session_of(&first).as_deref(),
        Some("a"),
        "the session of the oldest message"
    );
    let locked_until = first.properties(|properties| {
        properties
            .as_ref()
            .and_then(|properties| properties.get(&Symbol::from(SESSION_LOCKED_UNTIL)).cloned())
    });
    let Some(Value::Long(ticks)) = locked_until else {
        panic!("no {SESSION_LOCKED_UNTIL} long in the attach: {locked_until:?}");
    };
    assert!(
        ticks > before + 25 * 10_000_000,
        "locked for the queue's 30 s, in .NET ticks"
    );
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let delivery = receive(&mut first).await;
        assert_eq!(group_of(&delivery).as_deref(), Some("a"));
        bodies.push(body_of(&delivery));
        first.accept(&delivery).await.unwrap();
    }
    assert_eq!(bodies, ["a1", "a2", "a3"]);

    let mut named = accept(&mut session, "named", "orders", Some("b"), None).await.unwrap();
    assert_eq!(session_of(&named).as_deref(), Some("b"));
    let delivery = receive(&mut named).await;
    assert_eq!(
        (body_of(&delivery), group_of(&delivery)),
        ("b1".to_owned(), Some("b".to_owned()))
    );
    named.accept(&delivery).await.unwrap();
    wait_for_depth(&broker.queue, "orders", QueueDepth::default()).await;

    // A named session need not have messages yet; what is sent to it later is delivered.
    let mut waiting = accept(&mut session, "waiting", "orders", Some("c"), None)
        .await
        .unwrap();
    send(&mut session, "orders", &[("c", "c1")]).await;
    let delivery = receive(&mut waiting).await;
    assert_eq!(body_of(&delivery), "c1");
    waiting.accept(&delivery).await.unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn competing_receivers_get_different_sessions_and_the_next_waits_then_times_out() {
    let broker = broker_with_sessions(Duration::from_secs(30)).await;
    let mut connection = connect(&broker, "client").await;
    let mut session = Session::begin(&mut connection).await.unwrap();
    send(&mut session, "orders", &[("s1", "one"), ("s2", "two")]).await;

    let one = accept(&mut session, "one", "orders", None, None).await.unwrap();
    let two = accept(&mut session, "two", "orders", None, None).await.unwrap();
    let mut held = [session_of(&one).unwrap(), session_of(&two).unwrap()];
    held.sort();
    assert_eq!(held, ["s1", "s2"]);

    let started = std::time::Instant::now();
    let error = accept(&mut session, "three", "orders", None, Some(Duration::from_millis(600)))
        .await
        .expect_err("no third session to accept");
    assert!(error.contains("com.microsoft:timeout"), "{error}");
    assert!(started.elapsed() >= Duration::from_millis(500), "it waited first");

    // A session sent while a receiver waits is accepted by it.
    let mut other = connect(&broker, "sender").await;
    let mut sending = Session::begin(&mut other).await.unwrap();
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        send(&mut sending, "orders", &[("s3", "three")]).await;
        other.close().await.unwrap();
    });
    let three = accept(
        &mut session,
        "three-again",
        "orders",
        None,
        Some(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    assert_eq!(session_of(&three).as_deref(), Some("s3"));
    late.await.unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_session_held_by_one_receiver_cannot_be_locked_by_another_until_released() {
    let broker = broker_with_sessions(Duration::from_secs(30)).await;
    let mut connection = connect(&broker, "client").await;
    let mut session = Session::begin(&mut connection).await.unwrap();
    send(&mut session, "orders", &[("a", "a1")]).await;
    let mut holder = accept(&mut session, "holder", "orders", Some("a"), None).await.unwrap();
    let unsettled = receive(&mut holder).await;
    assert_eq!(body_of(&unsettled), "a1");

    let error = accept(&mut session, "rival", "orders", Some("a"), None)
        .await
        .expect_err("the session is held");
    assert!(error.contains("com.microsoft:session-cannot-be-locked"), "{error}");

    // Closing the holder releases the session with its unsettled message.
    holder.close().await.unwrap();
    let mut next = accept(&mut session, "next", "orders", Some("a"), None).await.unwrap();
    let again = receive(&mut next).await;
    assert_eq!(body_of(&again), "a1");
    assert_eq!(again.message().header.as_ref().unwrap().delivery_count, 1);
    next.accept(&again).await.unwrap();
    wait_for_depth(&broker.queue, "orders", QueueDepth::default()).await;
    connection.close().await.unwrap();
}

#[tokio::test]
async fn the_session_lock_is_renewed_through_management_and_lost_once_expired() {
    let broker = broker_with_sessions(Duration::from_millis(1500)).await;
    let mut connection = connect(&broker, "client").await;
    let mut session = Session::begin(&mut connection).await.unwrap();
    send(&mut session, "orders", &[("a", "a1")]).await;
    let mut management = Management::attach(&mut session, "orders").await;
    let mut receiver = accept(&mut session, "receiver", "orders", None, None).await.unwrap();
    let delivery = receive(&mut receiver).await;

    // Renewed past its first expiry, the session (and its message) stays locked.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        let renewed = management
            .call("com.microsoft:renew-session-lock", vec![session_id("a")])
            .await;
        assert_eq!(renewed.status, 200, "{:?}", renewed.condition);
        let Some(Value::Timestamp(expiration)) = renewed.get("expiration") else {
            panic!("no expiration timestamp");
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        assert!(expiration.milliseconds() > now + 1000, "renewed for the lock duration");
    }
    let mut rival = connect(&broker, "rival").await;
    let mut rivalling = Session::begin(&mut rival).await.unwrap();
    let error = accept(&mut rivalling, "rival", "orders", Some("a"), None).await.err();
    assert!(error.is_some_and(|error| error.contains("session-cannot-be-locked")));
    receiver.accept(&delivery).await.unwrap();

    // Left unrenewed, the lock expires: renewing and reading state fail as Service Bus fails them,
    // and another receiver may take the session.
    send(&mut session, "orders", &[("a", "a2")]).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    for operation in ["com.microsoft:renew-session-lock", "com.microsoft:get-session-state"] {
        let lost = management.call(operation, vec![session_id("a")]).await;
        assert_eq!(lost.status, 410, "{operation}");
        assert_eq!(
            lost.condition.as_deref(),
            Some("com.microsoft:session-lock-lost"),
            "{operation}"
        );
    }
    let mut taker = accept(&mut rivalling, "taker", "orders", Some("a"), None)
        .await
        .unwrap();
    assert_eq!(body_of(&receive(&mut taker).await), "a2");
    rival.close().await.unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn session_state_is_read_and_replaced_by_the_lock_holder_only() {
    let broker = broker_with_sessions(Duration::from_secs(30)).await;
    let mut connection = connect(&broker, "client").await;
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut management = Management::attach(&mut session, "orders").await;

    let refused = management
        .call("com.microsoft:get-session-state", vec![session_id("a")])
        .await;
    assert_eq!(
        (refused.status, refused.condition.as_deref()),
        (410, Some("com.microsoft:session-lock-lost")),
        "no receiver holds the session"
    );

    let receiver = accept(&mut session, "receiver", "orders", Some("a"), None)
        .await
        .unwrap();
    let empty = management
        .call("com.microsoft:get-session-state", vec![session_id("a")])
        .await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.get("session-state"), Some(&Value::Null));

    let state = Value::Binary(Binary::from(b"step 2".to_vec()));
    let set = management
        .call(
            "com.microsoft:set-session-state",
            vec![session_id("a"), ("session-state", state.clone())],
        )
        .await;
    assert_eq!(set.status, 200);
    let got = management
        .call("com.microsoft:get-session-state", vec![session_id("a")])
        .await;
    assert_eq!(got.get("session-state"), Some(&state));

    let cleared = management
        .call(
            "com.microsoft:set-session-state",
            vec![session_id("a"), ("session-state", Value::Null)],
        )
        .await;
    assert_eq!(cleared.status, 200);
    let got = management
        .call("com.microsoft:get-session-state", vec![session_id("a")])
        .await;
    assert_eq!(got.get("session-state"), Some(&Value::Null));

    let missing = management.call("com.microsoft:get-session-state", vec![]).await;
    assert_eq!(missing.status, 400, "a session operation needs its session id");
    receiver.close().await.unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn session_messages_are_peeked_renewed_and_settled_through_management() {
    let broker = broker_with_sessions(Duration::from_secs(30)).await;
    let mut connection = connect(&broker, "client").await;
    let mut session = Session::begin(&mut connection).await.unwrap();
    send(&mut session, "orders", &[("a", "a1"), ("b", "b1"), ("a", "a2")]).await;
    let mut management = Management::attach(&mut session, "orders").await;

    let peeked = management
        .call(
            "com.microsoft:peek-message",
            vec![
                ("from-sequence-number", Value::Long(0)),
                ("message-count", Value::Int(10)),
                session_id("a"),
            ],
        )
        .await;
    assert_eq!(peeked.status, 200);
    let Some(Value::List(messages)) = peeked.get("messages") else {
        panic!("no messages list");
    };
    assert_eq!(messages.len(), 2, "only session a's");

    let mut receiver = accept(&mut session, "receiver", "orders", Some("a"), None)
        .await
        .unwrap();
    let delivery = receive(&mut receiver).await;
    let token = super::tests::lock_token(delivery.delivery_tag());
    let tokens = || {
        (
            "lock-tokens",
            Value::Array(Array::from(vec![Value::Uuid(Uuid::from(token))])),
        )
    };
    let renewed = management.call("com.microsoft:renew-lock", vec![tokens()]).await;
    assert_eq!(renewed.status, 200, "{:?}", renewed.condition);
    let completed = management
        .call(
            "com.microsoft:update-disposition",
            vec![
                tokens(),
                ("disposition-status", Value::String("completed".into())),
                session_id("a"),
            ],
        )
        .await;
    assert_eq!(completed.status, 200, "{:?}", completed.condition);
    assert_eq!(broker.queue.queue_depth("orders").await.unwrap().active, 2);
    connection.close().await.unwrap();
}

#[tokio::test]
async fn receivers_and_messages_that_do_not_fit_the_queue_are_refused_with_why() {
    let broker = broker_with_sessions(Duration::from_secs(30)).await;
    let mut connection = connect(&broker, "client").await;
    let mut session = Session::begin(&mut connection).await.unwrap();

    let mut sender = Sender::attach(&mut session, "sender", "orders").await.unwrap();
    let outcome = sender.send(message(None, "loose")).await.unwrap();
    let text = format!("{outcome:?}");
    assert!(
        !outcome.is_accepted() && text.contains("SessionId was not set") && text.contains("orders"),
        "{text}"
    );
    assert_eq!(broker.queue.queue_depth("orders").await.unwrap(), QueueDepth::default());

    let plain = Receiver::attach(&mut session, "plain", "orders").await;
    let error = match plain {
        Err(error) => format!("{error:?}"),
        Ok(mut receiver) => format!("{:?}", receiver.recv::<Body<Value>>().await.err()),
    };
    assert!(
        error.contains("NotAllowed") && error.contains("requires sessions"),
        "{error}"
    );

    // fe2o3 leaves a session unusable after a refused attach: the next one starts afresh.
    let mut session = Session::begin(&mut connection).await.unwrap();
    let error = accept(&mut session, "sessionful", "plain-queue", None, None)
        .await
        .err()
        .unwrap();
    assert!(
        error.contains("NotAllowed") && error.contains("does not require sessions"),
        "{error}"
    );
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_queue_declared_in_the_config_must_agree_with_the_one_kept_from_an_earlier_run() {
    let dir = tempfile::TempDir::new().unwrap();
    let queue = sagahost_transport::embedded::EmbeddedQueue::open(&dir.path().join("q.db"), &[]).unwrap();
    queue.ensure_queue(QueueSettings::new("orders")).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = BrokerConfig {
        queues: vec![QueueSettings {
            requires_session: true,
            ..QueueSettings::new("orders")
        }],
        ..BrokerConfig::default()
    };
    let error = super::serve_with(listener, queue, config, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap_err();
    assert!(format!("{error:#}").contains("requires-session"), "{error:#}");
}
