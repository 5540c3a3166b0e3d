//! The writer thread: the one owner of the write connection, and where group commit happens.

use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{Context, anyhow};
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::super::TransportError;

/// Most jobs committed together. Bounds how long the first job of a very large backlog waits
/// for its reply; far above what one commit needs to amortise its fsync.
const MAX_BATCH: usize = 512;

/// Work for the writer: runs inside the batch transaction, then replies once the batch is settled.
trait Job: Send {
    /// Runs the work against the open transaction and returns whether it succeeded. It may run
    /// twice: when another job of its batch fails, the batch is undone and run again with a
    /// savepoint per job (see [`run_batch`]). So work changes nothing outside the database.
    fn run(&mut self, conn: &Connection) -> bool;

    /// Replies to the caller: with the job's own result if the batch committed, else with why it did not.
    fn reply(self: Box<Self>, commit_error: Option<&str>);
}

/// One caller's closure, its result while the batch is in flight, and where to send that result.
struct Call<T, F> {
    work: F,
    result: Option<anyhow::Result<T>>,
    reply: oneshot::Sender<Result<T, TransportError>>,
}

impl<T, F> Job for Call<T, F>
where
    T: Send,
    F: FnMut(&Connection) -> anyhow::Result<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = (self.work)(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn reply(self: Box<Self>, commit_error: Option<&str>) {
        let result = match (commit_error, self.result) {
            // A job that failed was rolled back to its savepoint: its own error is the answer,
            // whatever became of the batch.
            (_, Some(Err(error))) => Err(into_transport_error(error)),
            (None, Some(Ok(value))) => Ok(value),
            (Some(error), _) => Err(TransportError::Other(anyhow!("embedded queue commit failed: {error}"))),
            (None, None) => Err(TransportError::Other(anyhow!("embedded queue job was never run"))),
        };
        // The caller may have given up waiting (its future was dropped); nothing to tell then.
        let _ = self.reply.send(result);
    }
}

/// Jobs report domain errors (lock lost, unknown queue) as a `TransportError` inside `anyhow`, so
/// one `?` handles them and SQLite errors alike; this unwraps them again for the caller.
fn into_transport_error(error: anyhow::Error) -> TransportError {
    error.downcast::<TransportError>().unwrap_or_else(TransportError::Other)
}

/// Handle to the writer thread. Dropping it lets the thread finish the jobs already sent, close
/// the connection and exit, and waits for that.
pub(super) struct Writer {
    jobs: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread, which takes ownership of `conn`.
    pub(super) fn start(conn: Connection) -> anyhow::Result<Self> {
        let (jobs, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sagahost-queue-writer".into())
            .spawn(move || run(conn, queue))
            .context("starting the embedded queue writer thread")?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `work` on the writer thread inside the next group commit and returns its result once
    /// that commit is durable. If `work` fails, only its own changes are undone. It may run more
    /// than once, each time from a database without its earlier changes, so it must not change
    /// anything outside the database.
    pub(super) async fn call<T, F>(&self, work: F) -> Result<T, TransportError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> anyhow::Result<T> + Send + 'static,
    {
        let stopped = || TransportError::Other(anyhow!("the embedded queue writer thread has stopped"));
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Call {
            work,
            result: None,
            reply,
        });
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel is the thread's signal to stop once it has drained it.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread's loop: block for one job, take whatever else is already waiting, commit them together.
fn run(mut conn: Connection, queue: mpsc::Receiver<Box<dyn Job>>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        batch.extend(queue.try_iter().take(MAX_BATCH - 1));
        let outcome = run_batch(&mut conn, &mut batch);
        let commit_error = outcome.err().map(|error| error.to_string());
        for job in batch {
            job.reply(commit_error.as_deref());
        }
    }
}

/// Runs every job of the batch in one transaction and commits once. With `synchronous=FULL` in WAL
/// mode the commit is one fsync of the WAL, shared by the batch.
///
/// A failed job must leave no trace, while the others' changes stay. Almost no batch has a failed
/// job, so the jobs first run straight in the transaction. A savepoint per job would make SQLite
/// copy every page each job first touches into the savepoint's journal, with its allocations:
/// about 12 % of the writer thread's samples in `perf`. Only if a job fails is the batch rolled
/// back and run again by [`run_isolated`].
fn run_batch(conn: &mut Connection, batch: &mut [Box<dyn Job>]) -> rusqlite::Result<()> {
    let tx = begin(conn)?;
    if batch.iter_mut().all(|job| job.run(&tx)) {
        return tx.commit();
    }
    tx.rollback()?;
    run_isolated(conn, batch)
}

/// Runs every job of the batch in one transaction, each under its own savepoint, and commits once.
fn run_isolated(conn: &mut Connection, batch: &mut [Box<dyn Job>]) -> rusqlite::Result<()> {
    let mut tx = begin(conn)?;
    for job in batch.iter_mut() {
        let savepoint = tx.savepoint()?;
        if job.run(&savepoint) {
            savepoint.commit()?;
        } else {
            // Rolls back to the savepoint, then releases it.
            savepoint.finish()?;
        }
    }
    tx.commit()
}

/// Begins the batch transaction. IMMEDIATE takes the write lock up front, so a second process on
/// the same file (an operator's CLI) makes us wait for `busy_timeout` instead of failing half way
/// through the batch.
fn begin(conn: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, mpsc};

    use anyhow::bail;
    use rusqlite::Connection;

    use super::Writer;

    /// Counts how often a job ran.
    fn counter() -> Arc<AtomicUsize> {
        Arc::new(AtomicUsize::new(0))
    }

    fn insert(value: i64, runs: &Arc<AtomicUsize>) -> impl FnMut(&Connection) -> anyhow::Result<()> + Send + 'static {
        let runs = Arc::clone(runs);
        move |conn| {
            runs.fetch_add(1, Ordering::SeqCst);
            conn.execute("INSERT INTO t (x) VALUES (?1)", [value])?;
            Ok(())
        }
    }

    /// A writer on a real database file with one table, and the directory that holds it.
    fn writer() -> (Arc<Writer>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("q.db")).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER NOT NULL);")
            .unwrap();
        (Arc::new(Writer::start(conn).unwrap()), dir)
    }

    /// Holds the writer thread inside a job until the returned sender sends or is dropped, so that
    /// the jobs sent meanwhile are committed as one batch.
    async fn hold(writer: &Arc<Writer>) -> mpsc::Sender<()> {
        let (entered, inside) = mpsc::channel();
        let (release, gate) = mpsc::channel::<()>();
        let held = Arc::clone(writer);
        tokio::spawn(async move {
            held.call(move |_| {
                let _ = entered.send(());
                let _ = gate.recv();
                Ok(())
            })
            .await
        });
        tokio::task::spawn_blocking(move || inside.recv().unwrap())
            .await
            .unwrap();
        release
    }

    fn rows(dir: &tempfile::TempDir) -> Vec<i64> {
        let conn = Connection::open(dir.path().join("q.db")).unwrap();
        let mut select = conn.prepare("SELECT x FROM t ORDER BY x").unwrap();
        select
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_without_failures_runs_each_job_once() {
        let (writer, dir) = writer();
        let release = hold(&writer).await;
        let (first, second) = (counter(), counter());
        let (a, b, ()) = tokio::join!(writer.call(insert(1, &first)), writer.call(insert(2, &second)), async {
            drop(release)
        });
        a.unwrap();
        b.unwrap();
        assert_eq!((first.load(Ordering::SeqCst), second.load(Ordering::SeqCst)), (1, 1));
        assert_eq!(rows(&dir), [1, 2]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_job_leaves_no_trace_and_the_rest_of_its_batch_commits() {
        let (writer, dir) = writer();
        let release = hold(&writer).await;
        let (before, failing, after) = (counter(), counter(), counter());
        let mut half_done = insert(2, &failing);
        let fails = move |conn: &Connection| -> anyhow::Result<()> {
            half_done(conn)?;
            bail!("job 2 failed after its insert")
        };
        let (a, b, c, ()) = tokio::join!(
            writer.call(insert(1, &before)),
            writer.call(fails),
            writer.call(insert(3, &after)),
            async { drop(release) }
        );
        a.unwrap();
        let error = b.unwrap_err().to_string();
        assert!(error.contains("job 2 failed after its insert"), "{error}");
        c.unwrap();
        assert_eq!(
            rows(&dir),
            [1, 3],
            "the failed job's insert is undone, the others' kept"
        );
        // Run once straight, then again each under its own savepoint; the job after the
        // failure ran only the second time.
        let runs = [&before, &failing, &after].map(|runs| runs.load(Ordering::SeqCst));
        assert_eq!(runs, [2, 2, 1]);
    }
}
