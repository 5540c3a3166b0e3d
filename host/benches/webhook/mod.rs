//! The webhook under load: how many Dataverse posts per second the real host accepts durably
//! (each answered 202 only once its message is committed to the embedded queue) at a given
//! number of concurrent clients, and the latency each client sees.
//!
//! - `webhook C`: the real host (`Host::start`, as `sagahost run`) with its webhook on loopback
//!   and no partner reading the webhook's queue, so the figure is the door and the queue alone;
//!   C clients on keep-alive connections post the 5 KB contact until [`POSTS`] were accepted.
//!   Baseline, in the same process and run: the same clients against an HTTP server on loopback
//!   that answers 202 at once and keeps nothing, the ceiling of HTTP on this machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sagahost::config::Config;
use sagahost::service::Host;
use serde_json::{Value, json};

use super::common::contact_body;
use super::{Row, med, percentile, repeat, runtime};

/// Posts accepted per run.
const POSTS: usize = 20_000;
/// The client counts measured.
const CONCURRENCY: [usize; 2] = [8, 64];
const KEY: &str = "webhook-bench-key-7d1e";

/// What one load run measured.
struct Load {
    posts_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `clients` tasks post `body` to `url` until [`POSTS`] were answered; every answer must be 202.
async fn load(url: &str, body: &[u8], clients: usize) -> Load {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, next, url, body) = (client.clone(), next.clone(), url.to_string(), body.to_vec());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < POSTS {
                    let sent = Instant::now();
                    let answer = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(answer.status(), 202, "{}", answer.text().await.unwrap_or_default());
                    latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(POSTS);
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    Load {
        posts_per_s: latencies.len() as f64 / elapsed,
        p50_ms: percentile(&mut latencies, 0.5),
        p99_ms: percentile(&mut latencies, 0.99),
    }
}

fn config(dir: &std::path::Path) -> Config {
    let key = dir.join("webhook-key");
    std::fs::write(&key, KEY).unwrap();
    let text = format!(
        "data-dir = {:?}\nwatch-components = false\n\
         [webhook]\nlisten = \"127.0.0.1:0\"\nqueue = \"dataverse-in\"\nkey = {{ file = {:?} }}\n\
         [partners.p0]\ncomponent = {:?}\nqueue = \"elsewhere\"\nroutes = {{ next = \"out\" }}\n",
        dir.join("data").display().to_string(),
        key.display().to_string(),
        super::common::component_path("forwarder").display().to_string(),
    );
    let path = dir.join("sagahost.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap().config
}

/// `webhook C`: the host's webhook and the no-op server, each under C clients.
pub fn scenario_webhook(clients: &str) -> Value {
    let clients: usize = clients.parse().unwrap();
    let body = contact_body(5);
    let rt = runtime();
    rt.block_on(async {
        let noop = axum::Router::new().fallback(|| async { (axum::http::StatusCode::ACCEPTED, "") });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let noop_url = format!("http://{}/api/webhook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, noop).await.unwrap() });
        let baseline = load(&noop_url, &body, clients).await;

        let dir = tempfile::tempdir().unwrap();
        let host = Host::start(&config(dir.path())).await.unwrap();
        let url = format!(
            "http://{}/api/webhook?code={KEY}",
            host.webhook_addr.expect("a webhook")
        );
        let webhook = load(&url, &body, clients).await;
        let depth = host
            .transport
            .embedded()
            .unwrap()
            .queue_depth("dataverse-in")
            .await
            .unwrap();
        assert!(depth.active >= POSTS as u64, "only {} messages were kept", depth.active);
        tokio::time::timeout(Duration::from_secs(30), host.shutdown())
            .await
            .unwrap();
        json!({
            "posts_per_s": webhook.posts_per_s,
            "p50_ms": webhook.p50_ms,
            "p99_ms": webhook.p99_ms,
            "noop_posts_per_s": baseline.posts_per_s,
            "noop_p99_ms": baseline.p99_ms,
        })
    })
}

/// The group's rows and each scenario's runs.
pub fn group() -> (Vec<Row>, Vec<(String, Vec<Value>)>) {
    let mut rows = Vec::new();
    let mut all = Vec::new();
    for clients in CONCURRENCY {
        let runs = repeat("webhook", &clients.to_string());
        rows.push(Row {
            figure: format!("webhook, durable accepted posts, {clients} clients"),
            value: med(&runs, "posts_per_s"),
            unit: "posts/s",
            baseline: Some(("no-op HTTP server".into(), med(&runs, "noop_posts_per_s"))),
            target: String::new(),
        });
        rows.push(Row {
            figure: format!("webhook p99 latency, {clients} clients"),
            value: med(&runs, "p99_ms"),
            unit: "ms",
            baseline: Some(("no-op HTTP server".into(), med(&runs, "noop_p99_ms"))),
            target: String::new(),
        });
        all.push((format!("webhook-{clients}"), runs));
    }
    (rows, all)
}
