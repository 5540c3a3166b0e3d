//! Canaries shared by every replica of a deployment, through the transport.
//!
//! Replicas compete for the same queues, so a canary must run on all of them or its share of
//! the traffic is wrong and its verdict comes from a fraction of it. Each partner's canary is
//! one record, kept as the session state of the session `canary/<partner>` on the
//! session-enabled control queue (`[fleet] control-queue`): Service Bus keeps session state
//! durably, needs no other store, and the session lock makes each write whole. An operator
//! starts, promotes or aborts a canary through any replica's admin API; that replica applies it
//! at once and writes the record. Every replica reads the records every `poll-interval-ms` and
//! applies any record newer than the last it applied.
//!
//! The rollback decision uses each replica's own counts: the replica whose candidate first
//! fails past the margin over its window rolls back, and writes the rollback into the record,
//! so every replica follows within a poll. Counts are not pooled, because that would need a
//! write per message; with replicas that see similar traffic, the first to judge sees what the
//! others would.
//!
//! A record is applied whatever its age while its canary runs (a replica that starts mid-canary,
//! such as one KEDA adds, joins it). A finished record (promoted, aborted, rolled back) older
//! than the replica is not: the replica serves the version its config names, so a promotion
//! lasts across restarts only once the config (or the tag it names) moves to the new version.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use sagahost_transport::HostTransport;
use sagahost_transport::sessions::Sessions;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::component::{CanaryPlan, Registry};
use crate::config::FleetConfig;

/// How long a write keeps trying while another replica holds the record's session.
const WRITE_PATIENCE: Duration = Duration::from_secs(10);
/// How long one attempt waits for the session.
const ACCEPT_WAIT: Duration = Duration::from_secs(2);

/// Where a partner's canary stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum CanaryState {
    Running,
    Promoted,
    Aborted,
    RolledBack { reason: String },
}

/// One partner's canary as every replica sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CanaryRecord {
    /// Milliseconds since the Unix epoch of the write, made larger than the record it replaces:
    /// a replica applies a record once, when its revision is new to it.
    pub revision: u64,
    /// The replica that wrote it (its host name).
    pub by: String,
    pub plan: CanaryPlan,
    /// The candidate's content hash.
    pub version: String,
    #[serde(flatten)]
    pub state: CanaryState,
}

/// The shared canaries of one replica.
pub struct SharedCanaries {
    transport: Arc<HostTransport>,
    registry: Arc<Registry>,
    fleet: FleetConfig,
    replica: String,
    started: u64,
    /// Per partner, the revision of the last record applied or written here.
    applied: Mutex<BTreeMap<String, u64>>,
    /// Whether the last read failed: a failure is logged once as a warning, until a read works.
    failing: std::sync::atomic::AtomicBool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// This replica's name: the pod's host name on Kubernetes.
fn replica_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| format!("pid-{}", std::process::id()))
}

fn session_of(partner: &str) -> String {
    format!("canary/{partner}")
}

impl SharedCanaries {
    pub fn new(transport: Arc<HostTransport>, registry: Arc<Registry>, fleet: FleetConfig) -> Self {
        Self {
            transport,
            registry,
            fleet,
            replica: replica_name(),
            started: now_ms(),
            applied: Mutex::new(BTreeMap::new()),
            failing: Default::default(),
        }
    }

    /// Starts `partner`'s canary here, then on every replica.
    pub async fn start(&self, partner: &str, plan: CanaryPlan) -> anyhow::Result<String> {
        let version = self.registry.start_canary(partner, plan.clone()).await?;
        let record = |revision| CanaryRecord {
            revision,
            by: self.replica.clone(),
            plan: plan.clone(),
            version: version.clone(),
            state: CanaryState::Running,
        };
        if let Err(err) = self.write(partner, record).await {
            // Not shared, so not started: one replica alone would skew the canary's share.
            let _ = self.registry.abort_canary(partner);
            return Err(err);
        }
        Ok(version)
    }

    /// Promotes `partner`'s canary here, then on every replica.
    pub async fn promote(&self, partner: &str) -> anyhow::Result<String> {
        self.finish(partner, CanaryState::Promoted).await
    }

    /// Aborts `partner`'s canary here, then on every replica.
    pub async fn abort(&self, partner: &str) -> anyhow::Result<String> {
        self.finish(partner, CanaryState::Aborted).await
    }

    async fn finish(&self, partner: &str, state: CanaryState) -> anyhow::Result<String> {
        let running = self
            .read(partner)
            .await?
            .filter(|record| record.state == CanaryState::Running)
            .with_context(|| format!("partner `{partner}` has no canary running on the fleet"))?;
        let version = match state {
            CanaryState::Promoted => self.registry.promote_canary(partner),
            _ => self.registry.abort_canary(partner),
        };
        // A replica that could not load the candidate has none: the record still ends it.
        if let Err(err) = &version {
            tracing::warn!(partner, "ending the fleet's canary; this replica had none: {err:#}");
        }
        let record = |revision| CanaryRecord {
            revision,
            by: self.replica.clone(),
            plan: running.plan.clone(),
            version: running.version.clone(),
            state: state.clone(),
        };
        self.write(partner, record).await?;
        Ok(running.version)
    }

    /// Reads every partner's record and applies the new ones, until `shutdown`.
    pub fn spawn(self: Arc<Self>, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                self.sync().await;
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(self.fleet.poll_interval()) => {}
                }
            }
        })
    }

    /// One round: applies what changed, and shares a rollback this replica decided.
    pub async fn sync(&self) {
        let partners: Vec<String> = self.registry.partners().map(str::to_string).collect();
        for partner in partners {
            use std::sync::atomic::Ordering::Relaxed;
            let record = match self.read(&partner).await {
                Ok(record) => {
                    if self.failing.swap(false, Relaxed) {
                        tracing::info!("reading the fleet's canary records again");
                    }
                    match record {
                        Some(record) => record,
                        None => continue,
                    }
                }
                Err(err) if self.failing.swap(true, Relaxed) => {
                    tracing::debug!(partner, "could not read the fleet's canary record: {err:#}");
                    continue;
                }
                Err(err) => {
                    tracing::warn!(
                        partner,
                        "could not read the fleet's canary record; canaries started elsewhere do not reach \
                         this replica until it can: {err:#}"
                    );
                    continue;
                }
            };
            let applied = self.applied(&partner);
            if record.revision > applied {
                self.apply(&partner, &record).await;
            } else if record.state == CanaryState::Running {
                self.share_rollback(&partner, &record).await;
            }
        }
    }

    fn applied(&self, partner: &str) -> u64 {
        self.applied
            .lock()
            .expect("not poisoned")
            .get(partner)
            .copied()
            .unwrap_or_default()
    }

    fn mark_applied(&self, partner: &str, revision: u64) {
        let mut applied = self.applied.lock().expect("not poisoned");
        let entry = applied.entry(partner.to_string()).or_default();
        *entry = (*entry).max(revision);
    }

    async fn apply(&self, partner: &str, record: &CanaryRecord) {
        self.mark_applied(partner, record.revision);
        let local = self
            .registry
            .status()
            .into_iter()
            .find(|status| status.partner == partner);
        let local_canary = local
            .as_ref()
            .and_then(|status| status.canary.as_ref())
            .map(|canary| canary.version.clone());
        let serving = local.map(|status| status.version).unwrap_or_default();
        let finished_before_start = record.state != CanaryState::Running && record.revision < self.started;
        if finished_before_start {
            return;
        }
        let by = &record.by;
        let result = match &record.state {
            CanaryState::Running if local_canary.as_deref() == Some(record.version.as_str()) => Ok(()),
            CanaryState::Running => self
                .registry
                .start_canary(partner, record.plan.clone())
                .await
                .map(|version| tracing::info!(partner, %version, %by, "joined the fleet's canary")),
            CanaryState::Promoted if serving == record.version => Ok(()),
            CanaryState::Promoted => {
                if local_canary.as_deref() != Some(record.version.as_str()) {
                    // Not running here (it failed to load, or this replica is new): load it now.
                    if let Err(err) = self.registry.start_canary(partner, record.plan.clone()).await {
                        tracing::error!(partner, "cannot serve the version the fleet promoted: {err:#}");
                        return;
                    }
                }
                self.registry
                    .promote_canary(partner)
                    .map(|version| tracing::info!(partner, %version, %by, "promoted with the fleet"))
            }
            CanaryState::Aborted | CanaryState::RolledBack { .. } if local_canary.is_some() => {
                let reason = match &record.state {
                    CanaryState::RolledBack { reason } => format!("rolled back on {by}: {reason}"),
                    _ => format!("aborted on {by}"),
                };
                self.registry.end_canary(partner, reason.clone());
                tracing::warn!(partner, version = %record.version, "canary {reason}");
                Ok(())
            }
            CanaryState::Aborted | CanaryState::RolledBack { .. } => Ok(()),
        };
        if let Err(err) = result {
            tracing::error!(partner, "could not apply the fleet's canary record: {err:#}");
        }
    }

    /// When this replica rolled the fleet's running canary back by itself, says so in the record.
    async fn share_rollback(&self, partner: &str, record: &CanaryRecord) {
        let Some(status) = self.registry.status().into_iter().find(|s| s.partner == partner) else {
            return;
        };
        let rolled_back = status.canary.is_none()
            && status
                .last_canary
                .as_deref()
                .is_some_and(|last| last.starts_with(&format!("rolled back {}", record.version)));
        if !rolled_back {
            return;
        }
        let reason = status.last_canary.unwrap_or_default();
        let rollback = |revision| CanaryRecord {
            revision,
            by: self.replica.clone(),
            plan: record.plan.clone(),
            version: record.version.clone(),
            state: CanaryState::RolledBack { reason: reason.clone() },
        };
        match self.write(partner, rollback).await {
            Ok(()) => tracing::warn!(partner, version = %record.version, "rolled the fleet's canary back"),
            Err(err) => tracing::error!(partner, "could not share the canary's rollback: {err:#}"),
        }
    }

    /// The record of `partner`, if any.
    pub async fn read(&self, partner: &str) -> anyhow::Result<Option<CanaryRecord>> {
        let state = self
            .in_session(partner, |transport, session| async move {
                transport.session_state(&session).await
            })
            .await?;
        state
            .map(|bytes| serde_json::from_slice(&bytes))
            .transpose()
            .with_context(|| format!("the canary record of `{partner}` is not valid JSON"))
    }

    /// Writes `partner`'s record, made by `record` from its revision.
    async fn write(&self, partner: &str, record: impl Fn(u64) -> CanaryRecord) -> anyhow::Result<()> {
        let revision = self
            .in_session(partner, |transport, session| {
                let started = self.started;
                let applied = self.applied(partner);
                async move {
                    let current: Option<CanaryRecord> = transport
                        .session_state(&session)
                        .await?
                        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
                    let newest = current.map_or(0, |c| c.revision).max(applied).max(started);
                    let revision = now_ms().max(newest + 1);
                    let bytes = serde_json::to_vec(&record(revision)).expect("a record serializes");
                    transport.set_session_state(&session, Some(bytes)).await?;
                    Ok(revision)
                }
            })
            .await?;
        self.mark_applied(partner, revision);
        Ok(())
    }

    /// Runs `work` holding the lock of `partner`'s session, waiting while another replica holds
    /// it, and releases the session after.
    async fn in_session<T, F, Fut>(&self, partner: &str, work: F) -> anyhow::Result<T>
    where
        F: FnOnce(Arc<HostTransport>, sagahost_transport::sessions::SessionLock) -> Fut,
        Fut: Future<Output = Result<T, sagahost_transport::TransportError>>,
    {
        let queue = &self.fleet.control_queue;
        let session_id = session_of(partner);
        let deadline = tokio::time::Instant::now() + WRITE_PATIENCE;
        let mut pause = Duration::from_millis(20);
        let session = loop {
            match self
                .transport
                .accept_session(queue, Some(&session_id), ACCEPT_WAIT)
                .await
            {
                Ok(Some(session)) => break session,
                Ok(None) | Err(sagahost_transport::TransportError::SessionLockLost { .. })
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Ok(None) => anyhow::bail!("another replica held the session `{session_id}` of `{queue}` too long"),
                Err(err) => {
                    return Err(anyhow::Error::new(err).context(format!(
                        "locking the session `{session_id}` of the control queue `{queue}` \
                         (it must exist and require sessions: run `sagahost entities apply`)"
                    )));
                }
            }
        };
        let result = work(self.transport.clone(), session.clone()).await;
        if let Err(err) = self.transport.release_session(&session).await {
            tracing::debug!("releasing `{session_id}`: {err}");
        }
        Ok(result?)
    }
}
