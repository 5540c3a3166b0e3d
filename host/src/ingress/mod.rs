//! Ingress: the HTTP endpoint that takes Dataverse webhook posts into a queue.
//!
//! Dataverse posts the same `RemoteExecutionContext` JSON to webhooks as to
//! Service Bus, with `x-ms-dynamics-*` headers. The endpoint checks the key
//! (`?code=`, as Dataverse's *WebhookKey* auth sends it, or the
//! `x-functions-key` / `x-webhook-key` header for *HttpHeader* auth) in
//! constant time (a request without one is refused, see [`AccessKey`]), checks that the body is a context it can decode, and
//! enqueues it with the `x-ms-dynamics-*` headers as properties. It answers
//! 202 only once the message is durably enqueued, so Dataverse retries
//! anything that did not make it.
//!
//! The key and the content type are checked before the body is read, and the
//! body is read under a size limit (413) and a deadline (408). A client gets
//! the same deadline to send its headers, after which hyper drops the
//! connection: slow clients cannot hold connections open. axum's own `serve`
//! sets no such deadline, hence the accept loop here.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use sagahost_dataverse::{Format, Limits};
use sagahost_transport::{OutgoingMessage, Output, Transport};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::component::context::to_wit;
use crate::config::AccessKey;
use crate::saga::ordering::SessionIds;

/// How long in-flight requests get to finish once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
    pub key: AccessKey,
    /// Largest body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Deadline for a client's headers, and then for its body.
    pub request_timeout: Duration,
    /// Session ids for the queue when it is session-enabled.
    pub sessions: SessionIds,
}

/// Serves the webhook on `listener` until `shutdown` is cancelled.
///
/// `POST /` and `POST /api/webhook` both accept posts. Failures to accept a
/// connection are logged and retried, so this returns only at shutdown.
pub async fn serve<T: Transport>(listener: TcpListener, webhook: Webhook<T>, shutdown: CancellationToken) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(webhook.request_timeout);
    let app = Router::new()
        .route("/", post(accept::<T>))
        .route("/api/webhook", post(accept::<T>))
        .with_state(Arc::new(webhook));
    let service = TowerToHyperService::new(app);
    let connections = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!("webhook could not accept a connection: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let connection = connections.watch(http.serve_connection(TokioIo::new(stream), service.clone()));
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, "webhook connection ended: {err}");
            }
        });
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("webhook requests still running after {SHUTDOWN_GRACE:?}; closing them");
    }
}

#[derive(serde::Deserialize)]
struct KeyQuery {
    code: Option<String>,
}

async fn accept<T: Transport>(
    State(webhook): State<Arc<Webhook<T>>>,
    Query(query): Query<KeyQuery>,
    headers: HeaderMap,
    body: Body,
) -> (StatusCode, String) {
    let presented = query.code.or_else(|| {
        KEY_HEADERS
            .iter()
            .find_map(|h| headers.get(*h)?.to_str().ok().map(str::to_owned))
    });
    if !webhook.key.admits(presented.as_deref()) {
        return (StatusCode::UNAUTHORIZED, "missing or wrong webhook key\n".into());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if Format::from_content_type(content_type) != Some(Format::Json) {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type must be application/json or text/json (Dataverse webhooks post JSON), got \
                 `{content_type}`\n"
            ),
        );
    }
    let body = match read_body(body, &webhook).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let context = match sagahost_dataverse::decode(&body, Some("application/json"), &Limits::default()) {
        Ok(context) => context,
        Err(err) => return (StatusCode::BAD_REQUEST, format!("not a Dataverse context: {err}\n")),
    };
    let properties = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with(DYNAMICS_HEADER_PREFIX))
        .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
        .collect();
    // Named here, not by the transport, so the answer can say which message the post became.
    let message_id = uuid::Uuid::new_v4().to_string();
    let session_id = webhook.sessions.is_ordered(&webhook.queue).then(|| {
        let context = to_wit(&context, false);
        webhook.sessions.for_queue(&webhook.queue, Some(&context), &message_id)
    });
    let message = OutgoingMessage {
        message_id: message_id.clone(),
        session_id: session_id.flatten(),
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
        Ok(()) => (
            StatusCode::ACCEPTED,
            format!("queued on `{}` as message {message_id}\n", webhook.queue),
        ),
        Err(err) => {
            tracing::error!(queue = %webhook.queue, "webhook could not enqueue: {err}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "could not enqueue the message; retry later\n".into(),
            )
        }
    }
}

/// The request body, read under the size limit and the deadline.
async fn read_body<T>(body: Body, webhook: &Webhook<T>) -> Result<Bytes, (StatusCode, String)> {
    let limited = Limited::new(body, webhook.max_body_bytes).collect();
    match tokio::time::timeout(webhook.request_timeout, limited).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) if err.is::<LengthLimitError>() => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is larger than the limit of {} bytes\n",
                webhook.max_body_bytes
            ),
        )),
        Ok(Err(err)) => Err((StatusCode::BAD_REQUEST, format!("could not read the body: {err}\n"))),
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {:?}\n", webhook.request_timeout),
        )),
    }
}
