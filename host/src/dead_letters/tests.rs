use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use sagahost_transport::embedded::{EmbeddedQueue, QueueSettings};
use sagahost_transport::{OutgoingMessage, Output, Settlement, Transport};
use tempfile::TempDir;

use super::*;

fn keys() -> StateKeys {
    StateKeys::new("k", BTreeMap::from([("k".to_string(), vec![7u8; 32])])).unwrap()
}

fn open(dir: &TempDir) -> EmbeddedQueue {
    EmbeddedQueue::open(&dir.path().join("q.sqlite3"), &[QueueSettings::new("mdm")]).unwrap()
}

/// Sends one message per `(id, reason, partner)` and dead-letters it as the host would.
async fn dead_letter_all(queue: &EmbeddedQueue, letters: &[(&str, &str, &str)]) {
    for (id, reason, partner) in letters {
        let mut message = OutgoingMessage {
            message_id: (*id).to_string(),
            body: format!("body of {id}").into_bytes(),
            ..OutgoingMessage::default()
        };
        let saga = SagaState {
            attempt: 5,
            ..SagaState::start("saga-1")
        };
        message
            .properties
            .push((SAGA_PROPERTY.to_string(), serde_json::to_string(&saga).unwrap()));
        keys().seal(&mut message);
        queue
            .send(vec![Output {
                queue: "mdm".into(),
                message,
            }])
            .await
            .unwrap();
        let received = queue.receive("mdm", 1, Duration::ZERO).await.unwrap().remove(0);
        let settlement = Settlement::DeadLetter {
            reason: (*reason).to_string(),
            description: format!("{id} failed"),
            properties: vec![
                (PARTNER_PROPERTY.to_string(), (*partner).to_string()),
                (COMPONENT_VERSION_PROPERTY.to_string(), "abc123".to_string()),
            ],
        };
        queue.settle(&received, settlement, vec![]).await.unwrap();
    }
}

fn dlq(queue: &EmbeddedQueue) -> DeadLetterQueue<'_, EmbeddedQueue> {
    DeadLetterQueue {
        transport: queue,
        queue: "mdm",
        partner: Some("mdm"),
    }
}

async fn ids_in_queue(queue: &EmbeddedQueue) -> Vec<String> {
    let mut ids: Vec<String> = queue
        .peek("mdm", 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.message_id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn list_filters_by_reason_partner_version_and_time_and_pages() {
    let dir = TempDir::new().unwrap();
    let queue = open(&dir);
    dead_letter_all(
        &queue,
        &[
            ("a", "RetriesExhausted", "mdm"),
            ("b", "DecodeFailed", "mdm"),
            ("c", "RetriesExhausted", "erp"),
            ("d", "RetriesExhausted", "mdm"),
        ],
    )
    .await;
    let dlq = dlq(&queue);
    let ids = |page: &Page| {
        page.letters
            .iter()
            .map(|l| l.message.message_id.clone())
            .collect::<Vec<_>>()
    };

    let everything = dlq.list(&Filter::default(), 0, 10).await.unwrap();
    assert_eq!(ids(&everything), ["a", "b", "c", "d"]);
    assert_eq!(everything.next, None);

    let retries = Filter {
        reason: Some("RetriesExhausted".into()),
        ..Filter::default()
    };
    let first = dlq.list(&retries, 0, 2).await.unwrap();
    assert_eq!(ids(&first), ["a", "c"]);
    let rest = dlq.list(&retries, first.next.unwrap(), 2).await.unwrap();
    assert_eq!(ids(&rest), ["d"], "the next page starts after the last one shown");

    let erp = Filter {
        partner: Some("erp".into()),
        ..Filter::default()
    };
    assert_eq!(ids(&dlq.list(&erp, 0, 10).await.unwrap()), ["c"]);
    let version = Filter {
        version: Some("abc".into()),
        ..Filter::default()
    };
    assert_eq!(dlq.list(&version, 0, 10).await.unwrap().letters.len(), 4);
    let other_version = Filter {
        version: Some("abd".into()),
        ..Filter::default()
    };
    assert!(dlq.list(&other_version, 0, 10).await.unwrap().letters.is_empty());
    let future = Filter {
        since: Some(SystemTime::now() + Duration::from_secs(60)),
        ..Filter::default()
    };
    assert!(dlq.list(&future, 0, 10).await.unwrap().letters.is_empty());
    let past = Filter {
        until: Some(SystemTime::now() + Duration::from_secs(60)),
        ..Filter::default()
    };
    assert_eq!(dlq.list(&past, 0, 10).await.unwrap().letters.len(), 4);

    let b = &everything.letters[1];
    let shown = dlq.show(b.message.sequence_number).await.unwrap().unwrap();
    assert_eq!(shown.reason, "DecodeFailed");
    assert_eq!(dlq.show(b.message.sequence_number + 100).await.unwrap(), None);
}

#[tokio::test]
async fn a_dead_letter_without_a_partner_property_belongs_to_its_queue_s_partner() {
    let dir = TempDir::new().unwrap();
    let queue = open(&dir);
    queue
        .send(vec![Output {
            queue: "mdm".into(),
            message: OutgoingMessage::default(),
        }])
        .await
        .unwrap();
    let received = queue.receive("mdm", 1, Duration::ZERO).await.unwrap().remove(0);
    let settlement = Settlement::DeadLetter {
        reason: "MaxDeliveryCountExceeded".into(),
        description: String::new(),
        properties: Vec::new(),
    };
    queue.settle(&received, settlement, vec![]).await.unwrap();
    let mdm = Filter {
        partner: Some("mdm".into()),
        ..Filter::default()
    };
    assert_eq!(dlq(&queue).list(&mdm, 0, 10).await.unwrap().letters.len(), 1);
}

#[tokio::test]
async fn redrive_moves_what_matches_up_to_the_limit_and_gives_the_rest_back() {
    let dir = TempDir::new().unwrap();
    let queue = open(&dir);
    dead_letter_all(
        &queue,
        &[
            ("a", "RetriesExhausted", "mdm"),
            ("b", "DecodeFailed", "mdm"),
            ("c", "RetriesExhausted", "mdm"),
            ("d", "RetriesExhausted", "mdm"),
        ],
    )
    .await;
    let dlq = dlq(&queue);
    let retries = Selection::Matching(Filter {
        reason: Some("RetriesExhausted".into()),
        ..Filter::default()
    });
    assert_eq!(dlq.count(&retries, None).await.unwrap(), 3);
    assert_eq!(dlq.count(&retries, Some(2)).await.unwrap(), 2);

    let mut seen = Vec::new();
    let options = RedriveOptions {
        limit: Some(2),
        reset_attempts: None,
    };
    let outcome = dlq.redrive(&retries, options, |n| seen.push(n)).await.unwrap();
    assert_eq!(outcome.done, 2);
    assert_eq!(seen, [1, 2]);
    assert_eq!(ids_in_queue(&queue).await, ["a", "c"]);

    // What was passed over is free again, at once.
    let left = dlq.list(&Filter::default(), 0, 10).await.unwrap().letters;
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|l| l.message.locked_until.is_none()), "{left:?}");

    let outcome = dlq.redrive(&retries, RedriveOptions::default(), |_| {}).await.unwrap();
    assert_eq!(outcome.done, 1);
    assert_eq!(ids_in_queue(&queue).await, ["a", "c", "d"]);

    // The copy is what was sent, less the dead-letter record.
    let back = queue.peek("mdm", 1).await.unwrap().remove(0);
    assert_eq!(back.body, b"body of a");
    assert!(
        back.properties
            .iter()
            .all(|(name, _)| name != PARTNER_PROPERTY && name != COMPONENT_VERSION_PROPERTY)
    );
    assert!(keys().verify(&back.properties, &back.body).is_ok());
}

#[tokio::test]
async fn redrive_one_by_sequence_number_and_reset_its_attempts() {
    let dir = TempDir::new().unwrap();
    let queue = open(&dir);
    dead_letter_all(
        &queue,
        &[("a", "RetriesExhausted", "mdm"), ("b", "RetriesExhausted", "mdm")],
    )
    .await;
    let dlq = dlq(&queue);
    let a = dlq.list(&Filter::default(), 0, 10).await.unwrap().letters[0]
        .message
        .sequence_number;
    let keys = keys();
    let options = RedriveOptions {
        limit: None,
        reset_attempts: Some(&keys),
    };
    let outcome = dlq.redrive(&Selection::One(a), options, |_| {}).await.unwrap();
    assert_eq!(outcome.done, 1);
    let back = queue.peek("mdm", 1).await.unwrap().remove(0);
    assert_eq!(back.message_id, "a");
    let saga = &back.properties.iter().find(|(n, _)| n == SAGA_PROPERTY).unwrap().1;
    let saga: SagaState = serde_json::from_str(saga).unwrap();
    assert_eq!(saga.attempt, 1);
    assert!(keys.verify(&back.properties, &back.body).is_ok(), "sealed again");
    assert_eq!(
        dlq.count(&Selection::Matching(Filter::default()), None).await.unwrap(),
        1
    );
}

#[tokio::test]
async fn a_reset_refuses_state_that_does_not_verify_and_leaves_the_dead_letter() {
    let dir = TempDir::new().unwrap();
    let queue = open(&dir);
    dead_letter_all(&queue, &[("a", "RetriesExhausted", "mdm")]).await;
    let other = StateKeys::new("x", BTreeMap::from([("x".to_string(), vec![9u8; 32])])).unwrap();
    let options = RedriveOptions {
        limit: None,
        reset_attempts: Some(&other),
    };
    let everything = Selection::Matching(Filter::default());
    let outcome = dlq(&queue).redrive(&everything, options, |_| {}).await.unwrap();
    assert_eq!(outcome.done, 0);
    assert_eq!(outcome.skipped.len(), 1);
    assert!(outcome.skipped[0].1.contains("not reset"), "{:?}", outcome.skipped);
    assert_eq!(dlq(&queue).count(&everything, None).await.unwrap(), 1, "left in place");
}

#[tokio::test]
async fn purge_removes_what_matches() {
    let dir = TempDir::new().unwrap();
    let queue = open(&dir);
    dead_letter_all(
        &queue,
        &[("a", "DecodeFailed", "mdm"), ("b", "RetriesExhausted", "mdm")],
    )
    .await;
    let decode = Selection::Matching(Filter {
        reason: Some("DecodeFailed".into()),
        ..Filter::default()
    });
    let outcome = dlq(&queue).purge(&decode, None, |_| {}).await.unwrap();
    assert_eq!(outcome.done, 1);
    let left = dlq(&queue).list(&Filter::default(), 0, 10).await.unwrap().letters;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].message.message_id, "b");
    assert!(ids_in_queue(&queue).await.is_empty(), "a purge sends nothing");
}
