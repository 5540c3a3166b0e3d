//! Operating a running host: hot reload while messages flow, a broken component
//! that must not replace a good one, metrics, health and the admin API.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use sagahost::config::Config;
use sagahost::saga::{SagaEvent, Verdict};
use sagahost::service::Host;
use sagahost_transport::{OutgoingMessage, Output, Transport};

use crate::saga::contact_body;
use crate::support;

const MESSAGES: usize = 2_000;

/// A one-step saga: partner `p` completes every message (the hostile component
/// with no attack configured), with the admin endpoint on a free port.
fn one_step_config(dir: &Path) -> std::path::PathBuf {
    let component = dir.join("p.wasm");
    std::fs::copy(support::component("hostile"), &component).unwrap();
    let text = format!(
        r#"
data-dir = "{}"
[admin]
listen = "127.0.0.1:0"
[partners.p]
component = "{}"
queue = "in"
concurrency = 16
"#,
        dir.join("data").display(),
        component.display()
    );
    let path = dir.join("sagahost.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Spans finished by the in-process hosts of this test binary, through the real OpenTelemetry
/// pipeline (tracing-opentelemetry into the SDK), kept in memory instead of sent.
#[derive(Debug, Clone, Default)]
struct Recorded(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Recorded {
    fn export(&self, batch: Vec<SpanData>) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.0.lock().unwrap().extend(batch);
        std::future::ready(Ok(()))
    }
}

/// Installs the recording pipeline as this process's subscriber (once) and returns it.
fn recorded_spans() -> &'static Recorded {
    static RECORDED: OnceLock<(SdkTracerProvider, Recorded)> = OnceLock::new();
    &RECORDED
        .get_or_init(|| {
            let recorded = Recorded::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(recorded.clone())
                .build();
            tracing_subscriber::registry()
                .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("e2e")))
                .try_init()
                .expect("no other test installs a global subscriber");
            (provider, recorded)
        })
        .1
}

/// `message` spans' component version by message id.
fn traced_versions(spans: &[SpanData]) -> BTreeMap<String, Vec<String>> {
    let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for span in spans.iter().filter(|span| span.name == "message") {
        let attribute = |key: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.to_string())
        };
        if let (Some(id), Some(version)) = (attribute("message_id"), attribute("version")) {
            versions.entry(id).or_default().push(version);
        }
    }
    versions
}

/// The same component with a custom section appended: new content hash, same behaviour.
pub(crate) fn next_version(wasm: &[u8], tag: &str) -> Vec<u8> {
    let mut section = vec![tag.len() as u8];
    section.extend_from_slice(tag.as_bytes());
    section.extend_from_slice(b"payload");
    let mut out = wasm.to_vec();
    out.push(0); // custom section id
    out.push(section.len() as u8);
    out.extend(section);
    out
}

/// Replaces `path` atomically, as a deploy would.
pub(crate) fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub(crate) async fn send_many(host: &Host, count: usize) {
    let outputs = (0..count)
        .map(|_| Output {
            queue: "in".into(),
            message: OutgoingMessage {
                content_type: Some("application/json".into()),
                body: contact_body(),
                ..Default::default()
            },
        })
        .collect();
    host.transport.send(outputs).await.unwrap();
}

async fn next_event(events: &mut tokio::sync::broadcast::Receiver<SagaEvent>) -> SagaEvent {
    tokio::time::timeout(Duration::from_secs(60), events.recv())
        .await
        .expect("an event within 60 s")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_component_while_messages_flow_loses_none_and_each_is_handled_by_one_version() {
    let recorded = recorded_spans();
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(&one_step_config(dir.path())).unwrap().config;
    let host = Host::start(&config).await.unwrap();
    let mut events = host.subscribe();
    let path = dir.path().join("p.wasm");
    let v1 = std::fs::read(&path).unwrap();
    let v1_hash = host.registry.current("p").unwrap().info().version.clone();
    send_many(&host, MESSAGES).await;

    let mut by_message: BTreeMap<String, Vec<String>> = BTreeMap::new();
    while by_message.len() < MESSAGES {
        let event = next_event(&mut events).await;
        assert_eq!(event.verdict, Verdict::Completed, "{event:?}");
        by_message
            .entry(event.message_id.clone())
            .or_default()
            .push(event.version.clone());
        if by_message.len() == MESSAGES / 4 {
            replace(&path, &next_version(&v1, "v2"));
        }
    }
    let v2_hash = host.registry.current("p").unwrap().info().version.clone();
    let metrics = reqwest::get(format!("http://{}/metrics", host.admin_addr.unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    host.shutdown().await;

    assert_ne!(v1_hash, v2_hash, "the watcher reloaded the new file");
    assert!(
        by_message.values().all(|versions| versions.len() == 1),
        "a message was handled twice"
    );
    let mut per_version: BTreeMap<&str, usize> = BTreeMap::new();
    for versions in by_message.values() {
        *per_version.entry(versions[0].as_str()).or_default() += 1;
    }
    assert_eq!(
        per_version.keys().copied().collect::<Vec<_>>().len(),
        2,
        "{per_version:?}"
    );
    assert!(
        per_version[v1_hash.as_str()] > 0 && per_version[v2_hash.as_str()] > 0,
        "{per_version:?}"
    );
    assert_eq!(per_version.values().sum::<usize>(), MESSAGES);
    // The switch shows in the metrics: completions are counted per version.
    for hash in [&v1_hash, &v2_hash] {
        assert!(metrics.contains(&format!("version=\"{hash}\"")), "no series for {hash}");
    }
    assert!(
        metrics.contains("sagahost_component_reloads_total{partner=\"p\",result=\"replaced\"}"),
        "{metrics}"
    );
    // And in the traces: each message's span names the one version that handled it.
    let traced = traced_versions(&recorded.0.lock().unwrap());
    for (message_id, versions) in &by_message {
        assert_eq!(
            traced.get(message_id),
            Some(versions),
            "the span of message {message_id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_component_keeps_the_old_version_serving_and_the_error_surfaces() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(&one_step_config(dir.path())).unwrap().config;
    let host = Host::start(&config).await.unwrap();
    let mut events = host.subscribe();
    let before = host.registry.current("p").unwrap().info().version.clone();
    let admin = format!("http://{}", host.admin_addr.unwrap());

    replace(&dir.path().join("p.wasm"), b"\0asm\x0d\0\x01\0 this is not a component");
    let client = reqwest::Client::new();
    let reload = client
        .post(format!("{admin}/admin/partners/p/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 422);
    assert!(reload.text().await.unwrap().contains("the old version keeps serving"));

    // Still serving, on the old version.
    send_many(&host, 1).await;
    let event = next_event(&mut events).await;
    assert_eq!((event.verdict, event.version), (Verdict::Completed, before.clone()));

    let status = client
        .get(format!("{admin}/admin/partners"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let p = &status[0];
    assert_eq!(p["version"], before.as_str());
    assert!(p["failed_reloads"].as_u64().unwrap() >= 1);
    assert!(p["last_error"].as_str().unwrap().contains("partner `p`"), "{p}");
    let metrics = client
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    host.shutdown().await;
    assert!(
        metrics.contains("sagahost_component_reloads_total{partner=\"p\",result=\"failed\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_carry_the_series_and_health_endpoints_answer() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(&one_step_config(dir.path())).unwrap().config;
    let host = Host::start(&config).await.unwrap();
    let mut events = host.subscribe();
    send_many(&host, 3).await;
    for _ in 0..3 {
        next_event(&mut events).await;
    }
    let admin = format!("http://{}", host.admin_addr.unwrap());
    assert_eq!(reqwest::get(format!("{admin}/healthz")).await.unwrap().status(), 200);
    let ready = reqwest::get(format!("{admin}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let text = reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    host.shutdown().await;

    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let scrape = prometheus_parse::Scrape::parse(lines.into_iter().map(Ok)).expect("valid Prometheus text");
    let names: std::collections::BTreeSet<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for expected in [
        "sagahost_messages_total",
        "sagahost_handle_seconds",
        "sagahost_in_flight_messages",
        "sagahost_queue_depth",
    ] {
        assert!(names.contains(expected), "missing {expected} in {names:?}");
    }
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "sagahost_handle_seconds" && matches!(s.value, prometheus_parse::Value::Histogram(_))),
        "handle latency is a histogram"
    );
    let completed: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "sagahost_messages_total" && s.labels.get("outcome") == Some("completed"))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum();
    assert!(completed >= 3.0, "{completed}");
}

/// Starts a canary of `component` at `percent` through the admin API.
async fn start_canary(admin: &str, component: &Path, percent: u8, window: usize) {
    let body = serde_json::json!({ "component": component, "percent": percent, "margin": 0.1, "window": window });
    let response = reqwest::Client::new()
        .post(format!("{admin}/admin/partners/p/canary"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// Runs the `sagahost` binary with `args`; returns its stdout, failing the test if it failed.
async fn sagahost_cli(args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_sagahost"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

async fn partner_status(admin: &str) -> serde_json::Value {
    let text = reqwest::get(format!("{admin}/admin/partners"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_canary_rolls_back_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(&one_step_config(dir.path())).unwrap().config;
    let host = Host::start(&config).await.unwrap();
    let mut events = host.subscribe();
    let admin = format!("http://{}", host.admin_addr.unwrap());
    // The candidate fails every message: it is the mdm example, which returns an
    // error without its `mdm-url` config.
    let candidate = dir.path().join("candidate.wasm");
    std::fs::copy(support::component("mdm"), &candidate).unwrap();
    start_canary(&admin, &candidate, 50, 10).await;
    assert!(partner_status(&admin).await["canary"]["version"].is_string());

    send_many(&host, 200).await;
    let mut dead = 0;
    for _ in 0..200 {
        if matches!(next_event(&mut events).await.verdict, Verdict::DeadLettered { .. }) {
            dead += 1;
        }
    }
    let status = partner_status(&admin).await;
    host.shutdown().await;
    assert!(status["canary"].is_null(), "the canary is still running: {status}");
    let last = status["last_canary"].as_str().unwrap();
    assert!(
        last.starts_with("rolled back") && last.contains("failed 100%"),
        "{last}"
    );
    // Only the candidate's share of the window was lost to it, then the stable version took over.
    assert!(
        (10..60).contains(&dead),
        "{dead} messages dead-lettered by the candidate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_canary_is_promoted_by_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(&one_step_config(dir.path())).unwrap().config;
    let host = Host::start(&config).await.unwrap();
    let mut events = host.subscribe();
    let admin = format!("http://{}", host.admin_addr.unwrap());
    let candidate = dir.path().join("candidate.wasm");
    std::fs::write(
        &candidate,
        next_version(&support::component_bytes("hostile"), "candidate"),
    )
    .unwrap();
    // Through the CLI this time, which calls the same admin API.
    let started = sagahost_cli(&[
        "canary",
        "start",
        "--partner",
        "p",
        "--percent",
        "30",
        "--window",
        "20",
        "--admin",
        &admin,
        "--component",
        candidate.to_str().unwrap(),
    ])
    .await;
    assert!(started.contains("\"canary\""), "{started}");

    send_many(&host, 100).await;
    let mut versions = std::collections::BTreeSet::new();
    for _ in 0..100 {
        let event = next_event(&mut events).await;
        assert_eq!(event.verdict, Verdict::Completed);
        versions.insert(event.version);
    }
    assert_eq!(versions.len(), 2, "both versions handled messages");
    let partners: serde_json::Value =
        serde_json::from_str(&sagahost_cli(&["partners", "--admin", &admin]).await).unwrap();
    let canary = partners[0]["canary"]["version"].as_str().unwrap().to_string();
    sagahost_cli(&["canary", "promote", "--partner", "p", "--admin", &admin]).await;
    let status = partner_status(&admin).await;
    host.shutdown().await;
    assert_eq!(status["version"], canary.as_str());
    assert!(status["canary"].is_null());
    assert_eq!(status["last_canary"], format!("promoted {canary}").as_str());
}
