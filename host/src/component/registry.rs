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
//!
//! A component from an OCI tag is polled the same way ([`Registry::poll`]): a new digest is
//! pulled and swapped in as a reload; a registry that cannot be reached leaves the running
//! version serving, and shows in the status (`last_pull_error`) and in
//! `sagahost_component_source_failures_total`.
//!
//! A partner can also run a *canary*: a candidate version that handles a
//! percentage of new messages. Each message's result is recorded per arm over a
//! sliding window; once the candidate has a full window and its failure rate
//! exceeds the stable version's by more than the configured margin, it is
//! rolled back by itself. Otherwise an operator promotes (or aborts) it.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::Context as _;
use arc_swap::{ArcSwap, ArcSwapOption};

use super::source::{ComponentSource, Fetched, Sources};
use super::{Limits, PartnerComponent, Runtime};
use crate::telemetry::metrics::{PartnerLabels, ReloadLabels, metrics};

/// Where a partner's component comes from and how it runs.
#[derive(Debug, Clone)]
pub struct ComponentSpec {
    /// A file, an OCI reference or a pinned URL.
    pub source: ComponentSource,
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
    /// The component file, when the component is a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Where the component comes from: the file, `oci://…` or `https://…`.
    pub source: String,
    /// The OCI manifest digest (or the download's `sha256:…`) of the version serving new
    /// messages; `None` for a file.
    pub digest: Option<String>,
    /// When the serving version was last pulled, or checked against the registry.
    pub last_pulled_at: Option<SystemTime>,
    /// Why the last pull or check failed (the running version kept serving), cleared by the
    /// next that succeeds.
    pub last_pull_error: Option<String>,
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
    /// The running canary, if any.
    pub canary: Option<CanaryStatus>,
    /// How the last canary ended (promoted, aborted, rolled back and why).
    pub last_canary: Option<String>,
    /// What happened to the partner's versions, newest first, at most [`HISTORY_LEN`].
    pub history: VecDeque<VersionEvent>,
}

/// How many [`VersionEvent`]s a partner's status keeps.
pub const HISTORY_LEN: usize = 20;

/// One change, or failed change, of the version a partner runs.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct VersionEvent {
    pub at: SystemTime,
    pub kind: VersionEventKind,
    /// The version before the event, when one was serving.
    pub from: Option<String>,
    /// The version the event is about (the new one, or the candidate).
    pub to: Option<String>,
    /// The error, or why a canary ended.
    pub detail: Option<String>,
}

/// What a [`VersionEvent`] was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VersionEventKind {
    /// The first version, loaded at start.
    Loaded,
    Replaced,
    /// A reload found the same content.
    Unchanged,
    /// A reload or a pull failed; the old version kept serving.
    Failed,
    CanaryStarted,
    Promoted,
    Aborted,
    /// The candidate failed too often and was rolled back.
    RolledBack,
    /// Another replica ended the canary (shared canaries).
    CanaryEnded,
}

impl SlotStatus {
    /// Notes `kind` in the history, dropping the oldest beyond [`HISTORY_LEN`].
    fn note(&mut self, kind: VersionEventKind, from: Option<&str>, to: Option<&str>, detail: Option<String>) {
        self.history.push_front(VersionEvent {
            at: SystemTime::now(),
            kind,
            from: from.map(str::to_string),
            to: to.map(str::to_string),
            detail,
        });
        self.history.truncate(HISTORY_LEN);
    }

    /// Notes how a canary ended, in `last_canary` and the history.
    fn canary_ended(&mut self, kind: VersionEventKind, candidate: Option<&str>, reason: String) {
        let from = self.version.clone();
        self.note(kind, Some(&from), candidate, Some(reason.clone()));
        self.last_canary = Some(reason);
    }
}

/// How a canary should run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CanaryPlan {
    /// The candidate component: a file, `oci://…` or `https://…` (with `component-sha256`).
    pub component: ComponentSource,
    /// With an `https://` component, the SHA-256 it must have.
    pub component_sha256: Option<String>,
    /// Share of new messages the candidate handles, 1–100.
    pub percent: u8,
    /// How much higher than the stable version's the candidate's failure rate
    /// may be (0.05 = five percentage points) before it is rolled back.
    #[serde(default = "default_margin")]
    pub margin: f64,
    /// Results per arm the rates are computed over; the candidate is judged
    /// once it has this many.
    #[serde(default = "default_window")]
    pub window: usize,
}

fn default_margin() -> f64 {
    0.05
}
fn default_window() -> usize {
    50
}

/// A running canary as the admin status shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CanaryStatus {
    pub version: String,
    pub percent: u8,
    pub margin: f64,
    pub window: usize,
    pub candidate_results: usize,
    pub candidate_failures: usize,
    pub stable_results: usize,
    pub stable_failures: usize,
}

struct Canary {
    component: Arc<PartnerComponent>,
    plan: CanaryPlan,
    results: Mutex<Arms>,
}

/// Recent results (true = failed) of each arm.
#[derive(Default)]
struct Arms {
    stable: VecDeque<bool>,
    candidate: VecDeque<bool>,
}

fn rate(results: &VecDeque<bool>) -> f64 {
    if results.is_empty() {
        0.0
    } else {
        results.iter().filter(|f| **f).count() as f64 / results.len() as f64
    }
}

/// The component chosen for one message.
pub struct Picked {
    pub component: Arc<PartnerComponent>,
    /// Which arm of a canary (if one runs) it belongs to.
    pub arm: Arm,
}

/// The two arms of a canary: the version that runs today and the candidate
/// taking a share of the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    Stable,
    Candidate,
}

struct Slot {
    spec: ComponentSpec,
    current: ArcSwap<PartnerComponent>,
    canary: ArcSwapOption<Canary>,
    status: Mutex<SlotStatus>,
    // One reload at a time per partner, so two never race to swap. It holds the digest whose
    // load last failed, which polling does not try again until the tag moves on.
    reloading: tokio::sync::Mutex<Option<String>>,
}

impl Slot {
    /// Records a reload that failed (the old version, `from`, keeps serving) and returns its
    /// error; a `digest` that failed is remembered so polling does not pull it again.
    fn reload_failed(
        &self,
        partner: &str,
        from: &str,
        err: anyhow::Error,
        digest: Option<String>,
        refused: &mut Option<String>,
    ) -> anyhow::Error {
        let err = match &digest {
            Some(digest) => err.context(format!("{} at {digest}", self.spec.source)),
            None => err,
        };
        let mut status = self.status.lock().expect("status lock");
        status.failed_reloads += 1;
        status.last_error = Some(format!("{err:#}"));
        let detail = status.last_error.clone();
        status.note(VersionEventKind::Failed, Some(from), None, detail);
        *refused = digest;
        tracing::error!(partner, version = %from, "reload failed, the old version keeps serving: {err:#}");
        count_reload(partner, "failed");
        err
    }

    /// Makes `component` the version new messages get; returns its version.
    fn serve(&self, component: Arc<PartnerComponent>) -> String {
        let version = component.info().version.clone();
        let mut status = self.status.lock().expect("status lock");
        status.version = version.clone();
        status.size = component.info().size;
        status.loaded_at = SystemTime::now();
        self.current.store(component);
        version
    }
}

/// Every partner's current component.
pub struct Registry {
    runtime: Arc<Runtime>,
    sources: Sources,
    slots: BTreeMap<String, Slot>,
}

impl Registry {
    /// An empty registry on `runtime` that reads files and pulls anonymously, uncached.
    pub fn new(runtime: Runtime) -> Self {
        Self::with_sources(runtime, Sources::default())
    }

    /// An empty registry on `runtime` that fetches components through `sources`.
    pub fn with_sources(runtime: Runtime, sources: Sources) -> Self {
        Self {
            runtime: Arc::new(runtime),
            sources,
            slots: BTreeMap::new(),
        }
    }

    /// Loads `partner`'s first version; fails (naming the partner and the source)
    /// if it cannot.
    pub async fn add(&mut self, partner: &str, spec: ComponentSpec) -> anyhow::Result<()> {
        let fetched = self.sources.load(partner, &spec.source).await?;
        if fetched.stale.is_some() {
            count_source_failure(partner);
        }
        let component = self
            .runtime
            .load(partner, &fetched.wasm, spec.limits.clone(), spec.config.clone())
            .map_err(|err| match spec.source.file() {
                Some(_) => err,
                None => err.context(format!("the component from {}", spec.source)),
            })?;
        let status = Mutex::new(SlotStatus {
            partner: partner.to_string(),
            path: spec.source.file().map(Path::to_path_buf),
            source: spec.source.to_string(),
            digest: fetched.digest,
            last_pulled_at: fetched.pulled_at,
            last_pull_error: fetched.stale,
            version: component.info().version.clone(),
            size: component.info().size,
            reloads: 0,
            failed_reloads: 0,
            last_error: None,
            loaded_at: SystemTime::now(),
            canary: None,
            last_canary: None,
            history: VecDeque::new(),
        });
        let version = component.info().version.clone();
        status
            .lock()
            .expect("status lock")
            .note(VersionEventKind::Loaded, None, Some(&version), None);
        let slot = Slot {
            spec,
            current: ArcSwap::from_pointee(component),
            canary: ArcSwapOption::empty(),
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
    pub fn partner_for_path(&self, path: &Path) -> Option<&str> {
        self.slots
            .iter()
            .find(|(_, slot)| slot.spec.source.file() == Some(path))
            .map(|(name, _)| name.as_str())
    }

    /// The component files of the partners whose component is a file.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.slots.values().filter_map(|slot| slot.spec.source.file())
    }

    /// The partners whose component is an OCI tag, which [`Registry::poll`] checks.
    pub fn polled(&self) -> impl Iterator<Item = &str> {
        self.slots
            .iter()
            .filter(|(_, slot)| slot.spec.source.is_polled())
            .map(|(name, _)| name.as_str())
    }

    /// Every partner's status.
    pub fn status(&self) -> Vec<SlotStatus> {
        self.slots
            .values()
            .map(|slot| {
                let mut status = slot.status.lock().expect("status lock").clone();
                status.canary = slot.canary.load().as_ref().map(|canary| {
                    let arms = canary.results.lock().expect("canary lock");
                    CanaryStatus {
                        version: canary.component.info().version.clone(),
                        percent: canary.plan.percent,
                        margin: canary.plan.margin,
                        window: canary.plan.window,
                        candidate_results: arms.candidate.len(),
                        candidate_failures: arms.candidate.iter().filter(|f| **f).count(),
                        stable_results: arms.stable.len(),
                        stable_failures: arms.stable.iter().filter(|f| **f).count(),
                    }
                });
                status
            })
            .collect()
    }

    /// The component for one new message: the canary candidate for its share of
    /// messages, else the current version.
    pub fn pick(&self, partner: &str) -> Option<Picked> {
        let slot = self.slots.get(partner)?;
        if let Some(canary) = slot.canary.load_full()
            && rand::random_range(0..100u8) < canary.plan.percent
        {
            return Some(Picked {
                component: canary.component.clone(),
                arm: Arm::Candidate,
            });
        }
        Some(Picked {
            component: slot.current.load_full(),
            arm: Arm::Stable,
        })
    }

    /// Records how one message went on the arm that handled it, and rolls the
    /// canary back when the candidate fails too often.
    pub fn record(&self, partner: &str, arm: Arm, failed: bool) {
        let Some(slot) = self.slots.get(partner) else { return };
        let Some(running) = slot.canary.load_full() else { return };
        let verdict = {
            let mut arms = running.results.lock().expect("canary lock");
            let window = running.plan.window.max(1);
            let results = match arm {
                Arm::Candidate => &mut arms.candidate,
                Arm::Stable => &mut arms.stable,
            };
            results.push_back(failed);
            if results.len() > window {
                results.pop_front();
            }
            let (candidate, stable) = (rate(&arms.candidate), rate(&arms.stable));
            (arms.candidate.len() >= window && candidate > stable + running.plan.margin).then(|| {
                format!(
                    "rolled back {}: the candidate failed {:.0}% of its last {} messages, the stable version {:.0}%, \
                     allowed margin {:.0} points",
                    running.component.info().version,
                    candidate * 100.0,
                    arms.candidate.len(),
                    stable * 100.0,
                    running.plan.margin * 100.0
                )
            })
        };
        if let Some(reason) = verdict {
            // Only the first recorder to reach the verdict rolls back.
            let previous = slot.canary.compare_and_swap(&running, None::<Arc<Canary>>);
            if previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, &running)) {
                tracing::warn!(partner, "canary {reason}");
                let candidate = running.component.info().version.as_str();
                slot.status.lock().expect("status lock").canary_ended(
                    VersionEventKind::RolledBack,
                    Some(candidate),
                    reason,
                );
            }
        }
    }

    /// Starts a canary of `plan.component` for `partner`; replaces a running one.
    pub async fn start_canary(&self, partner: &str, plan: CanaryPlan) -> anyhow::Result<String> {
        let slot = self.slot(partner)?;
        anyhow::ensure!(
            (1..=100).contains(&plan.percent),
            "canary percent must be between 1 and 100"
        );
        let source = plan.component.clone().pinned(plan.component_sha256.as_deref())?;
        let fetched = self.sources.load(partner, &source).await?;
        let (runtime, name, spec) = (self.runtime.clone(), partner.to_string(), slot.spec.clone());
        let component =
            tokio::task::spawn_blocking(move || runtime.load(&name, &fetched.wasm, spec.limits, spec.config)).await??;
        let version = component.info().version.clone();
        let canary = Canary {
            component: Arc::new(component),
            plan,
            results: Default::default(),
        };
        let share = format!("{}% of new messages", canary.plan.percent);
        slot.canary.store(Some(Arc::new(canary)));
        let mut status = slot.status.lock().expect("status lock");
        let from = status.version.clone();
        status.note(
            VersionEventKind::CanaryStarted,
            Some(&from),
            Some(&version),
            Some(share),
        );
        tracing::info!(partner, %version, "canary started");
        Ok(version)
    }

    /// Makes the canary candidate the current version.
    pub fn promote_canary(&self, partner: &str) -> anyhow::Result<String> {
        let (slot, canary) = self.take_canary(partner)?;
        let from = slot.current.load().info().version.clone();
        let version = slot.serve(canary.component.clone());
        let mut status = slot.status.lock().expect("status lock");
        status.note(VersionEventKind::Promoted, Some(&from), Some(&version), None);
        status.last_canary = Some(format!("promoted {version}"));
        tracing::info!(partner, %version, "canary promoted");
        Ok(version)
    }

    /// Stops the canary; the current version takes all messages again.
    pub fn abort_canary(&self, partner: &str) -> anyhow::Result<String> {
        let (slot, canary) = self.take_canary(partner)?;
        let version = canary.component.info().version.clone();
        slot.status.lock().expect("status lock").canary_ended(
            VersionEventKind::Aborted,
            Some(&version),
            format!("aborted {version}"),
        );
        tracing::info!(partner, %version, "canary aborted");
        Ok(version)
    }

    /// Ends the canary, if one runs, for `reason` decided elsewhere (another replica's abort or
    /// rollback); the current version takes all messages again.
    pub fn end_canary(&self, partner: &str, reason: String) {
        if let Ok((slot, canary)) = self.take_canary(partner) {
            let candidate = canary.component.info().version.as_str();
            slot.status.lock().expect("status lock").canary_ended(
                VersionEventKind::CanaryEnded,
                Some(candidate),
                reason,
            );
        }
    }

    fn slot(&self, partner: &str) -> anyhow::Result<&Slot> {
        self.slots
            .get(partner)
            .with_context(|| format!("no partner named `{partner}`"))
    }

    /// Ends `partner`'s canary and hands it over.
    fn take_canary(&self, partner: &str) -> anyhow::Result<(&Slot, Arc<Canary>)> {
        let slot = self.slot(partner)?;
        let canary = slot
            .canary
            .swap(None)
            .with_context(|| format!("partner `{partner}` has no canary running"))?;
        Ok((slot, canary))
    }

    /// Reloads `partner` from its source: a file is read again, a tag resolved (and a new
    /// digest pulled); a pinned source does not change. On failure the old version keeps
    /// serving.
    pub async fn reload(&self, partner: &str) -> anyhow::Result<Reloaded> {
        self.refresh(partner, false).await
    }

    /// Checks `partner`'s tag for a new digest and swaps it in as [`Registry::reload`] does.
    /// A digest that failed to load is not pulled again until the tag moves on; a check that
    /// finds nothing new is not counted as a reload.
    pub async fn poll(&self, partner: &str) -> anyhow::Result<Reloaded> {
        self.refresh(partner, true).await
    }

    async fn refresh(&self, partner: &str, polled: bool) -> anyhow::Result<Reloaded> {
        let slot = self.slot(partner)?;
        let mut refused = slot.reloading.lock().await;
        let from = slot.current.load().info().version.clone();
        let serving = slot.status.lock().expect("status lock").digest.clone();
        let skip = refused.as_ref().filter(|_| polled);
        let known: Vec<&str> = serving.iter().chain(skip).map(String::as_str).collect();
        // Only a tag is asked about (a file is read, a pinned source never changes).
        let asks_registry = slot.spec.source.is_polled();
        let fetched = match self.sources.latest(partner, &slot.spec.source, &known).await {
            Ok(fetched) => fetched,
            Err(err) if asks_registry => {
                let mut status = slot.status.lock().expect("status lock");
                status.last_pull_error = Some(format!("{err:#}"));
                let detail = status.last_pull_error.clone();
                status.note(VersionEventKind::Failed, Some(&from), None, detail);
                drop(status);
                count_source_failure(partner);
                tracing::warn!(partner, version = %from, "the component's source failed, the running version keeps serving: {err:#}");
                return Err(err);
            }
            Err(err) => return Err(slot.reload_failed(partner, &from, err, None, &mut refused)),
        };
        if asks_registry {
            let mut status = slot.status.lock().expect("status lock");
            status.last_pull_error = None;
            status.last_pulled_at = Some(SystemTime::now());
        }
        let fetched = match fetched {
            Some(fetched) if super::cache::content_hash(&fetched.wasm) != from => fetched,
            unchanged => {
                // A tag moved to a new manifest of the same component: note its digest.
                if let Some(Fetched { digest, .. }) = unchanged {
                    slot.status.lock().expect("status lock").digest = digest;
                }
                if !polled {
                    count_reload(partner, "unchanged");
                    let mut status = slot.status.lock().expect("status lock");
                    status.note(VersionEventKind::Unchanged, Some(&from), Some(&from), None);
                }
                return Ok(Reloaded::Unchanged { version: from });
            }
        };
        let digest = fetched.digest.clone();
        let (runtime, name, spec) = (self.runtime.clone(), partner.to_string(), slot.spec.clone());
        let loaded = tokio::task::spawn_blocking(move || runtime.load(&name, &fetched.wasm, spec.limits, spec.config))
            .await
            .context("the compile task failed")
            .and_then(|r| r);
        let component = match loaded {
            Ok(component) => component,
            Err(err) => return Err(slot.reload_failed(partner, &from, err, digest, &mut refused)),
        };
        let to = slot.serve(Arc::new(component));
        let mut status = slot.status.lock().expect("status lock");
        status.note(VersionEventKind::Replaced, Some(&from), Some(&to), None);
        status.reloads += 1;
        status.last_error = None;
        status.digest = digest;
        *refused = None;
        tracing::info!(partner, from = %from, to = %to, digest = ?status.digest, "component reloaded");
        count_reload(partner, "replaced");
        Ok(Reloaded::Replaced { from, to })
    }
}

fn count_source_failure(partner: &str) {
    let labels = PartnerLabels {
        partner: partner.to_string(),
    };
    metrics().component_source_failures.get_or_create(&labels).inc();
}

fn count_reload(partner: &str, result: &str) {
    let labels = ReloadLabels {
        partner: partner.to_string(),
        result: result.to_string(),
    };
    metrics().reloads.get_or_create(&labels).inc();
}
