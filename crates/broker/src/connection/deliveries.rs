//! Deliveries to the client's receivers: messages fetched from a queue (or from the session a
//! session receiver holds) as the link's credit allows, sent in frames no larger than the client
//! accepts, and nodes' replies to requests.

use std::time::Duration;

use anyhow::anyhow;
use fe2o3_amqp_types::definitions::Handle;
use fe2o3_amqp_types::definitions::{AmqpError, ErrorCondition};
use fe2o3_amqp_types::performatives::Transfer;
use sagahost_transport::dead_letters::DeadLetterQueues;
use sagahost_transport::embedded::EmbeddedQueue;
use sagahost_transport::servicebus::dialect::{SESSION_LOCK_LOST_CONDITION, lock_token_tag};
use sagahost_transport::sessions::{SessionLock, Sessions};
use sagahost_transport::{ReceivedMessage, Settlement, Transport, TransportError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::management::Node;
use crate::message::Outgoing;

use super::dispositions::release;
use super::{Connection, Event, FRAME_TYPE_AMQP, Kind, Pending, amqp_error, custom_error, frame};

/// How long one fetch waits on the queue before checking whether it is still wanted.
const FETCH_WAIT: Duration = Duration::from_millis(500);
/// Most messages one fetch locks and holds encoded in memory, however much credit the client
/// gives: the next fetch starts as soon as these are sent.
const MAX_FETCH: usize = 256;

impl Connection {
    /// Starts fetching from the queue for a receiving client whose credit exceeds what is waiting.
    pub(super) fn fetch(&mut self, channel: u16, handle: u32) {
        let queue = self.queue.clone();
        let events = self.events.clone();
        let Some(link) = self.link(channel, handle) else {
            return;
        };
        let source = match link.kind.clone() {
            Kind::QueueOut {
                queue,
                dead_letter,
                receive_and_delete,
            } => Source::Queue {
                queue,
                dead_letter,
                receive_and_delete,
            },
            Kind::SessionOut {
                session: Some(session),
                receive_and_delete,
                ..
            } => Source::Session {
                session,
                receive_and_delete,
            },
            _ => return,
        };
        let wanted = (link.credit as usize).saturating_sub(link.pending.len()).min(MAX_FETCH);
        if wanted == 0 || link.fetching.is_some() {
            return;
        }
        let cancel = CancellationToken::new();
        link.fetching = Some(cancel.clone());
        let link_id = link.id;
        let first_tag = link.next_tag;
        link.next_tag += wanted as u64;
        tokio::spawn(async move {
            let batch = loop {
                if cancel.is_cancelled() {
                    break Vec::new();
                }
                let fetched = fetch_batch(&queue, &source, wanted, first_tag).await;
                let lost = match fetched {
                    Ok(batch) if batch.is_empty() => continue,
                    Ok(batch) => break batch,
                    Err(error) => match error.downcast_ref() {
                        // Deleted (through the management endpoint) while the link was attached.
                        Some(TransportError::UnknownQueue(_)) => amqp_error(
                            ErrorCondition::AmqpError(AmqpError::NotFound),
                            format!("queue `{}` was deleted", source.queue()),
                        ),
                        // Expired unrenewed, and perhaps accepted by another receiver since.
                        Some(lost @ TransportError::SessionLockLost { .. }) => custom_error(
                            SESSION_LOCK_LOST_CONDITION,
                            format!("{lost}: renew the session's lock before it expires, and accept the session again"),
                        ),
                        _ => {
                            tracing::warn!(queue = %source.queue(), error = %error, "broker: receiving from the queue failed");
                            tokio::time::sleep(FETCH_WAIT).await;
                            continue;
                        }
                    },
                };
                let _ = events.send(Event::Lost {
                    channel,
                    handle,
                    link: link_id,
                    error: lost,
                });
                return;
            };
            let report = Event::Fetched {
                channel,
                handle,
                link: link_id,
                batch,
            };
            if let Err(mpsc::error::SendError(Event::Fetched { batch, .. })) = events.send(report) {
                // The connection is gone: give the locks back.
                release(&queue, batch.into_iter().filter_map(|pending| pending.lock).collect());
            }
        });
    }

    /// Sends waiting messages as far as the link's credit goes.
    pub(super) fn flush(&mut self, channel: u16, handle: u32) -> anyhow::Result<()> {
        let max_frame = self.remote_max_frame;
        let Some(session) = self.sessions.get_mut(&channel) else {
            return Ok(());
        };
        let Some(link) = session.links.get_mut(&handle) else {
            return Ok(());
        };
        let pre_settled = matches!(
            link.kind,
            Kind::QueueOut {
                receive_and_delete: true,
                ..
            } | Kind::SessionOut {
                receive_and_delete: true,
                ..
            }
        );
        while link.credit > 0 {
            let Some(pending) = link.pending.pop_front() else {
                break;
            };
            let delivery_id = session.next_delivery_id;
            session.next_delivery_id = session.next_delivery_id.wrapping_add(1);
            let settled = pre_settled || pending.lock.is_none();
            let mut transfer = Transfer {
                handle: Handle(handle),
                delivery_id: Some(delivery_id),
                delivery_tag: Some(pending.tag.into()),
                message_format: Some(0),
                settled: Some(settled),
                more: false,
                rcv_settle_mode: None,
                state: None,
                resume: false,
                aborted: false,
                batchable: false,
            };
            tracing::trace!(channel, bytes = pending.payload.len(), "broker: sends {transfer:?}");
            let overhead = 8 + serde_amqp::to_vec(&transfer).map_err(|error| anyhow!("{error}"))?.len() + 16;
            let chunk = max_frame.saturating_sub(overhead).max(64);
            let mut chunks = pending.payload.chunks(chunk).peekable();
            if chunks.peek().is_none() {
                self.out.extend(frame(FRAME_TYPE_AMQP, channel, &transfer, &[])?);
                session.next_outgoing_id = session.next_outgoing_id.wrapping_add(1);
            }
            while let Some(part) = chunks.next() {
                transfer.more = chunks.peek().is_some();
                self.out.extend(frame(FRAME_TYPE_AMQP, channel, &transfer, part)?);
                session.next_outgoing_id = session.next_outgoing_id.wrapping_add(1);
            }
            link.delivery_count = link.delivery_count.wrapping_add(1);
            link.credit -= 1;
            if let Some(lock) = pending.lock
                && !pre_settled
            {
                self.locks.hold(&lock);
                session.unsettled.insert(delivery_id, lock);
            }
        }
        Ok(())
    }
    /// Sends a node's reply on the client's link for it, the one whose address is `reply_to` when
    /// there are several.
    pub(super) fn reply(
        &mut self,
        channel: u16,
        node: Node,
        reply_to: Option<String>,
        payload: Vec<u8>,
    ) -> anyhow::Result<()> {
        let Some(session) = self.sessions.get_mut(&channel) else {
            return Ok(());
        };
        let mut target = None;
        for (&handle, link) in &session.links {
            if let Kind::NodeOut { node: linked, address } = &link.kind
                && *linked == node
            {
                if reply_to.is_some() && *address == reply_to {
                    target = Some(handle);
                    break;
                }
                target.get_or_insert(handle);
            }
        }
        let Some(handle) = target else {
            tracing::warn!("broker: a management reply has no link to go to");
            return Ok(());
        };
        if let Some(link) = session.links.get_mut(&handle) {
            let tag = link.next_tag.to_be_bytes().to_vec();
            link.next_tag += 1;
            link.pending.push_back(Pending {
                payload,
                tag,
                lock: None,
            });
        }
        self.flush(channel, handle)
    }
}

/// Where a receiving link's messages come from.
enum Source {
    /// A queue (or subscription), or its dead-letter queue.
    Queue {
        queue: String,
        dead_letter: bool,
        receive_and_delete: bool,
    },
    /// The session a session receiver holds.
    Session {
        session: SessionLock,
        receive_and_delete: bool,
    },
}

impl Source {
    fn queue(&self) -> &str {
        match self {
            Source::Queue { queue, .. } => queue,
            Source::Session { session, .. } => &session.queue,
        }
    }
}

/// One fetch: up to `max` messages, encoded for delivery, waiting up to [`FETCH_WAIT`].
async fn fetch_batch(
    queue: &EmbeddedQueue,
    source: &Source,
    max: usize,
    first_tag: u64,
) -> anyhow::Result<Vec<Pending>> {
    let mut batch = Vec::new();
    let (name, dead_letter, receive_and_delete) = match source {
        Source::Queue {
            queue: name,
            dead_letter,
            receive_and_delete,
        } => (name.as_str(), *dead_letter, *receive_and_delete),
        Source::Session {
            session,
            receive_and_delete,
        } => {
            for message in queue.receive_in_session(session, max, FETCH_WAIT).await? {
                let payload = encode_received(&message, None)?;
                if *receive_and_delete {
                    // Taken is removed: the session's lock covers the message until then.
                    queue.settle(&message, Settlement::Complete, vec![]).await?;
                }
                batch.push(pending(
                    payload,
                    message,
                    *receive_and_delete,
                    first_tag + batch.len() as u64,
                ));
            }
            return Ok(batch);
        }
    };
    if dead_letter {
        let letters = queue.receive_dead_letters(name, 0, max, FETCH_WAIT).await?;
        for letter in letters {
            let payload = encode_received(&letter.message, Some((name, &letter.reason, &letter.description)))?;
            if receive_and_delete {
                queue.settle(&letter.message, Settlement::Complete, vec![]).await?;
            }
            batch.push(pending(
                payload,
                letter.message,
                receive_and_delete,
                first_tag + batch.len() as u64,
            ));
        }
        return Ok(batch);
    }
    let received = if receive_and_delete {
        queue.receive_and_delete(name, max, FETCH_WAIT).await?
    } else {
        queue.receive(name, max, FETCH_WAIT).await?
    };
    for message in received {
        let payload = encode_received(&message, None)?;
        batch.push(pending(
            payload,
            message,
            receive_and_delete,
            first_tag + batch.len() as u64,
        ));
    }
    Ok(batch)
}

fn pending(payload: Vec<u8>, message: ReceivedMessage, deleted: bool, tag_number: u64) -> Pending {
    let tag = lock_token_tag(&message.lock_token)
        .map(|tag| tag.to_vec())
        .unwrap_or_else(|| tag_number.to_be_bytes().to_vec());
    Pending {
        payload,
        tag,
        // The lock only names the message for settling and renewing; its body is in `payload`
        // already, and need not be held a second time until the lock ends.
        lock: (!deleted).then(|| ReceivedMessage {
            body: Vec::new(),
            ..message
        }),
    }
}

fn encode_received(message: &ReceivedMessage, dead_letter: Option<(&str, &str, &str)>) -> anyhow::Result<Vec<u8>> {
    Outgoing {
        message_id: &message.message_id,
        correlation_id: message.correlation_id.as_deref(),
        content_type: message.content_type.as_deref(),
        properties: &message.properties,
        body: &message.body,
        session_id: message.session_id.as_deref(),
        sequence_number: message.sequence_number,
        prior_deliveries: message.delivery_count.saturating_sub(1),
        enqueued_time: message.enqueued_time,
        locked_until: Some(message.locked_until),
        scheduled_enqueue_time: None,
        dead_letter,
    }
    .encode()
}
