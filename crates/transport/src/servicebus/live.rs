//! One live AMQP connection to a namespace: TLS, SASL, the session, CBS tokens (SAS, or Entra
//! ID `jwt` from a credential) and their renewal, the links it holds, and how an operation ends
//! when the connection is lost under it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow};
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::transaction::Controller;
use fe2o3_amqp::types::primitives::{SimpleValue, Timestamp, Value};
use fe2o3_amqp::{Connection, Session};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use sagahost_identity::{AccessToken, CachedToken};

use super::connection_string::Credential;
use super::target::{Auth, Endpoint};

use super::super::sessions::SessionLock;
use super::super::{TransportError, sas};
use super::ServiceBusOptions;
use super::controllers::{ControllerPool, Declared};
use super::links::{Link, ReceiverLink, RequestLink, SenderLink};

/// How long attaching a link (its token included) may take before the connection is given up.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after its wait an accept of the next available session may still be answered: the
/// broker answers when the wait runs out, and this covers the round trip.
const ACCEPT_GRACE: Duration = Duration::from_secs(2);

/// How an operation run by [`Live::run`] ended.
pub(super) enum Ended<T> {
    Done(T),
    TimedOut,
    ConnectionLost,
}

/// A sender's destination queue and via queue (`None`: it sends directly).
type SenderKey = (String, Option<String>);
/// A receiver's queue and, for a session receiver, the session it holds.
type ReceiverKey = (String, Option<String>);

/// One connection with its session and links.
pub(super) struct Live {
    target: Arc<Endpoint>,
    options: ServiceBusOptions,
    connection: Mutex<ConnectionHandle<()>>,
    session: Mutex<SessionHandle<()>>,
    cbs: Arc<RequestLink>,
    /// Entities with a token put, refreshed by `refresher`.
    audiences: Arc<std::sync::Mutex<BTreeSet<String>>>,
    receivers: Mutex<HashMap<ReceiverKey, Arc<ReceiverLink>>>,
    senders: Mutex<HashMap<SenderKey, Arc<SenderLink>>>,
    /// The `$coordinator` links, attached as concurrent transactions need them.
    controllers: ControllerPool,
    management: Mutex<HashMap<String, Arc<RequestLink>>>,
    refresher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Held while a link is attached, one at a time, so that the link maps above are locked
    /// only for lookups: a settle or a renewal never waits behind an attach.
    attaching: Mutex<()>,
    /// Cancelled when this connection is given up: an attach went unanswered, or it was closed.
    given_up: CancellationToken,
}

impl Live {
    pub(super) async fn open(target: Arc<Endpoint>, options: &ServiceBusOptions) -> anyhow::Result<Self> {
        // A credential that cannot give a token fails the connect, not the first link attach.
        if let Auth::Entra(credential) = &target.auth {
            entra_token(&target, credential).await?;
        }
        let timeout = options.operation_timeout;
        let (mut connection, session) =
            tokio::time::timeout(timeout, open_connection(&target))
                .await
                .map_err(|_| {
                    anyhow!(
                        "connecting to `{}:{}` took longer than {timeout:?}",
                        target.host,
                        target.port
                    )
                })??;
        let mut session = session;
        let cbs = match RequestLink::attach(&mut session, "$cbs").await {
            Ok(cbs) => cbs,
            Err(err) => {
                let _ = connection.close().await;
                return Err(err);
            }
        };
        let live = Self {
            target,
            options: options.clone(),
            connection: Mutex::new(connection),
            session: Mutex::new(session),
            cbs: Arc::new(cbs),
            audiences: Arc::default(),
            receivers: Mutex::default(),
            senders: Mutex::default(),
            controllers: ControllerPool::default(),
            management: Mutex::default(),
            refresher: std::sync::Mutex::default(),
            attaching: Mutex::new(()),
            given_up: CancellationToken::new(),
        };
        // A connection string scoped to one entity can only authorize that entity; check it now.
        if let Some(entity) = live.target.entity_path.clone()
            && let Err(err) = live.authorize(&entity).await
        {
            live.close().await;
            return Err(err);
        }
        Ok(live)
    }

    pub(super) fn is_alive(&self) -> bool {
        if self.given_up.is_cancelled() || self.cbs.is_dead() {
            return false;
        }
        match (self.connection.try_lock(), self.session.try_lock()) {
            (Ok(connection), Ok(session)) => !connection.is_closed() && !session.is_ended(),
            // Someone is attaching a link right now: the connection was alive a moment ago.
            _ => true,
        }
    }

    /// Resolves once this connection is gone: given up, or its session stopped (which stops the
    /// `$cbs` link at once). fe2o3 leaves the outcome of a transfer on a stopped session pending
    /// for good (a send, a transaction's declare or discharge), so operations race this rather
    /// than wait for an answer that cannot come.
    pub(super) async fn lost(&self) {
        tokio::select! {
            () = self.given_up.cancelled() => {}
            () = self.cbs.stopped().cancelled() => {}
        }
    }

    /// Runs `operation` until it finishes, `timeout` passes or this connection is lost.
    pub(super) async fn run<T>(&self, timeout: Duration, operation: impl Future<Output = T>) -> Ended<T> {
        tokio::select! {
            done = tokio::time::timeout(timeout, operation) => done.map_or(Ended::TimedOut, Ended::Done),
            () = self.lost() => Ended::ConnectionLost,
        }
    }

    pub(super) fn audience(&self, entity: &str) -> String {
        format!("{}/{}", self.target.namespace_uri(), entity)
    }

    /// Puts a token for `entity` on `$cbs` unless one is there already.
    pub(super) async fn authorize(&self, entity: &str) -> anyhow::Result<()> {
        let audience = self.audience(entity);
        if self.audiences.lock().expect("not poisoned").contains(&audience) {
            return Ok(());
        }
        self.put_token(&audience).await?;
        self.audiences.lock().expect("not poisoned").insert(audience);
        self.ensure_refresher();
        Ok(())
    }

    pub(super) async fn put_token(&self, audience: &str) -> anyhow::Result<()> {
        let token = cbs_token(&self.target, &self.options, audience).await?;
        put_token(&self.cbs, &self.target, &self.options, audience, &token).await
    }

    /// Starts the task that puts every token again before it expires: SAS tokens at 80% of
    /// [`ServiceBusOptions::token_ttl`], Entra ID tokens at 80% of their remaining lifetime. A
    /// ready-made SAS signature cannot be renewed.
    pub(super) fn ensure_refresher(&self) {
        let mut refresher = self.refresher.lock().expect("not poisoned");
        if refresher.is_some() || matches!(self.target.auth, Auth::Sas(Credential::SharedAccessSignature(_))) {
            return;
        }
        let (cbs, audiences) = (self.cbs.clone(), self.audiences.clone());
        let (target, options) = (self.target.clone(), self.options.clone());
        *refresher = Some(tokio::spawn(async move {
            match target.auth.clone() {
                Auth::Entra(credential) => refresh_entra(&cbs, &audiences, &target, &options, &credential).await,
                Auth::Sas(_) => refresh_sas(&cbs, &audiences, &target, &options).await,
            }
        }));
    }

    pub(super) async fn receiver(&self, queue: &str) -> Result<Arc<ReceiverLink>, TransportError> {
        self.link(&self.receivers, (queue.to_string(), None), queue, async {
            self.authorize(queue).await.map_err(|e| classify(e, queue))?;
            let mut session = self.session.lock().await;
            ReceiverLink::attach(&mut session, queue, self.options.prefetch)
                .await
                .map_err(|e| classify(e, queue))
        })
        .await
    }

    /// The live link under `key` in `links`, or a new one from `attach`. Attaches run one at a
    /// time under [`Live::attaching`] (the map is locked only to look up and insert) and are
    /// bounded by [`Self::bounded`].
    pub(super) async fn link<K: Eq + std::hash::Hash, L: Link>(
        &self,
        links: &Mutex<HashMap<K, Arc<L>>>,
        key: K,
        entity: &str,
        attach: impl Future<Output = Result<L, TransportError>>,
    ) -> Result<Arc<L>, TransportError> {
        let existing = |links: &HashMap<K, Arc<L>>| links.get(&key).filter(|l| !l.is_dead()).cloned();
        if let Some(link) = existing(&*links.lock().await) {
            return Ok(link);
        }
        let _attaching = self.attaching.lock().await;
        // Another task may have attached it while this one waited.
        if let Some(link) = existing(&*links.lock().await) {
            return Ok(link);
        }
        let link = Arc::new(self.bounded(entity, attach).await?);
        links.lock().await.insert(key, link.clone());
        Ok(link)
    }

    /// Runs a link attach (with its token) for `entity`, giving up after [`ATTACH_TIMEOUT`] or
    /// when the connection is lost. A peer that never answers an attach leaves this connection
    /// given up, so the next operation reconnects instead of waiting behind it.
    pub(super) async fn bounded<T>(
        &self,
        entity: &str,
        attach: impl Future<Output = Result<T, TransportError>>,
    ) -> Result<T, TransportError> {
        match self.run(ATTACH_TIMEOUT, attach).await {
            Ended::Done(attached) => attached,
            Ended::ConnectionLost => {
                Err(anyhow!("the connection was lost while attaching a link to `{entity}`").into())
            }
            Ended::TimedOut => {
                self.given_up.cancel();
                Err(
                    anyhow!("attaching a link to `{entity}` was not answered within {ATTACH_TIMEOUT:?}; reconnecting")
                        .into(),
                )
            }
        }
    }

    /// The live receiver on `queue`, or on its session `session_id`.
    pub(super) async fn existing_receiver(&self, queue: &str, session_id: Option<&str>) -> Option<Arc<ReceiverLink>> {
        let key = (queue.to_string(), session_id.map(str::to_string));
        self.receivers.lock().await.get(&key).filter(|l| !l.is_dead()).cloned()
    }

    /// Accepts a session of `queue` (the one named `session_id`, or the next available) on a
    /// receiver link in an AMQP session of its own, as the SDKs do: the attach may wait up to
    /// `wait` for a session without holding up the attaches of other links, and the link's session
    /// ends with it. The link is kept under the queue and the session it locked; `None` when no
    /// session became available in time.
    pub(super) async fn accept_session(
        &self,
        queue: &str,
        session_id: Option<&str>,
        wait: Duration,
    ) -> Result<Option<SessionLock>, TransportError> {
        let session = self
            .bounded(queue, async {
                self.authorize(queue).await.map_err(|e| classify(e, queue))?;
                let mut connection = self.connection.lock().await;
                Session::begin(&mut connection)
                    .await
                    .map_err(|e| anyhow!("beginning an AMQP session for a session receiver on `{queue}`: {e}").into())
            })
            .await?;
        let limit = match session_id {
            Some(_) => ATTACH_TIMEOUT,
            None => wait + ACCEPT_GRACE,
        };
        let accept = ReceiverLink::accept(session, queue, session_id, wait, self.options.prefetch);
        // An attach given up on is dropped with its AMQP session, whose end releases whatever the
        // broker may lock for it later.
        let accepted = match self.run(limit, accept).await {
            Ended::Done(accepted) => accepted.map_err(|e| match e {
                TransportError::Other(e) => classify(e, queue),
                other => other,
            })?,
            Ended::TimedOut if session_id.is_none() => return Ok(None),
            Ended::TimedOut => {
                return Err(anyhow!(
                    "accepting session `{}` of `{queue}` was not answered within {limit:?}; accept it again",
                    session_id.unwrap_or_default()
                )
                .into());
            }
            Ended::ConnectionLost => {
                return Err(
                    anyhow!("the connection was lost while accepting a session of `{queue}`; accept again").into(),
                );
            }
        };
        let Some((link, lock)) = accepted else { return Ok(None) };
        let key = (queue.to_string(), Some(lock.session_id.clone()));
        self.receivers.lock().await.insert(key, Arc::new(link));
        Ok(Some(lock))
    }

    /// Forgets `link`, a session receiver that is being closed, unless another has taken its place.
    pub(super) async fn forget_receiver(&self, link: &ReceiverLink) {
        let key = (link.queue.clone(), link.session_id.clone());
        let mut receivers = self.receivers.lock().await;
        if receivers.get(&key).is_some_and(|kept| kept.name == link.name) {
            receivers.remove(&key);
        }
    }

    /// A sender to `queue`, through the `via` queue if given (a send-via link needs a token for
    /// both entities).
    pub(super) async fn sender(&self, queue: &str, via: Option<&str>) -> Result<Arc<SenderLink>, TransportError> {
        let key = (queue.to_string(), via.map(str::to_string));
        self.link(&self.senders, key, queue, async {
            self.authorize(queue).await.map_err(|e| classify(e, queue))?;
            if let Some(via) = via {
                self.authorize(via).await.map_err(|e| classify(e, via))?;
            }
            let mut session = self.session.lock().await;
            SenderLink::attach(&mut session, queue, via).await
        })
        .await
    }

    /// A declared transaction for one settle, from a `$coordinator` link that has one ready, or
    /// from a new link when none is about to have one (see `controllers.rs`).
    pub(super) async fn transaction(&self) -> Result<Declared, TransportError> {
        self.controllers
            .declared(|| async {
                let _attaching = self.attaching.lock().await;
                self.bounded("$coordinator", async {
                    let mut session = self.session.lock().await;
                    Controller::attach(&mut session, format!("sagahost-coordinator-{}", uuid::Uuid::new_v4()))
                        .await
                        .map_err(|e| anyhow!("attaching to `$coordinator` (transactions): {e}").into())
                })
                .await
            })
            .await
            .map_err(|e| match e {
                TransportError::Other(e) => {
                    TransportError::Other(e.context(format!("getting a transaction from `{}`", self.target.host)))
                }
                other => other,
            })
    }

    pub(super) async fn management(&self, queue: &str) -> Result<Arc<RequestLink>, TransportError> {
        self.link(&self.management, queue.to_string(), queue, async {
            self.authorize(queue).await.map_err(|e| classify(e, queue))?;
            let mut session = self.session.lock().await;
            RequestLink::attach(&mut session, &format!("{queue}/$management"))
                .await
                .map_err(|e| classify(e, queue))
        })
        .await
    }

    pub(super) async fn close(&self) {
        self.given_up.cancel();
        if let Some(refresher) = self.refresher.lock().expect("not poisoned").take() {
            refresher.abort();
        }
        // Receivers give back what they prefetched as they stop; wait for that (briefly) so the
        // releases go out before the session ends.
        let stopping: Vec<CancellationToken> = self
            .receivers
            .lock()
            .await
            .drain()
            .map(|(_, receiver)| receiver.stopped().clone())
            .collect();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            futures::future::join_all(stopping.iter().map(CancellationToken::cancelled)),
        )
        .await;
        self.senders.lock().await.clear();
        self.controllers.close();
        self.management.lock().await.clear();
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = self.session.lock().await.end().await;
            let _ = self.connection.lock().await.close().await;
        })
        .await;
    }
}

/// `UnknownQueue` for errors that say the entity does not exist.
pub(super) fn classify(err: anyhow::Error, queue: &str) -> TransportError {
    if err.is::<CredentialFailed>() {
        return TransportError::Other(err);
    }
    let text = format!("{err:#}");
    if text.contains("not-found") || text.contains("NotFound") || text.contains(" 404") {
        TransportError::UnknownQueue(queue.to_string())
    } else {
        TransportError::Other(err)
    }
}

/// The CBS token type of an Entra ID access token.
const JWT_TOKEN_TYPE: &str = "jwt";
/// The shortest wait between two renewals, so a token that lives less than this is not put in a
/// tight loop.
const MIN_RENEWAL: Duration = Duration::from_secs(1);
/// The longest wait before a failed renewal of an Entra ID token is tried again.
const MAX_RENEWAL_RETRY: Duration = Duration::from_secs(30);

/// What one `put-token` carries. Holds the token itself, so it has no `Debug`.
struct CbsToken {
    token: String,
    /// The CBS `type`: a SAS token's, or `jwt`.
    kind: &'static str,
    /// The `expiration` the SDKs send with a token whose expiry the client knows (Entra ID's).
    expires_on: Option<SystemTime>,
}

impl CbsToken {
    fn entra(token: &AccessToken) -> Self {
        Self {
            token: token.secret.expose().to_string(),
            kind: JWT_TOKEN_TYPE,
            expires_on: Some(token.expires_on),
        }
    }
}

/// The credential could not give a token. Kept apart from the errors [`classify`] reads, so
/// that a token endpoint's `404` is never taken for a missing queue.
#[derive(Debug, thiserror::Error)]
#[error("getting an Entra ID token for Service Bus `{namespace}` failed: {cause}")]
struct CredentialFailed {
    namespace: String,
    /// The identity crate's error: it names the token endpoint and the client, never a token.
    cause: sagahost_identity::Error,
}

/// A token from `credential`, or an error naming the namespace and the credential.
async fn entra_token(target: &Endpoint, credential: &CachedToken) -> anyhow::Result<AccessToken> {
    credential.token().await.map_err(|cause| {
        CredentialFailed {
            namespace: target.host.clone(),
            cause,
        }
        .into()
    })
}

/// The token to put for `audience`: a SAS token signed now, the connection string's signature,
/// or the credential's current Entra ID token (one token serves every audience).
async fn cbs_token(target: &Endpoint, options: &ServiceBusOptions, audience: &str) -> anyhow::Result<CbsToken> {
    let sas = |token| CbsToken {
        token,
        kind: sas::SAS_TOKEN_TYPE,
        expires_on: None,
    };
    Ok(match &target.auth {
        Auth::Sas(Credential::SharedAccessKey { name, key }) => sas(sas::sas_token(
            audience,
            name,
            key,
            sas::expiry_from_now(options.token_ttl),
        )),
        Auth::Sas(Credential::SharedAccessSignature(token)) => sas(token.clone()),
        Auth::Entra(credential) => CbsToken::entra(&entra_token(target, credential).await?),
    })
}

async fn put_token(
    cbs: &RequestLink,
    target: &Endpoint,
    options: &ServiceBusOptions,
    audience: &str,
    token: &CbsToken,
) -> anyhow::Result<()> {
    let mut properties = vec![
        ("type".to_string(), SimpleValue::String(token.kind.into())),
        ("name".to_string(), SimpleValue::String(audience.to_string())),
    ];
    if let Some(expires_on) = token.expires_on {
        let millis = expires_on
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX));
        properties.push((
            "expiration".to_string(),
            SimpleValue::Timestamp(Timestamp::from_milliseconds(millis)),
        ));
    }
    let response = cbs
        .request(
            "put-token",
            properties,
            Value::String(token.token.clone()),
            options.operation_timeout,
        )
        .await?;
    match (response.status, &target.auth) {
        (200 | 202, _) => Ok(()),
        (status, Auth::Sas(_)) => Err(anyhow!(
            "Service Bus refused the SAS token for `{audience}` ({status} {}); check SharedAccessKeyName/SharedAccessKey",
            response.description
        )),
        (status, Auth::Entra(_)) => Err(anyhow!(
            "Service Bus `{}` refused the Entra ID token for `{audience}` ({status} {}); give the identity a \
             Service Bus data role (Azure Service Bus Data Sender, Data Receiver or Data Owner) on the namespace \
             or the entity",
            target.host,
            response.description
        )),
    }
}

/// Puts a new SAS token for every audience at 80% of the tokens' lifetime, for ever.
async fn refresh_sas(
    cbs: &RequestLink,
    audiences: &std::sync::Mutex<BTreeSet<String>>,
    target: &Endpoint,
    options: &ServiceBusOptions,
) {
    let period = options.token_ttl.mul_f64(0.8).max(MIN_RENEWAL);
    loop {
        tokio::time::sleep(period).await;
        let all: Vec<String> = audiences.lock().expect("not poisoned").iter().cloned().collect();
        for audience in all {
            let put = async {
                let token = cbs_token(target, options, &audience).await?;
                put_token(cbs, target, options, &audience, &token).await
            };
            if let Err(err) = put.await {
                tracing::warn!(%audience, "refreshing the SAS token failed: {err:#}");
            }
        }
    }
}

/// Puts a new Entra ID token for every audience at 80% of the current one's remaining lifetime,
/// for ever. A failed renewal is tried again after a doubling wait while the token put last is
/// still accepted; links attached before it expires stay usable, new ones then fail until a
/// renewal succeeds.
async fn refresh_entra(
    cbs: &RequestLink,
    audiences: &std::sync::Mutex<BTreeSet<String>>,
    target: &Endpoint,
    options: &ServiceBusOptions,
    credential: &CachedToken,
) {
    // The token the first authorize put (cached), which the first renewal replaces.
    let mut current = loop {
        match entra_token(target, credential).await {
            Ok(token) => break token,
            Err(err) => {
                tracing::warn!(namespace = %target.host, "{err:#}");
                tokio::time::sleep(MAX_RENEWAL_RETRY).await;
            }
        }
    };
    let mut retry = MIN_RENEWAL;
    let mut wait = current.remaining().mul_f64(0.8).max(MIN_RENEWAL);
    loop {
        tokio::time::sleep(wait).await;
        let fresh = match renewed(credential, &current).await {
            Ok(fresh) => fresh,
            Err(cause) => {
                let err = CredentialFailed {
                    namespace: target.host.clone(),
                    cause,
                };
                tracing::warn!(
                    namespace = %target.host,
                    expires_in = ?current.remaining(),
                    "renewing the Service Bus token failed; trying again in {retry:?}: {err}"
                );
                wait = retry;
                retry = (retry * 2).min(MAX_RENEWAL_RETRY);
                continue;
            }
        };
        retry = MIN_RENEWAL;
        let token = CbsToken::entra(&fresh);
        let all: Vec<String> = audiences.lock().expect("not poisoned").iter().cloned().collect();
        for audience in all {
            if let Err(err) = put_token(cbs, target, options, &audience, &token).await {
                tracing::warn!(%audience, "putting the renewed Entra ID token failed: {err:#}");
            }
        }
        current = fresh;
        wait = current.remaining().mul_f64(0.8).max(MIN_RENEWAL);
    }
}

/// A token newer than `old`. The cache hands `old` out until shortly before it expires, later
/// than its successor must be put, so when the cache still holds `old` it is told to forget it
/// and fetch the next (one fetch, shared with everyone else using the cache).
async fn renewed(credential: &CachedToken, old: &AccessToken) -> Result<AccessToken, sagahost_identity::Error> {
    let token = credential.token().await?;
    if token != *old {
        return Ok(token);
    }
    credential.invalidate(old);
    credential.token().await
}

/// TCP (with `TCP_NODELAY`), TLS unless the target asks for plain TCP to a local broker, SASL
/// ANONYMOUS, open, begin.
async fn open_connection(target: &Endpoint) -> anyhow::Result<(ConnectionHandle<()>, SessionHandle<()>)> {
    let address = (target.host.as_str(), target.port);
    let tcp = TcpStream::connect(address)
        .await
        .with_context(|| format!("connecting to `{}:{}`", target.host, target.port))?;
    tcp.set_nodelay(true).context("setting TCP_NODELAY")?;
    let container_id = format!("sagahost-{}", uuid::Uuid::new_v4());
    let builder = Connection::builder()
        .container_id(container_id)
        .hostname(target.host.as_str())
        .sasl_profile(SaslProfile::Anonymous);
    let mut connection = if !target.tls {
        builder
            .open_with_stream(tcp)
            .await
            .map_err(|e| anyhow!("opening the AMQP connection: {e}"))?
    } else {
        let tls = tls_connect(&target.host, tcp).await?;
        builder
            .open_with_stream(tls)
            .await
            .map_err(|e| anyhow!("opening the AMQP connection: {e}"))?
    };
    let session = match Session::begin(&mut connection).await {
        Ok(session) => session,
        Err(err) => {
            let _ = connection.close().await;
            return Err(anyhow!("beginning the AMQP session: {err}"));
        }
    };
    Ok((connection, session))
}

async fn tls_connect(host: &str, tcp: TcpStream) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, pki_types::ServerName};
    let roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).with_context(|| format!("`{host}` is not a TLS server name"))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS handshake with `{host}`"))
}
