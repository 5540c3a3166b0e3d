//! What the host did recently, kept for operators: each partner's rates over the last
//! minutes ([`Rates`]) and an index of recent sagas ([`SagaIndex`]).
//!
//! Data flows one way: the executor publishes a [`SagaEvent`] for every settled message,
//! [`feed`] records each into both, and the admin API (the console) reads them. Nothing here
//! is on the message path: a slow index only makes the feed fall behind, and the steps it
//! misses are logged, never waited for.

mod rates;
mod sagas;

use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use rates::{BUCKET, BUCKETS, Bucket, Rates, Window};
pub use sagas::{IndexedSaga, IndexedStep, Keep, SagaIndex, SagaQuery};

use crate::saga::SagaEvent;

/// Most events written to the index in one transaction.
const BATCH: usize = 512;

/// Records every event from `events` into `rates` and `index` until `shutdown`.
pub fn feed(
    mut events: broadcast::Receiver<SagaEvent>,
    rates: Arc<Rates>,
    index: Arc<SagaIndex>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    use broadcast::error::{RecvError, TryRecvError};
    let missed = |count: u64| {
        tracing::warn!(
            missed = count,
            "the saga index fell behind and missed steps; the console will not list them"
        );
    };
    tokio::spawn(async move {
        loop {
            let first = tokio::select! {
                event = events.recv() => event,
                () = shutdown.cancelled() => return,
            };
            let mut batch = match first {
                Ok(event) => vec![event],
                Err(RecvError::Lagged(count)) => {
                    missed(count);
                    continue;
                }
                // The executor is gone: nothing more will come.
                Err(RecvError::Closed) => return,
            };
            while batch.len() < BATCH {
                match events.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(TryRecvError::Lagged(count)) => missed(count),
                    Err(_) => break,
                }
            }
            for event in &batch {
                rates.record(event);
            }
            let index = index.clone();
            let written = tokio::task::spawn_blocking(move || index.record(&batch)).await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::warn!("the saga index could not record steps: {err:#}"),
                Err(err) => tracing::warn!("the saga index writer stopped: {err}"),
            }
        }
    })
}

#[cfg(test)]
mod tests;
