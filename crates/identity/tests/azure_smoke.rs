//! Smoke tests against real Entra ID and Key Vault, one per credential kind. Azure cannot be
//! reached from where these were written, so each is skipped (with the reason printed) unless
//! its variables are set; the loopback tests cover the same protocols in every run.
//!
//! | test | variables |
//! |---|---|
//! | client secret | `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET` |
//! | client certificate | `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_CERTIFICATE_PATH` (PEM: key and certificate) |
//! | managed identity | `SAGAHOST_SMOKE_MANAGED_IDENTITY=1` (on an Azure VM, App Service, Container Apps or Functions; `AZURE_CLIENT_ID` for a user-assigned identity) |
//! | workload identity | `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`, `AZURE_TENANT_ID` (AKS sets them) |
//! | Key Vault | any of the above, plus `SAGAHOST_SMOKE_KEY_VAULT` (`https://NAME.vault.azure.net`) and `SAGAHOST_SMOKE_KEY_VAULT_SECRET` |
//!
//! ```sh
//! AZURE_TENANT_ID=… AZURE_CLIENT_ID=… AZURE_CLIENT_SECRET=… \
//!   cargo test -p sagahost-identity --test azure_smoke -- --nocapture
//! ```

use std::sync::Arc;
use std::time::Duration;

use sagahost_identity::{
    CachedToken, ClientCertificate, ClientCredentials, KeyVaultClient, KeyVaultSecret, ManagedIdentity, Secret,
    SecretRef, TokenSource, entra_token_url,
};

/// A scope every tenant can issue a token for.
const SCOPE: &str = "https://management.azure.com/.default";
const AUTHORITY: &str = "https://login.microsoftonline.com";

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The credential the variables describe, first match in the table's order.
fn configured() -> Option<(&'static str, TokenSource)> {
    let app = || Some((var("AZURE_TENANT_ID")?, var("AZURE_CLIENT_ID")?));
    if let (Some((tenant, client)), Some(secret)) = (app(), var("AZURE_CLIENT_SECRET")) {
        let url = entra_token_url(AUTHORITY, &tenant);
        return Some((
            "client secret",
            ClientCredentials::with_secret(url, client, Secret::new(secret)).into(),
        ));
    }
    if let (Some((tenant, client)), Some(path)) = (app(), var("AZURE_CLIENT_CERTIFICATE_PATH")) {
        let certificate = ClientCertificate::from_pem_file(path.as_ref()).expect("the certificate PEM");
        let url = entra_token_url(AUTHORITY, &tenant);
        return Some((
            "client certificate",
            ClientCredentials::with_certificate(url, client, certificate).into(),
        ));
    }
    if var("AZURE_FEDERATED_TOKEN_FILE").is_some() {
        let source = ClientCredentials::workload_identity_from_env().expect("workload identity variables");
        return Some(("workload identity", source.into()));
    }
    if var("SAGAHOST_SMOKE_MANAGED_IDENTITY").is_some() {
        return Some((
            "managed identity",
            ManagedIdentity::from_env(var("AZURE_CLIENT_ID")).into(),
        ));
    }
    None
}

#[tokio::test]
async fn a_token_from_entra_id_with_the_configured_credential() {
    let Some((kind, source)) = configured() else {
        eprintln!("skipped: set the variables of one credential kind (see the file's doc) to run against Entra ID");
        return;
    };
    let cache = CachedToken::new(Arc::new(source), SCOPE);
    let token = cache.token().await.unwrap_or_else(|err| panic!("{kind}: {err}"));
    assert!(
        token.remaining() > Duration::from_secs(60),
        "{kind}: a token about to expire"
    );
    assert_eq!(
        cache.token().await.unwrap().secret,
        token.secret,
        "{kind}: the second call is cached"
    );
    eprintln!("{kind}: a token valid for {:?}", token.remaining());
}

#[tokio::test]
async fn a_key_vault_secret_with_the_configured_credential() {
    let (Some((kind, source)), Some(vault), Some(name)) = (
        configured(),
        var("SAGAHOST_SMOKE_KEY_VAULT"),
        var("SAGAHOST_SMOKE_KEY_VAULT_SECRET"),
    ) else {
        eprintln!(
            "skipped: set a credential's variables, SAGAHOST_SMOKE_KEY_VAULT and SAGAHOST_SMOKE_KEY_VAULT_SECRET \
             to read a Key Vault secret"
        );
        return;
    };
    let client = Arc::new(KeyVaultClient::new(Arc::new(source)));
    let reference = SecretRef::new(vault, name, None).unwrap();
    let secret = KeyVaultSecret::load(client, reference, Duration::from_secs(300))
        .await
        .unwrap_or_else(|err| panic!("{kind}: {err}"));
    assert!(!secret.value().expose().is_empty(), "{kind}: an empty secret");
}
