//! `sagahost entities apply` and the Service Bus queue-depth gauges, against `sagahost broker`
//! with its entity-management API (`--http-listen`) on loopback.

use std::process::Command;

use sagahost::config::Config;
use sagahost::service::Host;
use sagahost_transport::servicebus::{ServiceBusOptions, ServiceBusTransport};
use sagahost_transport::{OutgoingMessage, Output, Transport};

use crate::support::{self, BrokerProcess};

/// A config on the broker: MDM reads `contacts` and forwards to `parked`, which nobody reads.
fn write_config(dir: &std::path::Path, broker: &BrokerProcess) -> std::path::PathBuf {
    std::fs::write(dir.join("connection-string"), &broker.connection_string).unwrap();
    std::fs::write(dir.join("state-key"), "0123456789abcdef0123456789abcdef-state").unwrap();
    let config = dir.join("sagahost.toml");
    std::fs::write(
        &config,
        format!(
            "data-dir = \"data\"\n\
             [transport]\nkind = \"servicebus\"\nconnection-string = {{ file = \"connection-string\" }}\n\
             management-endpoint = \"{}\"\n\
             [saga-state]\nsigning-key = \"k1\"\nkeys = {{ k1 = {{ file = \"state-key\" }} }}\n\
             [queues.contacts]\nlock-duration-ms = 45000\nmax-delivery-count = 4\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n\
             [partners.mdm]\ncomponent = {:?}\nqueue = \"contacts\"\nroutes = {{ next = \"parked\" }}\n",
            broker.management.as_deref().expect("started with --http-listen"),
            support::component("mdm").display().to_string(),
        ),
    )
    .unwrap();
    config
}

fn apply(config: &std::path::Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_sagahost"))
        .args(["entities", "apply", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_apply_creates_the_queues_once_and_the_gauges_read_their_counts() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&["--http-listen", "127.0.0.1:0"]);
    let config = write_config(dir.path(), &broker);

    let first = tokio::task::spawn_blocking({
        let config = config.clone();
        move || apply(&config)
    })
    .await
    .unwrap();
    for queue in ["contacts", "contacts-compensate", "parked"] {
        assert!(first.contains(&format!("created queue `{queue}`")), "{first}");
    }
    let again = tokio::task::spawn_blocking({
        let config = config.clone();
        move || apply(&config)
    })
    .await
    .unwrap();
    assert!(again.contains("0 created, 3 already there"), "{again}");

    // The gauges and the client read the counts the broker keeps.
    let loaded = Config::load(&config).unwrap().config;
    let client = loaded.entity_client().unwrap().unwrap();
    let transport = ServiceBusTransport::connect(&broker.connection_string, ServiceBusOptions::default())
        .await
        .unwrap();
    let parked = |id: &str| Output {
        queue: "parked".into(),
        message: OutgoingMessage {
            message_id: id.into(),
            body: b"{}".to_vec(),
            ..OutgoingMessage::default()
        },
    };
    transport.send(vec![parked("p-1"), parked("p-2")]).await.unwrap();
    transport.close().await;
    let depth = client.queue_depth("parked").await.unwrap();
    assert_eq!((depth.active, depth.scheduled, depth.dead_lettered), (2, 0, 0));

    let host = Host::start(&loaded).await.unwrap();
    let metrics = reqwest::get(format!("http://{}/metrics", host.admin_addr.unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    host.shutdown().await;
    let active = metrics
        .lines()
        .find(|line| {
            line.starts_with("sagahost_queue_depth{")
                && line.contains("queue=\"parked\"")
                && line.contains("state=\"active\"")
        })
        .unwrap_or_else(|| panic!("no depth gauge for `parked`:\n{metrics}"));
    assert!(active.ends_with(" 2"), "{active}");
}
