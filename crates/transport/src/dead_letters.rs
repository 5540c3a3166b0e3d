//! Dead letters, the same on every transport: a queue's dead-letter queue read page by page
//! without locks, and received under a lock to be settled like any message.
//!
//! [`DeadLetterQueues`] is all an operator tool needs: list and show are peeks, and redrive and
//! purge receive a dead letter under its lock and [`Transport::settle`] it with `Complete`
//! (with the message to send back as an output, for a redrive). On a transport whose settle is
//! atomic ([`Transport::atomic_settle_and_send`]) a redrive is one step: the copy is sent and the
//! dead letter removed, or neither, so an interrupted bulk redrive loses nothing and sends
//! nothing twice.

use std::future::Future;
use std::time::{Duration, SystemTime};

use crate::{ReceivedMessage, StoredMessage, Transport, TransportError};

/// A message in a queue's dead-letter queue, with why it is there.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The message as it was when dead-lettered.
    pub message: StoredMessage,
    /// Machine-readable reason, such as `MaxDeliveryCountExceeded` or one a component gave.
    pub reason: String,
    /// What happened, for the operator.
    pub description: String,
    /// When it was moved to the dead-letter queue, where the transport records it (Service Bus
    /// does not).
    pub dead_lettered_at: Option<SystemTime>,
}

/// A dead letter received under a lock from a dead-letter queue.
#[derive(Debug, Clone, PartialEq)]
pub struct LockedDeadLetter {
    /// The message and its lock; settle and renew it as any received message. Its properties
    /// are the application's, without the transport's dead-letter reason and description.
    pub message: ReceivedMessage,
    /// Why it was dead-lettered.
    pub reason: String,
    /// What happened, for the operator.
    pub description: String,
}

/// Reading and taking dead letters.
pub trait DeadLetterQueues: Transport {
    /// Up to `limit` dead letters of `queue` with a sequence number of at least `from_sequence`,
    /// in sequence order, without locking them. An empty page means there are no more.
    fn peek_dead_letters(
        &self,
        queue: &str,
        from_sequence: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, TransportError>> + Send;

    /// Receives up to `max` dead letters of `queue` under a lock, waiting up to `wait` for the
    /// first. `from_sequence` is a hint: a transport that can start there does (the embedded
    /// queue), one that cannot starts at the oldest (Service Bus), so callers filter by sequence
    /// number themselves. Settle each with [`Transport::settle`]: `Complete` removes it, and its
    /// outputs are sent in the same step; `Abandon` gives it back.
    fn receive_dead_letters(
        &self,
        queue: &str,
        from_sequence: i64,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<LockedDeadLetter>, TransportError>> + Send;
}
