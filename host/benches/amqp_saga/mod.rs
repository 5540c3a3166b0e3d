//! The saga where production runs it: the three-step contact saga (MDM create, Dataverse
//! writeback, ERP create) on the real host (`Host::start`, as `sagahost run`) with the Service
//! Bus transport, each step's settle and its next message in one AMQP transaction, against a
//! `sagahost broker` process; the partner systems answer at once on loopback.
//!
//! - `amqp-saga C`: every partner with concurrency C drains [`SAGAS`] contacts queued before
//!   the host starts. It reports sagas/s (each saga is three messages) and, from the host's
//!   own step events, where each step's time went: receive → settled, the partners' answers
//!   (the HTTP round trips as the host sees them), the settle, and what is left, the time the
//!   host itself added (decode, component, routing, sealing state).
//! - `amqp-saga-python`: the baseline, a worker written with the official Python SDK that does
//!   the same three steps (receive, call, send the next message, complete) with
//!   [`PYTHON_THREADS`] threads per step on the same kind of broker and partner, in the same run
//!   (`baselines.py saga`). The SDK has no transactions, so its send and complete are two
//!   operations: the worker is at-least-once where the host is exactly-once per step.
//!
//! The host, the broker, the partner server and the Python worker share the machine's cores.

use std::path::Path;
use std::time::{Duration, Instant};

use sagahost::config::Config;
use sagahost::saga::{SagaEvent, Verdict};
use sagahost::service::Host;
use sagahost_transport::embedded::{EmbeddedQueue, QueueSettings};
use serde_json::{Value, json};

use crate::common::{component_path, contact_body, workspace};
use crate::processes::{broker, connection_string};
use crate::report::{self, Curve};
use crate::{Row, med, percentile, repeat};

/// Sagas per host run.
const SAGAS: usize = 1_500;
/// Sagas per Python run: the worker is an order of magnitude slower.
const PYTHON_SAGAS: usize = 300;
/// Threads per step in the Python worker (the best of 1, 4 and 8 on this machine).
const PYTHON_THREADS: usize = 1;
/// Partner concurrencies the host is measured at.
pub const CONCURRENCY: [usize; 4] = [1, 4, 16, 64];
/// The step queues, in saga order.
const QUEUES: [&str; 3] = ["contacts", "writeback", "erp"];

/// A broker process over a fresh database in `dir` whose `contacts` queue holds `sagas`
/// contacts; the process and its connection string.
fn filled_broker(rt: &tokio::runtime::Runtime, dir: &Path, sagas: usize) -> (crate::processes::Process, String) {
    let settings = QUEUES.map(QueueSettings::new);
    let store = EmbeddedQueue::open(&dir.join("broker.sqlite3"), &settings).unwrap();
    rt.block_on(crate::fill(&store, "contacts", sagas, &contact_body(5)));
    drop(store);
    let (process, port) = broker(dir);
    (process, connection_string(port))
}

/// The host's config: the Service Bus transport (transactions on, the default) and the three
/// example partners, each with `concurrency`.
fn host_config(dir: &Path, connection: &str, origin: &str, concurrency: usize) -> Config {
    let secret = |name: &str, value: &str| {
        let path = dir.join(name);
        std::fs::write(&path, value).unwrap();
        path.display().to_string()
    };
    let component = |name: &str| component_path(name).display().to_string();
    let prefetch = concurrency.max(16);
    let partner = |name: &str, queue: &str, next: Option<&str>, config: String, secrets: String| {
        let routes = next.map_or(String::new(), |next| format!("routes = {{ next = \"{next}\" }}\n"));
        format!(
            "[partners.{name}]\ncomponent = {:?}\nqueue = \"{queue}\"\nconcurrency = {concurrency}\n\
             prefetch = {prefetch}\n{routes}config = {{ {config} }}\nsecrets = {{ {secrets} }}\n\
             outbound = {{ allow = [\"{origin}\"] }}\n",
            component(name)
        )
    };
    let text = [
        format!(
            "data-dir = {:?}\nwatch-components = false\n[transport]\nkind = \"servicebus\"\n\
             connection-string = {{ file = {:?} }}\n[saga-state]\nsigning-key = \"k1\"\n\
             keys = {{ k1 = {{ file = {:?} }} }}\n",
            dir.join("data").display().to_string(),
            secret("connection-string", connection),
            secret("state-key", "bench-state-key-0123456789abcdef0123456789"),
        ),
        partner(
            "mdm",
            "contacts",
            Some("writeback"),
            format!("mdm-url = \"{origin}/api\""),
            format!("mdm-api-key = {{ file = {:?} }}", secret("mdm-key", "bench-key")),
        ),
        partner(
            "dataverse-writeback",
            "writeback",
            Some("erp"),
            format!("dataverse-url = \"{origin}\""),
            format!(
                "dataverse-token = {{ oauth2 = {{ token-url = \"{origin}/oauth2/token\", client-id = \"bench\", \
                 client-secret = {{ file = {:?} }}, scope = \"{origin}/.default\" }} }}",
                secret("client-secret", "bench-secret")
            ),
        ),
        partner(
            "erp",
            "erp",
            None,
            format!("erp-url = \"{origin}/api\""),
            format!("erp-token = {{ file = {:?} }}", secret("erp-token", "bench-token")),
        ),
    ]
    .join("");
    let path = dir.join("sagahost.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap().config
}

/// Milliseconds, for the figures.
fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Runs the saga on the host with every partner at `concurrency`.
pub fn scenario(concurrency: usize) -> Value {
    let rt = crate::runtime();
    let origin = crate::instant_partner(&rt);
    let dir = tempfile::tempdir().unwrap();
    let (_broker, connection) = filled_broker(&rt, dir.path(), SAGAS);
    let config = host_config(dir.path(), &connection, &origin, concurrency);
    let (elapsed, steps) = rt.block_on(async {
        let host = Host::start(&config).await.unwrap();
        let mut events = host.subscribe();
        let started = Instant::now();
        let mut steps: Vec<SagaEvent> = Vec::with_capacity(SAGAS * QUEUES.len());
        let mut finished = 0;
        while finished < SAGAS {
            let event = match tokio::time::timeout(Duration::from_secs(60), events.recv()).await {
                Ok(Ok(event)) => event,
                Ok(Err(err)) => panic!("the bench lost the host's events after {finished} sagas: {err}"),
                Err(_) => panic!("{finished} of {SAGAS} sagas finished; nothing happened for 60 s"),
            };
            match &event.verdict {
                Verdict::Completed => finished += 1,
                Verdict::Forwarded { .. } => {}
                other => panic!("partner {} did not move the saga on: {other:?}", event.partner),
            }
            steps.push(event);
        }
        let elapsed = started.elapsed();
        host.shutdown().await;
        (elapsed, steps)
    });
    let figures = |f: fn(&SagaEvent) -> f64| {
        let mut values: Vec<f64> = steps.iter().map(f).collect();
        [0.5, 0.9, 0.99].map(|p| percentile(&mut values, p))
    };
    let added = figures(|e| ms(e.timing.handled.saturating_sub(e.timing.partners)));
    let handled = figures(|e| ms(e.timing.handled));
    let partners = figures(|e| ms(e.timing.partners));
    let settling = figures(|e| ms(e.timing.settling));
    json!({
        "sagas_per_s": SAGAS as f64 / elapsed.as_secs_f64(),
        "messages_per_s": (SAGAS * QUEUES.len()) as f64 / elapsed.as_secs_f64(),
        "added_p50_ms": added[0], "added_p90_ms": added[1], "added_p99_ms": added[2],
        "handled_p50_ms": handled[0], "handled_p90_ms": handled[1], "handled_p99_ms": handled[2],
        "partners_p50_ms": partners[0], "partners_p90_ms": partners[1],
        "settle_p50_ms": settling[0], "settle_p90_ms": settling[1], "settle_p99_ms": settling[2],
    })
}

/// Runs the same saga with the Python SDK worker.
pub fn scenario_python() -> Value {
    let rt = crate::runtime();
    let origin = crate::instant_partner(&rt);
    let dir = tempfile::tempdir().unwrap();
    let (_broker, connection) = filled_broker(&rt, dir.path(), PYTHON_SAGAS);
    let rate = crate::python_baseline(&[
        "saga",
        &connection,
        &origin,
        &PYTHON_SAGAS.to_string(),
        &PYTHON_THREADS.to_string(),
    ]);
    json!({"sagas_per_s": rate, "messages_per_s": rate * QUEUES.len() as f64})
}

/// The group: the host at each concurrency against the Python worker; its rows and runs by key.
/// Also draws throughput against concurrency into `target/bench/amqp-saga.png`.
pub fn group() -> (Vec<Row>, Vec<(String, Vec<Value>)>) {
    let python = repeat("amqp-saga-python", "");
    let baseline = med(&python, "sagas_per_s");
    let mut rows = Vec::new();
    let mut runs = vec![("amqp-saga-python".to_string(), python)];
    let mut curve = Vec::new();
    for concurrency in CONCURRENCY {
        let host = repeat("amqp-saga", &concurrency.to_string());
        let rate = med(&host, "sagas_per_s");
        rows.push(Row {
            figure: format!("AMQP saga, 3 steps, concurrency {concurrency}"),
            value: rate,
            unit: "sagas/s",
            baseline: Some(("Python SDK worker".into(), baseline)),
            target: "≥ 10 × Python worker".into(),
        });
        for (name, key) in [
            ("host-added per step, p50", "added_p50_ms"),
            ("host-added per step, p90", "added_p90_ms"),
            ("host-added per step, p99", "added_p99_ms"),
            ("of which the settle, p90", "settle_p90_ms"),
        ] {
            rows.push(Row {
                figure: format!("AMQP saga, concurrency {concurrency}: {name}"),
                value: med(&host, key),
                unit: "ms",
                baseline: None,
                target: if key == "added_p90_ms" {
                    "≤ 0.3 ms".into()
                } else {
                    String::new()
                },
            });
        }
        let p90 = med(&host, "added_p90_ms");
        curve.push((concurrency as f64, rate, format!("{rate:.0}/s, added p90 {p90:.2} ms")));
        runs.push((format!("amqp-saga-{concurrency}"), host));
    }
    let out = workspace().join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    let curve = Curve {
        caption: "AMQP saga: throughput vs partner concurrency",
        x_label: "concurrency per partner",
        y_label: "sagas/s (3 steps each)",
        points: curve,
    };
    if report::plot(&out.join("amqp-saga.png"), &[curve]) {
        eprintln!("wrote {}/amqp-saga.png", out.display());
    }
    (rows, runs)
}
