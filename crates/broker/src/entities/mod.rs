//! The broker's entity-management endpoint: Service Bus's REST API for creating, reading, listing
//! and deleting entities (Atom entries holding `QueueDescription` XML), over plain HTTP on a second
//! listener ([`serve_entities`]), for the SDKs' `ServiceBusAdministrationClient` and for KEDA's
//! `azure-servicebus` scaler, which reads a queue's `CountDetails`.
//!
//! # Routes
//! | request | answer |
//! |---|---|
//! | `PUT /{queue}` with a `QueueDescription` entry | 201 and the queue's entry; 409 if it exists; 400 for a name with `/` (valid in Service Bus, but the AMQP side serves single-segment queue addresses only) |
//! | `PUT /{queue}` with `If-Match: *` | 200 and the entry after the update; 404 if it is missing |
//! | `GET /{queue}` | 200 and the entry, with `MessageCount`, `CountDetails` and `SizeInBytes` |
//! | `DELETE /{queue}` | 200; the queue and its messages are gone; 404 if it is missing |
//! | `GET /$Resources/queues?$skip=&$top=` | a feed of up to `$top` (≤ 100) queues in name order, with a `next` link while more follow |
//! | `GET /$Resources/topics` | an empty feed: the broker has no topics yet |
//! | `PUT` of a topic, subscription or rule | 501 |
//! | `GET /$namespaceinfo` | the namespace (named after the `Host` the client addressed) |
//!
//! `api-version` is accepted and ignored (2017-04, 2021-05 and 2024-05 read the same here). Errors
//! are Service Bus's `<Error><Code/><Detail/></Error>` with the status (`errors.rs`); what is
//! stored, echoed or refused of a `QueueDescription` is in `queue_description.rs`. Settings of
//! queues created here persist in the queue database (`EmbeddedQueue::create_queue`).
//!
//! # Security
//! Every request needs `Authorization: SharedAccessSignature …` signed with the broker's key
//! (`access.rs`); without one, or with a wrong one, the answer is 401. Bodies larger than
//! [`MAX_BODY_BYTES`] are refused with 413 before they are read whole; XML with a DTD is refused
//! (`atom.rs`); entity names are checked as Service Bus checks them (`names.rs`). No TLS: serve it
//! on loopback, as the AMQP listener.
//!
//! # Reaching it from the SDKs
//! - Python (`azure-servicebus` 7.15.0): `ServiceBusAdministrationClient` always builds
//!   `https://{namespace}/…` URLs; `UseDevelopmentEmulator=true` in the connection string keeps
//!   the port of the `Endpoint` but does not switch the admin client to HTTP (the SDK's changelog:
//!   the admin client is not supported against the emulator). So give the client an azure-core
//!   transport that sends the same request over `http://`: `from_connection_string(
//!   "Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName=…;SharedAccessKey=…;UseDevelopmentEmulator=true",
//!   transport=PlainHttpTransport())`, where `PlainHttpTransport` subclasses
//!   `azure.core.pipeline.transport.RequestsTransport` and rewrites `request.url` from `https://`
//!   to `http://` in `send` (`tests/interop/servicebus_admin.py`). The SAS token the SDK signs for
//!   `https://127.0.0.1:{port}` covers the whole namespace here (only the path of `sr` counts).
//! - JavaScript (`@azure/service-bus` 7.9.5): the same, with `https://` built in `getUrl`; its
//!   options' `additionalPolicies` are ignored (the client builds its own pipeline), so add a
//!   policy to the client's public `pipeline` that rewrites `request.url` to `http://` and sets
//!   `request.allowInsecureConnection = true` (`tests/interop/js/servicebus_admin.js`). It signs
//!   each request's own URL, which covers that entity or list (`access.rs`).
//! - The official Service Bus emulator serves this API on HTTP port 5300; run this endpoint on a
//!   port of its own the same way, separate from the AMQP port.
//!
//! # Where topics, subscriptions and rules plug in
//! [`target::parse_path`] already reads every path of the API into a [`target::Target`], and
//! `atom::parse_entry` already tells a `TopicDescription`, `SubscriptionDescription` or
//! `RuleDescription` body from a queue's. To add them: a `topic_description.rs` (and so on) beside
//! `queue_description.rs`, a variant per description in `atom::Description` and `atom::Incoming`
//! (replacing the `IgnoredAny` placeholders in `atom::ContentIn`), handler files beside `queues.rs`,
//! and the arms marked "topics" in [`route`] turned to call them: `GET`/`DELETE /{name}` falls
//! through to the topic when no queue has the name.

mod access;
mod atom;
mod errors;
mod names;
mod namespace;
mod queue_description;
mod queues;
mod target;
mod xsd;

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sagahost_transport::embedded::EmbeddedQueue;
use sagahost_transport::sas;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::BrokerConfig;
use atom::Incoming;
use errors::EntityError;
use queues::PutMode;
use target::{Entity, Listing, Target};

/// The largest request body the endpoint reads (an entity description is a few KiB at most).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The `api-version` written into the links the endpoint answers with.
const API_VERSION: &str = "2021-05";

/// What every request shares.
struct Entities {
    queue: EmbeddedQueue,
    config: Arc<BrokerConfig>,
    /// When the endpoint started, as `xs:dateTime`: the namespace's creation time.
    started: String,
}

/// Where the client addressed the endpoint: the base of the links in answers, and the
/// namespace's name (the host without its port).
struct Site {
    base: String,
    namespace: String,
}

impl Site {
    fn from_headers(headers: &HeaderMap) -> Self {
        let host = headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .filter(|host| !host.is_empty())
            .unwrap_or("localhost");
        let namespace = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        Self {
            base: format!("http://{host}"),
            namespace: namespace.to_owned(),
        }
    }

    /// The address of `path` (below the namespace).
    fn href(&self, path: &str) -> String {
        format!("{}/{path}?api-version={API_VERSION}", self.base)
    }

    /// The address of one page of the list at `path`.
    fn page_href(&self, path: &str, skip: usize, top: usize) -> String {
        format!("{}/{path}?$skip={skip}&$top={top}&api-version={API_VERSION}", self.base)
    }
}

/// Serves the entity-management API over plain HTTP on `listener` for the entities of `queue`,
/// checking tokens against `config.key`, until `shutdown` is cancelled; then finishes the requests
/// in flight and returns. Run it beside [`crate::serve_with`] on the same `queue` and a second
/// listener.
pub async fn serve_entities(
    listener: TcpListener,
    queue: EmbeddedQueue,
    config: BrokerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let entities = Arc::new(Entities {
        queue,
        config: Arc::new(config),
        started: xsd::format_time(Some(SystemTime::now())),
    });
    let app = Router::new().fallback(handle).with_state(entities);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// Answers one request; failures become Service Bus error bodies.
async fn handle(State(entities): State<Arc<Entities>>, request: Request) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let response = route(&entities, request).await.unwrap_or_else(|error| {
        tracing::debug!(%method, %path, status = error.status.as_u16(), detail = %error.detail, "entities: refused");
        error.into_response()
    });
    tracing::debug!(%method, %path, status = response.status().as_u16(), "entities: answered");
    response
}

/// Reads the target, checks the token for it, and calls the handler for the method.
async fn route(entities: &Entities, request: Request) -> Result<Response, EntityError> {
    let (parts, body) = request.into_parts();
    let target = target::parse_path(parts.uri.path()).map_err(EntityError::bad_request)?;
    access::authorize(
        &parts.headers,
        &entities.config.key,
        &target.path(),
        sas::now_unix_secs(),
    )?;
    let site = Site::from_headers(&parts.headers);
    match (&parts.method, target) {
        (&Method::GET, Target::NamespaceInfo) => {
            atom_entry(StatusCode::OK, namespace::entry(&site, &entities.started).to_xml()?)
        }
        (&Method::GET, Target::List(Listing::Queues)) => {
            let page = target::parse_page(parts.uri.query()).map_err(EntityError::bad_request)?;
            atom_feed(queues::list(entities, &site, page).await?)
        }
        (&Method::GET, Target::Entity(Entity::QueueOrTopic(name))) => {
            atom_entry(StatusCode::OK, queues::get(entities, &site, &name).await?)
        }
        (&Method::PUT, Target::Entity(Entity::QueueOrTopic(name))) => {
            let body = read_body(&parts.headers, body).await?;
            match atom::parse_entry(&body)? {
                Incoming::Queue(description) => {
                    let (status, xml) =
                        queues::put(entities, &site, &name, &description, put_mode(&parts.headers)).await?;
                    atom_entry(status, xml)
                }
                // Topics: the topic handlers go here.
                Incoming::Topic => Err(no_topics("a TopicDescription")),
                Incoming::Subscription | Incoming::Rule => Err(EntityError::bad_request(format!(
                    "`/{name}` is a queue or topic path; subscriptions and rules are PUT at {{topic}}/Subscriptions/{{subscription}}[/Rules/{{rule}}]"
                ))),
            }
        }
        (&Method::DELETE, Target::Entity(Entity::QueueOrTopic(name))) => {
            queues::delete(entities, &name).await?;
            Ok(StatusCode::OK.into_response())
        }
        // Topics: `$Resources/topics` lists the topics; there are none yet.
        (&Method::GET, Target::List(Listing::Topics)) => {
            let now = xsd::format_time(Some(SystemTime::now()));
            let page = target::parse_page(parts.uri.query()).map_err(EntityError::bad_request)?;
            let href = site.page_href("$Resources/topics", page.skip, page.top);
            atom_feed(atom::Feed::new("Topics", href, None, now, Vec::new()).to_xml()?)
        }
        // Topics: subscriptions and rules of a topic, and their lists.
        (&Method::PUT, Target::Entity(Entity::Subscription { .. } | Entity::Rule { .. })) => {
            Err(no_topics("a subscription or rule"))
        }
        (
            &Method::GET | &Method::DELETE,
            Target::Entity(Entity::Subscription { topic, .. } | Entity::Rule { topic, .. })
            | Target::List(Listing::Subscriptions { topic } | Listing::Rules { topic, .. }),
        ) => Err(EntityError::not_found(format!(
            "topic `{topic}` does not exist: this broker does not have topics yet"
        ))),
        (method, _) => Err(EntityError::method_not_allowed(format!(
            "{method} is not an operation of `{}`",
            parts.uri.path()
        ))),
    }
}

/// The answer to a `PUT` of a kind of entity the broker does not have yet.
fn no_topics(what: &str) -> EntityError {
    EntityError::not_implemented(format!(
        "this broker does not support topics, subscriptions or rules yet, so it cannot create {what}; use queues"
    ))
}

/// `If-Match: *` (or any entity tag) asks for an update, its absence for a create.
fn put_mode(headers: &HeaderMap) -> PutMode {
    if headers.contains_key(header::IF_MATCH) {
        PutMode::Update
    } else {
        PutMode::Create
    }
}

/// Reads the body, refusing more than [`MAX_BODY_BYTES`]: at once when `Content-Length` says so,
/// else once that many bytes have come.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, EntityError> {
    let too_large = || {
        EntityError::too_large(format!(
            "the body is larger than {MAX_BODY_BYTES} bytes, more than any entity description needs"
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok())
        .and_then(|length| length.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| too_large())
}

fn atom_entry(status: StatusCode, xml: String) -> Result<Response, EntityError> {
    Ok(with_type(status, xml, atom::ENTRY_MEDIA_TYPE))
}

fn atom_feed(xml: String) -> Result<Response, EntityError> {
    Ok(with_type(StatusCode::OK, xml, atom::FEED_MEDIA_TYPE))
}

fn with_type(status: StatusCode, xml: String, media_type: &'static str) -> Response {
    let mut response = (status, xml).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    response
}

#[cfg(test)]
mod tests;
