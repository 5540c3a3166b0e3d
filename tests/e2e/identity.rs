//! Key Vault secrets through `sagahost run`: the host signs in with its managed identity (an
//! App Service–style endpoint on loopback), reads the ERP partner's token from a Key Vault
//! (also on loopback, with the bearer challenge), and keeps it fresh. A rotated secret takes
//! effect with no restart and no lost message; a vault outage keeps the last value and counts
//! the failures; a vault that cannot be reached at startup stops the start, naming the secret.
//! Azure itself cannot run here: both endpoints speak its documented protocols.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sagahost::config::Config;
use sagahost_transport::embedded::EmbeddedQueue;
use sagahost_transport::{OutgoingMessage, Output, Transport};

use crate::partners::{Partner, Received};
use crate::saga::{Servers, config, contacts, write_config};
use crate::support;

/// The header the platform gives the host (App Service's `IDENTITY_HEADER`).
const IDENTITY_HEADER: &str = "identity-header-5f0c2e";
const VAULT_TOKEN: &str = "vault-access-token-8a1d";

/// The vault's state: the secret's current value, and whether it answers at all.
#[derive(Clone)]
struct Vault {
    value: Arc<Mutex<String>>,
    down: Arc<Mutex<bool>>,
}

async fn start_vault(vault: Vault) -> Partner {
    Partner::start(move |request: &Received, _| {
        if *vault.down.lock().unwrap() {
            return (503, Vec::new(), "maintenance".into());
        }
        let Some(bearer) = request.header("authorization") else {
            // The challenge names the resource to get a token for: this vault's own host.
            let host = request.header("host").unwrap_or_default().to_owned();
            let challenge = format!(
                "Bearer authorization=\"https://login.microsoftonline.com/tenant\", resource=\"http://{host}\""
            );
            return (401, vec![("www-authenticate", challenge)], String::new());
        };
        assert_eq!(bearer, format!("Bearer {VAULT_TOKEN}"));
        assert_eq!(request.path, "/secrets/erp-token");
        let value = vault.value.lock().unwrap().clone();
        let body = format!(
            "{{\"value\":\"{value}\",\"id\":\"{host}/secrets/erp-token/v1\"}}",
            host = "kv"
        );
        (200, vec![("content-type", "application/json".into())], body)
    })
    .await
}

/// An App Service–style managed identity endpoint.
async fn start_identity() -> Partner {
    Partner::start(|request: &Received, _| {
        assert_eq!(request.header("x-identity-header"), Some(IDENTITY_HEADER));
        let expires_on = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3600;
        let body = format!("{{\"access_token\":\"{VAULT_TOKEN}\",\"expires_on\":\"{expires_on}\"}}");
        (200, vec![("content-type", "application/json".into())], body)
    })
    .await
}

/// The saga config with the ERP token from `vault`, read again every second.
fn vault_config(dir: &std::path::Path, servers: &Servers, vault: &Partner) -> std::path::PathBuf {
    let mut table = config(dir, servers);
    let secrets = format!(
        "erp-token = {{ key-vault = {{ vault = \"{}\", name = \"erp-token\", refresh-seconds = 1 }} }}",
        vault.origin()
    );
    table["partners"]["erp"].as_table_mut().unwrap().insert(
        "secrets".into(),
        toml::from_str::<toml::Table>(&secrets).unwrap().into(),
    );
    table.insert(
        "admin".into(),
        toml::from_str::<toml::Table>("listen = \"127.0.0.1:0\"")
            .unwrap()
            .into(),
    );
    write_config(dir, &table)
}

fn identity_env(identity: &Partner) -> Vec<(&'static str, String)> {
    vec![
        ("IDENTITY_ENDPOINT", format!("{}/msi/token", identity.origin())),
        ("IDENTITY_HEADER", IDENTITY_HEADER.to_owned()),
    ]
}

async fn send_contact(queue: &EmbeddedQueue, index: usize) {
    let body = contacts(index + 1).pop().unwrap();
    let message = OutgoingMessage {
        content_type: Some("application/json".into()),
        body,
        ..OutgoingMessage::default()
    };
    queue
        .send(vec![Output {
            queue: "contacts".into(),
            message,
        }])
        .await
        .unwrap();
}

/// Waits until the ERP has had `count` requests; returns the bearer tokens they carried.
async fn erp_tokens(erp: &Partner, count: usize) -> Vec<String> {
    let started = Instant::now();
    loop {
        let received = erp.received();
        if received.len() >= count {
            return received
                .iter()
                .map(|request| request.header("authorization").unwrap_or_default().to_owned())
                .collect();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "only {} ERP requests",
            received.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_vault_secret_is_read_with_the_managed_identity_rotated_live_and_kept_through_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let servers = Servers::healthy().await;
    let vault = Vault {
        value: Arc::new(Mutex::new("erp-secret-v1".into())),
        down: Arc::default(),
    };
    let vault_server = start_vault(vault.clone()).await;
    let identity = start_identity().await;
    let config_path = vault_config(dir.path(), &servers, &vault_server);
    let loaded = Config::load(&config_path).unwrap().config;
    std::fs::create_dir_all(&loaded.data_dir).unwrap();
    let queue_path = loaded.data_dir.join("queue.sqlite3");
    let queue = EmbeddedQueue::open(&queue_path, &loaded.queue_settings()).unwrap();

    let log = dir.path().join("host.log");
    let mut host = support::start_host_logging(&config_path, "info", &log, &identity_env(&identity));
    send_contact(&queue, 0).await;
    assert_eq!(erp_tokens(&servers.erp, 1).await[0], "Bearer erp-secret-v1");

    // Rotated in the vault: the next refresh picks it up, with no restart.
    *vault.value.lock().unwrap() = "erp-secret-v2".into();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    send_contact(&queue, 1).await;
    assert_eq!(erp_tokens(&servers.erp, 2).await[1], "Bearer erp-secret-v2");

    // The vault goes down: the last value stays in use, and the failures are counted.
    *vault.down.lock().unwrap() = true;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    send_contact(&queue, 2).await;
    assert_eq!(erp_tokens(&servers.erp, 3).await[2], "Bearer erp-secret-v2");
    let logs = std::fs::read_to_string(&log).unwrap();
    let admin = logs
        .lines()
        .find(|line| line.contains("admin endpoint listening"))
        .and_then(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .and_then(|line| line["fields"]["addr"].as_str().map(str::to_owned))
        .expect("the admin address in the log");
    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    host.kill().unwrap();
    host.wait().unwrap();
    let failures = metrics
        .lines()
        .find(|line| line.starts_with("sagahost_secret_refresh_failures_total{") && line.contains("erp-token"))
        .unwrap_or_else(|| panic!("no refresh-failure counter:\n{metrics}"));
    assert!(!failures.ends_with(" 0"), "{failures}");
    for secret in ["erp-secret-v1", "erp-secret-v2", VAULT_TOKEN, IDENTITY_HEADER] {
        assert!(!logs.contains(secret), "`{secret}` is in the log");
        assert!(!metrics.contains(secret), "`{secret}` is in the metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_that_cannot_be_reached_at_startup_stops_the_start_naming_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let servers = Servers::healthy().await;
    let vault = Vault {
        value: Arc::new(Mutex::new("never-read".into())),
        down: Arc::new(Mutex::new(true)),
    };
    let vault_server = start_vault(vault).await;
    let identity = start_identity().await;
    let config_path = vault_config(dir.path(), &servers, &vault_server);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sagahost"))
        .args(["run", "--config"])
        .arg(&config_path)
        .envs(identity_env(&identity))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("partners.erp.secrets.erp-token") && stderr.contains(&vault_server.origin()),
        "{stderr}"
    );
}
