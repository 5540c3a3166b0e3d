//! The benchmark suite: every figure of `BENCHMARKS.md`, each next to a baseline measured in the
//! same run, as a table on stdout, JSON in `target/bench/results.json` and the scaling curves in
//! `target/bench/scaling.png`. Run it with `scripts/bench` (which builds the guest components and
//! the Python baselines first).
//!
//! Every scenario runs in a child process of this binary (`suite --scenario NAME ARG`), so that
//! its peak RSS is its own and one scenario's caches do not help the next. Each is repeated
//! [`RUNS`] times and the median reported. Timed sections exclude set-up (filling queues,
//! compiling components).
//!
//! Scenarios:
//! - `component`: one `handle` call of the forwarder component (a fresh instance from the pool
//!   each call) against the same logic as a native Rust function; median and p99 µs.
//! - `pipeline wasm|native`: the saga pipeline over the durable embedded queue (receive, decode,
//!   handle, route, settle-and-forward in one commit), composed here from the host's own
//!   decode, routing and queue, with the forwarder component or the native function as the
//!   handler. The two runs differ only in the handler.
//! - `host`: the real host (`Host::start`, as `sagahost run`) on the embedded queue, one-step
//!   forwarding saga; messages/s.
//! - `outbound C`: the real host running the `mdm` example (one HTTP request per message to a
//!   loopback partner that answers at once) with partner concurrency C.
//! - `servicebus`: receive → complete through the Service Bus transport against `sagahost broker`;
//!   baseline: the official Python SDK draining the same broker in the same run.
//! - `decode FORMAT`: decode throughput on the 5 KB sample bodies and on a 200 KB message
//!   (`decode/mod.rs`); baseline for `binary`: the PyPI `wcf` decoder on the same file.
//! - `size KB` and `partners N`: the real host's throughput and peak RSS against message size
//!   and against the number of partner components loaded.
//! - `replicas N`: N `sagahost run` processes competing for one queue on `sagahost broker`
//!   (`replicas/mod.rs`); baseline: one replica in the same run.
//! - `language LANG` and `loaded LANG N`: the mdm example in Rust, TypeScript and Python (call,
//!   compile, resident set with N partners loaded; `languages/mod.rs`); baseline: Rust.
//! - `webhook C`: durable posts accepted per second by the real host's webhook with C clients,
//!   and their p99 latency (`webhook/mod.rs`); baseline: a no-op HTTP server in the same run.
//! - `amqp-saga C`: the three-step contact saga on the real host over AMQP with transactions
//!   against `sagahost broker`, sagas/s and the host-added latency per step (`amqp_saga/mod.rs`);
//!   baseline (`amqp-saga-python`): the same saga as an official Python SDK worker.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sagahost::component::wit;
use sagahost::config::{Config, OutputLimits, RetryPolicy};
use sagahost::saga::envelope::Envelope;
use sagahost::saga::routing::{self, PartnerRoutes, StepInput};
use sagahost::saga::{MessageParts, SagaState, build_inbound};
use sagahost::service::Host;
use sagahost::telemetry::traceparent::TraceParent;
use sagahost_transport::embedded::{EmbeddedQueue, QueueSettings};
use sagahost_transport::{OutgoingMessage, Output, Transport};
use serde_json::{Value, json};

mod amqp_saga;
mod common;
mod decode;
mod languages;
mod processes;
mod replicas;
mod report;
mod webhook;
use common::{component_path, contact_body, forwarder, message_event, native_forward, workspace};

/// Repetitions of each scenario; the median is reported. Three keeps the whole suite, build
/// included, within 15 minutes on two cores.
const RUNS: usize = 3;
/// Messages through the durable pipeline per run (the issue's 50,000).
const PIPELINE_MESSAGES: usize = 50_000;
/// Messages per run for the scenarios that only need a steady state.
const SHORT_MESSAGES: usize = 5_000;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[((values.len() as f64 - 1.0) * p).round() as usize]
}

/// Peak resident set of this process, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Scenarios (each runs in its own child process and prints one JSON object)
// ---------------------------------------------------------------------------------------------

fn scenario_component() -> Value {
    let (_runtime, component) = forwarder();
    let event = message_event(contact_body(5));
    let time = |f: &dyn Fn() -> bool| {
        for _ in 0..500 {
            assert!(f());
        }
        let mut samples = Vec::with_capacity(5_000);
        for _ in 0..5_000 {
            let started = Instant::now();
            assert!(f());
            samples.push(started.elapsed().as_secs_f64() * 1e6);
        }
        let p99 = percentile(&mut samples.clone(), 0.99);
        (median(&mut samples), p99)
    };
    let runtime = common::call_runtime();
    let (wasm_median, wasm_p99) = time(&|| {
        matches!(
            runtime.block_on(component.handle("m-1", &event)),
            Ok(wit::Plan::Done(_))
        )
    });
    let (native_median, native_p99) = time(&|| {
        matches!(
            std::hint::black_box(native_forward(std::hint::black_box(&event))),
            wit::Plan::Done(_)
        )
    });
    json!({"wasm_median_us": wasm_median, "wasm_p99_us": wasm_p99,
           "native_median_us": native_median, "native_p99_us": native_p99})
}

/// Fills `queue` in `store` with `count` copies of `body`.
async fn fill(store: &EmbeddedQueue, queue: &str, count: usize, body: &[u8]) {
    for chunk in (0..count).collect::<Vec<_>>().chunks(1_000) {
        let outputs = chunk
            .iter()
            .map(|i| Output {
                queue: queue.into(),
                message: OutgoingMessage {
                    message_id: format!("m-{i}"),
                    content_type: Some("application/json".into()),
                    body: body.to_vec(),
                    ..Default::default()
                },
            })
            .collect();
        store.send(outputs).await.unwrap();
    }
}

/// The saga pipeline composed from the host's parts, with `wasm` or the native handler.
fn scenario_pipeline(handler: &str) -> Value {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedQueue::open(
        &dir.path().join("queue.sqlite3"),
        &[QueueSettings::new("in"), QueueSettings::new("out")],
    )
    .unwrap();
    rt.block_on(fill(&store, "in", PIPELINE_MESSAGES, &contact_body(5)));
    let (_runtime, component) = forwarder();
    let component = Arc::new(component);
    let native = handler == "native";
    let started = Instant::now();
    rt.block_on(async {
        let workers = (0..16).map(|_| {
            let (store, component) = (store.clone(), component.clone());
            tokio::spawn(async move {
                let routes = BTreeMap::from([("next".to_string(), "out".to_string())]);
                let (retry, compensation) = (RetryPolicy::default(), BTreeMap::new());
                let outputs = OutputLimits::default();
                let trace = TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
                let partner = PartnerRoutes {
                    partner: "p",
                    version: &component.info().version,
                    routes: &routes,
                    retry: &retry,
                    outputs: &outputs,
                    transport_max_message_bytes: store.max_message_bytes(),
                    compensation_queues: &compensation,
                };
                loop {
                    let batch = store.receive("in", 16, Duration::from_millis(200)).await.unwrap();
                    if batch.is_empty() {
                        return;
                    }
                    for message in batch {
                        let envelope = Envelope::read(&message.properties).unwrap();
                        let parts = MessageParts::of(&message, &envelope);
                        let event = wit::Event::Message(build_inbound(parts, None, &Default::default()).unwrap());
                        let plan = if native {
                            native_forward(&event)
                        } else {
                            component.handle("m", &event).await.unwrap()
                        };
                        let wit::Plan::Done(outcome) = plan else {
                            panic!("the forwarder only forwards")
                        };
                        let saga = SagaState::start(&message.message_id);
                        let input = StepInput {
                            message: &message,
                            envelope: &envelope,
                            saga: &saga,
                            traceparent: &trace,
                            retry_after: None,
                        };
                        let routed = routing::route(&partner, &input, &outcome, SystemTime::now());
                        store.settle(&message, routed.settlement, routed.outputs).await.unwrap();
                    }
                }
            })
        });
        for worker in workers.collect::<Vec<_>>() {
            worker.await.unwrap();
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let depth = rt.block_on(store.queue_depth("out")).unwrap();
    assert_eq!(depth.active as usize, PIPELINE_MESSAGES, "every message forwarded");
    json!({"messages_per_s": PIPELINE_MESSAGES as f64 / elapsed, "peak_rss_mib": peak_rss_mib()})
}

/// A config for the real host: `partners` forwarders (queue `in-i` → `out-i`) or the mdm example.
fn host_config(dir: &Path, partners: usize, concurrency: usize, mdm_origin: Option<&str>) -> Config {
    let mut text = format!(
        "data-dir = {:?}\nwatch-components = false\n",
        dir.join("data").display().to_string()
    );
    if let Some(origin) = mdm_origin {
        let key = dir.join("mdm-key");
        std::fs::write(&key, "bench-key").unwrap();
        writeln!(
            text,
            "[partners.mdm]\ncomponent = {:?}\nqueue = \"in-0\"\nconcurrency = {concurrency}\nprefetch = {}\n\
             routes = {{ next = \"out-0\" }}\nconfig = {{ mdm-url = \"{origin}/api\" }}\n\
             secrets = {{ mdm-api-key = {{ file = {:?} }} }}\noutbound = {{ allow = [\"{origin}\"] }}\n",
            component_path("mdm").display().to_string(),
            concurrency.max(16),
            key.display().to_string()
        )
        .unwrap();
    } else {
        for i in 0..partners {
            writeln!(
                text,
                "[partners.p{i}]\ncomponent = {:?}\nqueue = \"in-{i}\"\nconcurrency = {concurrency}\n\
                 routes = {{ next = \"out-{i}\" }}\n",
                component_path("forwarder").display().to_string()
            )
            .unwrap();
        }
    }
    let path = dir.join("sagahost.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap().config
}

/// Runs the real host over `messages` pre-filled messages spread over `queues` input queues;
/// returns messages/s from start until every one is forwarded.
fn run_host(config: &Config, queues: usize, messages: usize, body: &[u8]) -> f64 {
    let rt = runtime();
    rt.block_on(async {
        {
            let store = EmbeddedQueue::open(&config.data_dir.join("queue.sqlite3"), &config.queue_settings()).unwrap();
            for i in 0..queues {
                fill(&store, &format!("in-{i}"), messages / queues, body).await;
            }
        }
        let host = Host::start(config).await.unwrap();
        // Counted from the host's own events, so that measuring does not load the queue. Events
        // sent before the subscription are missed: a quiet second checks the output queues.
        let mut events = host.subscribe();
        let store = host.transport.embedded().unwrap().clone();
        let forwarded = || async {
            let mut forwarded = 0;
            for i in 0..queues {
                forwarded += store.queue_depth(&format!("out-{i}")).await.unwrap().active as usize;
            }
            forwarded
        };
        let started = Instant::now();
        let total = messages / queues * queues;
        let mut handled = 0;
        while handled < total {
            match tokio::time::timeout(Duration::from_secs(1), events.recv()).await {
                Ok(Ok(_)) => handled += 1,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(missed))) => handled += missed as usize,
                Ok(Err(closed)) => panic!("the host stopped after {handled} of {total}: {closed}"),
                Err(_) if forwarded().await == total => break,
                Err(_) => assert!(
                    started.elapsed() < Duration::from_secs(600),
                    "only {handled} of {total} handled"
                ),
            }
        }
        let rate = total as f64 / started.elapsed().as_secs_f64();
        assert_eq!(forwarded().await, total, "every message forwarded");
        host.shutdown().await;
        rate
    })
}

fn scenario_host(partners: usize, kb: usize, messages: usize) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let config = host_config(dir.path(), partners, 16.min(1_000 / partners).max(10), None);
    let rate = run_host(&config, partners, messages, &contact_body(kb));
    json!({"messages_per_s": rate, "peak_rss_mib": peak_rss_mib()})
}

/// One server on loopback standing in for every partner system the examples call (MDM, the
/// Dataverse Web API with its token endpoint, the ERP), served on `rt`; its origin. Every
/// request is answered at once, after its body is read as a partner would (an unread body
/// closes a keep-alive connection).
fn instant_partner(rt: &tokio::runtime::Runtime) -> String {
    use axum::routing::post;
    rt.block_on(async {
        let token = |_body: axum::body::Bytes| async {
            (
                [("content-type", "application/json")],
                r#"{"access_token":"bench-token","token_type":"Bearer","expires_in":3600}"#,
            )
        };
        let created = |_body: axum::body::Bytes| async {
            (
                axum::http::StatusCode::CREATED,
                [("content-type", "application/json")],
                r#"{"id":"M-1"}"#,
            )
        };
        let app = axum::Router::new()
            .route("/oauth2/token", post(token))
            .fallback(created);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        origin
    })
}

fn scenario_outbound(concurrency: usize) -> Value {
    let rt = runtime();
    let origin = instant_partner(&rt);
    let dir = tempfile::tempdir().unwrap();
    let config = host_config(dir.path(), 1, concurrency, Some(&origin));
    let _partner = rt; // keeps the partner server running on its own runtime
    let rate = run_host(&config, 1, SHORT_MESSAGES, &contact_body(5));
    json!({"messages_per_s": rate, "peak_rss_mib": peak_rss_mib()})
}

fn scenario_servicebus() -> Value {
    use sagahost_broker::{self as broker, BrokerConfig};
    use sagahost_transport::Settlement;
    use sagahost_transport::servicebus::{ServiceBusOptions, ServiceBusTransport};
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedQueue::open(&dir.path().join("broker.sqlite3"), &[QueueSettings::new("bench")]).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let port = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(broker::serve_with(
            listener,
            store.clone(),
            BrokerConfig::default(),
            shutdown.clone(),
        ));
        port
    });
    let connection = processes::connection_string(port);
    let body = vec![b'x'; 1024];
    // sagahost's transport: receive batches, complete each batch concurrently.
    rt.block_on(fill(&store, "bench", SHORT_MESSAGES, &body));
    let ours = rt.block_on(async {
        let options = ServiceBusOptions {
            prefetch: 256,
            ..ServiceBusOptions::default()
        };
        let transport = ServiceBusTransport::connect(&connection, options).await.unwrap();
        let started = Instant::now();
        let mut done = 0;
        while done < SHORT_MESSAGES {
            let batch = transport.receive("bench", 64, Duration::from_secs(5)).await.unwrap();
            assert!(!batch.is_empty(), "the queue ran dry after {done}");
            done += batch.len();
            let settles = batch
                .iter()
                .map(|m| transport.settle(m, Settlement::Complete, Vec::new()));
            for result in futures::future::join_all(settles).await {
                result.unwrap();
            }
        }
        let rate = done as f64 / started.elapsed().as_secs_f64();
        transport.close().await;
        rate
    });
    // The official Python SDK, same broker, same kind of queue content.
    rt.block_on(fill(&store, "bench", SHORT_MESSAGES, &body));
    let python = python_baseline(&["servicebus", &connection, "bench", &SHORT_MESSAGES.to_string()]);
    shutdown.cancel();
    json!({"messages_per_s": ours, "python_sdk_messages_per_s": python})
}

/// The bench virtualenv's Python (`scripts/bench` sets it up, with the baselines' packages).
fn bench_python() -> Command {
    Command::new(std::env::var("SAGAHOST_BENCH_PYTHON").unwrap_or_else(|_| "python3".into()))
}

/// Runs `benches/baselines.py` in the bench virtualenv; returns the figure it prints.
fn python_baseline(args: &[&str]) -> f64 {
    let output = bench_python()
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/baselines.py"))
        .args(args)
        .output()
        .expect("running the Python baseline (scripts/bench sets SAGAHOST_BENCH_PYTHON)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("a number")
}

fn run_scenario(name: &str, arg: &str) -> Value {
    match name {
        "component" => scenario_component(),
        "pipeline" => scenario_pipeline(arg),
        "host" => scenario_host(1, 5, PIPELINE_MESSAGES),
        "outbound" => scenario_outbound(arg.parse().unwrap()),
        "servicebus" => scenario_servicebus(),
        "decode" => decode::scenario(arg),
        "size" => {
            let kb: usize = arg.parse().unwrap();
            // The same bytes through each size: fewer messages when they are larger.
            scenario_host(1, kb, (100_000 / kb).clamp(500, 20_000))
        }
        "partners" => scenario_host(arg.parse().unwrap(), 5, 10_000),
        "replicas" => replicas::scenario_replicas(arg.parse().unwrap()),
        "language" => languages::scenario_language(arg),
        "loaded" => languages::scenario_loaded(arg),
        "compile" => languages::scenario_compile(arg),
        "webhook" => webhook::scenario_webhook(arg),
        "amqp-saga" => amqp_saga::scenario(arg.parse().unwrap()),
        "amqp-saga-python" => amqp_saga::scenario_python(),
        other => panic!("unknown scenario {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------------

/// Runs one scenario `RUNS` times in child processes; returns each run's JSON, with the
/// run's wall time (set-up included) as `seconds`. Prints a line per scenario with the
/// time its runs took, so a slow suite shows where its time goes.
fn repeat(name: &str, arg: &str) -> Vec<Value> {
    let started = Instant::now();
    let runs = (0..RUNS)
        .map(|run| {
            eprint!("\r  {name} {arg}: run {}/{RUNS}   ", run + 1);
            let run_started = Instant::now();
            let output = Command::new(std::env::current_exe().unwrap())
                .args(["--scenario", name, arg])
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "scenario {name} {arg} failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let mut result: Value = serde_json::from_slice(&output.stdout).expect("a scenario prints one JSON object");
            result["seconds"] = json!(run_started.elapsed().as_secs_f64());
            result
        })
        .collect();
    eprintln!(
        "\r  {name} {arg}: {RUNS} runs in {:.0} s   ",
        started.elapsed().as_secs_f64()
    );
    runs
}

/// The median of `key` over runs.
fn med(runs: &[Value], key: &str) -> f64 {
    let mut values: Vec<f64> = runs.iter().map(|run| run[key].as_f64().unwrap()).collect();
    median(&mut values)
}

/// The maximum of `key` over runs (peak RSS).
fn max(runs: &[Value], key: &str) -> f64 {
    runs.iter().map(|run| run[key].as_f64().unwrap()).fold(0.0, f64::max)
}

/// One line of the table.
struct Row {
    figure: String,
    value: f64,
    unit: &'static str,
    baseline: Option<(String, f64)>,
    target: String,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        self.baseline.as_ref().map(|(_, baseline)| self.value / baseline)
    }
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    json!({"cpu": model, "cores": cores, "os": std::env::consts::OS})
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| arg != "--bench").collect();
    if let [flag, name, rest @ ..] = args.as_slice()
        && flag == "--scenario"
    {
        let result = run_scenario(name, rest.first().map_or("", String::as_str));
        println!("{result}");
        return;
    }
    let only: Option<&str> = args.first().map(String::as_str);
    let wanted = |group: &str| only.is_none_or(|only| only == group);
    let started = Instant::now();
    let machine = machine();
    eprintln!(
        "sagahost benchmark suite on {} ({} cores), median of {RUNS} runs each",
        machine["cpu"], machine["cores"]
    );
    let mut rows = Vec::new();
    let mut results = serde_json::Map::new();
    let mut record = |key: String, runs: Vec<Value>| {
        results.insert(key, Value::Array(runs.clone()));
        runs
    };

    if wanted("component") {
        let runs = record("component".into(), repeat("component", ""));
        rows.push(Row {
            figure: "component call, median".into(),
            value: med(&runs, "wasm_median_us"),
            unit: "µs",
            baseline: Some(("native fn".into(), med(&runs, "native_median_us"))),
            target: "≤ 20 µs".into(),
        });
        rows.push(Row {
            figure: "component call, p99".into(),
            value: med(&runs, "wasm_p99_us"),
            unit: "µs",
            baseline: Some(("native fn".into(), med(&runs, "native_p99_us"))),
            target: String::new(),
        });
    }
    if wanted("pipeline") {
        let wasm = record("pipeline-wasm".into(), repeat("pipeline", "wasm"));
        let native = record("pipeline-native".into(), repeat("pipeline", "native"));
        rows.push(Row {
            figure: format!("pipeline, {PIPELINE_MESSAGES} msgs, durable"),
            value: med(&wasm, "messages_per_s"),
            unit: "msg/s",
            baseline: Some(("native handler".into(), med(&native, "messages_per_s"))),
            target: "≥ 0.7 × native".into(),
        });
    }
    if wanted("host") {
        let host = record("host".into(), repeat("host", ""));
        rows.push(Row {
            figure: format!("sagahost run, {PIPELINE_MESSAGES} msgs, durable"),
            value: med(&host, "messages_per_s"),
            unit: "msg/s",
            baseline: None,
            target: "≥ 10,000 msg/s".into(),
        });
    }
    if wanted("outbound") {
        let mut first = None;
        for concurrency in [1, 8, 64, 256] {
            let runs = record(
                format!("outbound-{concurrency}"),
                repeat("outbound", &concurrency.to_string()),
            );
            let rate = med(&runs, "messages_per_s");
            let baseline = *first.get_or_insert(rate);
            rows.push(Row {
                figure: format!("one HTTP call per msg, concurrency {concurrency}"),
                value: rate,
                unit: "msg/s",
                baseline: (concurrency > 1).then(|| ("concurrency 1".into(), baseline)),
                target: String::new(),
            });
        }
    }
    if wanted("servicebus") {
        let runs = record("servicebus".into(), repeat("servicebus", ""));
        rows.push(Row {
            figure: "Service Bus receive → complete".into(),
            value: med(&runs, "messages_per_s"),
            unit: "msg/s",
            baseline: Some(("Python SDK".into(), med(&runs, "python_sdk_messages_per_s"))),
            target: "≥ 5 × Python SDK".into(),
        });
    }
    if wanted("replicas") {
        let mut one = None;
        for replicas in [1, 2, 3] {
            let runs = record(
                format!("replicas-{replicas}"),
                repeat("replicas", &replicas.to_string()),
            );
            let rate = med(&runs, "messages_per_s");
            let baseline = *one.get_or_insert(rate);
            rows.push(Row {
                figure: format!("{replicas} sagahost run replicas on one broker queue"),
                value: rate,
                unit: "msg/s",
                baseline: (replicas > 1).then(|| ("1 replica".into(), baseline)),
                target: String::new(),
            });
        }
    }
    if wanted("languages") {
        let (language_rows, runs) = languages::group();
        rows.extend(language_rows);
        for (key, runs) in runs {
            record(key, runs);
        }
    }
    if wanted("webhook") {
        let (webhook_rows, runs) = webhook::group();
        rows.extend(webhook_rows);
        for (key, runs) in runs {
            record(key, runs);
        }
    }
    if wanted("amqp-saga") {
        let (saga_rows, runs) = amqp_saga::group();
        rows.extend(saga_rows);
        for (key, runs) in runs {
            record(key, runs);
        }
    }
    if wanted("decode") {
        let (decode_rows, runs) = decode::group();
        rows.extend(decode_rows);
        for (key, runs) in runs {
            record(key, runs);
        }
    }
    let mut size_curve = Vec::new();
    let mut partner_curve = Vec::new();
    if wanted("scaling") {
        for kb in [5, 16, 64, 192] {
            let runs = record(format!("size-{kb}"), repeat("size", &kb.to_string()));
            size_curve.push((kb as f64, med(&runs, "messages_per_s"), max(&runs, "peak_rss_mib")));
        }
        for partners in [1, 10, 100] {
            let runs = record(
                format!("partners-{partners}"),
                repeat("partners", &partners.to_string()),
            );
            partner_curve.push((
                partners as f64,
                med(&runs, "messages_per_s"),
                max(&runs, "peak_rss_mib"),
            ));
        }
        let base = size_curve[0].1;
        for (kb, rate, rss) in &size_curve {
            rows.push(Row {
                figure: format!("message size {kb} KiB (peak RSS {rss:.0} MiB)"),
                value: *rate,
                unit: "msg/s",
                baseline: (*kb > 5.0).then(|| ("5 KiB".into(), base)),
                target: String::new(),
            });
        }
        let base = partner_curve[0].1;
        for (partners, rate, rss) in &partner_curve {
            rows.push(Row {
                figure: format!("{partners} partners loaded (peak RSS {rss:.0} MiB)"),
                value: *rate,
                unit: "msg/s",
                baseline: (*partners > 1.0).then(|| ("1 partner".into(), base)),
                target: if *partners == 100.0 {
                    "RSS ≤ 150 MB".into()
                } else {
                    String::new()
                },
            });
        }
    }
    eprintln!("\r  done in {:.0} s{}", started.elapsed().as_secs_f64(), " ".repeat(30));

    let table = report::render(&rows);
    print!("{table}");
    let out = workspace().join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    let report = json!({
        "machine": machine,
        "runs_per_figure": RUNS,
        "table": rows.iter().map(|row| json!({
            "figure": row.figure, "value": row.value, "unit": row.unit,
            "baseline": row.baseline.as_ref().map(|(name, value)| json!({"name": name, "value": value})),
            "ratio": row.ratio(), "target": row.target,
        })).collect::<Vec<_>>(),
        "runs": results,
    });
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(&report).unwrap()).unwrap();
    std::fs::write(out.join("table.md"), &table).unwrap();
    eprintln!("wrote {0}/results.json and {0}/table.md", out.display());
    let scaling = |caption, x_label, curve: &[(f64, f64, f64)]| report::Curve {
        caption,
        x_label,
        y_label: "messages/s",
        points: curve
            .iter()
            .map(|(x, rate, rss)| (*x, *rate, format!("{rate:.0} msg/s, {rss:.0} MiB")))
            .collect(),
    };
    let curves = [
        scaling("throughput vs message size", "message size (KiB)", &size_curve),
        scaling("throughput vs partners loaded", "partners", &partner_curve),
    ];
    if !size_curve.is_empty() && report::plot(&out.join("scaling.png"), &curves) {
        eprintln!("wrote {}/scaling.png", out.display());
    }
}
