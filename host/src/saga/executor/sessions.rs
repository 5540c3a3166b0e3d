//! The consumer of a `per-record` partner's session-enabled queue, and retries that wait in place.
//!
//! Each of the partner's `concurrency` workers accepts one session at a time (the next one with a
//! message no one holds, on this host or a competing one) and handles its messages one by one,
//! each settled before the next is received, so one record's messages reach the partner in the
//! order they were sent while other records go on in the other workers. A worker gives its session
//! up once it has had nothing for [`SESSION_IDLE`].
//!
//! A retry cannot go back on the queue the way it does for other partners: a scheduled copy would
//! come after the record's later messages. So the worker waits out the retry's delay holding the
//! message (its lock, and with it the session's, renewed meanwhile) and runs the step again with
//! the next attempt's saga state. If the host dies meanwhile, the lock runs out and the message
//! comes back first in its session, to whichever host takes the session next.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sagahost_transport::ReceivedMessage;
use sagahost_transport::sessions::{SessionLock, Sessions};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Executor, Partner, Processed, RECEIVE_WAIT, TRANSPORT_BACKOFF};
use crate::saga::routing::Verdict;

/// How long a worker waits for a session's next message before giving the session up: long
/// enough to keep a burst of one record's messages on one worker, short enough that a worker is
/// soon free for other records.
const SESSION_IDLE: Duration = Duration::from_millis(250);

impl<T: Sessions> Executor<T> {
    /// Consumes the session-enabled `queue` with the partner's `concurrency` workers until
    /// `shutdown`, then lets each finish the message in hand.
    pub(super) async fn consume_sessions(
        self: Arc<Self>,
        partner: Arc<Partner>,
        queue: String,
        shutdown: CancellationToken,
    ) {
        let mut workers = JoinSet::new();
        for _ in 0..partner.config.concurrency {
            let (this, partner, queue, shutdown) = (self.clone(), partner.clone(), queue.clone(), shutdown.clone());
            workers.spawn(async move { this.work_sessions(&partner, &queue, &shutdown).await });
        }
        while workers.join_next().await.is_some() {}
    }

    /// One worker: accepts sessions one after another and works each through.
    async fn work_sessions(&self, partner: &Partner, queue: &str, shutdown: &CancellationToken) {
        loop {
            let accepted = tokio::select! {
                accepted = self.transport.accept_session(queue, None, RECEIVE_WAIT) => accepted,
                () = shutdown.cancelled() => return,
            };
            let session = match accepted {
                Ok(Some(session)) => session,
                Ok(None) => continue,
                Err(err) => {
                    tracing::warn!(partner = %partner.name, %queue, "accepting a session failed, retrying in {TRANSPORT_BACKOFF:?}: {err}");
                    tokio::time::sleep(TRANSPORT_BACKOFF).await;
                    continue;
                }
            };
            self.work_session(partner, &session, shutdown).await;
            // A session whose lock is gone already needs no release.
            if let Err(err) = self.transport.release_session(&session).await {
                tracing::debug!(partner = %partner.name, session = %session.session_id, "releasing the session: {err}");
            }
        }
    }

    /// Handles the session's messages one at a time until it has none for [`SESSION_IDLE`], its
    /// lock is gone, or the host shuts down.
    async fn work_session(&self, partner: &Partner, session: &SessionLock, shutdown: &CancellationToken) {
        loop {
            let received = tokio::select! {
                received = self.transport.receive_in_session(session, 1, SESSION_IDLE) => received,
                () = shutdown.cancelled() => return,
            };
            match received.map(|mut batch| batch.pop()) {
                Ok(Some(message)) => self.handle(partner, message, false, shutdown).await,
                Ok(None) => return,
                Err(err) => {
                    tracing::warn!(partner = %partner.name, session = %session.session_id, "receiving in the session failed; giving it up: {err}");
                    return;
                }
            }
        }
    }

    /// Processes `message`, retrying in place while the step asks for a retry: waits the retry's
    /// delay, then processes it again under the saga state the retry would have carried. Each
    /// retry is reported as it happens. `None` when shutdown came during a wait: the message is
    /// left unsettled, for the session's next holder.
    pub(super) async fn process_in_order(
        &self,
        partner: &Partner,
        message: &ReceivedMessage,
        compensation: bool,
        started: Instant,
        shutdown: &CancellationToken,
    ) -> Option<Processed> {
        let mut processed = self.process(partner, message, compensation).await;
        let mut next_try: Option<ReceivedMessage> = None;
        loop {
            let Verdict::Retried { delay, .. } = processed.routed.verdict else {
                return Some(processed);
            };
            // A retry is the one resend of this message to its own queue (routing's `retry`).
            let [retry] = processed.routed.outputs.as_slice() else {
                return Some(processed);
            };
            let properties = retry.message.properties.clone();
            self.report(
                partner,
                message,
                processed.split(compensation, started).1,
                Duration::ZERO,
            );
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return None,
            }
            let input = next_try.get_or_insert_with(|| message.clone());
            input.properties = properties;
            processed = self.process(partner, input, compensation).await;
        }
    }
}
