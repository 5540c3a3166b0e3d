//! Key Vault secrets against a loopback vault that speaks the bearer challenge, with tokens
//! from a loopback token endpoint or IMDS.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sagahost_identity::{
    ClientCredentials, Error, KeyVaultClient, KeyVaultSecret, ManagedIdentity, Secret, SecretRef, TokenSource,
};

use crate::server::{Recorded, Reply, Server};

const CHALLENGE: &str =
    r#"Bearer authorization="https://login.microsoftonline.com/tenant-t", resource="https://vault.azure.net""#;

/// What the loopback vault serves and accepts.
struct Vault {
    value: String,
    down: bool,
    /// Tokens `kv-token-N` with N below this are refused, as after a revocation.
    oldest_accepted: usize,
    challenge: &'static str,
}

fn vault_reply(vault: &Vault, request: &Recorded) -> Reply {
    if vault.down {
        return Reply::status(503);
    }
    let accepted = request
        .headers
        .get("authorization")
        .and_then(|value| value.strip_prefix("Bearer kv-token-"))
        .and_then(|n| n.parse::<usize>().ok())
        .is_some_and(|n| n >= vault.oldest_accepted);
    if !accepted {
        return Reply::json(401, serde_json::json!({"error": {"code": "Unauthorized"}}))
            .header("www-authenticate", vault.challenge);
    }
    match request.path.as_str() {
        "/secrets/db-password" => Reply::json(200, serde_json::json!({"value": vault.value, "id": "…/v-current"})),
        "/secrets/db-password/0123456789abcdef0123456789abcdef" => {
            Reply::json(200, serde_json::json!({"value": "pinned-value"}))
        }
        _ => Reply::json(
            404,
            serde_json::json!({"error": {"code": "SecretNotFound", "message": "A secret with (name/id) missing was not found in this key vault."}}),
        ),
    }
}

struct Fixture {
    vault: Arc<Mutex<Vault>>,
    vault_server: Server,
    token_server: Server,
    client: Arc<KeyVaultClient>,
}

impl Fixture {
    async fn start(challenge: &'static str) -> Self {
        let vault = Arc::new(Mutex::new(Vault {
            value: "v1".to_string(),
            down: false,
            oldest_accepted: 0,
            challenge,
        }));
        let vault_server = Server::start({
            let vault = vault.clone();
            move |request, _| vault_reply(&vault.lock().unwrap(), request)
        })
        .await;
        let token_server = Server::start(|_, n| Reply::token(&format!("kv-token-{n}"), 3600)).await;
        let source =
            ClientCredentials::with_secret(format!("{}/token", token_server.base), "kv-client", Secret::new("s"));
        // The vault is on loopback, not under vault.azure.net.
        let client = KeyVaultClient::new(Arc::new(TokenSource::from(source))).verify_challenge_resource(false);
        Self {
            vault,
            vault_server,
            token_server,
            client: Arc::new(client),
        }
    }

    fn secret(&self, name: &str, version: Option<&str>) -> SecretRef {
        SecretRef::new(&self.vault_server.base, name, version.map(str::to_string)).unwrap()
    }
}

#[tokio::test]
async fn the_challenge_names_the_scope_and_later_reads_reuse_the_token() {
    let fixture = Fixture::start(CHALLENGE).await;
    let current = fixture.secret("db-password", None);
    assert_eq!(fixture.client.get(&current).await.unwrap().expose(), "v1");

    let requests = fixture.vault_server.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        !requests[0].headers.contains_key("authorization"),
        "the first request goes without a token"
    );
    assert_eq!(requests[1].headers["authorization"], "Bearer kv-token-0");
    for request in &requests {
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/secrets/db-password");
        assert_eq!(request.query["api-version"], "7.4");
    }
    assert_eq!(
        fixture.token_server.requests()[0].form["scope"],
        "https://vault.azure.net/.default"
    );

    // The scope is known now: a pinned version is read with the cached token, no challenge.
    let pinned = fixture.secret("db-password", Some("0123456789abcdef0123456789abcdef"));
    assert_eq!(fixture.client.get(&pinned).await.unwrap().expose(), "pinned-value");
    let requests = fixture.vault_server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(
        requests[2].path,
        "/secrets/db-password/0123456789abcdef0123456789abcdef"
    );
    assert_eq!(requests[2].headers["authorization"], "Bearer kv-token-0");
    assert_eq!(fixture.token_server.count(), 1);
}

#[tokio::test]
async fn a_revoked_token_causes_one_refresh_and_one_repeat_never_a_loop() {
    let fixture = Fixture::start(CHALLENGE).await;
    let secret = fixture.secret("db-password", None);
    fixture.client.get(&secret).await.unwrap();
    fixture.vault.lock().unwrap().oldest_accepted = 1;
    assert_eq!(fixture.client.get(&secret).await.unwrap().expose(), "v1");
    let requests = fixture.vault_server.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(requests[2].headers["authorization"], "Bearer kv-token-0");
    assert_eq!(requests[3].headers["authorization"], "Bearer kv-token-1");
    assert_eq!(fixture.token_server.count(), 2);

    // A vault that refuses every token: one challenge, one repeat, then an error.
    fixture.vault.lock().unwrap().oldest_accepted = usize::MAX;
    let error = fixture.client.get(&secret).await.unwrap_err();
    assert!(matches!(error, Error::Rejected { .. }), "{error:?}");
    assert!(error.to_string().contains("Key Vault Secrets User"), "{error}");
    assert_eq!(fixture.vault_server.count(), 6);
    assert_eq!(fixture.token_server.count(), 3);
}

#[tokio::test]
async fn a_scope_challenge_works_with_managed_identity() {
    const SCOPE_CHALLENGE: &str =
        r#"Bearer authorization_uri="https://login.microsoftonline.com/t", scope="https://vault.azure.net/.default""#;
    let vault = Arc::new(Mutex::new(Vault {
        value: "from-imds".to_string(),
        down: false,
        oldest_accepted: 0,
        challenge: SCOPE_CHALLENGE,
    }));
    let vault_server = Server::start(move |request, _| vault_reply(&vault.lock().unwrap(), request)).await;
    let imds = Server::start(|_, n| {
        Reply::json(
            200,
            serde_json::json!({"access_token": format!("kv-token-{n}"), "expires_in": "3600"}),
        )
    })
    .await;
    let source = TokenSource::from(ManagedIdentity::imds(&imds.base, None));
    let client = KeyVaultClient::new(Arc::new(source)).verify_challenge_resource(false);
    let secret = SecretRef::new(&vault_server.base, "db-password", None).unwrap();
    assert_eq!(client.get(&secret).await.unwrap().expose(), "from-imds");
    assert_eq!(imds.requests()[0].query["resource"], "https://vault.azure.net");
}

#[tokio::test]
async fn a_challenge_for_another_resource_than_the_vaults_is_refused() {
    const FOREIGN: &str =
        r#"Bearer authorization="https://login.microsoftonline.com/t", resource="https://management.azure.com""#;
    let fixture = Fixture::start(FOREIGN).await;
    let client = KeyVaultClient::new(Arc::new(TokenSource::from(ClientCredentials::with_secret(
        format!("{}/token", fixture.token_server.base),
        "kv-client",
        Secret::new("s"),
    ))));
    let error = client.get(&fixture.secret("db-password", None)).await.unwrap_err();
    assert!(matches!(error, Error::Rejected { .. }), "{error:?}");
    assert!(
        error.to_string().contains("https://management.azure.com/.default"),
        "{error}"
    );
    assert_eq!(fixture.token_server.count(), 0, "no token was requested for it");
}

#[tokio::test]
async fn a_rotation_is_picked_up_and_an_outage_keeps_the_last_value() {
    let fixture = Fixture::start(CHALLENGE).await;
    let failures = Arc::new(AtomicU64::new(0));
    let hook = {
        let failures = failures.clone();
        Arc::new(move |secret: &SecretRef, error: &Error| {
            assert_eq!(secret.name(), "db-password");
            assert!(error.is_transient(), "{error:?}");
            failures.fetch_add(1, Ordering::Relaxed);
        })
    };
    let secret = KeyVaultSecret::load_with_hook(
        fixture.client.clone(),
        fixture.secret("db-password", None),
        Duration::from_millis(100),
        hook,
    )
    .await
    .unwrap();
    assert_eq!(secret.value().expose(), "v1");

    fixture.vault.lock().unwrap().value = "v2".to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(secret.value().expose(), "v2", "rotated without a restart");
    assert_eq!(secret.refresh_failures(), 0);

    fixture.vault.lock().unwrap().down = true;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(secret.value().expose(), "v2", "the outage keeps the last value");
    let counted = secret.refresh_failures();
    assert!(counted >= 1);
    assert_eq!(failures.load(Ordering::Relaxed), counted);

    fixture.vault.lock().unwrap().down = false;
    fixture.vault.lock().unwrap().value = "v3".to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(secret.value().expose(), "v3");
    assert_eq!(fixture.token_server.count(), 1, "every refresh reused the cached token");

    // Dropping the secret stops its refreshes.
    drop(secret);
    // A read that was already on the wire may still land.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = fixture.vault_server.count();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fixture.vault_server.count(), before);
}

#[tokio::test]
async fn a_vault_unreachable_at_startup_is_an_error_naming_the_secret_and_vault() {
    let fixture = Fixture::start(CHALLENGE).await;
    let missing = fixture.secret("missing", None);
    let error = KeyVaultSecret::load(fixture.client.clone(), missing, Duration::from_secs(60))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, Error::Rejected { .. }), "{error:?}");
    assert!(
        text.contains("`missing`") && text.contains(&fixture.vault_server.base),
        "{text}"
    );
    assert!(
        text.contains("SecretNotFound") && text.contains("check the secret's name"),
        "{text}"
    );

    fixture.vault.lock().unwrap().down = true;
    let error = KeyVaultSecret::load(
        fixture.client.clone(),
        fixture.secret("db-password", None),
        Duration::from_secs(60),
    )
    .await
    .unwrap_err();
    assert!(
        error.is_transient() && error.to_string().contains("`db-password`"),
        "{error}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let nowhere = SecretRef::new(format!("http://{closed}"), "db-password", None).unwrap();
    let error = fixture.client.get(&nowhere).await.unwrap_err();
    assert!(
        error.is_transient() && error.to_string().contains(&closed.to_string()),
        "{error}"
    );
}

#[test]
fn references_are_checked_when_built() {
    let bad = [
        ("not a url", "name", None),
        ("https://kv.vault.azure.net/secrets", "name", None),
        ("https://kv.vault.azure.net", "../keys/x", None),
        ("https://kv.vault.azure.net", "", None),
        ("https://kv.vault.azure.net", "name", Some("v/../1")),
    ];
    for (vault, name, version) in bad {
        let error = SecretRef::new(vault, name, version.map(str::to_string)).unwrap_err();
        assert!(matches!(error, Error::Config { .. }), "{error:?}");
    }
    let good = SecretRef::new("https://kv.vault.azure.net/", "db-password", Some("abc123".into())).unwrap();
    assert_eq!(good.vault(), "https://kv.vault.azure.net");
    assert_eq!(
        good.to_string(),
        "Key Vault secret `db-password` version `abc123` in vault `https://kv.vault.azure.net`"
    );
}
