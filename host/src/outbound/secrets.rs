//! Partner secrets: values the host injects into request headers.
//!
//! A component names a secret (`header-value::secret("erp-token")`); the host
//! looks the name up for *that component's partner only* and puts the value on
//! the wire. Values never reach the guest, a log line, or an error message:
//! [`Secret`] prints as `***` and has no `Serialize`.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// A secret value. `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself. Call only where it goes on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Resolves a partner's secret by name.
///
/// Implementations must scope lookups by partner: a partner can only reach its
/// own secrets. [`ConfigSecrets`] reads them from the config; a Key Vault
/// provider can be plugged in later.
pub trait SecretProvider: Send + Sync {
    /// The value of `partner`'s secret `name`, or `None` when the partner has no
    /// such secret (or it cannot be read right now).
    fn get(&self, partner: &str, name: &str) -> Option<Secret>;
}

/// Where a configured secret comes from.
///
/// In TOML: `erp-token = { env = "ERP_TOKEN" }` or `erp-token = { file = "/run/secrets/erp" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum SecretSource {
    /// An environment variable of the host process.
    Env(String),
    /// A file; one trailing newline (`\n` or `\r\n`) is removed.
    File(PathBuf),
}

impl SecretSource {
    /// Reads the value now.
    pub fn read(&self) -> Result<Secret, SecretReadError> {
        match self {
            Self::Env(var) => std::env::var(var).map(Secret).map_err(|err| SecretReadError::Env {
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
                Ok(Secret(text))
            }
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

/// Secrets from the config: partner → secret name → source.
///
/// Values are read on every lookup, so a rotated file or variable takes effect
/// without a restart. Call [`verify`](Self::verify) at startup to fail fast on a
/// missing variable or file.
#[derive(Debug, Clone, Default)]
pub struct ConfigSecrets {
    partners: HashMap<String, HashMap<String, SecretSource>>,
}

impl ConfigSecrets {
    /// Builds the provider from each partner's `secrets` table (any map of
    /// partner → map of name → source, e.g. `HashMap` or `BTreeMap`).
    pub fn new<P, S>(partners: P) -> Self
    where
        P: IntoIterator<Item = (String, S)>,
        S: IntoIterator<Item = (String, SecretSource)>,
    {
        let partners = partners
            .into_iter()
            .map(|(partner, secrets)| (partner, secrets.into_iter().collect()))
            .collect();
        Self { partners }
    }

    /// Adds (or replaces) one partner's secrets table.
    pub fn insert_partner(
        &mut self,
        partner: impl Into<String>,
        secrets: impl IntoIterator<Item = (String, SecretSource)>,
    ) {
        self.partners.insert(partner.into(), secrets.into_iter().collect());
    }

    /// Reads every configured secret once and reports those that cannot be read.
    pub fn verify(&self) -> Vec<UnreadableSecret> {
        let mut failures = Vec::new();
        for (partner, secrets) in &self.partners {
            for (name, source) in secrets {
                if let Err(source) = source.read() {
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
    fn get(&self, partner: &str, name: &str) -> Option<Secret> {
        let source = self.partners.get(partner)?.get(name)?;
        match source.read() {
            Ok(secret) => Some(secret),
            Err(err) => {
                tracing::warn!(partner, secret = name, error = %err, "configured secret cannot be read");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn secret_never_prints_its_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(***)");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn sources_deserialize_from_toml() {
        let table: HashMap<String, SecretSource> =
            toml::from_str("a = { env = \"VAR_A\" }\nb = { file = \"/run/secrets/b\" }\n").unwrap();
        assert_eq!(table["a"], SecretSource::Env("VAR_A".into()));
        assert_eq!(table["b"], SecretSource::File("/run/secrets/b".into()));
        assert!(toml::from_str::<HashMap<String, SecretSource>>("a = { vault = \"x\" }").is_err());
    }

    #[test]
    fn partners_only_see_their_own_secrets() {
        let var = format!("SAGAHOST_OUTBOUND_TEST_ISOLATION_{}", std::process::id());
        // SAFETY: the variable name is unique to this test.
        unsafe { std::env::set_var(&var, "value-a") };
        let token = || HashMap::from([("token".to_string(), SecretSource::Env(var.clone()))]);
        let mut secrets = ConfigSecrets::new(HashMap::from([
            ("a".to_string(), token()),
            ("b".to_string(), HashMap::new()),
        ]));
        assert_eq!(secrets.get("a", "token").unwrap().expose(), "value-a");
        assert!(secrets.get("b", "token").is_none());
        assert!(secrets.get("c", "token").is_none());
        assert!(secrets.verify().is_empty());

        // Config tables may be `BTreeMap`s.
        secrets.insert_partner("c", BTreeMap::from_iter(token()));
        assert_eq!(secrets.get("c", "token").unwrap().expose(), "value-a");
        let from_btree = ConfigSecrets::new(BTreeMap::from([("d".to_string(), BTreeMap::from_iter(token()))]));
        assert_eq!(from_btree.get("d", "token").unwrap().expose(), "value-a");
    }

    #[test]
    fn file_secret_trims_one_trailing_newline_and_verify_reports_missing() {
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
        assert!(secrets.get("p", "gone").is_none());
    }
}
