//! Ingress: the HTTP endpoint that takes Dataverse webhook posts into a queue.
//!
//! Dataverse posts the same `RemoteExecutionContext` JSON to webhooks as to
//! Service Bus, with `x-ms-dynamics-*` headers. The endpoint checks the key
//! (`?code=`, as Dataverse's *WebhookKey* auth sends it, or the
//! `x-functions-key` / `x-webhook-key` header for *HttpHeader* auth) in
//! constant time, checks that the body is a context it can decode, and
//! enqueues it with the `x-ms-dynamics-*` headers as properties. It answers
//! 202 only once the message is durably enqueued, so Dataverse retries
//! anything that did not make it.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use subtle::ConstantTimeEq as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::dataverse;
use crate::outbound::Secret;
use crate::transport::{OutgoingMessage, Output, Transport};

/// Headers that carry the key for *HttpHeader* authentication.
const KEY_HEADERS: [&str; 2] = ["x-functions-key", "x-webhook-key"];
/// Prefix of the Dataverse headers kept as message properties.
const DYNAMICS_HEADER_PREFIX: &str = "x-ms-dynamics-";

/// What the webhook endpoint needs.
pub struct Webhook<T> {
    pub transport: Arc<T>,
    /// Queue posted contexts go to.
    pub queue: String,
    /// The key callers must present.
    pub key: Secret,
    /// Largest body accepted, in bytes.
    pub max_body_bytes: usize,
}

/// Serves the webhook on `listener` until `shutdown` is cancelled.
///
/// `POST /` and `POST /api/webhook` both accept posts.
pub async fn serve<T: Transport>(
    listener: TcpListener,
    webhook: Webhook<T>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let max_body = webhook.max_body_bytes;
    let app = Router::new()
        .route("/", post(accept::<T>))
        .route("/api/webhook", post(accept::<T>))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(Arc::new(webhook));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

#[derive(serde::Deserialize)]
struct KeyQuery {
    code: Option<String>,
}

async fn accept<T: Transport>(
    State(webhook): State<Arc<Webhook<T>>>,
    Query(query): Query<KeyQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let presented = query.code.or_else(|| {
        KEY_HEADERS
            .iter()
            .find_map(|h| headers.get(*h)?.to_str().ok().map(str::to_owned))
    });
    let authorized = presented.is_some_and(|key| bool::from(key.as_bytes().ct_eq(webhook.key.expose().as_bytes())));
    if !authorized {
        return (StatusCode::UNAUTHORIZED, "missing or wrong webhook key\n".into());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .eq_ignore_ascii_case("application/json")
    {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type must be application/json (Dataverse webhooks post JSON), got `{content_type}`\n"),
        );
    }
    let context = match dataverse::decode(&body, Some("application/json"), &dataverse::Limits::default()) {
        Ok(context) => context,
        Err(err) => return (StatusCode::BAD_REQUEST, format!("not a Dataverse context: {err}\n")),
    };
    let properties = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with(DYNAMICS_HEADER_PREFIX))
        .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
        .collect();
    let message = OutgoingMessage {
        correlation_id: context.text("CorrelationId").map(str::to_owned),
        content_type: Some("application/json".into()),
        properties,
        body: body.to_vec(),
        ..OutgoingMessage::default()
    };
    match webhook
        .transport
        .send(vec![Output {
            queue: webhook.queue.clone(),
            message,
        }])
        .await
    {
        Ok(()) => (StatusCode::ACCEPTED, format!("queued on `{}`\n", webhook.queue)),
        Err(err) => {
            tracing::error!(queue = %webhook.queue, "webhook could not enqueue: {err}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "could not enqueue the message; retry later\n".into(),
            )
        }
    }
}
