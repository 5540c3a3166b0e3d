//! The operations on the queue database (its schema is `schema.rs`). Everything here is
//! synchronous and runs on the writer thread, inside the batch transaction, so each function sees
//! and leaves a consistent store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::super::{OutgoingMessage, Output, ReceivedMessage, Settlement, StoredMessage, TransportError};
use super::topics::Catalog;
use super::{DeadLetter, LockedDeadLetter, QueueDepth, QueueSettings, topic_store};
use crate::servicebus::dialect::parse_subscription_path;

/// The columns [`MessageRow::from_row`] reads, in its order. The body is in `bodies` (see
/// `schema.rs`), read only for the rows a statement returns.
const MESSAGE_COLUMNS: &str = "sequence_number, message_id, correlation_id, content_type, properties, \
     (SELECT body FROM bodies WHERE bodies.id = messages.id), \
     enqueued_at, scheduled_at, expires_at, delivery_count, locked_until, session_id";

/// [`MESSAGE_COLUMNS`] plus the dead-letter columns [`dead_letter_from_row`] reads.
const DEAD_LETTER_COLUMNS: &str = "sequence_number, message_id, correlation_id, content_type, properties, \
     (SELECT body FROM bodies WHERE bodies.id = messages.id), \
     enqueued_at, scheduled_at, expires_at, delivery_count, locked_until, session_id, \
     dead_letter_reason, dead_letter_description, dead_lettered_at";

/// Active, not scheduled for later, and not under a live lock. `?1` is the queue, `?2` now.
pub(super) const VISIBLE: &str = "queue = ?1 AND dead_lettered_at IS NULL \
     AND (scheduled_at IS NULL OR scheduled_at <= ?2) AND (locked_until IS NULL OR locked_until <= ?2)";

/// Still locked by the holder of the token. `?1` queue, `?2` sequence number, `?3` token, `?4` now.
/// Holds for dead letters too: a dead letter has a lock only when received from the dead-letter
/// queue ([`receive_dead_letters`]), since dead-lettering clears the lock it had.
const LOCK_HELD: &str = "queue = ?1 AND sequence_number = ?2 AND lock_token = ?3 AND locked_until > ?4";

/// Dead-letter reason Service Bus gives a message received more than `max_delivery_count` times.
pub(super) const MAX_DELIVERY_COUNT_EXCEEDED: &str = "MaxDeliveryCountExceeded";
/// Dead-letter reason Service Bus gives a message whose time to live ran out before delivery.
pub(super) const TTL_EXPIRED: &str = "TTLExpiredException";

/// Milliseconds since the Unix epoch; instants before it count as the epoch.
pub(super) fn to_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, duration_ms)
}

pub(super) fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

pub(super) fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

pub(super) fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

/// A random version-4 GUID, the form Service Bus uses for lock tokens and generated message ids.
pub(super) fn new_guid() -> String {
    let mut bits: u128 = rand::random();
    bits = (bits & !(0xf << 76)) | (0x4 << 76); // version 4
    bits = (bits & !(0x3 << 62)) | (0x2 << 62); // RFC 4122 variant
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// What identifies a delivery's lock: the part of a [`ReceivedMessage`] that settling and renewing need.
pub(super) struct Lock {
    queue: String,
    sequence_number: i64,
    token: String,
    message_id: String,
}

impl From<&ReceivedMessage> for Lock {
    fn from(message: &ReceivedMessage) -> Self {
        Self {
            queue: message.queue.clone(),
            sequence_number: message.sequence_number,
            token: message.lock_token.clone(),
            message_id: message.message_id.clone(),
        }
    }
}

impl Lock {
    /// The queue the locked message is in.
    pub(super) fn queue(&self) -> &str {
        &self.queue
    }

    pub(super) fn lost(&self) -> anyhow::Error {
        TransportError::LockLost {
            queue: self.queue.clone(),
            message_id: self.message_id.clone(),
        }
        .into()
    }
}

/// What a send routes by and a settle checks: the queues and the topics, as one snapshot.
pub(super) struct Entities {
    pub(super) queues: Arc<HashMap<String, QueueSettings>>,
    pub(super) topics: Arc<Catalog>,
}

impl Entities {
    /// The settings of a queue or of a subscription (by its entity path).
    fn settings(&self, queue: &str) -> anyhow::Result<&QueueSettings> {
        self.queues
            .get(queue)
            .or_else(|| self.topics.paths.get(queue))
            .ok_or_else(|| TransportError::UnknownQueue(queue.to_owned()).into())
    }
}

/// One `messages` row as stored, before it becomes a public type.
struct MessageRow {
    sequence_number: i64,
    message_id: String,
    correlation_id: Option<String>,
    content_type: Option<String>,
    properties: String,
    body: Vec<u8>,
    enqueued_at: i64,
    scheduled_at: Option<i64>,
    expires_at: Option<i64>,
    delivery_count: u32,
    locked_until: Option<i64>,
    session_id: Option<String>,
}

impl MessageRow {
    /// Reads [`MESSAGE_COLUMNS`].
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            sequence_number: row.get(0)?,
            message_id: row.get(1)?,
            correlation_id: row.get(2)?,
            content_type: row.get(3)?,
            properties: row.get(4)?,
            body: row.get(5)?,
            enqueued_at: row.get(6)?,
            scheduled_at: row.get(7)?,
            expires_at: row.get(8)?,
            delivery_count: row.get(9)?,
            locked_until: row.get(10)?,
            session_id: row.get(11)?,
        })
    }

    fn properties(&self) -> anyhow::Result<Vec<(String, String)>> {
        serde_json::from_str(&self.properties).with_context(|| {
            format!(
                "application properties of message `{}` are not valid JSON",
                self.message_id
            )
        })
    }

    fn into_stored(self, queue: &str, now: i64) -> anyhow::Result<StoredMessage> {
        Ok(StoredMessage {
            queue: queue.to_owned(),
            properties: self.properties()?,
            sequence_number: self.sequence_number,
            message_id: self.message_id,
            correlation_id: self.correlation_id,
            content_type: self.content_type,
            body: self.body,
            session_id: self.session_id,
            delivery_count: self.delivery_count,
            enqueued_time: from_ms(self.enqueued_at),
            scheduled_enqueue_time: self.scheduled_at.map(from_ms),
            expires_at: self.expires_at.map(from_ms),
            // An expired lock is no lock: the message is up for delivery again.
            locked_until: self.locked_until.filter(|&until| until > now).map(from_ms),
        })
    }

    fn into_received(self, queue: &str, lock_token: String, locked_until: i64) -> anyhow::Result<ReceivedMessage> {
        Ok(ReceivedMessage {
            queue: queue.to_owned(),
            properties: self.properties()?,
            message_id: self.message_id,
            correlation_id: self.correlation_id,
            content_type: self.content_type,
            body: self.body,
            session_id: self.session_id,
            sequence_number: self.sequence_number,
            delivery_count: self.delivery_count,
            enqueued_time: from_ms(self.enqueued_at),
            lock_token,
            locked_until: from_ms(locked_until),
        })
    }
}

/// Reads [`DEAD_LETTER_COLUMNS`].
fn dead_letter_from_row(row: &Row<'_>) -> rusqlite::Result<(MessageRow, String, String, i64)> {
    Ok((MessageRow::from_row(row)?, row.get(12)?, row.get(13)?, row.get(14)?))
}

fn into_dead_letter(queue: &str, now: i64, parts: (MessageRow, String, String, i64)) -> anyhow::Result<DeadLetter> {
    let (message, reason, description, dead_lettered_at) = parts;
    Ok(DeadLetter {
        message: message.into_stored(queue, now)?,
        reason,
        description,
        dead_lettered_at: Some(from_ms(dead_lettered_at)),
    })
}

/// Enqueues each output (copied to the matching subscriptions when it names a topic); fails, for
/// the writer to undo, on the first unknown queue.
pub(super) fn send(conn: &Connection, entities: &Entities, outputs: &[Output]) -> anyhow::Result<()> {
    send_numbered(conn, entities, outputs).map(drop)
}

/// [`send`], returning each output's sequence number in order.
pub(super) fn send_numbered(conn: &Connection, entities: &Entities, outputs: &[Output]) -> anyhow::Result<Vec<i64>> {
    let now = now_ms();
    outputs
        .iter()
        .map(|output| {
            // Queues first: the common case pays one lookup (queue and topic names never clash).
            if let Some(settings) = entities.queues.get(&output.queue) {
                return insert(conn, settings, output, now);
            }
            if entities.topics.topics.contains_key(&output.queue) {
                return topic_store::fan_out(conn, &entities.topics, &output.queue, output, now);
            }
            if entities.topics.paths.contains_key(&output.queue) {
                let topic = parse_subscription_path(&output.queue).map_or("", |(topic, _)| topic);
                anyhow::bail!(
                    "`{}` is a subscription, which cannot be sent to: send to its topic `{topic}`",
                    output.queue
                );
            }
            Err(TransportError::UnknownQueue(output.queue.clone()).into())
        })
        .collect()
}

/// Takes the next sequence number from `name`'s counter (a queue's or a topic's).
pub(super) fn next_sequence(conn: &Connection, name: &str) -> anyhow::Result<i64> {
    conn.prepare_cached("UPDATE queues SET last_sequence = last_sequence + 1 WHERE name = ?1 RETURNING last_sequence")?
        .query_row([name], |row| row.get(0))
        .with_context(|| format!("`{name}` has no sequence counter"))
}

/// Inserts one message; returns its sequence number.
fn insert(conn: &Connection, settings: &QueueSettings, output: &Output, now: i64) -> anyhow::Result<i64> {
    let message = &output.message;
    let sequence_number = next_sequence(conn, &settings.name)?;
    let message_id = if message.message_id.is_empty() {
        new_guid()
    } else {
        message.message_id.clone()
    };
    insert_copy(conn, settings, sequence_number, &message_id, message, now)?;
    Ok(sequence_number)
}

/// Inserts `message` into the queue of `settings` with the sequence number and message id given
/// (a topic's copies share both).
pub(super) fn insert_copy(
    conn: &Connection,
    settings: &QueueSettings,
    sequence_number: i64,
    message_id: &str,
    message: &OutgoingMessage,
    now: i64,
) -> anyhow::Result<()> {
    if settings.requires_session && message.session_id.is_none() {
        bail!(
            "queue `{}` is session-enabled and takes only messages with a session id (message `{message_id}` has none)",
            settings.name
        );
    }
    let scheduled_at = message.scheduled_enqueue_time.map(to_ms);
    let ttl_ms = message.time_to_live.or(settings.default_ttl).map(duration_ms);
    // The time to live runs from when the message becomes available, as in Service Bus.
    let expires_at = ttl_ms.map(|ttl| scheduled_at.unwrap_or(now).max(now).saturating_add(ttl));
    let properties = serde_json::to_string(&message.properties)?;
    conn.prepare_cached(
        "INSERT INTO messages (queue, sequence_number, message_id, correlation_id, content_type, properties, \
         enqueued_at, scheduled_at, ttl_ms, expires_at, session_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        settings.name,
        sequence_number,
        message_id,
        message.correlation_id,
        message.content_type,
        properties,
        now,
        scheduled_at,
        ttl_ms,
        expires_at,
        message.session_id,
    ])?;
    conn.prepare_cached("INSERT INTO bodies (id, body) VALUES (?1, ?2)")?
        .execute(params![conn.last_insert_rowid(), message.body])?;
    Ok(())
}

/// Which messages a receive takes from.
#[derive(Clone, Copy)]
pub(super) enum Scope<'a> {
    /// Any of the queue's.
    Queue,
    /// Only those of the session `id`, locked until the session's lock ends.
    Session { id: &'a str, locked_until: i64 },
}

/// Locks and returns up to `max` visible messages of the whole queue in sequence order.
/// A session-enabled queue is refused: its messages go out through sessions only.
pub(super) fn receive(conn: &Connection, settings: &QueueSettings, max: usize) -> anyhow::Result<Vec<ReceivedMessage>> {
    if settings.requires_session {
        bail!(
            "queue `{}` is session-enabled: receive from it through a session (accept one first)",
            settings.name
        );
    }
    receive_in(conn, settings, Scope::Queue, max)
}

/// Locks and returns up to `max` visible messages of `scope` in sequence order. On the way it
/// dead-letters, as Service Bus does at receive time, the ones whose time to live ran out and the
/// ones that have already been delivered `max_delivery_count` times.
pub(super) fn receive_in(
    conn: &Connection,
    settings: &QueueSettings,
    scope: Scope,
    max: usize,
) -> anyhow::Result<Vec<ReceivedMessage>> {
    let now = now_ms();
    let queue = settings.name.as_str();
    let (locked_until, session) = match scope {
        Scope::Queue => (now.saturating_add(duration_ms(settings.lock_duration)), None),
        Scope::Session { id, locked_until } => (locked_until, Some(id)),
    };
    // One statement per scope, so the session's goes through `messages_by_session`.
    let in_session = if session.is_some() {
        "AND session_id = ?4"
    } else {
        "AND ?4 IS NULL"
    };
    let mut select = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE {VISIBLE} {in_session} ORDER BY sequence_number LIMIT ?3"
    ))?;
    let mut lock = conn.prepare_cached(
        "UPDATE messages SET lock_token = ?3, locked_until = ?4, delivery_count = delivery_count + 1 \
         WHERE queue = ?1 AND sequence_number = ?2",
    )?;
    let mut received = Vec::new();
    // Every candidate is either locked or dead-lettered, so each round makes progress.
    while received.len() < max {
        let wanted = i64::try_from(max - received.len()).unwrap_or(i64::MAX);
        let candidates = select
            .query_map(params![queue, now, wanted, session], MessageRow::from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        if candidates.is_empty() {
            break;
        }
        for row in candidates {
            if row.expires_at.is_some_and(|expires_at| expires_at <= now) {
                dead_letter(
                    conn,
                    queue,
                    row.sequence_number,
                    TTL_EXPIRED,
                    "The message's time to live expired.",
                    now,
                )?;
            } else if row.delivery_count >= settings.max_delivery_count {
                let description = format!(
                    "Message could not be consumed after {} delivery attempts.",
                    row.delivery_count
                );
                dead_letter(
                    conn,
                    queue,
                    row.sequence_number,
                    MAX_DELIVERY_COUNT_EXCEEDED,
                    &description,
                    now,
                )?;
            } else {
                let token = new_guid();
                lock.execute(params![queue, row.sequence_number, token, locked_until])?;
                let delivered = MessageRow {
                    delivery_count: row.delivery_count + 1,
                    ..row
                };
                received.push(delivered.into_received(queue, token, locked_until)?);
            }
        }
    }
    Ok(received)
}

/// [`receive`], then deletes what it received: receive-and-delete, in the same transaction.
pub(super) fn receive_and_delete(
    conn: &Connection,
    settings: &QueueSettings,
    max: usize,
) -> anyhow::Result<Vec<ReceivedMessage>> {
    let received = receive(conn, settings, max)?;
    let mut delete = conn.prepare_cached("DELETE FROM messages WHERE queue = ?1 AND sequence_number = ?2")?;
    for message in &received {
        delete.execute(params![settings.name, message.sequence_number])?;
    }
    Ok(received)
}

/// Locks and returns up to `max` unlocked dead letters of the queue in sequence order, counting the
/// delivery. No TTL or delivery-count dead-lettering here: they are dead letters already.
pub(super) fn receive_dead_letters(
    conn: &Connection,
    settings: &QueueSettings,
    from_sequence: i64,
    max: usize,
) -> anyhow::Result<Vec<LockedDeadLetter>> {
    let now = now_ms();
    let queue = settings.name.as_str();
    let locked_until = now.saturating_add(duration_ms(settings.lock_duration));
    let wanted = i64::try_from(max).unwrap_or(i64::MAX);
    let candidates = conn
        .prepare_cached(&format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM messages WHERE queue = ?1 AND dead_lettered_at IS NOT NULL \
             AND sequence_number >= ?4 AND (locked_until IS NULL OR locked_until <= ?2) \
             ORDER BY sequence_number LIMIT ?3"
        ))?
        .query_map(params![queue, now, wanted, from_sequence], dead_letter_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut lock = conn.prepare_cached(
        "UPDATE messages SET lock_token = ?3, locked_until = ?4, delivery_count = delivery_count + 1 \
         WHERE queue = ?1 AND sequence_number = ?2",
    )?;
    let mut received = Vec::with_capacity(candidates.len());
    for (row, reason, description, _) in candidates {
        let token = new_guid();
        lock.execute(params![queue, row.sequence_number, token, locked_until])?;
        let delivered = MessageRow {
            delivery_count: row.delivery_count + 1,
            ..row
        };
        received.push(LockedDeadLetter {
            message: delivered.into_received(queue, token, locked_until)?,
            reason,
            description,
        });
    }
    Ok(received)
}

/// Unlocks a held lock without counting the delivery (AMQP `released`).
pub(super) fn release(conn: &Connection, held: &Lock) -> anyhow::Result<()> {
    let changed = conn
        .prepare_cached(&format!(
            "UPDATE messages SET lock_token = NULL, locked_until = NULL, \
             delivery_count = MAX(delivery_count - 1, 0) WHERE {LOCK_HELD}"
        ))?
        .execute(params![held.queue, held.sequence_number, held.token, now_ms()])?;
    if changed == 0 {
        return Err(held.lost());
    }
    Ok(())
}

/// Deletes a message that is still scheduled for later; returns whether there was one.
pub(super) fn cancel_scheduled(conn: &Connection, queue: &str, sequence_number: i64) -> anyhow::Result<bool> {
    let changed = conn
        .prepare_cached(
            "DELETE FROM messages WHERE queue = ?1 AND sequence_number = ?2 AND dead_lettered_at IS NULL \
             AND scheduled_at > ?3",
        )?
        .execute(params![queue, sequence_number, now_ms()])?;
    Ok(changed == 1)
}

fn dead_letter(
    conn: &Connection,
    queue: &str,
    sequence_number: i64,
    reason: &str,
    description: &str,
    now: i64,
) -> anyhow::Result<()> {
    conn.prepare_cached(
        "UPDATE messages SET dead_lettered_at = ?3, dead_letter_reason = ?4, dead_letter_description = ?5, \
         lock_token = NULL, locked_until = NULL WHERE queue = ?1 AND sequence_number = ?2",
    )?
    .execute(params![queue, sequence_number, now, reason, description])?;
    Ok(())
}

/// Settles the message if its lock is still held, then sends `outputs`. Any failure leaves it to the
/// writer to undo the whole step.
pub(super) fn settle(
    conn: &Connection,
    entities: &Entities,
    held: &Lock,
    settlement: &Settlement,
    outputs: &[Output],
) -> anyhow::Result<()> {
    entities.settings(&held.queue)?;
    let now = now_ms();
    let lock = params![held.queue, held.sequence_number, held.token, now];
    let changed = match settlement {
        Settlement::Complete => conn
            .prepare_cached(&format!("DELETE FROM messages WHERE {LOCK_HELD}"))?
            .execute(lock)?,
        Settlement::Abandon => conn
            .prepare_cached(&format!(
                "UPDATE messages SET lock_token = NULL, locked_until = NULL WHERE {LOCK_HELD}"
            ))?
            .execute(lock)?,
        Settlement::DeadLetter {
            reason,
            description,
            properties,
        } => {
            let changed = conn
                .prepare_cached(&format!(
                    "UPDATE messages SET lock_token = NULL, locked_until = NULL, dead_lettered_at = ?4, \
                     dead_letter_reason = ?5, dead_letter_description = ?6 WHERE {LOCK_HELD}"
                ))?
                .execute(params![
                    held.queue,
                    held.sequence_number,
                    held.token,
                    now,
                    reason,
                    description
                ])?;
            if changed == 1 && !properties.is_empty() {
                set_properties(conn, &held.queue, held.sequence_number, properties)?;
            }
            changed
        }
    };
    if changed == 0 {
        return Err(held.lost());
    }
    send(conn, entities, outputs)
}

/// Adds `properties` to a message's application properties, replacing same-named ones.
fn set_properties(
    conn: &Connection,
    queue: &str,
    sequence_number: i64,
    properties: &[(String, String)],
) -> anyhow::Result<()> {
    let stored: String = conn
        .prepare_cached("SELECT properties FROM messages WHERE queue = ?1 AND sequence_number = ?2")?
        .query_row(params![queue, sequence_number], |row| row.get(0))?;
    let mut merged: Vec<(String, String)> = serde_json::from_str(&stored)
        .with_context(|| format!("application properties of message {sequence_number} are not valid JSON"))?;
    merged.retain(|(name, _)| !properties.iter().any(|(new, _)| new == name));
    merged.extend(properties.iter().cloned());
    conn.prepare_cached("UPDATE messages SET properties = ?3 WHERE queue = ?1 AND sequence_number = ?2")?
        .execute(params![queue, sequence_number, serde_json::to_string(&merged)?])?;
    Ok(())
}

/// Whether the holder of `held` still holds it.
pub(super) fn lock_held(conn: &Connection, held: &Lock, now: i64) -> anyhow::Result<bool> {
    Ok(conn
        .prepare_cached(&format!("SELECT 1 FROM messages WHERE {LOCK_HELD}"))?
        .query_row(params![held.queue, held.sequence_number, held.token, now], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Extends a held lock by the queue's lock duration from now; returns the new expiry.
pub(super) fn renew_lock(conn: &Connection, settings: &QueueSettings, held: &Lock) -> anyhow::Result<SystemTime> {
    let now = now_ms();
    let locked_until = now.saturating_add(duration_ms(settings.lock_duration));
    let changed = conn
        .prepare_cached(&format!("UPDATE messages SET locked_until = ?5 WHERE {LOCK_HELD}"))?
        .execute(params![held.queue, held.sequence_number, held.token, now, locked_until])?;
    if changed == 0 {
        return Err(held.lost());
    }
    Ok(from_ms(locked_until))
}

pub(super) fn depth(conn: &Connection, queue: &str) -> anyhow::Result<QueueDepth> {
    let (active, scheduled, dead_lettered): (i64, i64, i64) = conn
        .prepare_cached(
            "SELECT \
             COALESCE(SUM(dead_lettered_at IS NULL AND (scheduled_at IS NULL OR scheduled_at <= ?2)), 0), \
             COALESCE(SUM(dead_lettered_at IS NULL AND scheduled_at > ?2), 0), \
             COALESCE(SUM(dead_lettered_at IS NOT NULL), 0) \
             FROM messages WHERE queue = ?1",
        )?
        .query_row(params![queue, now_ms()], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(QueueDepth {
        active: count(active),
        scheduled: count(scheduled),
        dead_lettered: count(dead_lettered),
    })
}

pub(super) fn peek(conn: &Connection, queue: &str, limit: usize) -> anyhow::Result<Vec<StoredMessage>> {
    peek_from(conn, queue, i64::MIN, limit)
}

pub(super) fn peek_from(
    conn: &Connection,
    queue: &str,
    from_sequence: i64,
    limit: usize,
) -> anyhow::Result<Vec<StoredMessage>> {
    let now = now_ms();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE queue = ?1 AND dead_lettered_at IS NULL \
         AND sequence_number >= ?3 ORDER BY sequence_number LIMIT ?2"
    ))?
    .query_map(params![queue, limit, from_sequence], MessageRow::from_row)?
    .map(|row| row?.into_stored(queue, now))
    .collect()
}

pub(super) fn dead_letters_from(
    conn: &Connection,
    queue: &str,
    from_sequence: i64,
    limit: usize,
) -> anyhow::Result<Vec<DeadLetter>> {
    let now = now_ms();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    conn.prepare_cached(&format!(
        "SELECT {DEAD_LETTER_COLUMNS} FROM messages WHERE queue = ?1 AND dead_lettered_at IS NOT NULL \
         AND sequence_number >= ?3 ORDER BY sequence_number LIMIT ?2"
    ))?
    .query_map(params![queue, limit, from_sequence], dead_letter_from_row)?
    .map(|parts| into_dead_letter(queue, now, parts?))
    .collect()
}
