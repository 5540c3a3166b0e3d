//! The transaction controllers of one connection: a few `$coordinator` links, each lent to one
//! transaction at a time.
//!
//! fe2o3-amqp's [`Controller`] holds its link for the whole round trip of a declare or a
//! discharge. With one link per connection, every transactional settle of the host waited for
//! the one before it, two round trips each, whatever the partners' concurrency. With a link per
//! transaction in flight (up to [`MAX_CONTROLLERS`]), concurrent settles overlap and the broker
//! commits them together. AMQP lets a session hold several coordinator links.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use fe2o3_amqp::transaction::Controller;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::super::TransportError;

/// Coordinator links one connection may hold; transactions beyond this many wait for a link.
pub(super) const MAX_CONTROLLERS: usize = 16;

/// The idle controllers of a connection and the slots that bound how many exist.
pub(super) struct ControllerPool {
    idle: Mutex<Vec<Controller>>,
    slots: Semaphore,
}

impl Default for ControllerPool {
    fn default() -> Self {
        Self {
            idle: Mutex::default(),
            slots: Semaphore::new(MAX_CONTROLLERS),
        }
    }
}

impl ControllerPool {
    /// Lends an idle controller, or one `attach` makes when none is idle and a slot is free.
    pub(super) async fn lease<F, A>(&self, attach: F) -> Result<Lease<'_>, TransportError>
    where
        F: FnOnce() -> A,
        A: Future<Output = Result<Controller, TransportError>>,
    {
        let slot = self.slots.acquire().await.expect("the slots are never closed");
        let idle = self.idle.lock().expect("not poisoned").pop();
        let controller = match idle {
            Some(controller) => controller,
            None => attach().await?,
        };
        Ok(Lease {
            controller: Some(controller),
            discarded: AtomicBool::new(false),
            pool: self,
            _slot: slot,
        })
    }

    /// Drops every idle controller (the connection is closing).
    pub(super) fn clear(&self) {
        self.idle.lock().expect("not poisoned").clear();
    }
}

/// A controller lent to one transaction; it goes back to the pool when dropped.
pub(super) struct Lease<'a> {
    controller: Option<Controller>,
    /// Set when the controller must not go back (its transaction still borrows it then).
    discarded: AtomicBool,
    pool: &'a ControllerPool,
    _slot: SemaphorePermit<'a>,
}

impl Lease<'_> {
    /// The lent controller.
    pub(super) fn controller(&self) -> &Controller {
        self.controller.as_ref().expect("held until dropped or discarded")
    }

    /// Drops the controller instead of giving it back when the lease ends: its link may be
    /// gone, and the next transaction attaches a fresh one in its slot.
    pub(super) fn discard(&self) {
        self.discarded.store(true, Ordering::Relaxed);
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(controller) = self.controller.take()
            && !self.discarded.load(Ordering::Relaxed)
        {
            self.pool.idle.lock().expect("not poisoned").push(controller);
        }
    }
}
