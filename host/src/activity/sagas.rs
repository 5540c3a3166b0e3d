//! The index of recent sagas: one row per settled step, in SQLite under `data-dir`
//! (`sagas.sqlite3`), searched by saga id, by Dataverse record id or by correlation id.
//!
//! It is bounded two ways ([`Keep`]): rows older than `days` go, and so do the oldest rows
//! beyond `steps`. Each replica indexes the steps it settled itself, so behind a load
//! balancer a saga whose steps ran on several replicas shows only this replica's steps.
//! Writes use `synchronous=NORMAL`: the index is for finding sagas, not a record of them
//! (the messages are), so a power cut may lose its last second.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use rusqlite::{Connection, params};

use crate::saga::SagaEvent;
use crate::saga::routing::Verdict;

/// How much of the past the index keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Keep {
    /// Steps older than this many days are removed.
    pub days: u32,
    /// At most this many steps are kept, the newest.
    pub steps: u64,
}

impl Default for Keep {
    fn default() -> Self {
        Self {
            days: 7,
            steps: 200_000,
        }
    }
}

/// What to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SagaQuery {
    /// The sagas with the newest steps.
    Recent,
    Saga(String),
    /// The Dataverse id of the primary row (with or without braces, any case).
    Record(String),
    /// The Dataverse `CorrelationId`.
    Correlation(String),
}

/// One saga as the index knows it: its steps, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedSaga {
    pub saga_id: String,
    pub entity: Option<String>,
    pub record_id: Option<String>,
    pub correlation_id: Option<String>,
    pub steps: Vec<IndexedStep>,
}

/// One settled step.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedStep {
    pub at: SystemTime,
    pub partner: String,
    /// Content hash of the version that ran; empty when none did.
    pub version: String,
    pub step: u32,
    pub attempt: u32,
    pub compensation: bool,
    /// completed, forwarded, retried, compensating, compensated or dead_lettered.
    pub outcome: String,
    /// The dead-letter reason, the queues forwarded to, or the partner compensating next.
    pub detail: Option<String>,
    pub queue: String,
    pub message_id: String,
    pub trace_id: Option<String>,
}

/// Rows written between two prunes.
const PRUNE_EVERY: u64 = 1000;

/// The index; safe to share, each call takes the one connection in turn.
pub struct SagaIndex {
    db: Mutex<Db>,
    keep: Keep,
}

struct Db {
    connection: Connection,
    written_since_prune: u64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS steps (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    saga_id TEXT NOT NULL,
    entity TEXT,
    record_id TEXT,
    correlation_id TEXT,
    partner TEXT NOT NULL,
    version TEXT NOT NULL,
    step INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    compensation INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    trace_id TEXT
);
CREATE INDEX IF NOT EXISTS steps_saga ON steps (saga_id);
CREATE INDEX IF NOT EXISTS steps_record ON steps (record_id) WHERE record_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS steps_correlation ON steps (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS steps_at ON steps (at_ms);
";

/// A GUID as stored and searched: lower case, no braces or spaces.
fn normalized(id: &str) -> String {
    id.trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .to_ascii_lowercase()
}

fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64
}

/// What the verdict adds to its outcome name.
fn detail(verdict: &Verdict) -> Option<String> {
    match verdict {
        Verdict::DeadLettered { reason, description } => Some(format!("{reason}: {description}")),
        Verdict::Forwarded { queues } => Some(format!("to {}", queues.join(", "))),
        Verdict::Retried { attempt, delay } => {
            Some(format!("attempt {attempt} in {}", humantime::format_duration(*delay)))
        }
        Verdict::Compensating { next_partner } => Some(format!("next undo: {next_partner}")),
        Verdict::Completed | Verdict::Compensated => None,
    }
}

impl SagaIndex {
    /// Opens (or makes) the index at `path`.
    pub fn open(path: &Path, keep: Keep) -> anyhow::Result<Self> {
        let connection =
            Connection::open(path).with_context(|| format!("opening the saga index {}", path.display()))?;
        connection
            .execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
            .and_then(|()| connection.execute_batch(SCHEMA))
            .with_context(|| format!("preparing the saga index {}", path.display()))?;
        let index = Self {
            db: Mutex::new(Db {
                connection,
                written_since_prune: 0,
            }),
            keep,
        };
        index.prune(SystemTime::now())?;
        Ok(index)
    }

    /// How much of the past the index keeps.
    pub fn keep(&self) -> Keep {
        self.keep
    }

    /// Records settled steps, in one transaction.
    pub fn record(&self, events: &[SagaEvent]) -> anyhow::Result<()> {
        let mut db = self.db.lock().expect("saga index lock");
        let transaction = db.connection.transaction()?;
        {
            let mut insert = transaction.prepare_cached(
                "INSERT INTO steps (at_ms, saga_id, entity, record_id, correlation_id, partner, version, step, \
                 attempt, compensation, outcome, detail, queue, message_id, trace_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            )?;
            for event in events {
                insert.execute(params![
                    millis(event.at),
                    event.saga_id,
                    event.keys.entity,
                    event.keys.record_id.as_deref().map(normalized),
                    event.keys.correlation_id.as_deref().map(normalized),
                    event.partner,
                    event.version,
                    event.step,
                    event.attempt,
                    event.compensation,
                    event.verdict.metric_name(),
                    detail(&event.verdict),
                    event.queue,
                    event.message_id,
                    event.keys.trace.map(|trace| trace.trace_id_hex()),
                ])?;
            }
        }
        transaction.commit()?;
        db.written_since_prune += events.len() as u64;
        let due = db.written_since_prune >= PRUNE_EVERY;
        drop(db);
        if due {
            self.prune(SystemTime::now())?;
        }
        Ok(())
    }

    /// Removes what [`Keep`] no longer covers, as of `now`.
    pub fn prune(&self, now: SystemTime) -> anyhow::Result<()> {
        let mut db = self.db.lock().expect("saga index lock");
        let oldest = millis(now - Duration::from_secs(u64::from(self.keep.days) * 86_400));
        db.connection.execute("DELETE FROM steps WHERE at_ms < ?1", [oldest])?;
        db.connection.execute(
            "DELETE FROM steps WHERE id <= (SELECT max(id) FROM steps) - ?1",
            [self.keep.steps as i64],
        )?;
        db.written_since_prune = 0;
        Ok(())
    }

    /// The sagas `query` finds, those with the newest steps first, at most `limit`.
    pub fn find(&self, query: &SagaQuery, limit: usize) -> anyhow::Result<Vec<IndexedSaga>> {
        let db = self.db.lock().expect("saga index lock");
        let connection = &db.connection;
        // The newest few thousand steps are enough to name the most recent sagas, and
        // reading only those keeps the console's default view cheap on a full index.
        let (rows, value) = match query {
            SagaQuery::Recent => (
                "(SELECT saga_id, id FROM steps ORDER BY id DESC LIMIT 5000) WHERE ?1 IS NULL",
                None,
            ),
            SagaQuery::Saga(id) => ("steps WHERE saga_id = ?1", Some(id.trim().to_string())),
            SagaQuery::Record(id) => ("steps WHERE record_id = ?1", Some(normalized(id))),
            SagaQuery::Correlation(id) => ("steps WHERE correlation_id = ?1", Some(normalized(id))),
        };
        let mut ids = connection.prepare(&format!(
            "SELECT saga_id FROM {rows} GROUP BY saga_id ORDER BY max(id) DESC LIMIT ?2"
        ))?;
        let saga_ids = ids
            .query_map(params![value, limit as i64], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut steps = connection.prepare_cached(
            "SELECT at_ms, partner, version, step, attempt, compensation, outcome, detail, queue, message_id, \
             trace_id, entity, record_id, correlation_id FROM steps WHERE saga_id = ?1 ORDER BY id",
        )?;
        let mut sagas = Vec::with_capacity(saga_ids.len());
        for saga_id in saga_ids {
            let mut saga = IndexedSaga {
                saga_id: saga_id.clone(),
                entity: None,
                record_id: None,
                correlation_id: None,
                steps: Vec::new(),
            };
            let mut rows = steps.query([&saga_id])?;
            while let Some(row) = rows.next()? {
                let at: i64 = row.get(0)?;
                saga.steps.push(IndexedStep {
                    at: UNIX_EPOCH + Duration::from_millis(at.max(0) as u64),
                    partner: row.get(1)?,
                    version: row.get(2)?,
                    step: row.get(3)?,
                    attempt: row.get(4)?,
                    compensation: row.get(5)?,
                    outcome: row.get(6)?,
                    detail: row.get(7)?,
                    queue: row.get(8)?,
                    message_id: row.get(9)?,
                    trace_id: row.get(10)?,
                });
                saga.entity = saga.entity.or(row.get(11)?);
                saga.record_id = saga.record_id.or(row.get(12)?);
                saga.correlation_id = saga.correlation_id.or(row.get(13)?);
            }
            sagas.push(saga);
        }
        Ok(sagas)
    }
}
