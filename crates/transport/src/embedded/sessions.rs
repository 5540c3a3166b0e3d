//! [`Sessions`] for the embedded queue: accepting, receiving in, renewing and releasing sessions
//! of a session-enabled queue, and their state (the SQL is in `session_store.rs`).

use std::time::{Duration, SystemTime};

use super::super::sessions::{SessionLock, Sessions};
use super::super::{ReceivedMessage, TransportError};
use super::{EmbeddedQueue, QueueSettings, session_store};

impl EmbeddedQueue {
    /// The settings of `queue`, which must be session-enabled.
    fn session_queue(&self, queue: &str) -> Result<QueueSettings, TransportError> {
        let settings = self.settings(queue)?;
        if !settings.requires_session {
            return Err(TransportError::Other(anyhow::anyhow!(
                "queue `{queue}` is not session-enabled: receive from it without a session, or create it \
                 with requires-session = true"
            )));
        }
        Ok(settings)
    }
}

impl Sessions for EmbeddedQueue {
    async fn accept_session(
        &self,
        queue: &str,
        session_id: Option<&str>,
        wait: Duration,
    ) -> Result<Option<SessionLock>, TransportError> {
        let settings = self.session_queue(queue)?;
        if let Some(id) = session_id {
            let named = id.to_owned();
            let accepted = self
                .shared
                .writer
                .call(move |conn| session_store::accept(conn, &settings, Some(&named)))
                .await?;
            // Another receiver holds it: Service Bus answers at once, without waiting.
            return accepted.map(Some).ok_or_else(|| TransportError::SessionLockLost {
                queue: queue.to_owned(),
                session_id: id.to_owned(),
            });
        }
        let accepted = self
            .receive_with(queue, 1, wait, |conn, settings, _| {
                Ok(session_store::accept(conn, settings, None)?.into_iter().collect())
            })
            .await?;
        Ok(accepted.into_iter().next())
    }

    async fn receive_in_session(
        &self,
        session: &SessionLock,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, TransportError> {
        let session = session.clone();
        self.receive_with(&session.queue.clone(), max, wait, move |conn, settings, max| {
            session_store::receive(conn, settings, &session, max)
        })
        .await
    }

    async fn renew_session_lock(&self, session: &SessionLock) -> Result<SystemTime, TransportError> {
        let settings = self.session_queue(&session.queue)?;
        let session = session.clone();
        self.shared
            .writer
            .call(move |conn| session_store::renew(conn, &settings, &session))
            .await
    }

    async fn release_session(&self, session: &SessionLock) -> Result<(), TransportError> {
        let held = session.clone();
        self.shared
            .writer
            .call(move |conn| session_store::release(conn, &held))
            .await?;
        // Its unsettled messages are up for the next receiver that accepts the session.
        self.announce(&session.queue);
        Ok(())
    }

    async fn session_state(&self, session: &SessionLock) -> Result<Option<Vec<u8>>, TransportError> {
        let session = session.clone();
        self.shared
            .writer
            .call(move |conn| session_store::state(conn, &session))
            .await
    }

    async fn set_session_state(&self, session: &SessionLock, state: Option<Vec<u8>>) -> Result<(), TransportError> {
        let session = session.clone();
        self.shared
            .writer
            .call(move |conn| session_store::set_state(conn, &session, state.as_deref()))
            .await
    }
}
