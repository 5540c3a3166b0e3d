//! Receive → complete throughput: the Service Bus transport against
//! `sagahost broker` on loopback, next to the embedded transport, in one run.
//!
//! Each run enqueues `MESSAGES` messages straight into an embedded queue, then
//! drains them through the transport under test: receive batches of up to 64,
//! complete each message concurrently. Both transports drain the same kind of
//! SQLite queue, so the ratio shows what AMQP costs on top of it. Reports the
//! median of `RUNS` runs. Run with `cargo bench --bench transport`.

use std::time::{Duration, Instant};

use futures::future::join_all;
use sagahost::transport::broker::{self, BrokerConfig};
use sagahost::transport::embedded::{EmbeddedQueue, QueueSettings};
use sagahost::transport::servicebus::{ServiceBusOptions, ServiceBusTransport};
use sagahost::transport::{OutgoingMessage, Output, Settlement, Transport};
use tokio_util::sync::CancellationToken;

const MESSAGES: usize = 5_000;
const RUNS: usize = 5;
const BATCH: usize = 64;

fn fill(dir: &std::path::Path) -> EmbeddedQueue {
    let queue = EmbeddedQueue::open(&dir.join("queue.sqlite3"), &[QueueSettings::new("bench")]).unwrap();
    let body = vec![b'x'; 1024];
    let outputs: Vec<Output> = (0..MESSAGES)
        .map(|_| Output {
            queue: "bench".into(),
            message: OutgoingMessage {
                body: body.clone(),
                ..Default::default()
            },
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { queue.send(outputs).await.unwrap() });
    queue
}

/// Drains the queue through `transport`; returns messages per second.
async fn drain(transport: &impl Transport) -> f64 {
    let started = Instant::now();
    let mut done = 0;
    while done < MESSAGES {
        let batch = transport.receive("bench", BATCH, Duration::from_secs(5)).await.unwrap();
        assert!(!batch.is_empty(), "queue ran dry after {done} messages");
        done += batch.len();
        let settles = batch
            .iter()
            .map(|m| transport.settle(m, Settlement::Complete, Vec::new()));
        for result in join_all(settles).await {
            result.unwrap();
        }
    }
    MESSAGES as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut embedded = Vec::new();
    let mut servicebus = Vec::new();
    for run in 1..=RUNS {
        let dir = tempfile::tempdir().unwrap();
        let queue = fill(dir.path());
        embedded.push(rt.block_on(drain(&queue)));

        let dir = tempfile::tempdir().unwrap();
        let queue = fill(dir.path());
        let rate = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let shutdown = CancellationToken::new();
            let server = tokio::spawn(broker::serve_with(listener, queue, BrokerConfig::default(), shutdown.clone()));
            let connection = format!(
                "Endpoint=sb://{addr};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
            );
            let options = ServiceBusOptions { prefetch: 256, ..ServiceBusOptions::default() };
            let transport = ServiceBusTransport::connect(&connection, options).await.unwrap();
            let rate = drain(&transport).await;
            shutdown.cancel();
            let _ = server.await;
            rate
        });
        servicebus.push(rate);
        eprintln!(
            "run {run}/{RUNS}: embedded {:.0} msg/s, service bus via broker {:.0} msg/s",
            embedded[run - 1],
            rate
        );
    }
    let (embedded, servicebus) = (median(embedded), median(servicebus));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "receive → complete, {MESSAGES} messages of 1 KiB, batches of {BATCH}, median of {RUNS} runs, {cores} cores"
    );
    println!("  embedded transport                     {embedded:>9.0} msg/s  (baseline)");
    println!(
        "  Service Bus transport, sagahost broker {servicebus:>9.0} msg/s  ({:.2} x embedded)",
        servicebus / embedded
    );
    let json = serde_json::json!({
        "bench": "transport-receive-complete",
        "messages": MESSAGES, "runs": RUNS, "cores": cores,
        "embedded_msgs_per_s_median": embedded,
        "servicebus_broker_msgs_per_s_median": servicebus,
        "ratio": servicebus / embedded,
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("transport.json"), json.to_string()).unwrap();
}
