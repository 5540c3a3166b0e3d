//! The secrets that are not stored values: OAuth 2.0 access tokens (`oauth2`) and Azure Key
//! Vault secrets (`key-vault`), and the host's own Entra ID credential (`[identity]`) that
//! Key Vault is read with. The protocols are `sagahost-identity`'s; this module maps the
//! config onto them.
//!
//! ```toml
//! [identity]                                  # the host's credential; managed identity if absent
//! credential = "client-secret"                # managed-identity, workload-identity, client-secret, client-certificate
//! tenant-id = "…"
//! client-id = "…"
//! client-secret = { env = "AZURE_CLIENT_SECRET" }
//!
//! [partners.dataverse-writeback.secrets]
//! dataverse-token = { oauth2 = { token-url = "https://login.microsoftonline.com/TENANT/oauth2/v2.0/token",
//!     client-id = "…", client-secret = { env = "DATAVERSE_CLIENT_SECRET" }, scope = "https://org.crm.dynamics.com/.default" } }
//! erp-token = { key-vault = { vault = "https://contoso.vault.azure.net", name = "erp-token" } }
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sagahost_identity::{
    CachedToken, ClientCertificate, ClientCredentials, KeyVaultClient, KeyVaultSecret, ManagedIdentity, SecretRef,
    TokenSource, entra_token_url,
};
use serde::Deserialize;

use super::secrets::SecretSource;

/// Entra ID's public-cloud authority, for `tenant-id` without `authority-host`.
const PUBLIC_AUTHORITY: &str = "https://login.microsoftonline.com";
/// How often a Key Vault secret is read again when its config does not say.
const DEFAULT_VAULT_REFRESH: Duration = Duration::from_secs(300);

/// `{ oauth2 = { … } }`: an access token from the client-credentials grant, kept fresh.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct OAuth2Source {
    /// What the token is for, e.g. `https://org.crm.dynamics.com/.default`.
    pub scope: String,
    /// The token endpoint (with `client-secret` or `client-certificate`).
    pub token_url: Option<String>,
    /// The application (client) id; with `managed-identity`, a user-assigned identity's.
    pub client_id: Option<String>,
    /// The client secret, from an environment variable or a file.
    pub client_secret: Option<Box<SecretSource>>,
    /// A PEM file holding the client's private key and certificate (a signed client assertion).
    pub client_certificate: Option<PathBuf>,
    /// The host's managed identity instead of a client secret or certificate.
    #[serde(default)]
    pub managed_identity: bool,
}

/// `{ key-vault = { … } }`: a secret read from Azure Key Vault with the host's credential.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KeyVaultSource {
    /// The vault's URL, `https://NAME.vault.azure.net`.
    pub vault: String,
    /// The secret's name.
    pub name: String,
    /// A version; the latest when absent (and then a rotation takes effect at the next refresh).
    pub version: Option<String>,
    /// How often to read it again, in seconds (default 300).
    pub refresh_seconds: Option<u64>,
}

/// `[identity]`: how the host itself signs in to Entra ID (Key Vault; Service Bus without a
/// connection string).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct IdentityConfig {
    /// Which credential (default `managed-identity`).
    #[serde(default)]
    pub credential: CredentialKind,
    /// The application (client) id; for managed identity, a user-assigned identity's.
    pub client_id: Option<String>,
    /// The directory (tenant) id, for `client-secret` and `client-certificate`.
    pub tenant_id: Option<String>,
    /// Entra ID's authority (default `https://login.microsoftonline.com`; national clouds differ).
    pub authority_host: Option<String>,
    /// For `client-secret`.
    pub client_secret: Option<SecretSource>,
    /// For `client-certificate`: a PEM file with the private key and the certificate.
    pub client_certificate: Option<PathBuf>,
}

/// The kinds of host credential.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialKind {
    /// IMDS on VMs; `IDENTITY_ENDPOINT` on App Service, Container Apps and Functions.
    #[default]
    ManagedIdentity,
    /// AKS workload identity: `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`.
    WorkloadIdentity,
    /// An app registration's client secret.
    ClientSecret,
    /// An app registration's certificate.
    ClientCertificate,
}

impl IdentityConfig {
    /// The token source this credential signs in with.
    pub fn token_source(&self) -> anyhow::Result<TokenSource> {
        let app = |what: &str| -> anyhow::Result<(String, String)> {
            let (Some(tenant), Some(client_id)) = (&self.tenant_id, &self.client_id) else {
                anyhow::bail!("identity: credential = \"{what}\" needs tenant-id and client-id");
            };
            let authority = self.authority_host.as_deref().unwrap_or(PUBLIC_AUTHORITY);
            Ok((entra_token_url(authority, tenant), client_id.clone()))
        };
        Ok(match self.credential {
            CredentialKind::ManagedIdentity => ManagedIdentity::from_env(self.client_id.clone()).into(),
            CredentialKind::WorkloadIdentity => ClientCredentials::workload_identity_from_env()
                .map_err(|err| anyhow::anyhow!("identity: workload identity: {err}"))?
                .into(),
            CredentialKind::ClientSecret => {
                let (token_url, client_id) = app("client-secret")?;
                let source = self
                    .client_secret
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("identity: credential = \"client-secret\" needs client-secret"))?;
                let secret = source
                    .read()
                    .map_err(|err| anyhow::anyhow!("identity.client-secret: {err}"))?;
                ClientCredentials::with_secret(token_url, client_id, secret).into()
            }
            CredentialKind::ClientCertificate => {
                let (token_url, client_id) = app("client-certificate")?;
                let path = self.client_certificate.as_ref().ok_or_else(|| {
                    anyhow::anyhow!("identity: credential = \"client-certificate\" needs client-certificate")
                })?;
                let certificate = ClientCertificate::from_pem_file(path)
                    .map_err(|err| anyhow::anyhow!("identity.client-certificate: {err}"))?;
                ClientCredentials::with_certificate(token_url, client_id, certificate).into()
            }
        })
    }
}

impl OAuth2Source {
    /// The token cache for this secret; `name` names it in errors. Reads the client secret or
    /// certificate now, so a missing one fails the start, not a message.
    pub fn token(&self, name: &str) -> anyhow::Result<CachedToken> {
        let app = || match (&self.token_url, &self.client_id) {
            (Some(token_url), Some(client_id)) => Ok((token_url, client_id)),
            _ => Err(anyhow::anyhow!("secret `{name}`: oauth2 needs token-url and client-id")),
        };
        let source: TokenSource = match (&self.client_secret, &self.client_certificate, self.managed_identity) {
            (None, None, true) => ManagedIdentity::from_env(self.client_id.clone()).into(),
            (Some(secret), None, false) => {
                let (token_url, client_id) = app()?;
                let value = secret
                    .read()
                    .map_err(|err| anyhow::anyhow!("secret `{name}`: client-secret: {err}"))?;
                ClientCredentials::with_secret(token_url, client_id, value).into()
            }
            (None, Some(path), false) => {
                let (token_url, client_id) = app()?;
                let certificate = ClientCertificate::from_pem_file(path)
                    .map_err(|err| anyhow::anyhow!("secret `{name}`: client-certificate: {err}"))?;
                ClientCredentials::with_certificate(token_url, client_id, certificate).into()
            }
            _ => anyhow::bail!(
                "secret `{name}`: oauth2 needs exactly one of client-secret, client-certificate or managed-identity = true"
            ),
        };
        Ok(CachedToken::new(Arc::new(source), self.scope.clone()))
    }
}

impl KeyVaultSource {
    /// Reads the secret now (an unreachable vault fails the start, naming the secret) and keeps
    /// it fresh with `vault`'s credential.
    pub async fn load(&self, vault: Arc<KeyVaultClient>) -> anyhow::Result<KeyVaultSecret> {
        let reference = SecretRef::new(&self.vault, &self.name, self.version.clone())
            .map_err(|err| anyhow::anyhow!("key-vault secret `{}`: {err}", self.name))?;
        let every = self.refresh_seconds.map_or(DEFAULT_VAULT_REFRESH, Duration::from_secs);
        let hook: sagahost_identity::FailureHook = Arc::new(|reference: &SecretRef, _error| {
            crate::telemetry::metrics::metrics()
                .secret_refresh_failures
                .get_or_create(&crate::telemetry::metrics::SecretLabels {
                    vault: reference.vault().to_owned(),
                    secret: reference.name().to_owned(),
                })
                .inc();
        });
        KeyVaultSecret::load_with_hook(vault, reference, every, hook)
            .await
            .map_err(|err| anyhow::anyhow!("key-vault secret `{}` in {}: {err}", self.name, self.vault))
    }
}

#[cfg(test)]
mod tests;
