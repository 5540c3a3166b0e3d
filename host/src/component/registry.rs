//! The loaded partner components, replaceable while messages flow.
//!
//! Each partner has a slot holding its current [`PartnerComponent`]. A message
//! takes the current version when its step starts and keeps it to the end, so
//! a reload never changes the code under a message in flight; new messages get
//! the new version. A reload reads the file, skips it when the content hash is
//! unchanged, compiles and links it on a blocking thread (off the message path)
//! and swaps it in atomically. A file that fails to compile or does not
//! implement the world leaves the old version serving; the error is logged and
//! kept in the partner's status.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::Context as _;
use arc_swap::ArcSwap;

use super::{Limits, PartnerComponent, Runtime};
use crate::telemetry::metrics::{ReloadLabels, metrics};

/// Where a partner's component comes from and how it runs.
#[derive(Debug, Clone)]
pub struct ComponentSpec {
    pub path: PathBuf,
    pub limits: Limits,
    pub config: BTreeMap<String, String>,
}

/// The result of a successful reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The file's content hash did not change.
    Unchanged { version: String },
    /// A new version now serves new messages.
    Replaced { from: String, to: String },
}

/// What an operator sees about one partner's component.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SlotStatus {
    pub partner: String,
    pub path: PathBuf,
    /// Content hash of the version serving new messages.
    pub version: String,
    pub size: usize,
    /// Successful reloads that replaced the version.
    pub reloads: u64,
    /// Reloads that failed (the old version kept serving).
    pub failed_reloads: u64,
    /// The last reload error, cleared by the next successful reload.
    pub last_error: Option<String>,
    /// When the serving version was loaded.
    pub loaded_at: SystemTime,
}

struct Slot {
    spec: ComponentSpec,
    current: ArcSwap<PartnerComponent>,
    status: Mutex<SlotStatus>,
    // One reload at a time per partner, so two never race to swap.
    reloading: tokio::sync::Mutex<()>,
}

/// Every partner's current component.
pub struct Registry {
    runtime: Arc<Runtime>,
    slots: BTreeMap<String, Slot>,
}

impl Registry {
    /// An empty registry on `runtime`.
    pub fn new(runtime: Runtime) -> Self {
        Self {
            runtime: Arc::new(runtime),
            slots: BTreeMap::new(),
        }
    }

    /// Loads `partner`'s first version; fails (naming the partner and the file)
    /// if it cannot.
    pub fn add(&mut self, partner: &str, spec: ComponentSpec) -> anyhow::Result<()> {
        let component = load(&self.runtime, partner, &spec)?;
        let status = Mutex::new(SlotStatus {
            partner: partner.to_string(),
            path: spec.path.clone(),
            version: component.info().version.clone(),
            size: component.info().size,
            reloads: 0,
            failed_reloads: 0,
            last_error: None,
            loaded_at: SystemTime::now(),
        });
        let slot = Slot {
            spec,
            current: ArcSwap::from_pointee(component),
            status,
            reloading: Default::default(),
        };
        self.slots.insert(partner.to_string(), slot);
        Ok(())
    }

    /// The version serving new messages for `partner`.
    pub fn current(&self, partner: &str) -> Option<Arc<PartnerComponent>> {
        self.slots.get(partner).map(|slot| slot.current.load_full())
    }

    /// Partner names, sorted.
    pub fn partners(&self) -> impl Iterator<Item = &str> {
        self.slots.keys().map(String::as_str)
    }

    /// The partner whose component file is `path`, if any.
    pub fn partner_for_path(&self, path: &std::path::Path) -> Option<&str> {
        self.slots
            .iter()
            .find(|(_, slot)| slot.spec.path == path)
            .map(|(name, _)| name.as_str())
    }

    /// Every partner's status.
    pub fn status(&self) -> Vec<SlotStatus> {
        self.slots
            .values()
            .map(|slot| slot.status.lock().expect("status lock").clone())
            .collect()
    }

    /// Reloads `partner` from its file. On failure the old version keeps serving.
    pub async fn reload(&self, partner: &str) -> anyhow::Result<Reloaded> {
        let slot = self
            .slots
            .get(partner)
            .with_context(|| format!("no partner named `{partner}`"))?;
        let _one_at_a_time = slot.reloading.lock().await;
        let runtime = self.runtime.clone();
        let (name, spec) = (partner.to_string(), slot.spec.clone());
        let from = slot.current.load().info().version.clone();
        let wasm = tokio::fs::read(&spec.path)
            .await
            .with_context(|| format!("partner `{partner}`: reading {}", spec.path.display()));
        let result = match wasm {
            Ok(wasm) if super::cache::content_hash(&wasm) == from => {
                count_reload(partner, "unchanged");
                return Ok(Reloaded::Unchanged { version: from });
            }
            Ok(wasm) => tokio::task::spawn_blocking(move || runtime.load(&name, &wasm, spec.limits, spec.config))
                .await
                .context("the compile task failed")
                .and_then(|r| r),
            Err(err) => Err(err),
        };
        let mut status = slot.status.lock().expect("status lock");
        match result {
            Ok(component) => {
                let to = component.info().version.clone();
                status.version = to.clone();
                status.size = component.info().size;
                status.reloads += 1;
                status.last_error = None;
                status.loaded_at = SystemTime::now();
                slot.current.store(Arc::new(component));
                tracing::info!(partner, from = %from, to = %to, "component reloaded");
                count_reload(partner, "replaced");
                Ok(Reloaded::Replaced { from, to })
            }
            Err(err) => {
                status.failed_reloads += 1;
                status.last_error = Some(format!("{err:#}"));
                tracing::error!(partner, version = %from, "reload failed, the old version keeps serving: {err:#}");
                count_reload(partner, "failed");
                Err(err)
            }
        }
    }
}

fn load(runtime: &Runtime, partner: &str, spec: &ComponentSpec) -> anyhow::Result<PartnerComponent> {
    let wasm = std::fs::read(&spec.path).with_context(|| {
        format!(
            "partner `{partner}`: reading component {} (partners.{partner}.component)",
            spec.path.display()
        )
    })?;
    runtime.load(partner, &wasm, spec.limits.clone(), spec.config.clone())
}

fn count_reload(partner: &str, result: &str) {
    let labels = ReloadLabels {
        partner: partner.to_string(),
        result: result.to_string(),
    };
    metrics().reloads.get_or_create(&labels).inc();
}
