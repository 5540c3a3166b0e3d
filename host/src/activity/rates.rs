//! Each partner's message rates over the last few minutes, in fixed time buckets, for the
//! console's small charts. Counts only; the Prometheus metrics keep the long history.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::saga::SagaEvent;
use crate::saga::routing::Verdict;

/// The width of one bucket.
pub const BUCKET: Duration = Duration::from_secs(10);
/// How many buckets a partner's window holds (five minutes).
pub const BUCKETS: usize = 30;

/// What one bucket counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Bucket {
    /// Messages settled, whatever their outcome.
    pub processed: u64,
    /// Messages dead-lettered.
    pub failed: u64,
    /// Messages sent back to wait for another attempt.
    pub retried: u64,
    /// Steps a sandbox limit ended (deadline, memory, fuel, stack).
    pub limit_hits: u64,
}

impl Bucket {
    fn add(&mut self, other: &Bucket) {
        self.processed += other.processed;
        self.failed += other.failed;
        self.retried += other.retried;
        self.limit_hits += other.limit_hits;
    }
}

/// A partner's last [`BUCKETS`] buckets, oldest first, and their sum.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Each bucket's start and counts; empty buckets included.
    pub buckets: Vec<(SystemTime, Bucket)>,
    pub total: Bucket,
}

/// Every partner's recent buckets.
#[derive(Default)]
pub struct Rates {
    partners: Mutex<BTreeMap<String, VecDeque<(u64, Bucket)>>>,
}

/// The index of the bucket `at` falls in.
fn bucket_of(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / BUCKET.as_secs()
}

impl Rates {
    /// Counts one settled message.
    pub fn record(&self, event: &SagaEvent) {
        let index = bucket_of(event.at);
        let mut partners = self.partners.lock().expect("rates lock");
        // The partner's name is copied once, not for every event.
        if !partners.contains_key(&event.partner) {
            partners.insert(event.partner.clone(), VecDeque::new());
        }
        let buckets = partners.get_mut(&event.partner).expect("inserted above");
        if buckets.back().is_none_or(|(last, _)| *last < index) {
            buckets.push_back((index, Bucket::default()));
            while buckets.len() > BUCKETS {
                buckets.pop_front();
            }
        }
        // An event from an earlier bucket (a batch that crossed a boundary) counts in the last.
        let (_, bucket) = buckets.back_mut().expect("pushed above");
        bucket.processed += 1;
        match event.verdict {
            Verdict::DeadLettered { .. } => bucket.failed += 1,
            Verdict::Retried { .. } => bucket.retried += 1,
            _ => {}
        }
        if event.limit.is_some() {
            bucket.limit_hits += 1;
        }
    }

    /// `partner`'s window ending with the bucket `now` falls in.
    pub fn window(&self, partner: &str, now: SystemTime) -> Window {
        let last = bucket_of(now);
        let first = last.saturating_sub(BUCKETS as u64 - 1);
        let partners = self.partners.lock().expect("rates lock");
        let recorded = partners.get(partner);
        let mut total = Bucket::default();
        let buckets = (first..=last)
            .map(|index| {
                let bucket = recorded
                    .and_then(|buckets| buckets.iter().find(|(at, _)| *at == index))
                    .map(|(_, bucket)| *bucket)
                    .unwrap_or_default();
                total.add(&bucket);
                (UNIX_EPOCH + Duration::from_secs(index * BUCKET.as_secs()), bucket)
            })
            .collect();
        Window { buckets, total }
    }
}
