//! Components in OCI registries, laid out as the wasm OCI artifact convention (CNCF TAG
//! Runtime; what `wkg`, wasmCloud and Spin push and pull): an image manifest whose config has
//! the media type `application/vnd.wasm.config.v0+json` and whose one layer, of media type
//! `application/wasm`, is the component.
//!
//! [`OciReference`] is an `oci://` reference; [`pull`] fetches and verifies one (the manifest
//! against a pinned digest, the layer against the manifest), [`resolve`] asks which digest a
//! tag names now, and [`push`] publishes a component (`sagahost publish`). A registry on
//! loopback is spoken to over plain HTTP, any other over HTTPS only.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::Context as _;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{
    IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciImageManifest,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest as _, Sha256};

use super::store::Store;
use super::{CONNECT_TIMEOUT, MAX_COMPONENT_BYTES, READ_TIMEOUT, is_loopback};
use crate::component::ComponentInfo;

/// Media type of a wasm artifact's config.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// Media type of the layer that is the component.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";

/// `oci://REGISTRY/REPO:TAG` or `oci://REGISTRY/REPO@sha256:…` (a digest wins over a tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciReference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl OciReference {
    /// Parses what follows `oci://`. The registry must be named (no implicit Docker Hub),
    /// and a tag or a digest given (no implicit `latest`).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let whole = format!("oci://{text}");
        let first = text.split('/').next().unwrap_or_default();
        let names_registry = text.contains('/') && (first.contains(['.', ':']) || first == "localhost");
        anyhow::ensure!(
            names_registry,
            "`{whole}` names no registry: write oci://REGISTRY/REPO:TAG, e.g. oci://ghcr.io/contoso/mdm:1.4"
        );
        let parsed = Reference::try_from(text).map_err(|err| anyhow::anyhow!("`{whole}`: {err}"))?;
        let digest = parsed.digest().map(str::to_owned);
        if let Some(digest) = &digest {
            let hex = digest.strip_prefix("sha256:").unwrap_or_default();
            anyhow::ensure!(
                hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
                "`{whole}`: the digest must be sha256: and 64 lowercase hex digits"
            );
        }
        // `Reference` fills in `latest` when no tag is written; the text says whether one was.
        let tag = parsed.tag().filter(|tag| {
            text.split('@')
                .next()
                .is_some_and(|name| name.ends_with(&format!(":{tag}")))
        });
        anyhow::ensure!(
            tag.is_some() || digest.is_some(),
            "`{whole}` has neither a tag nor a digest: add :TAG (polled for new digests) or @sha256:DIGEST (pinned)"
        );
        Ok(Self {
            registry: parsed.registry().to_owned(),
            repository: parsed.repository().to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// `HOST[:PORT]`, the key of its `[registries."…"]` table.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The pinned digest, if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The tag, if one is written.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The same repository at `digest`.
    pub fn at_digest(&self, digest: &str) -> Self {
        Self {
            tag: None,
            digest: Some(digest.to_owned()),
            ..self.clone()
        }
    }

    fn to_oci(&self) -> Reference {
        let (registry, repository) = (self.registry.clone(), self.repository.clone());
        match (&self.tag, &self.digest) {
            (_, Some(digest)) => Reference::with_digest(registry, repository, digest.clone()),
            (Some(tag), None) => Reference::with_tag(registry, repository, tag.clone()),
            (None, None) => unreachable!("parse requires a tag or a digest"),
        }
    }
}

impl fmt::Display for OciReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oci://{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// A client for `registry`: plain HTTP on loopback (or when `plain_http`), HTTPS elsewhere.
fn client(registry: &str, plain_http: bool) -> Client {
    let host = registry.rsplit_once(':').map_or(registry, |(host, _)| host);
    let protocol = if plain_http || is_loopback(host) {
        ClientProtocol::HttpsExcept(vec![registry.to_owned()])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        // A wasm artifact has one manifest; an index is refused, not resolved to a platform.
        platform_resolver: None,
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        user_agent: concat!("sagahost/", env!("CARGO_PKG_VERSION")),
        ..ClientConfig::default()
    })
}

/// The digest `reference`'s tag names now (a HEAD request, nothing downloaded).
pub async fn resolve(reference: &OciReference, auth: &RegistryAuth) -> anyhow::Result<String> {
    let digest = client(&reference.registry, false)
        .fetch_manifest_digest(&reference.to_oci(), auth)
        .await?;
    Ok(digest)
}

/// A pulled component.
pub struct Pulled {
    /// The manifest's digest, `sha256:…`.
    pub manifest_digest: String,
    /// The layer's digest, `sha256:…`, which is the component's content hash.
    pub layer_digest: String,
    /// The component's bytes.
    pub wasm: Vec<u8>,
}

/// Pulls `reference`: its manifest (checked against a pinned digest), then its one wasm layer
/// (checked against the manifest), unless `store` has that layer already.
pub async fn pull(reference: &OciReference, auth: &RegistryAuth, store: Option<&Store>) -> anyhow::Result<Pulled> {
    let client = client(&reference.registry, false);
    let image = reference.to_oci();
    let accepted = [OCI_IMAGE_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE];
    let (body, _) = client.pull_manifest_raw(&image, auth, &accepted).await?;
    let manifest_digest = sha256_digest(&body);
    if let Some(pinned) = &reference.digest {
        check_digest("the manifest", pinned, &manifest_digest)?;
    }
    let layer = wasm_layer(&body)?;
    if let Some(wasm) = store.and_then(|store| store.blob(hex_of(&layer.digest))) {
        return Ok(Pulled {
            manifest_digest,
            layer_digest: layer.digest,
            wasm,
        });
    }
    let mut wasm = Vec::with_capacity(usize::try_from(layer.size).unwrap_or_default());
    client.pull_blob(&image, &layer, &mut wasm).await?;
    check_digest("the wasm layer", &layer.digest, &sha256_digest(&wasm))?;
    if let Some(store) = store
        && let Err(err) = store.put_blob(hex_of(&layer.digest), &wasm)
    {
        tracing::warn!(%reference, "could not cache the pulled component: {err:#}");
    }
    Ok(Pulled {
        manifest_digest,
        layer_digest: layer.digest,
        wasm,
    })
}

/// The one `application/wasm` layer of a wasm artifact's manifest.
pub(super) fn wasm_layer(body: &[u8]) -> anyhow::Result<oci_client::manifest::OciDescriptor> {
    let manifest: OciImageManifest = serde_json::from_slice(body).context("the manifest is not an image manifest")?;
    if manifest.media_type.as_deref() == Some(OCI_IMAGE_INDEX_MEDIA_TYPE) {
        anyhow::bail!("it is an image index, not a wasm component artifact");
    }
    anyhow::ensure!(
        manifest.config.media_type == WASM_CONFIG_MEDIA_TYPE,
        "it is not a wasm component artifact: its config's media type is `{}`, not `{WASM_CONFIG_MEDIA_TYPE}` \
         (push components with `sagahost publish` or `wkg oci push`)",
        manifest.config.media_type
    );
    let [layer] = <[_; 1]>::try_from(manifest.layers).map_err(|layers: Vec<_>| {
        anyhow::anyhow!("a wasm component artifact has one layer, this one has {}", layers.len())
    })?;
    anyhow::ensure!(
        layer.media_type == WASM_LAYER_MEDIA_TYPE,
        "its layer's media type is `{}`, not `{WASM_LAYER_MEDIA_TYPE}`",
        layer.media_type
    );
    anyhow::ensure!(
        u64::try_from(layer.size).is_ok_and(|size| size <= MAX_COMPONENT_BYTES),
        "its layer is {} bytes, more than the {MAX_COMPONENT_BYTES} a component may have",
        layer.size
    );
    anyhow::ensure!(
        layer.digest.starts_with("sha256:"),
        "its layer's digest `{}` is not sha256",
        layer.digest
    );
    Ok(layer)
}

pub(super) fn check_digest(what: &str, expected: &str, actual: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        expected == actual,
        "{what} has digest {actual}, not the expected {expected}: refusing it"
    );
    Ok(())
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// Whether the registry refused the request for want of (the right) credentials.
pub fn refused_credentials(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<OciDistributionError>(),
        Some(
            OciDistributionError::UnauthorizedError { .. }
                | OciDistributionError::AuthenticationFailure(_)
                | OciDistributionError::ServerError { code: 401 | 403, .. }
        )
    )
}

/// A pull or resolve error with the partner, the reference and what to do about it.
pub fn explain(partner: &str, reference: &OciReference, err: anyhow::Error) -> anyhow::Error {
    let registry = &reference.registry;
    let hint = match err.downcast_ref::<OciDistributionError>() {
        _ if refused_credentials(&err) => {
            format!(
                "; the registry refused the credentials: set [registries.\"{registry}\"] username and password, \
                 or token"
            )
        }
        Some(OciDistributionError::RegistryError { .. } | OciDistributionError::ImageManifestNotFoundError(_))
        | Some(OciDistributionError::ServerError { code: 404, .. }) => {
            "; check the repository, tag or digest (`sagahost publish` prints the digest it pushed)".to_owned()
        }
        Some(OciDistributionError::RequestError(_)) => format!("; is {registry} up and reachable from here?"),
        _ => String::new(),
    };
    anyhow::anyhow!("partner `{partner}`: pulling {reference}: {err:#}{hint}")
}

/// What `sagahost publish` annotates the manifest with, beyond `created` and `title`.
#[derive(Debug, Clone, Default)]
pub struct Annotations {
    /// Human-readable title (`org.opencontainers.image.title`).
    pub title: String,
    /// `org.opencontainers.image.version`.
    pub version: Option<String>,
    /// `org.opencontainers.image.source`: where the component's source code is.
    pub source: Option<String>,
}

/// Pushes `wasm` (described by `info`) to `reference`'s tag as a wasm component artifact and
/// returns the manifest's digest. `plain_http` allows HTTP to a registry off loopback.
pub async fn push(
    reference: &OciReference,
    wasm: Vec<u8>,
    info: &ComponentInfo,
    annotations: &Annotations,
    auth: &RegistryAuth,
    plain_http: bool,
) -> anyhow::Result<String> {
    use oci_client::annotations::{
        ORG_OPENCONTAINERS_IMAGE_CREATED, ORG_OPENCONTAINERS_IMAGE_SOURCE, ORG_OPENCONTAINERS_IMAGE_TITLE,
        ORG_OPENCONTAINERS_IMAGE_VERSION,
    };

    anyhow::ensure!(
        reference.tag.is_some() && reference.digest.is_none(),
        "{reference}: publish to a tag (oci://REGISTRY/REPO:TAG); the digest is the registry's to give"
    );
    let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let layer_digest = sha256_digest(&wasm);
    // The config the convention defines; `layerDigests` makes each artifact's config unique.
    let config = serde_json::json!({
        "created": created,
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [layer_digest],
        "component": { "exports": info.exports, "imports": info.imports, "target": null },
    });
    let config = Config::new(serde_json::to_vec(&config)?, WASM_CONFIG_MEDIA_TYPE.to_owned(), None);
    let layer_title = BTreeMap::from([(ORG_OPENCONTAINERS_IMAGE_TITLE.to_owned(), annotations.title.clone())]);
    let layer = ImageLayer::new(wasm, WASM_LAYER_MEDIA_TYPE.to_owned(), Some(layer_title));
    let mut manifest_annotations = BTreeMap::from([
        (ORG_OPENCONTAINERS_IMAGE_CREATED.to_owned(), created),
        (ORG_OPENCONTAINERS_IMAGE_TITLE.to_owned(), annotations.title.clone()),
    ]);
    let optional = [
        (ORG_OPENCONTAINERS_IMAGE_VERSION, &annotations.version),
        (ORG_OPENCONTAINERS_IMAGE_SOURCE, &annotations.source),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            manifest_annotations.insert(key.to_owned(), value.clone());
        }
    }
    let mut manifest = OciImageManifest::build(std::slice::from_ref(&layer), &config, Some(manifest_annotations));
    manifest.media_type = Some(OCI_IMAGE_MEDIA_TYPE.to_owned());

    let client = client(&reference.registry, plain_http);
    let image = reference.to_oci();
    client.store_auth_if_needed(&reference.registry, auth).await;
    client.push_blob(&image, &layer.data, &layer_digest).await?;
    client.push_blob(&image, &config.data, &manifest.config.digest).await?;
    // The bytes pushed are the bytes digested, so the digest printed is the one pulled.
    let body = serde_json::to_vec(&manifest)?;
    let digest = sha256_digest(&body);
    let content_type = http::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE);
    client.push_manifest_raw(&image, body, content_type).await?;
    let resolved = client.fetch_manifest_digest(&image, auth).await?;
    check_digest("the pushed manifest", &digest, &resolved)?;
    Ok(digest)
}
