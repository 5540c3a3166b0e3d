//! The running host: a config turned into a transport, loaded partner
//! components, an outbound HTTP client, the saga executor and the webhook.
//!
//! `sagahost run` and the quickstart both start the host through [`Host::start`],
//! so what the quickstart shows is exactly what `run` does.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use sagahost_transport::HostTransport;
use sagahost_transport::embedded::EmbeddedQueue;
use sagahost_transport::servicebus::{ServiceBusOptions, ServiceBusTransport};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::activity::{self, Keep, Rates, SagaIndex};
use crate::admin::{self, Admin};
use crate::component::{ComponentSpec, PoolNeeds, Registry, Runtime, RuntimeOptions, Sources};
use crate::config::Config;
use crate::config::TransportConfig;
use crate::fleet::SharedCanaries;
use crate::ingress::{self, Webhook};
use crate::outbound::{ConfigSecrets, HttpOutbound};
use crate::saga::ordering::SessionIds;
use crate::saga::seal::StateKeys;
use crate::saga::{Executor, Partner, SagaEvent};

/// A started host. Dropping it does not stop it: call [`Host::shutdown`].
pub struct Host {
    /// The transport the host runs on.
    pub transport: Arc<HostTransport>,
    /// Where the webhook listens, if configured.
    pub webhook_addr: Option<SocketAddr>,
    /// Where the admin endpoint listens, if configured.
    pub admin_addr: Option<SocketAddr>,
    /// Every partner's current component; reload through it.
    pub registry: Arc<Registry>,
    executor: Arc<Executor<HostTransport>>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Host {
    /// Opens the queue, loads every partner and starts consuming.
    ///
    /// Fails, naming the partner and the fix, if a component does not load or a
    /// secret cannot be read.
    pub async fn start(config: &Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data-dir {}", config.data_dir.display()))?;
        let state_keys = saga_state_keys(config)?;
        let transport = Arc::new(open_transport(config).await?);

        let fuel = config.partners.values().any(|p| p.limits.fuel.is_some());
        let max_memory = config
            .partners
            .values()
            .map(|p| p.limits.memory_bytes)
            .max()
            .unwrap_or_default();
        let sources = Sources::new(
            Some(config.data_dir.join("sources")),
            &config.registries,
            &config.identity,
        )
        .await?;
        // The pool is sized for the components the host starts with, so they are fetched
        // (into the sources' cache) and measured first; their bytes are not kept meanwhile,
        // which for a hundred Python components would be gigabytes.
        let mut pool = PoolNeeds::FLOOR;
        for (name, partner) in &config.partners {
            let fetched = sources.load(name, &partner.component).await?;
            if let Ok(needs) = PoolNeeds::of(&fetched.wasm) {
                pool = pool.max(needs.with_headroom());
            }
        }
        let defaults = RuntimeOptions::default();
        let runtime = Runtime::new(RuntimeOptions {
            cache_dir: Some(config.data_dir.join("compiled")),
            fuel,
            max_memory_bytes: max_memory.max(defaults.max_memory_bytes),
            pool,
            ..defaults
        })?;
        let mut registry = Registry::with_sources(runtime, sources);
        let mut partners = Vec::new();
        for (name, partner) in &config.partners {
            let spec = ComponentSpec {
                source: partner.component.clone(),
                limits: partner.limits.clone(),
                config: partner.config.clone(),
            };
            registry.add(name, spec).await?;
            partners.push(Partner {
                name: name.clone(),
                config: partner.clone(),
            });
        }
        let registry = Arc::new(registry);
        for status in registry.status() {
            tracing::info!(
                partner = %status.partner,
                version = %status.version,
                source = %status.source,
                digest = ?status.digest,
                "loaded component"
            );
        }

        let secrets = ConfigSecrets::load(
            config
                .partners
                .iter()
                .map(|(name, p)| (name.clone(), p.secrets.clone())),
            &config.identity,
        )
        .await?;
        if let Some(bad) = secrets.verify().first() {
            anyhow::bail!("{bad}");
        }
        let http = HttpOutbound::new(
            config
                .partners
                .iter()
                .map(|(name, p)| (name.clone(), p.outbound.clone())),
            Arc::new(secrets),
        )?;

        let executor = Executor::new(transport.clone(), registry.clone(), partners, http, state_keys.clone());
        let shutdown = CancellationToken::new();
        let mut tasks = vec![tokio::spawn(executor.clone().run(shutdown.clone()))];

        let fleet = config.shared_canaries().map(|fleet| {
            let shared = Arc::new(SharedCanaries::new(transport.clone(), registry.clone(), fleet));
            tasks.push(shared.clone().spawn(shutdown.clone()));
            shared
        });

        let mut admin_addr = None;
        if let Some(admin) = &config.admin {
            let token = admin.access_token()?;
            let listener = tokio::net::TcpListener::bind(&admin.listen)
                .await
                .with_context(|| format!("admin.listen: cannot listen on {}", admin.listen))?;
            admin_addr = Some(listener.local_addr()?);
            tracing::info!(addr = %admin_addr.expect("set above"), "admin endpoint listening");
            let keep = Keep {
                days: admin.saga_index_days,
                steps: admin.saga_index_steps,
            };
            let sagas = Arc::new(SagaIndex::open(&config.data_dir.join("sagas.sqlite3"), keep)?);
            let rates = Arc::new(Rates::default());
            tasks.push(activity::feed(
                executor.subscribe(),
                rates.clone(),
                sagas.clone(),
                shutdown.clone(),
            ));
            let endpoint = Admin {
                registry: registry.clone(),
                transport: transport.clone(),
                queues: config.entities(),
                queue_partners: config.queue_partners(),
                entities: config.entity_client()?,
                state_keys: state_keys.clone(),
                token,
                fleet,
                rates,
                sagas,
                trace_url: admin.trace_url.clone(),
                shutdown: shutdown.clone(),
                sessions: Default::default(),
                depths: Default::default(),
            };
            tasks.push(tokio::spawn(async move {
                if let Err(err) = admin::serve(listener, endpoint).await {
                    tracing::error!("admin endpoint stopped: {err}");
                }
            }));
        }
        if config.watch_components {
            tasks.push(watch_components(registry.clone(), shutdown.clone())?);
        }
        if registry.polled().next().is_some() {
            let interval = std::time::Duration::from_millis(config.component_poll_interval_ms);
            tasks.push(tokio::spawn(poll_tags(registry.clone(), interval, shutdown.clone())));
        }

        let mut webhook_addr = None;
        if let Some(webhook) = &config.webhook {
            let key = webhook.access_key()?;
            let listener = tokio::net::TcpListener::bind(&webhook.listen)
                .await
                .with_context(|| format!("webhook.listen: cannot listen on {}", webhook.listen))?;
            webhook_addr = Some(listener.local_addr()?);
            let endpoint = Webhook {
                transport: transport.clone(),
                queue: webhook.queue.clone(),
                key,
                max_body_bytes: webhook.max_body_bytes,
                request_timeout: std::time::Duration::from_millis(webhook.request_timeout_ms),
                sessions: SessionIds::new(config.ordered_queues()),
            };
            let stop = shutdown.clone();
            tasks.push(tokio::spawn(ingress::serve(listener, endpoint, stop)));
            tracing::info!(addr = %webhook_addr.expect("set above"), queue = %webhook.queue, "webhook listening");
        }
        Ok(Self {
            transport,
            webhook_addr,
            admin_addr,
            registry,
            executor,
            shutdown,
            tasks,
        })
    }

    /// Subscribes to what happens to each message.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<SagaEvent> {
        self.executor.subscribe()
    }

    /// Reloads every partner's component from its source (what SIGHUP does).
    pub async fn reload_all(&self) {
        let partners: Vec<String> = self.registry.partners().map(str::to_owned).collect();
        for partner in partners {
            // Failures are logged, counted and kept in the status; the old version serves on.
            let _ = self.registry.reload(&partner).await;
        }
    }

    /// Stops receiving, lets in-flight messages finish and settle, and waits.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The keys that authenticate saga state: the configured ones, or on the embedded queue
/// (one host) a key the host keeps in `data-dir`. Replicas on Service Bus must share keys,
/// so there they have to be configured.
pub fn saga_state_keys(config: &Config) -> anyhow::Result<StateKeys> {
    let Some(saga_state) = &config.saga_state else {
        anyhow::ensure!(
            matches!(config.transport, TransportConfig::Embedded),
            "[saga-state] is missing: on Service Bus every replica must share the key that \
             authenticates saga state. Add\n  [saga-state]\n  signing-key = \"k1\"\n  \
             keys = {{ k1 = {{ env = \"SAGAHOST_STATE_KEY\" }} }}\nwith a random value of at least 32 \
             characters (e.g. `openssl rand -hex 32`)"
        );
        return StateKeys::local(&config.data_dir);
    };
    let mut keys = std::collections::BTreeMap::new();
    for (id, source) in &saga_state.keys {
        let key = source
            .read()
            .map_err(|err| anyhow::anyhow!("saga-state.keys.{id}: {err}"))?;
        keys.insert(id.clone(), key.expose().trim().as_bytes().to_vec());
    }
    StateKeys::new(&saga_state.signing_key, keys).context("saga-state")
}

/// Opens the configured transport.
pub async fn open_transport(config: &Config) -> anyhow::Result<HostTransport> {
    match &config.transport {
        TransportConfig::Embedded => {
            let db = config.data_dir.join("queue.sqlite3");
            let settings = config.queue_settings();
            let queue = tokio::task::spawn_blocking(move || EmbeddedQueue::open(&db, &settings)).await??;
            for topic in &config.topics {
                queue
                    .ensure_topic(topic.clone())
                    .await
                    .with_context(|| format!("topics: `{}`", topic.name))?;
            }
            Ok(HostTransport::Embedded(queue))
        }
        TransportConfig::Servicebus {
            prefetch,
            transactions,
            max_message_bytes,
            ..
        } => {
            let target = config.servicebus_target()?.expect("the transport is Service Bus");
            let options = ServiceBusOptions {
                prefetch: *prefetch,
                transactions: *transactions,
                max_message_bytes: *max_message_bytes,
                ..ServiceBusOptions::default()
            };
            let transport = ServiceBusTransport::connect_with(&target, options)
                .await
                .context("transport: connecting to Service Bus")?;
            Ok(HostTransport::ServiceBus(transport))
        }
    }
}

/// How long file events settle before a reload (builds write files in steps).
pub const WATCH_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(300);

/// Whether a file event can mean new content. Opening or reading a component (another host
/// starting, a backup) is not a change: reloading then would put the file's version back over
/// a canary promoted since.
pub fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, ModifyKind};
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Any)
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    )
}

/// Watches every component file and reloads its partner when it changes.
fn watch_components(registry: Arc<Registry>, shutdown: CancellationToken) -> anyhow::Result<JoinHandle<()>> {
    use notify::Watcher as _;

    let (changed, mut changes) = tokio::sync::mpsc::unbounded_channel::<std::path::PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && changes_content(&event.kind)
        {
            event.paths.into_iter().for_each(|path| {
                let _ = changed.send(path);
            });
        }
    })
    .context("starting the component file watcher")?;
    let dirs: std::collections::BTreeSet<std::path::PathBuf> = registry
        .files()
        .filter_map(|path| path.parent().map(std::path::Path::to_path_buf))
        .collect();
    for dir in &dirs {
        watcher
            .watch(dir, notify::RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {}", dir.display()))?;
    }
    Ok(tokio::spawn(async move {
        let _watcher = watcher; // dropped (and stopped) with this task
        loop {
            let first = tokio::select! {
                path = changes.recv() => match path { Some(path) => path, None => return },
                () = shutdown.cancelled() => return,
            };
            tokio::time::sleep(WATCH_DEBOUNCE).await;
            let mut paths = vec![first];
            while let Ok(path) = changes.try_recv() {
                paths.push(path);
            }
            let mut partners: Vec<String> = paths
                .iter()
                .filter_map(|p| registry.partner_for_path(p))
                .map(str::to_owned)
                .collect();
            partners.sort();
            partners.dedup();
            for partner in partners {
                tracing::info!(%partner, "component file changed; reloading");
                let _ = registry.reload(&partner).await;
            }
        }
    }))
}

/// Checks every partner whose component is an OCI tag for a new digest, every `interval`.
/// Failures are logged, counted and kept in the status; the running version serves on.
async fn poll_tags(registry: Arc<Registry>, interval: std::time::Duration, shutdown: CancellationToken) {
    let partners: Vec<String> = registry.polled().map(str::to_owned).collect();
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => return,
        }
        for partner in &partners {
            let _ = registry.poll(partner).await;
        }
    }
}
