//! Service Bus sessions on receiver links. A receiver whose source carries the
//! `com.microsoft:session-filter` asks for one session of a session-enabled queue: the one the
//! filter names, or (null) the next one with messages available. The broker accepts it in the
//! background, waiting as Service Bus does for the next available session up to the client's
//! `com.microsoft:timeout` attach property (else [`DEFAULT_SERVER_WAIT`]), and only then answers the
//! attach: with the session id in the source filter and `com.microsoft:locked-until-utc` in its
//! properties. From then on the link delivers only that session's messages (`deliveries.rs`).
//!
//! When no session can be had, the attach is answered with a null session filter and the link
//! detached with why: `com.microsoft:session-cannot-be-locked` for a named session another receiver
//! holds, `com.microsoft:timeout` when no session became available in time. Detaching the link (or
//! ending its session or connection) gives back what it locked but never sent and releases the
//! session, whose unsettled messages go to whoever accepts it next.

use std::sync::Arc;
use std::time::Duration;

use fe2o3_amqp_types::definitions::{AmqpError, Error as AmqpErrorInfo, ErrorCondition};
use fe2o3_amqp_types::performatives::Attach;
use fe2o3_amqp_types::primitives::{OrderedMap, Symbol, Value};
use sagahost_transport::embedded::EmbeddedQueue;
use sagahost_transport::servicebus::dialect::{
    OPERATION_TIMEOUT, SESSION_CANNOT_BE_LOCKED_CONDITION, SESSION_FILTER, SESSION_LOCKED_UNTIL, TIMEOUT_CONDITION,
    dotnet_ticks,
};
use sagahost_transport::sessions::{SessionLock, Sessions};
use sagahost_transport::{ReceivedMessage, TransportError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::management::Locks;

use super::{Connection, Event, Kind, amqp_error, custom_error};

/// How long accepting the next available session waits when the client does not say: Service Bus
/// caps its wait near a minute, and the SDKs wait 65 s for the attach.
const DEFAULT_SERVER_WAIT: Duration = Duration::from_secs(60);
/// The longest wait a client may ask for, as Service Bus bounds it.
const MAX_SERVER_WAIT: Duration = Duration::from_secs(65);
/// How long one look for an available session waits before checking whether the link is still there.
const ACCEPT_POLL: Duration = Duration::from_millis(500);

/// A session receiver whose session is being accepted.
#[derive(Debug)]
pub(super) struct Accepting {
    /// Our attach, sent once the session is accepted or refused.
    pub(super) answer: Box<Attach>,
    /// Stops the accepting when the link goes first.
    pub(super) cancel: CancellationToken,
}

/// What a receiver's source filter asks for: `None` without a session filter (a plain receiver),
/// `Some(None)` for the next available session, `Some(Some(id))` for the session `id`.
pub(super) fn requested_session(attach: &Attach) -> Result<Option<Option<String>>, AmqpErrorInfo> {
    let filter = attach
        .source
        .as_ref()
        .and_then(|source| source.filter.as_ref())
        .and_then(|filter| filter.get(&Symbol::from(SESSION_FILTER)));
    let value = match filter {
        None => return Ok(None),
        // Some clients describe the filter's value; the SDKs send the bare string (or null).
        Some(Value::Described(described)) => &described.value,
        Some(value) => value,
    };
    match value {
        Value::Null => Ok(Some(None)),
        Value::String(id) => Ok(Some(Some(id.clone()))),
        other => Err(amqp_error(
            ErrorCondition::AmqpError(AmqpError::InvalidField),
            format!("the `{SESSION_FILTER}` source filter must be a session id string or null, not {other:?}"),
        )),
    }
}

/// Refuses a session receiver on an entity without sessions, as Service Bus does.
pub(super) fn may_receive_sessions(path: &str, requires_session: bool) -> Result<(), AmqpErrorInfo> {
    if requires_session {
        return Ok(());
    }
    Err(amqp_error(
        ErrorCondition::AmqpError(AmqpError::NotAllowed),
        format!(
            "A sessionful message receiver cannot be created on an entity that does not require sessions: \
             `{path}` does not; receive from it without a session, or declare the queue with \
             requires-session = true (RequiresSession in the entity endpoint)"
        ),
    ))
}

/// Refuses a plain receiver on a session-enabled queue, as Service Bus does.
pub(super) fn may_receive_without_session(queue: &str, requires_session: bool) -> Result<(), AmqpErrorInfo> {
    if !requires_session {
        return Ok(());
    }
    Err(amqp_error(
        ErrorCondition::AmqpError(AmqpError::NotAllowed),
        format!(
            "It is not possible for an entity that requires sessions to create a non-sessionful message \
             receiver: queue `{queue}` requires sessions; accept a session (a receiver with a session id, \
             or for the next available session)"
        ),
    ))
}

/// How long the client lets the service look for a session (its `com.microsoft:timeout`).
fn server_wait(attach: &Attach) -> Duration {
    let asked = attach
        .properties
        .as_ref()
        .and_then(|properties| properties.get(&Symbol::from(OPERATION_TIMEOUT)))
        .and_then(|value| match value {
            Value::Uint(ms) => Some(u64::from(*ms)),
            Value::Int(ms) => u64::try_from(*ms).ok(),
            Value::Ulong(ms) => Some(*ms),
            Value::Long(ms) => u64::try_from(*ms).ok(),
            _ => None,
        });
    asked.map_or(DEFAULT_SERVER_WAIT, |ms| Duration::from_millis(ms).min(MAX_SERVER_WAIT))
}

/// Accepts the session `requested` (or the next available one) of `queue` within `wait`.
async fn accept(
    queue: &EmbeddedQueue,
    name: &str,
    requested: Option<&str>,
    wait: Duration,
    cancel: &CancellationToken,
) -> Option<Result<SessionLock, AmqpErrorInfo>> {
    let deadline = Instant::now() + wait;
    loop {
        if cancel.is_cancelled() {
            return None;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match queue.accept_session(name, requested, left.min(ACCEPT_POLL)).await {
            Ok(Some(lock)) => return Some(Ok(lock)),
            Ok(None) if left.is_zero() || Instant::now() >= deadline => {
                return Some(Err(custom_error(
                    TIMEOUT_CONDITION,
                    format!(
                        "no session of queue `{name}` had messages available within {wait:?}: send messages with \
                         a session id, or accept again (the client's operation timeout sets this wait)"
                    ),
                )));
            }
            Ok(None) => {}
            Err(TransportError::SessionLockLost { .. }) => {
                let id = requested.unwrap_or_default();
                return Some(Err(custom_error(
                    SESSION_CANNOT_BE_LOCKED_CONDITION,
                    format!(
                        "session `{id}` of queue `{name}` is locked by another receiver: accept another session, \
                         or this one once its receiver closes it or its lock expires"
                    ),
                )));
            }
            Err(TransportError::UnknownQueue(_)) => {
                return Some(Err(amqp_error(
                    ErrorCondition::AmqpError(AmqpError::NotFound),
                    format!("queue `{name}` was deleted"),
                )));
            }
            Err(error) => {
                return Some(Err(amqp_error(
                    ErrorCondition::AmqpError(AmqpError::InternalError),
                    format!("accepting a session of queue `{name}`: {error}"),
                )));
            }
        }
    }
}

/// `answer` naming the accepted session, as Service Bus answers a session receiver.
fn accepted(mut answer: Attach, lock: &SessionLock) -> Attach {
    if let Some(source) = answer.source.as_mut() {
        source
            .filter
            .get_or_insert_with(OrderedMap::new)
            .insert(Symbol::from(SESSION_FILTER), Value::String(lock.session_id.clone()));
    }
    let mut properties = answer.properties.take().unwrap_or_default();
    properties.insert(
        Symbol::from(SESSION_LOCKED_UNTIL),
        Value::Long(dotnet_ticks(lock.locked_until)),
    );
    answer.properties = Some(properties);
    answer
}

/// `answer` naming no session. The source stays (the SDKs read it from every attach that answers
/// theirs); the detach that follows says why.
fn refused(mut answer: Attach) -> Attach {
    if let Some(filter) = answer.source.as_mut().and_then(|source| source.filter.as_mut()) {
        filter.insert(Symbol::from(SESSION_FILTER), Value::Null);
    }
    answer
}

impl Connection {
    /// Starts accepting the session a receiver's `attach` asks for; `answer` is sent once it is.
    pub(super) fn accept_session(&mut self, channel: u16, handle: u32, queue: String, attach: &Attach, answer: Attach) {
        let requested = requested_session(attach).ok().flatten().flatten();
        let wait = server_wait(attach);
        let store = self.queue.clone();
        let events = self.events.clone();
        let locks = Arc::clone(&self.locks);
        let Some(link) = self.link(channel, handle) else {
            return;
        };
        let cancel = CancellationToken::new();
        link.accepting = Some(Accepting {
            answer: Box::new(answer),
            cancel: cancel.clone(),
        });
        let link_id = link.id;
        tokio::spawn(async move {
            let Some(result) = accept(&store, &queue, requested.as_deref(), wait, &cancel).await else {
                return;
            };
            let report = Event::SessionAccepted {
                channel,
                handle,
                link: link_id,
                result,
            };
            if let Err(tokio::sync::mpsc::error::SendError(Event::SessionAccepted { result: Ok(lock), .. })) =
                events.send(report)
            {
                // The connection is gone.
                release_session(&store, &locks, lock, Vec::new());
            }
        });
    }

    /// Answers a session receiver's attach now that its session is accepted (then delivers as its
    /// credit allows), or could not be (then detaches it with why).
    pub(super) fn on_session_accepted(
        &mut self,
        channel: u16,
        handle: u32,
        link_id: u64,
        result: Result<SessionLock, AmqpErrorInfo>,
    ) -> anyhow::Result<()> {
        let Some(link) = self.link(channel, handle).filter(|link| link.id == link_id) else {
            if let Ok(lock) = result {
                release_session(&self.queue, &self.locks, lock, Vec::new());
            }
            return Ok(());
        };
        let answer = link.accepting.take().map(|accepting| accepting.answer);
        match result {
            Ok(lock) => {
                if let Kind::SessionOut { session, .. } = &mut link.kind {
                    *session = Some(lock.clone());
                }
                self.locks.hold_session(&lock);
                if let Some(answer) = answer {
                    self.send(channel, &accepted(*answer, &lock))?;
                }
                self.fetch(channel, handle);
                Ok(())
            }
            Err(error) => {
                if let Some(answer) = answer {
                    self.send(channel, &refused(*answer))?;
                }
                self.detach_with(channel, handle, Some(error))
            }
        }
    }

    /// Before a session receiver that is still waiting for its session is detached: answers its
    /// attach, naming no session.
    pub(super) fn answer_refused_session(&mut self, channel: u16, handle: u32) -> anyhow::Result<()> {
        let Some(accepting) = self.link(channel, handle).and_then(|link| link.accepting.take()) else {
            return Ok(());
        };
        accepting.cancel.cancel();
        self.send(channel, &refused(*accepting.answer))
    }
}

/// Gives back, in the background, the messages a session receiver locked but never sent, then the
/// session itself: its unsettled messages become available to whoever accepts it next.
pub(super) fn release_session(
    queue: &EmbeddedQueue,
    locks: &Locks,
    session: SessionLock,
    unsent: Vec<ReceivedMessage>,
) {
    locks.forget_session(&session);
    let queue = queue.clone();
    tokio::spawn(async move {
        for message in unsent {
            // A lock already gone needs no release.
            let _ = queue.release(&message).await;
        }
        // Gone already when it expired or another receiver took it over: nothing to give back.
        if let Err(error) = queue.release_session(&session).await
            && !matches!(error, TransportError::SessionLockLost { .. })
        {
            tracing::warn!(queue = %session.queue, session = %session.session_id, error = %error, "broker: releasing a session failed");
        }
    });
}
