//! The request/response nodes: `<entity>/$management` (the Service Bus operations the broker
//! supports) here, with a subscription's rule operations in `management/rules.rs` and a session's
//! in `management/sessions.rs`, and `$cbs` (claims-based security, answered in `auth.rs`).
//!
//! A request is an AMQP message whose `operation` application property names the operation, whose
//! `message-id` the reply echoes as `correlation-id`, and whose body is an `amqp-value` map. The
//! reply carries `statusCode` / `statusDescription` application properties, `errorCondition` on
//! failure, and an `amqp-value` map body.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use fe2o3_amqp_types::primitives::{Array, Binary, OrderedMap, SimpleValue, Timestamp, Value};
use sagahost_transport::dead_letters::DeadLetterQueues;
use sagahost_transport::embedded::EmbeddedQueue;
use sagahost_transport::servicebus::dialect::{LOCK_LOST_CONDITION, SESSION_LOCK_LOST_CONDITION, value_text};
use sagahost_transport::sessions::SessionLock;
use sagahost_transport::{Output, ReceivedMessage, Settlement, Transport, TransportError};

use super::message::{self, Incoming, Outgoing};
use uuid::Uuid;

mod rules;
mod sessions;

/// The locks of messages the broker delivered under peek-lock and no client has settled yet, by
/// lock token, shared by every connection: Service Bus lets any authorized client renew or settle
/// a message by its token through `$management`, also after the link or connection it came on is
/// gone (the JavaScript SDK does exactly that when a settle times out on a dropped link).
#[derive(Debug, Default)]
pub struct Locks {
    held: Mutex<LockTable>,
    /// The sessions the broker's session receivers hold, by queue and session id
    /// (`management/sessions.rs`).
    sessions: Mutex<HashMap<(String, String), SessionLock>>,
}

#[derive(Debug, Default)]
struct LockTable {
    by_token: HashMap<String, ReceivedMessage>,
    /// Entries after the last sweep of expired locks; the next sweep waits until the table has
    /// doubled, so holding a lock stays O(1) amortized.
    swept_at: usize,
}

impl Locks {
    fn table(&self) -> std::sync::MutexGuard<'_, LockTable> {
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn held_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), SessionLock>> {
        self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records that `message` was delivered under its lock.
    pub fn hold(&self, message: &ReceivedMessage) {
        let mut table = self.table();
        if table.by_token.len() >= 2 * table.swept_at.max(512) {
            let now = SystemTime::now();
            table.by_token.retain(|_, held| held.locked_until > now);
            table.swept_at = table.by_token.len();
        }
        table.by_token.insert(message.lock_token.clone(), message.clone());
    }

    /// The message whose unexpired lock `token` is, if the broker still holds it for a client.
    pub fn get(&self, token: &str) -> Option<ReceivedMessage> {
        let table = self.table();
        let held = table.by_token.get(token)?;
        (held.locked_until > SystemTime::now()).then(|| held.clone())
    }

    /// Forgets a lock: its message was settled, or its lock is gone.
    pub fn forget(&self, token: &str) {
        self.table().by_token.remove(token);
    }

    /// Records a renewed lock.
    fn renewed(&self, token: &str, until: SystemTime) {
        if let Some(held) = self.table().by_token.get_mut(token) {
            held.locked_until = until;
        }
    }
}

/// Which node a request went to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Cbs,
    Management { queue: String, dead_letter: bool },
}

const NOT_FOUND: &str = "com.microsoft:entity-not-found";
const BAD_REQUEST: &str = "com.microsoft:argument-error";
const NOT_IMPLEMENTED: &str = "com.microsoft:not-implemented";
const INTERNAL: &str = "com.microsoft:internal-server-error";

/// A failed operation: status code, condition, description.
struct Failure(i32, &'static str, String);

impl From<TransportError> for Failure {
    fn from(error: TransportError) -> Self {
        match error {
            TransportError::LockLost { .. } => Failure(410, LOCK_LOST_CONDITION, error.to_string()),
            TransportError::UnknownQueue(_) => Failure(404, NOT_FOUND, error.to_string()),
            TransportError::SessionLockLost { .. } => Failure(410, SESSION_LOCK_LOST_CONDITION, error.to_string()),
            TransportError::Other(error) => Failure(500, INTERNAL, format!("{error:#}")),
        }
    }
}

fn bad_request(what: impl Into<String>) -> Failure {
    Failure(400, BAD_REQUEST, what.into())
}

/// Answers one request to the management node of entity `name` (a queue, topic or subscription,
/// or its dead-letter queue); returns the encoded reply message.
pub async fn handle(
    queue: &EmbeddedQueue,
    locks: &Locks,
    name: &str,
    dead_letter: bool,
    request: Incoming,
) -> anyhow::Result<Vec<u8>> {
    let correlation_id = request
        .properties
        .as_ref()
        .and_then(|properties| properties.message_id.clone());
    let operation = request
        .application_properties
        .as_ref()
        .and_then(|properties| properties.0.get("operation"))
        .map(|value| match value {
            SimpleValue::String(text) => text.clone(),
            SimpleValue::Symbol(symbol) => symbol.as_str().to_owned(),
            _ => String::new(),
        })
        .unwrap_or_default();
    let mut properties = OrderedMap::new();
    let body = match request.value {
        Some(Value::Map(map)) => map,
        _ => OrderedMap::new(),
    };
    let result = match operation.as_str() {
        "com.microsoft:renew-lock" => renew_lock(queue, locks, &body).await,
        "com.microsoft:schedule-message" => schedule(queue, name, &body).await,
        "com.microsoft:cancel-scheduled-message" => cancel_scheduled(queue, name, &body).await,
        "com.microsoft:peek-message" => peek(queue, name, dead_letter, &body).await,
        "com.microsoft:update-disposition" => update_disposition(queue, locks, &body).await,
        "com.microsoft:renew-session-lock" => sessions::renew(queue, locks, name, &body).await,
        "com.microsoft:get-session-state" => sessions::get_state(queue, locks, name, &body).await,
        "com.microsoft:set-session-state" => sessions::set_state(queue, locks, name, &body).await,
        "com.microsoft:add-rule" => rules::add(queue, name, &body).await,
        "com.microsoft:remove-rule" => rules::remove(queue, name, &body).await,
        "com.microsoft:enumerate-rules" => rules::enumerate(queue, name, &body),
        other => Err(Failure(
            501,
            NOT_IMPLEMENTED,
            format!("operation `{other}` is not supported by this broker"),
        )),
    };
    let (status, description, body) = match result {
        Ok((status, body)) => (status, "OK".to_owned(), body),
        Err(Failure(status, condition, description)) => {
            properties.insert("errorCondition".to_owned(), SimpleValue::Symbol(condition.into()));
            (status, description, Value::Map(OrderedMap::new()))
        }
    };
    properties.insert("statusCode".to_owned(), SimpleValue::Int(status));
    properties.insert("statusDescription".to_owned(), SimpleValue::String(description));
    message::encode_reply(correlation_id, properties, body)
}

fn field<'a>(map: &'a OrderedMap<Value, Value>, name: &str) -> Option<&'a Value> {
    map.iter().find_map(|(key, value)| match key {
        Value::String(key) if key == name => Some(value),
        Value::Symbol(key) if key.as_str() == name => Some(value),
        _ => None,
    })
}

fn items(value: Option<&Value>) -> Vec<Value> {
    match value {
        Some(Value::Array(array)) => array.clone().into_inner(),
        Some(Value::List(list)) => list.clone(),
        Some(other) => vec![other.clone()],
        None => Vec::new(),
    }
}

fn as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Long(n) => Some(*n),
        Value::Int(n) => Some(i64::from(*n)),
        Value::Short(n) => Some(i64::from(*n)),
        Value::Byte(n) => Some(i64::from(*n)),
        Value::Ulong(n) => i64::try_from(*n).ok(),
        Value::Uint(n) => Some(i64::from(*n)),
        Value::Ushort(n) => Some(i64::from(*n)),
        Value::Ubyte(n) => Some(i64::from(*n)),
        _ => None,
    }
}

fn as_text(value: Option<&Value>) -> Option<String> {
    match value {
        Some(Value::String(text)) => Some(text.clone()),
        Some(Value::Symbol(symbol)) => Some(symbol.as_str().to_owned()),
        _ => None,
    }
}

/// The application properties an `update-disposition` asks to set on the message
/// (`properties-to-modify`), as text.
fn properties_to_modify(body: &OrderedMap<Value, Value>) -> Vec<(String, String)> {
    let Some(Value::Map(properties)) = field(body, "properties-to-modify") else {
        return Vec::new();
    };
    properties
        .iter()
        .filter_map(|(key, value)| Some((as_text(Some(key))?, value_text(value)?)))
        .collect()
}

fn lock_tokens(body: &OrderedMap<Value, Value>) -> Result<Vec<String>, Failure> {
    items(field(body, "lock-tokens"))
        .iter()
        .map(|token| match token {
            Value::Uuid(id) => Ok(Uuid::from_bytes(*id.as_inner()).to_string()),
            Value::String(text) => match Uuid::parse_str(text) {
                Ok(id) => Ok(id.to_string()),
                Err(_) => Err(bad_request("lock-tokens must be UUIDs")),
            },
            _ => Err(bad_request("lock-tokens must be UUIDs")),
        })
        .collect()
}

fn timestamp(time: SystemTime) -> Timestamp {
    let ms = time.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis());
    Timestamp::from_milliseconds(i64::try_from(ms).unwrap_or(i64::MAX))
}

fn map_of(entries: Vec<(&str, Value)>) -> Value {
    let mut map = OrderedMap::new();
    for (key, value) in entries {
        map.insert(Value::String(key.to_owned()), value);
    }
    Value::Map(map)
}

type Answer = Result<(i32, Value), Failure>;

fn held(locks: &Locks, token: &str) -> Result<ReceivedMessage, Failure> {
    locks.get(token).ok_or_else(|| {
        Failure(
            410,
            LOCK_LOST_CONDITION,
            format!("the lock `{token}` is not held (expired, settled or unknown)"),
        )
    })
}

async fn renew_lock(queue: &EmbeddedQueue, locks: &Locks, body: &OrderedMap<Value, Value>) -> Answer {
    let mut expirations = Vec::new();
    for token in lock_tokens(body)? {
        let message = held(locks, &token)?;
        match queue.renew_lock(&message).await {
            Ok(until) => {
                locks.renewed(&token, until);
                // A message received in a session has the session's lock: renewing one renews all.
                if let Some(session_id) = &message.session_id {
                    locks.renewed_session(&message.queue, session_id, until);
                }
                expirations.push(Value::Timestamp(timestamp(until)));
            }
            Err(error) => {
                if matches!(error, TransportError::LockLost { .. }) {
                    locks.forget(&token);
                }
                return Err(error.into());
            }
        }
    }
    Ok((
        200,
        map_of(vec![("expirations", Value::Array(Array::from(expirations)))]),
    ))
}

async fn update_disposition(queue: &EmbeddedQueue, locks: &Locks, body: &OrderedMap<Value, Value>) -> Answer {
    let status = as_text(field(body, "disposition-status")).unwrap_or_default();
    for token in lock_tokens(body)? {
        let message = held(locks, &token)?;
        let result = match status.as_str() {
            "completed" => queue.settle(&message, Settlement::Complete, vec![]).await,
            "abandoned" => queue.settle(&message, Settlement::Abandon, vec![]).await,
            "suspended" => {
                let settlement = Settlement::DeadLetter {
                    reason: as_text(field(body, "deadletter-reason")).unwrap_or_default(),
                    description: as_text(field(body, "deadletter-description")).unwrap_or_default(),
                    properties: properties_to_modify(body),
                };
                queue.settle(&message, settlement, vec![]).await
            }
            other => return Err(bad_request(format!("disposition-status `{other}` is not supported"))),
        };
        locks.forget(&token);
        result?;
    }
    Ok((200, map_of(vec![])))
}

async fn schedule(queue: &EmbeddedQueue, name: &str, body: &OrderedMap<Value, Value>) -> Answer {
    let mut outputs = Vec::new();
    for entry in items(field(body, "messages")) {
        let Value::Map(entry) = entry else {
            return Err(bad_request("each of `messages` must be a map"));
        };
        let Some(Value::Binary(encoded)) = field(&entry, "message") else {
            return Err(bad_request("each of `messages` needs a binary `message`"));
        };
        let incoming = message::decode(encoded).map_err(|error| bad_request(format!("{error:#}")))?;
        let mut outgoing = incoming
            .into_outgoing()
            .map_err(|error| bad_request(format!("{error:#}")))?;
        if outgoing.message_id.is_empty()
            && let Some(id) = as_text(field(&entry, "message-id"))
        {
            outgoing.message_id = id;
        }
        outputs.push(Output {
            queue: name.to_owned(),
            message: outgoing,
        });
    }
    let numbers = queue.send_with_sequence_numbers(outputs).await?;
    let numbers = numbers.into_iter().map(Value::Long).collect::<Vec<_>>();
    Ok((
        200,
        map_of(vec![("sequence-numbers", Value::Array(Array::from(numbers)))]),
    ))
}

async fn cancel_scheduled(queue: &EmbeddedQueue, name: &str, body: &OrderedMap<Value, Value>) -> Answer {
    for number in items(field(body, "sequence-numbers")) {
        let number = as_i64(&number).ok_or_else(|| bad_request("sequence-numbers must be longs"))?;
        queue.cancel_scheduled(name, number).await?;
    }
    Ok((200, map_of(vec![])))
}

/// Most messages one peek returns, whatever the request asks.
const MAX_PEEK: usize = 1000;

async fn peek(queue: &EmbeddedQueue, name: &str, dead_letter: bool, body: &OrderedMap<Value, Value>) -> Answer {
    let from = field(body, "from-sequence-number").and_then(as_i64).unwrap_or(0);
    let count = field(body, "message-count")
        .and_then(as_i64)
        .map_or(1, |count| usize::try_from(count.max(1)).unwrap_or(1))
        .min(MAX_PEEK);
    let mut encoded = Vec::new();
    if dead_letter {
        for letter in queue.peek_dead_letters(name, from, count).await? {
            let stored = &letter.message;
            encoded.push(
                view(stored, Some((name, &letter.reason, &letter.description)))
                    .encode()
                    .map_err(|error| Failure(500, INTERNAL, format!("{error:#}")))?,
            );
        }
    } else {
        let stored = match as_text(field(body, "session-id")) {
            Some(session_id) => sessions::peek(queue, name, &session_id, from, count).await?,
            None => queue.peek_from(name, from, count).await?,
        };
        for stored in stored {
            encoded.push(
                view(&stored, None)
                    .encode()
                    .map_err(|error| Failure(500, INTERNAL, format!("{error:#}")))?,
            );
        }
    }
    if encoded.is_empty() {
        return Ok((204, map_of(vec![])));
    }
    let messages = encoded
        .into_iter()
        .map(|bytes| map_of(vec![("message", Value::Binary(Binary::from(bytes)))]))
        .collect();
    Ok((200, map_of(vec![("messages", Value::List(messages))])))
}

fn view<'a>(
    stored: &'a sagahost_transport::StoredMessage,
    dead_letter: Option<(&'a str, &'a str, &'a str)>,
) -> Outgoing<'a> {
    Outgoing {
        message_id: &stored.message_id,
        correlation_id: stored.correlation_id.as_deref(),
        content_type: stored.content_type.as_deref(),
        properties: &stored.properties,
        body: &stored.body,
        session_id: stored.session_id.as_deref(),
        sequence_number: stored.sequence_number,
        prior_deliveries: stored.delivery_count,
        enqueued_time: stored.enqueued_time,
        locked_until: stored.locked_until,
        scheduled_enqueue_time: stored.scheduled_enqueue_time,
        dead_letter,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn locked(token: &str, for_how_long: Duration) -> ReceivedMessage {
        ReceivedMessage {
            queue: "q".to_owned(),
            message_id: format!("m-{token}"),
            correlation_id: None,
            content_type: None,
            properties: Vec::new(),
            body: Vec::new(),
            session_id: None,
            sequence_number: 1,
            delivery_count: 1,
            enqueued_time: SystemTime::now(),
            lock_token: token.to_owned(),
            locked_until: SystemTime::now() + for_how_long,
        }
    }

    #[test]
    fn a_held_lock_is_found_until_it_expires_or_is_forgotten() {
        let locks = Locks::default();
        locks.hold(&locked("a", Duration::from_secs(30)));
        locks.hold(&locked("b", Duration::ZERO));
        assert_eq!(locks.get("a").unwrap().lock_token, "a");
        assert!(locks.get("b").is_none(), "an expired lock is not held");
        locks.renewed("b", SystemTime::now() + Duration::from_secs(30));
        assert!(locks.get("b").is_some(), "a renewed lock is held again");
        locks.forget("a");
        assert!(locks.get("a").is_none());
    }

    #[test]
    fn expired_locks_are_swept_as_the_table_grows() {
        let locks = Locks::default();
        for i in 0..1024 {
            locks.hold(&locked(&format!("old-{i}"), Duration::ZERO));
        }
        locks.hold(&locked("new", Duration::from_secs(30)));
        let table = locks.table();
        assert_eq!(table.by_token.len(), 1, "only the unexpired lock is left");
        assert!(table.by_token.contains_key("new"));
    }
}
