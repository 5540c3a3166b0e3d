//! What the client sends: messages to store in a queue or post in a transaction, `$cbs` tokens,
//! management requests and the transaction coordinator's `declare` and `discharge`, each
//! delivery gathered first from however many frames it arrives in.

use std::sync::Arc;

use anyhow::bail;
use fe2o3_amqp_types::definitions::{AmqpError, Error as AmqpErrorInfo, ErrorCondition, LinkError, Role};
use fe2o3_amqp_types::messaging::{Accepted, DeliveryState, Rejected};
use fe2o3_amqp_types::performatives::Transfer;
use fe2o3_amqp_types::primitives::Binary;
use fe2o3_amqp_types::transaction::Declared;
use sagahost_transport::embedded::EmbeddedQueue;
use sagahost_transport::sas;
use sagahost_transport::{Output, Transport};
use tokio::sync::mpsc;
use tokio_util::bytes::BytesMut;

use crate::auth;
use crate::management::{self, Node};
use crate::message::{self, Control};
use crate::transactions::{self, Discharged};

use super::{Connection, Event, Kind, SENDER_CREDIT, amqp_error};

/// A client's message being received over several frames.
pub(super) struct Partial {
    delivery_id: u32,
    settled: bool,
    /// The transaction the delivery is posted in, from its first transfer's state.
    transaction: Option<Binary>,
    format: u32,
    payload: BytesMut,
}

impl Connection {
    pub(super) fn on_transfer(&mut self, channel: u16, transfer: Transfer, payload: &[u8]) -> anyhow::Result<()> {
        let handle = transfer.handle.0;
        let max_message_size = self.config.max_message_size;
        let Some(session) = self.sessions.get_mut(&channel) else {
            bail!("transfer on channel {channel}, which has no session");
        };
        session.next_incoming_id = session.next_incoming_id.wrapping_add(1);
        let Some(link) = session.links.get_mut(&handle) else {
            return Ok(());
        };
        // Checked before buffering: a delivery split over many frames is refused as soon as what
        // arrived of it passes the size the link advertised.
        let buffered = link.partial.as_ref().map_or(0, |partial| partial.payload.len());
        let size = (buffered + payload.len()) as u64;
        if size > max_message_size {
            let delivery_id = link
                .partial
                .as_ref()
                .map(|partial| partial.delivery_id)
                .or(transfer.delivery_id);
            let error = amqp_error(
                ErrorCondition::LinkError(LinkError::MessageSizeExceeded),
                format!(
                    "The received message (delivery-id:{}, size:{size} bytes so far) exceeds the limit \
                     ({max_message_size} bytes) currently allowed on the link.",
                    delivery_id.map_or_else(|| "?".to_owned(), |id| id.to_string()),
                ),
            );
            return self.detach_with(channel, handle, Some(error));
        }
        let partial = match link.partial.take() {
            Some(mut partial) => {
                partial.payload.extend_from_slice(payload);
                partial
            }
            None => {
                let Some(delivery_id) = transfer.delivery_id else {
                    bail!("the first transfer of a delivery has no delivery id");
                };
                link.delivery_count = link.delivery_count.wrapping_add(1);
                link.granted = link.granted.saturating_sub(1);
                let transaction = match &transfer.state {
                    Some(DeliveryState::TransactionalState(state)) => Some(state.txn_id.clone()),
                    _ => None,
                };
                Partial {
                    delivery_id,
                    settled: transfer.settled.unwrap_or(false),
                    transaction,
                    format: transfer.message_format.unwrap_or(0),
                    payload: BytesMut::from(payload),
                }
            }
        };
        if transfer.aborted {
            return Ok(());
        }
        if transfer.more {
            link.partial = Some(partial);
            return Ok(());
        }
        let kind = link.kind.clone();
        let low_credit = link.granted < SENDER_CREDIT / 2;
        match kind {
            Kind::QueueIn { queue } if partial.transaction.is_some() => self.post(channel, &queue, partial)?,
            Kind::Coordinator => self.on_control(channel, partial)?,
            Kind::QueueIn { queue } => {
                let (store, events) = (self.queue.clone(), self.events.clone());
                let stores = link.stores.get_or_insert_with(|| {
                    let (stores, arrivals) = mpsc::unbounded_channel();
                    tokio::spawn(store_in_order(store, queue, channel, arrivals, events));
                    stores
                });
                // The task outlives the link only by what it was handed already.
                let _ = stores.send(partial);
            }
            Kind::NodeIn { node } if !partial.settled => {
                // A request is accepted on arrival; its answer comes as a reply message.
                self.send_disposition(
                    channel,
                    partial.delivery_id,
                    Role::Receiver,
                    DeliveryState::Accepted(Accepted {}),
                )?;
                self.on_node_request(channel, node, partial)?;
            }
            Kind::NodeIn { node } => self.on_node_request(channel, node, partial)?,
            Kind::QueueOut { .. } | Kind::SessionOut { .. } | Kind::NodeOut { .. } => {
                bail!("the client sent on a link where it receives");
            }
        }
        if low_credit {
            self.grant_credit(channel, handle)?;
        }
        Ok(())
    }

    /// A request to `$cbs` (answered here) or to a management node (answered in the background).
    fn on_node_request(&mut self, channel: u16, node: Node, partial: Partial) -> anyhow::Result<()> {
        match node {
            Node::Cbs => self.on_cbs_request(channel, &partial.payload),
            Node::Management {
                queue: name,
                dead_letter,
            } => {
                let queue = self.queue.clone();
                let events = self.events.clone();
                let locks = Arc::clone(&self.locks);
                tokio::spawn(async move {
                    let request = match message::decode(&partial.payload) {
                        Ok(request) => request,
                        Err(error) => {
                            tracing::warn!(error = %error, "broker: undecodable management request");
                            return;
                        }
                    };
                    let reply_to = request
                        .properties
                        .as_ref()
                        .and_then(|properties| properties.reply_to.clone());
                    match management::handle(&queue, &locks, &name, dead_letter, request).await {
                        Ok(payload) => {
                            let _ = events.send(Event::Reply {
                                channel,
                                node: Node::Management {
                                    queue: name,
                                    dead_letter,
                                },
                                reply_to,
                                payload,
                            });
                        }
                        Err(error) => tracing::warn!(error = %error, "broker: management request failed"),
                    }
                });
                Ok(())
            }
        }
    }

    /// A `put-token` on `$cbs`: checked and answered here, on the connection's task, so that a
    /// token's grant is in place before the client's next attach is read.
    fn on_cbs_request(&mut self, channel: u16, payload: &[u8]) -> anyhow::Result<()> {
        let request = match message::decode(payload) {
            Ok(request) => request,
            Err(error) => {
                tracing::warn!(error = %error, "broker: undecodable $cbs request");
                return Ok(());
            }
        };
        let reply_to = request
            .properties
            .as_ref()
            .and_then(|properties| properties.reply_to.clone());
        let reply = auth::put_token(&self.config, &mut self.grants, &request, sas::now_unix_secs())?;
        self.reply(channel, Node::Cbs, reply_to, reply)
    }

    /// Holds a message posted in a transaction; confirms it with a `transactional-state`.
    fn post(&mut self, channel: u16, queue: &str, partial: Partial) -> anyhow::Result<()> {
        let Some(id) = partial.transaction else {
            bail!("a posted delivery has no transaction");
        };
        let outputs = message::decode_transfer(partial.format, &partial.payload).and_then(|messages| {
            messages
                .into_iter()
                .map(|incoming| {
                    Ok(Output {
                        queue: queue.to_owned(),
                        message: incoming.into_outgoing()?,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()
        });
        let state = match outputs {
            Ok(outputs) => {
                let held = self.transactions.post(&id, outputs);
                transactions::posted(id, held)
            }
            Err(error) => DeliveryState::Rejected(Rejected {
                error: Some(amqp_error(
                    ErrorCondition::AmqpError(AmqpError::DecodeError),
                    format!("{error:#}"),
                )),
            }),
        };
        if partial.settled {
            return Ok(());
        }
        self.send_disposition(channel, partial.delivery_id, Role::Receiver, state)
    }

    /// A `declare` or `discharge` on the coordinator link.
    fn on_control(&mut self, channel: u16, partial: Partial) -> anyhow::Result<()> {
        let delivery_id = partial.delivery_id;
        let (id, fail) = match message::decode_control(&partial.payload) {
            Ok(Control::Declare) => {
                let state = match self.transactions.declare() {
                    Ok(txn_id) => DeliveryState::Declared(Declared { txn_id }),
                    Err(error) => DeliveryState::Rejected(Rejected { error: Some(error) }),
                };
                return self.send_disposition(channel, delivery_id, Role::Receiver, state);
            }
            Ok(Control::Discharge { id, fail }) => (id, fail),
            Err(error) => {
                let state = DeliveryState::Rejected(Rejected {
                    error: Some(amqp_error(
                        ErrorCondition::AmqpError(AmqpError::DecodeError),
                        format!("{error:#}"),
                    )),
                });
                return self.send_disposition(channel, delivery_id, Role::Receiver, state);
            }
        };
        let (retired, work) = match self.transactions.discharge(&id, fail) {
            None => {
                let state = DeliveryState::Rejected(Rejected {
                    error: Some(transactions::unknown_id(&id)),
                });
                return self.send_disposition(channel, delivery_id, Role::Receiver, state);
            }
            // Rolled back: what it retired is locked and unsettled again, as before.
            Some(Discharged::RolledBack(retired)) => {
                self.restore(retired);
                let state = DeliveryState::Accepted(Accepted {});
                return self.send_disposition(channel, delivery_id, Role::Receiver, state);
            }
            Some(Discharged::Refused(retired, error)) => {
                self.restore(retired);
                let state = DeliveryState::Rejected(Rejected { error: Some(error) });
                return self.send_disposition(channel, delivery_id, Role::Receiver, state);
            }
            Some(Discharged::Commit(retired, work)) => (retired, work),
        };
        for retired in &retired {
            self.locks.forget(&retired.message.lock_token);
        }
        let queue = self.queue.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            let result = transactions::commit(&queue, work).await;
            let _ = events.send(Event::Discharged {
                channel,
                delivery_id,
                result,
                retired,
            });
        });
        Ok(())
    }
}

/// Most transfers stored in one commit by [`store_in_order`].
const STORE_BATCH: usize = 256;

/// Stores the messages one sending link delivers, in the order they came, as Service Bus keeps a
/// sender's order (a session's messages rely on it), and reports each outcome. What arrived while
/// the last commit ran goes in the next one, so a busy sender still shares each fsync among many
/// messages; if that commit fails, each transfer of it is stored alone, for its own outcome.
async fn store_in_order(
    queue: EmbeddedQueue,
    name: String,
    channel: u16,
    mut arrivals: mpsc::UnboundedReceiver<Partial>,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut batch = Vec::new();
    while arrivals.recv_many(&mut batch, STORE_BATCH).await > 0 {
        let prepared: Vec<(Partial, Result<Vec<Output>, AmqpErrorInfo>)> = batch
            .drain(..)
            .map(|partial| {
                let outputs = outputs_of(&queue, &name, partial.format, &partial.payload);
                (partial, outputs)
            })
            .collect();
        let together: Vec<Output> = prepared
            .iter()
            .filter_map(|(_, outputs)| outputs.as_ref().ok())
            .flatten()
            .cloned()
            .collect();
        let stored_together = queue.send(together).await.is_ok();
        for (partial, outputs) in prepared {
            let result = match outputs {
                Ok(_) if stored_together => Ok(()),
                Ok(outputs) => queue.send(outputs).await.map_err(|error| internal(error.into())),
                Err(error) => Err(error),
            };
            if let Err(error) = &result {
                tracing::warn!(queue = %name, error = ?error.description, "broker: a sent message was not stored");
            }
            if !partial.settled {
                let _ = events.send(Event::Stored {
                    channel,
                    delivery_id: partial.delivery_id,
                    result,
                });
            }
        }
    }
}

fn internal(error: anyhow::Error) -> AmqpErrorInfo {
    amqp_error(
        ErrorCondition::AmqpError(AmqpError::InternalError),
        format!("{error:#}"),
    )
}

/// The messages one transfer carries, for the queue `name`; the error is the `rejected` outcome's.
fn outputs_of(queue: &EmbeddedQueue, name: &str, format: u32, payload: &[u8]) -> Result<Vec<Output>, AmqpErrorInfo> {
    let outputs = message::decode_transfer(format, payload)
        .and_then(|messages| {
            messages
                .into_iter()
                .map(|incoming| {
                    Ok(Output {
                        queue: name.to_owned(),
                        message: incoming.into_outgoing()?,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .map_err(internal)?;
    if queue
        .queue_settings(name)
        .is_some_and(|settings| settings.requires_session)
        && let Some(output) = outputs.iter().find(|output| output.message.session_id.is_none())
    {
        // Service Bus's words, with the queue and the fix.
        return Err(amqp_error(
            ErrorCondition::AmqpError(AmqpError::NotAllowed),
            format!(
                "The SessionId was not set on a message, and it cannot be sent to the entity: queue `{name}` \
                 requires sessions, so message `{}` needs a session id (the AMQP group-id; `session_id` in \
                 the SDKs)",
                output.message.message_id
            ),
        ));
    }
    Ok(outputs)
}
