//! The Azure Service Bus transport: the production [`Transport`], speaking AMQP 1.0 in the Service
//! Bus dialect to a namespace (or to a local Service Bus–compatible broker such as `sagahost broker`
//! or the Service Bus emulator).
//!
//! It owns one AMQP connection with one session (`live.rs` opens it: TLS, SASL, CBS tokens,
//! and the end of every operation when the connection is lost), and on it: a peek-lock receiver per consumed
//! queue, a sender per destination queue, a `$management` request/response link pair per queue
//! (for lock renewal and sessions) and the `$cbs` pair that authorizes the rest; each accepted
//! Service Bus session has a receiver in an AMQP session of its own (`sessions.rs`). A dropped connection is
//! replaced on the next operation, after an exponential backoff; messages received on the dead
//! connection cannot be settled any more ([`TransportError::LockLost`]) and come back when their
//! lock expires, so nothing is lost and nothing is settled twice. An operation in flight when its
//! connection drops ends at once (a settle as `LockLost`, a send with an error saying to send
//! again) rather than waiting for an answer that cannot come; on a connection that stays up but
//! does not answer, it ends after [`ServiceBusOptions::operation_timeout`].
//!
//! # The Service Bus dialect
//! - **Connecting**: TLS to port 5671 (plain TCP to the endpoint's port, 5672 by default, with
//!   `UseDevelopmentEmulator=true` or an `amqp://` namespace: local brokers only), `TCP_NODELAY`
//!   set, SASL `ANONYMOUS`, the namespace as the open frame's host name. [`ServiceBusTarget`] says
//!   where and as whom: a connection string, or a namespace with an Entra ID credential.
//! - **Authorization (CBS)**: before a link to an entity is attached, a token for the audience
//!   `sb://<host>/<entity>` is put to `$cbs` (`operation` = `put-token`, `name` = the audience,
//!   body = the token). With a connection string it is a SAS token (`type` =
//!   `servicebus.windows.net:sastoken`), signed for [`ServiceBusOptions::token_ttl`] and put again
//!   at 80% of it. With a credential it is an Entra ID access token for [`SERVICE_BUS_SCOPE`]
//!   (`type` = `jwt`, plus `expiration`, the token's expiry, as the SDKs send it), one token for
//!   every audience, put again with its successor at 80% of its remaining lifetime. A credential
//!   that gives no token fails the connect or the attach with an error naming the namespace and
//!   the token endpoint; a failed renewal is retried while the last token is still accepted.
//! - **Receiving**: receivers attach with `rcv-settle-mode` second and manual link credit, which is
//!   the prefetch: credit for what the waiting receives ask for, or [`ServiceBusOptions::prefetch`]
//!   if larger. The lock token is the delivery tag (a GUID in .NET byte order); the sequence
//!   number, enqueued time and lock expiry come from the `x-opt-sequence-number`,
//!   `x-opt-enqueued-time` and `x-opt-locked-until` annotations; the delivery count is the header's
//!   `delivery-count` plus one.
//! - **Settling**: complete is `accepted`, abandon is `modified` with `delivery-failed`, dead-letter
//!   is `rejected` with the error condition `com.microsoft:dead-letter` and the info
//!   `DeadLetterReason` / `DeadLetterErrorDescription`. Settling a message whose lock has expired,
//!   or that arrived on an earlier connection, fails with [`TransportError::LockLost`] without a
//!   round trip. (fe2o3-amqp does not hand a receiver the broker's answer to a disposition, so a
//!   lock the broker lost early is not seen; Service Bus then redelivers the message.)
//! - **Lock renewal**: `com.microsoft:renew-lock` on `<queue>/$management` with `lock-tokens` (an
//!   array of uuid) and the receiver's `associated-link-name`; the answer's `expirations` are the
//!   new lock expiries. Status 410 means the lock is lost.
//! - **Sessions**: a session receiver attaches with the source filter `com.microsoft:session-filter`
//!   (a plain value: the session id, or null for the next available session) and the link property
//!   `com.microsoft:timeout` (how long, in ms, the service may wait for a session), on an AMQP
//!   session of its own. The attach answer's filter names the session and its property
//!   `com.microsoft:locked-until-utc` (.NET ticks) ends the lock; a detach with
//!   `com.microsoft:timeout` means no session came, `com.microsoft:session-cannot-be-locked` that
//!   another receiver holds it. Each session is received on its own link; detaching it releases the
//!   session. `com.microsoft:renew-session-lock`, `get-session-state` and `set-session-state` on
//!   `$management` take `session-id` (and `session-state`, binary or null) and answer `expiration`
//!   or `session-state`; renewing a session message's lock renews its session. Status 410 or
//!   `com.microsoft:session-lock-lost` means the session lock is lost.
//! - **Sending**: message id, correlation id and content type in the properties, application
//!   properties as strings, the time to live in the header, the schedule in the
//!   `x-opt-scheduled-enqueue-time` annotation; a send returns once the broker accepted it.
//!
//! # Settling with outputs: one transaction
//! [`Transport::settle`] with outputs takes an AMQP transaction that a `$coordinator` link
//! declared ahead of it (`controllers.rs`: the declare's round trip stays off the settle's path).
//! It posts each output in it over a *send-via* link (attached to the input's queue, or the topic
//! of an input's subscription: the via entity, with the
//! `com.microsoft:transfer-destination-address` property naming the output's queue: Service Bus
//! only lets one transaction span entities that way), retires the input in it, and commits. Either
//! the input is settled and every output sent, or nothing happened and the input comes back when
//! its lock expires. [`Transport::atomic_settle_and_send`] is true.
//!
//! With [`ServiceBusOptions::transactions`] off (for a broker without `$coordinator`), the outputs
//! are sent first, each awaited until accepted, and only then is the input settled: at least once
//! (a crash in between delivers the input again and the outputs twice), never lost.
//!
//! # Why hand-built on fe2o3-amqp
//! `azure_messaging_servicebus` is a REST wrapper that hard-codes the cloud host, so it cannot talk
//! to a local broker. `azservicebus` pins an old fe2o3-amqp, has no transactions and no lock
//! renewal, takes `&mut self` for every operation (one message at a time), cannot set
//! `TCP_NODELAY` (44 ms stalls per round trip on loopback) and is unmaintained. The dialect is
//! small, so this module speaks it itself over fe2o3-amqp links, each owned by one task that
//! takes commands over a channel, so that settles, sends and renewals from many tasks share a link
//! without waiting on each other.

mod codec;
mod connection_string;
mod controllers;
mod dead_letters;
pub mod dialect;
pub mod entities;
mod links;
mod live;
mod sessions;
mod target;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow};
use fe2o3_amqp::types::primitives::{Array, OrderedMap, SimpleValue, Value};
use fe2o3_amqp::types::transaction::TransactionId;
use tokio::sync::Mutex;
use tokio::time::Instant;

pub use super::sas::sas_token;
pub use connection_string::{ConnectionString, Credential};
pub use target::{SERVICE_BUS_SCOPE, ServiceBusTarget};

use self::controllers::DischargeError;
use self::links::ReceiverLink;
use self::live::{Ended, Live};
use self::target::Endpoint;
use super::{Output, ReceivedMessage, Settlement, Transport, TransportError};

/// Tuning for [`ServiceBusTransport`].
#[derive(Debug, Clone)]
pub struct ServiceBusOptions {
    /// Link credit kept out per receiver even when no receive is waiting (0: only what the
    /// waiting receives ask for). Prefetched messages' locks run while they wait here.
    pub prefetch: u32,
    /// Lifetime of the SAS tokens the transport signs; they are put again at 80% of it. (Entra
    /// ID tokens live as long as their issuer says.)
    pub token_ttl: Duration,
    /// How long a settle, a send, a management or CBS request, or a connection attempt may take.
    pub operation_timeout: Duration,
    /// First wait before reconnecting after a failure; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Settle a message and send its outputs in one AMQP transaction (see the module doc).
    pub transactions: bool,
    /// The namespace's largest message: 256 KB on Standard, up to 100 MB on Premium.
    pub max_message_bytes: usize,
}

impl Default for ServiceBusOptions {
    fn default() -> Self {
        Self {
            prefetch: 0,
            token_ttl: Duration::from_secs(3600),
            operation_timeout: Duration::from_secs(60),
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            transactions: true,
            max_message_bytes: 256 << 10,
        }
    }
}

/// The Service Bus transport. Cheap to share: every method takes `&self`.
pub struct ServiceBusTransport {
    target: Arc<Endpoint>,
    options: ServiceBusOptions,
    /// The connection in use; read without waiting on a reconnect in progress.
    current: std::sync::Mutex<Option<Arc<Live>>>,
    /// Held while (re)connecting, so that one task reconnects and the others wait for it.
    reconnect: Mutex<Backoff>,
}

struct Backoff {
    /// No connection attempt before this instant.
    next_attempt: Instant,
    delay: Duration,
}

impl ServiceBusTransport {
    /// Parses `connection_string` and connects (failing fast if the namespace cannot be reached or
    /// refuses the credentials).
    pub async fn connect(connection_string: &str, options: ServiceBusOptions) -> anyhow::Result<Self> {
        Self::connect_with(&ServiceBusTarget::connection_string(connection_string)?, options).await
    }

    /// Connects to `target`: a connection string's namespace with its SAS credential, or a
    /// namespace with an Entra ID credential (failing fast if the namespace cannot be reached, or
    /// the credential gives no token).
    pub async fn connect_with(target: &ServiceBusTarget, options: ServiceBusOptions) -> anyhow::Result<Self> {
        let target = Arc::new(target.endpoint()?);
        let live = Live::open(target.clone(), &options).await?;
        Ok(Self {
            target,
            current: std::sync::Mutex::new(Some(Arc::new(live))),
            reconnect: Mutex::new(Backoff {
                next_attempt: Instant::now(),
                delay: options.min_backoff,
            }),
            options,
        })
    }

    /// The live connection, reconnecting if the last one died (no sooner than the backoff allows).
    async fn live(&self) -> Result<Arc<Live>, TransportError> {
        if let Some(live) = self.current() {
            return Ok(live);
        }
        let mut backoff = self.reconnect.lock().await;
        // Someone else may have reconnected while this task waited.
        if let Some(live) = self.current() {
            return Ok(live);
        }
        if let Some(dead) = self.current.lock().expect("not poisoned").take() {
            tracing::warn!(host = %self.target.host, "the Service Bus connection was lost; reconnecting");
            tokio::spawn(async move { dead.close().await });
        }
        let now = Instant::now();
        if now < backoff.next_attempt {
            let wait = backoff.next_attempt - now;
            return Err(anyhow!(
                "not connected to Service Bus `{}`; next attempt in {wait:?}",
                self.target.host
            )
            .into());
        }
        match Live::open(self.target.clone(), &self.options).await {
            Ok(live) => {
                let live = Arc::new(live);
                *self.current.lock().expect("not poisoned") = Some(live.clone());
                backoff.delay = self.options.min_backoff;
                tracing::info!(host = %self.target.host, "connected to Service Bus");
                Ok(live)
            }
            Err(err) => {
                backoff.next_attempt = Instant::now() + backoff.delay;
                backoff.delay = (backoff.delay * 2).min(self.options.max_backoff);
                Err(err
                    .context(format!("connecting to Service Bus `{}`", self.target.host))
                    .into())
            }
        }
    }

    /// The connection in use if it is alive; never connects.
    fn current(&self) -> Option<Arc<Live>> {
        self.current
            .lock()
            .expect("not poisoned")
            .clone()
            .filter(|live| live.is_alive())
    }

    /// Sends every output concurrently and waits for all to be accepted. In a transaction the
    /// sends go through the transaction's via queue.
    async fn send_all(
        &self,
        live: &Arc<Live>,
        outputs: Vec<Output>,
        transaction: Option<(&str, &TransactionId)>,
    ) -> Result<(), TransportError> {
        let (via, id) = transaction.unzip();
        // Submitted in order, answered together: a queue gets the outputs in the order given
        // (which a session-enabled queue keeps), without one round trip per message.
        let mut answers = Vec::with_capacity(outputs.len());
        for output in outputs {
            let sender = live.sender(&output.queue, via).await?;
            answers.push(sender.submit(codec::outgoing(&output.message), id).await?);
        }
        let results = futures::future::join_all(answers).await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(())
    }

    /// The live connection and the receiver link that hold `message`'s lock, or
    /// [`TransportError::LockLost`] when the lock is no longer ours (the connection or the
    /// link it came on is gone, or it was settled).
    async fn holder(&self, message: &ReceivedMessage) -> Result<(Arc<Live>, Arc<ReceiverLink>), TransportError> {
        let lost = || TransportError::lock_lost(message);
        let live = self.current().ok_or_else(lost)?;
        let holds = |receiver: &Arc<ReceiverLink>| receiver.holds(&message.lock_token);
        // A message with a session id came on its session's link, unless its queue is not
        // session-enabled (Service Bus takes session ids there too): then on the queue's receiver.
        let mut receiver = None;
        if let Some(session_id) = message.session_id.as_deref() {
            receiver = live
                .existing_receiver(&message.queue, Some(session_id))
                .await
                .filter(holds);
        }
        if receiver.is_none() {
            receiver = live.existing_receiver(&message.queue, None).await.filter(holds);
        }
        Ok((live, receiver.ok_or_else(lost)?))
    }

    /// How many message locks this client keeps for callers on `queue`'s receiver (sessions'
    /// receivers aside; expired ones not yet forgotten included): what it would try to settle or
    /// renew.
    pub async fn locks_held(&self, queue: &str) -> usize {
        let Some(live) = self.current() else { return 0 };
        live.existing_receiver(queue, None)
            .await
            .map_or(0, |receiver| receiver.held_count())
    }

    /// [`Transport::settle`] on the connection and link that hold the lock, without its bounds.
    async fn settle_on(
        &self,
        live: &Arc<Live>,
        receiver: &ReceiverLink,
        message: &ReceivedMessage,
        settlement: Settlement,
        outputs: Vec<Output>,
    ) -> Result<(), TransportError> {
        if outputs.is_empty() {
            return receiver.settle(message, settlement, None).await;
        }
        if self.options.transactions {
            return self
                .settle_in_transaction(live, receiver, message, settlement, outputs)
                .await;
        }
        // Outputs first, each accepted by the broker; then the input.
        self.send_all(live, outputs, None).await?;
        receiver.settle(message, settlement, None).await
    }

    /// Sends `outputs` and settles `message` in one transaction: all of it or none.
    async fn settle_in_transaction(
        &self,
        live: &Arc<Live>,
        receiver: &ReceiverLink,
        message: &ReceivedMessage,
        settlement: Settlement,
        outputs: Vec<Output>,
    ) -> Result<(), TransportError> {
        let transaction = live.transaction().await?;
        let id = transaction.id();
        let work = async {
            // Dead-letter queues and subscriptions take no sends: the transaction goes through
            // the queue or the topic.
            let via = dialect::transfer_entity(&message.queue);
            self.send_all(live, outputs, Some((via, id))).await?;
            receiver.settle(message, settlement, Some(id)).await
        };
        if let Err(err) = work.await {
            // Nothing took effect; the input's lock runs out and it comes back.
            if let Err(rollback) = transaction.rollback().await {
                tracing::warn!(queue = %message.queue, "rolling back a transaction failed: {rollback}");
            }
            return Err(err);
        }
        transaction.commit().await.map_err(|e| match e {
            DischargeError::Coordinator(e) if format!("{e:?}").contains("lock") => TransportError::lock_lost(message),
            e => anyhow!(
                "committing the settlement of message `{}` in queue `{}` with its outputs: {e}",
                message.message_id,
                message.queue
            )
            .into(),
        })
    }

    /// Closes the connection (links, session, connection) politely.
    pub async fn close(&self) {
        let live = self.current.lock().expect("not poisoned").take();
        if let Some(live) = live {
            live.close().await;
        }
    }
}

impl Transport for ServiceBusTransport {
    async fn receive(&self, queue: &str, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, TransportError> {
        let live = self.live().await?;
        let receiver = live.receiver(queue).await?;
        receiver.receive(max, wait).await
    }

    async fn settle(
        &self,
        message: &ReceivedMessage,
        settlement: Settlement,
        outputs: Vec<Output>,
    ) -> Result<(), TransportError> {
        // Cheap early answer: a lock we no longer hold is not worth sending outputs for.
        let (live, receiver) = self.holder(message).await?;
        // An unanswered settle must end (the message then comes back when its lock expires), or
        // a shutdown would wait on it for ever.
        let timeout = self.options.operation_timeout;
        let settle = self.settle_on(&live, &receiver, message, settlement, outputs);
        match live.run(timeout, settle).await {
            Ended::Done(settled) => settled,
            Ended::TimedOut => Err(anyhow!(
                "settling message `{}` on `{}` was not answered within {timeout:?}",
                message.message_id,
                message.queue
            )
            .into()),
            // Whether a commit in flight took effect is unknown; either way the lock is gone.
            Ended::ConnectionLost => Err(TransportError::lock_lost(message)),
        }
    }

    /// Inside a session, renews the session's lock instead: Service Bus refuses to renew the lock
    /// of a message received in a session, whose lock is the session's.
    async fn renew_lock(&self, message: &ReceivedMessage) -> Result<SystemTime, TransportError> {
        let (live, receiver) = self.holder(message).await?;
        if let Some(session_id) = receiver.session_id.as_deref() {
            return match self.renew_session_on(&live, &receiver, session_id).await {
                Err(TransportError::SessionLockLost { .. }) => Err(TransportError::lock_lost(message)),
                renewed => renewed,
            };
        }
        let token: uuid::Uuid = message
            .lock_token
            .parse()
            .with_context(|| format!("lock token `{}` is not a GUID", message.lock_token))?;
        let management = live.management(&message.queue).await?;
        let mut body = OrderedMap::new();
        body.insert(
            Value::String("lock-tokens".into()),
            Value::Array(Array(vec![Value::Uuid((*token.as_bytes()).into())])),
        );
        let timeout = self.options.operation_timeout;
        let properties = vec![
            (
                "com.microsoft:server-timeout".to_string(),
                SimpleValue::Uint(u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX)),
            ),
            (
                "associated-link-name".to_string(),
                SimpleValue::String(receiver.name.clone()),
            ),
        ];
        let response = management
            .request("com.microsoft:renew-lock", properties, Value::Map(body), timeout)
            .await?;
        match response.status {
            200 => {}
            410 => return Err(TransportError::lock_lost(message)),
            _ if response.condition.as_deref() == Some(dialect::LOCK_LOST_CONDITION) => {
                return Err(TransportError::lock_lost(message));
            }
            status => {
                return Err(anyhow!(
                    "renewing the lock on message `{}` in queue `{}` failed: {status} {}",
                    message.message_id,
                    message.queue,
                    response.description
                )
                .into());
            }
        }
        let until = expirations(&response.body)
            .and_then(|e| e.into_iter().next())
            .with_context(|| {
                format!(
                    "the renew-lock answer for queue `{}` has no `expirations`",
                    message.queue
                )
            })?;
        receiver.renewed(&message.lock_token, until);
        Ok(until)
    }

    async fn send(&self, outputs: Vec<Output>) -> Result<(), TransportError> {
        if outputs.is_empty() {
            return Ok(());
        }
        let live = self.live().await?;
        let timeout = self.options.operation_timeout;
        let host = &self.target.host;
        match live.run(timeout, self.send_all(&live, outputs, None)).await {
            Ended::Done(sent) => sent,
            Ended::TimedOut => Err(anyhow!(
                "Service Bus `{host}` did not accept the messages within {timeout:?}; send them again"
            )
            .into()),
            Ended::ConnectionLost => Err(anyhow!(
                "the connection to Service Bus `{host}` was lost before the messages were accepted; send them again"
            )
            .into()),
        }
    }

    fn atomic_settle_and_send(&self) -> bool {
        self.options.transactions
    }

    fn max_message_bytes(&self) -> usize {
        self.options.max_message_bytes
    }
}

/// `expirations` (an array of timestamps) from a renew-lock answer.
fn expirations(body: &Value) -> Option<Vec<SystemTime>> {
    let Value::Map(map) = body else { return None };
    let (_, value) = map.iter().find(|(k, _)| {
        matches!(k, Value::String(s) if s == "expirations") || matches!(k, Value::Symbol(s) if s.0 == "expirations")
    })?;
    let items: Vec<&Value> = match value {
        Value::Array(array) => array.0.iter().collect(),
        Value::List(list) => list.iter().collect(),
        _ => return None,
    };
    items
        .into_iter()
        .map(|v| match v {
            Value::Timestamp(t) => Some(codec::from_unix_millis(t.milliseconds())),
            _ => None,
        })
        .collect()
}
