//! Logging setup (`tracing` to stderr as text for people or JSON for machines), span export over
//! OTLP ([`otel`]), W3C trace context ([`traceparent`]) and the Prometheus [`metrics`].
//!
//! The log filter comes from `RUST_LOG` (default `info`; the quickstart, whose own
//! progress output is the point, defaults to `warn`). Guest log lines arrive
//! under the `sagahost::guest` target with the partner name as a field. Exported
//! spans are those at `info` and above, whatever the log filter.

#[cfg(test)]
pub(crate) mod capture;
pub mod metrics;
pub mod otel;
pub mod traceparent;

use clap::ValueEnum;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Keeps span export running; dropping it flushes the spans not yet exported.
#[must_use = "dropping the guard stops span export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("warning: exporting the last spans failed: {err}");
        }
    }
}

/// Installs the global subscriber: logs to stderr (`default_filter` applies unless `RUST_LOG`
/// is set) and, when the `OTEL_*` environment asks for it, span export. Safe to call more than
/// once (later calls install nothing).
pub fn init(format: LogFormat, default_filter: &str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs.json().boxed(),
    };
    let provider = if otel::export_requested() {
        otel::tracer_provider()
            .inspect_err(|err| eprintln!("warning: spans will not be exported: {err:#}"))
            .ok()
    } else {
        None
    };
    let spans = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("sagahost"))
            .with_filter(LevelFilter::INFO)
    });
    let installed = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(spans)
        .try_init()
        .is_ok();
    Telemetry {
        provider: provider.filter(|_| installed),
    }
}
