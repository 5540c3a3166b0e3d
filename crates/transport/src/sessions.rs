//! Receiving from session-enabled queues, as Service Bus sessions work.
//!
//! A session-enabled queue takes only messages with a session id and hands all the messages of
//! one session to one receiver at a time: a receiver first *accepts* a session (the next one with
//! messages available, or one by name), which locks the whole session to it, and then receives that
//! session's messages in sequence order. While it holds the lock no competing receiver, in this
//! process or another replica, sees any message of the session. A message abandoned inside a
//! session is the next one the holder receives again, so whatever the holder does, a session's
//! messages are worked on in the order they were sent.
//!
//! Messages received in a session are settled with [`Transport::settle`] like any other; their
//! locks are the session's lock, so [`Transport::renew_lock`] on one of them renews the session.
//! Each session also carries an opaque *state* that the lock holder may read and replace.

use std::future::Future;
use std::time::{Duration, SystemTime};

use crate::{ReceivedMessage, Transport, TransportError};

/// A session locked to this receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLock {
    /// The session-enabled queue (or subscription entity path).
    pub queue: String,
    /// The session's id.
    pub session_id: String,
    /// Identifies this lock on the embedded queue; on Service Bus the receiver link holds the lock.
    pub lock_token: String,
    /// The lock holds until then unless renewed.
    pub locked_until: SystemTime,
}

impl SessionLock {
    /// The error for this lock, no longer held.
    pub fn lost(&self) -> TransportError {
        TransportError::SessionLockLost {
            queue: self.queue.clone(),
            session_id: self.session_id.clone(),
        }
    }
}

/// The session operations of a transport.
pub trait Sessions: Transport {
    /// Locks a session of `queue`: the one named `session_id` (which may have no messages yet;
    /// fails with [`TransportError::SessionLockLost`] at once if another receiver holds it), or,
    /// with `None`, the session of the oldest available message that no one holds, waiting up
    /// to `wait` for one. `Ok(None)` when the wait ran out.
    fn accept_session(
        &self,
        queue: &str,
        session_id: Option<&str>,
        wait: Duration,
    ) -> impl Future<Output = Result<Option<SessionLock>, TransportError>> + Send;

    /// Receives up to `max` of the session's messages in sequence order, locking each under the
    /// session's lock; waits up to `wait` for the first. Empty when none came.
    fn receive_in_session(
        &self,
        session: &SessionLock,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<ReceivedMessage>, TransportError>> + Send;

    /// Extends the session's lock (and so the locks of its messages); returns the new expiry.
    fn renew_session_lock(
        &self,
        session: &SessionLock,
    ) -> impl Future<Output = Result<SystemTime, TransportError>> + Send;

    /// Gives the session up: its unsettled messages become available again, to whichever
    /// receiver accepts the session next.
    fn release_session(&self, session: &SessionLock) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// The session's state, `None` if none was set.
    fn session_state(
        &self,
        session: &SessionLock,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, TransportError>> + Send;

    /// Replaces the session's state; `None` clears it.
    fn set_session_state(
        &self,
        session: &SessionLock,
        state: Option<Vec<u8>>,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
}
