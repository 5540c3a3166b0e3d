//! The host is killed with SIGKILL in the middle of a run and restarted: every
//! message still reaches its end state, and partner calls are repeated only with
//! the same `Idempotency-Key`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use sagahost::config::Config;
use sagahost_transport::embedded::EmbeddedQueue;

use crate::partners::Received;
use crate::saga::{SAGA_QUEUES, Servers, config, send_contacts, write_config};
use crate::support;

const MESSAGES: usize = 1_000;
const KILLS: usize = 2;

fn start_host(config: &std::path::Path) -> Child {
    support::start_host(config, &[])
}

/// Calls per `Idempotency-Key`, and the distinct contacts those calls were for.
fn books(
    requests: &[Received],
    contact_of: impl Fn(&Received) -> String,
) -> (BTreeMap<String, usize>, BTreeSet<String>) {
    let mut per_key = BTreeMap::new();
    let mut contacts = BTreeSet::new();
    for request in requests {
        *per_key
            .entry(request.header("idempotency-key").unwrap().to_string())
            .or_insert(0) += 1;
        contacts.insert(contact_of(request));
    }
    (per_key, contacts)
}

fn json_field(request: &Received, field: &str) -> String {
    let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
    body[field].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_loses_nothing_and_repeats_calls_only_with_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let servers = Servers::healthy().await;
    let mut table = config(dir.path(), &servers);
    // Short locks so messages held by the killed process come back quickly.
    let queues = SAGA_QUEUES;
    let mut queue_table = toml::Table::new();
    for queue in queues {
        queue_table.insert(
            queue.into(),
            toml::from_str::<toml::Value>("lock-duration-ms = 1500").unwrap(),
        );
    }
    table.insert("queues".into(), queue_table.into());
    table.remove("webhook");
    let config_path = write_config(dir.path(), &table);
    let loaded = Config::load(&config_path).unwrap().config;
    let db = loaded.data_dir.join("queue.sqlite3");
    std::fs::create_dir_all(&loaded.data_dir).unwrap();

    send_contacts(&db, &loaded, MESSAGES).await;

    let started = Instant::now();
    let mut host = start_host(&config_path);
    for kill in 1..=KILLS {
        // Kill once the saga is well under way: some contacts through ERP, most not.
        let threshold = kill * MESSAGES / 5;
        while servers.erp.received().len() < threshold {
            assert!(
                started.elapsed() < Duration::from_secs(240),
                "no progress before kill {kill}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        host.kill().unwrap(); // SIGKILL
        host.wait().unwrap();
        host = start_host(&config_path);
    }
    // Every contact reaches the ERP, the end of its saga.
    loop {
        let done: BTreeSet<String> = servers
            .erp
            .received()
            .iter()
            .map(|r| json_field(r, "dataverseId"))
            .collect();
        if done.len() == MESSAGES {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "only {} of {MESSAGES} sagas finished",
            done.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the last settlements land, then stop gracefully.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Command::new("kill")
        .arg("-TERM")
        .arg(host.id().to_string())
        .status()
        .unwrap();
    assert!(host.wait().unwrap().success(), "graceful shutdown failed");

    let queue = EmbeddedQueue::open(&db, &loaded.queue_settings()).unwrap();
    for name in queues {
        let depth = queue.queue_depth(name).await.unwrap();
        assert_eq!(
            (depth.active, depth.scheduled, depth.dead_lettered),
            (0, 0, 0),
            "queue {name}: {depth:?}"
        );
    }

    let mdm = books(&servers.mdm.received(), |r| json_field(r, "dataverseId"));
    let writeback = books(&servers.dataverse.received(), |r| r.path.clone());
    let erp = books(&servers.erp.received(), |r| json_field(r, "dataverseId"));
    for (partner, (per_key, contacts)) in [("mdm", &mdm), ("dataverse-writeback", &writeback), ("erp", &erp)] {
        // One key per contact: a repeated call always reused its key.
        assert_eq!(
            contacts.len(),
            MESSAGES,
            "{partner}: calls for {} contacts",
            contacts.len()
        );
        assert_eq!(
            per_key.len(),
            MESSAGES,
            "{partner}: {} distinct keys for {MESSAGES} contacts",
            per_key.len()
        );
        let duplicates: usize = per_key.values().map(|n| n - 1).sum();
        println!(
            "{partner}: {} calls, {duplicates} repeated with the same Idempotency-Key",
            per_key.values().sum::<usize>()
        );
    }
}
