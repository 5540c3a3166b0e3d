//! Logging setup (`tracing` to stderr as text for people or JSON for machines)
//! and the Prometheus [`metrics`].
//!
//! The filter comes from `RUST_LOG` (default `info`; the quickstart, whose own
//! progress output is the point, defaults to `warn`). Guest log lines arrive
//! under the `sagahost::guest` target with the partner name as a field.

pub mod metrics;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber; `default_filter` applies unless `RUST_LOG` is
/// set. Safe to call more than once (later calls are no-ops).
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
