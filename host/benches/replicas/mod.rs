//! The `replicas N` scenario: N `sagahost run` processes (the binary this bench was built
//! with) compete for one queue on one `sagahost broker` process, as pods of one Deployment
//! compete for a Service Bus queue. Each replica runs the `mdm` example, one HTTP call per
//! message to a loopback partner that answers at once, and forwards to a second queue.
//!
//! The queue is filled before anything starts. The timed section runs from the moment every
//! replica answers `/readyz` (its components are loaded and the broker answers) until the
//! queue is empty; what early replicas handled before the last one was ready is left out.
//!
//! On two cores the replicas, the broker and the partner share the same CPUs, so more
//! replicas cannot mean more throughput here: the figure shows that messages keep flowing
//! and none is lost or handled twice as replicas are added, not how a cluster scales.

use std::path::Path;
use std::time::{Duration, Instant};

use sagahost_transport::embedded::{EmbeddedQueue, QueueSettings};
use serde_json::{Value, json};

use crate::common::{component_path, contact_body};
use crate::processes::{Process, broker, connection_string, free_port, sagahost};

/// Messages per run.
const MESSAGES: usize = 5_000;

/// A replica's config: the Service Bus transport on the broker, the mdm partner reading `in`.
fn replica_config(dir: &Path, broker_port: u16, admin_port: u16, partner: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let connection = write("connection-string", &connection_string(broker_port));
    let state_key = write("state-key", "bench-state-key-0123456789abcdef0123456789");
    let mdm_key = write("mdm-key", "bench-key");
    let text = format!(
        "data-dir = {data:?}\nwatch-components = false\n\
         [transport]\nkind = \"servicebus\"\nconnection-string = {{ file = {connection:?} }}\n\
         [saga-state]\nsigning-key = \"k1\"\nkeys = {{ k1 = {{ file = {state_key:?} }} }}\n\
         [admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\
         [partners.mdm]\ncomponent = {component:?}\nqueue = \"in\"\nconcurrency = 16\n\
         routes = {{ next = \"out\" }}\nconfig = {{ mdm-url = \"{partner}/api\" }}\n\
         secrets = {{ mdm-api-key = {{ file = {mdm_key:?} }} }}\noutbound = {{ allow = [\"{partner}\"] }}\n",
        data = dir.join("data").display().to_string(),
        component = component_path("mdm").display().to_string(),
    );
    let path = dir.join("sagahost.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Waits until `GET http://127.0.0.1:PORT/readyz` answers 200.
fn wait_ready(port: u16) {
    let started = Instant::now();
    let client = reqwest::blocking::Client::new();
    loop {
        let ready = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .timeout(Duration::from_secs(6))
            .send()
            .is_ok_and(|response| response.status().is_success());
        if ready {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "a replica never became ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `replicas` hosts over [`MESSAGES`] messages; messages/s once all are ready.
pub fn scenario_replicas(replicas: usize) -> Value {
    let rt = crate::runtime();
    let partner = crate::instant_partner(&rt);
    let dir = tempfile::tempdir().unwrap();
    let broker_dir = dir.path().join("broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let database = broker_dir.join("broker.sqlite3");
    let settings = [QueueSettings::new("in"), QueueSettings::new("out")];
    let store = EmbeddedQueue::open(&database, &settings).unwrap();
    rt.block_on(crate::fill(&store, "in", MESSAGES, &contact_body(5)));

    let (_broker, broker_port) = broker(&broker_dir);
    let admin_ports: Vec<u16> = (0..replicas).map(|_| free_port()).collect();
    let _replicas: Vec<Process> = admin_ports
        .iter()
        .enumerate()
        .map(|(r, admin)| {
            let config = replica_config(&dir.path().join(format!("replica-{r}")), broker_port, *admin, &partner);
            sagahost(&["run", "--config", config.to_str().unwrap()])
        })
        .collect();
    for port in &admin_ports {
        wait_ready(*port);
    }
    let depth = || {
        let depth = rt.block_on(store.queue_depth("in")).unwrap();
        depth.active + depth.scheduled
    };
    let started = Instant::now();
    let left_at_start = depth();
    loop {
        let left = depth();
        if left == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{left} of {MESSAGES} messages still queued"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Every message was forwarded exactly once: none lost, none handled twice.
    let forwarded = rt.block_on(store.queue_depth("out")).unwrap().active;
    assert_eq!(forwarded as usize, MESSAGES, "messages forwarded to `out`");
    json!({
        "messages_per_s": left_at_start as f64 / elapsed,
        "measured_messages": left_at_start,
    })
}
