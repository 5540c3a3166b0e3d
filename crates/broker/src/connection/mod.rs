//! One client connection: the protocol headers, SASL, then the AMQP connection, its sessions and
//! links, run as one task that owns the socket. Work that waits on the queue (fetching messages
//! for a receiver, storing sent messages, settling, management requests) runs in spawned tasks
//! that report back to this task over a channel, so the connection keeps answering frames.
//!
//! The connection's state and its event loop live here; each file beside this one adds an
//! `impl Connection` for one concern:
//! - `handshake`: the protocol headers and SASL, before the AMQP connection opens;
//! - `sessions`: `open`, AMQP sessions and links (attaching, classifying, authorizing, detaching) and
//!   the flow control that grants and tracks link credit;
//! - `transfers`: what the client sends (messages for queues, `$cbs` tokens, management requests,
//!   the transaction coordinator's `declare` and `discharge`);
//! - `deliveries`: what the broker sends the client's receivers (messages fetched from queues as
//!   credit allows, nodes' replies);
//! - `dispositions`: settling deliveries both ways (the client's outcomes for what it received, the
//!   broker's for what it was sent) and giving back the locks of deliveries not settled;
//! - `session_links`: Service Bus sessions on receiver links (accepting the session a receiver's
//!   source filter asks for, answering its attach with it, releasing it when the link goes).

mod deliveries;
mod dispositions;
mod handshake;
mod lenient;
mod session_links;
mod sessions;
mod transfers;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use fe2o3_amqp::frames::amqp::{Frame, FrameBody, FrameDecoder};
use fe2o3_amqp_types::definitions::{AmqpError, ConnectionError, Error as AmqpErrorInfo, ErrorCondition, Role};
use fe2o3_amqp_types::messaging::{Accepted, DeliveryState, Rejected};
use fe2o3_amqp_types::performatives::{Close, Detach, End};
use fe2o3_amqp_types::primitives::Symbol;
use futures::StreamExt;
use sagahost_transport::ReceivedMessage;
use sagahost_transport::embedded::EmbeddedQueue;
use sagahost_transport::sessions::SessionLock;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_util::bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, FramedRead, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use super::BrokerConfig;
use super::auth::Grants;
use super::management::{Locks, Node};
use super::transactions::{Retired, Transactions};

use dispositions::release;
use handshake::handshake;
use session_links::Accepting;
use transfers::Partial;

/// The largest frame this broker accepts, advertised in `open`.
const MAX_FRAME_SIZE: u32 = 1024 * 1024;
/// Credit granted to a client's sender, topped up when half is used.
const SENDER_CREDIT: u32 = 1000;

const FRAME_TYPE_AMQP: u8 = 0;

/// Runs one connection until the client closes it, the socket fails or `shutdown` is cancelled.
pub async fn run(
    stream: TcpStream,
    queue: EmbeddedQueue,
    config: Arc<BrokerConfig>,
    locks: Arc<Locks>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (mut reader, writer) = stream.into_split();
    let mut writer = writer;
    let deadline = config.handshake_timeout;
    let grants = tokio::select! {
        result = tokio::time::timeout(deadline, handshake(&mut reader, &mut writer, &config.key)) => match result {
            Ok(result) => result?,
            Err(_) => bail!("no AMQP handshake within {deadline:?}"),
        },
        () = shutdown.cancelled() => return Ok(()),
    };
    let codec = LengthDelimitedCodec::builder()
        .length_field_length(4)
        // The size counts itself; with nothing skipped the codec yields whole frames, size included.
        .length_adjustment(0)
        .num_skip(0)
        .max_frame_length(MAX_FRAME_SIZE as usize)
        .new_codec();
    let frames = FramedRead::new(reader, codec);
    let (events, inbox) = mpsc::unbounded_channel();
    let mut connection = Connection {
        queue,
        config,
        writer,
        out: Vec::new(),
        remote_max_frame: 512,
        opened: false,
        sessions: HashMap::new(),
        events,
        locks,
        next_link_id: 0,
        transactions: Transactions::default(),
        grants,
    };
    let result = connection.run(frames, inbox, shutdown).await;
    connection.release_all();
    result
}

/// Encodes a frame: size, data offset 2, type, channel, the performative, then `payload`.
pub(super) fn frame<T: Serialize>(
    frame_type: u8,
    channel: u16,
    performative: &T,
    payload: &[u8],
) -> anyhow::Result<Vec<u8>> {
    let body = serde_amqp::to_vec(performative).map_err(|error| anyhow!("encoding a frame: {error}"))?;
    let size = 8 + body.len() + payload.len();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&u32::try_from(size)?.to_be_bytes());
    out.push(2);
    out.push(frame_type);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(payload);
    Ok(out)
}

/// What a link does, by its address.
#[derive(Debug, Clone)]
enum Kind {
    /// The client sends to a queue.
    QueueIn { queue: String },
    /// The client receives from a queue or its dead-letter queue.
    QueueOut {
        queue: String,
        dead_letter: bool,
        receive_and_delete: bool,
    },
    /// The client receives one session of a session-enabled queue: `session` is the lock, once the
    /// session is accepted (`session_links.rs`).
    SessionOut {
        queue: String,
        receive_and_delete: bool,
        session: Option<SessionLock>,
    },
    /// The client sends requests to a node.
    NodeIn { node: Node },
    /// The client receives a node's replies at `address` (its link's target address).
    NodeOut { node: Node, address: Option<String> },
    /// The client declares and discharges transactions (`$coordinator`).
    Coordinator,
}

/// A message waiting for link credit.
struct Pending {
    payload: Vec<u8>,
    tag: Vec<u8>,
    /// The lock it holds, for a peek-lock delivery.
    lock: Option<ReceivedMessage>,
}

struct Link {
    /// Unique within the connection, so that reports for a link since detached are recognised.
    id: u64,
    kind: Kind,
    // Where we send (the client receives):
    delivery_count: u32,
    credit: u32,
    pending: VecDeque<Pending>,
    fetching: Option<CancellationToken>,
    /// A session receiver whose session is being accepted: its attach is answered once it is.
    accepting: Option<Accepting>,
    next_tag: u64,
    // Where we receive (the client sends):
    granted: u32,
    partial: Option<Partial>,
    /// The task that stores this link's messages in the order they came (`transfers.rs`),
    /// started at its first message.
    stores: Option<mpsc::UnboundedSender<Partial>>,
}

struct Session {
    next_outgoing_id: u32,
    next_incoming_id: u32,
    next_delivery_id: u32,
    links: HashMap<u32, Link>,
    /// Handles the broker detached on its own (a refused attach, an oversized message): the
    /// client's `detach` for them answers ours and gets no reply, and its transfers still in
    /// flight on them are dropped.
    detaching: HashSet<u32>,
    /// Peek-lock deliveries the client has not settled yet, by delivery id.
    unsettled: HashMap<u32, ReceivedMessage>,
}

/// Reports from spawned tasks.
enum Event {
    Fetched {
        channel: u16,
        handle: u32,
        link: u64,
        batch: Vec<Pending>,
    },
    /// A receiving link can go on no longer (its queue was deleted, its session's lock is gone):
    /// it is detached with `error`.
    Lost {
        channel: u16,
        handle: u32,
        link: u64,
        error: AmqpErrorInfo,
    },
    /// A session receiver's session was accepted, or could not be.
    SessionAccepted {
        channel: u16,
        handle: u32,
        link: u64,
        result: Result<SessionLock, AmqpErrorInfo>,
    },
    Stored {
        channel: u16,
        delivery_id: u32,
        result: Result<(), AmqpErrorInfo>,
    },
    Settled {
        channel: u16,
        delivery_id: u32,
        state: DeliveryState,
    },
    /// A transaction's commit finished: answer the discharge and confirm what it settled.
    Discharged {
        channel: u16,
        delivery_id: u32,
        result: Result<(), AmqpErrorInfo>,
        retired: Vec<Retired>,
    },
    Reply {
        channel: u16,
        node: Node,
        reply_to: Option<String>,
        payload: Vec<u8>,
    },
}

struct Connection {
    queue: EmbeddedQueue,
    config: Arc<BrokerConfig>,
    writer: OwnedWriteHalf,
    out: Vec<u8>,
    remote_max_frame: usize,
    opened: bool,
    /// By channel; the broker answers each session on the channel number the client chose.
    sessions: HashMap<u16, Session>,
    events: mpsc::UnboundedSender<Event>,
    locks: Arc<Locks>,
    next_link_id: u64,
    transactions: Transactions,
    /// The entities this connection's SASL login and `$cbs` tokens let it use.
    grants: Grants,
}

/// Decodes one AMQP frame (after its size field). A disposition, detach, end or close that
/// fails strict decoding is tried once more as `lenient.rs` reads it.
fn decode_frame(mut raw: BytesMut) -> anyhow::Result<Frame> {
    let offset = (usize::from(raw[0]) * 4).saturating_sub(4);
    // Only these performatives can hold an `amqp:error:list` (descriptor 0x1d); an `accepted`
    // disposition, by far the most common frame, has none and is not copied.
    let may_carry_error = matches!(raw.get(offset..offset + 3), Some([0x00, 0x53, 0x15..=0x18]))
        && raw[offset..].windows(3).any(|bytes| bytes == [0x00, 0x53, 0x1d]);
    let original = may_carry_error.then(|| raw.clone());
    let strict = FrameDecoder {}.decode(&mut raw);
    let error = match strict {
        Ok(Some(frame)) => return Ok(frame),
        Ok(None) => bail!("an incomplete frame"),
        Err(error) => anyhow!("decoding a frame: {error:?}"),
    };
    let Some(mut fixed) = original.and_then(|original| {
        let performative = lenient::symbolize_error_info(original.get(offset..)?)?;
        let mut fixed = BytesMut::from(&original[..offset]);
        fixed.extend_from_slice(&performative);
        Some(fixed)
    }) else {
        return Err(error);
    };
    FrameDecoder {}
        .decode(&mut fixed)
        .map_err(|error| anyhow!("decoding a frame: {error:?}"))?
        .ok_or_else(|| anyhow!("an incomplete frame"))
}

fn amqp_error(condition: ErrorCondition, description: impl Into<String>) -> AmqpErrorInfo {
    AmqpErrorInfo {
        condition,
        description: Some(description.into()),
        info: None,
    }
}

fn custom_error(condition: &str, description: impl Into<String>) -> AmqpErrorInfo {
    amqp_error(ErrorCondition::Custom(Symbol::from(condition)), description)
}

impl Connection {
    async fn run(
        &mut self,
        mut frames: FramedRead<tokio::net::tcp::OwnedReadHalf, LengthDelimitedCodec>,
        mut inbox: mpsc::UnboundedReceiver<Event>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut heartbeat = tokio::time::interval(Duration::from_secs(3600));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let keep_going = tokio::select! {
                read = frames.next() => match read {
                    Some(Err(error)) => {
                        // Larger than the max-frame-size we advertised, or the socket failed. Once
                        // our `open` is out, the client is told why before the socket closes.
                        if self.opened {
                            let close = Close { error: Some(amqp_error(
                                ErrorCondition::ConnectionError(ConnectionError::FramingError),
                                format!("{error}"),
                            )) };
                            self.out.extend(frame(FRAME_TYPE_AMQP, 0, &close, &[])?);
                            let _ = self.writer.write_all(&self.out).await;
                        }
                        return Err(error).context("reading a frame");
                    }
                    Some(Ok(frame)) => {
                        let open_before = self.opened;
                        let go_on = self.on_frame(frame).await?;
                        if !open_before && self.opened {
                            heartbeat = tokio::time::interval(self.config.heartbeat.unwrap_or(Duration::from_secs(3600)));
                            heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                            heartbeat.reset();
                        }
                        go_on
                    }
                    None => false,
                },
                Some(event) = inbox.recv() => {
                    self.on_event(event)?;
                    true
                }
                _ = heartbeat.tick(), if self.opened && self.config.heartbeat.is_some() => {
                    // An empty frame keeps the client's idle timer from firing.
                    self.out.extend_from_slice(&[0, 0, 0, 8, 2, 0, 0, 0]);
                    true
                }
                () = shutdown.cancelled() => {
                    let close = Close { error: Some(amqp_error(
                        ErrorCondition::ConnectionError(ConnectionError::ConnectionForced),
                        "the broker is shutting down",
                    )) };
                    self.out.extend(frame(FRAME_TYPE_AMQP, 0, &close, &[])?);
                    false
                }
            };
            if !self.out.is_empty() {
                let written = self.writer.write_all(&self.out).await;
                self.out.clear();
                // A client that closes may not wait for our `close`: its socket being gone is no error then.
                if keep_going {
                    written?;
                }
            }
            if !keep_going {
                return Ok(());
            }
        }
    }

    fn send<T: Serialize + std::fmt::Debug>(&mut self, channel: u16, performative: &T) -> anyhow::Result<()> {
        tracing::trace!(channel, "broker: sends {performative:?}");
        self.out.extend(frame(FRAME_TYPE_AMQP, channel, performative, &[])?);
        Ok(())
    }

    /// Handles one frame; returns false once the connection is closed.
    async fn on_frame(&mut self, mut raw: BytesMut) -> anyhow::Result<bool> {
        raw.advance(4);
        if raw.len() < 4 {
            bail!("short frame");
        }
        if raw[1] != FRAME_TYPE_AMQP {
            bail!("unexpected frame type {}", raw[1]);
        }
        let decoded = match decode_frame(raw) {
            Ok(decoded) => decoded,
            Err(error) => {
                // Say why before hanging up, so the client fails at once rather than on a timeout.
                tracing::warn!("broker: closing a connection: {error:#}");
                let error = amqp_error(ErrorCondition::AmqpError(AmqpError::DecodeError), format!("{error:#}"));
                self.send(0, &Close { error: Some(error) })?;
                return Ok(false);
            }
        };
        let channel = decoded.channel;
        match &decoded.body {
            FrameBody::Transfer { performative, payload } => {
                tracing::trace!(channel, bytes = payload.len(), "broker: received {performative:?}");
            }
            body => tracing::trace!(channel, "broker: received {body:?}"),
        }
        match decoded.body {
            FrameBody::Empty => {}
            FrameBody::Open(open) => self.on_open(open)?,
            FrameBody::Close(_) => {
                self.send(0, &Close { error: None })?;
                return Ok(false);
            }
            FrameBody::Begin(begin) => self.on_begin(channel, begin)?,
            FrameBody::End(_) => {
                self.end_session(channel);
                self.send(channel, &End { error: None })?;
            }
            FrameBody::Attach(attach) => self.on_attach(channel, attach).await?,
            FrameBody::Detach(detach) => {
                let answers_ours = self
                    .sessions
                    .get_mut(&channel)
                    .is_some_and(|session| session.detaching.remove(&detach.handle.0));
                if answers_ours {
                    return Ok(true);
                }
                // A session receiver that gives up waiting for its session is owed our attach first.
                self.answer_refused_session(channel, detach.handle.0)?;
                self.detach_link(channel, detach.handle.0);
                let reply = Detach {
                    handle: detach.handle,
                    closed: detach.closed,
                    error: None,
                };
                self.send(channel, &reply)?;
            }
            FrameBody::Flow(flow) => self.on_flow(channel, flow)?,
            FrameBody::Transfer { performative, payload } => self.on_transfer(channel, performative, &payload)?,
            FrameBody::Disposition(disposition) => self.on_disposition(channel, disposition),
        }
        Ok(true)
    }

    fn on_event(&mut self, event: Event) -> anyhow::Result<()> {
        match event {
            Event::Fetched {
                channel,
                handle,
                link,
                batch,
            } => {
                let Some(current) = self.link(channel, handle).filter(|current| current.id == link) else {
                    release(
                        &self.queue,
                        batch.into_iter().filter_map(|pending| pending.lock).collect(),
                    );
                    return Ok(());
                };
                current.fetching = None;
                current.pending.extend(batch);
                self.flush(channel, handle)?;
                self.fetch(channel, handle);
            }
            Event::Lost {
                channel,
                handle,
                link,
                error,
            } => {
                if self.link(channel, handle).is_some_and(|current| current.id == link) {
                    self.detach_with(channel, handle, Some(error))?;
                }
            }
            Event::SessionAccepted {
                channel,
                handle,
                link,
                result,
            } => self.on_session_accepted(channel, handle, link, result)?,
            Event::Stored {
                channel,
                delivery_id,
                result,
            } => {
                let state = match result {
                    Ok(()) => DeliveryState::Accepted(Accepted {}),
                    Err(mut error) => {
                        // The Python SDK reads the error's three fields by position, and the codec
                        // leaves out a trailing null: an empty `info` keeps all three.
                        error.info.get_or_insert_with(Default::default);
                        DeliveryState::Rejected(Rejected { error: Some(error) })
                    }
                };
                self.send_disposition(channel, delivery_id, Role::Receiver, state)?;
            }
            Event::Settled {
                channel,
                delivery_id,
                state,
            } => self.send_disposition(channel, delivery_id, Role::Sender, state)?,
            Event::Discharged {
                channel,
                delivery_id,
                result,
                retired,
            } => {
                let state = match result {
                    Ok(()) => {
                        for retired in retired.iter().filter(|retired| retired.confirm) {
                            if self.sessions.contains_key(&retired.channel) {
                                let outcome = retired.outcome.clone();
                                self.send_disposition(retired.channel, retired.delivery_id, Role::Sender, outcome)?;
                            }
                        }
                        DeliveryState::Accepted(Accepted {})
                    }
                    Err(error) => {
                        // Nothing was applied: the messages are as they were before the transaction.
                        for retired in &retired {
                            self.locks.hold(&retired.message);
                        }
                        self.restore(retired);
                        DeliveryState::Rejected(Rejected { error: Some(error) })
                    }
                };
                if self.sessions.contains_key(&channel) {
                    self.send_disposition(channel, delivery_id, Role::Receiver, state)?;
                }
            }
            Event::Reply {
                channel,
                node,
                reply_to,
                payload,
            } => self.reply(channel, node, reply_to, payload)?,
        }
        Ok(())
    }

    fn link(&mut self, channel: u16, handle: u32) -> Option<&mut Link> {
        self.sessions
            .get_mut(&channel)
            .and_then(|session| session.links.get_mut(&handle))
    }
}
