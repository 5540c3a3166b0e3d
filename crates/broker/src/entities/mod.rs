//! The broker's entity-management endpoint: Service Bus's REST API for creating, reading, listing
//! and deleting entities (Atom entries holding `QueueDescription` XML), over plain HTTP on a second
//! listener ([`serve_entities`]), for the SDKs' `ServiceBusAdministrationClient` and for KEDA's
//! `azure-servicebus` scaler, which reads a queue's `CountDetails`.
//!
//! # Routes
//! | request | answer |
//! |---|---|
//! | `PUT /{queue}` with a `QueueDescription` entry | 201 and the queue's entry; 409 if a queue or topic has the name; 400 for a name with `/` (valid in Service Bus, but the AMQP side serves single-segment queue addresses only) |
//! | `PUT /{queue}` with `If-Match: *` | 200 and the entry after the update; 404 if it is missing |
//! | `GET /{queue}` | 200 and the entry, with `MessageCount`, `CountDetails` and `SizeInBytes` |
//! | `DELETE /{queue}` | 200; the queue and its messages are gone; 404 if it is missing |
//! | `GET /$Resources/queues?$skip=&$top=` | a feed of up to `$top` (≤ 100) queues in name order, with a `next` link while more follow |
//! | `PUT /{topic}` with a `TopicDescription` entry | 201 and the topic's entry; 409 if a topic or queue has the name; 400 for a name with `/`, as for queues |
//! | `PUT /{topic}` with `If-Match: *` | 200 and the entry (nothing of a topic is stored); 404 if it is missing |
//! | `GET /{topic}` | 200 and the entry, with `SubscriptionCount`, `SizeInBytes` and `CountDetails` (when no queue has the name) |
//! | `DELETE /{topic}` | 200; the topic, its subscriptions, their rules and messages are gone (when no queue has the name) |
//! | `GET /$Resources/topics?$skip=&$top=` | a feed of topics in name order, paged as queues |
//! | `PUT /{topic}/Subscriptions/{subscription}` with a `SubscriptionDescription` | 201 and its entry, with the `$Default` rule (or its `DefaultRuleDescription`); 409 if it exists; 404 if the topic is missing |
//! | `PUT /{topic}/Subscriptions/{subscription}` with `If-Match: *` | 200 and the entry after the update; 404 if it is missing |
//! | `GET /{topic}/Subscriptions/{subscription}` | 200 and the entry, with `MessageCount` and `CountDetails` |
//! | `DELETE /{topic}/Subscriptions/{subscription}` | 200; it, its rules and its messages are gone; 404 if it is missing |
//! | `GET /{topic}/Subscriptions?$skip=&$top=` | a feed of the topic's subscriptions in name order |
//! | `PUT /{topic}/Subscriptions/{subscription}/Rules/{rule}` with a `RuleDescription` | 201 and its entry; 409 if the rule exists; 400 for a filter that does not parse or a SQL action |
//! | `PUT …/Rules/{rule}` with `If-Match: *` | 200; the rule's filter is replaced in one step; 404 if it is missing |
//! | `GET …/Rules/{rule}`, `DELETE …/Rules/{rule}` | 200 and the entry, 200; 404 if it is missing |
//! | `GET /{topic}/Subscriptions/{subscription}/Rules?$skip=&$top=` | a feed of its rules in the order they were added |
//! | `GET /$namespaceinfo` | the namespace (named after the `Host` the client addressed) |
//!
//! `api-version` is accepted and ignored (2017-04, 2021-05 and 2024-05 read the same here). Errors
//! are Service Bus's `<Error><Code/><Detail/></Error>` with the status (`errors.rs`); what is
//! stored, echoed or refused of each description is in `queue_description.rs`,
//! `topic_description.rs`, `subscription_description.rs` and `rule_description.rs` (the checks
//! they share in `settings.rs`). Queues created here, and topics, subscriptions and rules, persist
//! in the queue database.
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

mod access;
mod atom;
mod errors;
mod names;
mod namespace;
mod queue_description;
mod queues;
mod rule_description;
mod rules;
mod settings;
mod subscription_description;
mod subscriptions;
mod target;
mod topic_description;
mod topics;
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
use target::{Entity, Listing, Page, Target};

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
/// checking tokens against `config.key` (and `config.bearer_tokens`), until `shutdown` is
/// cancelled; then finishes the requests in flight and returns. Run it beside [`crate::serve_with`] on the same `queue` and a second
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
    access::authorize(&parts.headers, &entities.config, &target.path(), sas::now_unix_secs())?;
    let site = Site::from_headers(&parts.headers);
    let page = || target::parse_page(parts.uri.query()).map_err(EntityError::bad_request);
    match (&parts.method, target) {
        (&Method::GET, Target::NamespaceInfo) => {
            atom_entry(StatusCode::OK, namespace::entry(&site, &entities.started).to_xml()?)
        }
        (&Method::GET, Target::List(Listing::Queues)) => atom_feed(queues::list(entities, &site, page()?).await?),
        (&Method::GET, Target::List(Listing::Topics)) => atom_feed(topics::list(entities, &site, page()?).await?),
        (&Method::GET, Target::List(Listing::Subscriptions { topic })) => {
            atom_feed(subscriptions::list(entities, &site, &topic, page()?).await?)
        }
        (&Method::GET, Target::List(Listing::Rules { topic, subscription })) => {
            atom_feed(rules::list(entities, &site, (&topic, &subscription), page()?)?)
        }
        (&Method::GET, Target::Entity(Entity::QueueOrTopic(name))) => {
            // Queues and topics share one namespace of names: the one that has it answers.
            let xml = if entities.queue.has_topic(&name) {
                topics::get(entities, &site, &name).await?
            } else {
                queues::get(entities, &site, &name).await?
            };
            atom_entry(StatusCode::OK, xml)
        }
        (&Method::DELETE, Target::Entity(Entity::QueueOrTopic(name))) => {
            if entities.queue.has_topic(&name) {
                topics::delete(entities, &name).await?;
            } else {
                queues::delete(entities, &name).await?;
            }
            Ok(StatusCode::OK.into_response())
        }
        (&Method::GET, Target::Entity(Entity::Subscription { topic, subscription })) => atom_entry(
            StatusCode::OK,
            subscriptions::get(entities, &site, &topic, &subscription).await?,
        ),
        (&Method::DELETE, Target::Entity(Entity::Subscription { topic, subscription })) => {
            subscriptions::delete(entities, &topic, &subscription).await?;
            Ok(StatusCode::OK.into_response())
        }
        (
            &Method::GET,
            Target::Entity(Entity::Rule {
                topic,
                subscription,
                rule,
            }),
        ) => atom_entry(
            StatusCode::OK,
            rules::get(entities, &site, (&topic, &subscription), &rule)?,
        ),
        (
            &Method::DELETE,
            Target::Entity(Entity::Rule {
                topic,
                subscription,
                rule,
            }),
        ) => {
            rules::delete(entities, (&topic, &subscription), &rule).await?;
            Ok(StatusCode::OK.into_response())
        }
        (&Method::PUT, Target::Entity(entity)) => {
            let body = read_body(&parts.headers, body).await?;
            let incoming = atom::parse_entry(&body)?;
            let (status, xml) = put(entities, &site, entity, incoming, put_mode(&parts.headers)).await?;
            atom_entry(status, xml)
        }
        (method, _) => Err(EntityError::method_not_allowed(format!(
            "{method} is not an operation of `{}`",
            parts.uri.path()
        ))),
    }
}

/// A `PUT` of `entity`: the description in the body must be of the kind the path names (a queue
/// or topic at `/{name}`, a subscription or rule below a topic).
async fn put(
    entities: &Entities,
    site: &Site,
    entity: Entity,
    incoming: Incoming,
    mode: PutMode,
) -> Result<(StatusCode, String), EntityError> {
    match (entity, incoming) {
        (Entity::QueueOrTopic(name), Incoming::Queue(description)) => {
            queues::put(entities, site, &name, &description, mode).await
        }
        (Entity::QueueOrTopic(name), Incoming::Topic(description)) => {
            topics::put(entities, site, &name, &description, mode).await
        }
        (Entity::Subscription { topic, subscription }, Incoming::Subscription(description)) => {
            subscriptions::put(entities, site, (&topic, &subscription), &description, mode).await
        }
        (
            Entity::Rule {
                topic,
                subscription,
                rule,
            },
            Incoming::Rule(description),
        ) => rules::put(entities, site, (&topic, &subscription), &rule, &description, mode).await,
        (entity, incoming) => {
            let expected = match entity {
                Entity::QueueOrTopic(_) => "QueueDescription or TopicDescription",
                Entity::Subscription { .. } => "SubscriptionDescription",
                Entity::Rule { .. } => "RuleDescription",
            };
            Err(EntityError::bad_request(format!(
                "`/{}` takes a {expected}, not a {}: queues and topics are PUT at /{{name}}, subscriptions at \
                 /{{topic}}/Subscriptions/{{subscription}}, rules at /{{topic}}/Subscriptions/{{subscription}}/Rules/{{rule}}",
                entity.path(),
                incoming.kind(),
            )))
        }
    }
}

/// Whether a `PUT` creates an entity or updates one (`If-Match: *`, as the SDKs send for update).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PutMode {
    /// The entity must not exist yet (else 409).
    Create,
    /// The entity must exist (else 404).
    Update,
}

/// One page of the list at `path`, titled `title`: `entries` is the page of `page`, out of
/// `total` in the list; a `next` link follows while more do.
fn page_feed(
    site: &Site,
    title: &str,
    path: &str,
    page: Page,
    total: usize,
    entries: Vec<atom::Entry>,
) -> Result<String, EntityError> {
    let next_skip = page.skip.saturating_add(page.top);
    let next = (next_skip < total).then(|| site.page_href(path, next_skip, page.top));
    let now = xsd::format_time(Some(SystemTime::now()));
    atom::Feed::new(title, site.page_href(path, page.skip, page.top), next, now, entries).to_xml()
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
