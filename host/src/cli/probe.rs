//! `sagahost probe`: asks a running host's admin endpoint whether it is ready (`/readyz`) or
//! alive (`/healthz`), and exits 0 or 1. It is the container image's `HEALTHCHECK`, which runs
//! without a shell or curl: the image holds nothing but the `sagahost` binary.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use sagahost::config::Config;

/// Where the admin endpoint a host serves by default is (`[admin] listen`'s default).
const DEFAULT_ADMIN: &str = "127.0.0.1:9090";

/// `sagahost probe` options.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The URL to probe, e.g. `http://127.0.0.1:9090/readyz`; by default the `/readyz` (or
    /// `/healthz` with `--live`) of the admin endpoint `--config` names, or of 127.0.0.1:9090.
    /// It wins over `--config` (the image sets SAGAHOST_PROBE_CONFIG).
    #[arg(long, env = "SAGAHOST_PROBE_URL")]
    url: Option<String>,
    /// The host's config: the probe reads its `[admin] listen` (0.0.0.0 and [::] become loopback).
    #[arg(long, env = "SAGAHOST_PROBE_CONFIG")]
    config: Option<PathBuf>,
    /// Probe `/healthz` (the process answers) instead of `/readyz` (partners loaded, transport
    /// answering).
    #[arg(long)]
    live: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 5)]
    timeout_secs: u64,
}

/// Probes the endpoint: exit 0 on a 2xx answer, 1 on anything else, with one line saying which.
pub fn run(args: &ProbeArgs) -> anyhow::Result<ExitCode> {
    let url = match &args.url {
        Some(url) => url.clone(),
        None => {
            let admin = admin_address(args.config.as_ref())?;
            let path = if args.live { "healthz" } else { "readyz" };
            format!("http://{admin}/{path}")
        }
    };
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs.max(1)))
        .build()
        .context("building the HTTP client")?;
    let response = match client.get(&url).send() {
        Ok(response) => response,
        Err(err) => {
            println!("unhealthy: {url}: no answer: {err}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let status = response.status();
    let body = response.text().unwrap_or_default();
    let body = body.trim();
    if status.is_success() {
        println!("healthy: {url}: {status}: {body}");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("unhealthy: {url}: {status}: {body}");
        Ok(ExitCode::FAILURE)
    }
}

/// The address to reach the admin endpoint at: `[admin] listen` of the config, or the default.
fn admin_address(config: Option<&PathBuf>) -> anyhow::Result<SocketAddr> {
    let listen = match config {
        None => DEFAULT_ADMIN.to_string(),
        Some(path) => {
            let loaded = Config::load(path)?;
            let admin = loaded
                .config
                .admin
                .with_context(|| format!("{}: no [admin] table, so no endpoint to probe", path.display()))?;
            admin.listen
        }
    };
    let mut address: SocketAddr = listen
        .parse()
        .with_context(|| format!("admin listen address `{listen}`"))?;
    anyhow::ensure!(
        address.port() != 0,
        "admin listen address `{listen}` has port 0 (chosen at start): pass --url"
    );
    if address.ip().is_unspecified() {
        address.set_ip(match address.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(address)
}
