//! The SQL of sessions: their locks and state in `sessions`, and the session's messages in
//! `messages` (by `session_id`). Synchronous, on the writer thread, like `store.rs`.
//!
//! A session's lock is also the lock of every message received in it: receiving in a session
//! locks the message until the session's lock ends, and renewing or releasing the session renews
//! or releases those messages with it. So a message's own lock check (`store::LOCK_HELD`) is all
//! settling needs, and a session that changes hands takes its unsettled messages along.

use std::time::SystemTime;

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};

use super::super::ReceivedMessage;
use super::super::sessions::SessionLock;
use super::QueueSettings;
use super::store::{self, Lock, Scope, VISIBLE, duration_ms, from_ms, new_guid, now_ms};

/// Locks the session `session_id` of the queue, or (with `None`) the session of the oldest visible
/// message whose session no one holds. `None` when the named session is held by someone else, or
/// no session is available.
pub(super) fn accept(
    conn: &Connection,
    settings: &QueueSettings,
    session_id: Option<&str>,
) -> anyhow::Result<Option<SessionLock>> {
    let now = now_ms();
    let queue = settings.name.as_str();
    let session_id = match session_id {
        Some(id) => id.to_owned(),
        None => {
            let available: Option<String> = conn
                .prepare_cached(&format!(
                    "SELECT session_id FROM messages WHERE {VISIBLE} AND session_id IS NOT NULL \
                     AND NOT EXISTS (SELECT 1 FROM sessions WHERE sessions.queue = ?1 \
                         AND sessions.session_id = messages.session_id AND sessions.locked_until > ?2) \
                     ORDER BY sequence_number LIMIT 1"
                ))?
                .query_row(params![queue, now], |row| row.get(0))
                .optional()?;
            match available {
                Some(id) => id,
                None => return Ok(None),
            }
        }
    };
    let token = new_guid();
    let locked_until = now.saturating_add(duration_ms(settings.lock_duration));
    // An upsert whose update only happens when no live lock holds the session.
    let locked = conn
        .prepare_cached(
            "INSERT INTO sessions (queue, session_id, lock_token, locked_until) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (queue, session_id) DO UPDATE SET lock_token = ?3, locked_until = ?4 \
             WHERE sessions.locked_until IS NULL OR sessions.locked_until <= ?5",
        )?
        .execute(params![queue, session_id, token, locked_until, now])?;
    Ok((locked == 1).then(|| SessionLock {
        queue: queue.to_owned(),
        session_id,
        lock_token: token,
        locked_until: from_ms(locked_until),
    }))
}

/// When the session's lock ends, if `session` still holds it.
fn held_until(conn: &Connection, session: &SessionLock, now: i64) -> anyhow::Result<Option<i64>> {
    Ok(conn
        .prepare_cached(
            "SELECT locked_until FROM sessions WHERE queue = ?1 AND session_id = ?2 AND lock_token = ?3 \
             AND locked_until > ?4",
        )?
        .query_row(
            params![session.queue, session.session_id, session.lock_token, now],
            |row| row.get(0),
        )
        .optional()?)
}

/// Receives up to `max` of the session's messages, if `session` still holds its lock.
pub(super) fn receive(
    conn: &Connection,
    settings: &QueueSettings,
    session: &SessionLock,
    max: usize,
) -> anyhow::Result<Vec<ReceivedMessage>> {
    let locked_until = held_until(conn, session, now_ms())?.ok_or_else(|| session.lost())?;
    let scope = Scope::Session {
        id: &session.session_id,
        locked_until,
    };
    store::receive_in(conn, settings, scope, max)
}

/// Moves the session's lock, and the locks of its messages still held, to now plus the queue's
/// lock duration.
fn extend(conn: &Connection, settings: &QueueSettings, queue: &str, session_id: &str, now: i64) -> anyhow::Result<i64> {
    let locked_until = now.saturating_add(duration_ms(settings.lock_duration));
    conn.prepare_cached("UPDATE sessions SET locked_until = ?3 WHERE queue = ?1 AND session_id = ?2")?
        .execute(params![queue, session_id, locked_until])?;
    conn.prepare_cached(
        "UPDATE messages SET locked_until = ?3 WHERE queue = ?1 AND session_id = ?2 AND locked_until > ?4",
    )?
    .execute(params![queue, session_id, locked_until, now])?;
    Ok(locked_until)
}

/// Renews the session's lock, if `session` still holds it.
pub(super) fn renew(conn: &Connection, settings: &QueueSettings, session: &SessionLock) -> anyhow::Result<SystemTime> {
    let now = now_ms();
    held_until(conn, session, now)?.ok_or_else(|| session.lost())?;
    extend(conn, settings, &session.queue, &session.session_id, now).map(from_ms)
}

/// Renews the lock of the session that `message` was received in, if its lock is still held.
pub(super) fn renew_for_message(
    conn: &Connection,
    settings: &QueueSettings,
    held: &Lock,
    session_id: &str,
) -> anyhow::Result<SystemTime> {
    let now = now_ms();
    if !store::lock_held(conn, held, now)? {
        return Err(held.lost());
    }
    extend(conn, settings, held.queue(), session_id, now).map(from_ms)
}

/// Unlocks the session and its unsettled messages (their deliveries stay counted, as for any lock
/// that ends unsettled). A session with no state leaves no row behind.
pub(super) fn release(conn: &Connection, session: &SessionLock) -> anyhow::Result<()> {
    let now = now_ms();
    held_until(conn, session, now)?.ok_or_else(|| session.lost())?;
    conn.prepare_cached(
        "UPDATE messages SET lock_token = NULL, locked_until = NULL \
         WHERE queue = ?1 AND session_id = ?2 AND locked_until > ?3",
    )?
    .execute(params![session.queue, session.session_id, now])?;
    conn.prepare_cached("DELETE FROM sessions WHERE queue = ?1 AND session_id = ?2 AND state IS NULL")?
        .execute(params![session.queue, session.session_id])?;
    conn.prepare_cached(
        "UPDATE sessions SET lock_token = NULL, locked_until = NULL WHERE queue = ?1 AND session_id = ?2",
    )?
    .execute(params![session.queue, session.session_id])?;
    Ok(())
}

/// The session's state, if `session` holds its lock.
pub(super) fn state(conn: &Connection, session: &SessionLock) -> anyhow::Result<Option<Vec<u8>>> {
    held_until(conn, session, now_ms())?.ok_or_else(|| session.lost())?;
    conn.prepare_cached("SELECT state FROM sessions WHERE queue = ?1 AND session_id = ?2")?
        .query_row(params![session.queue, session.session_id], |row| row.get(0))
        .with_context(|| format!("reading the state of session `{}`", session.session_id))
}

/// Replaces the session's state, if `session` holds its lock.
pub(super) fn set_state(conn: &Connection, session: &SessionLock, state: Option<&[u8]>) -> anyhow::Result<()> {
    held_until(conn, session, now_ms())?.ok_or_else(|| session.lost())?;
    conn.prepare_cached("UPDATE sessions SET state = ?3 WHERE queue = ?1 AND session_id = ?2")?
        .execute(params![session.queue, session.session_id, state])?;
    Ok(())
}
