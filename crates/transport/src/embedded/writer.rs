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
    /// Runs the work against the open transaction. Returns whether it succeeded, so that the
    /// writer keeps its changes (release its savepoint) or undoes only them (roll back to it).
    fn run(&mut self, conn: &Connection) -> bool;

    /// Replies to the caller: with the job's own result if the batch committed, else with why it did not.
    fn reply(self: Box<Self>, commit_error: Option<&str>);
}

/// One caller's closure, its result while the batch is in flight, and where to send that result.
struct Call<T, F> {
    work: Option<F>,
    result: Option<anyhow::Result<T>>,
    reply: oneshot::Sender<Result<T, TransportError>>,
}

impl<T, F> Job for Call<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> anyhow::Result<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = self
            .work
            .take()
            .map_or_else(|| Err(anyhow!("queue job ran twice")), |work| work(conn));
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
    /// that commit is durable. `work` runs under its own savepoint: if it fails, only its own
    /// changes are undone.
    pub(super) async fn call<T, F>(&self, work: F) -> Result<T, TransportError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    {
        let stopped = || TransportError::Other(anyhow!("the embedded queue writer thread has stopped"));
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Call {
            work: Some(work),
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

/// Runs every job of the batch in one transaction, each under its own savepoint, and commits once.
/// With `synchronous=FULL` in WAL mode the commit is one fsync of the WAL, shared by the batch.
fn run_batch(conn: &mut Connection, batch: &mut [Box<dyn Job>]) -> rusqlite::Result<()> {
    // IMMEDIATE takes the write lock up front, so a second process on the same file (an operator's
    // CLI) makes us wait for `busy_timeout` instead of failing half way through the batch.
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
