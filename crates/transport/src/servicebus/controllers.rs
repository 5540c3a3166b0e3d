//! Transactions declared ahead of need, on a few `$coordinator` links per connection.
//!
//! A transactional settle takes three round trips: the declare, the transfers with their
//! outcomes, and the discharge with the broker's commit. The declare needs nothing from the
//! message, so each coordinator link declares its next transaction as soon as its last one is
//! discharged, and a settle takes one that is ready: one round trip less on its path.
//!
//! fe2o3-amqp's [`Transaction`] borrows its [`Controller`], so no struct can hold both: a task
//! owns each controller with its transaction, and a settle drives it through a [`Declared`]
//! handle. A controller also holds its link for the whole round trip of a declare or a
//! discharge, so one link would serialise every settle: there is a link per transaction in
//! flight, up to [`MAX_CONTROLLERS`] (AMQP lets a session hold several), and concurrent settles
//! reach the broker together.
//!
//! Service Bus times a transaction out 2 minutes after it starts. A transaction declared more
//! than [`FRESH_FOR`] ago is not used, in case that clock started at the declare: dropping it
//! rolls it back and its link declares another.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use fe2o3_amqp::transaction::{Controller, ControllerSendError, Transaction, TransactionBase, TransactionDischarge};
use fe2o3_amqp::types::transaction::TransactionId;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::super::TransportError;

/// Coordinator links one connection may hold; transactions beyond this many wait for a link.
pub(super) const MAX_CONTROLLERS: usize = 16;

/// How long a declared transaction may wait for a settle before it is replaced.
const FRESH_FOR: Duration = Duration::from_secs(60);

/// The coordinator links of one connection and the transactions they have ready.
pub(super) struct ControllerPool {
    shared: Arc<Shared>,
    /// Offers from the links, taken by one settle at a time.
    ready: Mutex<mpsc::UnboundedReceiver<Offer>>,
    /// Settles waiting for a transaction (the one taking offers included).
    waiting: Arc<AtomicUsize>,
}

/// What the pool and its links' tasks share.
struct Shared {
    offers: mpsc::UnboundedSender<Offer>,
    /// A slot per link that may exist.
    slots: Arc<Semaphore>,
    /// Links about to offer a transaction (declaring or discharging one): settles that find
    /// none ready wait for them, and attach another link only when they outnumber them.
    declaring: Arc<AtomicUsize>,
    /// Cancelled when the connection closes: the links' tasks end.
    stop: CancellationToken,
}

/// A link's declared transaction, or why it could not declare one (the link is gone then).
struct Offer {
    at: Instant,
    declared: Result<Declared, String>,
}

/// A declared transaction, ready for a settle's work. Dropping it unused rolls it back.
pub(super) struct Declared {
    id: TransactionId,
    orders: oneshot::Sender<Discharge>,
}

/// A settle's order to discharge its transaction, and where the answer goes.
struct Discharge {
    fail: bool,
    answer: oneshot::Sender<Result<(), ControllerSendError>>,
}

/// Why a transaction's discharge failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum DischargeError {
    /// The coordinator refused or failed the discharge (a lost lock rolls the transaction back).
    #[error("{0}")]
    Coordinator(ControllerSendError),
    /// The link's task ended before answering: the connection is closing.
    #[error("the transaction's coordinator link closed before the discharge was answered")]
    LinkGone,
}

impl Default for ControllerPool {
    fn default() -> Self {
        let (offers, ready) = mpsc::unbounded_channel();
        Self {
            shared: Arc::new(Shared {
                offers,
                slots: Arc::new(Semaphore::new(MAX_CONTROLLERS)),
                declaring: Arc::default(),
                stop: CancellationToken::new(),
            }),
            ready: Mutex::new(ready),
            waiting: Arc::default(),
        }
    }
}

impl ControllerPool {
    /// A declared transaction: one a link has ready, or the next one offered. When fewer links
    /// are about to offer one than settles wait and a slot is free, `attach` makes a new link.
    pub(super) async fn declared<F, A>(&self, attach: F) -> Result<Declared, TransportError>
    where
        F: Fn() -> A,
        A: Future<Output = Result<Controller, TransportError>>,
    {
        let _waiting = Counted::new(&self.waiting);
        let mut ready = self.ready.lock().await;
        // Set once a stale transaction is dropped: its link declares a fresh one, so no other
        // link is needed for it.
        let mut replaced = false;
        loop {
            let offer = match ready.try_recv() {
                Ok(offer) => offer,
                Err(_) => {
                    let coming = self.shared.declaring.load(Ordering::Acquire);
                    if !replaced
                        && coming < self.waiting.load(Ordering::Acquire)
                        && let Ok(slot) = self.shared.slots.clone().try_acquire_owned()
                    {
                        self.spawn_link(attach().await?, slot);
                    }
                    ready
                        .recv()
                        .await
                        .ok_or_else(|| anyhow!("the connection's transaction links are closed"))?
                }
            };
            if offer.at.elapsed() >= FRESH_FOR {
                // A failed declare's link is gone; a transaction's link declares another.
                replaced |= offer.declared.is_ok();
                continue;
            }
            return offer
                .declared
                .map_err(|e| anyhow!("declaring a transaction: {e}").into());
        }
    }

    /// Ends every link's task (the connection is closing).
    pub(super) fn close(&self) {
        self.shared.stop.cancel();
    }

    /// Starts the task that owns `controller` for as long as its link works.
    fn spawn_link(&self, controller: Controller, slot: OwnedSemaphorePermit) {
        let declaring = Counted::new(&self.shared.declaring);
        tokio::spawn(serve(controller, self.shared.clone(), declaring, slot));
    }
}

impl Drop for ControllerPool {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

impl Declared {
    /// The transaction's id, for the work done in it.
    pub(super) fn id(&self) -> &TransactionId {
        &self.id
    }

    /// Commits the transaction's work, all of it or none.
    pub(super) async fn commit(self) -> Result<(), DischargeError> {
        self.discharge(false).await
    }

    /// Drops the transaction's work.
    pub(super) async fn rollback(self) -> Result<(), DischargeError> {
        self.discharge(true).await
    }

    async fn discharge(self, fail: bool) -> Result<(), DischargeError> {
        let (answer, answered) = oneshot::channel();
        self.orders
            .send(Discharge { fail, answer })
            .map_err(|_| DischargeError::LinkGone)?;
        answered
            .await
            .map_err(|_| DischargeError::LinkGone)?
            .map_err(DischargeError::Coordinator)
    }
}

/// One in a count, for as long as it lives.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One link's life: declare a transaction, offer it, discharge it as its settle orders (or roll
/// it back when dropped unused), and again, until a declare or a discharge fails or the
/// connection closes. The link's slot is freed when it ends.
async fn serve(controller: Controller, shared: Arc<Shared>, mut declaring: Counted, _slot: OwnedSemaphorePermit) {
    loop {
        let declared = tokio::select! {
            declared = Transaction::declare(&controller, None) => declared,
            () = shared.stop.cancelled() => return,
        };
        let mut transaction = match declared {
            Ok(transaction) => transaction,
            Err(e) => {
                let _ = shared.offers.send(Offer {
                    at: Instant::now(),
                    declared: Err(e.to_string()),
                });
                return;
            }
        };
        // Dropped undischarged (a refused discharge, or the connection closing), fe2o3 sends a
        // rollback and waits for its answer with `std::thread::sleep`, up to 2 s by default: do
        // not wait. That rollback's answer can reach this link's next declare (it appears to reuse
        // a delivery tag), so the link is given up after such a drop (below).
        transaction.set_rollback_on_drop_trials(0);
        let (orders, ordered) = oneshot::channel();
        let declared = Declared {
            id: transaction.txn_id().clone(),
            orders,
        };
        let _ = shared.offers.send(Offer {
            at: Instant::now(),
            declared: Ok(declared),
        });
        drop(declaring);
        let order = tokio::select! {
            order = ordered => order.ok(),
            () = shared.stop.cancelled() => return,
        };
        declaring = Counted::new(&shared.declaring);
        let (fail, answer) = match order {
            Some(Discharge { fail, answer }) => (fail, Some(answer)),
            None => (true, None),
        };
        let discharged = tokio::select! {
            discharged = transaction.discharge(fail) => discharged,
            () = shared.stop.cancelled() => return,
        };
        let refused = discharged.is_err();
        if let Some(answer) = answer {
            let _ = answer.send(discharged);
        }
        if refused {
            // The transaction is dropped undischarged: a fresh link serves the next settle.
            return;
        }
    }
}
