//! The queue database's schema: its tables, its version (`PRAGMA user_version`), opening a file
//! and upgrading an older one in place.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use rusqlite::Connection;
use rusqlite::config::DbConfig;

use super::{QueueSettings, topic_store};

/// Schema version kept in `PRAGMA user_version`. Bump it, and migrate in [`open`], when the schema changes.
/// Version 2 moved `body` to the last column and added `messages_by_state`; version 3 added the
/// topic tables (`topic_store::SCHEMA`); version 4 added `queue_definitions` (see
/// [`super::queue_definitions`]). Both are `CREATE TABLE IF NOT EXISTS`, so that is their whole
/// migration. Version 5 added `messages.session_id`, `sessions` (`session_store.rs`) and
/// `queue_definitions.requires_session`. Version 6 moved the bodies out of `messages` into
/// `bodies` (see [`SCHEMA`]).
pub(super) const SCHEMA_VERSION: i64 = 6;

/// `messages` holds every message of every queue, active and dead-lettered alike: dead-lettering
/// and redriving are then one `UPDATE` of a row, never a copy between tables. Times are
/// milliseconds since the Unix epoch. `queues` keeps each queue's (and each topic's) last sequence
/// number, so numbers keep increasing after the newest message is completed and deleted.
///
/// A message's body is a row of its own in `bodies`, with the message's `id`, written when the
/// message is and deleted with it (the trigger). Receiving, renewing, abandoning and
/// dead-lettering rewrite a message's row; SQLite rewrites a row whole, so with the body in it
/// each of them read the whole body and wrote its pages to the WAL again (BENCHMARKS.md,
/// "Bodies out of the message rows").
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
    UNIQUE (queue, sequence_number)
);
CREATE TABLE IF NOT EXISTS bodies (
    id   INTEGER PRIMARY KEY,       -- the message's `messages.id`
    body BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS messages_delete_body AFTER DELETE ON messages BEGIN
    DELETE FROM bodies WHERE id = old.id;
END;
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
     dead_letter_reason, dead_letter_description, properties";

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
    // The topic tables first: the rewrite of `messages` below takes any layout from 1 to 5, so a
    // crash between the two upgrades leaves a database the next open upgrades the same way.
    if (1..=2).contains(&version) {
        topic_store::migrate_from_v2(&conn)?;
    }
    if (1..=5).contains(&version) {
        rewrite_messages(&conn, version)?;
    }
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(topic_store::SCHEMA)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    for queue in queues {
        register_queue(&conn, &queue.name)?;
    }
    Ok(conn)
}

/// Rewrites `messages` of a version 1 to 5 database in the current layout, its bodies moved to
/// `bodies`, and adds `requires_session` to a version 4 `queue_definitions`; in one transaction,
/// so a crash part-way leaves the older database as it was. Versions 1 to 4 have no `session_id`;
/// version 1 differs from 2 to 4 only in the order of its columns, which copying by name ignores.
fn rewrite_messages(conn: &Connection, version: i64) -> anyhow::Result<()> {
    tracing::info!("upgrading the queue database from schema version {version} to {SCHEMA_VERSION}");
    let definitions = if version == 4 {
        "ALTER TABLE queue_definitions ADD COLUMN requires_session INTEGER NOT NULL DEFAULT 0;"
    } else {
        ""
    };
    let columns = if version == 5 {
        format!("{ALL_COLUMNS}, session_id")
    } else {
        ALL_COLUMNS.to_owned()
    };
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         DROP INDEX IF EXISTS messages_by_state;
         DROP INDEX IF EXISTS messages_by_session;
         ALTER TABLE messages RENAME TO messages_old;
         {definitions}
         {SCHEMA}
         INSERT INTO messages ({columns}) SELECT {columns} FROM messages_old;
         INSERT INTO bodies (id, body) SELECT id, body FROM messages_old;
         DROP TABLE messages_old;
         PRAGMA user_version = {SCHEMA_VERSION};
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
