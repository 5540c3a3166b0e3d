//! The Service Bus client with an Entra ID credential instead of a connection string, against
//! `sagahost broker` on loopback: its client-credentials tokens come from an OAuth token endpoint
//! this test serves, and the broker accepts the tokens that endpoint issues as its
//! `bearer_tokens` (the broker's stand-in for Entra ID validation).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use sagahost_broker::{self as broker, BearerToken, BrokerConfig};
use sagahost_identity::{ClientCredentials, Secret, TokenSource};
use sagahost_transport::embedded::{EmbeddedQueue, QueueSettings};
use sagahost_transport::servicebus::entities::{Ensured, EntityClient};
use sagahost_transport::servicebus::{ServiceBusOptions, ServiceBusTarget, ServiceBusTransport};
use sagahost_transport::{OutgoingMessage, Output, Settlement, Transport};

const CLIENT_ID: &str = "sagahost-test-client";
const CLIENT_SECRET: &str = "client-secret-that-must-not-leak";

/// What the token endpoint answers to its `n`th request (from 0).
#[derive(Clone, Copy)]
enum Issue {
    /// `token-<n>`, which the broker accepts, living `expires_in` seconds.
    Accepted { expires_in: u64 },
    /// `token-<n>` for the first `ok` requests, then `500`.
    AcceptedThenDown { expires_in: u64, ok: usize },
    /// `unlisted-<n>`, which the broker does not accept.
    Unlisted,
    /// `unlisted-<n>` first, then accepted tokens: a token the broker answers `401`.
    UnlistedThenAccepted,
    /// `400 invalid_client`, as Entra ID answers a wrong client secret.
    InvalidClient,
}

/// An OAuth token endpoint on loopback issuing numbered tokens, counting requests.
struct TokenEndpoint {
    url: String,
    requests: Arc<AtomicUsize>,
}

type Shared = (Arc<AtomicUsize>, Issue);

async fn token(State((requests, issue)): State<Shared>, form: String) -> Response {
    // The form the client-credentials grant posts, for Service Bus's scope.
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    assert!(
        form.contains("scope=https%3A%2F%2Fservicebus.azure.net%2F.default"),
        "{form}"
    );
    let n = requests.fetch_add(1, Ordering::SeqCst);
    let answer = |token: String, expires_in: u64| {
        let body = format!(r#"{{"token_type":"Bearer","access_token":"{token}","expires_in":{expires_in}}}"#);
        (StatusCode::OK, [("content-type", "application/json")], body).into_response()
    };
    match issue {
        Issue::Accepted { expires_in } => answer(format!("token-{n}"), expires_in),
        Issue::AcceptedThenDown { expires_in, ok } if n < ok => answer(format!("token-{n}"), expires_in),
        Issue::AcceptedThenDown { .. } => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Issue::Unlisted => answer(format!("unlisted-{n}"), 3600),
        Issue::UnlistedThenAccepted if n == 0 => answer(format!("unlisted-{n}"), 3600),
        Issue::UnlistedThenAccepted => answer(format!("token-{n}"), 3600),
        Issue::InvalidClient => (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/json")],
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#,
        )
            .into_response(),
    }
}

impl TokenEndpoint {
    async fn start(issue: Issue) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/tenant/oauth2/v2.0/token", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new()
            .route("/tenant/oauth2/v2.0/token", axum::routing::post(token))
            .with_state((requests.clone(), issue));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, requests }
    }

    fn source(&self) -> Arc<TokenSource> {
        let credentials = ClientCredentials::with_secret(&self.url, CLIENT_ID, Secret::new(CLIENT_SECRET));
        Arc::new(TokenSource::from(credentials))
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// The broker on loopback (AMQP and the entity endpoint) accepting `token-0` … `token-49`.
struct Broker {
    amqp: String,
    http: String,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Broker {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let queue = EmbeddedQueue::open(&dir.path().join("queue.db"), &[]).unwrap();
        let config = BrokerConfig {
            bearer_tokens: (0..50).map(|n| BearerToken::new(format!("token-{n}"))).collect(),
            ..BrokerConfig::default()
        };
        let (amqp, http) = (
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
        );
        let (amqp_address, http_address) = (amqp.local_addr().unwrap(), http.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        tokio::spawn(broker::serve_entities(
            http,
            queue.clone(),
            config.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(broker::serve_with(amqp, queue, config, shutdown.clone()));
        Self {
            amqp: format!("amqp://{amqp_address}"),
            http: format!("http://{http_address}"),
            shutdown,
            _dir: dir,
        }
    }

    fn target(&self, endpoint: &TokenEndpoint) -> ServiceBusTarget {
        ServiceBusTarget::entra(&self.amqp, endpoint.source())
    }

    async fn connect(&self, endpoint: &TokenEndpoint) -> anyhow::Result<ServiceBusTransport> {
        ServiceBusTransport::connect_with(&self.target(endpoint), ServiceBusOptions::default()).await
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn output(queue: &str, id: &str) -> Output {
    Output {
        queue: queue.into(),
        message: OutgoingMessage {
            message_id: id.into(),
            body: format!("{{\"id\":\"{id}\"}}").into_bytes(),
            ..OutgoingMessage::default()
        },
    }
}

/// Receives and completes the one message `id` on `queue`.
async fn receive_and_complete(transport: &ServiceBusTransport, queue: &str, id: &str) {
    let batch = transport.receive(queue, 1, Duration::from_secs(5)).await.unwrap();
    let [message] = batch.as_slice() else {
        panic!("expected one message, got {}", batch.len())
    };
    assert_eq!(message.message_id, id);
    transport.settle(message, Settlement::Complete, vec![]).await.unwrap();
}

#[tokio::test]
async fn a_client_credentials_token_sends_receives_and_completes() {
    let endpoint = TokenEndpoint::start(Issue::Accepted { expires_in: 3600 }).await;
    let broker = Broker::start().await;
    let transport = broker.connect(&endpoint).await.unwrap();
    transport.send(vec![output("orders", "m-1")]).await.unwrap();
    receive_and_complete(&transport, "orders", "m-1").await;
    assert!(
        transport
            .receive("orders", 1, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );
    // One token serves the connect and every audience.
    assert_eq!(endpoint.requests(), 1);
    transport.close().await;
}

#[tokio::test]
async fn short_lived_tokens_are_renewed_on_the_live_connection() {
    let endpoint = TokenEndpoint::start(Issue::Accepted { expires_in: 4 }).await;
    let broker = Broker::start().await;
    let transport = broker.connect(&endpoint).await.unwrap();
    // Authorizes `renewed` with token-0, which the broker honours until it expires.
    transport.send(vec![output("renewed", "m-1")]).await.unwrap();
    assert_eq!(endpoint.requests(), 1);

    // Past token-0's expiry: a new link to `renewed` (the receiver) attaches only if a newer
    // token was put for it on this connection meanwhile.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(endpoint.requests() >= 2, "the token was not renewed");
    let batch = transport.receive("renewed", 1, Duration::from_secs(5)).await.unwrap();
    let [message] = batch.as_slice() else {
        panic!("expected one message, got {}", batch.len())
    };

    // Past that token's expiry too: the `$management` link of a lock renewal attaches on a
    // third token.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(endpoint.requests() >= 3, "the token was renewed only once");
    transport.renew_lock(message).await.unwrap();
    transport.settle(message, Settlement::Complete, vec![]).await.unwrap();
    transport.close().await;
}

#[tokio::test]
async fn a_token_that_cannot_be_renewed_stops_new_links_once_it_expires() {
    // The control for the test above: without renewal the broker refuses the same attach.
    let endpoint = TokenEndpoint::start(Issue::AcceptedThenDown { expires_in: 3, ok: 1 }).await;
    let broker = Broker::start().await;
    let transport = broker.connect(&endpoint).await.unwrap();
    transport.send(vec![output("stale", "m-1")]).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(endpoint.requests() >= 2, "a renewal was tried");
    let refused = transport.receive("stale", 1, Duration::from_secs(1)).await;
    let error = format!("{:#}", refused.expect_err("the token expired"));
    assert!(
        error.contains("UnauthorizedAccess") && error.contains("`stale`"),
        "{error}"
    );
    assert!(!error.contains("token-0"), "the token leaked into the error: {error}");
    transport.close().await;
}

#[tokio::test]
async fn a_token_endpoint_that_refuses_fails_the_connect_with_a_clear_error() {
    let endpoint = TokenEndpoint::start(Issue::InvalidClient).await;
    let broker = Broker::start().await;
    let error = match broker.connect(&endpoint).await {
        Ok(_) => panic!("connected without a token"),
        Err(error) => format!("{error:#}"),
    };
    assert!(
        error.contains("getting an Entra ID token for Service Bus `127.0.0.1` failed"),
        "{error}"
    );
    assert!(error.contains(&endpoint.url) && error.contains(CLIENT_ID), "{error}");
    assert!(error.contains("invalid_client"), "{error}");
    assert!(!error.contains(CLIENT_SECRET), "the client secret leaked: {error}");
}

#[tokio::test]
async fn a_jwt_the_broker_does_not_accept_is_refused_with_a_clear_error() {
    let endpoint = TokenEndpoint::start(Issue::Unlisted).await;
    let broker = Broker::start().await;
    // Connecting puts no token yet; the first link's does.
    let transport = broker.connect(&endpoint).await.unwrap();
    let error = format!("{:#}", transport.send(vec![output("orders", "m-1")]).await.unwrap_err());
    assert!(
        error.contains("refused the Entra ID token for `sb://127.0.0.1/orders` (401"),
        "{error}"
    );
    assert!(error.contains("Service Bus data role"), "{error}");
    assert!(
        !error.contains("unlisted-0"),
        "the token leaked into the error: {error}"
    );
    transport.close().await;
}

#[tokio::test]
async fn the_entity_client_authenticates_with_a_bearer_token() {
    let endpoint = TokenEndpoint::start(Issue::Accepted { expires_in: 3600 }).await;
    let broker = Broker::start().await;
    let target = broker.target(&endpoint);
    let entities = EntityClient::with_target(&target, Some(&broker.http)).unwrap();
    assert_eq!(
        entities.ensure_queue(&QueueSettings::new("billing")).await.unwrap(),
        Ensured::Created
    );
    assert_eq!(
        entities.ensure_queue(&QueueSettings::new("billing")).await.unwrap(),
        Ensured::Existed
    );
    let transport = ServiceBusTransport::connect_with(&target, ServiceBusOptions::default())
        .await
        .unwrap();
    transport.send(vec![output("billing", "m-1")]).await.unwrap();
    assert_eq!(entities.queue_depth("billing").await.unwrap().active, 1);
    // The entity client and the transport share the target's cached token.
    assert_eq!(endpoint.requests(), 1);
    transport.close().await;
}

#[tokio::test]
async fn the_entity_client_repeats_a_request_refused_401_once_with_a_new_token() {
    let endpoint = TokenEndpoint::start(Issue::UnlistedThenAccepted).await;
    let broker = Broker::start().await;
    let entities = EntityClient::with_target(&broker.target(&endpoint), Some(&broker.http)).unwrap();
    assert_eq!(
        entities.ensure_queue(&QueueSettings::new("billing")).await.unwrap(),
        Ensured::Created
    );
    assert_eq!(endpoint.requests(), 2, "one refresh after the 401");
}

#[tokio::test]
async fn the_entity_client_reports_a_bearer_token_the_endpoint_refuses() {
    let endpoint = TokenEndpoint::start(Issue::Unlisted).await;
    let broker = Broker::start().await;
    let entities = EntityClient::with_target(&broker.target(&endpoint), Some(&broker.http)).unwrap();
    let error = format!("{:#}", entities.queue_depth("billing").await.unwrap_err());
    assert!(error.contains("401") && error.contains("billing"), "{error}");
    assert!(!error.contains("unlisted-"), "the token leaked into the error: {error}");
    // One repeat with a fresh token, never a loop.
    assert_eq!(endpoint.requests(), 2);
}
