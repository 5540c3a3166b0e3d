//! One client connection: the protocol headers, SASL, then the AMQP connection, its sessions and
//! links, run as one task that owns the socket. Work that waits on the queue (fetching messages
//! for a receiver, storing sent messages, settling, management requests) runs in spawned tasks
//! that report back to this task over a channel, so the connection keeps answering frames.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use fe2o3_amqp::frames::amqp::{FrameBody, FrameDecoder};
use fe2o3_amqp_types::definitions::{
    AmqpError, ConnectionError, Error as AmqpErrorInfo, ErrorCondition, Handle, LinkError, Role, SenderSettleMode,
};
use fe2o3_amqp_types::messaging::{Accepted, DeliveryState, Rejected, Released, TargetArchetype};
use fe2o3_amqp_types::performatives::{Attach, Begin, Close, Detach, Disposition, End, Flow, Open, Transfer};
use fe2o3_amqp_types::primitives::{Binary, Symbol};
use fe2o3_amqp_types::sasl::{SaslCode, SaslInit, SaslMechanisms, SaslOutcome};
use fe2o3_amqp_types::transaction::Declared;
use futures::StreamExt;
use sagahost_transport::embedded::EmbeddedQueue;
use sagahost_transport::sas;
use sagahost_transport::servicebus::dialect::{LOCK_LOST_CONDITION, lock_token_tag};
use sagahost_transport::{Output, ReceivedMessage, Settlement, Transport, TransportError};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_util::bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, FramedRead, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use super::auth::{self, Grants};
use super::management::{self, Locks, Node};
use super::message::{self, Control, Outgoing};
use super::transactions::{self, Retired, Transactions};
use super::{BrokerConfig, DEAD_LETTER_SUFFIX, MANAGEMENT_SUFFIX, entity_path};

/// The largest frame this broker accepts, advertised in `open`.
const MAX_FRAME_SIZE: u32 = 1024 * 1024;
/// Credit granted to a client's sender, topped up when half is used.
const SENDER_CREDIT: u32 = 1000;
/// The session window advertised both ways: far more transfers than a client keeps in flight.
const SESSION_WINDOW: u32 = 1 << 24;
/// How long one fetch waits on the queue before checking whether it is still wanted.
const FETCH_WAIT: Duration = Duration::from_millis(500);
/// Most messages one fetch locks and holds encoded in memory, however much credit the client
/// gives: the next fetch starts as soon as these are sent.
const MAX_FETCH: usize = 256;

const PROTOCOL_AMQP: u8 = 0;
const PROTOCOL_TLS: u8 = 2;
const PROTOCOL_SASL: u8 = 3;
const FRAME_TYPE_AMQP: u8 = 0;
const FRAME_TYPE_SASL: u8 = 1;

/// Runs one connection until the client closes it, the socket fails or `shutdown` is cancelled.
pub async fn run(
    stream: TcpStream,
    queue: EmbeddedQueue,
    config: Arc<BrokerConfig>,
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
        locks: Arc::new(Mutex::new(HashMap::new())),
        next_link_id: 0,
        transactions: Transactions::default(),
        grants,
    };
    let result = connection.run(frames, inbox, shutdown).await;
    connection.release_all();
    result
}

/// Reads the protocol header(s), doing SASL when asked; returns what the connection may use
/// before it puts any token (everything after SASL PLAIN with the key, else nothing).
async fn handshake(
    reader: &mut (impl AsyncReadExt + Unpin),
    writer: &mut OwnedWriteHalf,
    key: &auth::SharedAccessKey,
) -> anyhow::Result<Grants> {
    let mut grants = Grants::default();
    let mut header = read_header(reader).await?;
    if header == PROTOCOL_TLS {
        writer.write_all(&protocol_header(PROTOCOL_SASL)).await?;
        bail!("the client asked for TLS, which this broker does not offer");
    }
    if header == PROTOCOL_SASL {
        writer.write_all(&protocol_header(PROTOCOL_SASL)).await?;
        let mechanisms = SaslMechanisms {
            sasl_server_mechanisms: auth::SASL_MECHANISMS.map(Symbol::from).to_vec().into(),
        };
        writer.write_all(&frame(FRAME_TYPE_SASL, 0, &mechanisms, &[])?).await?;
        let init_frame = read_raw_frame(reader).await?;
        let body = frame_body(&init_frame)?;
        let init: SaslInit = serde_amqp::from_slice(body).context("decoding sasl-init")?;
        let mechanism = init.mechanism.as_str();
        let code = match mechanism {
            "ANONYMOUS" | "MSSBCBS" => SaslCode::Ok,
            "PLAIN"
                if key.matches_plain(
                    init.initial_response
                        .as_deref()
                        .map_or(&[][..], |response| response.as_slice()),
                ) =>
            {
                grants = Grants::namespace();
                SaslCode::Ok
            }
            _ => SaslCode::Auth,
        };
        let outcome = SaslOutcome {
            code: code.clone(),
            additional_data: None,
        };
        writer.write_all(&frame(FRAME_TYPE_SASL, 0, &outcome, &[])?).await?;
        if code != SaslCode::Ok {
            bail!("SASL `{mechanism}` failed: unknown mechanism or wrong credentials");
        }
        header = read_header(reader).await?;
    }
    if header != PROTOCOL_AMQP {
        writer.write_all(&protocol_header(PROTOCOL_AMQP)).await?;
        bail!("unsupported protocol id {header}");
    }
    writer.write_all(&protocol_header(PROTOCOL_AMQP)).await?;
    Ok(grants)
}

fn protocol_header(id: u8) -> [u8; 8] {
    [b'A', b'M', b'Q', b'P', id, 1, 0, 0]
}

async fn read_header(reader: &mut (impl AsyncReadExt + Unpin)) -> anyhow::Result<u8> {
    let mut header = [0u8; 8];
    reader.read_exact(&mut header).await?;
    if &header[..4] != b"AMQP" || header[5..] != [1, 0, 0] {
        bail!("not an AMQP 1.0 protocol header: {header:?}");
    }
    Ok(header[4])
}

/// Reads one frame, length included, outside the main loop (during SASL).
async fn read_raw_frame(reader: &mut (impl AsyncReadExt + Unpin)) -> anyhow::Result<Vec<u8>> {
    let size = reader.read_u32().await? as usize;
    if !(8..=MAX_FRAME_SIZE as usize).contains(&size) {
        bail!("bad frame size {size}");
    }
    let mut frame = vec![0u8; size];
    frame[..4].copy_from_slice(&(size as u32).to_be_bytes());
    reader.read_exact(&mut frame[4..]).await?;
    Ok(frame)
}

fn frame_body(frame: &[u8]) -> anyhow::Result<&[u8]> {
    let offset = usize::from(frame[4]) * 4;
    frame.get(offset..).ok_or_else(|| anyhow!("bad data offset"))
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

/// A client's message being received over several frames.
struct Partial {
    delivery_id: u32,
    settled: bool,
    /// The transaction the delivery is posted in, from its first transfer's state.
    transaction: Option<Binary>,
    format: u32,
    payload: BytesMut,
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
    next_tag: u64,
    // Where we receive (the client sends):
    granted: u32,
    partial: Option<Partial>,
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
    Stored {
        channel: u16,
        delivery_id: u32,
        result: Result<(), String>,
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
    locks: Locks,
    next_link_id: u64,
    transactions: Transactions,
    /// The entities this connection's SASL login and `$cbs` tokens let it use.
    grants: Grants,
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
        let decoded = FrameDecoder {}
            .decode(&mut raw)
            .map_err(|error| anyhow!("decoding a frame: {error:?}"))?
            .ok_or_else(|| anyhow!("an incomplete frame"))?;
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

    fn on_open(&mut self, open: Open) -> anyhow::Result<()> {
        self.remote_max_frame = (open.max_frame_size.0 as usize).clamp(512, MAX_FRAME_SIZE as usize);
        if let Some(idle) = open.idle_time_out.filter(|idle| *idle > 0) {
            // Half the client's idle timeout, as the spec advises.
            let half = Duration::from_millis(u64::from(idle) / 2);
            let config = Arc::make_mut(&mut self.config);
            config.heartbeat = Some(config.heartbeat.map_or(half, |mine| mine.min(half)));
        }
        let reply = Open {
            container_id: "sagahost-broker".into(),
            hostname: None,
            max_frame_size: MAX_FRAME_SIZE.into(),
            channel_max: open.channel_max,
            idle_time_out: None,
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        self.opened = true;
        self.send(0, &reply)
    }

    fn on_begin(&mut self, channel: u16, begin: Begin) -> anyhow::Result<()> {
        self.sessions.insert(
            channel,
            Session {
                next_outgoing_id: 0,
                next_incoming_id: begin.next_outgoing_id,
                next_delivery_id: 0,
                links: HashMap::new(),
                detaching: HashSet::new(),
                unsettled: HashMap::new(),
            },
        );
        let reply = Begin {
            remote_channel: Some(channel),
            next_outgoing_id: 0,
            incoming_window: SESSION_WINDOW,
            outgoing_window: SESSION_WINDOW,
            handle_max: Handle(u32::MAX),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        self.send(channel, &reply)
    }

    fn end_session(&mut self, channel: u16) {
        if let Some(session) = self.sessions.remove(&channel) {
            for (_, link) in session.links {
                self.retire_link(link);
            }
        }
    }

    fn detach_link(&mut self, channel: u16, handle: u32) {
        let link = self
            .sessions
            .get_mut(&channel)
            .and_then(|session| session.links.remove(&handle));
        if let Some(link) = link {
            self.retire_link(link);
        }
    }

    /// Detaches a link on the broker's own initiative, with `error` saying why.
    fn detach_with(&mut self, channel: u16, handle: u32, error: Option<AmqpErrorInfo>) -> anyhow::Result<()> {
        self.detach_link(channel, handle);
        if let Some(session) = self.sessions.get_mut(&channel) {
            session.detaching.insert(handle);
        }
        let detach = Detach {
            handle: Handle(handle),
            closed: true,
            error,
        };
        self.send(channel, &detach)
    }

    /// Stops a link's fetching and gives back the messages it locked but never sent. Messages sent
    /// and not yet settled keep their locks until they expire, as in Service Bus.
    fn retire_link(&self, mut link: Link) {
        if let Some(fetching) = link.fetching.take() {
            fetching.cancel();
        }
        let locked: Vec<ReceivedMessage> = link.pending.drain(..).filter_map(|pending| pending.lock).collect();
        release(&self.queue, locked);
    }

    /// On the way out: every link's unsent locked messages go back.
    fn release_all(&mut self) {
        let channels: Vec<u16> = self.sessions.keys().copied().collect();
        for channel in channels {
            self.end_session(channel);
        }
    }

    async fn on_attach(&mut self, channel: u16, attach: Attach) -> anyhow::Result<()> {
        let handle = attach.handle.0;
        // The client's role: a client sender means we receive.
        let client_sends = attach.role == Role::Sender;
        let address = if client_sends {
            attach.target.as_deref().and_then(|target| match target {
                TargetArchetype::Target(target) => target.address.clone(),
                #[allow(unreachable_patterns)]
                _ => None,
            })
        } else {
            attach.source.as_ref().and_then(|source| source.address.clone())
        };
        let path = address.as_deref().map(entity_path).unwrap_or_default();
        let coordinator = client_sends && matches!(attach.target.as_deref(), Some(TargetArchetype::Coordinator(_)));
        let kind = if coordinator {
            Ok(Kind::Coordinator)
        } else {
            self.classify(&path, client_sends, &attach).await
        };
        let our_role = if client_sends { Role::Receiver } else { Role::Sender };
        let (kind, error) = match kind {
            Ok(kind) => (Some(kind), None),
            Err(error) => (None, Some(error)),
        };
        let reply = Attach {
            name: attach.name.clone(),
            handle: attach.handle.clone(),
            role: our_role,
            snd_settle_mode: attach.snd_settle_mode.clone(),
            rcv_settle_mode: attach.rcv_settle_mode.clone(),
            source: if error.is_some() && !client_sends {
                None
            } else {
                attach.source.clone()
            },
            target: if error.is_some() && client_sends {
                None
            } else {
                attach.target.clone()
            },
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: if client_sends { None } else { Some(0) },
            max_message_size: Some(self.config.max_message_size),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        self.send(channel, &reply)?;
        let Some(kind) = kind else {
            return self.detach_with(channel, handle, error);
        };
        self.next_link_id += 1;
        let link = Link {
            id: self.next_link_id,
            kind,
            delivery_count: 0,
            credit: 0,
            pending: VecDeque::new(),
            fetching: None,
            next_tag: 0,
            granted: 0,
            partial: None,
        };
        let Some(session) = self.sessions.get_mut(&channel) else {
            bail!("attach on channel {channel}, which has no session");
        };
        if let Some(old) = session.links.insert(handle, link) {
            self.retire_link(old);
        }
        if client_sends {
            self.grant_credit(channel, handle)?;
        }
        Ok(())
    }

    /// Decides what a link to `path` is, creating the queue it names if needed.
    async fn classify(&self, path: &str, client_sends: bool, attach: &Attach) -> Result<Kind, AmqpErrorInfo> {
        let node = if path == "$cbs" {
            Some(Node::Cbs)
        } else if let Some(entity) = path.strip_suffix(MANAGEMENT_SUFFIX) {
            let (queue, dead_letter) = match entity.strip_suffix(DEAD_LETTER_SUFFIX) {
                Some(queue) => (queue, true),
                None => (entity, false),
            };
            self.authorize(entity)?;
            self.ensure_queue(queue).await?;
            Some(Node::Management {
                queue: queue.to_owned(),
                dead_letter,
            })
        } else {
            None
        };
        if let Some(node) = node {
            return Ok(if client_sends {
                Kind::NodeIn { node }
            } else {
                let address = attach.target.as_deref().and_then(|target| match target {
                    TargetArchetype::Target(target) => target.address.clone(),
                    #[allow(unreachable_patterns)]
                    _ => None,
                });
                Kind::NodeOut { node, address }
            });
        }
        let (queue, dead_letter) = match path.strip_suffix(DEAD_LETTER_SUFFIX) {
            Some(queue) => (queue, true),
            None => (path, false),
        };
        if queue.is_empty() || queue.contains('/') || queue.starts_with('$') {
            return Err(amqp_error(
                ErrorCondition::AmqpError(AmqpError::NotFound),
                format!("`{path}` is not a queue address this broker serves"),
            ));
        }
        self.authorize(path)?;
        self.ensure_queue(queue).await?;
        if client_sends {
            if dead_letter {
                return Err(amqp_error(
                    ErrorCondition::AmqpError(AmqpError::NotAllowed),
                    "a dead-letter queue cannot be sent to",
                ));
            }
            // A send-via link: attached to the via queue, delivering to the destination.
            if let Some(destination) = transactions::transfer_destination(attach.properties.as_ref()) {
                let destination = entity_path(&destination);
                if destination.is_empty() || destination.contains('/') || destination.starts_with('$') {
                    return Err(amqp_error(
                        ErrorCondition::AmqpError(AmqpError::NotFound),
                        format!("`{destination}` is not a queue address this broker serves"),
                    ));
                }
                self.authorize(&destination)?;
                self.ensure_queue(&destination).await?;
                return Ok(Kind::QueueIn { queue: destination });
            }
            return Ok(Kind::QueueIn { queue: queue.into() });
        }
        Ok(Kind::QueueOut {
            queue: queue.into(),
            dead_letter,
            receive_and_delete: attach.snd_settle_mode == SenderSettleMode::Settled,
        })
    }

    /// Whether this connection's grants cover `entity` now.
    fn authorize(&self, entity: &str) -> Result<(), AmqpErrorInfo> {
        if self.grants.allows(entity, sas::now_unix_secs()) {
            Ok(())
        } else {
            Err(auth::unauthorized(entity))
        }
    }

    async fn ensure_queue(&self, queue: &str) -> Result<(), AmqpErrorInfo> {
        self.queue
            .ensure_queue(self.config.queue_settings(queue))
            .await
            .map(drop)
            .map_err(|error| amqp_error(ErrorCondition::AmqpError(AmqpError::InternalError), error.to_string()))
    }

    /// Tops a client sender's credit back up to [`SENDER_CREDIT`].
    fn grant_credit(&mut self, channel: u16, handle: u32) -> anyhow::Result<()> {
        let Some(session) = self.sessions.get_mut(&channel) else {
            return Ok(());
        };
        let next_incoming_id = session.next_incoming_id;
        let next_outgoing_id = session.next_outgoing_id;
        let Some(link) = session.links.get_mut(&handle) else {
            return Ok(());
        };
        link.granted = SENDER_CREDIT;
        let flow = Flow {
            next_incoming_id: Some(next_incoming_id),
            incoming_window: SESSION_WINDOW,
            next_outgoing_id,
            outgoing_window: SESSION_WINDOW,
            handle: Some(Handle(handle)),
            delivery_count: Some(link.delivery_count),
            link_credit: Some(SENDER_CREDIT),
            available: None,
            drain: false,
            echo: false,
            properties: None,
        };
        self.send(channel, &flow)
    }

    fn on_flow(&mut self, channel: u16, flow: Flow) -> anyhow::Result<()> {
        let Some(handle) = flow.handle.map(|handle| handle.0) else {
            // A session-level flow: our windows are wide enough not to need it.
            if flow.echo {
                self.send_session_flow(channel)?;
            }
            return Ok(());
        };
        let Some(link) = self
            .sessions
            .get_mut(&channel)
            .and_then(|session| session.links.get_mut(&handle))
        else {
            return Ok(());
        };
        if matches!(link.kind, Kind::QueueIn { .. } | Kind::NodeIn { .. }) {
            // The client sends on this link: its flow only reports its state.
            link.delivery_count = flow.delivery_count.unwrap_or(link.delivery_count);
            if flow.echo {
                self.grant_credit(channel, handle)?;
            }
            return Ok(());
        }
        // Credit per AMQP 1.0 2.6.7: the receiver's delivery count plus its credit, less ours.
        let their_count = flow.delivery_count.unwrap_or(0);
        let limit = their_count.wrapping_add(flow.link_credit.unwrap_or(0));
        link.credit = limit.wrapping_sub(link.delivery_count);
        if link.credit > u32::MAX / 2 {
            link.credit = 0;
        }
        self.flush(channel, handle)?;
        let Some(link) = self.link(channel, handle) else {
            return Ok(());
        };
        if flow.drain {
            // Use up the credit without messages: release the ones locked but not sent.
            if let Some(fetching) = link.fetching.take() {
                fetching.cancel();
            }
            let locked: Vec<ReceivedMessage> = link.pending.drain(..).filter_map(|pending| pending.lock).collect();
            link.delivery_count = link.delivery_count.wrapping_add(link.credit);
            link.credit = 0;
            release(&self.queue, locked);
            self.send_link_flow(channel, handle, true)?;
        } else if flow.echo {
            self.send_link_flow(channel, handle, false)?;
        }
        self.fetch(channel, handle);
        Ok(())
    }

    fn link(&mut self, channel: u16, handle: u32) -> Option<&mut Link> {
        self.sessions
            .get_mut(&channel)
            .and_then(|session| session.links.get_mut(&handle))
    }

    fn send_session_flow(&mut self, channel: u16) -> anyhow::Result<()> {
        let Some(session) = self.sessions.get(&channel) else {
            return Ok(());
        };
        let flow = Flow {
            next_incoming_id: Some(session.next_incoming_id),
            incoming_window: SESSION_WINDOW,
            next_outgoing_id: session.next_outgoing_id,
            outgoing_window: SESSION_WINDOW,
            handle: None,
            delivery_count: None,
            link_credit: None,
            available: None,
            drain: false,
            echo: false,
            properties: None,
        };
        self.send(channel, &flow)
    }

    fn send_link_flow(&mut self, channel: u16, handle: u32, drain: bool) -> anyhow::Result<()> {
        let Some(session) = self.sessions.get(&channel) else {
            return Ok(());
        };
        let Some(link) = session.links.get(&handle) else {
            return Ok(());
        };
        let flow = Flow {
            next_incoming_id: Some(session.next_incoming_id),
            incoming_window: SESSION_WINDOW,
            next_outgoing_id: session.next_outgoing_id,
            outgoing_window: SESSION_WINDOW,
            handle: Some(Handle(handle)),
            delivery_count: Some(link.delivery_count),
            link_credit: Some(link.credit),
            available: Some(u32::try_from(link.pending.len()).unwrap_or(u32::MAX)),
            drain,
            echo: false,
            properties: None,
        };
        self.send(channel, &flow)
    }

    /// Starts fetching from the queue for a receiving client whose credit exceeds what is waiting.
    fn fetch(&mut self, channel: u16, handle: u32) {
        let queue = self.queue.clone();
        let events = self.events.clone();
        let Some(link) = self.link(channel, handle) else {
            return;
        };
        let Kind::QueueOut {
            queue: name,
            dead_letter,
            receive_and_delete,
        } = link.kind.clone()
        else {
            return;
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
                let fetched = fetch_batch(&queue, &name, dead_letter, receive_and_delete, wanted, first_tag).await;
                match fetched {
                    Ok(batch) if batch.is_empty() => continue,
                    Ok(batch) => break batch,
                    Err(error) => {
                        tracing::warn!(queue = %name, error = %error, "broker: receiving from the queue failed");
                        tokio::time::sleep(FETCH_WAIT).await;
                    }
                }
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
    fn flush(&mut self, channel: u16, handle: u32) -> anyhow::Result<()> {
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
                self.locks
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .insert(lock.lock_token.clone(), lock.clone());
                session.unsettled.insert(delivery_id, lock);
            }
        }
        Ok(())
    }

    fn on_transfer(&mut self, channel: u16, transfer: Transfer, payload: &[u8]) -> anyhow::Result<()> {
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
                let store = self.queue.clone();
                let events = self.events.clone();
                tokio::spawn(async move {
                    let result = store_messages(&store, &queue, partial.format, &partial.payload).await;
                    if let Err(error) = &result {
                        tracing::warn!(queue = %queue, error = %error, "broker: a sent message was not stored");
                    }
                    if !partial.settled {
                        let _ = events.send(Event::Stored {
                            channel,
                            delivery_id: partial.delivery_id,
                            result: result.map_err(|error| format!("{error:#}")),
                        });
                    }
                });
            }
            Kind::NodeIn { node: Node::Cbs } => {
                if !partial.settled {
                    self.send_disposition(
                        channel,
                        partial.delivery_id,
                        Role::Receiver,
                        DeliveryState::Accepted(Accepted {}),
                    )?;
                }
                self.on_cbs_request(channel, &partial.payload)?;
            }
            Kind::NodeIn {
                node:
                    Node::Management {
                        queue: name,
                        dead_letter,
                    },
            } => {
                if !partial.settled {
                    self.send_disposition(
                        channel,
                        partial.delivery_id,
                        Role::Receiver,
                        DeliveryState::Accepted(Accepted {}),
                    )?;
                }
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
            }
            Kind::QueueOut { .. } | Kind::NodeOut { .. } => {
                bail!("the client sent on a link where it receives");
            }
        }
        if low_credit {
            self.grant_credit(channel, handle)?;
        }
        Ok(())
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
        let reply = auth::put_token(&self.config.key, &mut self.grants, &request, sas::now_unix_secs())?;
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
            Ok(outputs) => match self.transactions.post(&id, outputs) {
                Ok(()) => transactions::posted(id),
                Err(error) => DeliveryState::Rejected(Rejected { error: Some(error) }),
            },
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
                let declared = Declared {
                    txn_id: self.transactions.declare(),
                };
                return self.send_disposition(channel, delivery_id, Role::Receiver, DeliveryState::Declared(declared));
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
        let Some((retired, commit)) = self.transactions.discharge(&id, fail) else {
            let state = DeliveryState::Rejected(Rejected {
                error: Some(transactions::unknown_id(&id)),
            });
            return self.send_disposition(channel, delivery_id, Role::Receiver, state);
        };
        let Some(work) = commit else {
            // Rolled back: what it retired is locked and unsettled again, as before.
            self.restore(retired);
            return self.send_disposition(
                channel,
                delivery_id,
                Role::Receiver,
                DeliveryState::Accepted(Accepted {}),
            );
        };
        {
            let mut locks = self.locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for retired in &retired {
                locks.remove(&retired.message.lock_token);
            }
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

    /// Hands deliveries retired in a transaction that did not commit back to their sessions.
    fn restore(&mut self, retired: Vec<Retired>) {
        for retired in retired {
            if let Some(session) = self.sessions.get_mut(&retired.channel) {
                session.unsettled.insert(retired.delivery_id, retired.message);
            }
        }
    }

    fn send_disposition(
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

    fn on_disposition(&mut self, channel: u16, disposition: Disposition) {
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
            self.locks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&message.lock_token);
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
            Event::Stored {
                channel,
                delivery_id,
                result,
            } => {
                let state = match result {
                    Ok(()) => DeliveryState::Accepted(Accepted {}),
                    Err(description) => DeliveryState::Rejected(Rejected {
                        error: Some(amqp_error(
                            ErrorCondition::AmqpError(AmqpError::InternalError),
                            description,
                        )),
                    }),
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
                        let locks = Arc::clone(&self.locks);
                        let mut held = locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                        for retired in &retired {
                            held.insert(retired.message.lock_token.clone(), retired.message.clone());
                        }
                        drop(held);
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

    /// Sends a node's reply on the client's link for it, the one whose address is `reply_to` when
    /// there are several.
    fn reply(&mut self, channel: u16, node: Node, reply_to: Option<String>, payload: Vec<u8>) -> anyhow::Result<()> {
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

/// One fetch: up to `max` messages, encoded for delivery, waiting up to [`FETCH_WAIT`].
async fn fetch_batch(
    queue: &EmbeddedQueue,
    name: &str,
    dead_letter: bool,
    receive_and_delete: bool,
    max: usize,
    first_tag: u64,
) -> anyhow::Result<Vec<Pending>> {
    let mut batch = Vec::new();
    if dead_letter {
        let letters = queue.receive_dead_letters(name, max, FETCH_WAIT).await?;
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
        lock: (!deleted).then_some(message),
    }
}

fn encode_received(message: &ReceivedMessage, dead_letter: Option<(&str, &str, &str)>) -> anyhow::Result<Vec<u8>> {
    Outgoing {
        message_id: &message.message_id,
        correlation_id: message.correlation_id.as_deref(),
        content_type: message.content_type.as_deref(),
        properties: &message.properties,
        body: &message.body,
        sequence_number: message.sequence_number,
        prior_deliveries: message.delivery_count.saturating_sub(1),
        enqueued_time: message.enqueued_time,
        locked_until: Some(message.locked_until),
        scheduled_enqueue_time: None,
        dead_letter,
    }
    .encode()
}

async fn store_messages(queue: &EmbeddedQueue, name: &str, format: u32, payload: &[u8]) -> anyhow::Result<()> {
    let outputs = message::decode_transfer(format, payload)?
        .into_iter()
        .map(|incoming| {
            Ok(Output {
                queue: name.to_owned(),
                message: incoming.into_outgoing()?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    queue.send(outputs).await?;
    Ok(())
}

/// Gives locks back without counting the deliveries, in the background.
fn release(queue: &EmbeddedQueue, messages: Vec<ReceivedMessage>) {
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
