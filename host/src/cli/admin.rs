//! Commands that drive a running host through its admin API, the same HTTP API operators and
//! their tooling call: partner status, reload and canary rollouts.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::json;

/// Where the running host's admin endpoint is, and how to authenticate.
#[derive(Debug, Args)]
pub struct Endpoint {
    /// The host's admin endpoint (its `[admin] listen`).
    #[arg(long, global = true, default_value = "http://127.0.0.1:9090")]
    admin: String,
    /// Environment variable holding the admin token, if the host requires one.
    #[arg(long, global = true)]
    token_env: Option<String>,
}

/// Canary rollout of a candidate component.
#[derive(Debug, Subcommand)]
pub enum CanaryCommand {
    /// Run a candidate component on a share of a partner's messages.
    Start {
        /// The partner.
        #[arg(long)]
        partner: String,
        /// The candidate: a `.wasm` file, oci://REGISTRY/REPO:TAG, oci://REGISTRY/REPO@sha256:…
        /// or an https:// URL with --component-sha256.
        #[arg(long)]
        component: String,
        /// With an https:// component, the SHA-256 it must have.
        #[arg(long)]
        component_sha256: Option<String>,
        /// Share of new messages the candidate handles, 1–100.
        #[arg(long)]
        percent: u8,
        /// How far the candidate's failure rate may exceed the stable version's (0.05 = five
        /// percentage points) before it is rolled back by itself.
        #[arg(long)]
        margin: Option<f64>,
        /// Results per version the failure rates are computed over.
        #[arg(long)]
        window: Option<usize>,
    },
    /// Make the candidate the partner's version for every message.
    Promote {
        #[arg(long)]
        partner: String,
    },
    /// Stop the candidate; the stable version handles every message again.
    Abort {
        #[arg(long)]
        partner: String,
    },
}

/// `sagahost partners`: each partner's version, state, counters and canary.
pub async fn partners(endpoint: &Endpoint) -> anyhow::Result<ExitCode> {
    call(endpoint, reqwest::Method::GET, "/admin/partners", None).await
}

/// `sagahost reload`.
pub async fn reload(endpoint: &Endpoint, partner: &str) -> anyhow::Result<ExitCode> {
    call(
        endpoint,
        reqwest::Method::POST,
        &format!("/admin/partners/{partner}/reload"),
        None,
    )
    .await
}

/// `sagahost canary …`.
pub async fn canary(endpoint: &Endpoint, command: CanaryCommand) -> anyhow::Result<ExitCode> {
    let (path, body) = match command {
        CanaryCommand::Start {
            partner,
            component,
            component_sha256,
            percent,
            margin,
            window,
        } => {
            // The host resolves a file's path, so send it absolute; a registry or URL as given.
            let component = match sagahost::component::ComponentSource::parse(&component)? {
                sagahost::component::ComponentSource::File(path) => std::fs::canonicalize(&path)
                    .with_context(|| format!("--component {}", path.display()))?
                    .display()
                    .to_string(),
                _ => component,
            };
            let mut plan = json!({ "component": component, "percent": percent });
            if let Some(sha256) = component_sha256 {
                plan["component-sha256"] = json!(sha256);
            }
            if let Some(margin) = margin {
                plan["margin"] = json!(margin);
            }
            if let Some(window) = window {
                plan["window"] = json!(window);
            }
            (format!("/admin/partners/{partner}/canary"), Some(plan))
        }
        CanaryCommand::Promote { partner } => (format!("/admin/partners/{partner}/canary/promote"), None),
        CanaryCommand::Abort { partner } => (format!("/admin/partners/{partner}/canary/abort"), None),
    };
    call(endpoint, reqwest::Method::POST, &path, body).await
}

/// Calls the admin API, prints the answer and exits non-zero unless it succeeded.
async fn call(
    endpoint: &Endpoint,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<ExitCode> {
    let url = format!("{}{path}", endpoint.admin.trim_end_matches('/'));
    let mut request = reqwest::Client::new().request(method, &url);
    if let Some(var) = &endpoint.token_env {
        let token =
            std::env::var(var).with_context(|| format!("--token-env: environment variable {var} is not set"))?;
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("calling {url}: is `sagahost run` running with [admin]?"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let pretty = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or(text);
    println!("{pretty}");
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
