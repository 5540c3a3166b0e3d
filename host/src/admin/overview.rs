//! What the console's first pages show, in one answer: every partner (version, state,
//! canary, version history and recent rates) and every queue's depth.
//!
//! - `GET /admin/overview`: the answer, as JSON.
//! - `GET /admin/overview/stream`: the same answer as server-sent events (`overview`), every
//!   [`STREAM_EVERY`], until the client leaves, its session ends or the host stops.
//!
//! Queue depths are read at most once per [`DEPTH_TTL`] whoever asks (the stream, the page,
//! `/metrics`): on Service Bus each is an HTTP call to the namespace.

use std::convert::Infallible;
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Serialize;

use super::guard::session_cookie;
use super::redact::redact_urls;
use super::{Admin, Shared};
use crate::activity::{BUCKET, Bucket};
use crate::component::{CanaryStatus, SlotStatus, VersionEvent};
use crate::dead_letters::format_instant;
use crate::telemetry::metrics::{PartnerLabels, metrics};

/// How often the stream sends the overview.
pub const STREAM_EVERY: Duration = Duration::from_secs(2);
/// How long a queue depth reading is reused.
pub const DEPTH_TTL: Duration = Duration::from_secs(2);

/// One queue's depth by state; the numbers are `None` when the transport could not say.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct QueueRow {
    pub queue: String,
    pub partner: Option<String>,
    pub active: Option<u64>,
    pub scheduled: Option<u64>,
    pub dead_lettered: Option<u64>,
    pub error: Option<String>,
}

/// The last depth reading, shared by everyone who asks within [`DEPTH_TTL`].
#[derive(Default)]
pub struct DepthCache(tokio::sync::Mutex<Option<(Instant, Vec<QueueRow>)>>);

/// Every queue's depth, read from the transport at most once per [`DEPTH_TTL`].
pub async fn queue_depths(admin: &Admin) -> Vec<QueueRow> {
    let mut cached = admin.depths.0.lock().await;
    if let Some((read, rows)) = cached.as_ref()
        && read.elapsed() < DEPTH_TTL
    {
        return rows.clone();
    }
    let mut rows = Vec::with_capacity(admin.queues.len());
    for queue in &admin.queues {
        let depth = match (admin.transport.embedded(), &admin.entities) {
            (Some(store), _) => store.queue_depth(queue).await.map_err(anyhow::Error::from),
            (None, Some(entities)) => entities.queue_depth(queue).await,
            (None, None) => Err(anyhow::anyhow!("this transport cannot report depths")),
        };
        let (depth, error) = match depth {
            Ok(depth) => (Some(depth), None),
            Err(err) => (None, Some(format!("{err:#}"))),
        };
        rows.push(QueueRow {
            queue: queue.clone(),
            partner: admin.queue_partners.get(queue).cloned(),
            active: depth.as_ref().map(|d| d.active),
            scheduled: depth.as_ref().map(|d| d.scheduled),
            dead_lettered: depth.as_ref().map(|d| d.dead_lettered),
            error,
        });
    }
    *cached = Some((Instant::now(), rows.clone()));
    rows
}

/// The whole overview.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Overview {
    at: String,
    bucket_seconds: u64,
    /// Whether steps link to traces (`[admin] trace-url`).
    trace_url: bool,
    partners: Vec<PartnerView>,
    queues: Vec<QueueRow>,
}

/// One partner as the console shows it. Text that may hold a URL is redacted first.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct PartnerView {
    partner: String,
    source: String,
    digest: Option<String>,
    version: String,
    size: usize,
    loaded_at: String,
    last_pulled_at: Option<String>,
    last_pull_error: Option<String>,
    reloads: u64,
    failed_reloads: u64,
    last_error: Option<String>,
    /// serving, canary, or degraded (the last reload or pull failed).
    state: &'static str,
    canary: Option<CanaryView>,
    last_canary: Option<String>,
    history: Vec<HistoryView>,
    activity: ActivityView,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct CanaryView {
    version: String,
    percent: u8,
    margin: f64,
    window: usize,
    candidate_results: usize,
    candidate_failures: usize,
    stable_results: usize,
    stable_failures: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct HistoryView {
    at: String,
    event: crate::component::VersionEventKind,
    from: Option<String>,
    to: Option<String>,
    detail: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ActivityView {
    in_flight: i64,
    #[serde(flatten)]
    total: Bucket,
    buckets: Vec<BucketView>,
}

#[derive(Serialize)]
struct BucketView {
    at: String,
    #[serde(flatten)]
    counts: Bucket,
}

impl From<CanaryStatus> for CanaryView {
    fn from(c: CanaryStatus) -> Self {
        Self {
            version: c.version,
            percent: c.percent,
            margin: c.margin,
            window: c.window,
            candidate_results: c.candidate_results,
            candidate_failures: c.candidate_failures,
            stable_results: c.stable_results,
            stable_failures: c.stable_failures,
        }
    }
}

impl From<VersionEvent> for HistoryView {
    fn from(event: VersionEvent) -> Self {
        Self {
            at: format_instant(event.at),
            event: event.kind,
            from: event.from,
            to: event.to,
            detail: event.detail.as_deref().map(redact_urls),
        }
    }
}

fn partner_view(admin: &Admin, status: SlotStatus, now: SystemTime) -> PartnerView {
    let window = admin.rates.window(&status.partner, now);
    let in_flight = metrics()
        .in_flight
        .get_or_create(&PartnerLabels {
            partner: status.partner.clone(),
        })
        .get();
    let state = match (&status.canary, &status.last_error, &status.last_pull_error) {
        (Some(_), _, _) => "canary",
        (None, None, None) => "serving",
        _ => "degraded",
    };
    PartnerView {
        source: redact_urls(&status.source),
        digest: status.digest,
        version: status.version,
        size: status.size,
        loaded_at: format_instant(status.loaded_at),
        last_pulled_at: status.last_pulled_at.map(format_instant),
        last_pull_error: status.last_pull_error.as_deref().map(redact_urls),
        reloads: status.reloads,
        failed_reloads: status.failed_reloads,
        last_error: status.last_error.as_deref().map(redact_urls),
        state,
        canary: status.canary.map(CanaryView::from),
        last_canary: status.last_canary,
        history: status.history.into_iter().map(HistoryView::from).collect(),
        activity: ActivityView {
            in_flight,
            total: window.total,
            buckets: window
                .buckets
                .into_iter()
                .map(|(at, counts)| BucketView {
                    at: format_instant(at),
                    counts,
                })
                .collect(),
        },
        partner: status.partner,
    }
}

async fn overview_of(admin: &Admin) -> Overview {
    let now = SystemTime::now();
    Overview {
        at: format_instant(now),
        bucket_seconds: BUCKET.as_secs(),
        trace_url: admin.trace_url.is_some(),
        partners: admin
            .registry
            .status()
            .into_iter()
            .map(|status| partner_view(admin, status, now))
            .collect(),
        queues: queue_depths(admin).await,
    }
}

pub async fn overview(State(admin): Shared) -> Response {
    Json(overview_of(&admin).await).into_response()
}

pub async fn stream(State(admin): Shared, headers: HeaderMap) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // A stream a session opened ends when the session does (sign-out, expiry).
    let session = session_cookie(&headers)
        .filter(|_| !headers.contains_key(axum::http::header::AUTHORIZATION))
        .map(str::to_string);
    let events = futures::stream::unfold((admin, session, true), |(admin, session, first)| async move {
        if !first {
            tokio::select! {
                () = tokio::time::sleep(STREAM_EVERY) => {}
                () = admin.shutdown.cancelled() => return None,
            }
        }
        if let Some(id) = &session
            && admin.sessions.csrf(id).is_none()
        {
            return None;
        }
        let overview = overview_of(&admin).await;
        let event = Event::default()
            .event("overview")
            .json_data(&overview)
            .unwrap_or_else(|err| Event::default().event("error").data(err.to_string()));
        Some((Ok(event), (admin, session, false)))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
