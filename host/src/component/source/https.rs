//! Components downloaded from an `https://` URL, pinned by the SHA-256 the config gives
//! (`component-sha256`): a download that does not match is refused, so a changed or swapped
//! file never runs. Plain `http://` is allowed only to loopback (tests, a local mirror).

use sha2::{Digest as _, Sha256};

use super::{CONNECT_TIMEOUT, MAX_COMPONENT_BYTES, READ_TIMEOUT, is_loopback};

/// An `https://` component and the SHA-256 it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsSource {
    url: reqwest::Url,
    /// Lowercase hex; `None` until `component-sha256` is added, and refused then.
    sha256: Option<String>,
}

impl HttpsSource {
    /// Parses the URL; `http://` only to a loopback host.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(text).map_err(|err| anyhow::anyhow!("`{text}`: {err}"))?;
        let host = url.host_str().unwrap_or_default();
        anyhow::ensure!(
            url.scheme() == "https" || is_loopback(host),
            "`{text}`: plain http:// is refused (anyone on the path could swap the component): use https://"
        );
        Ok(Self { url, sha256: None })
    }

    /// Adds the expected SHA-256 (64 hex digits, any case).
    pub fn with_sha256(self, sha256: Option<&str>) -> anyhow::Result<Self> {
        let sha256 = sha256
            .map(|sha256| {
                let hex = sha256.strip_prefix("sha256:").unwrap_or(sha256).to_ascii_lowercase();
                anyhow::ensure!(
                    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
                    "component-sha256 `{sha256}` is not a SHA-256 (64 hex digits)"
                );
                Ok(hex)
            })
            .transpose()?;
        Ok(Self { sha256, ..self })
    }

    /// The URL.
    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// The expected SHA-256, or the error saying to set one.
    pub fn sha256(&self) -> anyhow::Result<&str> {
        self.sha256.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "{} has no sha256: set component-sha256 = \"<hex>\" beside it (`sha256sum FILE` prints it), \
                 so that only that file runs",
                self.url
            )
        })
    }

    /// Downloads the component and checks its SHA-256.
    pub async fn download(&self, partner: &str) -> anyhow::Result<Vec<u8>> {
        let expected = self
            .sha256()
            .map_err(|err| anyhow::anyhow!("partner `{partner}`: {err}"))?;
        let fail = |what: String| anyhow::anyhow!("partner `{partner}`: downloading {}: {what}", self.url);
        // A client per download: a pinned URL is fetched once, at start, then read from the cache.
        let mut response = client()
            .map_err(|err| fail(err.to_string()))?
            .get(self.url.clone())
            .send()
            .await
            .map_err(|err| fail(format!("{err}; is the server up and reachable from here?")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(fail(format!("the server answered {status}")));
        }
        let mut wasm = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|err| fail(err.to_string()))? {
            wasm.extend_from_slice(&chunk);
            if wasm.len() as u64 > MAX_COMPONENT_BYTES {
                return Err(fail(format!(
                    "more than the {MAX_COMPONENT_BYTES} bytes a component may have"
                )));
            }
        }
        let actual = hex::encode(Sha256::digest(&wasm));
        anyhow::ensure!(
            actual == expected,
            "partner `{partner}`: {} has sha256 {actual}, not the expected {expected} (component-sha256): \
             refusing it; if the new file is the one you mean, pin its sha256",
            self.url
        );
        Ok(wasm)
    }
}

/// The client downloads go through: rustls, timeouts, no redirect to plain HTTP.
fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let host = attempt.url().host_str().unwrap_or_default();
            if attempt.url().scheme() == "https" || is_loopback(host) {
                attempt.follow()
            } else {
                attempt.error("a redirect to plain http:// off loopback")
            }
        }))
        .user_agent(concat!("sagahost/", env!("CARGO_PKG_VERSION")))
        .build()
}
