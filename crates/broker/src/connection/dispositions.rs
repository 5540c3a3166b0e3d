//! Settling deliveries: the client's dispositions for messages it received (applied to the queue,
//! or held in a transaction), the broker's dispositions for what the client sent, and the locks
//! given back when a delivery is released, or restored when a transaction does not commit.

use fe2o3_amqp_types::definitions::{AmqpError, ErrorCondition, Role};
use fe2o3_amqp_types::messaging::{DeliveryState, Rejected, Released};
use fe2o3_amqp_types::performatives::Disposition;
use sagahost_transport::embedded::EmbeddedQueue;
use sagahost_transport::servicebus::dialect::LOCK_LOST_CONDITION;
use sagahost_transport::{ReceivedMessage, Transport, TransportError};

use crate::transactions::{self, Retired};

use super::{Connection, Event, amqp_error, custom_error};

impl Connection {
    /// Hands deliveries retired in a transaction that did not commit back to their sessions.
    pub(super) fn restore(&mut self, retired: Vec<Retired>) {
        for retired in retired {
            if let Some(session) = self.sessions.get_mut(&retired.channel) {
                session.unsettled.insert(retired.delivery_id, retired.message);
            }
        }
    }

    pub(super) fn send_disposition(
        &mut self,
        channel: u16,
        delivery_id: u32,
        role: Role,
        state: DeliveryState,
    ) -> anyhow::Result<()> {
        let disposition = Disposition {
            role,
            first: delivery_id,
            last: None,
            settled: true,
            state: Some(state),
            batchable: false,
        };
        self.send(channel, &disposition)
    }

    pub(super) fn on_disposition(&mut self, channel: u16, disposition: Disposition) {
        if disposition.role != Role::Receiver {
            return;
        }
        let Some(session) = self.sessions.get_mut(&channel) else {
            return;
        };
        let last = disposition.last.unwrap_or(disposition.first);
        let mut settled = Vec::new();
        // Walk what we hold, not the client's range (which could be huge).
        for &delivery_id in session.unsettled.keys() {
            if delivery_id.wrapping_sub(disposition.first) <= last.wrapping_sub(disposition.first) {
                settled.push(delivery_id);
            }
        }
        for delivery_id in settled {
            let Some(message) = session.unsettled.remove(&delivery_id) else {
                continue;
            };
            if let Some(DeliveryState::TransactionalState(state)) = &disposition.state {
                // Held, lock and all, until the transaction is discharged.
                let retired = Retired {
                    channel,
                    delivery_id,
                    message,
                    outcome: state
                        .outcome
                        .clone()
                        .map_or(DeliveryState::Released(Released {}), Into::into),
                    confirm: !disposition.settled,
                };
                if let Some(retired) = self.transactions.retire(&state.txn_id, retired) {
                    tracing::warn!(
                        error = ?transactions::unknown_id(&state.txn_id).description,
                        "broker: a disposition names no live transaction; the message stays locked"
                    );
                    session.unsettled.insert(delivery_id, retired.message);
                }
                continue;
            }
            let Some(state) = disposition.state.clone() else {
                // Settled with no outcome: as released.
                release(&self.queue, vec![message]);
                continue;
            };
            self.locks.forget(&message.lock_token);
            let queue = self.queue.clone();
            let events = self.events.clone();
            let reply = !disposition.settled;
            tokio::spawn(async move {
                let state = settle(&queue, &message, state).await;
                if reply {
                    let _ = events.send(Event::Settled {
                        channel,
                        delivery_id,
                        state,
                    });
                }
            });
        }
    }
}

/// Gives locks back without counting the deliveries, in the background.
pub(super) fn release(queue: &EmbeddedQueue, messages: Vec<ReceivedMessage>) {
    if messages.is_empty() {
        return;
    }
    let queue = queue.clone();
    tokio::spawn(async move {
        for message in messages {
            // A lock already gone needs no release.
            let _ = queue.release(&message).await;
        }
    });
}

/// Applies a client's outcome to a peek-locked message; returns the outcome to confirm with.
async fn settle(queue: &EmbeddedQueue, message: &ReceivedMessage, state: DeliveryState) -> DeliveryState {
    let result = match transactions::settlement_of(&state) {
        Some(settlement) => queue.settle(message, settlement, vec![]).await,
        None => queue.release(message).await,
    };
    match result {
        // Echo what was applied: clients compare it with what they asked for.
        Ok(()) => match state {
            DeliveryState::Rejected(_) => DeliveryState::Rejected(Rejected { error: None }),
            DeliveryState::Accepted(_) | DeliveryState::Released(_) | DeliveryState::Modified(_) => state,
            _ => DeliveryState::Released(Released {}),
        },
        Err(error @ TransportError::LockLost { .. }) => DeliveryState::Rejected(Rejected {
            error: Some(custom_error(LOCK_LOST_CONDITION, error.to_string())),
        }),
        Err(error) => DeliveryState::Rejected(Rejected {
            error: Some(amqp_error(
                ErrorCondition::AmqpError(AmqpError::InternalError),
                error.to_string(),
            )),
        }),
    }
}
