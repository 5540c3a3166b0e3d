//! Prometheus metrics, per partner and component version.
//!
//! One process-wide set of metric families ([`metrics()`]), recorded where the
//! work happens (executor, outbound, registry) and rendered in the OpenMetrics
//! text format by the admin endpoint's `/metrics`.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a message outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub partner: String,
    pub version: String,
    /// completed, forwarded, retried, compensating, compensated, dead_lettered.
    pub outcome: String,
}

/// Labels naming a partner's component version.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub partner: String,
    pub version: String,
}

/// Labels of a sandbox limit hit.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub partner: String,
    pub version: String,
    /// deadline, memory, fuel, stack.
    pub limit: String,
}

/// Labels of an outbound request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutboundLabels {
    pub partner: String,
    /// The HTTP status, or the error kind (timeout, blocked, connection…).
    pub status: String,
}

/// Labels naming a partner.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartnerLabels {
    pub partner: String,
}

/// Labels of a queue depth.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: String,
    /// active, scheduled, dead_lettered.
    pub state: String,
}

/// Labels of a reload attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub partner: String,
    /// replaced, unchanged, failed.
    pub result: String,
}

/// Labels naming a Key Vault secret.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SecretLabels {
    pub vault: String,
    pub secret: String,
}

/// Every metric the host records.
pub struct Metrics {
    pub messages: Family<OutcomeLabels, Counter>,
    pub handle_seconds: Family<VersionLabels, Histogram>,
    pub outbound_seconds: Family<OutboundLabels, Histogram>,
    pub limit_hits: Family<LimitLabels, Counter>,
    pub in_flight: Family<PartnerLabels, Gauge>,
    pub queue_depth: Family<QueueLabels, Gauge>,
    pub reloads: Family<ReloadLabels, Counter>,
    /// Pulls and checks of a component's registry or URL that failed (the running version
    /// kept serving).
    pub component_source_failures: Family<PartnerLabels, Counter>,
    /// Failed refreshes of Key Vault secrets (the last value stays in use).
    pub secret_refresh_failures: Family<SecretLabels, Counter>,
    registry: Registry,
}

fn latency_histogram() -> Histogram {
    // 1 ms to ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("sagahost");
        let messages = Family::<OutcomeLabels, Counter>::default();
        let handle_seconds =
            Family::<VersionLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let outbound_seconds =
            Family::<OutboundLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let limit_hits = Family::<LimitLabels, Counter>::default();
        let in_flight = Family::<PartnerLabels, Gauge>::default();
        let queue_depth = Family::<QueueLabels, Gauge>::default();
        let reloads = Family::<ReloadLabels, Counter>::default();
        let component_source_failures = Family::<PartnerLabels, Counter>::default();
        let secret_refresh_failures = Family::<SecretLabels, Counter>::default();
        registry.register("messages", "Messages handled, by outcome", messages.clone());
        registry.register(
            "handle_seconds",
            "Time from receipt to settlement of one message",
            handle_seconds.clone(),
        );
        registry.register(
            "outbound_request_seconds",
            "Outbound HTTP request latency, by status",
            outbound_seconds.clone(),
        );
        registry.register(
            "limit_hits",
            "Component calls stopped by a sandbox limit",
            limit_hits.clone(),
        );
        registry.register("in_flight_messages", "Messages being handled now", in_flight.clone());
        registry.register(
            "queue_depth",
            "Messages in each embedded queue, by state",
            queue_depth.clone(),
        );
        registry.register(
            "component_reloads",
            "Component reload attempts, by result",
            reloads.clone(),
        );
        registry.register(
            "component_source_failures",
            "Failed pulls and tag checks of a component's registry or URL; the running version keeps serving",
            component_source_failures.clone(),
        );
        registry.register(
            "secret_refresh_failures",
            "Failed refreshes of Key Vault secrets; the last value read stays in use",
            secret_refresh_failures.clone(),
        );
        Self {
            messages,
            handle_seconds,
            outbound_seconds,
            limit_hits,
            in_flight,
            queue_depth,
            reloads,
            component_source_failures,
            secret_refresh_failures,
            registry,
        }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}
