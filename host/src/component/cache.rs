//! The on-disk cache of compiled components, keyed by content hash.
//!
//! Compiling a component with Cranelift takes from hundreds of milliseconds to
//! seconds; loading a precompiled artifact takes about a millisecond. Artifacts
//! are named `<sha256 of the .wasm>-<engine compatibility hash>.cwasm`, so a new
//! wasmtime version or different engine settings never load a stale artifact.
//! Files are written to a temporary name and renamed into place, so concurrent
//! hosts sharing a cache directory never see half-written files.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Hex SHA-256 of a component's bytes: the identity of a component version.
pub fn content_hash(wasm: &[u8]) -> String {
    hex::encode(Sha256::digest(wasm))
}

/// Compiles `wasm`, or loads its compiled artifact from `cache_dir` when present.
///
/// `cache_dir` of `None` disables the cache.
pub fn compile_cached(engine: &Engine, wasm: &[u8], hash: &str, cache_dir: Option<&Path>) -> anyhow::Result<Component> {
    let Some(dir) = cache_dir else {
        return Ok(Component::new(engine, wasm)?);
    };
    let path = artifact_path(engine, dir, hash);
    if path.exists() {
        // SAFETY: the file was written by `Engine::precompile_component` of an
        // engine with the same compatibility hash (it is in the name), into a
        // directory the operator controls, and renamed into place whole.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => return Ok(component),
            Err(err) => tracing::warn!(path = %path.display(), "ignoring unreadable compiled artifact: {err:#}"),
        }
    }
    let artifact = engine.precompile_component(wasm)?;
    store_artifact(dir, &path, &artifact).with_context(|| format!("writing compiled artifact {}", path.display()))?;
    drop(artifact);
    // Loaded from the file rather than from `artifact`: the file is mapped, so its pages are
    // shared with every other load of the same component and paged in only where used, where
    // an in-memory copy would stay resident whole (tens of MB for a JavaScript or Python
    // component).
    // SAFETY: the file was written just now from this engine's `precompile_component`.
    Ok(unsafe { Component::deserialize_file(engine, &path) }?)
}

fn artifact_path(engine: &Engine, dir: &Path, hash: &str) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    dir.join(format!("{hash}-{:016x}.cwasm", hasher.finish()))
}

fn store_artifact(dir: &Path, path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        std::process::id(),
        path.file_name().unwrap_or_default().display()
    ));
    std::fs::write(&tmp, artifact)?;
    std::fs::rename(&tmp, path)
}
