//! The embedded durable queue: the default [`Transport`], a single SQLite file with Azure Service
//! Bus peek-lock semantics, so the whole saga runs on one machine with nothing else installed.
//!
//! It owns the queue database: the schema (versioned with `PRAGMA user_version`), every message of
//! every configured queue with its dead-letter sub-queue, and the operator views over them
//! ([`EmbeddedQueue::queue_depth`], [`EmbeddedQueue::peek`], [`EmbeddedQueue::dead_letters`],
//! [`EmbeddedQueue::dead_letter`], [`EmbeddedQueue::redrive`]).
//!
//! # Semantics
//! As in Service Bus: a receive locks each message for the queue's lock duration under a fresh
//! lock token and counts the delivery; complete, abandon, dead-letter and renew need that lock to
//! be still held, otherwise [`TransportError::LockLost`]. An expired lock makes the message visible
//! again. At receive time a message whose time to live ran out is dead-lettered with
//! `TTLExpiredException`, and one already delivered `max_delivery_count` times with
//! `MaxDeliveryCountExceeded`. Scheduled messages stay invisible until their time.
//!
//! # Durability and group commit
//! The database runs in WAL mode with `synchronous=FULL`, so a commit is on disk when it returns:
//! a completed message never comes back and a sent one is never lost. That costs one fsync per
//! commit, so one commit per operation would cap throughput at the disk's fsync rate. Instead one
//! writer thread owns the connection; callers hand it closures over a channel and await a oneshot
//! reply. The writer takes every request waiting, runs them in one transaction (each under its own
//! savepoint, so a failing request rolls back only itself), commits once, and only then replies:
//! no caller hears "done" before its change is durable, and a busy queue shares each fsync among
//! many operations. Receives go through the writer too, since they write the lock columns; so do
//! the operator reads, which keeps one connection and one code path. The single writer also means
//! SQLite never sees two writers of ours contend. Settling a message and sending its outputs is
//! one request, hence one atomic step ([`Transport::atomic_settle_and_send`] is true).
//!
//! No SQLite call ever runs on a tokio thread: async callers only send to the channel and await.
//! Waiting receivers sleep on a per-queue [`Notify`] woken by sends, abandons and redrives, and
//! poll every 50 ms for what no one announces: expiring locks and scheduled messages
//! coming due.

mod store;
mod writer;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use serde::{Deserialize, Deserializer};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Output, ReceivedMessage, Settlement, Transport, TransportError};
use writer::Writer;

/// How often a waiting receive looks again for messages that became visible without a send:
/// expired locks and scheduled messages coming due. Short enough for lock expiry to feel prompt,
/// long enough that idle receivers cost next to nothing.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// One queue's settings. In TOML, durations are whole milliseconds:
///
/// ```toml
/// name = "mdm"
/// lock-duration-ms = 30000
/// max-delivery-count = 10
/// default-ttl-ms = 86400000
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct QueueSettings {
    /// The queue's name, as messages are addressed to it.
    pub name: String,
    /// How long a receive locks a message before it becomes visible again (default 30 s).
    #[serde(
        rename = "lock-duration-ms",
        default = "default_lock_duration",
        deserialize_with = "millis"
    )]
    pub lock_duration: Duration,
    /// Deliveries after which a message is dead-lettered with `MaxDeliveryCountExceeded` (default 10).
    #[serde(default = "default_max_delivery_count")]
    pub max_delivery_count: u32,
    /// Time to live for messages sent without one; `None` (the default) keeps them until consumed.
    #[serde(rename = "default-ttl-ms", default, deserialize_with = "optional_millis")]
    pub default_ttl: Option<Duration>,
}

impl QueueSettings {
    /// Settings for `name` with the defaults: 30 s locks, 10 deliveries, no default time to live.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            lock_duration: default_lock_duration(),
            max_delivery_count: default_max_delivery_count(),
            default_ttl: None,
        }
    }
}

fn default_lock_duration() -> Duration {
    Duration::from_secs(30)
}

fn default_max_delivery_count() -> u32 {
    10
}

fn millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_millis)
}

fn optional_millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    Option::<u64>::deserialize(deserializer).map(|ms| ms.map(Duration::from_millis))
}

/// How many messages a queue holds, as Service Bus counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Available now or locked by a receiver.
    pub active: u64,
    /// Scheduled for later and not yet visible.
    pub scheduled: u64,
    /// In the queue's dead-letter queue.
    pub dead_lettered: u64,
}

/// A message as stored, seen without taking a lock (peek, dead-letter inspection).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// The queue it is in.
    pub queue: String,
    /// Increasing per queue; identifies the message to the operator commands.
    pub sequence_number: i64,
    /// Broker message id, as sent or generated.
    pub message_id: String,
    /// Correlation id, as sent.
    pub correlation_id: Option<String>,
    /// Content type of the body, as sent.
    pub content_type: Option<String>,
    /// Application properties, in the order sent.
    pub properties: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
    /// Deliveries so far.
    pub delivery_count: u32,
    /// When the queue accepted it.
    pub enqueued_time: SystemTime,
    /// Not delivered before this instant, if the sender scheduled it.
    pub scheduled_enqueue_time: Option<SystemTime>,
    /// Dead-lettered with `TTLExpiredException` instead of delivered from this instant on.
    pub expires_at: Option<SystemTime>,
    /// Set while a receiver holds a lock on it.
    pub locked_until: Option<SystemTime>,
}

/// A message in a queue's dead-letter queue, with why it is there.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The message as it was when dead-lettered.
    pub message: StoredMessage,
    /// Machine-readable reason, such as `MaxDeliveryCountExceeded` or one a component gave.
    pub reason: String,
    /// What happened, for the operator.
    pub description: String,
    /// When it was moved to the dead-letter queue.
    pub dead_lettered_at: SystemTime,
}

/// The embedded durable queue. Cheap to clone: clones share one database connection and writer
/// thread, which stop when the last clone is dropped (after finishing the requests already made).
#[derive(Clone)]
pub struct EmbeddedQueue {
    shared: Arc<Shared>,
}

struct Shared {
    /// Settings per queue name; shared with the writer's jobs, which look up output queues.
    queues: Arc<HashMap<String, QueueSettings>>,
    /// Wakes the receivers waiting on a queue when messages may have become visible there.
    arrivals: HashMap<String, Notify>,
    writer: Writer,
}

impl EmbeddedQueue {
    /// Opens the queue database at `path`, creating the file, its folder and the schema as needed,
    /// with `queues` as the queues that exist. Blocking: call it at startup, or from
    /// `spawn_blocking`. Messages of queues no longer configured stay in the file, untouched.
    pub fn open(path: &Path, queues: &[QueueSettings]) -> anyhow::Result<Self> {
        let mut settings = HashMap::new();
        for queue in queues {
            if queue.name.is_empty() {
                bail!("a queue needs a name");
            }
            if queue.lock_duration.is_zero() {
                bail!("queue `{}`: lock-duration-ms must be more than 0", queue.name);
            }
            if queue.max_delivery_count == 0 {
                bail!("queue `{}`: max-delivery-count must be at least 1", queue.name);
            }
            if settings.insert(queue.name.clone(), queue.clone()).is_some() {
                bail!("queue `{}` is configured twice", queue.name);
            }
        }
        let conn =
            store::open(path, queues).with_context(|| format!("opening the queue database {}", path.display()))?;
        let arrivals = settings.keys().map(|name| (name.clone(), Notify::new())).collect();
        let writer = Writer::start(conn)?;
        Ok(Self {
            shared: Arc::new(Shared {
                queues: Arc::new(settings),
                arrivals,
                writer,
            }),
        })
    }

    fn settings(&self, queue: &str) -> Result<&QueueSettings, TransportError> {
        self.shared
            .queues
            .get(queue)
            .ok_or_else(|| TransportError::UnknownQueue(queue.to_owned()))
    }

    /// Wakes receivers waiting on `queue`.
    fn announce(&self, queue: &str) {
        if let Some(arrivals) = self.shared.arrivals.get(queue) {
            arrivals.notify_waiters();
        }
    }

    /// Counts the active, scheduled and dead-lettered messages in `queue`.
    pub async fn queue_depth(&self, queue: &str) -> Result<QueueDepth, TransportError> {
        let queue = self.settings(queue)?.name.clone();
        self.shared.writer.call(move |conn| store::depth(conn, &queue)).await
    }

    /// Up to `limit` active messages of `queue` (locked and scheduled ones included), in sequence
    /// order, without locking them or counting a delivery.
    pub async fn peek(&self, queue: &str, limit: usize) -> Result<Vec<StoredMessage>, TransportError> {
        let queue = self.settings(queue)?.name.clone();
        self.shared
            .writer
            .call(move |conn| store::peek(conn, &queue, limit))
            .await
    }

    /// Up to `limit` messages of `queue`'s dead-letter queue, in sequence order.
    pub async fn dead_letters(&self, queue: &str, limit: usize) -> Result<Vec<DeadLetter>, TransportError> {
        let queue = self.settings(queue)?.name.clone();
        self.shared
            .writer
            .call(move |conn| store::dead_letters(conn, &queue, limit))
            .await
    }

    /// The dead letter with `sequence_number` in `queue`'s dead-letter queue, if there is one.
    pub async fn dead_letter(&self, queue: &str, sequence_number: i64) -> Result<Option<DeadLetter>, TransportError> {
        let queue = self.settings(queue)?.name.clone();
        self.shared
            .writer
            .call(move |conn| store::dead_letter_by_sequence(conn, &queue, sequence_number))
            .await
    }

    /// Moves a dead letter back to the active queue in one step, with its delivery count reset to 0
    /// and its time to live restarted; it keeps its sequence number. Returns false when `queue`'s
    /// dead-letter queue has no message with `sequence_number`.
    pub async fn redrive(&self, queue: &str, sequence_number: i64) -> Result<bool, TransportError> {
        let name = self.settings(queue)?.name.clone();
        let moved = self
            .shared
            .writer
            .call(move |conn| store::redrive(conn, &name, sequence_number))
            .await?;
        if moved {
            self.announce(queue);
        }
        Ok(moved)
    }
}

impl Transport for EmbeddedQueue {
    async fn receive(&self, queue: &str, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, TransportError> {
        let settings = self.settings(queue)?.clone();
        let arrivals = &self.shared.arrivals[queue];
        // A wait too long to represent is a wait without end.
        let deadline = Instant::now().checked_add(wait);
        loop {
            // Registered before looking, so an arrival between the look and the wait still wakes us.
            let arrival = arrivals.notified();
            tokio::pin!(arrival);
            arrival.as_mut().enable();

            let settings = settings.clone();
            let batch = self
                .shared
                .writer
                .call(move |conn| store::receive(conn, &settings, max))
                .await?;
            let now = Instant::now();
            let remaining = deadline.map_or(POLL_INTERVAL, |deadline| deadline.saturating_duration_since(now));
            if !batch.is_empty() || max == 0 || remaining.is_zero() {
                return Ok(batch);
            }
            // Either an announced arrival or the poll interval, whichever is first; then look again.
            let _ = tokio::time::timeout(POLL_INTERVAL.min(remaining), arrival).await;
        }
    }

    async fn settle(
        &self,
        message: &ReceivedMessage,
        settlement: Settlement,
        outputs: Vec<Output>,
    ) -> Result<(), TransportError> {
        let abandoned = settlement == Settlement::Abandon;
        let targets: Vec<String> = outputs.iter().map(|output| output.queue.clone()).collect();
        let queues = Arc::clone(&self.shared.queues);
        let held = store::Lock::from(message);
        self.shared
            .writer
            .call(move |conn| store::settle(conn, &queues, &held, &settlement, &outputs))
            .await?;
        if abandoned {
            self.announce(&message.queue);
        }
        for target in &targets {
            self.announce(target);
        }
        Ok(())
    }

    async fn renew_lock(&self, message: &ReceivedMessage) -> Result<SystemTime, TransportError> {
        let settings = self.settings(&message.queue)?.clone();
        let held = store::Lock::from(message);
        self.shared
            .writer
            .call(move |conn| store::renew_lock(conn, &settings, &held))
            .await
    }

    async fn send(&self, outputs: Vec<Output>) -> Result<(), TransportError> {
        let targets: Vec<String> = outputs.iter().map(|output| output.queue.clone()).collect();
        let queues = Arc::clone(&self.shared.queues);
        self.shared
            .writer
            .call(move |conn| store::send(conn, &queues, &outputs))
            .await?;
        for target in &targets {
            self.announce(target);
        }
        Ok(())
    }

    fn atomic_settle_and_send(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
