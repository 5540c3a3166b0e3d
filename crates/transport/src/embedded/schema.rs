//! The queue database's schema: its tables, its version (`PRAGMA user_version`), opening a file
//! and upgrading an older one in place.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use rusqlite::Connection;
use rusqlite::config::DbConfig;

use super::{QueueSettings, topic_store};

/// Schema version kept in `PRAGMA user_version`. Bump it, and migrate in [`open`], when the schema changes.
/// Version 2 moved `body` to the last column and added `messages_by_state` (see [`SCHEMA`]);
/// version 3 added the topic tables (`topic_store::SCHEMA`); version 4 added `queue_definitions`
/// (see [`super::queue_definitions`]). Both are `CREATE TABLE IF NOT EXISTS`, so that is their whole
/// migration. Version 5 added `messages.session_id` (before `properties`, so `body` stays last:
/// the table is rewritten), `sessions` (`session_store.rs`) and `queue_definitions.requires_session`.
pub(super) const SCHEMA_VERSION: i64 = 5;

/// `messages` holds every message of every queue, active and dead-lettered alike: dead-lettering
/// and redriving are then one `UPDATE` of a row, never a copy between tables. Times are
/// milliseconds since the Unix epoch. `queues` keeps each queue's (and each topic's) last sequence
/// number, so numbers keep increasing after the newest message is completed and deleted.
///
/// `body` is the last column on purpose: SQLite stores a row's columns in order and spills what
/// does not fit a page into a chain of overflow pages, so every column after a large body could
/// only be read by walking that chain. Receiving tests the lock and schedule of each candidate
/// row; with the body last those tests read one page per row, not the whole message.
/// `messages_by_state` answers [`super::store::depth`] (the metrics gauge, `sagahost queue`) from the index
/// alone instead of reading every row of the queue. `queue_definitions` keeps the settings of
/// queues created through the broker's management endpoint, so they outlive a restart.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queues (
    name          TEXT PRIMARY KEY,
    last_sequence INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS messages (
    id               INTEGER PRIMARY KEY,
    queue            TEXT NOT NULL,
    sequence_number  INTEGER NOT NULL,
    message_id       TEXT NOT NULL,
    correlation_id   TEXT,
    content_type     TEXT,
    enqueued_at      INTEGER NOT NULL,
    scheduled_at     INTEGER,       -- not delivered before this
    ttl_ms           INTEGER,       -- kept so that a redrive can restart the time to live
    expires_at       INTEGER,       -- dead-lettered instead of delivered from this on
    delivery_count   INTEGER NOT NULL DEFAULT 0,
    lock_token       TEXT,
    locked_until     INTEGER,       -- the lock holds while this is in the future
    dead_lettered_at INTEGER,       -- set: the row is in the queue's dead-letter queue
    dead_letter_reason      TEXT,
    dead_letter_description TEXT,
    session_id       TEXT,          -- Service Bus SessionId, as sent
    properties       TEXT NOT NULL, -- JSON array of [name, value] pairs: keeps order and repeats
    body             BLOB NOT NULL,
    UNIQUE (queue, sequence_number)
);
CREATE INDEX IF NOT EXISTS messages_by_state ON messages (queue, dead_lettered_at, scheduled_at);
CREATE INDEX IF NOT EXISTS messages_by_session ON messages (queue, session_id, sequence_number)
    WHERE session_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS sessions (
    queue        TEXT NOT NULL,
    session_id   TEXT NOT NULL,
    lock_token   TEXT,
    locked_until INTEGER,          -- the session is locked to `lock_token` while this is in the future
    state        BLOB,
    PRIMARY KEY (queue, session_id)
);
CREATE TABLE IF NOT EXISTS queue_definitions (
    name               TEXT PRIMARY KEY,
    lock_duration_ms   INTEGER NOT NULL,
    max_delivery_count INTEGER NOT NULL,
    default_ttl_ms     INTEGER,
    requires_session   INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
";

/// The columns of `messages` that every schema version has, for copying rows between versions.
const ALL_COLUMNS: &str = "id, queue, sequence_number, message_id, correlation_id, content_type, enqueued_at, \
     scheduled_at, ttl_ms, expires_at, delivery_count, lock_token, locked_until, dead_lettered_at, \
     dead_letter_reason, dead_letter_description, properties, body";

/// Opens (creating if needed) the database at `path` in WAL mode with durable commits, creates or
/// checks the schema, and registers `queues` so that each has a sequence counter.
pub(super) fn open(path: &Path, queues: &[QueueSettings]) -> anyhow::Result<Connection> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let conn = Connection::open(path)?;
    // Room for every statement this module prepares, so none is ever prepared twice.
    conn.set_prepared_statement_cache_capacity(48);
    // One plan per statement, whatever is bound. Without this SQLite prepares a statement again
    // whenever a new value is bound to its `LIMIT ?`, as a receive's varies with the free slots:
    // 7 % of the writer thread's time in `perf`. No statement here gains from a per-value plan.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // Another process (an operator's CLI) may hold the write lock for a moment: wait rather than fail.
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("SQLite would not switch to WAL mode (it is in `{mode}` mode)");
    }
    // FULL: in WAL mode every commit fsyncs the WAL, so a completed message stays completed and a
    // sent one stays sent across a power cut. Group commit is what keeps this affordable.
    conn.pragma_update(None, "synchronous", "FULL")?;

    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        bail!("the queue database has schema version {version}, newer than this sagahost knows ({SCHEMA_VERSION})");
    }
    if version == 1 {
        migrate_from_v1(&conn)?;
    }
    if (1..=2).contains(&version) {
        topic_store::migrate_from_v2(&conn)?;
    }
    if (2..=4).contains(&version) {
        migrate_to_v5(&conn, version)?;
    }
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(topic_store::SCHEMA)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    for queue in queues {
        register_queue(&conn, &queue.name)?;
    }
    Ok(conn)
}

/// Rewrites a version-1 `messages` table (body in the middle of the row) in the version-2 column
/// order, in one transaction: a crash part-way leaves the version-1 database as it was.
fn migrate_from_v1(conn: &Connection) -> anyhow::Result<()> {
    tracing::info!("upgrading the queue database to schema version 2");
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         ALTER TABLE messages RENAME TO messages_v1;
         {SCHEMA}
         INSERT INTO messages ({ALL_COLUMNS}) SELECT {ALL_COLUMNS} FROM messages_v1;
         DROP TABLE messages_v1;
         PRAGMA user_version = 2;
         COMMIT;"
    ))
    .context("upgrading the queue database from schema version 1")
}

/// Rewrites `messages` of a version 2 to 4 database with `session_id` before `properties` (version 1
/// was rewritten in the version 5 layout already), and adds `requires_session` to a version 4
/// `queue_definitions`; in one transaction, as [`migrate_from_v1`].
fn migrate_to_v5(conn: &Connection, version: i64) -> anyhow::Result<()> {
    tracing::info!("upgrading the queue database to schema version 5");
    let definitions = if version == 4 {
        "ALTER TABLE queue_definitions ADD COLUMN requires_session INTEGER NOT NULL DEFAULT 0;"
    } else {
        ""
    };
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         DROP INDEX IF EXISTS messages_by_state;
         ALTER TABLE messages RENAME TO messages_v4;
         {definitions}
         {SCHEMA}
         INSERT INTO messages ({ALL_COLUMNS}) SELECT {ALL_COLUMNS} FROM messages_v4;
         DROP TABLE messages_v4;
         PRAGMA user_version = 5;
         COMMIT;"
    ))
    .with_context(|| format!("upgrading the queue database from schema version {version}"))
}

/// Gives `queue` a sequence counter unless it has one.
pub(super) fn register_queue(conn: &Connection, queue: &str) -> anyhow::Result<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO queues (name) VALUES (?1)")?
        .execute([queue])?;
    Ok(())
}
