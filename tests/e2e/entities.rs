//! `sagahost entities apply` and the Service Bus queue-depth gauges, against `sagahost broker`
//! with its entity-management API (`--http-listen`) on loopback.

use std::process::Command;
use std::time::Duration;

use sagahost::config::Config;
use sagahost::service::Host;
use sagahost_transport::servicebus::{ServiceBusOptions, ServiceBusTransport};
use sagahost_transport::{OutgoingMessage, Output, Transport};

use crate::support::{self, BrokerProcess};

/// A config on the broker: MDM reads `contacts` and forwards to `parked`, which nobody reads; an
/// ordered partner reads `ordered`; the `changes` topic has two subscriptions, one with two rules.
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
             [partners.mdm]\ncomponent = {mdm:?}\nqueue = \"contacts\"\nroutes = {{ next = \"parked\" }}\n\
             [partners.ledger]\ncomponent = {mdm:?}\nqueue = \"ordered\"\nordering = \"per-record\"\n\
             [[topics]]\nname = \"changes\"\n\
             [[topics.subscriptions]]\nname = \"all\"\n\
             [[topics.subscriptions]]\nname = \"contacts\"\nmax-delivery-count = 3\n\
             [[topics.subscriptions.rules]]\nname = \"contact\"\nfilter = {{ correlation = {{ subject = \"contact\" }} }}\n\
             [[topics.subscriptions.rules]]\nname = \"lead\"\nfilter = {{ sql = \"sys.Label = 'lead'\" }}\n",
            broker.management.as_deref().expect("started with --http-listen"),
            mdm = support::component("mdm").display().to_string(),
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
async fn entities_apply_creates_queues_topics_subscriptions_and_rules_once_and_the_gauges_read_their_counts() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&["--http-listen", "127.0.0.1:0"]);
    let config = write_config(dir.path(), &broker);

    let first = tokio::task::spawn_blocking({
        let config = config.clone();
        move || apply(&config)
    })
    .await
    .unwrap();
    for queue in [
        "contacts",
        "contacts-compensate",
        "parked",
        "ordered",
        "ordered-compensate",
        // Where the replicas share their canaries (on by default on Service Bus).
        "sagahost-control",
    ] {
        assert!(first.contains(&format!("created queue `{queue}`")), "{first}");
    }
    for entity in [
        "topic `changes`",
        "subscription `changes/Subscriptions/all`",
        "subscription `changes/Subscriptions/contacts`",
        "rule `lead` of `changes/Subscriptions/contacts`",
    ] {
        assert!(first.contains(&format!("created {entity}")), "{first}");
    }
    let again = tokio::task::spawn_blocking({
        let config = config.clone();
        move || apply(&config)
    })
    .await
    .unwrap();
    assert!(again.contains("0 created, 10 already there"), "{again}");

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
    // The ordered partner's queue was made session-enabled: plain receivers are refused.
    let refused = transport
        .receive("ordered", 1, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("session"), "{refused}");
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
