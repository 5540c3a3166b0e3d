//! Sessions on the embedded queue: one receiver per session, in order, across competing
//! receivers, lock expiry, release and state.

use std::collections::BTreeMap;
use std::time::Duration;

use tempfile::TempDir;

use super::super::sessions::Sessions;
use super::super::{OutgoingMessage, Output, Settlement, Transport, TransportError};
use super::{EmbeddedQueue, QueueSettings};

const NO_WAIT: Duration = Duration::ZERO;

fn session_queue(name: &str, lock_ms: u64) -> QueueSettings {
    QueueSettings {
        lock_duration: Duration::from_millis(lock_ms),
        requires_session: true,
        ..QueueSettings::new(name)
    }
}

fn open(dir: &TempDir, queues: &[QueueSettings]) -> EmbeddedQueue {
    EmbeddedQueue::open(&dir.path().join("queue.db"), queues).expect("open queue")
}

fn in_session(session: &str, body: &str) -> Output {
    Output {
        queue: "orders".into(),
        message: OutgoingMessage {
            session_id: Some(session.into()),
            body: body.into(),
            ..Default::default()
        },
    }
}

fn text(body: &[u8]) -> String {
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn a_session_queue_refuses_what_bypasses_sessions_and_says_how() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[session_queue("orders", 30_000), QueueSettings::new("plain")]);

    let unsessioned = Output {
        queue: "orders".into(),
        message: OutgoingMessage::default(),
    };
    let refused = q.send(vec![unsessioned]).await.unwrap_err().to_string();
    assert!(
        refused.contains("`orders` is session-enabled") && refused.contains("session id"),
        "{refused}"
    );

    let refused = q.receive("orders", 1, NO_WAIT).await.unwrap_err().to_string();
    assert!(refused.contains("through a session"), "{refused}");

    let refused = q.accept_session("plain", None, NO_WAIT).await.unwrap_err().to_string();
    assert!(refused.contains("`plain` is not session-enabled"), "{refused}");
}

#[tokio::test]
async fn each_session_goes_to_one_receiver_and_its_messages_come_in_order() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[session_queue("orders", 30_000)]);
    q.send(vec![
        in_session("a", "a1"),
        in_session("b", "b1"),
        in_session("a", "a2"),
        in_session("b", "b2"),
        in_session("a", "a3"),
    ])
    .await
    .unwrap();

    let first = q.accept_session("orders", None, NO_WAIT).await.unwrap().unwrap();
    assert_eq!(first.session_id, "a", "the session of the oldest message comes first");
    let second = q.accept_session("orders", None, NO_WAIT).await.unwrap().unwrap();
    assert_eq!(second.session_id, "b", "a held session is passed over");
    assert!(q.accept_session("orders", None, NO_WAIT).await.unwrap().is_none());
    let taken = q.accept_session("orders", Some("a"), NO_WAIT).await.unwrap_err();
    assert!(matches!(taken, TransportError::SessionLockLost { .. }), "{taken}");

    let batch = q.receive_in_session(&first, 10, NO_WAIT).await.unwrap();
    let bodies: Vec<String> = batch.iter().map(|m| text(&m.body)).collect();
    assert_eq!(bodies, ["a1", "a2", "a3"]);
    assert!(batch.iter().all(|m| m.session_id.as_deref() == Some("a")));
    let b = q.receive_in_session(&second, 1, NO_WAIT).await.unwrap();
    assert_eq!(text(&b[0].body), "b1");
}

#[tokio::test]
async fn an_abandoned_message_is_the_sessions_next_and_later_ones_wait() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[session_queue("orders", 30_000)]);
    q.send(vec![in_session("a", "create"), in_session("a", "update")])
        .await
        .unwrap();
    let session = q.accept_session("orders", None, NO_WAIT).await.unwrap().unwrap();
    let create = q.receive_in_session(&session, 1, NO_WAIT).await.unwrap().remove(0);
    q.settle(&create, Settlement::Abandon, Vec::new()).await.unwrap();

    let again = q.receive_in_session(&session, 1, NO_WAIT).await.unwrap().remove(0);
    assert_eq!((text(&again.body).as_str(), again.delivery_count), ("create", 2));
    q.settle(&again, Settlement::Complete, Vec::new()).await.unwrap();
    let update = q.receive_in_session(&session, 1, NO_WAIT).await.unwrap().remove(0);
    assert_eq!(text(&update.body), "update");
}

#[tokio::test]
async fn a_released_or_expired_session_goes_to_the_next_receiver_with_its_state() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[session_queue("orders", 300)]);
    q.send(vec![in_session("a", "one"), in_session("a", "two")])
        .await
        .unwrap();

    let mine = q.accept_session("orders", Some("a"), NO_WAIT).await.unwrap().unwrap();
    q.set_session_state(&mine, Some(b"step-1".to_vec())).await.unwrap();
    let unsettled = q.receive_in_session(&mine, 1, NO_WAIT).await.unwrap().remove(0);
    q.release_session(&mine).await.unwrap();
    let lost = q
        .settle(&unsettled, Settlement::Complete, Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(lost, TransportError::LockLost { .. }), "{lost}");
    assert!(matches!(
        q.session_state(&mine).await.unwrap_err(),
        TransportError::SessionLockLost { .. }
    ));

    let next = q.accept_session("orders", None, NO_WAIT).await.unwrap().unwrap();
    assert_eq!(q.session_state(&next).await.unwrap().as_deref(), Some(&b"step-1"[..]));
    let redelivered = q.receive_in_session(&next, 1, NO_WAIT).await.unwrap().remove(0);
    assert_eq!(
        (text(&redelivered.body).as_str(), redelivered.delivery_count),
        ("one", 2)
    );

    // Renewing a message's lock renews its session past the first expiry...
    tokio::time::sleep(Duration::from_millis(200)).await;
    q.renew_lock(&redelivered).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(q.accept_session("orders", None, NO_WAIT).await.unwrap().is_none());
    // ...and once it runs out, the session and its message go to the next receiver.
    tokio::time::sleep(Duration::from_millis(350)).await;
    let third = q.accept_session("orders", None, NO_WAIT).await.unwrap().unwrap();
    let stale = q
        .settle(&redelivered, Settlement::Complete, Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(stale, TransportError::LockLost { .. }), "{stale}");
    assert!(matches!(
        q.renew_session_lock(&next).await.unwrap_err(),
        TransportError::SessionLockLost { .. }
    ));
    let again = q.receive_in_session(&third, 1, NO_WAIT).await.unwrap().remove(0);
    assert_eq!((text(&again.body).as_str(), again.delivery_count), ("one", 3));
}

#[tokio::test]
async fn a_waiting_accept_returns_when_a_session_message_arrives() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[session_queue("orders", 30_000)]);
    let sender = q.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        sender.send(vec![in_session("late", "x")]).await.unwrap();
    });
    let accepted = q.accept_session("orders", None, Duration::from_secs(5)).await.unwrap();
    assert_eq!(accepted.unwrap().session_id, "late");
}

/// Four competing receivers, each taking one message at a time from the session it holds and
/// abandoning every third delivery: every session's messages are completed in the order sent.
#[tokio::test]
async fn competing_receivers_keep_every_sessions_order_through_abandons() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[session_queue("orders", 30_000)]);
    let outputs: Vec<Output> = (0..200)
        .map(|n| in_session(&format!("record-{}", n % 10), &n.to_string()))
        .collect();
    q.send(outputs).await.unwrap();

    let completed = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::<String, Vec<u32>>::new()));
    let receivers: Vec<_> = (0..4)
        .map(|receiver| {
            let q = q.clone();
            let completed = completed.clone();
            tokio::spawn(async move {
                let mut deliveries = receiver;
                while let Some(session) = q.accept_session("orders", None, NO_WAIT).await.unwrap() {
                    while let Some(message) = q.receive_in_session(&session, 1, NO_WAIT).await.unwrap().pop() {
                        deliveries += 1;
                        if deliveries % 3 == 0 {
                            q.settle(&message, Settlement::Abandon, Vec::new()).await.unwrap();
                            continue;
                        }
                        q.settle(&message, Settlement::Complete, Vec::new()).await.unwrap();
                        let n: u32 = text(&message.body).parse().unwrap();
                        completed
                            .lock()
                            .unwrap()
                            .entry(session.session_id.clone())
                            .or_default()
                            .push(n);
                    }
                    q.release_session(&session).await.unwrap();
                }
            })
        })
        .collect();
    for receiver in receivers {
        receiver.await.unwrap();
    }
    let completed = completed.lock().unwrap();
    assert_eq!(completed.len(), 10);
    for (session, numbers) in completed.iter() {
        let mut sorted = numbers.clone();
        sorted.sort_unstable();
        assert_eq!(numbers, &sorted, "session {session} completed out of order");
        assert_eq!(numbers.len(), 20, "session {session} lost or repeated messages");
    }
}
