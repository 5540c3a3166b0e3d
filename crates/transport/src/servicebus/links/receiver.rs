//! The peek-lock receiver link: receives under a lock, settles, and forgets locks that expired.

use fe2o3_amqp::link::builder::{Builder, WithName, WithTarget, WithoutSource};
use fe2o3_amqp::link::role::ReceiverMarker;
use fe2o3_amqp::types::messaging::Target;

use super::*;
use crate::sessions::SessionLock;

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
    /// Detach now, even while others still hold the link.
    Close,
}

/// A peek-lock receiver on one queue, or on one session of a session-enabled queue.
pub struct ReceiverLink {
    pub queue: String,
    /// The link name, sent as `associated-link-name` on management requests.
    pub name: String,
    /// The session this link has locked, for a session receiver.
    pub session_id: Option<String>,
    commands: mpsc::Sender<ReceiverCommand>,
    held: Arc<Mutex<HashMap<String, Held>>>,
    stopped: CancellationToken,
}

/// How long a closing receiver waits for its detach and the end of its AMQP session.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Detaches a session receiver whose attach answer is refused, and answers `result`; its AMQP
/// session ends as it is dropped.
async fn refuse<T>(receiver: Receiver, result: Result<T, TransportError>) -> Result<T, TransportError> {
    let _ = tokio::time::timeout(CLOSE_WAIT, receiver.close()).await;
    result
}

impl ReceiverLink {
    pub async fn attach(session: &mut SessionHandle<()>, queue: &str, prefetch: u32) -> anyhow::Result<Self> {
        let name = format!("sagahost-receiver-{queue}-{}", uuid::Uuid::new_v4());
        let receiver = Self::builder(name.clone())
            .source(queue)
            .attach(session)
            .await
            .map_err(|e| attach_error("a receiver", queue, &e))?;
        Ok(Self::start(queue, name, receiver, prefetch, None))
    }

    /// Accepts a session of `queue` as the Service Bus SDKs do: attaches a receiver whose source
    /// filter names the session (`session_id`), or asks for the next available one (null), which
    /// the service may wait up to `wait` for. The attach answer's filter names the session and its
    /// properties say until when it is locked. The link owns `session`, an AMQP session of its own,
    /// and ends it when it stops. `None` when no session became available within `wait`.
    pub async fn accept(
        mut session: SessionHandle<()>,
        queue: &str,
        session_id: Option<&str>,
        wait: Duration,
        prefetch: u32,
    ) -> Result<Option<(Self, SessionLock)>, TransportError> {
        let lost = || TransportError::SessionLockLost {
            queue: queue.to_string(),
            session_id: session_id.unwrap_or_default().to_string(),
        };
        let name = format!("sagahost-session-receiver-{queue}-{}", uuid::Uuid::new_v4());
        let mut filter = FilterSet::new();
        let wanted = session_id.map_or(Value::Null, |id| Value::String(id.to_string()));
        filter.insert(Symbol::from(SESSION_FILTER), wanted);
        let mut properties = definitions::Fields::new();
        let wait_ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
        properties.insert(Symbol::from(OPERATION_TIMEOUT), Value::Uint(wait_ms));
        let attached = Self::builder(name.clone())
            .source(Source::builder().address(queue).filter(filter).build())
            .properties(properties)
            // The answer's filter carries the session id where the request had null, which fe2o3's
            // check takes for a refused filter; it is checked below instead.
            .verify_incoming_source(false)
            .attach(&mut session)
            .await;
        let receiver = match attached {
            Ok(receiver) => receiver,
            Err(ReceiverAttachError::RemoteClosedWithError(error)) => {
                let condition = match &error.condition {
                    ErrorCondition::Custom(symbol) => symbol.as_str(),
                    _ => "",
                };
                return match condition {
                    TIMEOUT_CONDITION if session_id.is_none() => Ok(None),
                    TIMEOUT_CONDITION | SESSION_CANNOT_BE_LOCKED_CONDITION | SESSION_LOCK_LOST_CONDITION => Err(lost()),
                    _ => Err(attach_error("a session receiver", queue, &error).into()),
                };
            }
            Err(error) => return Err(attach_error("a session receiver", queue, &error).into()),
        };
        let answered = receiver
            .source()
            .as_ref()
            .and_then(|source| source.filter.as_ref())
            .and_then(|filter| filter.get(&Symbol::from(SESSION_FILTER)))
            .and_then(|id| match id {
                Value::String(id) => Some(id.clone()),
                _ => None,
            });
        let locked_until =
            receiver.properties(
                |properties| match properties.as_ref()?.get(&Symbol::from(SESSION_LOCKED_UNTIL))? {
                    Value::Long(ticks) => dialect::from_dotnet_ticks(*ticks),
                    Value::Timestamp(at) => Some(codec::from_unix_millis(at.milliseconds())),
                    _ => None,
                },
            );
        let (answered, locked_until) = match (answered, session_id, locked_until) {
            // The JS SDK's check: a service that cannot lock the named session may still answer
            // the attach, naming no session or another one.
            (Some(answered), Some(wanted), _) if answered != wanted => return refuse(receiver, Err(lost())).await,
            (None, Some(_), _) => return refuse(receiver, Err(lost())).await,
            (None, None, _) => return refuse(receiver, Ok(None)).await,
            (Some(_), _, None) => {
                let unreadable = anyhow!(
                    "the session receiver on `{queue}` was answered without a valid `{SESSION_LOCKED_UNTIL}`; \
                     the broker does not speak Service Bus sessions"
                );
                return refuse(receiver, Err(unreadable.into())).await;
            }
            (Some(answered), _, Some(locked_until)) => (answered, locked_until),
        };
        let lock = SessionLock {
            queue: queue.to_string(),
            session_id: answered.clone(),
            lock_token: name.clone(),
            locked_until,
        };
        let link = Self::start(queue, name, receiver, prefetch, Some((session, answered)));
        Ok(Some((link, lock)))
    }

    /// A peek-lock receiver with manual credit (the prefetch), settled by this crate.
    fn builder(name: String) -> Builder<ReceiverMarker, Target, WithName, WithoutSource, WithTarget> {
        Receiver::builder()
            .name(name)
            .target(format!("sagahost-{}", uuid::Uuid::new_v4()))
            .receiver_settle_mode(ReceiverSettleMode::Second)
            .sender_settle_mode(SenderSettleMode::Unsettled)
            .credit_mode(CreditMode::Manual)
            .auto_accept(false)
    }

    /// Spawns the task that owns `receiver`; a session receiver's AMQP session and session id come
    /// with `session`.
    fn start(
        queue: &str,
        name: String,
        receiver: Receiver,
        prefetch: u32,
        session: Option<(SessionHandle<()>, String)>,
    ) -> Self {
        let (amqp_session, session_id) = session.unzip();
        let (commands, rx) = mpsc::channel(256);
        let held = Arc::new(Mutex::new(HashMap::new()));
        let actor = ReceiverActor {
            queue: queue.to_string(),
            receiver,
            session: amqp_session,
            prefetch,
            buffer: VecDeque::new(),
            waiters: VecDeque::new(),
            held: held.clone(),
            unwanted: Vec::new(),
        };
        Self {
            queue: queue.to_string(),
            name,
            session_id,
            commands,
            held,
            stopped: spawn_link_task(actor.run(rx)),
        }
    }

    /// Detaches the link, giving back what it received that no caller took, and waits (briefly)
    /// until it has stopped. For a session receiver the detach releases the session.
    pub async fn close(&self) {
        if self.commands.send(ReceiverCommand::Close).await.is_ok() {
            let _ = tokio::time::timeout(CLOSE_WAIT * 2, self.stopped.cancelled()).await;
        }
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
            return Err(TransportError::lock_lost(message));
        };
        if held.locked_until <= SystemTime::now() {
            return Err(TransportError::lock_lost(message));
        }
        let (reply, answer) = oneshot::channel();
        let command = ReceiverCommand::Dispose {
            info: held.info,
            settlement,
            transaction: transaction.cloned(),
            reply,
        };
        if self.commands.send(command).await.is_err() {
            return Err(TransportError::lock_lost(message));
        }
        match answer.await {
            Ok(result) => result,
            Err(_) => Err(TransportError::lock_lost(message)),
        }
    }

    /// Whether this link holds `lock_token` (with an unexpired lock).
    pub fn holds(&self, lock_token: &str) -> bool {
        let held = self.held.lock().expect("not poisoned");
        held.get(lock_token).is_some_and(|h| h.locked_until > SystemTime::now())
    }

    /// How many locks this link holds for callers (expired ones not yet forgotten included).
    pub fn held_count(&self) -> usize {
        self.held.lock().expect("not poisoned").len()
    }

    /// Records a renewed lock.
    pub fn renewed(&self, lock_token: &str, until: SystemTime) {
        if let Some(held) = self.held.lock().expect("not poisoned").get_mut(lock_token) {
            held.locked_until = until;
        }
    }

    /// Records a renewed session lock: the locks of the session's messages are the session's.
    pub fn session_renewed(&self, until: SystemTime) {
        for held in self.held.lock().expect("not poisoned").values_mut() {
            held.locked_until = until;
        }
    }
}

struct Waiter {
    max: usize,
    deadline: Instant,
    reply: Reply<Vec<ReceivedMessage>>,
}

/// How long a closing receiver waits for deliveries already on their way.
const CLOSING_WAIT: Duration = Duration::from_millis(100);

struct ReceiverActor {
    queue: String,
    receiver: Receiver,
    /// A session receiver's own AMQP session, ended after the link.
    session: Option<SessionHandle<()>>,
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
                ReceiverEvent::Command(None | Some(ReceiverCommand::Close)) => {
                    self.give_back_buffered().await;
                    break;
                }
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
        let _ = tokio::time::timeout(CLOSE_WAIT, self.receiver.close()).await;
        if let Some(mut session) = self.session.take() {
            let _ = tokio::time::timeout(CLOSE_WAIT, session.end()).await;
        }
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

    /// Closed by its owner: what arrived but no caller took goes back to the broker now, not
    /// when its lock runs out. The link is drained first (its credit used up, so the broker sends
    /// nothing more and gives back what it had locked for it), or the broker would hand the
    /// released messages straight back to this link; what was already on its way is taken in too.
    async fn give_back_buffered(&mut self) {
        let _ = tokio::time::timeout(CLOSING_WAIT, async {
            if self.receiver.drain().await.is_ok() {
                while let Ok(delivery) = self.receiver.recv::<Body<Value>>().await {
                    self.buffer.push_back(delivery);
                }
            }
        })
        .await;
        self.unwanted.extend(self.buffer.drain(..).map(DeliveryInfo::from));
        let _ = tokio::time::timeout(Duration::from_secs(5), self.release_unwanted()).await;
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
                        condition: ErrorCondition::Custom(Symbol::from(DEAD_LETTER_CONDITION)),
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

impl Link for ReceiverLink {
    fn stopped(&self) -> &CancellationToken {
        &self.stopped
    }
}
