use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

use super::super::dead_letters::DeadLetterQueues;
use super::super::{OutgoingMessage, Output, ReceivedMessage, Settlement, Transport, TransportError};
use super::store::{MAX_DELIVERY_COUNT_EXCEEDED, TTL_EXPIRED};
use super::{EmbeddedQueue, QueueDepth, QueueSettings};

const NO_WAIT: Duration = Duration::ZERO;

fn queue_with_lock(name: &str, lock_ms: u64) -> QueueSettings {
    QueueSettings {
        lock_duration: Duration::from_millis(lock_ms),
        ..QueueSettings::new(name)
    }
}

fn open(dir: &TempDir, queues: &[QueueSettings]) -> EmbeddedQueue {
    EmbeddedQueue::open(&dir.path().join("queue.db"), queues).expect("open queue")
}

fn output(queue: &str, body: &str) -> Output {
    Output {
        queue: queue.into(),
        message: OutgoingMessage {
            body: body.into(),
            ..Default::default()
        },
    }
}

#[tokio::test]
async fn send_receive_complete() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[QueueSettings::new("mdm")]);
    let message = OutgoingMessage {
        correlation_id: Some("corr-1".into()),
        content_type: Some("application/json".into()),
        properties: vec![("b".into(), "2".into()), ("a".into(), "1".into())],
        body: b"{\"x\":1}".to_vec(),
        ..Default::default()
    };
    let before = SystemTime::now();
    q.send(vec![Output {
        queue: "mdm".into(),
        message: message.clone(),
    }])
    .await
    .unwrap();

    let batch = q.receive("mdm", 10, NO_WAIT).await.unwrap();
    assert_eq!(batch.len(), 1);
    let got = &batch[0];
    assert_eq!(got.queue, "mdm");
    assert_eq!(
        got.message_id.len(),
        36,
        "a GUID is generated for an empty message id: {}",
        got.message_id
    );
    assert_eq!(got.correlation_id, message.correlation_id);
    assert_eq!(got.content_type, message.content_type);
    assert_eq!(got.properties, message.properties);
    assert_eq!(got.body, message.body);
    assert_eq!(got.delivery_count, 1);
    assert_eq!(got.lock_token.len(), 36);
    assert!(got.enqueued_time >= before - Duration::from_millis(1));
    assert!(
        got.locked_until > SystemTime::now() + Duration::from_secs(20),
        "locked for the default 30 s"
    );
    assert!(
        q.receive("mdm", 10, NO_WAIT).await.unwrap().is_empty(),
        "a locked message is not redelivered"
    );

    q.settle(got, Settlement::Complete, vec![]).await.unwrap();
    assert_eq!(q.queue_depth("mdm").await.unwrap(), QueueDepth::default());
    assert!(
        q.receive("mdm", 10, Duration::from_millis(100))
            .await
            .unwrap()
            .is_empty()
    );
    // Settling twice: the lock went with the message.
    assert!(matches!(
        q.settle(got, Settlement::Complete, vec![]).await,
        Err(TransportError::LockLost { .. })
    ));
}

#[tokio::test]
async fn message_ids_sequence_numbers_and_batches() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[QueueSettings::new("a"), QueueSettings::new("b")]);
    let mut given = output("a", "1");
    given.message.message_id = "given-id".into();
    q.send(vec![given, output("a", "2"), output("a", "3"), output("b", "x")])
        .await
        .unwrap();

    let batch = q.receive("a", 2, NO_WAIT).await.unwrap();
    assert_eq!(batch.len(), 2, "at most `max` messages");
    assert_eq!(batch[0].message_id, "given-id");
    assert_eq!(batch[0].body, b"1");
    assert!(batch[0].sequence_number < batch[1].sequence_number);
    assert_ne!(batch[0].lock_token, batch[1].lock_token);
    let rest = q.receive("a", 10, NO_WAIT).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert!(rest[0].sequence_number > batch[1].sequence_number);
    let other = q.receive("b", 10, NO_WAIT).await.unwrap();
    assert_eq!(other[0].sequence_number, 1, "each queue numbers its own messages");
}

#[tokio::test]
async fn unknown_queues_are_refused() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[QueueSettings::new("mdm")]);
    let sent = q.send(vec![output("mdm", "kept?"), output("nope", "x")]).await;
    assert!(matches!(sent, Err(TransportError::UnknownQueue(name)) if name == "nope"));
    assert_eq!(
        q.queue_depth("mdm").await.unwrap().active,
        0,
        "a failed send sends nothing"
    );
    assert!(matches!(
        q.receive("nope", 1, NO_WAIT).await,
        Err(TransportError::UnknownQueue(_))
    ));
    assert!(matches!(
        q.peek_dead_letters("nope", 0, 1).await,
        Err(TransportError::UnknownQueue(_))
    ));
}

#[tokio::test]
async fn abandon_redelivers_with_delivery_count_two() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[QueueSettings::new("mdm")]);
    q.send(vec![output("mdm", "retry me")]).await.unwrap();
    let first = q.receive("mdm", 1, NO_WAIT).await.unwrap().remove(0);
    q.settle(&first, Settlement::Abandon, vec![]).await.unwrap();

    let second = q.receive("mdm", 1, NO_WAIT).await.unwrap().remove(0);
    assert_eq!(second.sequence_number, first.sequence_number);
    assert_eq!(second.delivery_count, 2);
    assert_ne!(second.lock_token, first.lock_token);
    assert!(matches!(
        q.settle(&first, Settlement::Complete, vec![]).await,
        Err(TransportError::LockLost { .. })
    ));
    q.settle(&second, Settlement::Complete, vec![]).await.unwrap();
}

#[tokio::test]
async fn expired_lock_makes_the_message_visible_and_the_old_token_stale() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[queue_with_lock("mdm", 150)]);
    q.send(vec![output("mdm", "slow")]).await.unwrap();
    let first = q.receive("mdm", 1, NO_WAIT).await.unwrap().remove(0);

    // Waits past the expiry: the poll finds the message once its lock has run out.
    let second = q.receive("mdm", 1, Duration::from_secs(5)).await.unwrap().remove(0);
    assert!(SystemTime::now() >= first.locked_until);
    assert_eq!(second.sequence_number, first.sequence_number);
    assert_eq!(second.delivery_count, 2);
    let stale = q.settle(&first, Settlement::Complete, vec![]).await;
    assert!(matches!(stale, Err(TransportError::LockLost { message_id, .. }) if message_id == first.message_id));
    assert!(matches!(
        q.renew_lock(&first).await,
        Err(TransportError::LockLost { .. })
    ));
    q.settle(&second, Settlement::Complete, vec![]).await.unwrap();
}

#[tokio::test]
async fn renewed_lock_holds_past_the_original_expiry() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[queue_with_lock("mdm", 400)]);
    q.send(vec![output("mdm", "long job")]).await.unwrap();
    let message = q.receive("mdm", 1, NO_WAIT).await.unwrap().remove(0);

    // Renewed from the copy the executor's renewal task holds, as it does.
    let handle = message.without_body();
    assert!(handle.body.is_empty());
    let with_body = ReceivedMessage {
        body: message.body.clone(),
        ..handle.clone()
    };
    assert_eq!(with_body, message, "everything but the body is kept");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let renewed = q.renew_lock(&handle).await.unwrap();
    assert!(renewed > message.locked_until);
    // Past the original expiry, still inside the renewed one.
    let past_original = message
        .locked_until
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    tokio::time::sleep(past_original + Duration::from_millis(50)).await;
    assert!(
        q.receive("mdm", 1, NO_WAIT).await.unwrap().is_empty(),
        "still locked after renewal"
    );
    q.settle(&message, Settlement::Complete, vec![]).await.unwrap();
}

#[tokio::test]
async fn max_delivery_count_dead_letters_at_receive() {
    let dir = TempDir::new().unwrap();
    let q = open(
        &dir,
        &[QueueSettings {
            max_delivery_count: 2,
            ..QueueSettings::new("mdm")
        }],
    );
    q.send(vec![output("mdm", "poison")]).await.unwrap();
    for attempt in 1..=2 {
        let message = q.receive("mdm", 1, NO_WAIT).await.unwrap().remove(0);
        assert_eq!(message.delivery_count, attempt);
        q.settle(&message, Settlement::Abandon, vec![]).await.unwrap();
    }
    assert!(q.receive("mdm", 1, NO_WAIT).await.unwrap().is_empty());

    let dead = q.peek_dead_letters("mdm", 0, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, MAX_DELIVERY_COUNT_EXCEEDED);
    assert_eq!(dead[0].message.delivery_count, 2);
    assert_eq!(dead[0].message.body, b"poison");
    assert_eq!(
        q.queue_depth("mdm").await.unwrap(),
        QueueDepth {
            active: 0,
            scheduled: 0,
            dead_lettered: 1
        }
    );
}

#[tokio::test]
async fn scheduled_message_is_invisible_until_its_time() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[QueueSettings::new("mdm")]);
    // Whole milliseconds, the store's precision, so the peeked time compares equal.
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    let due = UNIX_EPOCH + Duration::from_millis(u64::try_from(now_ms).unwrap() + 300);
    let mut later = output("mdm", "later");
    later.message.scheduled_enqueue_time = Some(due);
    q.send(vec![later]).await.unwrap();

    assert!(q.receive("mdm", 1, NO_WAIT).await.unwrap().is_empty());
    assert_eq!(
        q.queue_depth("mdm").await.unwrap(),
        QueueDepth {
            active: 0,
            scheduled: 1,
            dead_lettered: 0
        }
    );
    assert_eq!(q.peek("mdm", 10).await.unwrap()[0].scheduled_enqueue_time, Some(due));

    let message = q.receive("mdm", 1, Duration::from_secs(5)).await.unwrap().remove(0);
    assert!(SystemTime::now() >= due, "delivered no earlier than scheduled");
    assert_eq!(message.body, b"later");
}

#[tokio::test]
async fn expired_messages_are_dead_lettered_instead_of_delivered() {
    let dir = TempDir::new().unwrap();
    let short_lived = QueueSettings {
        default_ttl: Some(Duration::from_millis(100)),
        ..QueueSettings::new("mdm")
    };
    let q = open(&dir, &[short_lived]);
    let mut own_ttl = output("mdm", "own ttl");
    own_ttl.message.time_to_live = Some(Duration::from_millis(100));
    let mut long_ttl = output("mdm", "lives");
    long_ttl.message.time_to_live = Some(Duration::from_secs(3600));
    q.send(vec![own_ttl, output("mdm", "queue default ttl"), long_ttl])
        .await
        .unwrap();

    tokio::time::sleep(Duration::from_millis(250)).await;
    let batch = q.receive("mdm", 10, NO_WAIT).await.unwrap();
    assert_eq!(batch.len(), 1, "only the unexpired message is delivered");
    assert_eq!(batch[0].body, b"lives");

    let dead = q.peek_dead_letters("mdm", 0, 10).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert!(
        dead.iter()
            .all(|d| d.reason == TTL_EXPIRED && d.message.delivery_count == 0)
    );
}

#[tokio::test]
async fn dead_letter_then_peek_and_redrive_under_a_lock() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[QueueSettings::new("mdm")]);
    let mut sent = output("mdm", "bad input");
    sent.message.properties = vec![("kept".into(), "1".into()), ("replaced".into(), "old".into())];
    q.send(vec![sent]).await.unwrap();
    let message = q.receive("mdm", 1, NO_WAIT).await.unwrap().remove(0);
    let settlement = Settlement::DeadLetter {
        reason: "DecodeFailed".into(),
        description: "body is not JSON".into(),
        properties: vec![("replaced".into(), "new".into()), ("added".into(), "2".into())],
    };
    q.settle(&message, settlement, vec![]).await.unwrap();
    assert!(q.receive("mdm", 1, NO_WAIT).await.unwrap().is_empty());

    let listed = q.peek_dead_letters("mdm", 0, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].reason, "DecodeFailed");
    assert_eq!(listed[0].description, "body is not JSON");
    let properties = &listed[0].message.properties;
    assert_eq!(
        properties,
        &vec![
            ("kept".to_string(), "1".to_string()),
            ("replaced".to_string(), "new".to_string()),
            ("added".to_string(), "2".to_string())
        ]
    );
    assert!(listed[0].dead_lettered_at.expect("recorded") >= message.enqueued_time);
    assert_eq!(listed[0].message.locked_until, None);
    let from_next = q
        .peek_dead_letters("mdm", message.sequence_number + 1, 10)
        .await
        .unwrap();
    assert!(from_next.is_empty(), "a page starts at its sequence number");

    // A redrive: received under its lock from the given sequence number on, and completed with
    // the copy as an output, in one step.
    let locked = q
        .receive_dead_letters("mdm", message.sequence_number, 10, NO_WAIT)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(locked.reason, "DecodeFailed");
    assert!(
        q.receive_dead_letters("mdm", message.sequence_number + 1, 10, NO_WAIT)
            .await
            .unwrap()
            .is_empty(),
        "a receive starts at its sequence number"
    );
    let copy = output("mdm", "bad input");
    q.settle(&locked.message, Settlement::Complete, vec![copy])
        .await
        .unwrap();
    assert!(q.peek_dead_letters("mdm", 0, 10).await.unwrap().is_empty());
    let again = q.receive("mdm", 1, NO_WAIT).await.unwrap().remove(0);
    assert_eq!(again.delivery_count, 1, "the copy is a new message");
}

#[tokio::test]
async fn settle_and_outputs_are_one_atomic_step() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[QueueSettings::new("in"), QueueSettings::new("next")]);
    assert!(q.atomic_settle_and_send());
    q.send(vec![output("in", "step 1")]).await.unwrap();
    let message = q.receive("in", 1, NO_WAIT).await.unwrap().remove(0);

    let failed = q
        .settle(
            &message,
            Settlement::Complete,
            vec![output("next", "step 2"), output("missing", "x")],
        )
        .await;
    assert!(matches!(failed, Err(TransportError::UnknownQueue(name)) if name == "missing"));
    assert_eq!(q.queue_depth("next").await.unwrap().active, 0, "no output was sent");
    assert_eq!(
        q.peek("in", 10).await.unwrap()[0].locked_until,
        Some(message.locked_until),
        "input still locked"
    );

    // The lock is still ours: settle again, correctly this time.
    q.settle(&message, Settlement::Complete, vec![output("next", "step 2")])
        .await
        .unwrap();
    assert_eq!(q.queue_depth("in").await.unwrap().active, 0);
    let next = q.receive("next", 1, NO_WAIT).await.unwrap();
    assert_eq!(next[0].body, b"step 2");
}

#[tokio::test]
async fn messages_and_sequence_numbers_survive_reopening() {
    let dir = TempDir::new().unwrap();
    let queues = [QueueSettings::new("mdm")];
    let q = open(&dir, &queues);
    q.send(vec![output("mdm", "1"), output("mdm", "2"), output("mdm", "3")])
        .await
        .unwrap();
    let last = q.receive("mdm", 3, NO_WAIT).await.unwrap();
    // Complete the newest: its sequence number must still not be handed out again.
    q.settle(&last[2], Settlement::Complete, vec![]).await.unwrap();
    drop(q);

    let q = open(&dir, &queues);
    let kept = q.peek("mdm", 10).await.unwrap();
    assert_eq!(kept.iter().map(|m| m.body.as_slice()).collect::<Vec<_>>(), [b"1", b"2"]);
    q.send(vec![output("mdm", "4")]).await.unwrap();
    let newest = q.peek("mdm", 10).await.unwrap().pop().unwrap();
    assert_eq!(newest.body, b"4");
    assert!(newest.sequence_number > last[2].sequence_number);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_receivers_complete_each_message_exactly_once() {
    const MESSAGES: usize = 2_000;
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[QueueSettings::new("mdm")]);
    let outputs = (0..MESSAGES).map(|i| output("mdm", &i.to_string())).collect();
    q.send(outputs).await.unwrap();

    let seen = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (q, seen) = (q.clone(), Arc::clone(&seen));
            tokio::spawn(async move {
                loop {
                    let batch = q.receive("mdm", 8, Duration::from_millis(200)).await.unwrap();
                    if batch.is_empty() {
                        break;
                    }
                    for message in batch {
                        q.settle(&message, Settlement::Complete, vec![]).await.unwrap();
                        seen.lock().unwrap().push(String::from_utf8(message.body).unwrap());
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let distinct: HashSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), MESSAGES, "every message completed once");
    assert_eq!(distinct.len(), MESSAGES, "no duplicates");
    assert_eq!(q.queue_depth("mdm").await.unwrap(), QueueDepth::default());
}

#[tokio::test]
async fn waiting_receive_returns_when_a_message_arrives() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[QueueSettings::new("mdm")]);
    let receiver = {
        let q = q.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let batch = q.receive("mdm", 1, Duration::from_secs(30)).await.unwrap();
            (batch, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    q.send(vec![output("mdm", "wake up")]).await.unwrap();

    let (batch, waited) = receiver.await.unwrap();
    assert_eq!(batch[0].body, b"wake up");
    assert!(
        waited < Duration::from_secs(10),
        "returned on arrival, not at the end of the wait ({waited:?})"
    );
}

#[test]
fn settings_deserialize_with_defaults_and_reject_unknown_fields() {
    let settings: QueueSettings = serde_json::from_str(r#"{"name": "mdm", "lock-duration-ms": 1500}"#).unwrap();
    assert_eq!(
        settings,
        QueueSettings {
            lock_duration: Duration::from_millis(1500),
            ..QueueSettings::new("mdm")
        }
    );
    assert_eq!(settings.max_delivery_count, 10);
    let full: QueueSettings =
        serde_json::from_str(r#"{"name": "erp", "max-delivery-count": 3, "default-ttl-ms": 60000}"#).unwrap();
    assert_eq!(full.lock_duration, Duration::from_secs(30));
    assert_eq!(full.default_ttl, Some(Duration::from_secs(60)));
    assert!(serde_json::from_str::<QueueSettings>(r#"{"name": "mdm", "lock-duration": 5}"#).is_err());
}

#[test]
fn open_rejects_bad_settings_and_newer_schemas() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("nested/queue.db");
    let twice = EmbeddedQueue::open(&path, &[QueueSettings::new("a"), QueueSettings::new("a")]);
    assert!(twice.is_err());
    let never = QueueSettings {
        max_delivery_count: 0,
        ..QueueSettings::new("a")
    };
    assert!(EmbeddedQueue::open(&path, &[never]).is_err());

    drop(EmbeddedQueue::open(&path, &[QueueSettings::new("a")]).expect("creates folder and file"));
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let error = EmbeddedQueue::open(&path, &[QueueSettings::new("a")])
        .err()
        .expect("newer schema refused");
    assert!(format!("{error:#}").contains("schema version 99"), "{error:#}");
}

/// Asserts that the database at `path` was upgraded to the current schema version.
pub(super) fn assert_current_schema(path: &std::path::Path) {
    let version: i64 = rusqlite::Connection::open(path)
        .unwrap()
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, super::schema::SCHEMA_VERSION);
}

/// Writes a schema version 2 database at `path` (no topic, session or queue-definition tables;
/// bodies in `messages`) holding one message with `body` in `queue`.
pub(super) fn write_version_2_database(path: &std::path::Path, queue: &str, body: &str) {
    let v2 = rusqlite::Connection::open(path).unwrap();
    v2.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE queues (name TEXT PRIMARY KEY, last_sequence INTEGER NOT NULL DEFAULT 0);
         CREATE TABLE messages (
             id INTEGER PRIMARY KEY, queue TEXT NOT NULL, sequence_number INTEGER NOT NULL,
             message_id TEXT NOT NULL, correlation_id TEXT, content_type TEXT, enqueued_at INTEGER NOT NULL,
             scheduled_at INTEGER, ttl_ms INTEGER, expires_at INTEGER,
             delivery_count INTEGER NOT NULL DEFAULT 0, lock_token TEXT, locked_until INTEGER,
             dead_lettered_at INTEGER, dead_letter_reason TEXT, dead_letter_description TEXT,
             properties TEXT NOT NULL, body BLOB NOT NULL, UNIQUE (queue, sequence_number));
         CREATE INDEX messages_by_state ON messages (queue, dead_lettered_at, scheduled_at);
         PRAGMA user_version = 2;",
    )
    .unwrap();
    v2.execute("INSERT INTO queues VALUES (?1, 1)", [queue]).unwrap();
    v2.execute(
        "INSERT INTO messages (queue, sequence_number, message_id, properties, body, enqueued_at) \
         VALUES (?1, 1, 'm-1', '[]', ?2, 1)",
        rusqlite::params![queue, body.as_bytes()],
    )
    .unwrap();
}

/// A database written by schema version 1 (body in the middle of the row): its messages, locks and
/// dead letters survive the upgrade to the current schema.
#[tokio::test]
async fn opens_and_upgrades_a_version_1_database() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("queue.db");
    let v1 = rusqlite::Connection::open(&path).unwrap();
    v1.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE queues (name TEXT PRIMARY KEY, last_sequence INTEGER NOT NULL DEFAULT 0);
         CREATE TABLE messages (
             id INTEGER PRIMARY KEY, queue TEXT NOT NULL, sequence_number INTEGER NOT NULL,
             message_id TEXT NOT NULL, correlation_id TEXT, content_type TEXT,
             properties TEXT NOT NULL, body BLOB NOT NULL, enqueued_at INTEGER NOT NULL,
             scheduled_at INTEGER, ttl_ms INTEGER, expires_at INTEGER,
             delivery_count INTEGER NOT NULL DEFAULT 0, lock_token TEXT, locked_until INTEGER,
             dead_lettered_at INTEGER, dead_letter_reason TEXT, dead_letter_description TEXT,
             UNIQUE (queue, sequence_number));
         INSERT INTO queues VALUES ('erp', 2);
         INSERT INTO messages (queue, sequence_number, message_id, properties, body, enqueued_at)
             VALUES ('erp', 1, 'm-1', '[[\"k\",\"v\"]]', x'68656c6c6f', 1);
         INSERT INTO messages (queue, sequence_number, message_id, properties, body, enqueued_at,
                               dead_lettered_at, dead_letter_reason, dead_letter_description)
             VALUES ('erp', 2, 'm-2', '[]', x'', 1, 2, 'Broken', 'it broke');
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(v1);

    let q = open(&dir, &[QueueSettings::new("erp")]);
    assert_eq!(
        q.queue_depth("erp").await.unwrap(),
        QueueDepth {
            active: 1,
            scheduled: 0,
            dead_lettered: 1
        }
    );
    let received = q.receive("erp", 10, NO_WAIT).await.unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(
        (received[0].message_id.as_str(), &received[0].body[..]),
        ("m-1", &b"hello"[..])
    );
    assert_eq!(received[0].properties, vec![("k".to_string(), "v".to_string())]);
    let dead = q.peek_dead_letters("erp", 0, 10).await.unwrap();
    assert_eq!(
        (dead[0].reason.as_str(), dead[0].description.as_str()),
        ("Broken", "it broke")
    );
    q.send(vec![output("erp", "after")]).await.unwrap();
    let next = q.receive("erp", 10, NO_WAIT).await.unwrap();
    assert_eq!(
        next[0].sequence_number, 3,
        "sequence numbers continue after the upgrade"
    );
    drop(q);
    assert_current_schema(&path);
}

/// A version 4 database (no session column, queue definitions without `requires_session`): its
/// messages and stored queues survive the upgrade to the current schema.
#[tokio::test]
async fn opens_and_upgrades_a_version_4_database() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("queue.db");
    // Version 4 is version 2's `messages` with `queue_definitions` added (and the topic tables,
    // left out here: opening creates them when missing).
    write_version_2_database(&path, "erp", "hello");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TABLE queue_definitions (name TEXT PRIMARY KEY, lock_duration_ms INTEGER NOT NULL,
                 max_delivery_count INTEGER NOT NULL, default_ttl_ms INTEGER, created_at INTEGER NOT NULL,
                 updated_at INTEGER NOT NULL);
             INSERT INTO queues VALUES ('made', 0);
             INSERT INTO queue_definitions VALUES ('made', 45000, 3, NULL, 1, 1);
             PRAGMA user_version = 4;",
        )
        .unwrap();

    let q = open(&dir, &[QueueSettings::new("erp")]);
    let received = q.receive("erp", 10, NO_WAIT).await.unwrap();
    assert_eq!(
        (
            received[0].message_id.as_str(),
            &received[0].body[..],
            &received[0].session_id
        ),
        ("m-1", &b"hello"[..], &None)
    );
    let made = q.queue_settings("made").expect("the stored queue is still defined");
    assert_eq!((made.max_delivery_count, made.requires_session), (3, false));
    drop(q);
    assert_current_schema(&path);
}

/// A version 5 database (bodies in `messages`): its messages, with their bodies, session ids and
/// dead letters, survive the upgrade to version 6 (bodies in `bodies`), and completing a message
/// deletes its body too.
#[tokio::test]
async fn opens_and_upgrades_a_version_5_database() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("queue.db");
    let v5 = rusqlite::Connection::open(&path).unwrap();
    v5.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE queues (name TEXT PRIMARY KEY, last_sequence INTEGER NOT NULL DEFAULT 0);
         CREATE TABLE messages (
             id INTEGER PRIMARY KEY, queue TEXT NOT NULL, sequence_number INTEGER NOT NULL,
             message_id TEXT NOT NULL, correlation_id TEXT, content_type TEXT, enqueued_at INTEGER NOT NULL,
             scheduled_at INTEGER, ttl_ms INTEGER, expires_at INTEGER,
             delivery_count INTEGER NOT NULL DEFAULT 0, lock_token TEXT, locked_until INTEGER,
             dead_lettered_at INTEGER, dead_letter_reason TEXT, dead_letter_description TEXT,
             session_id TEXT, properties TEXT NOT NULL, body BLOB NOT NULL, UNIQUE (queue, sequence_number));
         CREATE INDEX messages_by_state ON messages (queue, dead_lettered_at, scheduled_at);
         CREATE INDEX messages_by_session ON messages (queue, session_id, sequence_number)
             WHERE session_id IS NOT NULL;
         CREATE TABLE sessions (queue TEXT NOT NULL, session_id TEXT NOT NULL, lock_token TEXT,
             locked_until INTEGER, state BLOB, PRIMARY KEY (queue, session_id));
         CREATE TABLE queue_definitions (name TEXT PRIMARY KEY, lock_duration_ms INTEGER NOT NULL,
             max_delivery_count INTEGER NOT NULL, default_ttl_ms INTEGER,
             requires_session INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL,
             updated_at INTEGER NOT NULL);
         INSERT INTO queues VALUES ('erp', 3);
         INSERT INTO messages (queue, sequence_number, message_id, properties, body, enqueued_at, session_id)
             VALUES ('erp', 1, 'm-1', '[]', x'68656c6c6f', 1, 'order-7');
         INSERT INTO messages (queue, sequence_number, message_id, properties, body, enqueued_at,
                               dead_lettered_at, dead_letter_reason, dead_letter_description)
             VALUES ('erp', 2, 'm-2', '[]', x'626164', 1, 2, 'Broken', 'it broke');
         PRAGMA user_version = 5;",
    )
    .unwrap();
    drop(v5);

    let q = open(&dir, &[QueueSettings::new("erp")]);
    let received = q.receive("erp", 10, NO_WAIT).await.unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(
        (
            received[0].message_id.as_str(),
            &received[0].body[..],
            received[0].session_id.as_deref()
        ),
        ("m-1", &b"hello"[..], Some("order-7"))
    );
    let dead = q.peek_dead_letters("erp", 0, 10).await.unwrap();
    assert_eq!(
        (dead[0].message.body.as_slice(), dead[0].reason.as_str()),
        (&b"bad"[..], "Broken")
    );
    q.settle(&received[0], Settlement::Complete, Vec::new()).await.unwrap();
    drop(q);
    assert_current_schema(&path);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let bodies: Vec<Vec<u8>> = conn
        .prepare("SELECT body FROM bodies ORDER BY id")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        bodies,
        vec![b"bad".to_vec()],
        "the completed message's body went with it"
    );
}

#[tokio::test]
async fn broker_additions_queues_on_first_use_release_dead_letter_receive_schedule_and_peek() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[]);
    assert!(!q.has_queue("new"));
    assert!(matches!(
        q.send(vec![output("new", "x")]).await,
        Err(TransportError::UnknownQueue(_))
    ));
    assert!(q.ensure_queue(queue_with_lock("new", 60_000)).await.unwrap());
    assert!(
        !q.ensure_queue(QueueSettings::new("new")).await.unwrap(),
        "a second ensure keeps the first settings"
    );
    assert!(q.has_queue("new"));

    // Sequence numbers come back in order.
    let numbers = q
        .send_with_sequence_numbers(vec![output("new", "a"), output("new", "b")])
        .await
        .unwrap();
    assert_eq!(numbers, vec![1, 2]);

    // Release: visible again at once, and the delivery is not counted.
    let got = q.receive("new", 1, NO_WAIT).await.unwrap();
    q.release(&got[0]).await.unwrap();
    assert!(matches!(q.release(&got[0]).await, Err(TransportError::LockLost { .. })));
    let again = q.receive("new", 1, NO_WAIT).await.unwrap();
    assert_eq!(again[0].sequence_number, 1);
    assert_eq!(again[0].delivery_count, 1, "a released delivery does not count");

    // Dead letters can be received under a lock, renewed and completed.
    let reason = Settlement::DeadLetter {
        reason: "Bad".into(),
        description: "very".into(),
        properties: Vec::new(),
    };
    q.settle(&again[0], reason, vec![]).await.unwrap();
    let letters = q.receive_dead_letters("new", 0, 10, NO_WAIT).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].reason.as_str(), letters[0].description.as_str()),
        ("Bad", "very")
    );
    assert!(
        q.receive_dead_letters("new", 0, 10, NO_WAIT).await.unwrap().is_empty(),
        "locked"
    );
    q.renew_lock(&letters[0].message).await.unwrap();
    q.settle(&letters[0].message, Settlement::Complete, vec![])
        .await
        .unwrap();
    assert_eq!(q.queue_depth("new").await.unwrap().dead_lettered, 0);

    // Scheduled messages can be cancelled while they are still scheduled.
    let later = Output {
        queue: "new".into(),
        message: OutgoingMessage {
            body: b"later".to_vec(),
            scheduled_enqueue_time: Some(SystemTime::now() + Duration::from_secs(60)),
            ..Default::default()
        },
    };
    let scheduled = q.send_with_sequence_numbers(vec![later]).await.unwrap()[0];
    assert_eq!(
        q.peek_from("new", 2, 10)
            .await
            .unwrap()
            .iter()
            .map(|m| m.sequence_number)
            .collect::<Vec<_>>(),
        vec![2, scheduled]
    );
    assert!(q.cancel_scheduled("new", scheduled).await.unwrap());
    assert!(!q.cancel_scheduled("new", scheduled).await.unwrap());
    assert!(
        !q.cancel_scheduled("new", 2).await.unwrap(),
        "only scheduled messages are cancelled"
    );

    // Receive-and-delete removes what it returns.
    let taken = q.receive_and_delete("new", 10, NO_WAIT).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(q.queue_depth("new").await.unwrap(), QueueDepth::default());
    assert!(q.peek_dead_letters("new", 0, 10).await.unwrap().is_empty());
}

/// A receive binds its free slots to `LIMIT ?`, a new value almost every time. Without the query
/// planner stability guarantee SQLite would prepare the statement again on each new value.
#[test]
fn binding_a_new_limit_does_not_prepare_a_statement_again() {
    let dir = tempfile::tempdir().unwrap();
    let conn = super::schema::open(&dir.path().join("q.sqlite3"), &[QueueSettings::new("q")]).unwrap();
    let mut select = conn
        .prepare("SELECT sequence_number FROM messages WHERE queue = ?1 ORDER BY sequence_number LIMIT ?2")
        .unwrap();
    for limit in 1..=3 {
        let rows = select
            .query_map(rusqlite::params!["q", limit], |row| row.get::<_, i64>(0))
            .unwrap();
        assert_eq!(rows.count(), 0);
    }
    assert_eq!(select.get_status(rusqlite::StatementStatus::RePrepare), 0);
}
