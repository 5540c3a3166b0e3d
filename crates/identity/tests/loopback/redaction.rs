//! Secrets, tokens and identity headers never show in `Debug`, `Display` or errors.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sagahost_identity::{
    AccessToken, CachedToken, ClientCredentials, KeyVaultClient, ManagedIdentity, Secret, TokenSource,
};

use crate::server::{Reply, Server};

#[test]
fn secret_and_token_print_redacted() {
    let secret = Secret::new("hunter2");
    assert_eq!(format!("{secret:?}"), "[redacted]");
    assert_eq!(format!("{secret}"), "[redacted]");
    assert_eq!(format!("{:?}", Some(secret.clone())), "Some([redacted])");
    assert_eq!(secret.expose(), "hunter2");

    let token = AccessToken {
        secret: Secret::new("eyJ0eXAi.token"),
        expires_on: SystemTime::now() + Duration::from_secs(60),
    };
    let debug = format!("{token:?}");
    assert!(debug.contains("[redacted]") && !debug.contains("eyJ0eXAi"), "{debug}");
}

#[tokio::test]
async fn sources_caches_and_clients_print_no_secret() {
    let server = Server::start(|_, _| Reply::token("issued-token-value", 3600)).await;
    let credentials = ClientCredentials::with_secret(format!("{}/token", server.base), "client", Secret::new("s3cr3t"));
    let identity = ManagedIdentity::app_service("http://127.0.0.1:1/msi", Secret::new("header-value"), None);
    let source = Arc::new(TokenSource::from(credentials));
    let cache = CachedToken::new(source.clone(), "scope");
    cache.token().await.unwrap();
    let vault = KeyVaultClient::new(source.clone());

    let printed = format!("{source:?} {identity:?} {cache:?} {vault:?}");
    for value in ["s3cr3t", "header-value", "issued-token-value"] {
        assert!(!printed.contains(value), "{value} printed in {printed}");
    }
    assert!(
        printed.contains("client secret") && printed.contains("[redacted]"),
        "{printed}"
    );
}
