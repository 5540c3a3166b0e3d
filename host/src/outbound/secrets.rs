//! Partner secrets: values the host injects into request headers.
//!
//! A component names a secret (`header-value::secret("erp-token")`); the host
//! looks the name up for *that component's partner only* and puts the value on
//! the wire. Values never reach the guest, a log line, or an error message:
//! [`Secret`] prints as `[redacted]` and has no `Serialize`.
//!
//! A secret is a stored value (an environment variable or a file, read on every use so a
//! rotation needs no restart), an OAuth 2.0 access token kept fresh, or an Azure Key Vault
//! secret read again on an interval (`credentials.rs`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use sagahost_identity::{AccessToken, CachedToken, KeyVaultClient, KeyVaultSecret};
use serde::Deserialize;

use super::credentials::{IdentityConfig, KeyVaultSource, OAuth2Source};

pub use sagahost_identity::Secret;

/// Resolves a partner's secret by name.
///
/// Implementations must scope lookups by partner: a partner can only reach its
/// own secrets.
pub trait SecretProvider: Send + Sync {
    /// The current value of `partner`'s secret `name`.
    fn get<'a>(&'a self, partner: &'a str, name: &'a str) -> BoxFuture<'a, Result<Secret, SecretError>>;

    /// An API answered 401 to a request that carried `value` of `partner`'s secret `name`.
    /// Returns whether a fresh value may differ (a token, now forgotten), so that the request
    /// is worth repeating once.
    fn rejected(&self, partner: &str, name: &str, value: &Secret) -> bool;
}

/// Why a secret has no value for a request. Never contains the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The partner has no secret of that name: the component asked for the wrong one.
    #[error("unknown secret `{name}` for partner `{partner}`")]
    Unknown { partner: String, name: String },
    /// A stored secret cannot be read: the operator must fix the variable or file.
    #[error("secret `{name}` of partner `{partner}` cannot be read: {reason}")]
    Unreadable {
        partner: String,
        name: String,
        reason: SecretReadError,
    },
    /// A token or vault did not answer as it should; trying again later may work.
    #[error("secret `{name}` of partner `{partner}` is unavailable for now: {reason}")]
    Unavailable {
        partner: String,
        name: String,
        reason: String,
    },
}

/// Where a configured secret comes from.
///
/// In TOML: `erp-token = { env = "ERP_TOKEN" }`, `erp-token = { file = "/run/secrets/erp" }`,
/// `dataverse = { oauth2 = { … } }` or `erp-token = { key-vault = { … } }`. Keys, tokens and
/// connection strings of the host itself must be stored values (`env` or `file`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum SecretSource {
    /// An environment variable of the host process.
    Env(String),
    /// A file; one trailing newline (`\n` or `\r\n`) is removed.
    File(PathBuf),
    /// An OAuth 2.0 access token (client credentials), refreshed before it expires.
    Oauth2(OAuth2Source),
    /// An Azure Key Vault secret, read with the host's `[identity]`.
    KeyVault(KeyVaultSource),
}

impl SecretSource {
    /// Reads a stored value now; a token or vault secret is no stored value.
    pub fn read(&self) -> Result<Secret, SecretReadError> {
        match self {
            Self::Env(var) => std::env::var(var).map(Secret::new).map_err(|err| SecretReadError::Env {
                var: var.clone(),
                reason: match err {
                    std::env::VarError::NotPresent => "not set",
                    std::env::VarError::NotUnicode(_) => "not valid UTF-8",
                },
            }),
            Self::File(path) => {
                let mut text = std::fs::read_to_string(path).map_err(|err| SecretReadError::File {
                    path: path.clone(),
                    reason: err.to_string(),
                })?;
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                Ok(Secret::new(text))
            }
            Self::Oauth2(_) | Self::KeyVault(_) => Err(SecretReadError::NotStored),
        }
    }
}

/// Why a configured secret could not be read. Never contains the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretReadError {
    #[error("environment variable `{var}` is {reason}")]
    Env { var: String, reason: &'static str },
    #[error("cannot read secret file `{}`: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    #[error(
        "it must be a stored value here: `{{ env = \"VAR\" }}` or `{{ file = \"PATH\" }}`, not oauth2 or key-vault"
    )]
    NotStored,
}

/// A configured secret that cannot be read (see [`ConfigSecrets::verify`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("secret `{name}` of partner `{partner}`: {source}")]
pub struct UnreadableSecret {
    pub partner: String,
    pub name: String,
    #[source]
    pub source: SecretReadError,
}

/// One configured secret, ready to give values.
enum Entry {
    /// Read on every lookup, so a rotated file or variable takes effect without a restart.
    Stored(SecretSource),
    Token(Arc<CachedToken>),
    Vault(Arc<KeyVaultSecret>),
}

/// Secrets from the config: partner → secret name → where its value comes from.
///
/// [`ConfigSecrets::new`] takes stored values only (tests, the harness);
/// [`ConfigSecrets::load`] takes every kind, reading Key Vault secrets once at startup. Call
/// [`verify`](Self::verify) at startup to fail fast on a missing variable or file.
#[derive(Default)]
pub struct ConfigSecrets {
    partners: HashMap<String, HashMap<String, Entry>>,
}

impl std::fmt::Debug for ConfigSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut partners: Vec<_> = self.partners.keys().collect();
        partners.sort();
        f.debug_struct("ConfigSecrets").field("partners", &partners).finish()
    }
}

impl ConfigSecrets {
    /// The provider for stored secrets (any map of partner → map of name → source, e.g.
    /// `HashMap` or `BTreeMap`). Tokens and vault secrets need [`ConfigSecrets::load`]; here
    /// they are unreadable.
    pub fn new<P, S>(partners: P) -> Self
    where
        P: IntoIterator<Item = (String, S)>,
        S: IntoIterator<Item = (String, SecretSource)>,
    {
        let partners = partners
            .into_iter()
            .map(|(partner, secrets)| {
                let entries = secrets.into_iter().map(|(name, source)| (name, Entry::Stored(source)));
                (partner, entries.collect())
            })
            .collect();
        Self { partners }
    }

    /// The provider for every kind of secret: token caches are made (their client secrets and
    /// certificates read now), and Key Vault secrets read with `identity` (a vault that cannot
    /// be reached fails the start, naming the secret) and kept fresh.
    pub async fn load<P, S>(partners: P, identity: &IdentityConfig) -> anyhow::Result<Self>
    where
        P: IntoIterator<Item = (String, S)>,
        S: IntoIterator<Item = (String, SecretSource)>,
    {
        let mut vault: Option<Arc<KeyVaultClient>> = None;
        let mut loaded = HashMap::new();
        for (partner, secrets) in partners {
            let mut entries = HashMap::new();
            for (name, source) in secrets {
                let entry = match &source {
                    SecretSource::Oauth2(oauth2) => Entry::Token(Arc::new(
                        oauth2
                            .token(&name)
                            .map_err(|err| anyhow::anyhow!("partners.{partner}: {err}"))?,
                    )),
                    SecretSource::KeyVault(key_vault) => {
                        let client = match &vault {
                            Some(client) => client.clone(),
                            None => {
                                let source = identity.token_source()?;
                                vault.insert(Arc::new(KeyVaultClient::new(Arc::new(source)))).clone()
                            }
                        };
                        let secret = key_vault
                            .load(client)
                            .await
                            .map_err(|err| anyhow::anyhow!("partners.{partner}.secrets.{name}: {err}"))?;
                        Entry::Vault(Arc::new(secret))
                    }
                    SecretSource::Env(_) | SecretSource::File(_) => Entry::Stored(source),
                };
                entries.insert(name, entry);
            }
            loaded.insert(partner, entries);
        }
        Ok(Self { partners: loaded })
    }

    /// Reads every stored secret once and reports those that cannot be read.
    pub fn verify(&self) -> Vec<UnreadableSecret> {
        let mut failures = Vec::new();
        for (partner, secrets) in &self.partners {
            for (name, entry) in secrets {
                if let Entry::Stored(source) = entry
                    && let Err(source) = source.read()
                {
                    failures.push(UnreadableSecret {
                        partner: partner.clone(),
                        name: name.clone(),
                        source,
                    });
                }
            }
        }
        failures.sort_by(|a, b| (&a.partner, &a.name).cmp(&(&b.partner, &b.name)));
        failures
    }
}

impl SecretProvider for ConfigSecrets {
    fn get<'a>(&'a self, partner: &'a str, name: &'a str) -> BoxFuture<'a, Result<Secret, SecretError>> {
        Box::pin(async move {
            let entry = self
                .partners
                .get(partner)
                .and_then(|secrets| secrets.get(name))
                .ok_or_else(|| SecretError::Unknown {
                    partner: partner.to_owned(),
                    name: name.to_owned(),
                })?;
            match entry {
                Entry::Stored(source) => source.read().map_err(|reason| {
                    tracing::warn!(partner, secret = name, error = %reason, "configured secret cannot be read");
                    SecretError::Unreadable {
                        partner: partner.to_owned(),
                        name: name.to_owned(),
                        reason,
                    }
                }),
                Entry::Token(token) => token.token().await.map(|token| token.secret).map_err(|err| {
                    tracing::warn!(partner, secret = name, error = %err, "no access token");
                    SecretError::Unavailable {
                        partner: partner.to_owned(),
                        name: name.to_owned(),
                        reason: err.to_string(),
                    }
                }),
                Entry::Vault(secret) => Ok(secret.value()),
            }
        })
    }

    fn rejected(&self, partner: &str, name: &str, value: &Secret) -> bool {
        let Some(Entry::Token(token)) = self.partners.get(partner).and_then(|secrets| secrets.get(name)) else {
            return false;
        };
        token.invalidate(&AccessToken {
            secret: value.clone(),
            expires_on: std::time::UNIX_EPOCH,
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn secret_never_prints_its_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some([redacted])");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn sources_deserialize_from_toml() {
        let table: HashMap<String, SecretSource> =
            toml::from_str("a = { env = \"VAR_A\" }\nb = { file = \"/run/secrets/b\" }\n").unwrap();
        assert_eq!(table["a"], SecretSource::Env("VAR_A".into()));
        assert_eq!(table["b"], SecretSource::File("/run/secrets/b".into()));
        assert!(toml::from_str::<HashMap<String, SecretSource>>("a = { vault = \"x\" }").is_err());
        let kinds: HashMap<String, SecretSource> = toml::from_str(
            "t = { oauth2 = { scope = \"s\", token-url = \"https://login/t\", client-id = \"c\", client-secret = { env = \"X\" } } }\n\
             v = { key-vault = { vault = \"https://kv.vault.azure.net\", name = \"erp\" } }\n",
        )
        .unwrap();
        assert!(matches!(kinds["t"], SecretSource::Oauth2(_)));
        assert!(matches!(kinds["v"], SecretSource::KeyVault(_)));
    }

    #[tokio::test]
    async fn partners_only_see_their_own_secrets() {
        let var = format!("SAGAHOST_OUTBOUND_TEST_ISOLATION_{}", std::process::id());
        // SAFETY: the variable name is unique to this test.
        unsafe { std::env::set_var(&var, "value-a") };
        let token = || HashMap::from([("token".to_string(), SecretSource::Env(var.clone()))]);
        let secrets = ConfigSecrets::new(HashMap::from([
            ("a".to_string(), token()),
            ("b".to_string(), HashMap::new()),
        ]));
        assert_eq!(secrets.get("a", "token").await.unwrap().expose(), "value-a");
        assert!(matches!(
            secrets.get("b", "token").await,
            Err(SecretError::Unknown { .. })
        ));
        assert!(matches!(
            secrets.get("c", "token").await,
            Err(SecretError::Unknown { .. })
        ));
        assert!(secrets.verify().is_empty());
        assert!(
            !secrets.rejected("a", "token", &Secret::new("value-a")),
            "a stored value is not refreshed"
        );

        // Config tables may be `BTreeMap`s.
        let from_btree = ConfigSecrets::new(BTreeMap::from([("d".to_string(), BTreeMap::from_iter(token()))]));
        assert_eq!(from_btree.get("d", "token").await.unwrap().expose(), "value-a");
    }

    #[tokio::test]
    async fn file_secret_trims_one_trailing_newline_and_verify_reports_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "file-value\r\n").unwrap();
        assert_eq!(SecretSource::File(path.clone()).read().unwrap().expose(), "file-value");

        let missing_var = format!("SAGAHOST_OUTBOUND_TEST_MISSING_{}", std::process::id());
        let secrets = ConfigSecrets::new(HashMap::from([(
            "p".to_string(),
            HashMap::from([
                ("ok".to_string(), SecretSource::File(path)),
                ("gone".to_string(), SecretSource::Env(missing_var)),
                ("nofile".to_string(), SecretSource::File(dir.path().join("nope"))),
            ]),
        )]));
        let failures = secrets.verify();
        let names: Vec<_> = failures.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["gone", "nofile"]);
        let unreadable = secrets.get("p", "gone").await.unwrap_err().to_string();
        assert!(
            unreadable.contains("cannot be read") && unreadable.contains("not set"),
            "{unreadable}"
        );
    }

    #[test]
    fn tokens_and_vault_secrets_are_not_stored_values() {
        let oauth2: SecretSource = toml::from_str::<HashMap<String, SecretSource>>(
            "t = { oauth2 = { scope = \"s/.default\", managed-identity = true } }",
        )
        .unwrap()
        .remove("t")
        .unwrap();
        assert_eq!(oauth2.read().unwrap_err(), SecretReadError::NotStored);
        assert!(oauth2.read().unwrap_err().to_string().contains("env"));
    }
}
