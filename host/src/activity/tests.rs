use std::time::{Duration, SystemTime};

use super::{BUCKET, BUCKETS, Keep, Rates, SagaIndex, SagaQuery};
use crate::saga::SagaEvent;
use crate::saga::executor::SearchKeys;
use crate::saga::routing::Verdict;
use crate::telemetry::traceparent::TraceParent;

fn event(saga: &str, partner: &str, verdict: Verdict, at: SystemTime) -> SagaEvent {
    SagaEvent {
        saga_id: saga.into(),
        partner: partner.into(),
        queue: "contacts".into(),
        message_id: format!("{saga}:{partner}"),
        step: 0,
        attempt: 1,
        compensation: false,
        version: "abc".into(),
        verdict,
        at,
        keys: SearchKeys {
            entity: Some("contact".into()),
            record_id: Some(format!("{{{}}}", saga.to_uppercase())),
            correlation_id: Some("C0RRE1".into()),
            trace: Some(TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap()),
        },
        limit: None,
        timing: Default::default(),
    }
}

fn dead_letter() -> Verdict {
    Verdict::DeadLettered {
        reason: "RetriesExhausted".into(),
        description: "MDM answered 503".into(),
    }
}

#[test]
fn rates_count_each_outcome_in_its_bucket_and_forget_what_is_older_than_the_window() {
    let rates = Rates::default();
    let now = SystemTime::now();
    let long_ago = now - BUCKET * (BUCKETS as u32 + 5);
    rates.record(&event("old", "mdm", Verdict::Completed, long_ago));
    rates.record(&event("a", "mdm", Verdict::Completed, now));
    rates.record(&event("b", "mdm", dead_letter(), now));
    let mut limited = event("c", "mdm", dead_letter(), now);
    limited.limit = Some("deadline");
    rates.record(&limited);
    let window = rates.window("mdm", now);
    assert_eq!(window.buckets.len(), BUCKETS);
    assert!(
        window.buckets.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "oldest first"
    );
    let (_, last) = window.buckets.last().unwrap();
    assert_eq!((last.processed, last.failed, last.limit_hits), (3, 2, 1));
    assert_eq!(window.total.processed, 3, "the event before the window is not counted");
    assert_eq!(rates.window("erp", now).total.processed, 0);
}

fn index(dir: &std::path::Path, keep: Keep) -> SagaIndex {
    SagaIndex::open(&dir.join("sagas.sqlite3"), keep).unwrap()
}

#[test]
fn a_saga_is_found_by_its_id_its_record_in_any_case_and_its_correlation_id() {
    let dir = tempfile::tempdir().unwrap();
    let index = index(dir.path(), Keep::default());
    let now = SystemTime::now();
    let mut forwarded = event(
        "saga-1",
        "mdm",
        Verdict::Forwarded {
            queues: vec!["writeback".into()],
        },
        now,
    );
    forwarded.keys.trace = None;
    index
        .record(&[
            forwarded,
            event("saga-1", "erp", Verdict::Completed, now),
            event("saga-2", "mdm", dead_letter(), now),
        ])
        .unwrap();

    let by_id = index.find(&SagaQuery::Saga("saga-1".into()), 10).unwrap();
    assert_eq!(by_id.len(), 1);
    let saga = &by_id[0];
    assert_eq!(
        saga.steps.iter().map(|s| s.partner.as_str()).collect::<Vec<_>>(),
        ["mdm", "erp"]
    );
    assert_eq!(saga.steps[0].detail.as_deref(), Some("to writeback"));
    assert_eq!(saga.steps[0].trace_id, None);
    assert_eq!(
        saga.steps[1].trace_id.as_deref(),
        Some("0af7651916cd43dd8448eb211c80319c")
    );
    assert_eq!(
        saga.record_id.as_deref(),
        Some("saga-1"),
        "stored without braces, lower case"
    );
    assert_eq!(saga.entity.as_deref(), Some("contact"));

    let by_record = index.find(&SagaQuery::Record("{SAGA-2}".into()), 10).unwrap();
    assert_eq!(by_record.len(), 1);
    assert_eq!(by_record[0].steps[0].outcome, "dead_lettered");
    assert!(
        by_record[0].steps[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("RetriesExhausted")
    );

    assert_eq!(
        index.find(&SagaQuery::Correlation("c0rre1".into()), 10).unwrap().len(),
        2
    );
    let recent = index.find(&SagaQuery::Recent, 1).unwrap();
    assert_eq!(recent[0].saga_id, "saga-2", "the newest first");
    assert!(index.find(&SagaQuery::Record("nothing".into()), 10).unwrap().is_empty());
}

#[test]
fn the_index_keeps_only_the_newest_steps_and_the_last_days() {
    let dir = tempfile::tempdir().unwrap();
    let keep = Keep { days: 2, steps: 5 };
    let index = index(dir.path(), keep);
    let now = SystemTime::now();
    let old = event(
        "ancient",
        "mdm",
        Verdict::Completed,
        now - Duration::from_secs(3 * 86_400),
    );
    let recent: Vec<_> = (0..8)
        .map(|i| event(&format!("s{i}"), "mdm", Verdict::Completed, now))
        .collect();
    index.record(&[old]).unwrap();
    index.record(&recent).unwrap();
    index.prune(now).unwrap();
    let kept = index.find(&SagaQuery::Recent, 100).unwrap();
    let ids: Vec<_> = kept.iter().map(|s| s.saga_id.as_str()).collect();
    assert_eq!(ids, ["s7", "s6", "s5", "s4", "s3"]);

    // Reopened, it still holds them.
    drop(index);
    let reopened = self::index(dir.path(), keep);
    assert_eq!(reopened.find(&SagaQuery::Recent, 100).unwrap().len(), 5);
}
