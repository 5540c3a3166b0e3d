//! The operator endpoint: health, readiness, Prometheus metrics and the admin API.
//!
//! - `GET /healthz`: the process is up.
//! - `GET /readyz`: every partner is loaded and the transport answers a round trip (a query
//!   of the embedded queue, a peek on Service Bus) within [`READY_TIMEOUT`].
//! - `GET /metrics`: Prometheus metrics (OpenMetrics text).
//! - `GET /admin/partners`: each partner's component version, source and digest, reload
//!   counters, last error and last pull error.
//! - `POST /admin/partners/{name}/reload`: reload a partner's component from its source (a
//!   file read again, an OCI tag resolved).
//! - `POST /admin/partners/{name}/canary` (body: `{"component": PATH or oci://… or https://…,
//!   "component-sha256": HEX (with https), "percent": N, "margin": 0.05, "window": 50}`),
//!   `POST …/canary/promote`, `POST …/canary/abort`; with shared canaries (`[fleet]`, the
//!   default on Service Bus) they apply on every replica.
//! - Dead letters, on either transport (`dead_letters.rs`): `GET /admin/dead-letters/{queue}`
//!   (filters and paging in the query), `GET …/{queue}/{sequence}`, `POST …/{sequence}/redrive`,
//!   `DELETE …/{queue}/{sequence}`, and in bulk `POST …/{queue}/redrive` and
//!   `POST …/{queue}/purge`.
//!
//! - `GET /admin/overview` (and `/admin/overview/stream`, server-sent events): partners with
//!   their rates and version history, and queue depths (`overview.rs`).
//! - `GET /admin/sagas?by=saga|record|correlation&q=…`: recent sagas (`sagas.rs`).
//! - `/console/`: the operator console in the browser (`console.rs`).
//!
//! It binds to localhost by default. The `/admin` routes need
//! `Authorization: Bearer <token>` (compared in constant time, a missing header
//! never matching), or a console session, whenever a token is configured; the config
//! refuses a non-loopback address without one, and a token shorter than 16 characters.
//! `guard.rs` says who may do what from a browser.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sagahost_transport::HostTransport;
use sagahost_transport::servicebus::entities::EntityClient;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::activity::{Rates, SagaIndex};
use crate::component::{CanaryPlan, Registry, Reloaded};
use crate::config::AccessKey;
use crate::fleet::SharedCanaries;
use crate::saga::seal::StateKeys;
use crate::telemetry::metrics::{QueueLabels, metrics};

mod console;
mod dead_letters;
mod guard;
mod overview;
mod redact;
mod sagas;

/// How long `/readyz` waits for the transport's answer.
pub const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// What the admin endpoint serves.
pub struct Admin {
    pub registry: Arc<Registry>,
    /// The host's transport (readiness, depth gauges, dead letters).
    pub transport: Arc<HostTransport>,
    /// Every queue the host uses, for depth gauges and the dead-letter routes.
    pub queues: Vec<String>,
    /// The partner reading each queue, for the dead-letter partner filter.
    pub queue_partners: BTreeMap<String, String>,
    /// The keys that seal saga state, for redrives that reset the attempt counter.
    pub state_keys: StateKeys,
    /// On Service Bus, the entity-management API the depth gauges read.
    pub entities: Option<EntityClient>,
    /// Required bearer token for `/admin` routes, if any.
    pub token: Option<AccessKey>,
    /// Canaries shared with the other replicas; `None` keeps them to this host.
    pub fleet: Option<Arc<SharedCanaries>>,
    /// Each partner's recent rates, for the console's charts.
    pub rates: Arc<Rates>,
    /// The index of recent sagas the console searches.
    pub sagas: Arc<SagaIndex>,
    /// The link to a step's trace, with `{trace-id}` and `{saga-id}` (`[admin] trace-url`).
    pub trace_url: Option<String>,
    /// Stops the endpoint, and the console's live streams with it.
    pub shutdown: CancellationToken,
    /// The console's signed-in sessions.
    pub sessions: guard::Sessions,
    /// The last queue depths read.
    pub depths: overview::DepthCache,
}

/// Serves the admin endpoint on `listener` until `admin.shutdown` is cancelled.
pub async fn serve(listener: TcpListener, admin: Admin) -> std::io::Result<()> {
    let shutdown = admin.shutdown.clone();
    let admin = Arc::new(admin);
    let guarded = Router::new()
        .route("/admin/partners", get(partners))
        .route("/admin/overview", get(overview::overview))
        .route("/admin/overview/stream", get(overview::stream))
        .route("/admin/sagas", get(sagas::find))
        .route("/admin/partners/{name}/reload", post(reload))
        .route("/admin/partners/{name}/canary", post(start_canary))
        .route("/admin/partners/{name}/canary/{action}", post(end_canary))
        .route("/admin/dead-letters/{queue}", get(dead_letters::list))
        .route(
            "/admin/dead-letters/{queue}/redrive",
            post(dead_letters::redrive_matching),
        )
        .route("/admin/dead-letters/{queue}/purge", post(dead_letters::purge_matching))
        .route(
            "/admin/dead-letters/{queue}/{sequence}",
            get(dead_letters::show).delete(dead_letters::purge_one),
        )
        .route(
            "/admin/dead-letters/{queue}/{sequence}/redrive",
            post(dead_letters::redrive_one),
        )
        .route_layer(middleware::from_fn_with_state(admin.clone(), guard::guard));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(render_metrics))
        .merge(guarded)
        .merge(console::routes())
        .layer(middleware::map_response(console::security_headers))
        .with_state(admin);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

type Shared = State<Arc<Admin>>;

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(serde_json::json!({ "error": message.to_string() }))).into_response()
}

async fn ready(State(admin): Shared) -> Response {
    let loaded = admin.registry.partners().count();
    if loaded == 0 {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: no partners loaded\n").into_response();
    }
    let queue = admin.queues.first().map(String::as_str).unwrap_or_default();
    let answered = match tokio::time::timeout(READY_TIMEOUT, admin.transport.round_trip(queue)).await {
        Ok(answered) => answered.map_err(|err| err.to_string()),
        Err(_) => Err(format!("no answer within {READY_TIMEOUT:?}")),
    };
    if let Err(err) = answered {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: transport: {err}\n"),
        )
            .into_response();
    }
    (
        StatusCode::OK,
        format!("ready: {loaded} partners loaded, the transport answers\n"),
    )
        .into_response()
}

async fn render_metrics(State(admin): Shared) -> Response {
    for row in overview::queue_depths(&admin).await {
        let states = [
            ("active", row.active),
            ("scheduled", row.scheduled),
            ("dead_lettered", row.dead_lettered),
        ];
        for (state, value) in states {
            let Some(value) = value else { continue };
            let labels = QueueLabels {
                queue: row.queue.clone(),
                state: state.into(),
            };
            metrics().queue_depth.get_or_create(&labels).set(value as i64);
        }
    }
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], metrics().render()).into_response()
}

async fn partners(State(admin): Shared) -> Response {
    Json(admin.registry.status()).into_response()
}

async fn reload(State(admin): Shared, Path(name): Path<String>) -> Response {
    if !admin.registry.partners().any(|p| p == name) {
        return error(StatusCode::NOT_FOUND, format!("no partner named `{name}`"));
    }
    match admin.registry.reload(&name).await {
        Ok(Reloaded::Unchanged { version }) => {
            Json(serde_json::json!({ "partner": name, "result": "unchanged", "version": version })).into_response()
        }
        Ok(Reloaded::Replaced { from, to }) => {
            Json(serde_json::json!({ "partner": name, "result": "replaced", "from": from, "to": to })).into_response()
        }
        Err(err) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{err:#}; the old version keeps serving"),
        ),
    }
}

async fn start_canary(State(admin): Shared, Path(name): Path<String>, Json(plan): Json<CanaryPlan>) -> Response {
    let started = match &admin.fleet {
        Some(fleet) => fleet.start(&name, plan).await,
        None => admin.registry.start_canary(&name, plan).await,
    };
    match started {
        Ok(version) => Json(serde_json::json!({ "partner": name, "canary": version })).into_response(),
        Err(err) => error(StatusCode::UNPROCESSABLE_ENTITY, format!("{err:#}")),
    }
}

async fn end_canary(State(admin): Shared, Path((name, action)): Path<(String, String)>) -> Response {
    let result = match (action.as_str(), &admin.fleet) {
        ("promote", Some(fleet)) => fleet.promote(&name).await,
        ("abort", Some(fleet)) => fleet.abort(&name).await,
        ("promote", None) => admin.registry.promote_canary(&name),
        ("abort", None) => admin.registry.abort_canary(&name),
        (other, _) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("unknown canary action `{other}`: use promote or abort"),
            );
        }
    };
    match result {
        Ok(version) => Json(serde_json::json!({ "partner": name, action: version })).into_response(),
        Err(err) => error(StatusCode::CONFLICT, format!("{err:#}")),
    }
}
