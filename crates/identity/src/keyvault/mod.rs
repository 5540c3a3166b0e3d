//! Azure Key Vault secrets: reading one secret with the host's credential
//! ([`KeyVaultClient`]) and keeping a refreshed copy of it ([`KeyVaultSecret`]).
//!
//! The client speaks Key Vault's REST API (`GET {vault}/secrets/{name}/{version}?api-version=7.4`)
//! with its bearer challenge: the first request goes without a token, the vault answers 401
//! with `WWW-Authenticate: Bearer authorization="…", resource="…"` (or `scope="…"`), and the
//! client retries once with a token for that resource from its [`TokenSource`]. The scope it
//! learned is kept per vault, so later reads send a cached token straight away.

mod refresh;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};
use serde_json::Value;

use crate::http::{self, DEFAULT_TIMEOUT};
use crate::{CachedToken, Error, Secret, TokenSource};

pub use refresh::{FailureHook, KeyVaultSecret};

/// The Key Vault REST API version this client speaks.
pub const API_VERSION: &str = "7.4";

/// What the operator grants when the vault refuses the identity.
const GRANT_FIX: &str = "grant the host's identity the `Key Vault Secrets User` role on the vault (or, on a vault \
                         with access policies, `Get` on secrets), and check the vault's firewall";

/// A secret in a vault: the vault's URL, the secret's name and, optionally, a version
/// (without one, the current version, so a rotation is picked up).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecretRef {
    vault: String,
    name: String,
    version: Option<String>,
}

impl SecretRef {
    /// Checks and builds a reference: `vault` is an `https://NAME.vault.azure.net` URL (or an
    /// `http` one, for tests), `name` is 1–127 letters, digits and dashes, `version` letters
    /// and digits, as Key Vault allows.
    pub fn new(vault: impl Into<String>, name: impl Into<String>, version: Option<String>) -> Result<Self, Error> {
        let vault = vault.into().trim_end_matches('/').to_string();
        let name = name.into();
        let what = || format!("Key Vault secret `{name}` in vault `{vault}`");
        let url_ok = Url::parse(&vault)
            .is_ok_and(|url| matches!(url.scheme(), "https" | "http") && url.host().is_some() && url.path() == "/");
        if !url_ok {
            return Err(Error::config(
                what(),
                "the vault is not a URL",
                "write it as `https://NAME.vault.azure.net`",
            ));
        }
        let name_ok = (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !name_ok {
            return Err(Error::config(
                what(),
                "the name is not a Key Vault secret name",
                "use 1 to 127 letters, digits and dashes",
            ));
        }
        if let Some(version) = &version
            && (!(1..=64).contains(&version.len()) || !version.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err(Error::config(
                what(),
                format!("`{version}` is not a secret version"),
                "give the 32-character version id the vault shows, or none for the current version",
            ));
        }
        Ok(Self { vault, name, version })
    }

    /// The vault's URL, without a trailing slash.
    pub fn vault(&self) -> &str {
        &self.vault
    }

    /// The secret's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pinned version, if any.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    fn url(&self) -> String {
        match &self.version {
            Some(version) => format!("{}/secrets/{}/{version}", self.vault, self.name),
            None => format!("{}/secrets/{}", self.vault, self.name),
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key Vault secret `{}`", self.name)?;
        if let Some(version) = &self.version {
            write!(f, " version `{version}`")?;
        }
        write!(f, " in vault `{}`", self.vault)
    }
}

/// Reads secrets from any number of vaults with one [`TokenSource`].
pub struct KeyVaultClient {
    source: Arc<TokenSource>,
    http: reqwest::Client,
    timeout: Duration,
    verify_challenge_resource: bool,
    /// Each vault's token cache, for the scope its challenge named.
    tokens: Mutex<HashMap<String, Arc<CachedToken>>>,
}

impl KeyVaultClient {
    /// A client that gets its tokens from `source`.
    pub fn new(source: Arc<TokenSource>) -> Self {
        Self {
            source,
            http: http::default_client(),
            timeout: DEFAULT_TIMEOUT,
            verify_challenge_resource: true,
            tokens: Mutex::default(),
        }
    }

    /// Uses `client` for requests to the vaults.
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.http = client;
        self
    }

    /// Bounds each request to a vault, body included (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether a challenge must name a resource the vault's host belongs to (default: yes,
    /// as in the Azure SDKs), so that a server posing as the vault cannot obtain a token for
    /// another API. Only tests, whose vault is on loopback, turn this off.
    pub fn verify_challenge_resource(mut self, verify: bool) -> Self {
        self.verify_challenge_resource = verify;
        self
    }

    /// Reads `secret`'s value now.
    pub async fn get(&self, secret: &SecretRef) -> Result<Secret, Error> {
        let endpoint = secret.to_string();
        let cache = self.token_cache(&secret.vault);
        let mut token = match &cache {
            Some(cache) => Some((cache.clone(), cache.token().await?)),
            None => None,
        };
        let mut challenged = false;
        loop {
            let mut request = self.http.get(secret.url()).query(&[("api-version", API_VERSION)]);
            if let Some((_, token)) = &token {
                request = request.bearer_auth(token.secret.expose());
            }
            let (status, headers, body) = http::send(&endpoint, request, self.timeout).await?;
            if status != StatusCode::UNAUTHORIZED {
                return read_secret(&endpoint, status, &body);
            }
            if let Some((cache, refused)) = &token {
                cache.invalidate(refused);
            }
            // One challenge per read: a second 401 means the vault does not accept this
            // identity's tokens, and asking again would loop.
            if challenged {
                return Err(Error::Rejected {
                    endpoint,
                    reason: "HTTP 401 to a fresh token".to_string(),
                    fix: format!("{GRANT_FIX}; check that the identity belongs to the vault's tenant"),
                });
            }
            challenged = true;
            let scope = self.challenge_scope(&endpoint, secret, &headers)?;
            let cache = self.set_token_cache(&secret.vault, scope);
            token = Some((cache.clone(), cache.token().await?));
        }
    }

    fn token_cache(&self, vault: &str) -> Option<Arc<CachedToken>> {
        self.tokens().get(vault).cloned()
    }

    /// The cache for `vault`'s `scope`; a new one only when the vault named another scope.
    fn set_token_cache(&self, vault: &str, scope: String) -> Arc<CachedToken> {
        let mut tokens = self.tokens();
        match tokens.get(vault) {
            Some(cache) if cache.scope() == scope => cache.clone(),
            _ => {
                let cache = Arc::new(CachedToken::new(self.source.clone(), scope));
                tokens.insert(vault.to_string(), cache.clone());
                cache
            }
        }
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<CachedToken>>> {
        // A map of caches; a panic elsewhere cannot leave it inconsistent.
        self.tokens.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The scope a 401's `WWW-Authenticate: Bearer …` challenge asks for.
    fn challenge_scope(&self, endpoint: &str, secret: &SecretRef, headers: &HeaderMap) -> Result<String, Error> {
        let refused = |reason: &str, fix: &str| Error::Rejected {
            endpoint: endpoint.to_string(),
            reason: reason.to_string(),
            fix: fix.to_string(),
        };
        let not_a_vault = "check that the vault URL is a Key Vault's (`https://NAME.vault.azure.net`)";
        let challenge = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(bearer_params)
            .ok_or_else(|| refused("HTTP 401 without a Bearer challenge", not_a_vault))?;
        let scope = match (challenge.get("scope"), challenge.get("resource")) {
            (Some(scope), _) => scope.clone(),
            (None, Some(resource)) => format!("{}/.default", resource.trim_end_matches('/')),
            (None, None) => return Err(refused("the challenge names no resource or scope", not_a_vault)),
        };
        if self.verify_challenge_resource && !resource_matches_vault(&scope, &secret.vault) {
            return Err(refused(
                &format!("the challenge asks for a token for `{scope}`, which is not the vault's domain"),
                not_a_vault,
            ));
        }
        Ok(scope)
    }
}

impl fmt::Debug for KeyVaultClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyVaultClient")
            .field("source", &self.source)
            .field("timeout", &self.timeout)
            .field("verify_challenge_resource", &self.verify_challenge_resource)
            .finish_non_exhaustive()
    }
}

/// The parameters of a `Bearer` challenge (`Bearer a="x", b="y"`), or `None` for another scheme.
fn bearer_params(header: &str) -> Option<HashMap<String, String>> {
    let (scheme, params) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = params
        .split(',')
        .filter_map(|param| param.split_once('='))
        .map(|(key, value)| {
            (
                key.trim().to_ascii_lowercase(),
                value.trim().trim_matches('"').to_string(),
            )
        })
        .collect();
    Some(params)
}

/// Whether `scope`'s host is the vault's host or a parent domain of it
/// (`vault.azure.net` for `NAME.vault.azure.net`).
fn resource_matches_vault(scope: &str, vault: &str) -> bool {
    let host = |url: &str| {
        Url::parse(url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_ascii_lowercase))
    };
    match (host(scope), host(vault)) {
        (Some(resource), Some(vault)) => vault == resource || vault.ends_with(&format!(".{resource}")),
        _ => false,
    }
}

/// Reads a secret bundle (`{"value": "…", "id": …}`) or the vault's refusal.
fn read_secret(endpoint: &str, status: StatusCode, body: &[u8]) -> Result<Secret, Error> {
    if http::is_retryable(status) {
        return Err(Error::Transient {
            endpoint: endpoint.to_string(),
            detail: format!("HTTP {status}"),
        });
    }
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if !status.is_success() {
        // Key Vault's errors are `{"error": {"code": "SecretNotFound", "message": "…"}}`.
        let error = json.as_ref().and_then(|json| json.get("error"));
        let field = |name: &str| error.and_then(|error| error.get(name)).and_then(Value::as_str);
        let reason = match (field("code"), field("message")) {
            (Some(code), Some(message)) => format!("HTTP {status}, {code}: {message}"),
            (Some(code), None) => format!("HTTP {status}, {code}"),
            _ => format!("HTTP {status}"),
        };
        let fix = match status {
            StatusCode::NOT_FOUND => "check the secret's name and version, and that it is enabled",
            StatusCode::FORBIDDEN => GRANT_FIX,
            _ => "check the vault URL",
        };
        return Err(Error::Rejected {
            endpoint: endpoint.to_string(),
            reason,
            fix: fix.to_string(),
        });
    }
    match json.as_ref().and_then(|json| json.get("value")).and_then(Value::as_str) {
        Some(value) => Ok(Secret::new(value)),
        None => Err(Error::Transient {
            endpoint: endpoint.to_string(),
            detail: "the answer has no string `value`".to_string(),
        }),
    }
}

#[cfg(test)]
mod tests;
