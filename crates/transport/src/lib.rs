//! The queue operations a Dataverse saga needs, and their implementations.
//!
//! [`Transport`] is shaped after Azure Service Bus peek-lock semantics so that the
//! embedded queue ([`embedded`]) and Service Bus over AMQP fit behind it alike:
//! receive under a lock, then complete, abandon or dead-letter; renew the lock
//! while work is in flight; send and schedule; and settle one message together
//! with the messages it produced as one atomic step where the transport can.
//!
//! [`dead_letters::DeadLetterQueues`] reads and takes dead letters on either transport, so the
//! operator tools are written once. [`sessions::Sessions`] receives from session-enabled queues,
//! one session under one lock at a time, which is what keeps one record's messages in order.
//!
//! [`servicebus`] is the production transport (Azure Service Bus over AMQP 1.0);
//! its [`servicebus::dialect`] is shared with `sagahost-broker`, which serves an
//! embedded queue over AMQP in the Service Bus dialect, so SDKs and the Service
//! Bus transport can be tested with no cloud. [`HostTransport`] is whichever of
//! the two a host's config picks.

use std::future::Future;
use std::time::{Duration, SystemTime};

pub mod dead_letters;
pub mod embedded;
pub mod filter;
pub mod sas;
mod select;
pub mod servicebus;
pub mod sessions;

pub use select::HostTransport;

/// A message to enqueue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutgoingMessage {
    /// Broker message id; generated when empty.
    pub message_id: String,
    pub correlation_id: Option<String>,
    pub content_type: Option<String>,
    /// Application properties.
    pub properties: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Not visible to receivers before this instant (Service Bus `ScheduledEnqueueTimeUtc`).
    pub scheduled_enqueue_time: Option<SystemTime>,
    /// Expires (and is dead-lettered with `TTLExpiredException`) this long after enqueue.
    pub time_to_live: Option<Duration>,
    /// The session it belongs to (Service Bus `SessionId`): a session-enabled queue hands the
    /// messages of one session to one receiver at a time, in order, and takes no message without.
    pub session_id: Option<String>,
}

/// A message received under a lock.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedMessage {
    /// The queue it was received from.
    pub queue: String,
    pub message_id: String,
    pub correlation_id: Option<String>,
    pub content_type: Option<String>,
    pub properties: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The session it belongs to, as sent.
    pub session_id: Option<String>,
    /// Broker-assigned, increasing per queue.
    pub sequence_number: i64,
    /// Deliveries so far, including this one (starts at 1).
    pub delivery_count: u32,
    pub enqueued_time: SystemTime,
    /// Identifies this delivery's lock; settling with a stale token fails.
    pub lock_token: String,
    pub locked_until: SystemTime,
}

impl ReceivedMessage {
    /// A copy without the body, for work on the delivery's lock alone (renewing it), which never
    /// reads the body: holding a copy for as long as the lock lasts then costs no copy of the body.
    pub fn without_body(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            message_id: self.message_id.clone(),
            correlation_id: self.correlation_id.clone(),
            content_type: self.content_type.clone(),
            properties: self.properties.clone(),
            body: Vec::new(),
            session_id: self.session_id.clone(),
            sequence_number: self.sequence_number,
            delivery_count: self.delivery_count,
            enqueued_time: self.enqueued_time,
            lock_token: self.lock_token.clone(),
            locked_until: self.locked_until,
        }
    }
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
    /// The session it belongs to, as sent.
    pub session_id: Option<String>,
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

/// How to settle a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Done: remove it.
    Complete,
    /// Release the lock now so it is redelivered (delivery count grows).
    Abandon,
    /// Move it to the queue's dead-letter queue with a reason, setting `properties` on the
    /// dead-lettered message (Service Bus's properties-to-modify): added, or replacing
    /// application properties of the same name.
    DeadLetter {
        reason: String,
        description: String,
        properties: Vec<(String, String)>,
    },
}

/// A message to send to a queue as part of a settlement.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub queue: String,
    pub message: OutgoingMessage,
}

/// Errors a transport reports.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The lock expired or the message was settled already: someone else may own it now.
    #[error("the lock on message `{message_id}` in queue `{queue}` was lost (expired or already settled)")]
    LockLost { queue: String, message_id: String },
    /// The queue does not exist.
    #[error("queue `{0}` does not exist; add it under [queues] in the config")]
    UnknownQueue(String),
    /// The session is locked by another receiver, or its lock expired or was released.
    #[error(
        "session `{session_id}` of queue `{queue}` is not locked by this receiver (another holds it, or its lock expired)"
    )]
    SessionLockLost { queue: String, session_id: String },
    /// Anything else (I/O, database, connection).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl TransportError {
    /// The error for `message`, whose lock is no longer held.
    pub fn lock_lost(message: &ReceivedMessage) -> Self {
        Self::LockLost {
            queue: message.queue.clone(),
            message_id: message.message_id.clone(),
        }
    }
}

/// The queue operations the saga executor needs.
pub trait Transport: Send + Sync + 'static {
    /// Receives up to `max` messages from `queue`, locking each; waits up to
    /// `wait` for the first one. Returns an empty batch on timeout.
    fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<ReceivedMessage>, TransportError>> + Send;

    /// Settles `message` and sends `outputs`. Atomic when
    /// [`Transport::atomic_settle_and_send`] is true: either both happen or neither.
    fn settle(
        &self,
        message: &ReceivedMessage,
        settlement: Settlement,
        outputs: Vec<Output>,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Extends the lock on `message`; returns the new expiry. The host passes the message
    /// [`ReceivedMessage::without_body`]: renewing reads its queue, session and lock token only.
    fn renew_lock(&self, message: &ReceivedMessage) -> impl Future<Output = Result<SystemTime, TransportError>> + Send;

    /// Sends messages (scheduled ones included) outside any settlement.
    fn send(&self, outputs: Vec<Output>) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Whether [`Transport::settle`] is one atomic step.
    fn atomic_settle_and_send(&self) -> bool;

    /// The largest message this transport accepts, in bytes, counting the body and the
    /// application properties. The saga checks every output against it before sending, so
    /// an oversized output is a dead letter, not a send refused on every redelivery.
    fn max_message_bytes(&self) -> usize;
}
