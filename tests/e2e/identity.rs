//! Key Vault secrets through `sagahost run`: the host signs in with its managed identity (an
//! App Service–style endpoint on loopback), reads the ERP partner's token from a Key Vault
//! (also on loopback, with the bearer challenge), and keeps it fresh. A rotated secret takes
//! effect with no restart and no lost message; a vault outage keeps the last value and counts
//! the failures; a vault that cannot be reached at startup stops the start, naming the secret.
//! A token endpoint in an outage makes the step retry, never a dead letter. And the host
//! reaches Service Bus with `namespace` and an Entra ID token instead of a
//! connection string. Azure itself cannot run here: the endpoints speak its documented
//! protocols, and the broker stands in for Entra ID by accepting one configured token.

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

/// The host reaches Service Bus (here `sagahost broker`, which stands in for Entra ID by
/// accepting one configured token) with `namespace` and an app's client secret from
/// `[identity]`: no connection string anywhere, and the saga runs to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_reaches_service_bus_with_an_entra_id_token_and_no_connection_string() {
    use sagahost::saga::Verdict;
    use sagahost::service::Host;
    use sagahost_broker::{self as broker, BearerToken, BrokerConfig};
    use tokio_util::sync::CancellationToken;

    const SERVICE_BUS_TOKEN: &str = "service-bus-token-41c9";
    const CLIENT_SECRET: &str = "host-client-secret-0e57";
    let dir = tempfile::tempdir().unwrap();
    let servers = Servers::healthy().await;
    let issuer = Partner::start(|request: &Received, _| {
        assert!(
            request.path.ends_with("/tenant-1/oauth2/v2.0/token"),
            "{}",
            request.path
        );
        assert!(
            request.body.contains(&format!("client_secret={CLIENT_SECRET}")),
            "{}",
            request.body
        );
        assert!(request.body.contains("servicebus.azure.net"), "{}", request.body);
        let body = format!("{{\"access_token\":\"{SERVICE_BUS_TOKEN}\",\"expires_in\":3600}}");
        (200, vec![("content-type", "application/json".into())], body)
    })
    .await;

    let mut table = config(dir.path(), &servers);
    table.remove("webhook");
    let named = Config::load(&write_config(dir.path(), &table)).unwrap().config;
    let store = EmbeddedQueue::open(&dir.path().join("broker.sqlite3"), &named.queue_settings()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let broker_config = BrokerConfig {
        bearer_tokens: vec![BearerToken::new(SERVICE_BUS_TOKEN)],
        ..BrokerConfig::default()
    };
    let stop = CancellationToken::new();
    tokio::spawn(broker::serve_with(listener, store.clone(), broker_config, stop.clone()));

    std::fs::write(dir.path().join("client-secret"), CLIENT_SECRET).unwrap();
    let transport =
        format!("kind = \"servicebus\"\nnamespace = \"amqp://{address}\"\ncredential = \"client-secret\"\n");
    let identity = format!(
        "tenant-id = \"tenant-1\"\nclient-id = \"sagahost\"\nclient-secret = {{ file = \"client-secret\" }}\n\
         authority-host = \"{}\"\n",
        issuer.origin()
    );
    table.insert(
        "transport".into(),
        toml::from_str::<toml::Table>(&transport).unwrap().into(),
    );
    table.insert(
        "identity".into(),
        toml::from_str::<toml::Table>(&identity).unwrap().into(),
    );
    let config = Config::load(&write_config(dir.path(), &table)).unwrap().config;
    let host = Host::start(&config).await.unwrap();
    let mut events = host.subscribe();
    send_contact(&store, 0).await;
    let started = Instant::now();
    let end = loop {
        let event = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .expect("the saga ends within 30 s")
            .unwrap();
        if event.partner == "erp" {
            break event;
        }
        assert!(started.elapsed() < Duration::from_secs(30));
    };
    host.shutdown().await;
    stop.cancel();
    assert_eq!(end.verdict, Verdict::Completed);
    assert!(!issuer.received().is_empty(), "the host asked Entra ID for a token");
    let config_text = std::fs::read_to_string(dir.path().join("sagahost.toml")).unwrap();
    assert!(
        !config_text.contains("SharedAccessKey"),
        "no connection string: {config_text}"
    );
}

/// The saga config (no webhook) whose ERP token is an `oauth2` secret from `issuer`'s token
/// endpoint, with quick retries, at most `max_attempts`.
fn erp_with_token_endpoint(dir: &std::path::Path, servers: &Servers, issuer: &Partner, max_attempts: u32) -> Config {
    let mut table = config(dir, servers);
    table.remove("webhook");
    std::fs::write(dir.join("erp-client-secret"), "erp-client-secret").unwrap();
    let secrets = format!(
        "erp-token = {{ oauth2 = {{ token-url = \"{}/token\", client-id = \"erp\", \
         client-secret = {{ file = \"erp-client-secret\" }}, scope = \"api://erp/.default\" }} }}",
        issuer.origin()
    );
    let retry = format!("initial-delay-ms = 50\nmax-delay-ms = 100\nmax-attempts = {max_attempts}");
    let erp = table["partners"]["erp"].as_table_mut().unwrap();
    erp.insert(
        "secrets".into(),
        toml::from_str::<toml::Table>(&secrets).unwrap().into(),
    );
    erp.insert("retry".into(), toml::from_str::<toml::Table>(&retry).unwrap().into());
    Config::load(&write_config(dir, &table)).unwrap().config
}

/// A token endpoint that is down is a transient failure of the step: the host retries the
/// step (whatever the component would make of the failed request) and the saga completes
/// once the endpoint is back; nothing is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_outage_retries_the_step_and_never_dead_letters() {
    use sagahost::saga::Verdict;
    use sagahost::service::Host;

    let dir = tempfile::tempdir().unwrap();
    let servers = Servers::healthy().await;
    // The first two token requests fail, as an identity provider in an outage would.
    let issuer = Partner::start(|_: &Received, index| {
        if index < 2 {
            return (503, Vec::new(), "{\"error\":\"temporarily_unavailable\"}".into());
        }
        let body = "{\"access_token\":\"erp-access-token\",\"expires_in\":3600}".to_owned();
        (200, vec![("content-type", "application/json".into())], body)
    })
    .await;
    let config = erp_with_token_endpoint(dir.path(), &servers, &issuer, 5);
    let host = Host::start(&config).await.unwrap();
    let mut events = host.subscribe();
    let store = host.transport.embedded().unwrap().clone();
    send_contact(&store, 0).await;
    let mut erp_verdicts = Vec::new();
    while !matches!(
        erp_verdicts.last(),
        Some(Verdict::Completed | Verdict::DeadLettered { .. })
    ) {
        let event = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .expect("the saga ends within 30 s")
            .unwrap();
        if event.partner == "erp" {
            erp_verdicts.push(event.verdict);
        }
    }
    host.shutdown().await;
    assert_eq!(erp_verdicts.len(), 3, "{erp_verdicts:?}");
    assert!(
        matches!(erp_verdicts[0], Verdict::Retried { attempt: 2, .. }),
        "{erp_verdicts:?}"
    );
    assert!(
        matches!(erp_verdicts[1], Verdict::Retried { attempt: 3, .. }),
        "{erp_verdicts:?}"
    );
    assert_eq!(erp_verdicts[2], Verdict::Completed);
    assert_eq!(
        servers.erp.received()[0].header("authorization"),
        Some("Bearer erp-access-token"),
        "no request went out without its token"
    );
    assert_eq!(servers.erp.received().len(), 1);
}

/// With the token endpoint down for good, the step's retries run out like any others and
/// the dead letter says which secret could not be had, and from where.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_down_for_good_exhausts_the_retries_naming_the_secret() {
    use sagahost::saga::Verdict;
    use sagahost::service::Host;

    let dir = tempfile::tempdir().unwrap();
    let servers = Servers::healthy().await;
    let issuer = Partner::always(503, "{\"error\":\"temporarily_unavailable\"}").await;
    let config = erp_with_token_endpoint(dir.path(), &servers, &issuer, 2);
    let host = Host::start(&config).await.unwrap();
    let mut events = host.subscribe();
    let store = host.transport.embedded().unwrap().clone();
    send_contact(&store, 0).await;
    let end = loop {
        let event = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .expect("the saga ends within 30 s")
            .unwrap();
        if event.partner == "erp" && !matches!(event.verdict, Verdict::Retried { .. }) {
            break event.verdict;
        }
    };
    host.shutdown().await;
    let Verdict::DeadLettered { reason, description } = end else {
        panic!("{end:?}");
    };
    assert_eq!(reason, "RetriesExhausted");
    assert!(
        // The host's own reason, not the component's take on a failed request.
        description.contains("last reason: partner `erp`: secret `erp-token` of partner `erp` is unavailable")
            && description.contains(&issuer.origin()),
        "{description}"
    );
    assert!(!description.contains("erp-client-secret\""), "{description}");
    assert!(
        servers.erp.received().is_empty(),
        "no request went out without its token"
    );
}
