//! AMQP links shared across tasks: each fe2o3 link is owned by one task that takes commands over a
//! channel and answers on a oneshot, so many callers settle, send and renew at once over one link
//! without waiting on each other's round trips.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow, bail};
use fe2o3_amqp::link::delivery::DeliveryInfo;
use fe2o3_amqp::link::receiver::{CreditMode, TerminalDeliveryState};
use fe2o3_amqp::link::{Receiver, ReceiverAttachError, Sender};
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::transaction::{TransactionBase, TransactionPosting, TransactionRetirement};
use fe2o3_amqp::types::definitions::{self, ErrorCondition, ReceiverSettleMode, SenderSettleMode};
use fe2o3_amqp::types::messaging::{
    Accepted, AmqpValue, ApplicationProperties, Body, Data, FilterSet, Message, MessageId, Modified, Outcome,
    Properties, Rejected, Source,
};
use fe2o3_amqp::types::primitives::{OrderedMap, SimpleValue, Symbol, Value};
use fe2o3_amqp::types::transaction::TransactionId;
use futures::FutureExt as _;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::codec;
use super::dialect::{
    self, DEAD_LETTER_CONDITION, DEAD_LETTER_DESCRIPTION, DEAD_LETTER_REASON, OPERATION_TIMEOUT,
    SESSION_CANNOT_BE_LOCKED_CONDITION, SESSION_FILTER, SESSION_LOCK_LOST_CONDITION, SESSION_LOCKED_UNTIL,
    TIMEOUT_CONDITION, TRANSFER_DESTINATION,
};
use crate::{ReceivedMessage, Settlement, TransportError};

mod receiver;
mod request;
mod sender;

pub use receiver::ReceiverLink;
pub use request::RequestLink;
pub use sender::SenderLink;

type Reply<T> = oneshot::Sender<Result<T, TransportError>>;

/// Whether an AMQP error names a missing entity.
fn is_not_found(text: &str) -> bool {
    text.contains("not-found") || text.contains("NotFound")
}

/// An attach failure, saying `amqp:not-found` when the broker said the entity does not exist
/// (fe2o3's `Display` leaves the remote's error condition out; its `Debug` has it).
fn attach_error(what: &str, address: &str, error: &(impl std::fmt::Display + std::fmt::Debug)) -> anyhow::Error {
    if is_not_found(&format!("{error:?}")) {
        anyhow!("attaching {what} to `{address}`: amqp:not-found ({error})")
    } else {
        anyhow!("attaching {what} to `{address}`: {error}")
    }
}

/// Logs why a link stopped: at `warn`, unless its session or connection had stopped first (the
/// transport closing, or a lost connection, which the reconnect reports), then at `debug`.
fn link_failed(kind: &str, entity: &str, error: &str) {
    if error.contains("SessionStopped") || error.contains("ConnectionStopped") {
        tracing::debug!(entity, "{kind} link stopped with its session: {error}");
    } else {
        tracing::warn!(entity, "{kind} link failed: {error}");
    }
}

/// A transaction known by its id only, so that the link tasks can post and retire in it while the
/// caller that declared it keeps the [`fe2o3_amqp::transaction::Transaction`] to discharge it.
struct TransactionRef(TransactionId);

impl TransactionBase for TransactionRef {
    fn txn_id(&self) -> &TransactionId {
        &self.0
    }
}

impl TransactionPosting for TransactionRef {}

impl TransactionRetirement for TransactionRef {
    type RetireError = fe2o3_amqp::link::DispositionError;
}

/// Spawns the task that owns a link; the token is cancelled once that task has stopped (its
/// link detached or failed, or its session stopped, which fails every link at once).
fn spawn_link_task(task: impl Future<Output = ()> + Send + 'static) -> CancellationToken {
    let stopped = CancellationToken::new();
    let on_stop = stopped.clone();
    tokio::spawn(async move {
        task.await;
        on_stop.cancel();
    });
    stopped
}

/// A link the connection keeps in a map and replaces once it has died.
pub trait Link {
    /// Cancelled once the link's task has stopped.
    fn stopped(&self) -> &CancellationToken;

    /// Whether the link is detached or its task has stopped.
    fn is_dead(&self) -> bool {
        self.stopped().is_cancelled()
    }
}
