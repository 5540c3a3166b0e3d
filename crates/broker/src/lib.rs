//! `sagahost broker`: a local Azure Service Bus–compatible AMQP 1.0 broker over the embedded
//! durable queue, so that the official Azure SDKs and sagahost's own Service Bus client can be
//! tested with no cloud and no Docker.
//!
//! # What it owns
//! The listening socket and every client connection on it; the mapping of Service Bus entities to
//! embedded queues (`addresses.rs`: a queue exists from the first time any client names it, with
//! the settings of [`BrokerConfig`]; topics and their subscriptions exist when configured in
//! [`BrokerConfig::topics`] or created at run time through the embedded queue's topic API); and
//! the translation between AMQP messages and the queue's records
//! (`message.rs`). Durability, locks, delivery counts, scheduling and dead-lettering are the
//! embedded queue's: the broker only speaks the protocol.
//!
//! On a second listener it can also serve Service Bus's entity-management REST API
//! ([`serve_entities`], the `entities/` module): Atom entries with `QueueDescription` XML over plain
//! HTTP, so the SDKs' `ServiceBusAdministrationClient` can create, update, get, list and delete
//! queues, and KEDA's `azure-servicebus` scaler can read their `CountDetails`. It checks the same SAS
//! tokens as `$cbs`, with the same key. Queues created there keep their settings in the queue
//! database across restarts; queues created on first use over AMQP still take [`BrokerConfig`]'s.
//! The module doc of `entities/` lists its routes, what it refuses, and how to point the Python
//! admin client (which always speaks `https://`) at plain HTTP.
//!
//! ```no_run
//! # async fn run(queue: sagahost_transport::embedded::EmbeddedQueue) -> anyhow::Result<()> {
//! use sagahost_broker::{BrokerConfig, serve_entities, serve_with};
//! use tokio::net::TcpListener;
//! use tokio_util::sync::CancellationToken;
//!
//! let (amqp, http) = (TcpListener::bind("127.0.0.1:5672").await?, TcpListener::bind("127.0.0.1:5300").await?);
//! let (config, shutdown) = (BrokerConfig::default(), CancellationToken::new());
//! let entities = tokio::spawn(serve_entities(http, queue.clone(), config.clone(), shutdown.clone()));
//! serve_with(amqp, queue, config, shutdown).await?;
//! entities.await??;
//! # Ok(())
//! # }
//! ```
//!
//! # The Service Bus dialect it speaks
//! - SASL `MSSBCBS` and `ANONYMOUS` (then tokens on `$cbs`), `PLAIN` with the key name and key,
//!   or no SASL at all. No TLS.
//! - `$cbs`: `put-token` with a SAS token signed with the configured key ([`SharedAccessKey`],
//!   by default the Service Bus emulator's) is answered `202 Accepted` and authorizes the entities
//!   its `sr` covers; any other token is answered `401`. A link to an entity no valid token covers
//!   is detached with `amqp:unauthorized-access` (`auth.rs`). A `jwt` is accepted only if it is
//!   one of [`BrokerConfig::bearer_tokens`] (below).
//! - `<entity>/$management` and `<entity>/$DeadLetterQueue/$management` (queues and subscriptions): `com.microsoft:renew-lock`,
//!   `schedule-message`, `cancel-scheduled-message`, `peek-message` and `update-disposition`, with
//!   `statusCode` / `statusDescription` (and `errorCondition` on failure) in the reply's
//!   application properties (`management.rs`). Locks are shared by all connections, so a client
//!   may renew or settle by lock token after the link or connection it received on is gone, as
//!   the JavaScript SDK does when a settle times out. A token for `<queue>/$management` alone
//!   opens that node.
//! - Deliveries carry the lock token as a 16-byte GUID delivery tag (in .NET byte order, as the
//!   SDKs read it), the `x-opt-sequence-number`, `x-opt-enqueued-time`, `x-opt-locked-until` (and
//!   for dead letters `x-opt-deadletter-source`) message annotations, and the delivery count in the
//!   header (deliveries before this one). Dead letters carry `DeadLetterReason` and
//!   `DeadLetterErrorDescription` application properties. Sent messages may carry
//!   `x-opt-scheduled-enqueue-time`, and batches (message format `0x80013700`, one encoded message
//!   per `data` section) are unpacked.
//! - `<queue>/$DeadLetterQueue` can be received from, under a lock like the queue itself.
//! - Topics: a sender may attach to a topic; each message is copied to every subscription one of
//!   whose rules matches it (true, false, correlation and SQL filters, see
//!   `sagahost_transport::filter`) and dropped when none does. Receivers attach to
//!   `<topic>/Subscriptions/<subscription>` and its `/$DeadLetterQueue`, which behave as a queue
//!   and its dead-letter queue do (each subscription with its own lock duration and max delivery
//!   count), and `$management` on them works as on queues (`schedule-message` and
//!   `cancel-scheduled-message` on the topic's). A receiver on a topic or a sender to a
//!   subscription is refused with `amqp:not-allowed`, an unknown subscription with
//!   `amqp:not-found`. A SAS token for a topic covers its subscriptions. Filters see a message's
//!   id, correlation id, content type, subject, to, reply-to, session id (group id) and
//!   application properties; the four without a column in the embedded queue are kept in
//!   reserved application properties (`message.rs`).
//! - `<topic>/Subscriptions/<subscription>/$management` also answers the rule operations of the
//!   SDKs' AMQP rule managers: `com.microsoft:add-rule` (SQL and correlation filters; SQL rule
//!   actions are refused with `400`), `com.microsoft:remove-rule` and
//!   `com.microsoft:enumerate-rules` (`management/rules.rs`). A filter that does not parse is
//!   refused with `400` and an error naming the character where parsing stopped.
//! - Sessions: a queue declared with `requires_session` ([`BrokerConfig::queues`], or
//!   `RequiresSession` through the entity endpoint) takes only messages with a session id (the
//!   AMQP `group-id`; others are rejected with `amqp:not-allowed`) and is received from by session
//!   receivers only: a receiver whose source has the `com.microsoft:session-filter` (a session id,
//!   or null for the next available session, waited for up to the client's `com.microsoft:timeout`
//!   attach property or 60 s) is answered once the session is locked, with its id in the filter
//!   and `com.microsoft:locked-until-utc` in the attach properties, and then gets that session's
//!   messages in order. No session in time: `com.microsoft:timeout`; a named session another
//!   receiver holds: `com.microsoft:session-cannot-be-locked`; a plain receiver on a session queue
//!   or a session receiver on any other entity: `amqp:not-allowed`. Closing the receiver releases
//!   the session with its unsettled messages. `$management` answers
//!   `com.microsoft:renew-session-lock`, `get-session-state` and `set-session-state` for sessions
//!   a receiver of this broker holds (else `com.microsoft:session-lock-lost`), and `peek-message`
//!   with a `session-id` (`connection/session_links.rs`, `management/sessions.rs`). Every delivered
//!   message carries its session id as its `group-id`.
//! - `$coordinator`: AMQP local transactions (declare, transactional posts and dispositions,
//!   discharge), applied in one embedded-queue commit; sender links may be send-via links (the
//!   `com.microsoft:transfer-destination-address` attach property), as Service Bus uses them for
//!   settle-and-send across queues (`transactions.rs`).
//! - Peek-lock receivers (sender settle mode unsettled) settle with `accepted` = complete,
//!   `released` = give the lock back without counting the delivery, `modified` = abandon (with or
//!   without `delivery-failed`: the SDKs differ), `rejected` = dead-letter (reason and
//!   description from the error's `DeadLetterReason` / `DeadLetterErrorDescription` info, whose
//!   keys may be strings, as the JavaScript SDK sends them, or symbols; `connection/lenient.rs`).
//!   A frame the broker cannot decode closes the connection with `amqp:decode-error`. With
//!   receiver settle mode `second` the broker confirms with the outcome it applied, or `rejected`
//!   with `com.microsoft:message-lock-lost` when the lock was gone. A receiver attaching with
//!   sender settle mode `settled` gets receive-and-delete: messages are removed as they are taken.
//! - Each link advertises [`BrokerConfig::max_message_size`] and a delivery that grows past it,
//!   over however many frames, is refused before more of it is buffered: the link is detached
//!   with `amqp:link:message-size-exceeded`, as Service Bus does, and the connection goes on.
//! - Credit-based flow: a receiver gets as many messages as its link credit allows; while it has
//!   credit and the queue is empty, one task per link waits on the queue's arrival notifier (no
//!   busy polling); `drain` is honoured. Messages a client received but never settled stay locked
//!   until the lock expires, then are delivered again, as in Service Bus.
//!
//! # Entra ID tokens
//! Service Bus also takes Microsoft Entra ID access tokens: put on `$cbs` with `type` = `jwt` and
//! `name` = the audience, and sent to the entity API as `Authorization: Bearer`. It validates
//! them against Entra ID's signing keys and the identity's roles, which cannot run here. So the
//! broker accepts exactly the tokens listed in [`BrokerConfig::bearer_tokens`] (a test issues
//! them from its own token endpoint and lists them) and refuses every other jwt with `401`, as it
//! refuses a bad SAS token. An accepted jwt on `$cbs` grants its audience's entity path until
//! the put-token's `expiration`, so a client that does not put a new token in time cannot
//! attach new links; on the entity endpoint an accepted bearer token covers every entity. This
//! checks what a client sends and when, never that a token is genuine: it is for testing
//! clients, not for guarding anything.
//!
//! # Debugging a client
//! `RUST_LOG=sagahost_broker=trace` logs every performative the broker receives and
//! sends, per channel (transfers without their payload, only its size).
//!
//! # Why the protocol engine is hand-written
//! fe2o3-amqp's acceptor gives each link a [`fe2o3_amqp::Sender`], which writes its own 4-byte
//! counter as the delivery tag (Service Bus clients read the lock token from a 16-byte tag and fail
//! on anything else), does not expose the link credit (so the broker could not lock only as many
//! messages as the client asked for), and resolves a delivery's outcome only through its own
//! future, with no way to answer a receiver-settle-mode-`second` disposition with a different
//! outcome such as `message-lock-lost`. So the connection, session and link state machines here are
//! the broker's own (the `connection/` module); fe2o3-amqp still provides the
//! performative and message types, their codec (`serde_amqp`) and the frame decoder.

mod addresses;
mod auth;
mod connection;
mod entities;
mod management;
mod message;
mod transactions;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sagahost_transport::embedded::{EmbeddedQueue, QueueSettings, TopicSettings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use management::Locks;

pub use auth::{BearerToken, SharedAccessKey};
pub use entities::serve_entities;

/// The suffix of a management node address.
const MANAGEMENT_SUFFIX: &str = "/$management";

/// How the broker runs.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Lock duration of queues created on first use (Service Bus's default: 30 s).
    pub lock_duration: Duration,
    /// Deliveries after which a message of a queue created on first use is dead-lettered (10).
    pub max_delivery_count: u32,
    /// Send an empty frame this often; set from the client's idle timeout when it asks for one.
    pub heartbeat: Option<Duration>,
    /// How long a new connection has for its protocol headers and SASL (10 s): a client that
    /// connects and says nothing is disconnected instead of holding the connection.
    pub handshake_timeout: Duration,
    /// The key SAS tokens and SASL PLAIN credentials are checked against (by default the Service
    /// Bus emulator's `RootManageSharedAccessKey` / `SAS_KEY_VALUE`).
    pub key: SharedAccessKey,
    /// Tokens this broker accepts as `jwt` on `$cbs` and as `Bearer` on the entity endpoint: a
    /// stand-in for Entra ID validation, for testing clients that use a credential (none by
    /// default: every jwt is refused). See "Entra ID tokens" in the crate doc.
    pub bearer_tokens: Vec<BearerToken>,
    /// The largest message a client may send, advertised on every link (16 MiB).
    pub max_message_size: u64,
    /// Topics with their subscriptions and rules, created (where missing) when the broker starts.
    /// Unlike queues, a topic is never created on first use: its name does not say it is one.
    /// More can be created at run time with [`EmbeddedQueue::ensure_topic`] and its siblings.
    pub topics: Vec<TopicSettings>,
    /// Queues with their settings, created (where missing) when the broker starts: the way to have
    /// a session-enabled queue (`requires_session`), since a queue created on first use has
    /// [`BrokerConfig::lock_duration`] and [`BrokerConfig::max_delivery_count`] and no sessions.
    pub queues: Vec<QueueSettings>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            lock_duration: Duration::from_secs(30),
            max_delivery_count: 10,
            heartbeat: None,
            handshake_timeout: Duration::from_secs(10),
            key: SharedAccessKey::default(),
            bearer_tokens: Vec::new(),
            max_message_size: 16 * 1024 * 1024,
            topics: Vec::new(),
            queues: Vec::new(),
        }
    }
}

impl BrokerConfig {
    /// The settings a queue named `name` gets when a client first uses it.
    fn queue_settings(&self, name: &str) -> QueueSettings {
        QueueSettings {
            lock_duration: self.lock_duration,
            max_delivery_count: self.max_delivery_count,
            ..QueueSettings::new(name)
        }
    }
}

/// Strips a URI's scheme and host: `amqps://host/queue/$management` is `queue/$management`.
fn entity_path(address: &str) -> String {
    let path = match address.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map_or("", |(_, path)| path),
        None => address,
    };
    path.trim_matches('/').to_owned()
}

/// Serves `queue` over AMQP on `listener` with the default [`BrokerConfig`] until `shutdown` is
/// cancelled.
pub async fn serve(listener: TcpListener, queue: EmbeddedQueue, shutdown: CancellationToken) -> anyhow::Result<()> {
    serve_with(listener, queue, BrokerConfig::default(), shutdown).await
}

/// Serves `queue` over AMQP on `listener` until `shutdown` is cancelled; then closes every
/// connection (with `amqp:connection:forced`) and returns once they are gone.
pub async fn serve_with(
    listener: TcpListener,
    queue: EmbeddedQueue,
    config: BrokerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    for topic in &config.topics {
        queue
            .ensure_topic(topic.clone())
            .await
            .with_context(|| format!("creating topic `{}` from the broker config", topic.name))?;
    }
    for declared in &config.queues {
        queue
            .ensure_queue(declared.clone())
            .await
            .with_context(|| format!("creating queue `{}` from the broker config", declared.name))?;
        // A queue kept from an earlier run keeps its settings; one that would receive otherwise
        // than the config says (with or without sessions) is refused rather than served wrongly.
        if let Some(existing) = queue.queue_settings(&declared.name)
            && existing.requires_session != declared.requires_session
        {
            anyhow::bail!(
                "queue `{}` exists with requires-session = {}, but the broker config declares {}: delete \
                 the queue (through the entity endpoint, or the broker's data) or change the config",
                declared.name,
                existing.requires_session,
                declared.requires_session
            );
        }
    }
    let config = Arc::new(config);
    let locks = Arc::new(Locks::default());
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait a moment rather than spin.
                tracing::warn!(error = %error, "broker: accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::warn!(error = %error, "broker: could not set TCP_NODELAY");
        }
        let queue = queue.clone();
        let config = Arc::clone(&config);
        let locks = Arc::clone(&locks);
        let shutdown = shutdown.child_token();
        connections.spawn(async move {
            tracing::debug!(%peer, "broker: connection opened");
            match connection::run(stream, queue, config, locks, shutdown).await {
                Ok(()) => tracing::debug!(%peer, "broker: connection closed"),
                Err(error) => tracing::debug!(%peer, error = %format!("{error:#}"), "broker: connection ended"),
            }
        });
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}

#[cfg(test)]
mod auth_tests;
#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod tests;
