//! The Service Bus transport's sessions against `sagahost broker` on loopback: accepting the next
//! available or a named session, competing receivers, order through abandons, lock renewal,
//! session state, release, and settling a session message with outputs in a transaction.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use sagahost_broker::{self as broker, BrokerConfig};
use sagahost_transport::embedded::{EmbeddedQueue, QueueSettings};
use sagahost_transport::servicebus::{ServiceBusOptions, ServiceBusTransport};
use sagahost_transport::sessions::Sessions;
use sagahost_transport::{OutgoingMessage, Output, ReceivedMessage, Settlement, Transport, TransportError};

const WAIT: Duration = Duration::from_secs(5);
const SHORT: Duration = Duration::from_millis(300);

/// A broker serving a session-enabled `orders` (with `lock` as its lock duration) and a plain
/// `replies`.
struct Broker {
    address: SocketAddr,
    queue: EmbeddedQueue,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Broker {
    async fn start(lock: Duration) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let orders = QueueSettings {
            lock_duration: lock,
            requires_session: true,
            ..QueueSettings::new("orders")
        };
        let queue =
            EmbeddedQueue::open(&dir.path().join("queue.db"), &[orders, QueueSettings::new("replies")]).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(broker::serve_with(
            listener,
            queue.clone(),
            BrokerConfig::default(),
            shutdown.clone(),
        ));
        Self {
            address,
            queue,
            shutdown,
            _dir: dir,
        }
    }

    async fn client(&self) -> ServiceBusTransport {
        let connection_string = format!(
            "Endpoint=sb://127.0.0.1:{}/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true",
            self.address.port()
        );
        ServiceBusTransport::connect(&connection_string, ServiceBusOptions::default())
            .await
            .unwrap()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn in_session(session: &str, body: &str) -> Output {
    Output {
        queue: "orders".into(),
        message: OutgoingMessage {
            session_id: Some(session.into()),
            body: body.into(),
            ..OutgoingMessage::default()
        },
    }
}

fn text(message: &ReceivedMessage) -> String {
    String::from_utf8(message.body.clone()).unwrap()
}

async fn receive_one(
    client: &ServiceBusTransport,
    session: &sagahost_transport::sessions::SessionLock,
) -> ReceivedMessage {
    let mut batch = client.receive_in_session(session, 1, WAIT).await.unwrap();
    assert_eq!(batch.len(), 1, "nothing came in session `{}`", session.session_id);
    batch.remove(0)
}

#[tokio::test]
async fn accepts_the_next_available_or_a_named_session_and_refuses_a_held_one() {
    let broker = Broker::start(Duration::from_secs(30)).await;
    let (mine, theirs) = (broker.client().await, broker.client().await);
    mine.send(vec![in_session("a", "a1"), in_session("b", "b1")])
        .await
        .unwrap();

    let a = mine.accept_session("orders", None, WAIT).await.unwrap().unwrap();
    assert_eq!(
        (a.queue.as_str(), a.session_id.as_str()),
        ("orders", "a"),
        "the oldest message's session"
    );
    assert!(a.locked_until > SystemTime::now());
    let b = mine.accept_session("orders", Some("b"), WAIT).await.unwrap().unwrap();
    assert_eq!(b.session_id, "b");
    let empty = mine.accept_session("orders", Some("c"), WAIT).await.unwrap().unwrap();
    assert_eq!(empty.session_id, "c", "a named session may have no messages yet");

    let started = std::time::Instant::now();
    assert!(theirs.accept_session("orders", None, SHORT).await.unwrap().is_none());
    assert!(
        started.elapsed() < SHORT + Duration::from_secs(2),
        "waited {:?}",
        started.elapsed()
    );
    let held = theirs.accept_session("orders", Some("a"), WAIT).await.unwrap_err();
    assert!(
        matches!(held, TransportError::SessionLockLost { ref session_id, .. } if session_id == "a"),
        "{held}"
    );

    assert_eq!(text(&receive_one(&mine, &a).await), "a1");
    assert_eq!(text(&receive_one(&mine, &b).await), "b1");
    assert!(mine.receive_in_session(&empty, 1, SHORT).await.unwrap().is_empty());
    mine.close().await;
    theirs.close().await;
}

#[tokio::test]
async fn competing_clients_get_different_sessions_each_in_order() {
    let broker = Broker::start(Duration::from_secs(30)).await;
    let sender = broker.client().await;
    let outputs: Vec<Output> = (0..40)
        .map(|n| in_session(&format!("record-{}", n % 4), &n.to_string()))
        .collect();
    sender.send(outputs).await.unwrap();

    let completed = Arc::new(std::sync::Mutex::new(BTreeMap::<String, Vec<u32>>::new()));
    let (one, two) = (broker.client().await, broker.client().await);
    // Both at once: each gets a session of its own.
    let (first, second) = tokio::join!(
        one.accept_session("orders", None, WAIT),
        two.accept_session("orders", None, WAIT)
    );
    let (first, second) = (first.unwrap().unwrap(), second.unwrap().unwrap());
    assert_ne!(first.session_id, second.session_id);
    let mut receivers = tokio::task::JoinSet::new();
    for (client, session) in [(one, first), (two, second)] {
        let completed = completed.clone();
        receivers.spawn(async move {
            let mut sessions = Vec::new();
            let mut next = Some(session);
            while let Some(session) = next {
                sessions.push(session.session_id.clone());
                loop {
                    let batch = client.receive_in_session(&session, 3, SHORT).await.unwrap();
                    if batch.is_empty() {
                        break;
                    }
                    for message in batch {
                        client.settle(&message, Settlement::Complete, Vec::new()).await.unwrap();
                        let entry = text(&message).parse().unwrap();
                        completed
                            .lock()
                            .unwrap()
                            .entry(session.session_id.clone())
                            .or_default()
                            .push(entry);
                    }
                }
                client.release_session(&session).await.unwrap();
                next = client.accept_session("orders", None, SHORT).await.unwrap();
            }
            client.close().await;
            sessions
        });
    }
    let mut accepted = Vec::new();
    while let Some(sessions) = receivers.join_next().await {
        accepted.extend(sessions.unwrap());
    }
    accepted.sort();
    accepted.dedup();
    assert_eq!(accepted.len(), 4, "{accepted:?}");
    sender.close().await;
    let completed = completed.lock().unwrap();
    for (session, numbers) in completed.iter() {
        let mut sorted = numbers.clone();
        sorted.sort_unstable();
        assert_eq!(numbers, &sorted, "session {session} completed out of order");
        assert_eq!(numbers.len(), 10, "session {session} lost or repeated messages");
    }
}

#[tokio::test]
async fn an_abandoned_session_message_comes_back_first() {
    let broker = Broker::start(Duration::from_secs(30)).await;
    let client = broker.client().await;
    client
        .send(vec![in_session("a", "create"), in_session("a", "update")])
        .await
        .unwrap();
    let session = client.accept_session("orders", None, WAIT).await.unwrap().unwrap();
    let create = receive_one(&client, &session).await;
    assert_eq!(create.session_id.as_deref(), Some("a"));
    client.settle(&create, Settlement::Abandon, Vec::new()).await.unwrap();

    let again = receive_one(&client, &session).await;
    assert_eq!((text(&again).as_str(), again.delivery_count), ("create", 2));
    client.settle(&again, Settlement::Complete, Vec::new()).await.unwrap();
    assert_eq!(text(&receive_one(&client, &session).await), "update");
    client.close().await;
}

#[tokio::test]
async fn renewing_a_message_or_its_session_renews_the_session() {
    let broker = Broker::start(Duration::from_secs(2)).await;
    let (client, rival) = (broker.client().await, broker.client().await);
    client
        .send(vec![in_session("a", "one"), in_session("a", "two")])
        .await
        .unwrap();
    let session = client.accept_session("orders", Some("a"), WAIT).await.unwrap().unwrap();
    let one = receive_one(&client, &session).await;
    let two = receive_one(&client, &session).await;

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let by_message = client.renew_lock(&one).await.unwrap();
    assert!(
        by_message > one.locked_until,
        "{by_message:?} after {:?}",
        one.locked_until
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Past the first lock's end: renewing one message renewed the session, and with it the
    // other message's lock.
    client.settle(&two, Settlement::Complete, Vec::new()).await.unwrap();
    let by_session = client.renew_session_lock(&session).await.unwrap();
    assert!(by_session > by_message);
    tokio::time::sleep(Duration::from_millis(1200)).await;

    // Past the second, the session and its message are still this client's.
    let held = rival.accept_session("orders", Some("a"), WAIT).await.unwrap_err();
    assert!(matches!(held, TransportError::SessionLockLost { .. }), "{held}");
    client.settle(&one, Settlement::Complete, Vec::new()).await.unwrap();
    client.close().await;
    rival.close().await;
}

#[tokio::test]
async fn the_lock_holder_reads_and_replaces_the_session_state() {
    let broker = Broker::start(Duration::from_secs(30)).await;
    let client = broker.client().await;
    let session = client.accept_session("orders", Some("a"), WAIT).await.unwrap().unwrap();
    assert_eq!(client.session_state(&session).await.unwrap(), None);
    client
        .set_session_state(&session, Some(b"step-1".to_vec()))
        .await
        .unwrap();
    assert_eq!(
        client.session_state(&session).await.unwrap().as_deref(),
        Some(&b"step-1"[..])
    );
    client.set_session_state(&session, None).await.unwrap();
    assert_eq!(client.session_state(&session).await.unwrap(), None);
    client
        .set_session_state(&session, Some(b"step-2".to_vec()))
        .await
        .unwrap();
    client.release_session(&session).await.unwrap();

    let lost = client.session_state(&session).await.unwrap_err();
    assert!(matches!(lost, TransportError::SessionLockLost { .. }), "{lost}");
    let other = broker.client().await;
    let again = other.accept_session("orders", Some("a"), WAIT).await.unwrap().unwrap();
    assert_eq!(
        other.session_state(&again).await.unwrap().as_deref(),
        Some(&b"step-2"[..])
    );
    client.close().await;
    other.close().await;
}

#[tokio::test]
async fn a_released_session_goes_to_the_next_client_with_its_unsettled_message() {
    let broker = Broker::start(Duration::from_secs(30)).await;
    let (first, second) = (broker.client().await, broker.client().await);
    first
        .send(vec![in_session("a", "one"), in_session("a", "two")])
        .await
        .unwrap();
    let session = first.accept_session("orders", None, WAIT).await.unwrap().unwrap();
    let unsettled = receive_one(&first, &session).await;
    first.release_session(&session).await.unwrap();

    let lost = first
        .settle(&unsettled, Settlement::Complete, Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(lost, TransportError::LockLost { .. }), "{lost}");
    let gone = first.receive_in_session(&session, 1, SHORT).await.unwrap_err();
    assert!(matches!(gone, TransportError::SessionLockLost { .. }), "{gone}");

    let next = second.accept_session("orders", None, WAIT).await.unwrap().unwrap();
    assert_eq!(next.session_id, "a");
    let redelivered = receive_one(&second, &next).await;
    assert_eq!(text(&redelivered), "one");
    assert_eq!(redelivered.sequence_number, unsettled.sequence_number);
    second
        .settle(&redelivered, Settlement::Complete, Vec::new())
        .await
        .unwrap();
    assert_eq!(text(&receive_one(&second, &next).await), "two");
    first.close().await;
    second.close().await;
}

#[tokio::test]
async fn a_session_message_settles_with_its_outputs_in_one_transaction() {
    let broker = Broker::start(Duration::from_secs(30)).await;
    let client = broker.client().await;
    assert!(client.atomic_settle_and_send());
    client
        .send(vec![in_session("a", "request"), in_session("a", "next")])
        .await
        .unwrap();
    let session = client.accept_session("orders", None, WAIT).await.unwrap().unwrap();
    let request = receive_one(&client, &session).await;
    let reply = Output {
        queue: "replies".into(),
        message: OutgoingMessage {
            body: b"reply".to_vec(),
            ..OutgoingMessage::default()
        },
    };
    let follow_up = in_session("b", "follow-up");
    client
        .settle(&request, Settlement::Complete, vec![reply, follow_up])
        .await
        .unwrap();

    let replies = client.receive("replies", 1, WAIT).await.unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].body, b"reply");
    assert_eq!(
        text(&receive_one(&client, &session).await),
        "next",
        "the request was completed"
    );
    let b = client.accept_session("orders", Some("b"), WAIT).await.unwrap().unwrap();
    assert_eq!(text(&receive_one(&client, &b).await), "follow-up");
    client.close().await;
}

#[tokio::test]
async fn a_session_queue_refuses_a_plain_receiver_and_a_plain_queue_refuses_sessions() {
    let broker = Broker::start(Duration::from_secs(30)).await;
    let client = broker.client().await;
    client.send(vec![in_session("a", "one")]).await.unwrap();
    let refused = client.receive("orders", 1, SHORT).await.unwrap_err().to_string();
    assert!(refused.contains("orders"), "{refused}");
    let refused = client
        .accept_session("replies", None, SHORT)
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("replies"), "{refused}");
    assert_eq!(
        broker.queue.queue_depth("orders").await.unwrap().active,
        1,
        "nothing was taken"
    );
    client.close().await;
}

#[tokio::test]
async fn a_waiting_accept_returns_when_a_session_message_arrives() {
    let broker = Broker::start(Duration::from_secs(30)).await;
    let (client, sender) = (broker.client().await, broker.client().await);
    let late = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        sender.send(vec![in_session("late", "x")]).await.unwrap();
    };
    let (accepted, ()) = tokio::join!(client.accept_session("orders", None, WAIT), late);
    let session = accepted.unwrap().unwrap();
    assert_eq!(session.session_id, "late");
    assert_eq!(text(&receive_one(&client, &session).await), "x");
    client.close().await;
    sender.close().await;
}

#[tokio::test]
async fn an_expired_session_lock_is_lost_and_the_session_goes_to_the_next_client() {
    let broker = Broker::start(Duration::from_secs(1)).await;
    let (first, second) = (broker.client().await, broker.client().await);
    first.send(vec![in_session("a", "one")]).await.unwrap();
    let session = first.accept_session("orders", None, WAIT).await.unwrap().unwrap();
    let message = receive_one(&first, &session).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let lost = first
        .settle(&message, Settlement::Complete, Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(lost, TransportError::LockLost { .. }), "{lost}");
    let lost = first.renew_session_lock(&session).await.unwrap_err();
    assert!(matches!(lost, TransportError::SessionLockLost { .. }), "{lost}");
    let lost = first.receive_in_session(&session, 1, SHORT).await.unwrap_err();
    assert!(matches!(lost, TransportError::SessionLockLost { .. }), "{lost}");
    let next = second.accept_session("orders", None, WAIT).await.unwrap().unwrap();
    let again = receive_one(&second, &next).await;
    assert_eq!((text(&again).as_str(), again.delivery_count), ("one", 2));
    first.close().await;
    second.close().await;
}

#[tokio::test]
async fn closing_the_client_releases_its_sessions() {
    let broker = Broker::start(Duration::from_secs(30)).await;
    let (first, second) = (broker.client().await, broker.client().await);
    first.send(vec![in_session("a", "one")]).await.unwrap();
    let session = first.accept_session("orders", Some("a"), WAIT).await.unwrap().unwrap();
    receive_one(&first, &session).await;
    first.close().await;

    let next = second.accept_session("orders", Some("a"), WAIT).await.unwrap().unwrap();
    assert_eq!(text(&receive_one(&second, &next).await), "one");
    second.close().await;
}
