//! Service Bus sessions at `<queue>/$management`: `com.microsoft:renew-session-lock`,
//! `com.microsoft:get-session-state` and `com.microsoft:set-session-state` (each with a `session-id`
//! in its body), and peeking one session's messages; and the registry these operations find a
//! session's lock in.
//!
//! The embedded queue identifies a session's lock by a token that Service Bus never shows a client:
//! there, the receiver link holds the lock. So the broker keeps the locks its session receivers
//! hold by queue and session id ([`Locks::hold_session`]), shared by every connection as message
//! locks are, and an operation naming a session no receiver of this broker holds is answered with
//! `com.microsoft:session-lock-lost`, as Service Bus answers it.

use fe2o3_amqp_types::primitives::{Binary, OrderedMap, Value};
use sagahost_transport::StoredMessage;
use sagahost_transport::embedded::EmbeddedQueue;
use sagahost_transport::servicebus::dialect::SESSION_LOCK_LOST_CONDITION;
use sagahost_transport::sessions::{SessionLock, Sessions};

use super::{Answer, Failure, Locks, MAX_PEEK, as_text, bad_request, field, map_of, timestamp};

impl Locks {
    /// Records that a receiver of this broker holds `lock`.
    pub fn hold_session(&self, lock: &SessionLock) {
        self.held_sessions()
            .insert((lock.queue.clone(), lock.session_id.clone()), lock.clone());
    }

    /// Forgets `lock`: its receiver released it. A newer lock on the same session stays.
    pub fn forget_session(&self, lock: &SessionLock) {
        let mut sessions = self.held_sessions();
        let key = (lock.queue.clone(), lock.session_id.clone());
        if sessions
            .get(&key)
            .is_some_and(|held| held.lock_token == lock.lock_token)
        {
            sessions.remove(&key);
        }
    }

    /// The lock a receiver of this broker holds on session `session_id` of `queue`.
    fn session(&self, queue: &str, session_id: &str) -> Result<SessionLock, Failure> {
        self.held_sessions()
            .get(&(queue.to_owned(), session_id.to_owned()))
            .cloned()
            .ok_or_else(|| {
                Failure(
                    410,
                    SESSION_LOCK_LOST_CONDITION,
                    format!(
                        "session `{session_id}` of queue `{queue}` is not locked by a receiver of this broker (never \
                         accepted, or its receiver closed): accept the session again"
                    ),
                )
            })
    }

    /// Records that the session of `queue` with `session_id`, if a receiver holds it, is now locked
    /// until `until`, and so are its messages (a session's lock is theirs).
    pub(super) fn renewed_session(&self, queue: &str, session_id: &str, until: std::time::SystemTime) {
        let held = {
            let mut sessions = self.held_sessions();
            match sessions.get_mut(&(queue.to_owned(), session_id.to_owned())) {
                Some(lock) => {
                    lock.locked_until = until;
                    true
                }
                None => false,
            }
        };
        if held {
            for message in self.table().by_token.values_mut() {
                if message.queue == queue && message.session_id.as_deref() == Some(session_id) {
                    message.locked_until = until;
                }
            }
        }
    }
}

/// The `session-id` a session operation names.
fn session_id(body: &OrderedMap<Value, Value>) -> Result<String, Failure> {
    as_text(field(body, "session-id")).ok_or_else(|| bad_request("the request needs a `session-id` string"))
}

/// `com.microsoft:renew-session-lock`: answers the new `expiration`.
pub(super) async fn renew(queue: &EmbeddedQueue, locks: &Locks, name: &str, body: &OrderedMap<Value, Value>) -> Answer {
    let lock = locks.session(name, &session_id(body)?)?;
    let until = queue.renew_session_lock(&lock).await?;
    locks.renewed_session(name, &lock.session_id, until);
    Ok((200, map_of(vec![("expiration", Value::Timestamp(timestamp(until)))])))
}

/// `com.microsoft:get-session-state`: answers `session-state`, binary or null when none was set.
pub(super) async fn get_state(
    queue: &EmbeddedQueue,
    locks: &Locks,
    name: &str,
    body: &OrderedMap<Value, Value>,
) -> Answer {
    let lock = locks.session(name, &session_id(body)?)?;
    let state = queue.session_state(&lock).await?;
    let state = state.map_or(Value::Null, |bytes| Value::Binary(Binary::from(bytes)));
    Ok((200, map_of(vec![("session-state", state)])))
}

/// `com.microsoft:set-session-state`: replaces the state with the body's `session-state`, binary,
/// or null to clear it.
pub(super) async fn set_state(
    queue: &EmbeddedQueue,
    locks: &Locks,
    name: &str,
    body: &OrderedMap<Value, Value>,
) -> Answer {
    let lock = locks.session(name, &session_id(body)?)?;
    let state = match field(body, "session-state") {
        None | Some(Value::Null) => None,
        Some(Value::Binary(bytes)) => Some(bytes.to_vec()),
        Some(Value::String(text)) => Some(text.clone().into_bytes()),
        Some(_) => return Err(bad_request("`session-state` must be binary or null")),
    };
    queue.set_session_state(&lock, state).await?;
    Ok((200, map_of(vec![])))
}

/// Up to `count` messages of session `session_id` of queue `name`, from sequence number `from` on.
/// Peeking needs no lock, as in Service Bus.
pub(super) async fn peek(
    queue: &EmbeddedQueue,
    name: &str,
    session_id: &str,
    mut from: i64,
    count: usize,
) -> Result<Vec<StoredMessage>, Failure> {
    let mut found = Vec::new();
    // The embedded queue peeks the whole queue: page through it, keeping the session's.
    while found.len() < count {
        let page = queue.peek_from(name, from, MAX_PEEK).await?;
        let Some(last) = page.last().map(|message| message.sequence_number) else {
            break;
        };
        let full = page.len() == MAX_PEEK;
        found.extend(
            page.into_iter()
                .filter(|message| message.session_id.as_deref() == Some(session_id))
                .take(count - found.len()),
        );
        if !full {
            break;
        }
        from = last + 1;
    }
    Ok(found)
}
