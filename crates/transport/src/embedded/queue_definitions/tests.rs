use std::time::Duration;

use tempfile::TempDir;

use super::super::super::{OutgoingMessage, Output, Transport, TransportError};
use super::super::{EmbeddedQueue, QueueDepth, QueueSettings};

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

fn settings(name: &str, lock_secs: u64, max_delivery_count: u32, ttl_secs: Option<u64>) -> QueueSettings {
    QueueSettings {
        name: name.into(),
        lock_duration: Duration::from_secs(lock_secs),
        max_delivery_count,
        default_ttl: ttl_secs.map(Duration::from_secs),
        requires_session: false,
    }
}

#[tokio::test]
async fn created_queues_keep_their_settings_across_a_reopen() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[]);
    let orders = settings("orders", 45, 3, Some(3600));
    assert!(q.create_queue(orders.clone()).await.unwrap());
    assert!(
        !q.create_queue(settings("orders", 10, 1, None)).await.unwrap(),
        "a second create changes nothing"
    );
    assert_eq!(q.queue_settings("orders"), Some(orders.clone()));
    q.send(vec![output("orders", "hello")]).await.unwrap();
    let info = q.describe_queue("orders").await.unwrap().expect("described");
    assert_eq!(info.settings, orders);
    assert_eq!(info.depth.active, 1);
    assert_eq!(info.size_in_bytes, 5);
    let created = info.created_at.expect("stored queues have a creation time");
    assert_eq!(info.updated_at, Some(created));
    drop(q);

    let q = open(&dir, &[]);
    assert_eq!(q.queue_settings("orders"), Some(orders));
    let info = q.describe_queue("orders").await.unwrap().unwrap();
    assert_eq!(info.created_at, Some(created));
    let received = q.receive("orders", 1, Duration::ZERO).await.unwrap();
    assert_eq!(received[0].body, b"hello");
}

#[tokio::test]
async fn updates_are_stored_and_configured_settings_win() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[QueueSettings::new("configured")]);
    assert!(
        !q.update_queue(settings("missing", 10, 1, None)).await.unwrap(),
        "no update of a queue that does not exist"
    );
    assert!(q.queue_settings("missing").is_none());
    assert!(q.create_queue(settings("a", 30, 10, None)).await.unwrap());
    assert!(q.update_queue(settings("a", 60, 2, Some(10))).await.unwrap());
    assert!(q.update_queue(settings("configured", 60, 2, None)).await.unwrap());
    let info = q.describe_queue("a").await.unwrap().unwrap();
    assert_eq!(info.settings, settings("a", 60, 2, Some(10)));
    assert!(info.updated_at >= info.created_at);
    let invalid = q.update_queue(settings("a", 0, 2, None)).await;
    assert!(invalid.is_err(), "a zero lock duration is refused");
    drop(q);

    let q = open(&dir, &[QueueSettings::new("configured")]);
    assert_eq!(q.queue_settings("a"), Some(settings("a", 60, 2, Some(10))));
    assert_eq!(
        q.queue_settings("configured"),
        Some(QueueSettings::new("configured")),
        "the configuration wins over a stored definition"
    );
    assert_eq!(q.queue_names(), vec!["a".to_string(), "configured".to_string()]);
}

#[tokio::test]
async fn deleting_a_queue_removes_its_messages_and_its_definition() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[]);
    assert!(!q.delete_queue("nothing").await.unwrap());
    assert!(q.create_queue(QueueSettings::new("gone")).await.unwrap());
    q.send(vec![output("gone", "a"), output("gone", "b")]).await.unwrap();
    let locked = q.receive("gone", 1, Duration::ZERO).await.unwrap();
    assert!(q.delete_queue("gone").await.unwrap());
    assert!(!q.delete_queue("gone").await.unwrap());
    assert!(q.describe_queue("gone").await.unwrap().is_none());
    assert!(matches!(
        q.send(vec![output("gone", "c")]).await,
        Err(TransportError::UnknownQueue(_))
    ));
    assert!(matches!(
        q.settle(&locked[0], crate::Settlement::Complete, vec![]).await,
        Err(TransportError::UnknownQueue(_) | TransportError::LockLost { .. })
    ));

    assert!(q.create_queue(QueueSettings::new("gone")).await.unwrap());
    assert_eq!(q.queue_depth("gone").await.unwrap(), QueueDepth::default());
    let numbers = q.send_with_sequence_numbers(vec![output("gone", "new")]).await.unwrap();
    assert_eq!(numbers, vec![1], "a queue created again starts its sequence afresh");
    assert!(q.delete_queue("gone").await.unwrap());
    drop(q);
    assert!(
        open(&dir, &[]).queue_names().is_empty(),
        "a deleted queue stays deleted"
    );
}

/// A database of schema version 2 (before `queue_definitions`) opens, gains the table and keeps
/// its messages.
#[tokio::test]
async fn a_version_2_database_gains_the_definitions_table() {
    let dir = TempDir::new().unwrap();
    super::super::tests::write_version_2_database(&dir.path().join("queue.db"), "old", "kept");

    let q = open(&dir, &[QueueSettings::new("old")]);
    assert_eq!(q.queue_depth("old").await.unwrap().active, 1);
    assert!(q.create_queue(QueueSettings::new("new")).await.unwrap());
    drop(q);
    super::super::tests::assert_current_schema(&dir.path().join("queue.db"));
    assert!(open(&dir, &[]).has_queue("new"));
}
