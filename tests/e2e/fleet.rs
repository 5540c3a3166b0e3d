//! Canaries shared by replicas: two hosts on one `sagahost broker` (Service Bus transport) keep
//! each partner's canary in the control queue's session state. A canary started through one
//! replica's admin API runs on the other, a promotion through the other reaches the first, a
//! rollback decided from a replica's own counts ends the canary on both, and a replica started
//! after a canary ended does not replay it.

use std::path::Path;
use std::time::{Duration, Instant};

use sagahost::component::cache::content_hash;
use sagahost::config::Config;
use sagahost::fleet::{CanaryState, SharedCanaries};
use sagahost::service::Host;
use serde_json::{Value, json};

use crate::operate::{next_version, send_many};
use crate::saga::{Kind, Running, start};
use crate::support;

fn table(dir: &Path) -> toml::Table {
    let component = dir.join("p.wasm");
    std::fs::copy(support::component("hostile"), &component).unwrap();
    let key = dir.join("state-key");
    std::fs::write(&key, "fleet-test-state-key-0123456789abcdef").unwrap();
    let text = format!(
        r#"
data-dir = {data:?}
[admin]
listen = "127.0.0.1:0"
[fleet]
poll-interval-ms = 200
[saga-state]
signing-key = "k1"
keys = {{ k1 = {{ file = {key:?} }} }}
[partners.p]
component = {component:?}
queue = "in"
concurrency = 16
"#,
        data = dir.join("data").display().to_string(),
        key = key.display().to_string(),
        component = component.display().to_string(),
    );
    toml::from_str(&text).unwrap()
}

async fn status(host: &Host) -> Value {
    let text = reqwest::get(format!("http://{}/admin/partners", host.admin_addr.unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str::<Value>(&text).unwrap()[0].clone()
}

async fn post(host: &Host, path: &str, body: Option<Value>) -> Value {
    let mut request =
        reqwest::Client::new().post(format!("http://{}/admin/partners/p/{path}", host.admin_addr.unwrap()));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let code = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(code, 200, "{path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Waits until `check` holds for `host`'s status of partner `p` (or fails after 30 s: CI runs
/// this beside the whole suite on two cores).
async fn eventually(host: &Host, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = status(host).await;
        if check(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{what}: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_started_promoted_or_rolled_back_on_one_replica_applies_on_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let Running { host: first, .. } = start(dir.path(), table(dir.path()), Kind::ServiceBus).await;
    let config = Config::load(&dir.path().join("sagahost.toml")).unwrap().config;
    let second = Host::start(&config).await.unwrap();
    let stable = content_hash(&support::component_bytes("hostile"));

    // Started through the first replica: the second joins it.
    let good = next_version(&support::component_bytes("hostile"), "candidate");
    let candidate = dir.path().join("candidate.wasm");
    std::fs::write(&candidate, &good).unwrap();
    let started = post(
        &first,
        "canary",
        Some(json!({ "component": candidate, "percent": 30, "window": 20 })),
    )
    .await;
    let good_version = content_hash(&good);
    assert_eq!(started["canary"], good_version);
    eventually(&second, "the second replica joins the canary", |s| {
        s["canary"]["version"] == good_version
    })
    .await;

    // Promoted through the second: the first serves the candidate too.
    post(&second, "canary/promote", None).await;
    for host in [&first, &second] {
        eventually(host, "every replica serves the promoted version", |s| {
            s["version"] == good_version && s["canary"].is_null()
        })
        .await;
    }

    // A candidate that fails every message (the mdm example without its `mdm-url`), started
    // through the second replica: whichever replica's own window fills first rolls it back, and
    // the other follows.
    let bad = dir.path().join("bad.wasm");
    std::fs::copy(support::component("mdm"), &bad).unwrap();
    post(
        &second,
        "canary",
        Some(json!({ "component": bad, "percent": 50, "window": 10 })),
    )
    .await;
    eventually(&first, "the first replica joins the second canary", |s| {
        s["canary"]["version"] == content_hash(&support::component_bytes("mdm"))
    })
    .await;
    send_many(&first, 200).await;
    let mut endings = Vec::new();
    for host in [&first, &second] {
        let status = eventually(host, "the failing canary ends on every replica", |s| {
            s["canary"].is_null() && s["last_canary"].as_str().is_some_and(|l| l.contains("rolled back"))
        })
        .await;
        assert_eq!(status["version"], good_version, "{status}");
        endings.push(status["last_canary"].as_str().unwrap().to_string());
    }
    // At least one replica judged the candidate from its own counts; the other either followed
    // its record ("rolled back on <replica>: …") or reached the same verdict first.
    assert!(
        endings
            .iter()
            .any(|l| l.starts_with("rolled back") && l.contains("failed")),
        "{endings:?}"
    );

    // A replica started now serves its config's version: the finished canaries are not replayed.
    // The replicas end their own canary before they write the rollback into the shared record
    // (on their next poll), so wait for the record: a replica started while it still says
    // "running" joins the canary, as it should, and ends it again when the record catches up.
    let fleet = SharedCanaries::new(
        first.transport.clone(),
        first.registry.clone(),
        config.shared_canaries().unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let record = fleet.read("p").await.unwrap().unwrap();
        if matches!(record.state, CanaryState::RolledBack { .. }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the record never said rolled back: {record:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let third = Host::start(&config).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let status = status(&third).await;
    assert_eq!(status["version"], stable, "{status}");
    assert!(status["canary"].is_null(), "{status}");
    for host in [first, second, third] {
        host.shutdown().await;
    }
}
