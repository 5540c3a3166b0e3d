//! AMQP links shared across tasks: each fe2o3 link is owned by one task that takes commands over a
//! channel and answers on a oneshot, so many callers settle, send and renew at once over one link
//! without waiting on each other's round trips.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow, bail};
use fe2o3_amqp::link::delivery::DeliveryInfo;
use fe2o3_amqp::link::receiver::{CreditMode, TerminalDeliveryState};
use fe2o3_amqp::link::{Receiver, Sender};
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::transaction::{TransactionBase, TransactionPosting, TransactionRetirement};
use fe2o3_amqp::types::definitions::{self, ErrorCondition, ReceiverSettleMode, SenderSettleMode};
use fe2o3_amqp::types::messaging::{
    Accepted, AmqpValue, ApplicationProperties, Body, Data, Message, MessageId, Modified, Outcome, Properties, Rejected,
};
use fe2o3_amqp::types::primitives::{OrderedMap, SimpleValue, Symbol, Value};
use fe2o3_amqp::types::transaction::TransactionId;
use futures::FutureExt as _;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::codec;
use crate::transport::{ReceivedMessage, Settlement, TransportError};

/// Dead-letter error condition and its info keys (Service Bus dialect).
const DEAD_LETTER: &str = "com.microsoft:dead-letter";
const DEAD_LETTER_REASON: &str = "DeadLetterReason";
const DEAD_LETTER_DESCRIPTION: &str = "DeadLetterErrorDescription";

type Reply<T> = oneshot::Sender<Result<T, TransportError>>;

fn lock_lost(queue: &str, message_id: &str) -> TransportError {
    TransportError::LockLost {
        queue: queue.to_string(),
        message_id: message_id.to_string(),
    }
}

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

/// A message handed out under a lock on this link.
struct Held {
    info: DeliveryInfo,
    locked_until: SystemTime,
}

enum ReceiverCommand {
    Receive {
        max: usize,
        wait: Duration,
        reply: Reply<Vec<ReceivedMessage>>,
    },
    Dispose {
        info: DeliveryInfo,
        settlement: Settlement,
        transaction: Option<TransactionId>,
        reply: Reply<()>,
    },
}

/// A peek-lock receiver on one queue.
pub struct ReceiverLink {
    pub queue: String,
    /// The link name, sent as `associated-link-name` on management requests.
    pub name: String,
    commands: mpsc::Sender<ReceiverCommand>,
    held: Arc<Mutex<HashMap<String, Held>>>,
    stopped: CancellationToken,
}

impl ReceiverLink {
    pub async fn attach(session: &mut SessionHandle<()>, queue: &str, prefetch: u32) -> anyhow::Result<Self> {
        let name = format!("sagahost-receiver-{queue}-{}", uuid::Uuid::new_v4());
        let receiver = Receiver::builder()
            .name(name.clone())
            .source(queue)
            .target(format!("sagahost-{}", uuid::Uuid::new_v4()))
            .receiver_settle_mode(ReceiverSettleMode::Second)
            .sender_settle_mode(SenderSettleMode::Unsettled)
            .credit_mode(CreditMode::Manual)
            .auto_accept(false)
            .attach(session)
            .await
            .map_err(|e| attach_error("a receiver", queue, &e))?;
        let (commands, rx) = mpsc::channel(256);
        let held = Arc::new(Mutex::new(HashMap::new()));
        let actor = ReceiverActor {
            queue: queue.to_string(),
            receiver,
            prefetch,
            buffer: VecDeque::new(),
            waiters: VecDeque::new(),
            held: held.clone(),
            unwanted: Vec::new(),
        };
        Ok(Self {
            queue: queue.to_string(),
            name,
            commands,
            held,
            stopped: spawn_link_task(actor.run(rx)),
        })
    }

    pub async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, TransportError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(ReceiverCommand::Receive { max, wait, reply })
            .await
            .map_err(|_| anyhow!("the receiver on queue `{}` is closed", self.queue))?;
        answer
            .await
            .map_err(|_| anyhow!("the receiver on queue `{}` closed while receiving", self.queue))?
    }

    /// Settles a message received on this link, inside `transaction` if given (then the settlement
    /// takes effect when the transaction commits). A token this link does not hold (received on an
    /// earlier connection, or settled already) or whose lock has run out is [`TransportError::LockLost`].
    pub async fn settle(
        &self,
        message: &ReceivedMessage,
        settlement: Settlement,
        transaction: Option<&TransactionId>,
    ) -> Result<(), TransportError> {
        let held = self.held.lock().expect("not poisoned").remove(&message.lock_token);
        let Some(held) = held else {
            return Err(lock_lost(&self.queue, &message.message_id));
        };
        if held.locked_until <= SystemTime::now() {
            return Err(lock_lost(&self.queue, &message.message_id));
        }
        let (reply, answer) = oneshot::channel();
        let command = ReceiverCommand::Dispose {
            info: held.info,
            settlement,
            transaction: transaction.cloned(),
            reply,
        };
        if self.commands.send(command).await.is_err() {
            return Err(lock_lost(&self.queue, &message.message_id));
        }
        match answer.await {
            Ok(result) => result,
            Err(_) => Err(lock_lost(&self.queue, &message.message_id)),
        }
    }

    /// Whether this link holds `lock_token` (with an unexpired lock).
    pub fn holds(&self, lock_token: &str) -> bool {
        let held = self.held.lock().expect("not poisoned");
        held.get(lock_token).is_some_and(|h| h.locked_until > SystemTime::now())
    }

    /// How many locks this link holds for callers (expired ones not yet forgotten included).
    #[cfg(test)]
    pub fn held_count(&self) -> usize {
        self.held.lock().expect("not poisoned").len()
    }

    /// Records a renewed lock.
    pub fn renewed(&self, lock_token: &str, until: SystemTime) {
        if let Some(held) = self.held.lock().expect("not poisoned").get_mut(lock_token) {
            held.locked_until = until;
        }
    }
}

struct Waiter {
    max: usize,
    deadline: Instant,
    reply: Reply<Vec<ReceivedMessage>>,
}

struct ReceiverActor {
    queue: String,
    receiver: Receiver,
    prefetch: u32,
    buffer: VecDeque<fe2o3_amqp::link::delivery::Delivery<Body<Value>>>,
    waiters: VecDeque<Waiter>,
    held: Arc<Mutex<HashMap<String, Held>>>,
    /// Handed to a caller that had gone: to be released.
    unwanted: Vec<DeliveryInfo>,
}

enum ReceiverEvent {
    Command(Option<ReceiverCommand>),
    Delivery(Box<Result<fe2o3_amqp::link::delivery::Delivery<Body<Value>>, fe2o3_amqp::link::RecvError>>),
    Timeout,
}

impl ReceiverActor {
    async fn run(mut self, mut commands: mpsc::Receiver<ReceiverCommand>) {
        loop {
            // Receives whose callers are gone (cancelled) no longer want credit or messages.
            self.waiters.retain(|w| !w.reply.is_closed());
            self.serve_waiters();
            if let Err(err) = self.release_unwanted().await {
                link_failed("receiver", &self.queue, &format!("{err:#}"));
                break;
            }
            if let Err(err) = self.top_up_credit().await {
                link_failed("receiver", &self.queue, &err.to_string());
                break;
            }
            let deadline = self.waiters.iter().map(|w| w.deadline).min();
            let event = tokio::select! {
                command = commands.recv() => ReceiverEvent::Command(command),
                delivery = self.receiver.recv::<Body<Value>>() => ReceiverEvent::Delivery(Box::new(delivery)),
                () = sleep_until(deadline) => ReceiverEvent::Timeout,
            };
            match event {
                ReceiverEvent::Command(None) => break,
                ReceiverEvent::Command(Some(ReceiverCommand::Receive { max, wait, reply })) => {
                    self.waiters.push_back(Waiter {
                        max: max.max(1),
                        deadline: Instant::now() + wait,
                        reply,
                    });
                }
                ReceiverEvent::Command(Some(ReceiverCommand::Dispose {
                    info,
                    settlement,
                    transaction,
                    reply,
                })) => {
                    let result = self.dispose(info, settlement, transaction).await;
                    let failed = result.is_err();
                    let _ = reply.send(result);
                    if failed {
                        break;
                    }
                }
                ReceiverEvent::Delivery(delivery) => {
                    let delivery = match *delivery {
                        Ok(delivery) => delivery,
                        Err(err) => {
                            link_failed("receiver", &self.queue, &err.to_string());
                            break;
                        }
                    };
                    self.buffer.push_back(delivery);
                    // Take whatever else already arrived, so one receive returns a batch.
                    while let Some(Ok(delivery)) = self.receiver.recv::<Body<Value>>().now_or_never() {
                        self.buffer.push_back(delivery);
                    }
                }
                ReceiverEvent::Timeout => {
                    let now = Instant::now();
                    while let Some(waiter) = self.waiters.front() {
                        if waiter.deadline > now {
                            break;
                        }
                        let waiter = self.waiters.pop_front().expect("front exists");
                        let _ = waiter.reply.send(Ok(Vec::new()));
                    }
                }
            }
        }
        // Fail whoever waits; messages held on this link can no longer be settled.
        for waiter in self.waiters.drain(..) {
            let _ = waiter.reply.send(Err(
                anyhow!("the receiver link on queue `{}` was lost", self.queue).into()
            ));
        }
        self.held.lock().expect("not poisoned").clear();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.receiver.close()).await;
    }

    /// Keeps enough credit out for the waiting receives (and the prefetch).
    async fn top_up_credit(&mut self) -> anyhow::Result<()> {
        let wanted: usize = self.waiters.iter().map(|w| w.max).sum();
        let wanted = u32::try_from(wanted).unwrap_or(u32::MAX).max(self.prefetch);
        let buffered = u32::try_from(self.buffer.len()).unwrap_or(u32::MAX);
        let desired = wanted.saturating_sub(buffered);
        if self.receiver.credit() < desired {
            self.receiver.set_credit(desired).await.context("setting link credit")?;
        }
        Ok(())
    }

    fn serve_waiters(&mut self) {
        if self.buffer.is_empty() || self.waiters.is_empty() {
            return;
        }
        let now = SystemTime::now();
        // Locks that ran out in a caller's hands (its step started too late, or it gave up
        // before settling) are never settled here: forget them as new ones are handed out.
        self.held
            .lock()
            .expect("not poisoned")
            .retain(|_, held| held.locked_until > now);
        while !self.buffer.is_empty() {
            let Some(waiter) = self.waiters.pop_front() else { return };
            if waiter.reply.is_closed() {
                continue;
            }
            let mut batch = Vec::new();
            while batch.len() < waiter.max {
                let Some(delivery) = self.buffer.pop_front() else { break };
                match codec::received(&self.queue, delivery.delivery_tag(), delivery.message()) {
                    // A lock that ran out while buffered is the broker's again: skip it.
                    Ok(message) if message.locked_until <= now => {}
                    Ok(message) => {
                        let info = DeliveryInfo::from(delivery);
                        self.held.lock().expect("not poisoned").insert(
                            message.lock_token.clone(),
                            Held {
                                info,
                                locked_until: message.locked_until,
                            },
                        );
                        batch.push(message);
                    }
                    Err(err) => {
                        // Not ours to handle: leave it locked so Service Bus redelivers it and
                        // dead-letters it after the queue's max delivery count.
                        tracing::error!(queue = %self.queue, "cannot read a received message: {err:#}");
                    }
                }
            }
            if batch.is_empty() {
                self.waiters.push_front(waiter);
                continue;
            }
            if let Err(Ok(batch)) = waiter.reply.send(Ok(batch)) {
                // The caller gave up (its receive was cancelled): give the locks back.
                let mut held = self.held.lock().expect("not poisoned");
                for message in batch {
                    if let Some(held) = held.remove(&message.lock_token) {
                        self.unwanted.push(held.info);
                    }
                }
            }
        }
    }

    /// Releases deliveries no caller took: the broker hands them out again without counting a
    /// delivery.
    async fn release_unwanted(&mut self) -> anyhow::Result<()> {
        for info in std::mem::take(&mut self.unwanted) {
            self.receiver
                .release(info)
                .await
                .context("releasing an unwanted delivery")?;
        }
        Ok(())
    }

    async fn dispose(
        &mut self,
        info: DeliveryInfo,
        settlement: Settlement,
        transaction: Option<TransactionId>,
    ) -> Result<(), TransportError> {
        let state = match settlement {
            Settlement::Complete => TerminalDeliveryState::Accepted(Accepted {}),
            Settlement::Abandon => TerminalDeliveryState::Modified(Modified {
                delivery_failed: Some(true),
                undeliverable_here: None,
                message_annotations: None,
            }),
            Settlement::DeadLetter {
                reason,
                description,
                properties,
            } => {
                // Service Bus sets the error info's other entries as application properties
                // of the dead-lettered message (the SDKs' properties-to-modify).
                let mut fields = OrderedMap::new();
                for (name, value) in properties {
                    fields.insert(Symbol::from(name), Value::String(value));
                }
                fields.insert(Symbol::from(DEAD_LETTER_REASON), Value::String(reason));
                fields.insert(Symbol::from(DEAD_LETTER_DESCRIPTION), Value::String(description));
                TerminalDeliveryState::Rejected(Rejected {
                    error: Some(definitions::Error {
                        condition: ErrorCondition::Custom(Symbol::from(DEAD_LETTER)),
                        description: None,
                        info: Some(Box::new(fields)),
                    }),
                })
            }
        };
        let result = match transaction {
            Some(id) => {
                let outcome = match state {
                    TerminalDeliveryState::Accepted(accepted) => Outcome::Accepted(accepted),
                    TerminalDeliveryState::Rejected(rejected) => Outcome::Rejected(rejected),
                    TerminalDeliveryState::Released(released) => Outcome::Released(released),
                    TerminalDeliveryState::Modified(modified) => Outcome::Modified(modified),
                };
                TransactionRef(id).retire(&mut self.receiver, info, outcome).await
            }
            None => self.receiver.dispose(info, state).await,
        };
        result.map_err(|e| anyhow!("settling on queue `{}`: {e}", self.queue).into())
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
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

struct SendCommand {
    message: Message<Data>,
    transaction: Option<TransactionId>,
    reply: Reply<()>,
}

/// A sender to one queue, directly or through a via queue (Service Bus send-via, which lets the
/// send join a transaction on the via queue).
pub struct SenderLink {
    pub queue: String,
    commands: mpsc::Sender<SendCommand>,
    stopped: CancellationToken,
}

/// The attach property that makes a sender a send-via link to this destination.
const TRANSFER_DESTINATION: &str = "com.microsoft:transfer-destination-address";

impl SenderLink {
    /// Attaches a sender to `queue`; with `via`, the link is attached to the via queue and the
    /// messages go on to `queue`.
    pub async fn attach(
        session: &mut SessionHandle<()>,
        queue: &str,
        via: Option<&str>,
    ) -> Result<Self, TransportError> {
        let mut properties = definitions::Fields::new();
        if via.is_some() {
            properties.insert(Symbol::from(TRANSFER_DESTINATION), Value::String(queue.to_string()));
        }
        let sender = Sender::builder()
            .name(format!("sagahost-sender-{queue}-{}", uuid::Uuid::new_v4()))
            .source(format!("sagahost-{}", uuid::Uuid::new_v4()))
            .target(via.unwrap_or(queue))
            .properties(properties)
            .sender_settle_mode(SenderSettleMode::Unsettled)
            .attach(session)
            .await
            .map_err(|e| {
                let text = format!("{e} ({e:?})");
                if is_not_found(&text) {
                    TransportError::UnknownQueue(queue.to_string())
                } else {
                    anyhow!("attaching a sender to queue `{queue}`: {text}").into()
                }
            })?;
        let (commands, rx) = mpsc::channel(256);
        Ok(Self {
            queue: queue.to_string(),
            commands,
            stopped: spawn_link_task(run_sender(queue.to_string(), sender, rx)),
        })
    }

    /// Sends, inside `transaction` if given, and waits for the broker to accept the message (in a
    /// transaction: to accept it provisionally, for when the transaction commits).
    pub async fn send(
        &self,
        message: Message<Data>,
        transaction: Option<&TransactionId>,
    ) -> Result<(), TransportError> {
        let (reply, answer) = oneshot::channel();
        let transaction = transaction.cloned();
        self.commands
            .send(SendCommand {
                message,
                transaction,
                reply,
            })
            .await
            .map_err(|_| anyhow!("the sender to queue `{}` is closed", self.queue))?;
        answer
            .await
            .map_err(|_| anyhow!("the sender to queue `{}` closed while sending", self.queue))?
    }
}

async fn run_sender(queue: String, mut sender: Sender, mut commands: mpsc::Receiver<SendCommand>) {
    while let Some(SendCommand {
        message,
        transaction,
        reply,
    }) = commands.recv().await
    {
        let sent = match transaction {
            Some(id) => TransactionRef(id)
                .post_batchable(&mut sender, message)
                .await
                .map(|outcome| outcome.map(|result| result.map_err(|e| e.to_string())).boxed())
                .map_err(|e| e.to_string()),
            None => sender
                .send_batchable(message)
                .await
                .map(|outcome| outcome.map(|result| result.map_err(|e| e.to_string())).boxed())
                .map_err(|e| e.to_string()),
        };
        match sent {
            Ok(outcome) => {
                let queue = queue.clone();
                // Many sends are in flight at once; each waits for its own outcome.
                tokio::spawn(async move {
                    let result = match outcome.await {
                        Ok(Outcome::Accepted(_)) => Ok(()),
                        Ok(other) => Err(anyhow!("queue `{queue}` did not accept the message: {other:?}").into()),
                        Err(text) => {
                            if is_not_found(&text) {
                                Err(TransportError::UnknownQueue(queue))
                            } else {
                                Err(anyhow!("sending to queue `{queue}`: {text}").into())
                            }
                        }
                    };
                    let _ = reply.send(result);
                });
            }
            Err(err) => {
                link_failed("sender", &queue, &err.to_string());
                let _ = reply.send(Err(anyhow!("sending to queue `{queue}`: {err}").into()));
                break;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), sender.close()).await;
}

/// An answer from a request/response node (`$cbs`, `<queue>/$management`).
#[derive(Debug)]
pub struct Response {
    pub status: i32,
    pub description: String,
    pub condition: Option<String>,
    pub body: Value,
}

struct Request {
    operation: String,
    properties: Vec<(String, SimpleValue)>,
    body: Value,
    reply: oneshot::Sender<anyhow::Result<Response>>,
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<anyhow::Result<Response>>>>>;

/// A request/response link pair to an AMQP management node.
pub struct RequestLink {
    pub node: String,
    commands: mpsc::Sender<Request>,
    stopped: CancellationToken,
}

impl RequestLink {
    pub async fn attach(session: &mut SessionHandle<()>, node: &str) -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4();
        let reply_to = format!("sagahost-reply-{id}");
        let sender = Sender::builder()
            .name(format!("{node}-sender-{id}"))
            .source(reply_to.clone())
            .target(node)
            .sender_settle_mode(SenderSettleMode::Unsettled)
            .attach(session)
            .await
            .map_err(|e| attach_error("a sender", node, &e))?;
        let receiver = Receiver::builder()
            .name(format!("{node}-receiver-{id}"))
            .source(node)
            .target(reply_to.clone())
            .receiver_settle_mode(ReceiverSettleMode::First)
            .credit_mode(CreditMode::Auto(64))
            .auto_accept(true)
            .attach(session)
            .await
            .map_err(|e| attach_error("a receiver", node, &e))?;
        let (commands, rx) = mpsc::channel(256);
        Ok(Self {
            node: node.to_string(),
            commands,
            stopped: spawn_link_task(run_requests(node.to_string(), reply_to, sender, receiver, rx)),
        })
    }

    /// Sends one request and waits (up to `timeout`) for its response.
    pub async fn request(
        &self,
        operation: &str,
        properties: Vec<(String, SimpleValue)>,
        body: Value,
        timeout: Duration,
    ) -> anyhow::Result<Response> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            operation: operation.to_string(),
            properties,
            body,
            reply,
        };
        self.commands
            .send(request)
            .await
            .map_err(|_| anyhow!("the link to `{}` is closed", self.node))?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(response)) => response,
            Ok(Err(_)) => bail!("the link to `{}` closed before `{operation}` was answered", self.node),
            Err(_) => bail!("`{operation}` on `{}` was not answered within {timeout:?}", self.node),
        }
    }
}

enum RequestEvent {
    Command(Option<Request>),
    Response(Box<Result<fe2o3_amqp::link::delivery::Delivery<Body<Value>>, fe2o3_amqp::link::RecvError>>),
}

async fn run_requests(
    node: String,
    reply_to: String,
    mut sender: Sender,
    mut receiver: Receiver,
    mut commands: mpsc::Receiver<Request>,
) {
    let pending: Pending = Arc::default();
    loop {
        let event = tokio::select! {
            command = commands.recv() => RequestEvent::Command(command),
            response = receiver.recv::<Body<Value>>() => RequestEvent::Response(Box::new(response)),
        };
        match event {
            RequestEvent::Command(None) => break,
            RequestEvent::Command(Some(request)) => {
                let id = uuid::Uuid::new_v4().to_string();
                let mut properties = OrderedMap::new();
                properties.insert("operation".to_string(), SimpleValue::String(request.operation));
                for (key, value) in request.properties {
                    properties.insert(key, value);
                }
                let message = Message::builder()
                    .properties(Properties {
                        message_id: Some(MessageId::String(id.clone())),
                        reply_to: Some(reply_to.clone()),
                        ..Properties::default()
                    })
                    .application_properties(ApplicationProperties(properties))
                    .value(request.body)
                    .build();
                pending.lock().expect("not poisoned").insert(id.clone(), request.reply);
                match sender.send_batchable(message).await {
                    Ok(outcome) => {
                        let (pending, node) = (pending.clone(), node.clone());
                        tokio::spawn(async move {
                            let failure = match outcome.await {
                                Ok(Outcome::Accepted(_)) => return,
                                Ok(other) => anyhow!("`{node}` refused the request: {other:?}"),
                                Err(err) => anyhow!("sending a request to `{node}`: {err}"),
                            };
                            if let Some(reply) = pending.lock().expect("not poisoned").remove(&id) {
                                let _ = reply.send(Err(failure));
                            }
                        });
                    }
                    Err(err) => {
                        if let Some(reply) = pending.lock().expect("not poisoned").remove(&id) {
                            let _ = reply.send(Err(anyhow!("sending a request to `{node}`: {err}")));
                        }
                        break;
                    }
                }
            }
            RequestEvent::Response(answer) => {
                let message = match *answer {
                    Ok(delivery) => delivery.into_message(),
                    Err(err) => {
                        link_failed("response", &node, &err.to_string());
                        break;
                    }
                };
                let Some(id) = message
                    .properties
                    .as_ref()
                    .and_then(|p| p.correlation_id.as_ref())
                    .map(codec::message_id_text)
                else {
                    tracing::warn!(%node, "response without a correlation id ignored");
                    continue;
                };
                if let Some(reply) = pending.lock().expect("not poisoned").remove(&id) {
                    let _ = reply.send(Ok(response(message)));
                }
            }
        }
    }
    for (_, reply) in pending.lock().expect("not poisoned").drain() {
        let _ = reply.send(Err(anyhow!("the link to `{node}` was lost")));
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), sender.close()).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), receiver.close()).await;
}

/// Reads status and body; CBS says `status-code`, management says `statusCode`.
fn response(message: Message<Body<Value>>) -> Response {
    let properties = message.application_properties.map(|a| a.0).unwrap_or_default();
    let find = |names: &[&str]| {
        properties
            .iter()
            .find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n)))
            .map(|(_, v)| v.clone())
    };
    let status = match find(&["statusCode", "status-code"]) {
        Some(SimpleValue::Int(n)) => n,
        Some(SimpleValue::Uint(n)) => i32::try_from(n).unwrap_or(i32::MAX),
        Some(SimpleValue::Long(n)) => i32::try_from(n).unwrap_or(i32::MAX),
        Some(SimpleValue::Short(n)) => i32::from(n),
        Some(SimpleValue::Ushort(n)) => i32::from(n),
        _ => 0,
    };
    let text = |v: Option<SimpleValue>| match v {
        Some(SimpleValue::String(s)) => Some(s),
        Some(SimpleValue::Symbol(s)) => Some(s.0),
        _ => None,
    };
    let description = text(find(&["statusDescription", "status-description"])).unwrap_or_default();
    let condition = text(find(&["errorCondition", "error-condition"]));
    let body = match message.body {
        Body::Value(AmqpValue(v)) => v,
        _ => Value::Null,
    };
    Response {
        status,
        description,
        condition,
        body,
    }
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

impl Link for ReceiverLink {
    fn stopped(&self) -> &CancellationToken {
        &self.stopped
    }
}

impl Link for SenderLink {
    fn stopped(&self) -> &CancellationToken {
        &self.stopped
    }
}

impl Link for RequestLink {
    fn stopped(&self) -> &CancellationToken {
        &self.stopped
    }
}
