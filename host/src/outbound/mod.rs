//! The outbound HTTP executor: makes the requests partner components plan.
//!
//! A component never performs I/O. It returns `http-request`s; this module
//! checks them against the partner's [`PartnerPolicy`], injects secrets, adds
//! `Idempotency-Key` and `traceparent`, sends them over one shared, pooled
//! [`reqwest::Client`] (rustls), and hands back one `http-result` per request,
//! in request order. Every failure is a result for that request
//! (`http-error`), never a panic or a failed batch.
//!
//! # Security stance
//!
//! - **Default deny.** A partner reaches only the `scheme://host:port` origins
//!   on its allow-list; a partner without a policy, or with an empty list,
//!   reaches nothing. Blocked requests never leave the host.
//! - **TLS by default.** Plain `http://` is allowed only for origins whose
//!   allow-list entry itself says `http://`; an `https` entry never allows
//!   `http` to the same host. Certificates are verified against the bundled
//!   Mozilla roots.
//! - **Redirects are not followed.** A 3xx goes back to the component, since
//!   following it could leave the allow-list. Proxy environment variables are
//!   ignored for the same reason.
//! - **Secrets are injected by the host.** Components name a secret; the host
//!   resolves it through a [`SecretProvider`] scoped to the component's own
//!   partner and puts the value on the wire (marked sensitive for HTTP/2 header
//!   compression). Values are never visible to guests, logs or error messages:
//!   [`Secret`] prints as `[redacted]`, and the per-request `tracing` span records
//!   partner, method, host, status and duration only, never header values or
//!   bodies.
//! - **Tokens stay fresh.** An `oauth2` secret is an access token, cached until
//!   shortly before it expires and refreshed by one request however many wait on
//!   it. A 401 to a request that carried one makes one refresh and one repeat,
//!   never a loop. A token endpoint that fails is a connection failure of that
//!   request, and [`Outbound::credential_unavailable`] tells the step runner, which
//!   retries the step like any transient failure.
//! - **Bounded.** Every request has a whole-request timeout (the partner's, or
//!   shorter if the request asks), request bodies are capped, and response
//!   bodies are streamed and abandoned at the partner's cap. Responses are not
//!   decompressed.

mod credentials;
pub mod policy;
pub mod secrets;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::component::wit;
use crate::telemetry::metrics::OutboundLabels;
use crate::telemetry::otel;
use crate::telemetry::traceparent::TraceParent;

pub use credentials::{CredentialKind, IdentityConfig, KeyVaultSource, OAuth2Source};
pub use policy::{
    DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT_MS, Origin, PartnerPolicy, Scheme,
};
pub use secrets::{
    ConfigSecrets, Secret, SecretError, SecretProvider, SecretReadError, SecretSource, UnreadableSecret,
};

use policy::CompiledPolicy;

/// The header carrying the idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

/// Headers a component may not set: the host owns connection management and
/// message framing.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// Executes the HTTP requests a component asked for.
///
/// The saga executor uses real HTTP; the guest harness uses recorded answers.
pub trait Outbound: Send + Sync {
    /// Executes `requests` for `partner` and returns one result per request, in order.
    fn execute(
        &self,
        partner: &str,
        requests: &[wit::HttpRequest],
    ) -> impl Future<Output = Vec<wit::HttpResult>> + Send;

    /// Why the last round's requests could not all be made: a secret whose token endpoint or
    /// vault did not answer. The step is then retried like any transient failure, whatever
    /// its component would make of the failed requests.
    fn credential_unavailable(&self) -> Option<String> {
        None
    }
}

/// Where a batch of requests comes from: the message and step being handled.
///
/// `Default` gives empty ids, step 0 and round 1, for `..RequestContext::default()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// Saga id.
    pub saga_id: String,
    /// Zero-based step index in the saga.
    pub step: u32,
    /// The partner whose component planned the requests.
    pub partner: String,
    /// Broker message id, for logs only (it is not part of the idempotency key).
    pub message_id: Option<String>,
    /// Round of requests within the step, starting at 1.
    pub round: u32,
    /// The trace context of the step, if known: every request becomes a child of it.
    pub traceparent: Option<TraceParent>,
}

impl Default for RequestContext {
    fn default() -> Self {
        Self {
            saga_id: String::new(),
            step: 0,
            partner: String::new(),
            message_id: None,
            round: 1,
            traceparent: None,
        }
    }
}

/// The `Idempotency-Key` for one request: lowercase hex SHA-256 over the saga
/// id, step, partner, round and request id (each length-prefixed).
///
/// The attempt number is deliberately not part of it: a retried step plans the
/// same requests and sends the same keys, so the partner API can deduplicate.
pub fn idempotency_key(saga_id: &str, step: u32, partner: &str, round: u32, request_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"sagahost/idempotency-key/v1");
    for field in [saga_id.as_bytes(), partner.as_bytes(), request_id.as_bytes()] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field);
    }
    hasher.update(step.to_be_bytes());
    hasher.update(round.to_be_bytes());
    hex::encode(hasher.finalize())
}

/// Why the executor could not be built (bad configuration).
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// An allow-list entry is not a `scheme://host[:port]` origin.
    #[error("partner `{partner}`: invalid allow-list entry `{entry}`: {reason}")]
    InvalidAllowEntry {
        partner: String,
        entry: String,
        reason: String,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// The outbound HTTP executor. Cheap to clone; clones share one connection pool.
///
/// Use [`for_message`](Self::for_message) to get the [`Outbound`] for one step.
#[derive(Clone)]
pub struct HttpOutbound {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    policies: HashMap<String, CompiledPolicy>,
    secrets: Arc<dyn SecretProvider>,
}

impl std::fmt::Debug for HttpOutbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut partners: Vec<_> = self.inner.policies.keys().collect();
        partners.sort();
        f.debug_struct("HttpOutbound")
            .field("partners", &partners)
            .finish_non_exhaustive()
    }
}

impl HttpOutbound {
    /// Builds the executor from each partner's policy and a secret provider.
    ///
    /// Partners without a policy are denied everything.
    pub fn new(
        policies: impl IntoIterator<Item = (String, PartnerPolicy)>,
        secrets: Arc<dyn SecretProvider>,
    ) -> Result<Self, OutboundError> {
        let policies = policies
            .into_iter()
            .map(|(partner, policy)| match CompiledPolicy::compile(&policy) {
                Ok(compiled) => Ok((partner, compiled)),
                Err((entry, reason)) => Err(OutboundError::InvalidAllowEntry { partner, entry, reason }),
            })
            .collect::<Result<HashMap<_, _>, _>>()?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("sagahost/", env!("CARGO_PKG_VERSION")))
            .min_tls_version(reqwest::tls::Version::TLS_1_2)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(32)
            .tcp_keepalive(Duration::from_secs(60))
            .build()
            .map_err(OutboundError::Client)?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                policies,
                secrets,
            }),
        })
    }

    /// The [`Outbound`] for one step of one message.
    ///
    /// Its first `execute` call is round `ctx.round`, and each later call the
    /// next round, matching how [`crate::saga::run_step`] calls it. All its
    /// requests share one trace: `ctx.traceparent`'s, or a new one when it has
    /// none.
    pub fn for_message(&self, mut ctx: RequestContext) -> MessageOutbound {
        ctx.traceparent.get_or_insert_with(TraceParent::new_root);
        MessageOutbound {
            next_round: AtomicU32::new(ctx.round),
            outbound: self.clone(),
            ctx,
            unavailable: Mutex::new(None),
        }
    }

    /// Executes one round of requests for `ctx.partner` with `ctx.round` as the
    /// round, concurrently; one result per request, in request order.
    /// A secret that could not be had is noted in `unavailable`.
    pub async fn execute_round(
        &self,
        ctx: &RequestContext,
        requests: &[wit::HttpRequest],
        unavailable: &Mutex<Option<String>>,
    ) -> Vec<wit::HttpResult> {
        let parent = ctx.traceparent;
        let policy = self.inner.policies.get(&ctx.partner);
        let runs = requests.iter().map(|request| {
            let inner = &*self.inner;
            let parent = parent.as_ref();
            let span = tracing::info_span!(
                "outbound_request",
                partner = %ctx.partner,
                saga_id = %ctx.saga_id,
                message_id = ctx.message_id.as_deref(),
                step = ctx.step,
                round = ctx.round,
                request_id = %request.id,
                method = %request.method,
                host = tracing::field::Empty,
                status = tracing::field::Empty,
                duration_ms = tracing::field::Empty,
                error = tracing::field::Empty,
            );
            async move {
                let started = Instant::now();
                let response = execute_one(inner, ctx, policy, parent, request, unavailable).await;
                let current = tracing::Span::current();
                let elapsed = started.elapsed();
                current.record("duration_ms", elapsed.as_millis() as u64);
                let status = match &response {
                    Ok(resp) => resp.status.to_string(),
                    Err(err) => error_kind(err).to_string(),
                };
                crate::telemetry::metrics::metrics()
                    .outbound_seconds
                    .get_or_create(&OutboundLabels {
                        partner: ctx.partner.clone(),
                        status,
                    })
                    .observe(elapsed.as_secs_f64());
                match &response {
                    Ok(resp) => {
                        current.record("status", resp.status);
                        tracing::info!("outbound request done");
                    }
                    Err(err) => {
                        current.record("error", error_kind(err));
                        tracing::warn!(reason = %error_text(err), "outbound request failed");
                    }
                }
                wit::HttpResult {
                    id: request.id.clone(),
                    response,
                }
            }
            .instrument(span)
        });
        futures::future::join_all(runs).await
    }
}

/// The [`Outbound`] of one step: a [`RequestContext`] bound to the executor.
#[derive(Debug)]
pub struct MessageOutbound {
    outbound: HttpOutbound,
    ctx: RequestContext,
    next_round: AtomicU32,
    /// See [`Outbound::credential_unavailable`]; reset every round.
    unavailable: Mutex<Option<String>>,
}

impl MessageOutbound {
    /// The context, with `traceparent` set to the parent span of every request.
    pub fn context(&self) -> &RequestContext {
        &self.ctx
    }

    /// The round the next `execute` call will be.
    pub fn next_round(&self) -> u32 {
        self.next_round.load(Ordering::SeqCst)
    }
}

impl Outbound for MessageOutbound {
    fn execute(
        &self,
        partner: &str,
        requests: &[wit::HttpRequest],
    ) -> impl Future<Output = Vec<wit::HttpResult>> + Send {
        let round = self.next_round.fetch_add(1, Ordering::SeqCst);
        async move {
            if partner != self.ctx.partner {
                // A context bound to one partner must never lend its policy,
                // secrets or keys to another.
                tracing::error!(bound = %self.ctx.partner, partner, "outbound used for the wrong partner");
                let reason = format!(
                    "outbound bound to partner `{}` cannot send for partner `{partner}`",
                    self.ctx.partner
                );
                return requests
                    .iter()
                    .map(|r| wit::HttpResult {
                        id: r.id.clone(),
                        response: Err(wit::HttpError::Blocked(reason.clone())),
                    })
                    .collect();
            }
            let ctx = RequestContext {
                round,
                ..self.ctx.clone()
            };
            *self.unavailable.lock().expect("not poisoned") = None;
            self.outbound.execute_round(&ctx, requests, &self.unavailable).await
        }
    }

    fn credential_unavailable(&self) -> Option<String> {
        self.unavailable.lock().expect("not poisoned").clone()
    }
}

/// Checks, prepares and sends one request.
async fn execute_one(
    inner: &Inner,
    ctx: &RequestContext,
    policy: Option<&CompiledPolicy>,
    parent: Option<&TraceParent>,
    request: &wit::HttpRequest,
    unavailable: &Mutex<Option<String>>,
) -> Result<wit::HttpResponse, wit::HttpError> {
    let method = parse_method(&request.method)?;
    let url = Url::parse(&request.url).map_err(|err| wit::HttpError::Invalid(format!("invalid URL: {err}")))?;
    let origin = Origin::of_url(&url).map_err(wit::HttpError::Invalid)?;
    tracing::Span::current().record("host", tracing::field::display(&origin.host));

    let Some(policy) = policy else {
        return Err(wit::HttpError::Blocked(format!(
            "partner `{}` has no outbound policy, so every host is blocked",
            ctx.partner
        )));
    };
    if !policy.allows(&origin) {
        return Err(wit::HttpError::Blocked(format!(
            "`{origin}` is not on the allow-list of partner `{}`",
            ctx.partner
        )));
    }
    if let Some(body) = &request.body
        && body.len() as u64 > policy.max_request_bytes
    {
        return Err(wit::HttpError::Invalid(format!(
            "request body is {} bytes; the partner's limit is {}",
            body.len(),
            policy.max_request_bytes
        )));
    }

    let (mut headers, carried) = build_headers(&*inner.secrets, &ctx.partner, &request.headers, unavailable).await?;
    let key = idempotency_key(&ctx.saga_id, ctx.step, &ctx.partner, ctx.round, &request.id);
    let key = HeaderValue::from_str(&key).expect("hex is a valid header value");
    // The request's own span when spans are exported, so the partner's spans nest under it.
    let trace = otel::traceparent_of(&tracing::Span::current())
        .unwrap_or_else(|| parent.map_or_else(TraceParent::new_root, TraceParent::child));
    let trace = HeaderValue::from_str(&trace.to_string()).expect("traceparent is a valid header value");
    let host_headers = |headers: &mut HeaderMap| {
        if !headers.contains_key(IDEMPOTENCY_KEY) {
            headers.insert(HeaderName::from_static(IDEMPOTENCY_KEY), key.clone());
        }
        headers.insert(HeaderName::from_static(TRACEPARENT), trace.clone());
    };
    host_headers(&mut headers);

    let timeout_ms = request
        .timeout_ms
        .map_or(policy.timeout_ms, |t| t.min(policy.timeout_ms));
    let exchange = Exchange {
        client: &inner.client,
        method,
        url,
        body: request.body.as_deref(),
        timeout: Duration::from_millis(u64::from(timeout_ms)),
        cap: policy.max_response_bytes,
    };
    let response = exchange.send(headers).await?;
    // A 401 to a request that carried a token: the token may have been revoked or expired
    // early. Forget it, take a fresh one and repeat once; a second 401 is the partner's answer.
    if response.status != 401 {
        return Ok(response);
    }
    let refreshed = carried
        .iter()
        .filter(|(name, value)| inner.secrets.rejected(&ctx.partner, name, value))
        .count();
    if refreshed == 0 {
        return Ok(response);
    }
    tracing::info!("401 to a request with an access token: repeating it once with a fresh token");
    let (mut headers, _) = build_headers(&*inner.secrets, &ctx.partner, &request.headers, unavailable).await?;
    host_headers(&mut headers);
    exchange.send(headers).await
}

/// One request as it goes on the wire, to send once or, after a 401, twice.
struct Exchange<'a> {
    client: &'a reqwest::Client,
    method: Method,
    url: Url,
    body: Option<&'a [u8]>,
    timeout: Duration,
    /// The largest response body taken.
    cap: u64,
}

impl Exchange<'_> {
    async fn send(&self, headers: HeaderMap) -> Result<wit::HttpResponse, wit::HttpError> {
        let mut builder = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(headers);
        if let Some(body) = self.body {
            builder = builder.body(body.to_vec());
        }
        let cap = self.cap;
        let exchange = async move {
            let mut response = builder.send().await.map_err(classify)?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(name, value)| {
                    // `HeaderName`s are already lowercase.
                    (
                        name.as_str().to_string(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect();
            if let Some(length) = response.content_length()
                && length > cap
            {
                return Err(wit::HttpError::TooLarge(length));
            }
            let initial = response.content_length().unwrap_or(0).min(cap).min(64 * 1024) as usize;
            let mut body = Vec::with_capacity(initial);
            while let Some(chunk) = response.chunk().await.map_err(classify)? {
                let total = body.len() as u64 + chunk.len() as u64;
                if total > cap {
                    return Err(wit::HttpError::TooLarge(total));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(wit::HttpResponse { status, headers, body })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_elapsed) => Err(wit::HttpError::Timeout),
        }
    }
}

/// Parses a method; standard methods are accepted in any case.
fn parse_method(text: &str) -> Result<Method, wit::HttpError> {
    const STANDARD: &[Method] = &[
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];
    if let Some(method) = STANDARD.iter().find(|m| m.as_str().eq_ignore_ascii_case(text)) {
        return Ok(method.clone());
    }
    if text.eq_ignore_ascii_case("CONNECT") || text.eq_ignore_ascii_case("TRACE") {
        return Err(wit::HttpError::Invalid(format!("method `{text}` is not allowed")));
    }
    Method::from_bytes(text.as_bytes())
        .ok()
        .filter(|_| !text.is_empty())
        .ok_or_else(|| wit::HttpError::Invalid(format!("invalid method {text:?}")))
}

/// The secrets a request's headers carried, by name, for a repeat after a 401.
type Carried = Vec<(String, Secret)>;

/// Turns the component's headers into wire headers, resolving secrets.
///
/// Error messages name headers and secrets, never values.
async fn build_headers(
    secrets: &dyn SecretProvider,
    partner: &str,
    headers: &[wit::Header],
    unavailable: &Mutex<Option<String>>,
) -> Result<(HeaderMap, Carried), wit::HttpError> {
    let mut map = HeaderMap::with_capacity(headers.len() + 2);
    let mut carried = Carried::new();
    for header in headers {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| wit::HttpError::Invalid(format!("invalid header name {:?}", header.name)))?;
        if RESERVED_HEADERS.contains(&name.as_str()) {
            return Err(wit::HttpError::Invalid(format!("header `{name}` is set by the host")));
        }
        if name == TRACEPARENT {
            // The host owns trace propagation; it sets its own below.
            continue;
        }
        let value = match &header.value {
            wit::HeaderValue::Literal(text) => literal_value(&name, text)?,
            wit::HeaderValue::Secret(secret) => {
                let value = resolve(secrets, partner, secret, &mut carried, unavailable).await?;
                secret_value(&name, secret, value.expose())?
            }
            wit::HeaderValue::SecretTemplate(wit::SecretTemplate { template, secret }) => {
                if template.matches("{}").count() != 1 {
                    return Err(wit::HttpError::Invalid(format!(
                        "header `{name}`: secret-template must contain `{{}}` exactly once"
                    )));
                }
                literal_value(&name, template)?;
                let value = resolve(secrets, partner, secret, &mut carried, unavailable).await?;
                secret_value(&name, secret, &template.replacen("{}", value.expose(), 1))?
            }
        };
        map.append(name, value);
    }
    Ok((map, carried))
}

/// The value of `partner`'s secret `name`, noted in `carried`. A token or vault that cannot
/// answer now is a connection failure, which components retry like any other; a secret the
/// partner does not have, or cannot read, is an invalid request.
async fn resolve(
    secrets: &dyn SecretProvider,
    partner: &str,
    name: &str,
    carried: &mut Carried,
    unavailable: &Mutex<Option<String>>,
) -> Result<Secret, wit::HttpError> {
    let value = secrets.get(partner, name).await.map_err(|err| match err {
        SecretError::Unavailable { .. } => {
            *unavailable.lock().expect("not poisoned") = Some(err.to_string());
            wit::HttpError::Connection(err.to_string())
        }
        SecretError::Unknown { .. } | SecretError::Unreadable { .. } => wit::HttpError::Invalid(err.to_string()),
    })?;
    carried.push((name.to_owned(), value.clone()));
    Ok(value)
}

fn has_line_break(text: &str) -> bool {
    text.contains(['\r', '\n', '\0'])
}

fn literal_value(name: &HeaderName, text: &str) -> Result<HeaderValue, wit::HttpError> {
    if has_line_break(text) {
        return Err(wit::HttpError::Invalid(format!(
            "header `{name}`: value contains CR, LF or NUL"
        )));
    }
    HeaderValue::from_str(text)
        .map_err(|_| wit::HttpError::Invalid(format!("header `{name}`: value has characters not allowed in a header")))
}

fn secret_value(name: &HeaderName, secret: &str, text: &str) -> Result<HeaderValue, wit::HttpError> {
    let invalid = || {
        wit::HttpError::Invalid(format!(
            "header `{name}`: the value of secret `{secret}` is not a valid header value (CR, LF or control characters)"
        ))
    };
    if has_line_break(text) {
        return Err(invalid());
    }
    let mut value = HeaderValue::from_str(text).map_err(|_| invalid())?;
    value.set_sensitive(true);
    Ok(value)
}

/// Maps a reqwest error to an `http-error`. The URL is dropped from the text.
fn classify(err: reqwest::Error) -> wit::HttpError {
    if err.is_timeout() {
        return wit::HttpError::Timeout;
    }
    let builder = err.is_builder();
    let text = error_chain(&err.without_url());
    if builder {
        wit::HttpError::Invalid(text)
    } else {
        wit::HttpError::Connection(text)
    }
}

/// `err: source: source…`, skipping repeats.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

fn error_kind(err: &wit::HttpError) -> &'static str {
    match err {
        wit::HttpError::Timeout => "timeout",
        wit::HttpError::Blocked(_) => "blocked",
        wit::HttpError::Connection(_) => "connection",
        wit::HttpError::TooLarge(_) => "too-large",
        wit::HttpError::Invalid(_) => "invalid",
    }
}

fn error_text(err: &wit::HttpError) -> String {
    match err {
        wit::HttpError::Timeout => "timed out".to_string(),
        wit::HttpError::TooLarge(size) => format!("response body of at least {size} bytes is over the cap"),
        wit::HttpError::Blocked(text) | wit::HttpError::Connection(text) | wit::HttpError::Invalid(text) => {
            text.clone()
        }
    }
}
