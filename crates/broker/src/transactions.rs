//! The broker's `$coordinator`: AMQP 1.0 local transactions (part 4), as Service Bus offers them
//! for settle-and-send.
//!
//! A client declares a transaction on a coordinator link and gets a transaction id. Transfers it
//! posts with a `transactional-state` naming that id are decoded and held here, not stored;
//! dispositions it sends with a `transactional-state` are held here too, with the message's lock
//! kept. Discharging with `fail = false` applies everything held in one embedded-queue commit
//! ([`EmbeddedQueue::commit`]): every settlement and every send happen, or none does (a lock that
//! was lost fails the whole discharge with `amqp:transaction:rollback`). Discharging with
//! `fail = true`, or closing the connection first, drops the work: posted messages are never
//! stored and retired messages stay locked until their lock expires, as in Service Bus.
//!
//! Transactions belong to the connection that declared them, and a transaction's work may come
//! from any link of that connection (Service Bus's send-via links included).
//!
//! A transaction's work is held in memory until its discharge, so a client cannot keep more
//! than [`MAX_LIVE_TRANSACTIONS`] open on a connection, and one transaction takes at most
//! [`MAX_TRANSACTION_MESSAGES`] messages, sent and settled together (Service Bus's limit). A
//! transfer past that is refused, and the transaction can then only roll back: committing it
//! would apply part of what the client asked for.

use std::collections::HashMap;

use fe2o3_amqp_types::definitions::{AmqpError, Error as AmqpErrorInfo, ErrorCondition};
use fe2o3_amqp_types::messaging::{DeliveryState, Outcome, Rejected};
use fe2o3_amqp_types::primitives::{Binary, Symbol, Value};
use fe2o3_amqp_types::transaction::TransactionError;
use sagahost_transport::embedded::{EmbeddedQueue, TransactionWork};
use sagahost_transport::{Output, ReceivedMessage, Settlement};

use sagahost_transport::servicebus::dialect::{
    DEAD_LETTER_CONDITION, DEAD_LETTER_DESCRIPTION, DEAD_LETTER_REASON, MAX_TRANSACTION_MESSAGES, TRANSFER_DESTINATION,
    value_text,
};

/// `DeadLetterReason` / `DeadLetterErrorDescription` from a rejection's error info.
fn info_text(info: Option<&fe2o3_amqp_types::definitions::Fields>, name: &str) -> Option<String> {
    info?.iter().find_map(|(key, value)| match value {
        Value::String(text) if key.as_str() == name => Some(text.clone()),
        _ => None,
    })
}

/// The rest of a rejection's error info: the application properties the client asks to set on
/// the dead-lettered message (the SDKs' properties-to-modify), as text.
fn info_properties(info: Option<&fe2o3_amqp_types::definitions::Fields>) -> Vec<(String, String)> {
    info.into_iter()
        .flat_map(|fields| fields.iter())
        .filter(|(key, _)| key.as_str() != DEAD_LETTER_REASON && key.as_str() != DEAD_LETTER_DESCRIPTION)
        .filter_map(|(key, value)| Some((key.as_str().to_owned(), value_text(value)?)))
        .collect()
}

/// What a client's outcome does to a peek-locked message: a settlement, or `None` for giving the
/// lock back without counting the delivery (`released`, which the Python SDK sends for prefetched
/// messages it never handed out). Every `modified` is an abandon that counts, as Service Bus
/// treats it: the JavaScript and .NET SDKs abandon without setting `delivery-failed`.
pub fn settlement_of(state: &DeliveryState) -> Option<Settlement> {
    match state {
        DeliveryState::Accepted(_) => Some(Settlement::Complete),
        DeliveryState::Modified(_) => Some(Settlement::Abandon),
        DeliveryState::Rejected(Rejected { error }) => {
            let info = error.as_ref().and_then(|error| error.info.as_deref());
            let condition = error.as_ref().map(|error| match &error.condition {
                ErrorCondition::Custom(symbol) => symbol.as_str().to_owned(),
                other => format!("{other:?}"),
            });
            let reason = info_text(info, DEAD_LETTER_REASON)
                .or_else(|| condition.filter(|condition| condition != DEAD_LETTER_CONDITION))
                .unwrap_or_default();
            let description = info_text(info, DEAD_LETTER_DESCRIPTION)
                .or_else(|| error.as_ref().and_then(|error| error.description.clone()))
                .unwrap_or_default();
            Some(Settlement::DeadLetter {
                reason,
                description,
                properties: info_properties(info),
            })
        }
        _ => None,
    }
}

/// A delivery retired inside a transaction: where it came from, so that a rollback can hand it
/// back to its session and a commit can confirm it.
pub struct Retired {
    pub channel: u16,
    pub delivery_id: u32,
    pub message: ReceivedMessage,
    pub outcome: DeliveryState,
    /// Whether the client waits for the broker to settle (receiver settle mode `second`).
    pub confirm: bool,
}

/// Transactions one connection may have declared and not yet discharged.
pub const MAX_LIVE_TRANSACTIONS: usize = 1024;

#[derive(Default)]
struct Work {
    outputs: Vec<Output>,
    retired: Vec<Retired>,
    /// Why the transaction can no longer commit (it went over [`MAX_TRANSACTION_MESSAGES`]).
    doomed: Option<String>,
}

impl Work {
    /// Counts `more` operations in; past the limit the transaction is doomed and this says why.
    fn admit(&mut self, more: usize) -> Result<(), String> {
        let total = self.outputs.len() + self.retired.len() + more;
        if total > MAX_TRANSACTION_MESSAGES {
            let why = format!(
                "a transaction takes at most {MAX_TRANSACTION_MESSAGES} messages, sent and settled together; \
                 this one was given {total}: split the work into several transactions"
            );
            self.doomed.get_or_insert_with(|| why.clone());
            return Err(why);
        }
        Ok(())
    }
}

/// What discharging a transaction comes to.
pub enum Discharged {
    /// Rolled back as asked: what it retired is to be locked and unsettled again.
    RolledBack(Vec<Retired>),
    /// A commit the transaction cannot make (it went over a limit): rolled back instead, with
    /// the error the client's discharge is rejected with.
    Refused(Vec<Retired>, AmqpErrorInfo),
    /// The work to apply in one commit, and the deliveries it settles.
    Commit(Vec<Retired>, TransactionWork),
}

/// The transactions live on one connection.
#[derive(Default)]
pub struct Transactions {
    live: HashMap<Vec<u8>, Work>,
}

/// The error a transfer or disposition naming an unknown transaction gets.
pub fn unknown_id(id: &[u8]) -> AmqpErrorInfo {
    AmqpErrorInfo {
        condition: ErrorCondition::TransactionError(TransactionError::UnknownId),
        description: Some(format!("no live transaction has the id {}", hex(id))),
        info: None,
    }
}

fn hex(id: &[u8]) -> String {
    id.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl Transactions {
    /// Starts a transaction; returns its id, or the error when the connection has
    /// [`MAX_LIVE_TRANSACTIONS`] live already.
    pub fn declare(&mut self) -> Result<Binary, AmqpErrorInfo> {
        if self.live.len() >= MAX_LIVE_TRANSACTIONS {
            return Err(AmqpErrorInfo {
                condition: ErrorCondition::AmqpError(AmqpError::ResourceLimitExceeded),
                description: Some(format!(
                    "a connection may have at most {MAX_LIVE_TRANSACTIONS} transactions declared and not yet \
                     discharged: commit or roll back some first"
                )),
                info: None,
            });
        }
        let id = uuid::Uuid::new_v4().as_bytes().to_vec();
        self.live.insert(id.clone(), Work::default());
        Ok(Binary::from(id))
    }

    /// Holds messages posted in transaction `id` until it is discharged.
    pub fn post(&mut self, id: &[u8], outputs: Vec<Output>) -> Result<(), AmqpErrorInfo> {
        let work = self.live.get_mut(id).ok_or_else(|| unknown_id(id))?;
        work.admit(outputs.len()).map_err(|why| AmqpErrorInfo {
            condition: ErrorCondition::AmqpError(AmqpError::ResourceLimitExceeded),
            description: Some(why),
            info: None,
        })?;
        work.outputs.extend(outputs);
        Ok(())
    }

    /// Holds a settlement made in transaction `id` until it is discharged. When no transaction has
    /// that id, the delivery is handed back. One past the limit is held too, for a rollback to
    /// hand back, but the transaction can no longer commit.
    pub fn retire(&mut self, id: &[u8], retired: Retired) -> Option<Retired> {
        match self.live.get_mut(id) {
            Some(work) => {
                let _ = work.admit(1);
                work.retired.push(retired);
                None
            }
            None => Some(retired),
        }
    }

    /// Ends transaction `id`, or `None` if no such transaction is live.
    pub fn discharge(&mut self, id: &[u8], fail: bool) -> Option<Discharged> {
        let work = self.live.remove(id)?;
        if fail {
            return Some(Discharged::RolledBack(work.retired));
        }
        if let Some(why) = work.doomed {
            let error = AmqpErrorInfo {
                condition: ErrorCondition::TransactionError(TransactionError::Rollback),
                description: Some(format!("the transaction was rolled back: {why}")),
                info: None,
            };
            return Some(Discharged::Refused(work.retired, error));
        }
        let mut commit = TransactionWork {
            outputs: work.outputs,
            ..TransactionWork::default()
        };
        for retired in &work.retired {
            match settlement_of(&retired.outcome) {
                Some(settlement) => commit.settled.push((retired.message.clone(), settlement)),
                None => commit.released.push(retired.message.clone()),
            }
        }
        Some(Discharged::Commit(work.retired, commit))
    }
}

/// Applies a discharged transaction; the error is what the client's discharge is rejected with.
pub async fn commit(queue: &EmbeddedQueue, work: TransactionWork) -> Result<(), AmqpErrorInfo> {
    queue.commit(work).await.map_err(|error| AmqpErrorInfo {
        condition: ErrorCondition::TransactionError(TransactionError::Rollback),
        description: Some(format!("the transaction was rolled back: {error}")),
        info: None,
    })
}

/// The `transactional-state` a posted transfer is answered with: accepted if the transaction
/// holds it, else rejected with the reason.
pub fn posted(id: Binary, held: Result<(), AmqpErrorInfo>) -> DeliveryState {
    let outcome = match held {
        Ok(()) => Outcome::Accepted(fe2o3_amqp_types::messaging::Accepted {}),
        Err(error) => Outcome::Rejected(Rejected { error: Some(error) }),
    };
    DeliveryState::TransactionalState(fe2o3_amqp_types::transaction::TransactionalState {
        txn_id: id,
        outcome: Some(outcome),
    })
}

/// The destination named by a send-via attach, if any.
pub fn transfer_destination(properties: Option<&fe2o3_amqp_types::definitions::Fields>) -> Option<String> {
    properties?.iter().find_map(|(key, value)| match value {
        Value::String(text) if *key == Symbol::from(TRANSFER_DESTINATION) => Some(text.clone()),
        _ => None,
    })
}
