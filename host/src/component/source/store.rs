//! The on-disk cache of fetched components, under `data-dir/sources`, beside the compiled
//! artifacts:
//!
//! - `blobs/<sha256>.wasm`: a component by the SHA-256 of its bytes (an OCI layer's digest, a
//!   download's pin), checked again whenever it is read, so a damaged file is fetched anew;
//! - `refs/<sha256 of the reference>.json`: what an `oci://` reference (a tag, or a digest)
//!   resolved to when last pulled: the manifest digest, the layer digest and when.
//!
//! Files are written to a temporary name and renamed into place, so hosts sharing the
//! directory never read half a file.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};

use super::oci::{OciReference, Pulled};

/// The cache directory.
pub struct Store {
    dir: PathBuf,
}

/// What a reference resolved to when it was last pulled.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub reference: String,
    pub manifest_digest: String,
    pub layer_digest: String,
    /// Seconds since the Unix epoch.
    pub pulled_at: u64,
}

impl Record {
    /// When it was pulled.
    pub fn pulled_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.pulled_at)
    }
}

impl Store {
    /// A cache in `dir`, created on first write.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The component whose SHA-256 is `sha256` (hex), if cached and intact.
    pub fn blob(&self, sha256: &str) -> Option<Vec<u8>> {
        let path = self.blob_path(sha256);
        let wasm = std::fs::read(&path).ok()?;
        if hex::encode(Sha256::digest(&wasm)) != sha256 {
            tracing::warn!(path = %path.display(), "ignoring a cached component whose content does not match its name");
            return None;
        }
        Some(wasm)
    }

    /// Caches a component whose SHA-256 is `sha256` (hex).
    pub fn put_blob(&self, sha256: &str, wasm: &[u8]) -> std::io::Result<()> {
        write_whole(&self.blob_path(sha256), wasm)
    }

    /// What `reference` last resolved to, with the component, if both are cached.
    pub fn resolved(&self, reference: &OciReference) -> Option<(Record, Vec<u8>)> {
        let text = std::fs::read(self.record_path(reference)).ok()?;
        let record: Record = serde_json::from_slice(&text).ok()?;
        let wasm = self.blob(record.layer_digest.strip_prefix("sha256:")?)?;
        Some((record, wasm))
    }

    /// Records that `reference` (and the manifest's digest) resolved to `pulled`.
    pub fn record(&self, reference: &OciReference, pulled: &Pulled, at: SystemTime) -> std::io::Result<()> {
        let pulled_at = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
        let by_digest = reference.at_digest(&pulled.manifest_digest);
        for reference in [reference, &by_digest] {
            let record = Record {
                reference: reference.to_string(),
                manifest_digest: pulled.manifest_digest.clone(),
                layer_digest: pulled.layer_digest.clone(),
                pulled_at,
            };
            let json = serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?;
            write_whole(&self.record_path(reference), &json)?;
        }
        Ok(())
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.dir.join("blobs").join(format!("{sha256}.wasm"))
    }

    fn record_path(&self, reference: &OciReference) -> PathBuf {
        let name = hex::encode(Sha256::digest(reference.to_string().as_bytes()));
        self.dir.join("refs").join(format!("{name}.json"))
    }
}

fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache paths are inside the cache directory");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        std::process::id(),
        path.file_name().unwrap_or_default().display()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
