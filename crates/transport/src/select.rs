//! The transport a host runs on, chosen by config: the embedded queue or
//! Azure Service Bus. Dispatches the [`Transport`], [`DeadLetterQueues`] and [`Sessions`] calls
//! to the one in use.
//!
//! Every Service Bus call is boxed. Its futures are large (a settle, with its AMQP transaction,
//! is about 45 KB), and a future of this enum is as large as its largest arm: unboxed, every
//! message's task on either transport carried that much and copied it when it was spawned.

use std::time::{Duration, SystemTime};

use super::dead_letters::{DeadLetter, DeadLetterQueues, LockedDeadLetter};
use super::embedded::EmbeddedQueue;
use super::servicebus::ServiceBusTransport;
use super::sessions::{SessionLock, Sessions};
use super::{Output, ReceivedMessage, Settlement, Transport, TransportError};

/// The configured transport.
pub enum HostTransport {
    Embedded(EmbeddedQueue),
    ServiceBus(ServiceBusTransport),
}

impl HostTransport {
    /// The embedded queue, when that is the transport (operator commands and
    /// queue-depth metrics need it; Service Bus has its own tooling).
    pub fn embedded(&self) -> Option<&EmbeddedQueue> {
        match self {
            Self::Embedded(queue) => Some(queue),
            Self::ServiceBus(_) => None,
        }
    }

    /// Closes the transport politely: on Service Bus, settlements already sent reach the broker
    /// before the connection ends. Short-lived commands call it before they exit.
    pub async fn close(&self) {
        if let Self::ServiceBus(t) = self {
            t.close().await;
        }
    }

    /// Asks the transport something about `queue` and waits for the answer: a query of the
    /// embedded queue's database, a peek on Service Bus. Readiness checks call it.
    pub async fn round_trip(&self, queue: &str) -> Result<(), TransportError> {
        match self {
            Self::Embedded(t) => t.queue_depth(queue).await.map(drop),
            Self::ServiceBus(t) => Box::pin(t.peek(queue, 0, 1)).await.map(drop),
        }
    }
}

impl Transport for HostTransport {
    async fn receive(&self, queue: &str, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, TransportError> {
        match self {
            Self::Embedded(t) => t.receive(queue, max, wait).await,
            Self::ServiceBus(t) => Box::pin(t.receive(queue, max, wait)).await,
        }
    }

    async fn settle(
        &self,
        message: &ReceivedMessage,
        settlement: Settlement,
        outputs: Vec<Output>,
    ) -> Result<(), TransportError> {
        match self {
            Self::Embedded(t) => t.settle(message, settlement, outputs).await,
            Self::ServiceBus(t) => Box::pin(t.settle(message, settlement, outputs)).await,
        }
    }

    async fn renew_lock(&self, message: &ReceivedMessage) -> Result<SystemTime, TransportError> {
        match self {
            Self::Embedded(t) => t.renew_lock(message).await,
            Self::ServiceBus(t) => Box::pin(t.renew_lock(message)).await,
        }
    }

    async fn send(&self, outputs: Vec<Output>) -> Result<(), TransportError> {
        match self {
            Self::Embedded(t) => t.send(outputs).await,
            Self::ServiceBus(t) => Box::pin(t.send(outputs)).await,
        }
    }

    fn atomic_settle_and_send(&self) -> bool {
        match self {
            Self::Embedded(t) => t.atomic_settle_and_send(),
            Self::ServiceBus(t) => t.atomic_settle_and_send(),
        }
    }

    fn max_message_bytes(&self) -> usize {
        match self {
            Self::Embedded(t) => t.max_message_bytes(),
            Self::ServiceBus(t) => t.max_message_bytes(),
        }
    }
}

impl DeadLetterQueues for HostTransport {
    async fn peek_dead_letters(
        &self,
        queue: &str,
        from_sequence: i64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, TransportError> {
        match self {
            Self::Embedded(t) => t.peek_dead_letters(queue, from_sequence, limit).await,
            Self::ServiceBus(t) => Box::pin(t.peek_dead_letters(queue, from_sequence, limit)).await,
        }
    }

    async fn receive_dead_letters(
        &self,
        queue: &str,
        from_sequence: i64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<LockedDeadLetter>, TransportError> {
        match self {
            Self::Embedded(t) => t.receive_dead_letters(queue, from_sequence, max, wait).await,
            Self::ServiceBus(t) => Box::pin(t.receive_dead_letters(queue, from_sequence, max, wait)).await,
        }
    }
}

impl Sessions for HostTransport {
    async fn accept_session(
        &self,
        queue: &str,
        session_id: Option<&str>,
        wait: Duration,
    ) -> Result<Option<SessionLock>, TransportError> {
        match self {
            Self::Embedded(t) => t.accept_session(queue, session_id, wait).await,
            Self::ServiceBus(t) => Box::pin(t.accept_session(queue, session_id, wait)).await,
        }
    }

    async fn receive_in_session(
        &self,
        session: &SessionLock,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, TransportError> {
        match self {
            Self::Embedded(t) => t.receive_in_session(session, max, wait).await,
            Self::ServiceBus(t) => Box::pin(t.receive_in_session(session, max, wait)).await,
        }
    }

    async fn renew_session_lock(&self, session: &SessionLock) -> Result<SystemTime, TransportError> {
        match self {
            Self::Embedded(t) => t.renew_session_lock(session).await,
            Self::ServiceBus(t) => Box::pin(t.renew_session_lock(session)).await,
        }
    }

    async fn release_session(&self, session: &SessionLock) -> Result<(), TransportError> {
        match self {
            Self::Embedded(t) => t.release_session(session).await,
            Self::ServiceBus(t) => Box::pin(t.release_session(session)).await,
        }
    }

    async fn session_state(&self, session: &SessionLock) -> Result<Option<Vec<u8>>, TransportError> {
        match self {
            Self::Embedded(t) => t.session_state(session).await,
            Self::ServiceBus(t) => Box::pin(t.session_state(session)).await,
        }
    }

    async fn set_session_state(&self, session: &SessionLock, state: Option<Vec<u8>>) -> Result<(), TransportError> {
        match self {
            Self::Embedded(t) => t.set_session_state(session, state).await,
            Self::ServiceBus(t) => Box::pin(t.set_session_state(session, state)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::HostTransport;
    use crate::embedded::{EmbeddedQueue, QueueSettings};
    use crate::{OutgoingMessage, Output, Settlement, Transport};

    /// Every message's task holds a settle and a lock renewal across awaits, so their futures'
    /// size is paid per message in flight. An unboxed Service Bus arm made them 45 KB.
    #[tokio::test]
    async fn the_futures_a_message_task_holds_are_small() {
        let dir = tempfile::tempdir().unwrap();
        let queue = EmbeddedQueue::open(&dir.path().join("q.sqlite3"), &[QueueSettings::new("q")]).unwrap();
        let transport = HostTransport::Embedded(queue);
        let output = Output {
            queue: "q".into(),
            message: OutgoingMessage::default(),
        };
        transport.send(vec![output]).await.unwrap();
        let message = transport.receive("q", 1, Duration::ZERO).await.unwrap().remove(0);
        let sizes = [
            (
                "settle",
                size_of_val(&transport.settle(&message, Settlement::Complete, Vec::new())),
            ),
            ("renew_lock", size_of_val(&transport.renew_lock(&message))),
            ("receive", size_of_val(&transport.receive("q", 1, Duration::ZERO))),
            ("send", size_of_val(&transport.send(Vec::new()))),
        ];
        for (call, size) in sizes {
            assert!(size <= 2_048, "the future of HostTransport::{call} is {size} bytes");
        }
    }
}
