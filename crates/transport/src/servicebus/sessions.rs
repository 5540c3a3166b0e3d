//! [`Sessions`] on Service Bus: a session is accepted on a receiver link of its own (`live.rs`
//! attaches it, `links/receiver.rs` runs it), received from and settled on that link, and renewed,
//! read and written through the session operations of the queue's `$management` node. The session
//! lock lives as long as the link: releasing the session detaches it, and a link that is gone (the
//! broker detached it, or its connection was lost) is a lost session lock. A [`SessionLock`]'s
//! `lock_token` is the link's name, so a lock from before a re-accept of the same session is not
//! mistaken for the new one.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow};
use fe2o3_amqp::types::primitives::{Binary, OrderedMap, SimpleValue, Value};

use super::dead_letters::field;
use super::dialect::{
    EXPIRATION_KEY, GET_SESSION_STATE_OPERATION, RENEW_SESSION_LOCK_OPERATION, SESSION_ID_KEY,
    SESSION_LOCK_LOST_CONDITION, SESSION_STATE_KEY, SET_SESSION_STATE_OPERATION,
};
use super::links::ReceiverLink;
use super::live::Live;
use super::{ServiceBusTransport, codec};
use crate::sessions::{SessionLock, Sessions};
use crate::{ReceivedMessage, TransportError};

impl ServiceBusTransport {
    /// The connection and the link that hold `session`'s lock, or
    /// [`TransportError::SessionLockLost`]: the link was released, detached by the broker or lost
    /// with its connection, or a later accept of the same session replaced it.
    async fn session_link(&self, session: &SessionLock) -> Result<(Arc<Live>, Arc<ReceiverLink>), TransportError> {
        let live = self.current().ok_or_else(|| session.lost())?;
        let link = live
            .existing_receiver(&session.queue, Some(&session.session_id))
            .await
            .filter(|link| link.name == session.lock_token)
            .ok_or_else(|| session.lost())?;
        Ok((live, link))
    }

    /// Runs the session operation `operation` on the `$management` node of `link`'s queue for the
    /// session `session_id` that `link` holds, with `body` (the session id added); the body of its
    /// answer.
    async fn session_request(
        &self,
        live: &Live,
        link: &ReceiverLink,
        session_id: &str,
        operation: &str,
        mut body: OrderedMap<Value, Value>,
    ) -> Result<Value, TransportError> {
        let queue = &link.queue;
        body.insert(Value::String(SESSION_ID_KEY.into()), Value::String(session_id.into()));
        let management = live.management(queue).await?;
        let timeout = self.options.operation_timeout;
        let properties = vec![
            (
                "com.microsoft:server-timeout".to_string(),
                SimpleValue::Uint(u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX)),
            ),
            (
                "associated-link-name".to_string(),
                SimpleValue::String(link.name.clone()),
            ),
        ];
        let response = management
            .request(operation, properties, Value::Map(body), timeout)
            .await?;
        let lost = response.status == 410 || response.condition.as_deref() == Some(SESSION_LOCK_LOST_CONDITION);
        match response.status {
            200 => Ok(response.body),
            _ if lost => Err(TransportError::SessionLockLost {
                queue: queue.clone(),
                session_id: session_id.to_string(),
            }),
            status => Err(anyhow!(
                "`{operation}` for session `{session_id}` of queue `{queue}` failed: {status} {}",
                response.description
            )
            .into()),
        }
    }

    /// Renews the lock of the session `session_id` that `link` holds, and so the locks of the
    /// messages it holds; the new expiry.
    pub(super) async fn renew_session_on(
        &self,
        live: &Live,
        link: &ReceiverLink,
        session_id: &str,
    ) -> Result<SystemTime, TransportError> {
        let answer = self
            .session_request(live, link, session_id, RENEW_SESSION_LOCK_OPERATION, OrderedMap::new())
            .await?;
        let until = answer_field(&answer, EXPIRATION_KEY)
            .and_then(|expiration| match expiration {
                Value::Timestamp(at) => Some(codec::from_unix_millis(at.milliseconds())),
                _ => None,
            })
            .with_context(|| {
                format!(
                    "the renew-session-lock answer for session `{session_id}` of queue `{}` has no `{EXPIRATION_KEY}`",
                    link.queue
                )
            })?;
        link.session_renewed(until);
        Ok(until)
    }
}

/// The value under `name` in a management answer's map body.
fn answer_field<'a>(answer: &'a Value, name: &str) -> Option<&'a Value> {
    match answer {
        Value::Map(map) => field(map, name),
        _ => None,
    }
}

/// The state in a get-session-state answer: binary, or null (or left out) when none is set.
fn state_of(answer: &Value) -> anyhow::Result<Option<Vec<u8>>> {
    match answer_field(answer, SESSION_STATE_KEY) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Binary(state)) => Ok(Some(state.to_vec())),
        Some(other) => anyhow::bail!("`{SESSION_STATE_KEY}` is {other:?}, not binary"),
    }
}

impl Sessions for ServiceBusTransport {
    async fn accept_session(
        &self,
        queue: &str,
        session_id: Option<&str>,
        wait: Duration,
    ) -> Result<Option<SessionLock>, TransportError> {
        self.live().await?.accept_session(queue, session_id, wait).await
    }

    async fn receive_in_session(
        &self,
        session: &SessionLock,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, TransportError> {
        let (_, link) = self.session_link(session).await?;
        // A receive fails only once the link is gone: the broker detached it (the session lock
        // was lost or expired), it was released, or the connection dropped. Either way the
        // session is no longer this receiver's.
        link.receive(max, wait).await.map_err(|err| {
            tracing::debug!(queue = %session.queue, session = %session.session_id, "session receiver gone: {err}");
            session.lost()
        })
    }

    async fn renew_session_lock(&self, session: &SessionLock) -> Result<SystemTime, TransportError> {
        let (live, link) = self.session_link(session).await?;
        self.renew_session_on(&live, &link, &session.session_id).await
    }

    /// Detaches the session's link, which releases the session; what it had received that no
    /// caller took goes back first.
    async fn release_session(&self, session: &SessionLock) -> Result<(), TransportError> {
        let (live, link) = self.session_link(session).await?;
        live.forget_receiver(&link).await;
        link.close().await;
        Ok(())
    }

    async fn session_state(&self, session: &SessionLock) -> Result<Option<Vec<u8>>, TransportError> {
        let (live, link) = self.session_link(session).await?;
        let answer = self
            .session_request(
                &live,
                &link,
                &session.session_id,
                GET_SESSION_STATE_OPERATION,
                OrderedMap::new(),
            )
            .await?;
        state_of(&answer)
            .with_context(|| {
                format!(
                    "reading the state of session `{}` of queue `{}`",
                    session.session_id, session.queue
                )
            })
            .map_err(TransportError::from)
    }

    async fn set_session_state(&self, session: &SessionLock, state: Option<Vec<u8>>) -> Result<(), TransportError> {
        let (live, link) = self.session_link(session).await?;
        let mut body = OrderedMap::new();
        let state = state.map_or(Value::Null, |state| Value::Binary(Binary::from(state)));
        body.insert(Value::String(SESSION_STATE_KEY.into()), state);
        self.session_request(&live, &link, &session.session_id, SET_SESSION_STATE_OPERATION, body)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(entries: Vec<(&str, Value)>) -> Value {
        Value::Map(
            entries
                .into_iter()
                .map(|(key, value)| (Value::String(key.into()), value))
                .collect(),
        )
    }

    #[test]
    fn a_session_state_answer_reads_as_bytes_or_none() {
        let set = answer(vec![(
            SESSION_STATE_KEY,
            Value::Binary(Binary::from(b"step-1".to_vec())),
        )]);
        assert_eq!(state_of(&set).unwrap().as_deref(), Some(&b"step-1"[..]));
        assert_eq!(state_of(&answer(vec![(SESSION_STATE_KEY, Value::Null)])).unwrap(), None);
        assert_eq!(state_of(&answer(Vec::new())).unwrap(), None);
        let text = answer(vec![(SESSION_STATE_KEY, Value::String("x".into()))]);
        assert!(state_of(&text).unwrap_err().to_string().contains("not binary"));
    }
}
