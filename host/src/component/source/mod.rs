//! Where a partner's component comes from: a file, an OCI registry or an HTTPS URL.
//!
//! `partners.NAME.component` (and a canary's `component`) is one of
//!
//! - a `.wasm` file, relative to the config file;
//! - `oci://REGISTRY/REPO:TAG`, polled for a new digest, or `oci://REGISTRY/REPO@sha256:…`,
//!   pinned (`oci.rs`: the wasm artifact layout, pull and push);
//! - an `https://` URL pinned by `component-sha256` (`https.rs`).
//!
//! [`Sources`] fetches the bytes and verifies them: the manifest against a pinned digest, the
//! layer against the manifest's digest, a download against its sha256. What it pulled is kept
//! by digest under `data-dir/sources` (`store.rs`), beside the compiled-artifact cache, so a
//! restart with the registry down still starts: a pinned component from its copy, a tag from
//! the digest it last resolved to. Plain `http://` is refused except on loopback.

mod https;
pub mod oci;
mod store;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use crate::outbound::{ConfigSecrets, IdentityConfig, SecretError, SecretProvider, SecretSource};

pub use https::HttpsSource;
pub use oci::OciReference;
use store::Store;

/// The largest component accepted from a registry or a URL (a partner component is a few MB).
pub const MAX_COMPONENT_BYTES: u64 = 100 << 20;

/// How long a registry or a download may take to connect, and to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Where one component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentSource {
    /// A `.wasm` file (absolute once the config is loaded).
    File(PathBuf),
    /// An artifact in an OCI registry, by tag (polled) or by digest (pinned).
    Oci(OciReference),
    /// A download pinned by its SHA-256.
    Https(HttpsSource),
}

impl ComponentSource {
    /// Reads what a config or a canary plan says: `oci://…`, `https://…` (`http://` on
    /// loopback only) or else a file path.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        if let Some(reference) = text.strip_prefix("oci://") {
            return OciReference::parse(reference).map(Self::Oci);
        }
        if text.starts_with("https://") || text.starts_with("http://") {
            return HttpsSource::parse(text).map(Self::Https);
        }
        if let Some((scheme, _)) = text.split_once("://") {
            anyhow::bail!(
                "`{text}`: unknown scheme `{scheme}://`: write a file path, oci://REGISTRY/REPO:TAG, \
                 oci://REGISTRY/REPO@sha256:DIGEST or https://…"
            );
        }
        Ok(Self::File(PathBuf::from(text)))
    }

    /// Adds `component-sha256`, which only an `https://` source takes (and needs).
    pub fn pinned(self, sha256: Option<&str>) -> anyhow::Result<Self> {
        match (self, sha256) {
            (Self::Https(https), sha256) => Ok(Self::Https(https.with_sha256(sha256)?)),
            (source, None) => Ok(source),
            (Self::Oci(_), Some(_)) => anyhow::bail!(
                "component-sha256 is for https:// components: pin an oci:// component with @sha256:DIGEST"
            ),
            (Self::File(_), Some(_)) => anyhow::bail!("component-sha256 is for https:// components, not files"),
        }
    }

    /// Makes a relative file path relative to `base`.
    pub fn resolve(&mut self, base: &Path) {
        if let Self::File(path) = self {
            *path = base.join(&*path);
        }
    }

    /// The file, for a file source.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::File(path) => Some(path),
            _ => None,
        }
    }

    /// Whether the source can change under the same name: a tag, which is polled.
    pub fn is_polled(&self) -> bool {
        matches!(self, Self::Oci(reference) if reference.digest().is_none())
    }

    /// Refuses a source that cannot be fetched as written (an `https://` URL without sha256).
    pub fn check(&self) -> anyhow::Result<()> {
        match self {
            Self::Https(https) => https.sha256().map(|_| ()),
            Self::File(_) | Self::Oci(_) => Ok(()),
        }
    }
}

impl fmt::Display for ComponentSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Oci(reference) => write!(f, "{reference}"),
            Self::Https(https) => write!(f, "{}", https.url()),
        }
    }
}

impl Default for ComponentSource {
    fn default() -> Self {
        Self::File(PathBuf::new())
    }
}

/// Written as the text it is read from (a canary plan is shared between replicas this way;
/// an `https://` source's sha256 travels beside it, as `component-sha256`).
impl serde::Serialize for ComponentSource {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ComponentSource {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(|err| serde::de::Error::custom(format!("{err:#}")))
    }
}

/// How the host signs in to one OCI registry (`[registries."HOST[:PORT]"]`); anonymous when
/// the registry has no table.
///
/// ```toml
/// [registries."ghcr.io"]
/// username = "sagahost-bot"
/// password = { env = "GHCR_TOKEN" }
///
/// [registries."contoso.azurecr.io"]
/// token = { key-vault = { vault = "https://contoso.vault.azure.net", name = "acr-token" } }
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RegistryConfig {
    /// User name of HTTP basic authentication, with `password`.
    pub username: Option<String>,
    /// Password of basic authentication: an environment variable, a file or a Key Vault secret.
    pub password: Option<SecretSource>,
    /// A bearer token, instead of a user name and password.
    pub token: Option<SecretSource>,
}

impl RegistryConfig {
    /// Refuses half a credential, or two.
    pub fn check(&self, registry: &str) -> anyhow::Result<()> {
        match (&self.username, &self.password, &self.token) {
            (Some(_), Some(_), None) | (None, None, Some(_)) | (None, None, None) => Ok(()),
            (_, _, Some(_)) => {
                anyhow::bail!("registries.\"{registry}\": set either token, or username and password, not both")
            }
            _ => anyhow::bail!("registries.\"{registry}\": username and password go together"),
        }
    }
}

/// The credentials of each configured registry, read on every pull so a rotation needs no
/// restart.
#[derive(Default)]
struct Credentials {
    registries: BTreeMap<String, RegistryConfig>,
    /// The registries' secrets, keyed like partners' as `registries."HOST"`.
    secrets: ConfigSecrets,
}

impl Credentials {
    async fn load(registries: &BTreeMap<String, RegistryConfig>, identity: &IdentityConfig) -> anyhow::Result<Self> {
        let secrets = registries.iter().map(|(host, registry)| {
            let named = [("password", &registry.password), ("token", &registry.token)];
            let secrets: Vec<(String, SecretSource)> = named
                .into_iter()
                .filter_map(|(name, source)| Some((name.to_string(), source.clone()?)))
                .collect();
            (secret_scope(host), secrets)
        });
        let secrets = ConfigSecrets::load(secrets, identity).await?;
        if let Some(bad) = secrets.verify().first() {
            anyhow::bail!("{}.{}: {}", bad.partner, bad.name, bad.source);
        }
        Ok(Self {
            registries: registries.clone(),
            secrets,
        })
    }

    /// How to authenticate to `registry` now.
    async fn auth(&self, registry: &str) -> anyhow::Result<RegistryAuth> {
        let Some(config) = self.registries.get(registry) else {
            return Ok(RegistryAuth::Anonymous);
        };
        let read = |name: &'static str| async move {
            self.secrets
                .get(&secret_scope(registry), name)
                .await
                .map(|secret| secret.expose().to_string())
                .map_err(|err| {
                    let reason = match err {
                        SecretError::Unreadable { reason, .. } => reason.to_string(),
                        SecretError::Unavailable { reason, .. } => reason,
                        SecretError::Unknown { .. } => "not configured".into(),
                    };
                    anyhow::anyhow!("registries.\"{registry}\".{name}: {reason}")
                })
        };
        Ok(match (&config.username, &config.token) {
            (Some(username), _) => RegistryAuth::Basic(username.clone(), read("password").await?),
            (None, Some(_)) => RegistryAuth::Bearer(read("token").await?),
            (None, None) => RegistryAuth::Anonymous,
        })
    }
}

fn secret_scope(registry: &str) -> String {
    format!("registries.\"{registry}\"")
}

/// A component's bytes, verified, and where they came from.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The component's bytes.
    pub wasm: Vec<u8>,
    /// The OCI manifest digest, or the download's `sha256:…`; `None` for a file.
    pub digest: Option<String>,
    /// When the bytes were pulled from the registry or the URL (`None` for a file).
    pub pulled_at: Option<SystemTime>,
    /// Why the registry was not used: it could not be reached, and these bytes are the last
    /// ones pulled for the tag.
    pub stale: Option<String>,
}

/// Fetches components from their sources, verified, through the on-disk cache.
#[derive(Default)]
pub struct Sources {
    store: Option<Store>,
    credentials: Credentials,
}

impl Sources {
    /// Sources that cache under `cache_dir` (`None`: no cache) and sign in to `registries`
    /// with their secrets (a Key Vault secret is read with `identity`).
    pub async fn new(
        cache_dir: Option<PathBuf>,
        registries: &BTreeMap<String, RegistryConfig>,
        identity: &IdentityConfig,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            store: cache_dir.map(Store::new),
            credentials: Credentials::load(registries, identity).await?,
        })
    }

    /// The bytes to start `partner` with. A pinned source is read from the cache when it is
    /// there; a tag is resolved at the registry, and when the registry cannot be reached, the
    /// digest the tag last resolved to is used from the cache, with a warning.
    pub async fn load(&self, partner: &str, source: &ComponentSource) -> anyhow::Result<Fetched> {
        match source {
            ComponentSource::File(path) => read_file(partner, path).await,
            ComponentSource::Https(https) => {
                let sha256 = https
                    .sha256()
                    .map_err(|err| anyhow::anyhow!("partner `{partner}`: {err}"))?;
                if let Some(wasm) = self.store.as_ref().and_then(|store| store.blob(sha256)) {
                    return Ok(cached(wasm, format!("sha256:{sha256}"), None));
                }
                self.download(partner, https, sha256).await
            }
            ComponentSource::Oci(reference) if reference.digest().is_some() => {
                if let Some((record, wasm)) = self.store.as_ref().and_then(|store| store.resolved(reference)) {
                    let pulled_at = record.pulled_at();
                    return Ok(cached(wasm, record.manifest_digest, Some(pulled_at)));
                }
                self.pull(partner, reference, reference).await
            }
            ComponentSource::Oci(reference) => match self.pull(partner, reference, reference).await {
                Ok(fetched) => Ok(fetched),
                Err(err) => {
                    let Some((record, wasm)) = self.store.as_ref().and_then(|store| store.resolved(reference)) else {
                        return Err(err.context(format!(
                            "and no earlier pull of {reference} is in the cache to start from"
                        )));
                    };
                    let reason = format!("{err:#}");
                    tracing::warn!(
                        partner,
                        %reference,
                        digest = %record.manifest_digest,
                        "the registry cannot be reached; starting from the digest the tag last resolved to, \
                         pulled at {}: {reason}",
                        humantime::format_rfc3339_seconds(record.pulled_at())
                    );
                    let mut fetched = cached(wasm, record.manifest_digest.clone(), Some(record.pulled_at()));
                    fetched.stale = Some(reason);
                    Ok(fetched)
                }
            },
        }
    }

    /// The bytes to reload `partner` with, or `None` when the source has not changed: a
    /// file is read again; a tag is resolved, and pulled unless it still names one of
    /// `known` digests; a pinned source never changes.
    pub async fn latest(
        &self,
        partner: &str,
        source: &ComponentSource,
        known: &[&str],
    ) -> anyhow::Result<Option<Fetched>> {
        match source {
            ComponentSource::File(path) => read_file(partner, path).await.map(Some),
            ComponentSource::Https(_) => Ok(None),
            ComponentSource::Oci(reference) if reference.digest().is_some() => Ok(None),
            ComponentSource::Oci(reference) => {
                let auth = self.auth(partner, reference).await?;
                let digest = oci::resolve(reference, &auth)
                    .await
                    .map_err(|err| oci::explain(partner, reference, err))?;
                if known.contains(&digest.as_str()) {
                    return Ok(None);
                }
                self.pull(partner, &reference.at_digest(&digest), reference)
                    .await
                    .map(Some)
            }
        }
    }

    /// Pulls `reference`, verified, and records in the cache what `named` (the reference the
    /// config gives, a tag or the same digest) and the manifest's digest resolve to.
    async fn pull(&self, partner: &str, reference: &OciReference, named: &OciReference) -> anyhow::Result<Fetched> {
        let auth = self.auth(partner, reference).await?;
        let pulled = oci::pull(reference, &auth, self.store.as_ref())
            .await
            .map_err(|err| oci::explain(partner, reference, err))?;
        let pulled_at = SystemTime::now();
        if let Some(store) = &self.store
            && let Err(err) = store.record(named, &pulled, pulled_at)
        {
            tracing::warn!(partner, %reference, "could not cache the pulled component: {err:#}");
        }
        Ok(Fetched {
            wasm: pulled.wasm,
            digest: Some(pulled.manifest_digest),
            pulled_at: Some(pulled_at),
            stale: None,
        })
    }

    async fn auth(&self, partner: &str, reference: &OciReference) -> anyhow::Result<RegistryAuth> {
        self.credentials
            .auth(reference.registry())
            .await
            .map_err(|err| anyhow::anyhow!("partner `{partner}`: pulling {reference}: {err:#}"))
    }

    async fn download(&self, partner: &str, https: &HttpsSource, sha256: &str) -> anyhow::Result<Fetched> {
        let wasm = https.download(partner).await?;
        if let Some(store) = &self.store
            && let Err(err) = store.put_blob(sha256, &wasm)
        {
            tracing::warn!(partner, url = %https.url(), "could not cache the downloaded component: {err:#}");
        }
        Ok(Fetched {
            wasm,
            digest: Some(format!("sha256:{sha256}")),
            pulled_at: Some(SystemTime::now()),
            stale: None,
        })
    }
}

fn cached(wasm: Vec<u8>, digest: String, pulled_at: Option<SystemTime>) -> Fetched {
    Fetched {
        wasm,
        digest: Some(digest),
        pulled_at,
        stale: None,
    }
}

async fn read_file(partner: &str, path: &Path) -> anyhow::Result<Fetched> {
    let wasm = tokio::fs::read(path).await.with_context(|| {
        format!(
            "partner `{partner}`: reading component {} (partners.{partner}.component)",
            path.display()
        )
    })?;
    Ok(Fetched {
        wasm,
        digest: None,
        pulled_at: None,
        stale: None,
    })
}

/// Whether `host` (a name or an address, without port) is this machine: the only place a
/// component may come from over plain HTTP.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests;
