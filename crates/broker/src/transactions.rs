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

use std::collections::HashMap;

use fe2o3_amqp_types::definitions::{Error as AmqpErrorInfo, ErrorCondition};
use fe2o3_amqp_types::messaging::{DeliveryState, Rejected};
use fe2o3_amqp_types::primitives::{Binary, Symbol, Value};
use fe2o3_amqp_types::transaction::TransactionError;
use sagahost_transport::embedded::{EmbeddedQueue, TransactionWork};
use sagahost_transport::{Output, ReceivedMessage, Settlement};

use sagahost_transport::servicebus::dialect::{
    DEAD_LETTER_CONDITION, DEAD_LETTER_DESCRIPTION, DEAD_LETTER_REASON, TRANSFER_DESTINATION, value_text,
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

#[derive(Default)]
struct Work {
    outputs: Vec<Output>,
    retired: Vec<Retired>,
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
    /// Starts a transaction; returns its id.
    pub fn declare(&mut self) -> Binary {
        let id = uuid::Uuid::new_v4().as_bytes().to_vec();
        self.live.insert(id.clone(), Work::default());
        Binary::from(id)
    }

    /// Holds messages posted in transaction `id` until it is discharged.
    pub fn post(&mut self, id: &[u8], outputs: Vec<Output>) -> Result<(), AmqpErrorInfo> {
        let work = self.live.get_mut(id).ok_or_else(|| unknown_id(id))?;
        work.outputs.extend(outputs);
        Ok(())
    }

    /// Holds a settlement made in transaction `id` until it is discharged. When no transaction has
    /// that id, the delivery is handed back.
    pub fn retire(&mut self, id: &[u8], retired: Retired) -> Option<Retired> {
        match self.live.get_mut(id) {
            Some(work) => {
                work.retired.push(retired);
                None
            }
            None => Some(retired),
        }
    }

    /// Ends transaction `id`, returning its retired deliveries and the commit to run (none when it
    /// failed), or `None` if no such transaction is live.
    pub fn discharge(&mut self, id: &[u8], fail: bool) -> Option<(Vec<Retired>, Option<TransactionWork>)> {
        let work = self.live.remove(id)?;
        if fail {
            return Some((work.retired, None));
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
        Some((work.retired, Some(commit)))
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

/// The `transactional-state` a posted transfer is confirmed with.
pub fn posted(id: Binary) -> DeliveryState {
    DeliveryState::TransactionalState(fe2o3_amqp_types::transaction::TransactionalState {
        txn_id: id,
        outcome: Some(fe2o3_amqp_types::messaging::Outcome::Accepted(
            fe2o3_amqp_types::messaging::Accepted {},
        )),
    })
}

/// The destination named by a send-via attach, if any.
pub fn transfer_destination(properties: Option<&fe2o3_amqp_types::definitions::Fields>) -> Option<String> {
    properties?.iter().find_map(|(key, value)| match value {
        Value::String(text) if *key == Symbol::from(TRANSFER_DESTINATION) => Some(text.clone()),
        _ => None,
    })
}
