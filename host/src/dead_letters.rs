//! Operator work on dead letters, the same on the embedded queue and on Service Bus: the CLI's
//! `sagahost dead-letters` and the admin API both call this.
//!
//! - **list** and **show** peek: they take no lock and change nothing.
//! - **redrive** and **purge** take each chosen dead letter under its lock and settle it with
//!   `Complete`; a redrive sends the copy back to its queue in that same step. Both transports
//!   settle and send atomically (an SQLite transaction, an AMQP transaction), so a redrive that
//!   is interrupted at any point (Ctrl-C, SIGKILL, a lost connection) has moved each dead letter
//!   or not, never lost one and never sent one twice; running it again finishes the rest.
//!
//! A bulk redrive or purge walks the dead-letter queue under locks. Dead letters that do not
//! match (or exceed `--limit`) are held under their lock until the walk ends, so that the next
//! receive moves on past them, and are then given back. A walk ends when the queue has nothing
//! more, or when everything it receives is something it already passed over (locks that ran out
//! while it held them).

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use sagahost_transport::dead_letters::{DeadLetter, DeadLetterQueues, LockedDeadLetter};
use sagahost_transport::{OutgoingMessage, Output, ReceivedMessage, Settlement, TransportError};

use crate::saga::envelope::{COMPONENT_VERSION_PROPERTY, PARTNER_PROPERTY, SAGA_PROPERTY};
use crate::saga::seal::StateKeys;
use crate::saga::state::SagaState;

/// Dead letters taken under a lock per receive in a walk.
const WALK_BATCH: usize = 100;
/// How long a walk waits for more dead letters before it calls the queue done. Generous: on
/// Service Bus an empty answer is only a timeout, and dead letters another client has just given
/// back may take a moment to be offered again.
const WALK_WAIT: Duration = Duration::from_secs(2);
/// Dead letters peeked per page while listing.
const PEEK_PAGE: usize = 250;

/// Which dead letters an operation applies to. Every criterion that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The dead-letter reason, exactly (such as `RetriesExhausted` or `MaxDeliveryCountExceeded`).
    pub reason: Option<String>,
    /// The partner whose step dead-lettered it: the `sagahost-partner` property, or, for dead
    /// letters the transport made (delivery count, time to live), the partner reading the queue.
    pub partner: Option<String>,
    /// The component version that ran (its content hash, or a prefix of it).
    pub version: Option<String>,
    /// Enqueued at or after this instant.
    pub since: Option<SystemTime>,
    /// Enqueued before this instant.
    pub until: Option<SystemTime>,
}

impl Filter {
    /// Whether no criterion is set (everything matches).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether `letter` matches; `queue_partner` is the partner that reads its queue, if any.
    fn matches(&self, letter: &Letter<'_>, queue_partner: Option<&str>) -> bool {
        let property = |name: &str| property(letter.properties, name);
        let partner = property(PARTNER_PROPERTY).or(queue_partner);
        self.reason.as_deref().is_none_or(|want| want == letter.reason)
            && self.partner.as_deref().is_none_or(|want| Some(want) == partner)
            && self.version.as_deref().is_none_or(|want| {
                !want.is_empty() && property(COMPONENT_VERSION_PROPERTY).is_some_and(|have| have.starts_with(want))
            })
            && self.since.is_none_or(|since| letter.enqueued_time >= since)
            && self.until.is_none_or(|until| letter.enqueued_time < until)
    }
}

/// An instant given by an operator: an RFC 3339 time (`2026-12-06T08:00:00Z`), or a duration
/// meaning that long ago (`90m`, `2h`, `3days`).
pub fn parse_instant(text: &str) -> Result<SystemTime, String> {
    if let Ok(at) = humantime::parse_rfc3339_weak(text) {
        return Ok(at);
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        format!("`{text}` is neither an RFC 3339 time (2026-12-06T08:00:00Z) nor a duration ago (90m, 2h, 3days)")
    })?;
    SystemTime::now()
        .checked_sub(ago)
        .ok_or_else(|| format!("`{text}` ago is before the clock's start"))
}

/// An instant as RFC 3339, to the second, for operators.
pub fn format_instant(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// The partner a dead letter names (`sagahost-partner`), if the host dead-lettered it.
pub fn partner_of(letter: &DeadLetter) -> Option<&str> {
    property(&letter.message.properties, PARTNER_PROPERTY)
}

/// The component version a dead letter names (`sagahost-component-version`), if one ran.
pub fn version_of(letter: &DeadLetter) -> Option<&str> {
    property(&letter.message.properties, COMPONENT_VERSION_PROPERTY)
}

fn property<'a>(properties: &'a [(String, String)], name: &str) -> Option<&'a str> {
    properties
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// The body decoded as `sagahost inspect` decodes it, as canonical JSON; or why it does not
/// decode.
pub fn decoded(letter: &DeadLetter) -> Result<serde_json::Value, String> {
    let message = &letter.message;
    sagahost_dataverse::decode(&message.body, message.content_type.as_deref(), &Default::default())
        .map(|context| context.to_canonical_json())
        .map_err(|err| err.to_string())
}

/// What a filter looks at, whether the dead letter was peeked or received.
struct Letter<'a> {
    reason: &'a str,
    properties: &'a [(String, String)],
    enqueued_time: SystemTime,
}

impl<'a> From<&'a DeadLetter> for Letter<'a> {
    fn from(letter: &'a DeadLetter) -> Self {
        Self {
            reason: &letter.reason,
            properties: &letter.message.properties,
            enqueued_time: letter.message.enqueued_time,
        }
    }
}

impl<'a> From<&'a LockedDeadLetter> for Letter<'a> {
    fn from(letter: &'a LockedDeadLetter) -> Self {
        Self {
            reason: &letter.reason,
            properties: &letter.message.properties,
            enqueued_time: letter.message.enqueued_time,
        }
    }
}

/// The dead letters an operation applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The one with this sequence number.
    One(i64),
    /// Every one the filter matches (all of them for an empty filter).
    Matching(Filter),
}

impl Selection {
    fn first_sequence(&self) -> i64 {
        match self {
            Self::One(sequence) => *sequence,
            Self::Matching(_) => 0,
        }
    }

    fn matches(&self, sequence: i64, letter: &Letter<'_>, queue_partner: Option<&str>) -> bool {
        match self {
            Self::One(wanted) => sequence == *wanted,
            Self::Matching(filter) => filter.matches(letter, queue_partner),
        }
    }
}

/// One queue's dead letters, and what an operator needs to know about that queue.
pub struct DeadLetterQueue<'a, T> {
    /// The transport that holds the queue.
    pub transport: &'a T,
    /// The queue whose dead-letter queue this is.
    pub queue: &'a str,
    /// The partner that reads the queue, for [`Filter::partner`] on dead letters the transport
    /// made.
    pub partner: Option<&'a str>,
}

/// A page of [`DeadLetterQueue::list`].
#[derive(Debug, Clone)]
pub struct Page {
    /// The matching dead letters, in sequence order.
    pub letters: Vec<DeadLetter>,
    /// Where the next page starts (`from`), when there may be more.
    pub next: Option<i64>,
}

/// How a redrive or purge went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Dead letters redriven or purged.
    pub done: usize,
    /// Dead letters chosen but left where they are, with why (a redrive that could not rewrite
    /// the message).
    pub skipped: Vec<(i64, String)>,
}

/// Options of a redrive.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedriveOptions<'k> {
    /// Redrive at most this many.
    pub limit: Option<usize>,
    /// Start the step's attempts again from 1, so a step that ran out of retries gets its full
    /// retry budget back: the saga state is verified with these keys, rewritten and sealed again.
    pub reset_attempts: Option<&'k StateKeys>,
}

impl<T: DeadLetterQueues> DeadLetterQueue<'_, T> {
    /// The dead letters `filter` matches, from sequence number `from` on, at most `limit`.
    pub async fn list(&self, filter: &Filter, from: i64, limit: usize) -> Result<Page, TransportError> {
        let mut letters = Vec::new();
        let mut cursor = from;
        loop {
            let page = self.transport.peek_dead_letters(self.queue, cursor, PEEK_PAGE).await?;
            let full = page.len() == PEEK_PAGE;
            for letter in page {
                cursor = letter.message.sequence_number + 1;
                if filter.matches(&Letter::from(&letter), self.partner) {
                    letters.push(letter);
                    if letters.len() == limit {
                        return Ok(Page {
                            letters,
                            next: Some(cursor),
                        });
                    }
                }
            }
            if !full {
                return Ok(Page { letters, next: None });
            }
        }
    }

    /// The dead letter with `sequence`, if the dead-letter queue has it.
    pub async fn show(&self, sequence: i64) -> Result<Option<DeadLetter>, TransportError> {
        let page = self.transport.peek_dead_letters(self.queue, sequence, 1).await?;
        Ok(page
            .into_iter()
            .next()
            .filter(|letter| letter.message.sequence_number == sequence))
    }

    /// How many dead letters `selection` picks, at most `limit`, without taking any (a dry run,
    /// and the count a purge asks the operator to confirm).
    pub async fn count(&self, selection: &Selection, limit: Option<usize>) -> Result<usize, TransportError> {
        let limit = limit.unwrap_or(usize::MAX);
        Ok(match selection {
            Selection::One(sequence) => usize::from(self.show(*sequence).await?.is_some()).min(limit),
            Selection::Matching(filter) => self.list(filter, 0, limit).await?.letters.len(),
        })
    }

    /// Sends the chosen dead letters back to the queue and removes them from the dead-letter
    /// queue, each in one step. `progress` hears the running count.
    pub async fn redrive(
        &self,
        selection: &Selection,
        options: RedriveOptions<'_>,
        progress: impl FnMut(usize),
    ) -> Result<Outcome, TransportError> {
        let queue = self.queue;
        self.walk(selection, options.limit, progress, |letter| {
            let message = redriven(&letter.message, options.reset_attempts)?;
            Ok(vec![Output {
                queue: queue.to_owned(),
                message,
            }])
        })
        .await
    }

    /// Removes the chosen dead letters for good. `progress` hears the running count.
    pub async fn purge(
        &self,
        selection: &Selection,
        limit: Option<usize>,
        progress: impl FnMut(usize),
    ) -> Result<Outcome, TransportError> {
        self.walk(selection, limit, progress, |_| Ok(Vec::new())).await
    }

    /// Takes the chosen dead letters under their locks and completes each with the outputs
    /// `outputs_for` makes for it (or leaves it, when that says why not).
    async fn walk(
        &self,
        selection: &Selection,
        limit: Option<usize>,
        mut progress: impl FnMut(usize),
        outputs_for: impl Fn(&LockedDeadLetter) -> Result<Vec<Output>, String>,
    ) -> Result<Outcome, TransportError> {
        let limit = limit.unwrap_or(usize::MAX);
        let mut outcome = Outcome::default();
        // Locks held on dead letters passed over, given back when the walk ends.
        let mut held: Vec<ReceivedMessage> = Vec::new();
        let mut passed: HashSet<i64> = HashSet::new();
        // Set once the one dead letter of a `Selection::One` is done.
        let mut finished = false;
        let walked = async {
            while outcome.done < limit {
                let batch = self
                    .transport
                    .receive_dead_letters(self.queue, selection.first_sequence(), WALK_BATCH, WALK_WAIT)
                    .await?;
                if batch.is_empty() {
                    break;
                }
                let mut news = false;
                for letter in batch {
                    let sequence = letter.message.sequence_number;
                    let chosen = outcome.done < limit
                        && !finished
                        && selection.matches(sequence, &Letter::from(&letter), self.partner)
                        && !outcome.skipped.iter().any(|(skipped, _)| *skipped == sequence);
                    let outputs = if chosen {
                        outputs_for(&letter).map_err(|why| outcome.skipped.push((sequence, why)))
                    } else {
                        Err(())
                    };
                    let Ok(outputs) = outputs else {
                        news |= passed.insert(sequence);
                        held.push(ReceivedMessage {
                            body: Vec::new(),
                            ..letter.message
                        });
                        continue;
                    };
                    news = true;
                    match self
                        .transport
                        .settle(&letter.message, Settlement::Complete, outputs)
                        .await
                    {
                        Ok(()) => {
                            outcome.done += 1;
                            progress(outcome.done);
                            finished = matches!(selection, Selection::One(_));
                        }
                        // Its lock ran out: it is back in the dead-letter queue, and the walk
                        // takes it again when it comes round.
                        Err(TransportError::LockLost { .. }) => {}
                        Err(other) => return Err(other),
                    }
                }
                if finished || !news {
                    break;
                }
            }
            Ok(())
        };
        let walked = walked.await;
        for message in held {
            // A lock that ran out meanwhile is given back already.
            let _ = self.transport.settle(&message, Settlement::Abandon, Vec::new()).await;
        }
        walked.map(|()| outcome)
    }
}

/// The message a redrive sends for `dead`: the same id, body and application properties, less
/// what described its dead-lettering; with the step's attempts started again when asked.
fn redriven(dead: &ReceivedMessage, reset_attempts: Option<&StateKeys>) -> Result<OutgoingMessage, String> {
    // The transports keep the reason and description out of the properties already.
    let dead_letter_record = [PARTNER_PROPERTY, COMPONENT_VERSION_PROPERTY];
    let mut message = OutgoingMessage {
        message_id: dead.message_id.clone(),
        correlation_id: dead.correlation_id.clone(),
        content_type: dead.content_type.clone(),
        properties: dead
            .properties
            .iter()
            .filter(|(name, _)| !dead_letter_record.contains(&name.as_str()))
            .cloned()
            .collect(),
        body: dead.body.clone(),
        ..OutgoingMessage::default()
    };
    if let Some(keys) = reset_attempts {
        reset_attempt(&mut message, keys)?;
    }
    Ok(message)
}

/// Sets the saga state's attempt back to 1 and seals it again. Refuses state that does not
/// verify: resealing it would launder a forgery.
fn reset_attempt(message: &mut OutgoingMessage, keys: &StateKeys) -> Result<(), String> {
    let Some(index) = message.properties.iter().position(|(name, _)| name == SAGA_PROPERTY) else {
        // A saga's first message: no attempts recorded yet.
        return Ok(());
    };
    keys.verify(&message.properties, &message.body)
        .map_err(|why| format!("the attempt counter was not reset: {why}"))?;
    let mut saga: SagaState = serde_json::from_str(&message.properties[index].1)
        .map_err(|err| format!("the attempt counter was not reset: `{SAGA_PROPERTY}` does not parse: {err}"))?;
    saga.attempt = 1;
    message.properties[index].1 = serde_json::to_string(&saga).expect("saga state serializes");
    keys.seal(message);
    Ok(())
}

#[cfg(test)]
mod tests;
