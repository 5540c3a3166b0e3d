//! The embedded durable queue: the default [`Transport`], a single SQLite file with Azure Service
//! Bus peek-lock semantics, so the whole saga runs on one machine with nothing else installed.
//!
//! It owns the queue database: the schema (versioned with `PRAGMA user_version`), every message of
//! every configured queue with its dead-letter sub-queue, and the operator views over them
//! ([`EmbeddedQueue::queue_depth`], [`EmbeddedQueue::peek`], and the dead-letter queues through
//! [`DeadLetterQueues`]).
//!
//! It also holds topics (`topics.rs`): a message sent to a topic (an [`Output`] whose `queue` names
//! one) is copied in the same transaction to every subscription with a rule whose filter
//! ([`crate::filter`]: true, false, correlation or the Service Bus SQL subset) it matches, and is
//! dropped when none matches. A subscription is received from like a queue named by its entity
//! path, `<topic>/Subscriptions/<subscription>`, with its own lock duration, max delivery count and
//! dead-letter queue; settling a message and sending to a topic stays one atomic step. Topics,
//! subscriptions and rules are created, listed and deleted with [`EmbeddedQueue::ensure_topic`],
//! [`EmbeddedQueue::ensure_subscription`], [`EmbeddedQueue::add_rule`] and their siblings, and
//! are durable in the same file.
//!
//! A queue with `requires_session` takes only messages with a session id and is received from
//! through [`Sessions`](crate::sessions::Sessions) (`sessions.rs`, `session_store.rs`): one session locked to one receiver
//! at a time, its messages in sequence order.
//!
//! For the local Service Bus broker (`sagahost-broker`) it also offers what Service Bus clients
//! can ask for beyond [`Transport`]: queues created on first use ([`EmbeddedQueue::ensure_queue`]),
//! receive-and-delete, releasing a lock without counting the
//! delivery, sending with the sequence numbers returned, cancelling scheduled messages and peeking
//! from a sequence number; and, for its management endpoint, queues as entities that are created,
//! updated, described and deleted one by one, with their settings stored (`queue_definitions.rs`).
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
//! reply. The writer takes every request waiting, runs them in one transaction (a failing request
//! rolls back only itself: see `writer::run_batch`), commits once, and only then replies:
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

mod queue_definitions;
mod schema;
mod session_store;
mod sessions;
mod store;
mod topic_store;
mod topics;
mod writer;

pub use topics::{DEFAULT_RULE, Rule, SubscriptionSettings, TopicError, TopicInfo, TopicSettings};

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use serde::{Deserialize, Deserializer};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::dead_letters::{DeadLetter, DeadLetterQueues, LockedDeadLetter};
use super::{Output, ReceivedMessage, Settlement, StoredMessage, Transport, TransportError};
use store::Entities;
use topics::Catalog;
use writer::Writer;

pub use queue_definitions::QueueInfo;

/// The work of one transaction, applied by [`EmbeddedQueue::commit`] as one step.
#[derive(Debug, Default)]
pub struct TransactionWork {
    /// Locked messages and how to settle each.
    pub settled: Vec<(ReceivedMessage, Settlement)>,
    /// Locked messages to give back without counting the delivery.
    pub released: Vec<ReceivedMessage>,
    /// Messages to send.
    pub outputs: Vec<Output>,
}

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
    /// Session-enabled (Service Bus `RequiresSession`): takes only messages with a session id and
    /// is received from through [`Sessions`](crate::sessions::Sessions), one session per receiver at a time (default false).
    #[serde(default)]
    pub requires_session: bool,
}

impl QueueSettings {
    /// Settings for `name` with the defaults: 30 s locks, 10 deliveries, no default time to live,
    /// no sessions.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            lock_duration: default_lock_duration(),
            max_delivery_count: default_max_delivery_count(),
            default_ttl: None,
            requires_session: false,
        }
    }
}

/// Checks the settings a queue needs to work: a name, a lock that lasts, at least one delivery.
fn validate(queue: &QueueSettings) -> anyhow::Result<()> {
    if queue.name.is_empty() {
        bail!("a queue needs a name");
    }
    if queue.lock_duration.is_zero() {
        bail!("queue `{}`: lock-duration-ms must be more than 0", queue.name);
    }
    if queue.max_delivery_count == 0 {
        bail!("queue `{}`: max-delivery-count must be at least 1", queue.name);
    }
    Ok(())
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

/// The largest message the embedded queue takes. The queue has no limit of its own; this is
/// the largest body the Dataverse decoders accept by default, so anything larger could only be
/// dead-lettered by the next step (the host's tests check that the two agree).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// The embedded durable queue. Cheap to clone: clones share one database connection and writer
/// thread, which stop when the last clone is dropped (after finishing the requests already made).
#[derive(Clone)]
pub struct EmbeddedQueue {
    shared: Arc<Shared>,
}

struct Shared {
    /// Settings per queue name; a snapshot is shared with the writer's jobs, which look up output
    /// queues. Replaced whole (copy on write) when [`EmbeddedQueue::ensure_queue`] adds a queue.
    queues: RwLock<Arc<HashMap<String, QueueSettings>>>,
    /// Wakes the receivers waiting on a queue when messages may have become visible there.
    arrivals: RwLock<HashMap<String, Arc<Notify>>>,
    /// Topics, subscriptions and rules; replaced whole after each change (`topics.rs`).
    topics: RwLock<Arc<Catalog>>,
    /// Serializes every change of entities (queue creates, updates and deletes in
    /// `queue_definitions.rs`; topic, subscription and rule changes in `topics.rs`), so each one
    /// checks and changes current queues and a current catalog.
    entity_changes: tokio::sync::Mutex<()>,
    writer: Writer,
}

impl EmbeddedQueue {
    /// Opens the queue database at `path`, creating the file, its folder and the schema as needed,
    /// with `queues` as the queues that exist, and the queues whose settings
    /// [`EmbeddedQueue::create_queue`] stored (a configured queue's settings win over stored ones).
    /// Blocking: call it at startup, or from `spawn_blocking`. Messages of queues no longer
    /// configured stay in the file, untouched.
    pub fn open(path: &Path, queues: &[QueueSettings]) -> anyhow::Result<Self> {
        let mut settings = HashMap::new();
        for queue in queues {
            validate(queue)?;
            if settings.insert(queue.name.clone(), queue.clone()).is_some() {
                bail!("queue `{}` is configured twice", queue.name);
            }
        }
        let conn =
            schema::open(path, queues).with_context(|| format!("opening the queue database {}", path.display()))?;
        let catalog = topic_store::load(&conn)
            .with_context(|| format!("reading the topics of the queue database {}", path.display()))?;
        if let Some(clash) = settings
            .keys()
            .find(|name| catalog.topics.contains_key(*name) || catalog.paths.contains_key(*name))
        {
            bail!(
                "queue `{clash}` is configured, but {} has a topic or subscription of that name: rename the queue",
                path.display()
            );
        }
        for stored in
            queue_definitions::load(&conn).with_context(|| format!("reading the queue database {}", path.display()))?
        {
            settings.entry(stored.name.clone()).or_insert(stored);
        }
        let arrivals = settings
            .keys()
            .chain(catalog.paths.keys())
            .map(|name| (name.clone(), Arc::new(Notify::new())))
            .collect();
        let writer = Writer::start(conn)?;
        Ok(Self {
            shared: Arc::new(Shared {
                queues: RwLock::new(Arc::new(settings)),
                arrivals: RwLock::new(arrivals),
                topics: RwLock::new(Arc::new(catalog)),
                entity_changes: tokio::sync::Mutex::new(()),
                writer,
            }),
        })
    }

    /// The current queue settings, as one consistent snapshot.
    fn queues(&self) -> Arc<HashMap<String, QueueSettings>> {
        Arc::clone(
            &self
                .shared
                .queues
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// The queues and topics, as one snapshot for a send or settle to route with.
    fn entities(&self) -> Entities {
        Entities {
            queues: self.queues(),
            topics: self.catalog(),
        }
    }

    /// The settings of a queue, or of a subscription by its entity path.
    fn settings(&self, queue: &str) -> Result<QueueSettings, TransportError> {
        self.queues()
            .get(queue)
            .cloned()
            .or_else(|| self.catalog().paths.get(queue).cloned())
            .ok_or_else(|| TransportError::UnknownQueue(queue.to_owned()))
    }

    /// Gives each of `names` an arrival notifier unless it has one.
    fn add_arrivals<'a>(&self, names: impl Iterator<Item = &'a String>) {
        let mut arrivals = self
            .shared
            .arrivals
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for name in names {
            arrivals.entry(name.clone()).or_insert_with(|| Arc::new(Notify::new()));
        }
    }

    /// The notifier receivers of `queue` wait on.
    fn arrivals(&self, queue: &str) -> Option<Arc<Notify>> {
        let arrivals = self
            .shared
            .arrivals
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        arrivals.get(queue).cloned()
    }

    /// Wakes receivers waiting on `queue`, or on every subscription of the topic `queue`.
    fn announce(&self, queue: &str) {
        if let Some(arrivals) = self.arrivals(queue) {
            arrivals.notify_waiters();
            return;
        }
        let catalog = self.catalog();
        for subscription in catalog.topics.get(queue).into_iter().flat_map(|subs| subs.values()) {
            if let Some(arrivals) = self.arrivals(&subscription.queue.name) {
                arrivals.notify_waiters();
            }
        }
    }

    /// Whether `queue` exists (was configured at open or added by [`EmbeddedQueue::ensure_queue`]).
    pub fn has_queue(&self, queue: &str) -> bool {
        self.queues().contains_key(queue)
    }

    /// Adds a queue with `settings` unless one of that name exists already (whose settings then stay
    /// as they are). Returns whether it was added. For a broker whose clients may address any queue
    /// name: the queue exists from the first time it is used. The queue's messages, if the file
    /// already had some from an earlier run, become reachable again.
    pub async fn ensure_queue(&self, settings: QueueSettings) -> Result<bool, TransportError> {
        if self.has_queue(&settings.name) {
            return Ok(false);
        }
        validate(&settings).map_err(TransportError::Other)?;
        if self.has_topic(&settings.name) || self.has_subscription_path(&settings.name) {
            return Err(TransportError::Other(anyhow::anyhow!(
                "`{}` is a topic or subscription, not a queue",
                settings.name
            )));
        }
        let name = settings.name.clone();
        self.shared
            .writer
            .call(move |conn| schema::register_queue(conn, &name))
            .await?;
        let mut queues = self
            .shared
            .queues
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if queues.contains_key(&settings.name) {
            // Someone else added it while we registered it: theirs stands.
            return Ok(false);
        }
        let mut updated = HashMap::clone(&queues);
        let name = settings.name.clone();
        updated.insert(name.clone(), settings);
        *queues = Arc::new(updated);
        // The notifier goes in while the settings lock is held, so a receive that sees the queue
        // also finds its notifier.
        let mut arrivals = self
            .shared
            .arrivals
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        arrivals.entry(name).or_insert_with(|| Arc::new(Notify::new()));
        Ok(true)
    }

    /// Counts the active, scheduled and dead-lettered messages in `queue`.
    pub async fn queue_depth(&self, queue: &str) -> Result<QueueDepth, TransportError> {
        let queue = self.settings(queue)?.name;
        self.shared.writer.call(move |conn| store::depth(conn, &queue)).await
    }

    /// Up to `limit` active messages of `queue` (locked and scheduled ones included), in sequence
    /// order, without locking them or counting a delivery.
    pub async fn peek(&self, queue: &str, limit: usize) -> Result<Vec<StoredMessage>, TransportError> {
        let queue = self.settings(queue)?.name;
        self.shared
            .writer
            .call(move |conn| store::peek(conn, &queue, limit))
            .await
    }

    /// Runs `take` (one of the store's locking receives) until it returns messages or `wait` runs
    /// out, sleeping between tries on the queue's arrivals or the poll interval.
    async fn receive_with<T, F>(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
        take: F,
    ) -> Result<Vec<T>, TransportError>
    where
        T: Send + 'static,
        F: Fn(&rusqlite::Connection, &QueueSettings, usize) -> anyhow::Result<Vec<T>> + Send + Sync + Clone + 'static,
    {
        let settings = self.settings(queue)?;
        let arrivals = self
            .arrivals(queue)
            .ok_or_else(|| TransportError::UnknownQueue(queue.to_owned()))?;
        // A wait too long to represent is a wait without end.
        let deadline = Instant::now().checked_add(wait);
        loop {
            // Registered before looking, so an arrival between the look and the wait still wakes us.
            let arrival = arrivals.notified();
            tokio::pin!(arrival);
            arrival.as_mut().enable();

            let settings = settings.clone();
            let take = take.clone();
            let batch = self.shared.writer.call(move |conn| take(conn, &settings, max)).await?;
            let now = Instant::now();
            let remaining = deadline.map_or(POLL_INTERVAL, |deadline| deadline.saturating_duration_since(now));
            if !batch.is_empty() || max == 0 || remaining.is_zero() {
                return Ok(batch);
            }
            // Either an announced arrival or the poll interval, whichever is first; then look again.
            let _ = tokio::time::timeout(POLL_INTERVAL.min(remaining), arrival).await;
        }
    }

    /// Like [`Transport::receive`], but removes the messages instead of locking them (Service Bus
    /// receive-and-delete): what this returns is gone from the queue once it returns. TTL and
    /// delivery-count dead-lettering apply as for a locking receive.
    pub async fn receive_and_delete(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, TransportError> {
        self.receive_with(queue, max, wait, store::receive_and_delete).await
    }

    /// Gives up the lock on `message` as if it had never been delivered (AMQP `released`): it is
    /// visible again at once and the delivery is not counted. Fails with
    /// [`TransportError::LockLost`] when the lock is no longer held.
    pub async fn release(&self, message: &ReceivedMessage) -> Result<(), TransportError> {
        let held = store::Lock::from(message);
        self.shared.writer.call(move |conn| store::release(conn, &held)).await?;
        self.announce(&message.queue);
        Ok(())
    }

    /// Applies a whole AMQP transaction (the local broker's `$coordinator`) in one commit: every
    /// settlement, every release and every send, or none of them. Fails with
    /// [`TransportError::LockLost`] (and changes nothing) if any lock is no longer held.
    pub async fn commit(&self, work: TransactionWork) -> Result<(), TransportError> {
        let mut announce: Vec<String> = work.outputs.iter().map(|output| output.queue.clone()).collect();
        announce.extend(work.released.iter().map(|message| message.queue.clone()));
        announce.extend(
            work.settled
                .iter()
                .filter(|(_, settlement)| *settlement == Settlement::Abandon)
                .map(|(message, _)| message.queue.clone()),
        );
        let entities = self.entities();
        let settled: Vec<(store::Lock, Settlement)> = work
            .settled
            .iter()
            .map(|(message, settlement)| (store::Lock::from(message), settlement.clone()))
            .collect();
        let released: Vec<store::Lock> = work.released.iter().map(store::Lock::from).collect();
        let outputs = work.outputs;
        self.shared
            .writer
            .call(move |conn| {
                for (held, settlement) in &settled {
                    store::settle(conn, &entities, held, settlement, &[])?;
                }
                for held in &released {
                    store::release(conn, held)?;
                }
                store::send(conn, &entities, &outputs)
            })
            .await?;
        for queue in &announce {
            self.announce(queue);
        }
        Ok(())
    }

    /// [`Transport::send`], returning the sequence number each message got, in order (Service Bus
    /// `schedule-message` answers with them).
    pub async fn send_with_sequence_numbers(&self, outputs: Vec<Output>) -> Result<Vec<i64>, TransportError> {
        let targets: Vec<String> = outputs.iter().map(|output| output.queue.clone()).collect();
        let entities = self.entities();
        let numbers = self
            .shared
            .writer
            .call(move |conn| store::send_numbered(conn, &entities, &outputs))
            .await?;
        for target in &targets {
            self.announce(target);
        }
        Ok(numbers)
    }

    /// Removes the message with `sequence_number` from `queue` if it is still scheduled for later
    /// (not yet visible); for a topic, its copies in every subscription. Returns whether one was
    /// removed.
    pub async fn cancel_scheduled(&self, queue: &str, sequence_number: i64) -> Result<bool, TransportError> {
        let catalog = self.catalog();
        if catalog.topics.contains_key(queue) {
            let topic = queue.to_owned();
            return self
                .shared
                .writer
                .call(move |conn| topic_store::cancel_scheduled(conn, &catalog, &topic, sequence_number))
                .await;
        }
        let queue = self.settings(queue)?.name;
        self.shared
            .writer
            .call(move |conn| store::cancel_scheduled(conn, &queue, sequence_number))
            .await
    }

    /// Up to `limit` active messages of `queue` with a sequence number of at least `from_sequence`,
    /// in sequence order, without locking them (Service Bus peek).
    pub async fn peek_from(
        &self,
        queue: &str,
        from_sequence: i64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, TransportError> {
        let queue = self.settings(queue)?.name;
        self.shared
            .writer
            .call(move |conn| store::peek_from(conn, &queue, from_sequence, limit))
            .await
    }
}

impl DeadLetterQueues for EmbeddedQueue {
    async fn peek_dead_letters(
        &self,
        queue: &str,
        from_sequence: i64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, TransportError> {
        let queue = self.settings(queue)?.name;
        self.shared
            .writer
            .call(move |conn| store::dead_letters_from(conn, &queue, from_sequence, limit))
            .await
    }

    /// Dead letters are never dead-lettered again for their delivery count or TTL. The
    /// dead-letter queue has no arrival notifier of its own: dead-lettering happens on the same
    /// queue, so its notifier and the poll interval serve.
    async fn receive_dead_letters(
        &self,
        queue: &str,
        from_sequence: i64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<LockedDeadLetter>, TransportError> {
        self.receive_with(queue, max, wait, move |conn, settings, max| {
            store::receive_dead_letters(conn, settings, from_sequence, max)
        })
        .await
    }
}

impl Transport for EmbeddedQueue {
    async fn receive(&self, queue: &str, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, TransportError> {
        self.receive_with(queue, max, wait, store::receive).await
    }

    async fn settle(
        &self,
        message: &ReceivedMessage,
        settlement: Settlement,
        outputs: Vec<Output>,
    ) -> Result<(), TransportError> {
        let abandoned = settlement == Settlement::Abandon;
        let targets: Vec<String> = outputs.iter().map(|output| output.queue.clone()).collect();
        let entities = self.entities();
        let held = store::Lock::from(message);
        self.shared
            .writer
            .call(move |conn| store::settle(conn, &entities, &held, &settlement, &outputs))
            .await?;
        if abandoned {
            self.announce(&message.queue);
        }
        for target in &targets {
            self.announce(target);
        }
        Ok(())
    }

    /// A message received in a session has the session's lock: renewing it renews the session.
    async fn renew_lock(&self, message: &ReceivedMessage) -> Result<SystemTime, TransportError> {
        let settings = self.settings(&message.queue)?;
        let held = store::Lock::from(message);
        if let Some(session_id) = message.session_id.clone().filter(|_| settings.requires_session) {
            return self
                .shared
                .writer
                .call(move |conn| session_store::renew_for_message(conn, &settings, &held, &session_id))
                .await;
        }
        self.shared
            .writer
            .call(move |conn| store::renew_lock(conn, &settings, &held))
            .await
    }

    async fn send(&self, outputs: Vec<Output>) -> Result<(), TransportError> {
        let targets: Vec<String> = outputs.iter().map(|output| output.queue.clone()).collect();
        let entities = self.entities();
        self.shared
            .writer
            .call(move |conn| store::send(conn, &entities, &outputs))
            .await?;
        for target in &targets {
            self.announce(target);
        }
        Ok(())
    }

    fn atomic_settle_and_send(&self) -> bool {
        true
    }

    fn max_message_bytes(&self) -> usize {
        MAX_MESSAGE_BYTES
    }
}

#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod topic_tests;
