//! Fault injection: the three-step contact saga (mdm → dataverse-writeback → erp, compensating
//! on an ERP rejection) runs a batch of contacts through `sagahost run` while everything around
//! it misbehaves, then the books are checked.
//!
//! The partner servers (real HTTP on loopback, [`partners`]) answer 503 at random, 429 with
//! `Retry-After`, answer after the host's timeout, reset the connection mid-response, or never
//! answer; the writeback partner sometimes takes longer than the queue's lock, so only lock
//! renewal keeps the message. Like real idempotent APIs, a server that has done the work for an
//! `Idempotency-Key` answers every repeat of that key the same way. Meanwhile a host is killed
//! with SIGKILL and restarted, a new version of the MDM component is deployed mid-run, and
//! (Service Bus scenarios) `sagahost broker` itself is killed and restarted.
//!
//! Three scenarios: one host on the embedded queue; one host on Service Bus (`sagahost
//! broker`); and three `sagahost run` replicas competing for the same Service Bus queues, as
//! pods of one Deployment do. Each replica has its own config file, component file, data
//! directory and admin endpoint; one replica is SIGKILLed and restarted, the broker is restarted,
//! and the new MDM version is rolled out replica by replica (at the end every replica must serve
//! it, which its `/admin/partners` shows).
//!
//! The books ([`books`]): every contact reached exactly one end state (completed at the ERP,
//! compensated back to the MDM, or dead-lettered with a reason), no queue holds anything, a
//! failed undo of a later step never kept the MDM's step from being undone, and every repeated
//! partner call is explained (a retry after a fault, or a redelivery after a kill or a broker
//! restart); a repeat with no such cause would mean a lock was lost while a call ran, or that two
//! replicas handled the same message at once. With replicas, a kill explains repeats from any
//! replica in its time span (the partner servers cannot tell replicas apart).
//!
//! The short versions run in the README's test command. The long ones (3,000 contacts, more
//! kills and broker restarts):
//! `SAGAHOST_FAULTS_LONG=1 cargo test -p sagahost --test e2e faults -- --nocapture --test-threads 1`
//! (after `scripts/build-guests`). The faults are pseudo-random per `Idempotency-Key`, from
//! `SAGAHOST_FAULTS_SEED` (default 0): the same seed injects the same faults.
//!
//! Each run works in a temporary directory holding each replica's log
//! (`replica-N/host.log`) and the broker's (`broker/broker.log`), at the `SAGAHOST_FAULTS_LOG`
//! filter, default `warn`. A failed run keeps it and prints where; `SAGAHOST_FAULTS_KEEP=1` keeps
//! it after a passing run too.

mod books;
mod partners;
mod processes;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sagahost::config::Config;
use sagahost_transport::embedded::EmbeddedQueue;

use books::{Incident, keep_books};
use partners::{Partners, contact_of, seed};
use processes::{BrokerProcess, Replica, RunDir};

use crate::operate::{next_version, replace};
use crate::saga::{SAGA_QUEUES, config_for, send_contacts, write_config};
use crate::support;

/// The host's whole-request timeout for every partner, in milliseconds.
const TIMEOUT_MS: u64 = 1_000;
/// Lock duration of every queue; the writeback partner's slow answers take longer. Renewals run
/// at half the remaining time, so a host stalled for half a lock loses it: at three seconds, three
/// replicas and the broker sharing two cores with the rest of the suite lost locks that way.
const LOCK_MS: u64 = 5_000;
/// The writeback partner may take this long (past the lock; within its own timeout).
const LINGER_MS: u64 = 5_500;
/// The host's timeout for the writeback partner, which lingers.
const WRITEBACK_TIMEOUT_MS: u64 = LINGER_MS + 1_000;

/// How big a run is: the short one in the test command, the long one on request.
struct Scale {
    contacts: usize,
    replicas: usize,
    host_kills: usize,
    broker_restarts: usize,
}

fn long() -> bool {
    std::env::var_os("SAGAHOST_FAULTS_LONG").is_some()
}

/// One host, killed twice (five times in the long run).
fn one_host(broker_restarts: usize) -> Scale {
    if long() {
        Scale {
            contacts: 3_000,
            replicas: 1,
            host_kills: 5,
            broker_restarts: broker_restarts * 3,
        }
    } else {
        Scale {
            contacts: 150,
            replicas: 1,
            host_kills: 2,
            broker_restarts,
        }
    }
}

/// Three replicas; one is killed (three in the long run) and the broker restarted once (twice).
fn three_replicas() -> Scale {
    if long() {
        Scale {
            contacts: 3_000,
            replicas: 3,
            host_kills: 3,
            broker_restarts: 2,
        }
    } else {
        Scale {
            contacts: 300,
            replicas: 3,
            host_kills: 1,
            broker_restarts: 1,
        }
    }
}

/// What the run does to itself once the partners have seen enough calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// SIGKILL this replica and start it again.
    Kill(usize),
    RestartBroker,
    /// Deploy the new MDM version to this replica (replace its component file).
    Rollout(usize),
}

/// The steps of a run, each at a number of partner calls, spread over the run and never at the
/// same point. Every contact makes at least two calls (an MDM create and a writeback, or four MDM
/// attempts), so each threshold is reached.
fn plan(scale: &Scale) -> Vec<(usize, Step)> {
    let expected_calls = scale.contacts * 2;
    let mut plan: Vec<(usize, Step)> = (1..=scale.host_kills)
        .map(|k| {
            (
                k * expected_calls / (scale.host_kills + 2),
                Step::Kill(k % scale.replicas),
            )
        })
        .chain((1..=scale.broker_restarts).map(|k| {
            (
                k * expected_calls / (scale.broker_restarts + 1) + 7,
                Step::RestartBroker,
            )
        }))
        // Rolled out over the second half of the run, one replica after another.
        .chain((0..scale.replicas).map(|r| {
            (
                expected_calls * (scale.replicas + 1 + r) / (2 * scale.replicas + 2) + 3,
                Step::Rollout(r),
            )
        }))
        .collect();
    plan.sort();
    plan
}

/// The saga's config in `dir` (a replica's own directory, with its own copy of the MDM component
/// and its admin endpoint on `admin`) against the faulty partners, with short locks and timeouts.
fn saga_config(dir: &Path, partners: &Partners, transport: Option<&str>, admin: SocketAddr) -> (PathBuf, Config) {
    std::fs::create_dir_all(dir).unwrap();
    let mut table = config_for(
        dir,
        [
            partners.mdm.origin(),
            partners.writeback.origin(),
            partners.erp.origin(),
        ],
    );
    table.remove("webhook");
    let component = dir.join("mdm.wasm");
    std::fs::copy(support::component("mdm"), &component).unwrap();
    let partner_tables = table["partners"].as_table_mut().unwrap();
    partner_tables["mdm"]
        .as_table_mut()
        .unwrap()
        .insert("component".into(), component.display().to_string().into());
    for (name, timeout) in [
        ("mdm", TIMEOUT_MS),
        ("dataverse-writeback", WRITEBACK_TIMEOUT_MS),
        ("erp", TIMEOUT_MS),
    ] {
        let partner = partner_tables[name].as_table_mut().unwrap();
        let outbound = partner["outbound"].as_table_mut().unwrap();
        outbound.insert("timeout-ms".into(), (timeout as i64).into());
        let retry: toml::Table = toml::from_str(
            "initial-delay-ms = 100\nmax-delay-ms = 1000\nmax-attempts = 4\njitter = 0.2\nexhausted = \"dead-letter\"",
        )
        .unwrap();
        partner.insert("retry".into(), retry.into());
        partner.insert("concurrency".into(), 16.into());
    }
    let mut queues = toml::Table::new();
    for queue in SAGA_QUEUES {
        queues.insert(
            queue.into(),
            toml::from_str::<toml::Value>(&format!("lock-duration-ms = {LOCK_MS}")).unwrap(),
        );
    }
    table.insert("queues".into(), queues.into());
    if let Some(transport) = transport {
        table.insert(
            "transport".into(),
            toml::from_str::<toml::Table>(transport).unwrap().into(),
        );
    }
    table.insert(
        "admin".into(),
        toml::from_str::<toml::Table>(&format!("listen = \"{admin}\""))
            .unwrap()
            .into(),
    );
    let path = write_config(dir, &table);
    let loaded = Config::load(&path).unwrap().config;
    (path, loaded)
}

/// A free loopback address for a replica's admin endpoint.
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The last lines of every replica's log, for a failure message.
fn log_tails(replicas: &[Replica]) -> String {
    replicas
        .iter()
        .map(|replica| {
            let log = std::fs::read_to_string(&replica.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("{}:\n{}", replica.log.display(), tail.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Runs one scenario; `service_bus` runs it against `sagahost broker` instead of the embedded
/// queue.
async fn run_scenario(name: &str, scale: Scale, service_bus: bool) {
    let dir = RunDir::new();
    let partners = Partners::start().await;
    let mut broker = None;
    let transport = if service_bus {
        let addr = free_addr();
        let process = BrokerProcess::start(addr, &dir.path().join("broker"));
        let connection = dir.path().join("connection-string");
        std::fs::write(
            &connection,
            format!(
                "Endpoint=sb://{addr};SharedAccessKeyName=RootManageSharedAccessKey;\
                 SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
            ),
        )
        .unwrap();
        broker = Some(process);
        Some(format!(
            "kind = \"servicebus\"\nprefetch = 8\nconnection-string = {{ file = {:?} }}",
            connection.display().to_string()
        ))
    } else {
        assert_eq!(scale.replicas, 1, "replicas share a queue through a broker");
        None
    };
    let configs: Vec<(PathBuf, Config)> = (0..scale.replicas)
        .map(|r| {
            let admin = free_addr();
            saga_config(
                &dir.path().join(format!("replica-{r}")),
                &partners,
                transport.as_deref(),
                admin,
            )
        })
        .collect();
    let loaded = &configs[0].1;
    let database = match &broker {
        Some(broker) => broker.database(),
        None => {
            std::fs::create_dir_all(&loaded.data_dir).unwrap();
            loaded.data_dir.join("queue.sqlite3")
        }
    };
    send_contacts(&database, loaded, scale.contacts).await;

    let started = Instant::now();
    let mut replicas: Vec<Replica> = configs
        .iter()
        .map(|(path, _)| {
            let dir = path.parent().unwrap();
            Replica::start(path.clone(), dir.join("host.log"), dir.join("mdm.wasm"))
        })
        .collect();
    let new_mdm = next_version(&support::component_bytes("mdm"), "mid-run");
    let mut incidents = Vec::new();
    for (threshold, step) in plan(&scale) {
        while partners.calls() < threshold {
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "{name}: no progress before {step:?} at {threshold} calls (now {})",
                partners.calls()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match step {
            Step::Kill(replica) => {
                replicas[replica].kill_and_restart();
                incidents.push(Incident::HostKilled(Instant::now()));
            }
            Step::RestartBroker => {
                let killed = Instant::now();
                broker.as_mut().expect("a broker").restart();
                incidents.push(Incident::BrokerRestarted(killed, Instant::now()));
            }
            Step::Rollout(replica) => replace(&replicas[replica].mdm_component, &new_mdm),
        }
    }

    // Wait until every contact has an end state and every queue is empty, or until nothing is
    // queued and nothing has changed for a while (then the books below say what is missing).
    let mut last = (0, Instant::now());
    let books = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let queue = EmbeddedQueue::open(&database, &loaded.queue_settings()).unwrap();
        let mut busy = 0;
        for queue_name in SAGA_QUEUES {
            let depth = queue.queue_depth(queue_name).await.unwrap();
            busy += depth.active + depth.scheduled;
        }
        let books = keep_books(&queue, &partners, &incidents, started).await;
        let ended = books.completed.len() + books.compensated.len() + books.dead_lettered.len();
        if busy == 0 && ended >= scale.contacts {
            break books;
        }
        if ended != last.0 {
            last = (ended, Instant::now());
        } else if busy == 0 && last.1.elapsed() > Duration::from_secs(20) {
            break books;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "{name}: after {:?}, {ended} of {} contacts ended, {busy} messages queued; logs:\n{}",
            started.elapsed(),
            scale.contacts,
            log_tails(&replicas)
        );
    };
    let elapsed = started.elapsed();
    // Every replica serves the new MDM version: the rollout reached each one, and a replica
    // killed after its rollout started on the new file.
    let new_version = sagahost::component::cache::content_hash(&new_mdm);
    for (path, config) in &configs {
        let admin = &config.admin.as_ref().expect("an admin endpoint").listen;
        let text = reqwest::get(format!("http://{admin}/admin/partners"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let status: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mdm = status
            .as_array()
            .and_then(|partners| partners.iter().find(|p| p["partner"] == "mdm"))
            .unwrap_or_else(|| panic!("{name}: no mdm in {status}"));
        assert_eq!(
            mdm["version"],
            new_version,
            "{name}: {} does not serve the rolled-out MDM version: {mdm}",
            path.display()
        );
    }
    for replica in &mut replicas {
        assert!(
            replica.stop(),
            "{name}: {} did not shut down gracefully",
            replica.config.display()
        );
    }
    drop(broker);

    let every: BTreeSet<usize> = (0..scale.contacts).collect();
    let ended: BTreeSet<usize> = books
        .completed
        .iter()
        .chain(&books.compensated)
        .chain(books.dead_lettered.keys())
        .copied()
        .collect();
    let lost: Vec<&usize> = every.difference(&ended).collect();
    // A failed undo of a later step must not have kept the MDM's step from being undone. Checked
    // once the run is quiet: while it runs, the MDM's undo may still be on its way.
    for (contact, undo) in &books.failed_undos {
        assert!(
            books.compensated.contains(contact) || books.dead_lettered.contains_key(contact),
            "contact {contact}: the undo `{undo}` failed and the MDM record was never deleted"
        );
    }
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for reason in books.dead_lettered.values() {
        *reasons.entry(reason.as_str()).or_default() += 1;
    }
    println!(
        "faults/{name} (seed {}): {} contacts, hosts: {}, in {elapsed:.0?}; {} host kills, {} broker restarts, \
         MDM rolled out host by host; faults injected {:?}; end states: {} completed, {} compensated, \
         {} dead-lettered {reasons:?}; failed undos the compensation went past {:?}; lost {}; \
         repeated calls by cause {:?}",
        seed(),
        scale.contacts,
        scale.replicas,
        incidents
            .iter()
            .filter(|i| matches!(i, Incident::HostKilled(_)))
            .count(),
        incidents
            .iter()
            .filter(|i| matches!(i, Incident::BrokerRestarted(..)))
            .count(),
        books.faults,
        books.completed.len(),
        books.compensated.len(),
        books.dead_lettered.len(),
        books.failed_undos,
        lost.len(),
        books.repeats,
    );
    let history = |contact: usize| -> Vec<String> {
        let mut seen = Vec::new();
        for (partner, calls) in [
            ("mdm", partners.mdm.calls()),
            ("writeback", partners.writeback.calls()),
            ("erp", partners.erp.calls()),
        ] {
            for call in calls {
                if contact_of(&call.body).or_else(|| contact_of(&call.path)) == Some(contact) {
                    let at = call.at.duration_since(started);
                    seen.push(format!("{at:.1?} {partner} {} {:?}", call.method, call.fault));
                }
            }
        }
        seen.sort();
        seen
    };
    let incident_times: Vec<String> = incidents
        .iter()
        .map(|i| match i {
            Incident::HostKilled(at) => format!("kill {:.1?}", at.duration_since(started)),
            Incident::BrokerRestarted(at, _) => format!("broker {:.1?}", at.duration_since(started)),
        })
        .collect();
    assert!(
        lost.is_empty(),
        "{name}: contacts with no end state: {:?}; incidents at {incident_times:?}",
        lost.iter().map(|c| (c, history(**c))).collect::<Vec<_>>(),
    );
    assert!(
        books.conflicts.is_empty(),
        "{name}: contacts that reached more than one end state: {:?}",
        books.conflicts
    );
    assert_eq!(
        books.repeats.get("unexplained"),
        None,
        "{name}: {:?}; first unexplained: {:?}; incidents at {incident_times:?}",
        books.repeats,
        books.unexplained
    );
    // The faults really happened, and the saga still got through most of the time.
    assert!(books.faults.len() >= 5, "{name}: {:?}", books.faults);
    assert!(!books.compensated.is_empty() && books.completed.len() > scale.contacts / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_queue_with_faulty_partners_kills_and_a_reload_loses_nothing() {
    run_scenario("embedded", one_host(0), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_bus_with_faulty_partners_kills_and_broker_restarts_loses_nothing() {
    run_scenario("servicebus", one_host(1), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_competing_through_kills_a_broker_restart_and_a_rollout_lose_nothing() {
    run_scenario("replicas", three_replicas(), true).await;
}
