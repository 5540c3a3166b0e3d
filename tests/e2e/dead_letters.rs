//! `sagahost dead-letters` and the admin API's dead-letter routes, the same on both transports:
//! the embedded queue, and Service Bus over AMQP against `sagahost-broker` on loopback. Dead
//! letters are seeded straight into the store (the embedded queue the host or the broker uses),
//! then the real binary (or a real host's admin endpoint) lists, shows, redrives and purges them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output as ProcessOutput, Stdio};
use std::time::{Duration, Instant};

use sagahost::config::Config;
use sagahost::saga::envelope::{COMPONENT_VERSION_PROPERTY, PARTNER_PROPERTY, SAGA_PROPERTY};
use sagahost::saga::state::SagaState;
use sagahost::service::{Host, saga_state_keys};
use sagahost_broker::{self as broker, BrokerConfig};
use sagahost_transport::dead_letters::DeadLetterQueues;
use sagahost_transport::embedded::EmbeddedQueue;
use sagahost_transport::{OutgoingMessage, Output, Settlement, Transport};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::saga::{Kind, contact_body};
use crate::support;

/// The queue the dead letters are on: one the config names (a route) but no partner reads, so
/// the host in the admin test leaves redriven messages where they land.
const PARKED: &str = "parked";

/// A config over `kind` and the store behind it (the host's embedded queue, or the broker's).
struct Setup {
    config: PathBuf,
    store: EmbeddedQueue,
    broker: Option<CancellationToken>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(broker) = &self.broker {
            broker.cancel();
        }
    }
}

async fn set_up(dir: &Path, kind: Kind, admin: bool) -> Setup {
    let mut text = format!(
        "data-dir = {:?}\n[partners.mdm]\ncomponent = {:?}\nqueue = \"contacts\"\nroutes = {{ next = \"{PARKED}\" }}\n",
        dir.join("data").display().to_string(),
        support::component("mdm").display().to_string(),
    );
    if admin {
        text.push_str("[admin]\nlisten = \"127.0.0.1:0\"\n");
    }
    let config = dir.join("sagahost.toml");
    let (store, broker) = match kind {
        Kind::Embedded => {
            std::fs::write(&config, &text).unwrap();
            let loaded = Config::load(&config).unwrap().config;
            let store = EmbeddedQueue::open(&loaded.data_dir.join("queue.sqlite3"), &loaded.queue_settings()).unwrap();
            (store, None)
        }
        Kind::ServiceBus => {
            std::fs::write(&config, &text).unwrap();
            let queues = Config::load(&config).unwrap().config.queue_settings();
            let store = EmbeddedQueue::open(&dir.join("broker.sqlite3"), &queues).unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let stop = CancellationToken::new();
            let served = store.clone();
            let settings = BrokerConfig {
                lock_duration: Duration::from_secs(10),
                ..BrokerConfig::default()
            };
            let serving = stop.clone();
            tokio::spawn(async move { broker::serve_with(listener, served, settings, serving).await });
            std::fs::write(
                dir.join("connection-string"),
                format!(
                    "Endpoint=sb://{addr};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
                ),
            )
            .unwrap();
            std::fs::write(dir.join("state-key"), "0123456789abcdef0123456789abcdef-state").unwrap();
            text.push_str(&format!(
                "[transport]\nkind = \"servicebus\"\nconnection-string = {{ file = {:?} }}\n\
                 [saga-state]\nsigning-key = \"k1\"\nkeys = {{ k1 = {{ file = {:?} }} }}\n",
                dir.join("connection-string").display().to_string(),
                dir.join("state-key").display().to_string(),
            ));
            std::fs::write(&config, &text).unwrap();
            (store, Some(stop))
        }
    };
    Setup { config, store, broker }
}

/// One dead letter to seed: its message id, reason, and the partner named on it.
struct Seed<'a> {
    id: String,
    reason: &'a str,
    partner: &'a str,
}

/// Sends each message to [`PARKED`] with sealed saga state (attempt 3) and dead-letters it as a
/// host does, many at a time.
async fn seed(setup: &Setup, seeds: &[Seed<'_>]) {
    let config = Config::load(&setup.config).unwrap().config;
    let keys = saga_state_keys(&config).unwrap();
    let saga = SagaState {
        attempt: 3,
        ..SagaState::start("saga-1")
    };
    for chunk in seeds.chunks(1000) {
        let outputs = chunk
            .iter()
            .map(|seed| {
                let mut message = OutgoingMessage {
                    message_id: seed.id.clone(),
                    content_type: Some("application/json".into()),
                    body: contact_body(),
                    properties: vec![(SAGA_PROPERTY.into(), serde_json::to_string(&saga).unwrap())],
                    ..OutgoingMessage::default()
                };
                keys.seal(&mut message);
                Output {
                    queue: PARKED.into(),
                    message,
                }
            })
            .collect();
        setup.store.send(outputs).await.unwrap();
        let mut left = chunk.len();
        while left > 0 {
            let received = setup.store.receive(PARKED, left, Duration::ZERO).await.unwrap();
            left -= received.len();
            let settles = received.iter().map(|message| {
                let seed = chunk.iter().find(|s| s.id == message.message_id).unwrap();
                let settlement = Settlement::DeadLetter {
                    reason: seed.reason.into(),
                    description: format!("{} failed", seed.id),
                    properties: vec![
                        (PARTNER_PROPERTY.into(), seed.partner.into()),
                        (COMPONENT_VERSION_PROPERTY.into(), "0123abcd".into()),
                    ],
                };
                setup.store.settle(message, settlement, Vec::new())
            });
            for settled in futures::future::join_all(settles).await {
                settled.unwrap();
            }
        }
    }
}

/// Three `RetriesExhausted` (a1–a3) and two `DecodeFailed` (b1, b2) from MDM, and an
/// `ErpRejected` (c1) from ERP, in that order.
fn six_seeds() -> Vec<Seed<'static>> {
    [
        ("a1", "RetriesExhausted", "mdm"),
        ("a2", "RetriesExhausted", "mdm"),
        ("a3", "RetriesExhausted", "mdm"),
        ("b1", "DecodeFailed", "mdm"),
        ("b2", "DecodeFailed", "mdm"),
        ("c1", "ErpRejected", "erp"),
    ]
    .into_iter()
    .map(|(id, reason, partner)| Seed {
        id: id.into(),
        reason,
        partner,
    })
    .collect()
}

fn dead_letters_command(config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sagahost"));
    command
        .args(["dead-letters", "--config"])
        .arg(config)
        .args(args)
        .stdin(Stdio::null());
    command
}

/// Runs `sagahost dead-letters ARGS` off the async runtime (the broker runs on it).
async fn run(config: &Path, args: &[&str]) -> ProcessOutput {
    let mut command = dead_letters_command(config, args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn stdout(output: &ProcessOutput) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &ProcessOutput) -> String {
    assert!(!output.status.success(), "should have failed");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The sequence numbers a `list` printed, in order.
fn sequences(listing: &str) -> Vec<i64> {
    listing
        .lines()
        .filter_map(|line| line.split_whitespace().next()?.parse().ok())
        .collect()
}

async fn active_ids(store: &EmbeddedQueue) -> Vec<String> {
    store
        .peek(PARKED, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.message_id)
        .collect()
}

async fn the_cli_lists_shows_redrives_and_purges(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let setup = set_up(dir.path(), kind, false).await;
    seed(&setup, &six_seeds()).await;
    let config = &setup.config;

    let all = stdout(&run(config, &["list", "--queue", PARKED]).await);
    let numbers = sequences(&all);
    assert_eq!(numbers.len(), 6, "{all}");
    assert!(all.contains("ErpRejected") && all.contains("erp"), "{all}");
    let decode = stdout(&run(config, &["list", "--queue", PARKED, "--reason", "DecodeFailed"]).await);
    assert_eq!(sequences(&decode).len(), 2, "{decode}");
    let erp = stdout(
        &run(
            config,
            &["list", "--queue", PARKED, "--partner", "erp", "--since", "1h"],
        )
        .await,
    );
    assert_eq!(sequences(&erp).len(), 1, "{erp}");
    let later = stdout(&run(config, &["list", "--queue", PARKED, "--since", "2099-01-01T00:00:00Z"]).await);
    assert!(later.contains("no dead letters"), "{later}");
    let first = stdout(&run(config, &["list", "--queue", PARKED, "--limit", "2"]).await);
    assert_eq!(sequences(&first), numbers[..2]);
    let next = first
        .lines()
        .find_map(|line| line.strip_prefix("next page: --from "))
        .expect("a next page");
    let rest = stdout(&run(config, &["list", "--queue", PARKED, "--from", next]).await);
    assert_eq!(sequences(&rest), numbers[2..]);

    let a1 = numbers[0].to_string();
    let shown = stdout(&run(config, &["show", "--queue", PARKED, &a1]).await);
    for expected in [
        "reason:         RetriesExhausted",
        "description:    a1 failed",
        "partner:        mdm",
        "version:        0123abcd",
        "\"MessageName\": \"Create\"",
    ] {
        assert!(shown.contains(expected), "{expected} in {shown}");
    }
    let missing = stderr(&run(config, &["show", "--queue", PARKED, "999999"]).await);
    assert!(missing.contains("no dead letter 999999"), "{missing}");
    let unknown = stderr(&run(config, &["list", "--queue", "nope"]).await);
    assert!(
        unknown.contains("`nope` is not in") && unknown.contains(PARKED),
        "{unknown}"
    );
    let unsaid = stderr(&run(config, &["redrive", "--queue", PARKED]).await);
    assert!(unsaid.contains("say which"), "{unsaid}");

    let dry = stdout(
        &run(
            config,
            &[
                "redrive",
                "--queue",
                PARKED,
                "--reason",
                "RetriesExhausted",
                "--dry-run",
            ],
        )
        .await,
    );
    assert!(dry.contains("would redrive 3"), "{dry}");
    assert!(active_ids(&setup.store).await.is_empty(), "a dry run moves nothing");

    // One by sequence number, its attempts started again and sealed with the host's keys.
    stdout(&run(config, &["redrive", "--queue", PARKED, &a1, "--reset-attempts"]).await);
    let back = setup.store.peek(PARKED, 10).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].message_id, "a1");
    let state = &back[0].properties.iter().find(|(n, _)| n == SAGA_PROPERTY).unwrap().1;
    assert_eq!(serde_json::from_str::<SagaState>(state).unwrap().attempt, 1);
    let keys = saga_state_keys(&Config::load(config).unwrap().config).unwrap();
    assert!(keys.verify(&back[0].properties, &back[0].body).is_ok());
    assert!(
        back[0].properties.iter().all(|(name, _)| name != PARTNER_PROPERTY),
        "the dead-letter record stays behind"
    );

    // In bulk, by filter, with a limit; the attempt counter kept.
    let limited = stdout(
        &run(
            config,
            &[
                "redrive",
                "--queue",
                PARKED,
                "--reason",
                "RetriesExhausted",
                "--limit",
                "1",
            ],
        )
        .await,
    );
    assert!(limited.contains("redrove 1 dead letters"), "{limited}");
    assert_eq!(active_ids(&setup.store).await.len(), 2);

    // A purge asks first, and with no terminal to ask on it refuses.
    let asked = stderr(&run(config, &["purge", "--queue", PARKED, "--reason", "DecodeFailed"]).await);
    assert!(
        asked.contains("remove 2 dead letters") && asked.contains("--yes"),
        "{asked}"
    );
    let purged = stdout(
        &run(
            config,
            &["purge", "--queue", PARKED, "--reason", "DecodeFailed", "--yes"],
        )
        .await,
    );
    assert!(purged.contains("purged 2 dead letters"), "{purged}");

    let left: BTreeSet<String> = setup
        .store
        .peek_dead_letters(PARKED, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.message.message_id)
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains("c1"), "{left:?}");
    assert_eq!(active_ids(&setup.store).await.len(), 2);
}

/// 10,000 dead letters redriven with `--all`, SIGKILLed partway, then run again: every message
/// is back on its queue exactly once.
async fn a_bulk_redrive_killed_partway_loses_nothing_and_sends_nothing_twice(kind: Kind) {
    const COUNT: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let setup = set_up(dir.path(), kind, false).await;
    let seeds: Vec<Seed> = (0..COUNT)
        .map(|i| Seed {
            id: format!("m-{i:05}"),
            reason: "RetriesExhausted",
            partner: "mdm",
        })
        .collect();
    seed(&setup, &seeds).await;

    let mut redrive = dead_letters_command(&setup.config, &["redrive", "--queue", PARKED, "--all"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let depth = setup.store.queue_depth(PARKED).await.unwrap();
        if depth.active >= 1000 {
            break;
        }
        assert!(Instant::now() < deadline, "the redrive made no progress: {depth:?}");
        assert!(
            redrive.try_wait().unwrap().is_none(),
            "the redrive ended before it was killed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redrive.kill().unwrap();
    redrive.wait().unwrap();

    // Each dead letter moved or did not: nothing is in both places, nothing is missing.
    let wait_unlocked = Instant::now() + Duration::from_secs(30);
    let (moved, dead) = loop {
        let moved = active_ids(&setup.store).await;
        let dead = setup.store.queue_depth(PARKED).await.unwrap().dead_lettered as usize;
        if moved.len() + dead == COUNT || Instant::now() > wait_unlocked {
            break (moved, dead);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let unique: BTreeSet<&String> = moved.iter().collect();
    assert_eq!(unique.len(), moved.len(), "a dead letter was sent twice");
    assert_eq!(moved.len() + dead, COUNT, "{} moved, {dead} still dead", moved.len());
    assert!(dead > 0, "the kill came after the end; nothing was interrupted");

    // The locks the killed run held run out (10 s on the broker); a second run finishes.
    let finished = stdout(&run(&setup.config, &["redrive", "--queue", PARKED, "--all"]).await);
    assert!(finished.contains("redrove"), "{finished}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while setup.store.queue_depth(PARKED).await.unwrap().dead_lettered > 0 {
        assert!(Instant::now() < deadline, "dead letters left after the second run");
        stdout(&run(&setup.config, &["redrive", "--queue", PARKED, "--all"]).await);
    }
    let moved = active_ids(&setup.store).await;
    let unique: BTreeSet<&String> = moved.iter().collect();
    assert_eq!((moved.len(), unique.len()), (COUNT, COUNT));
}

/// A response's status and JSON body.
async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|err| panic!("{status} {text}: {err}"));
    (status, body)
}

/// The admin API's dead-letter routes on a running host, and `/readyz` asking the transport.
async fn the_admin_api_lists_shows_redrives_and_purges(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let setup = set_up(dir.path(), kind, true).await;
    seed(&setup, &six_seeds()).await;
    let config = Config::load(&setup.config).unwrap().config;
    let host = Host::start(&config).await.unwrap();
    let admin = format!("http://{}", host.admin_addr.unwrap());
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        async move {
            let response = client.get(path).send().await.unwrap();
            answer(response).await
        }
    };
    let post = |path: String, body: Value| {
        let client = client.clone();
        async move {
            let response = client
                .post(path)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            answer(response).await
        }
    };

    let ready = reqwest::get(format!("{admin}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(ready.text().await.unwrap().contains("the transport answers"));

    let letters = format!("{admin}/admin/dead-letters/{PARKED}");
    let (status, all) = get(letters.clone()).await;
    assert_eq!(status, 200, "{all}");
    let numbers: Vec<i64> = all["letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers.len(), 6, "{all}");
    assert_eq!(all["next"], Value::Null);
    let (_, page) = get(format!("{letters}?reason=DecodeFailed&limit=1")).await;
    assert_eq!(page["letters"][0]["message-id"], "b1", "{page}");
    let next = page["next"].as_i64().expect("a next page");
    let (_, rest) = get(format!("{letters}?reason=DecodeFailed&from={next}")).await;
    assert_eq!(rest["letters"][0]["message-id"], "b2", "{rest}");
    assert_eq!(rest["next"], Value::Null);
    let (_, erp) = get(format!("{letters}?partner=erp&since=1h")).await;
    assert_eq!(erp["letters"].as_array().unwrap().len(), 1, "{erp}");
    let (status, bad) = get(format!("{letters}?since=yesterday-ish")).await;
    assert_eq!(status, 400, "{bad}");
    let (status, unknown) = get(format!("{admin}/admin/dead-letters/nope")).await;
    assert_eq!(status, 404);
    assert!(unknown["error"].as_str().unwrap().contains(PARKED), "{unknown}");

    let (status, detail) = get(format!("{letters}/{}", numbers[0])).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["reason"], "RetriesExhausted");
    assert_eq!(detail["partner"], "mdm");
    assert_eq!(detail["version"], "0123abcd");
    assert_eq!(detail["decoded"]["MessageName"], "Create", "{detail}");

    let (status, redriven) = post(format!("{letters}/{}/redrive", numbers[0]), Value::Null).await;
    assert_eq!(status, 200, "{redriven}");
    let (status, _) = post(format!("{letters}/{}/redrive", numbers[0]), Value::Null).await;
    assert_eq!(status, 404, "redriven already");
    let retries = json!({ "reason": "RetriesExhausted" });
    let (_, dry) = post(
        format!("{letters}/redrive"),
        json!({ "reason": "RetriesExhausted", "dry-run": true }),
    )
    .await;
    assert_eq!(dry["matched"], 2, "{dry}");
    let (status, bulk) = post(format!("{letters}/redrive"), retries).await;
    assert_eq!((status, bulk["redriven"].as_u64()), (200, Some(2)), "{bulk}");

    let decode = json!({ "reason": "DecodeFailed" });
    let (status, unconfirmed) = post(format!("{letters}/purge"), decode).await;
    assert_eq!(status, 400);
    assert!(
        unconfirmed["error"].as_str().unwrap().contains("would remove 2"),
        "{unconfirmed}"
    );
    let (status, purged) = post(
        format!("{letters}/purge"),
        json!({ "reason": "DecodeFailed", "confirm": true }),
    )
    .await;
    assert_eq!((status, purged["purged"].as_u64()), (200, Some(2)), "{purged}");
    let deleted = client.delete(format!("{letters}/{}", numbers[5])).send().await.unwrap();
    assert_eq!(deleted.status(), 200);

    // Over AMQP a completion reaches the broker just after the client sent it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !setup.store.peek_dead_letters(PARKED, 0, 10).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "dead letters left after the purge");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut back = active_ids(&setup.store).await;
    back.sort();
    assert_eq!(back, ["a1", "a2", "a3"]);

    if let Some(broker) = &setup.broker {
        // With the broker gone, readiness says so instead of trusting the connection made at
        // start-up.
        broker.cancel();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let ready = reqwest::get(format!("{admin}/readyz")).await.unwrap();
        assert_eq!(ready.status(), 503, "{}", ready.text().await.unwrap());
    }
    host.shutdown().await;
}

on_both_transports!(
    the_cli_lists_shows_redrives_and_purges,
    a_bulk_redrive_killed_partway_loses_nothing_and_sends_nothing_twice,
    the_admin_api_lists_shows_redrives_and_purges,
);
