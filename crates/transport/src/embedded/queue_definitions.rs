//! The queues as entities: creating, updating, deleting and describing them one by one, as the
//! local broker's management endpoint (Service Bus's entity-management API) asks.
//!
//! # What it owns
//! The `queue_definitions` table: the settings of every queue created or updated here, kept so
//! that such a queue comes back with its settings when the database is opened again. Queues
//! configured at [`EmbeddedQueue::open`] are not stored (the configuration stays their one source
//! and wins over a stored definition of the same name), and neither are queues the broker creates
//! on first use ([`EmbeddedQueue::ensure_queue`]), which last until the process ends as before.
//!
//! Changes to the set of queues made here are serialized by one async lock held across the
//! database write and the in-memory update, so the two never disagree about a queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};

use super::schema;
use super::store::{self, duration_ms, from_ms, now_ms};
use super::{EmbeddedQueue, QueueDepth, QueueSettings, TransportError, validate};

/// A queue as the management endpoint shows it: settings, times and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    /// The settings receives and sends use now.
    pub settings: QueueSettings,
    /// When [`EmbeddedQueue::create_queue`] (or the first [`EmbeddedQueue::update_queue`]) stored
    /// it; `None` for a configured queue or one created on first use.
    pub created_at: Option<SystemTime>,
    /// When its stored settings last changed; `None` as for `created_at`.
    pub updated_at: Option<SystemTime>,
    /// Its messages, as Service Bus counts them.
    pub depth: QueueDepth,
    /// The bodies of its messages, dead letters included, in bytes.
    pub size_in_bytes: u64,
}

/// Stored definitions by name, for [`EmbeddedQueue::open`]; each is checked as configured
/// queues are, so a damaged row fails the open with the queue's name.
pub(super) fn load(conn: &Connection) -> anyhow::Result<Vec<QueueSettings>> {
    let rows = conn
        .prepare("SELECT name, lock_duration_ms, max_delivery_count, default_ttl_ms, requires_session FROM queue_definitions")?
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, Option<i64>>(3)?,
                row.get::<_, bool>(4)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(name, lock_ms, max_delivery_count, ttl_ms, requires_session)| {
            let millis = |ms: i64| Duration::from_millis(u64::try_from(ms).unwrap_or(0));
            let settings = QueueSettings {
                lock_duration: millis(lock_ms),
                max_delivery_count: u32::try_from(max_delivery_count).unwrap_or(0),
                default_ttl: ttl_ms.map(millis),
                requires_session,
                name,
            };
            validate(&settings).with_context(|| format!("the stored definition of queue `{}`", settings.name))?;
            Ok(settings)
        })
        .collect()
}

/// Stores `settings`, keeping the creation time of an earlier definition. `created` says whether
/// a definition must not exist yet; returns false (and stores nothing) when one does.
fn save(conn: &Connection, settings: &QueueSettings, created: bool) -> anyhow::Result<bool> {
    let now = now_ms();
    let values = params![
        settings.name,
        duration_ms(settings.lock_duration),
        settings.max_delivery_count,
        settings.default_ttl.map(duration_ms),
        now,
        settings.requires_session,
    ];
    let changed = if created {
        conn.prepare_cached(
            "INSERT INTO queue_definitions (name, lock_duration_ms, max_delivery_count, default_ttl_ms, \
             created_at, updated_at, requires_session) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6) ON CONFLICT (name) DO NOTHING",
        )?
        .execute(values)?
    } else {
        conn.prepare_cached(
            "INSERT INTO queue_definitions (name, lock_duration_ms, max_delivery_count, default_ttl_ms, \
             created_at, updated_at, requires_session) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6) ON CONFLICT (name) DO UPDATE SET \
             lock_duration_ms = ?2, max_delivery_count = ?3, default_ttl_ms = ?4, updated_at = ?5, \
             requires_session = ?6",
        )?
        .execute(values)?
    };
    schema::register_queue(conn, &settings.name)?;
    Ok(changed == 1)
}

/// Removes every trace of `queue`: its messages and dead letters, its sequence counter and its
/// stored definition.
fn remove(conn: &Connection, queue: &str) -> anyhow::Result<()> {
    conn.prepare_cached("DELETE FROM messages WHERE queue = ?1")?
        .execute([queue])?;
    conn.prepare_cached("DELETE FROM queues WHERE name = ?1")?
        .execute([queue])?;
    conn.prepare_cached("DELETE FROM queue_definitions WHERE name = ?1")?
        .execute([queue])?;
    conn.prepare_cached("DELETE FROM sessions WHERE queue = ?1")?
        .execute([queue])?;
    Ok(())
}

/// The stored times of `queue`'s definition, if it has one.
fn times(conn: &Connection, queue: &str) -> anyhow::Result<Option<(SystemTime, SystemTime)>> {
    Ok(conn
        .prepare_cached("SELECT created_at, updated_at FROM queue_definitions WHERE name = ?1")?
        .query_row([queue], |row| Ok((from_ms(row.get(0)?), from_ms(row.get(1)?))))
        .optional()?)
}

/// The bytes of `queue`'s message bodies. SQLite reads a blob's length from the row header, so
/// this does not load the bodies.
fn size_in_bytes(conn: &Connection, queue: &str) -> anyhow::Result<u64> {
    let size: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(LENGTH(bodies.body)), 0) FROM messages JOIN bodies ON bodies.id = messages.id \
             WHERE messages.queue = ?1",
        )?
        .query_row([queue], |row| row.get(0))?;
    Ok(u64::try_from(size).unwrap_or(0))
}

impl EmbeddedQueue {
    /// The settings of `queue`, if it exists.
    pub fn queue_settings(&self, queue: &str) -> Option<QueueSettings> {
        self.queues().get(queue).cloned()
    }

    /// The names of every queue, sorted.
    pub fn queue_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.queues().keys().cloned().collect();
        names.sort_unstable();
        names
    }

    /// `queue`'s settings, stored times and counts, or `None` when there is no such queue.
    pub async fn describe_queue(&self, queue: &str) -> Result<Option<QueueInfo>, TransportError> {
        let Some(settings) = self.queue_settings(queue) else {
            return Ok(None);
        };
        let name = settings.name.clone();
        let (depth, times, size_in_bytes) = self
            .shared
            .writer
            .call(move |conn| {
                Ok((
                    store::depth(conn, &name)?,
                    times(conn, &name)?,
                    size_in_bytes(conn, &name)?,
                ))
            })
            .await?;
        Ok(Some(QueueInfo {
            settings,
            created_at: times.map(|(created, _)| created),
            updated_at: times.map(|(_, updated)| updated),
            depth,
            size_in_bytes,
        }))
    }

    /// Creates a queue with `settings` and stores them, so the queue comes back with them when the
    /// database is opened again. Returns false, changing nothing, when a queue or a topic of that
    /// name exists (Service Bus names share one namespace).
    pub async fn create_queue(&self, settings: QueueSettings) -> Result<bool, TransportError> {
        validate(&settings).map_err(TransportError::Other)?;
        let _changing = self.shared.entity_changes.lock().await;
        if self.has_queue(&settings.name) || self.has_topic(&settings.name) {
            return Ok(false);
        }
        let stored = settings.clone();
        let created = self.shared.writer.call(move |conn| save(conn, &stored, true)).await?;
        if created {
            self.put_settings(settings);
        }
        Ok(created)
    }

    /// Replaces the settings of an existing queue and stores them; later receives, renewals and
    /// sends use them. Returns false, changing nothing, when there is no such queue.
    pub async fn update_queue(&self, settings: QueueSettings) -> Result<bool, TransportError> {
        validate(&settings).map_err(TransportError::Other)?;
        let _changing = self.shared.entity_changes.lock().await;
        if !self.has_queue(&settings.name) {
            return Ok(false);
        }
        let stored = settings.clone();
        self.shared.writer.call(move |conn| save(conn, &stored, false)).await?;
        self.put_settings(settings);
        Ok(true)
    }

    /// Deletes `queue` with its messages, dead letters and stored settings. Returns false when
    /// there is no such queue. Locks held on its messages are lost; a later send to it fails with
    /// [`TransportError::UnknownQueue`] until it is created again (with fresh sequence numbers).
    pub async fn delete_queue(&self, queue: &str) -> Result<bool, TransportError> {
        let _changing = self.shared.entity_changes.lock().await;
        if !self.has_queue(queue) {
            return Ok(false);
        }
        // Out of the map first, so no new send or receive starts on it while its rows go.
        self.change_queues(|queues| {
            queues.remove(queue);
        });
        self.shared
            .arrivals
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(queue);
        let name = queue.to_owned();
        self.shared.writer.call(move |conn| remove(conn, &name)).await?;
        Ok(true)
    }

    /// Puts `settings` in the map (replacing any for the same name) with an arrival notifier.
    fn put_settings(&self, settings: QueueSettings) {
        let name = settings.name.clone();
        self.change_queues(|queues| {
            queues.insert(name.clone(), settings);
        });
        self.shared
            .arrivals
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(name)
            .or_default();
    }

    /// Replaces the settings map with a changed copy (copy on write: readers keep their snapshot).
    fn change_queues(&self, change: impl FnOnce(&mut HashMap<String, QueueSettings>)) {
        let mut queues = self
            .shared
            .queues
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut updated = HashMap::clone(&queues);
        change(&mut updated);
        *queues = Arc::new(updated);
    }
}

#[cfg(test)]
mod tests;
