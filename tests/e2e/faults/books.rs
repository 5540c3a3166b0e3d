//! The books of a run: every contact's end state, and a cause for every repeated partner call.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use sagahost::saga::envelope::UNDO_CONTINUED_PROPERTY;
use sagahost_transport::dead_letters::DeadLetterQueues;
use sagahost_transport::embedded::EmbeddedQueue;

use super::LOCK_MS;
use super::partners::{Call, Fault, Partners, contact_of};
use crate::saga::SAGA_QUEUES;

/// Something that happened to the run, and when.
#[derive(Debug, Clone, Copy)]
pub(super) enum Incident {
    HostKilled(Instant),
    /// The broker was killed at the first instant and served again from the second.
    BrokerRestarted(Instant, Instant),
}

/// End states and explanations found after a run.
#[derive(Debug, Default)]
pub(super) struct Books {
    pub(super) completed: BTreeSet<usize>,
    pub(super) compensated: BTreeSet<usize>,
    pub(super) dead_lettered: BTreeMap<usize, String>,
    /// Undos dead-lettered while the compensation went on to the older steps (not end states).
    pub(super) failed_undos: BTreeMap<usize, String>,
    /// Contacts with evidence of two end states.
    pub(super) conflicts: BTreeSet<usize>,
    pub(super) faults: BTreeMap<String, usize>,
    pub(super) repeats: BTreeMap<&'static str, usize>,
    /// The first few unexplained repeats: partner, the two calls' faults and the time between.
    pub(super) unexplained: Vec<String>,
}

/// Why the `n`th call for a key was made, given the one before it.
fn repeat_cause(previous: &Call, next: &Call, incidents: &[Incident]) -> &'static str {
    if previous.fault.failed() {
        return "retry after a fault";
    }
    for incident in incidents {
        match *incident {
            Incident::HostKilled(at) if previous.at <= at && at <= next.at => return "redelivery after SIGKILL",
            // The host lives on: a delivery it held (prefetched ones included) may still call
            // its partner for up to a lock's time after the broker is back, then fail to settle.
            Incident::BrokerRestarted(killed, back)
                if previous.at <= back + Duration::from_millis(LOCK_MS + 1_000) && killed <= next.at =>
            {
                return "redelivery after a broker restart";
            }
            _ => {}
        }
    }
    "unexplained"
}

/// The books of a run that started at `started` (repeats are reported by their time since then).
pub(super) async fn keep_books(
    queue: &EmbeddedQueue,
    partners: &Partners,
    incidents: &[Incident],
    started: Instant,
) -> Books {
    let mut books = Books::default();
    for queue_name in SAGA_QUEUES {
        for dead in queue.peek_dead_letters(queue_name, 0, 100_000).await.unwrap() {
            let contact = contact_of(&String::from_utf8_lossy(&dead.message.body)).expect("a contact's message");
            assert!(
                !dead.reason.is_empty(),
                "a dead letter without a reason on {queue_name}"
            );
            let continued = dead
                .message
                .properties
                .iter()
                .any(|(name, value)| name == UNDO_CONTINUED_PROPERTY && value == "true");
            // The MDM's undo is the oldest: after it there is nothing left to undo.
            if continued && queue_name != "contacts-compensate" {
                books
                    .failed_undos
                    .insert(contact, format!("{queue_name}: {}", dead.reason));
                continue;
            }
            let previous = books
                .dead_lettered
                .insert(contact, format!("{queue_name}: {}", dead.reason));
            assert!(previous.is_none(), "contact {contact} dead-lettered twice");
        }
    }
    let succeeded = |calls: &[Call], method: &str| -> BTreeSet<usize> {
        calls
            .iter()
            .filter(|c| c.method == method && !c.fault.failed())
            .filter_map(|c| contact_of(&c.body).or_else(|| contact_of(&c.path)))
            .collect()
    };
    let mdm = partners.mdm.calls();
    let erp = partners.erp.calls();
    let deleted = succeeded(&mdm, "DELETE");
    let accepted: BTreeSet<usize> = erp
        .iter()
        .filter(|c| !c.fault.failed())
        .filter_map(|c| contact_of(&c.body).filter(|contact| contact % 10 != 7))
        .collect();
    // Each piece of evidence points at one end state: no contact may have two.
    let dead: BTreeSet<usize> = books.dead_lettered.keys().copied().collect();
    books.conflicts = dead
        .intersection(&accepted)
        .chain(dead.intersection(&deleted))
        .chain(accepted.intersection(&deleted))
        .copied()
        .collect();
    books.compensated = deleted
        .iter()
        .filter(|c| !books.dead_lettered.contains_key(c))
        .copied()
        .collect();
    books.completed = accepted
        .iter()
        .filter(|c| !books.dead_lettered.contains_key(c) && !deleted.contains(c))
        .copied()
        .collect();
    for (name, calls) in [("mdm", mdm), ("writeback", partners.writeback.calls()), ("erp", erp)] {
        let mut by_key: BTreeMap<&str, Vec<&Call>> = BTreeMap::new();
        for call in &calls {
            if call.fault != Fault::None && call.fault != Fault::Replayed {
                *books.faults.entry(format!("{name} {:?}", call.fault)).or_default() += 1;
            }
            by_key.entry(call.key.as_str()).or_default().push(call);
        }
        for calls in by_key.values() {
            for pair in calls.windows(2) {
                let cause = repeat_cause(pair[0], pair[1], incidents);
                *books.repeats.entry(cause).or_default() += 1;
                if cause == "unexplained" && books.unexplained.len() < 10 {
                    books.unexplained.push(format!(
                        "{name} {} {}: {:?} at {:.1?}, then {:?} at {:.1?}",
                        pair[0].method,
                        pair[0].key,
                        pair[0].fault,
                        pair[0].at.duration_since(started),
                        pair[1].fault,
                        pair[1].at.duration_since(started)
                    ));
                }
            }
        }
    }
    books
}
