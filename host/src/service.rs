//! The running host: a config turned into an embedded queue, loaded partner
//! components, an outbound HTTP client, the saga executor and the webhook.
//!
//! `sagahost run` and the quickstart both start the host through [`Host::start`],
//! so what the quickstart shows is exactly what `run` does.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::component::{Runtime, RuntimeOptions};
use crate::config::Config;
use crate::ingress::{self, Webhook};
use crate::outbound::{ConfigSecrets, HttpOutbound};
use crate::saga::{Executor, Partner, SagaEvent};
use crate::transport::embedded::EmbeddedQueue;

/// A started host. Dropping it does not stop it: call [`Host::shutdown`].
pub struct Host {
    /// The embedded queue the host runs on.
    pub queue: EmbeddedQueue,
    /// Where the webhook listens, if configured.
    pub webhook_addr: Option<SocketAddr>,
    executor: Arc<Executor<EmbeddedQueue>>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    // Keeps the epoch ticker (deadlines) alive while components run.
    _runtime: Runtime,
}

impl Host {
    /// Opens the queue, loads every partner and starts consuming.
    ///
    /// Fails, naming the partner and the fix, if a component does not load or a
    /// secret cannot be read.
    pub async fn start(config: &Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data-dir {}", config.data_dir.display()))?;
        let db = config.data_dir.join("queue.sqlite3");
        let settings = config.queue_settings();
        let queue = tokio::task::spawn_blocking(move || EmbeddedQueue::open(&db, &settings)).await??;

        let fuel = config.partners.values().any(|p| p.limits.fuel.is_some());
        let max_memory = config
            .partners
            .values()
            .map(|p| p.limits.memory_bytes)
            .max()
            .unwrap_or_default();
        let defaults = RuntimeOptions::default();
        let runtime = Runtime::new(RuntimeOptions {
            cache_dir: Some(config.data_dir.join("compiled")),
            fuel,
            max_memory_bytes: max_memory.max(defaults.max_memory_bytes),
            ..defaults
        })?;

        let mut partners = Vec::new();
        for (name, partner) in &config.partners {
            let wasm = std::fs::read(&partner.component).with_context(|| {
                format!(
                    "partner `{name}`: reading component {} (partners.{name}.component)",
                    partner.component.display()
                )
            })?;
            let component = runtime.load(name, &wasm, partner.limits.clone(), partner.config.clone())?;
            tracing::info!(partner = %name, version = %component.info().version, "loaded component");
            partners.push(Partner {
                name: name.clone(),
                component: Arc::new(component),
                config: partner.clone(),
            });
        }

        let secrets = ConfigSecrets::new(
            config
                .partners
                .iter()
                .map(|(name, p)| (name.clone(), p.secrets.clone())),
        );
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

        let transport = Arc::new(queue.clone());
        let executor = Executor::new(transport.clone(), partners, http);
        let shutdown = CancellationToken::new();
        let mut tasks = vec![tokio::spawn(executor.clone().run(shutdown.clone()))];

        let mut webhook_addr = None;
        if let Some(webhook) = &config.webhook {
            let key = webhook
                .key
                .read()
                .map_err(|err| anyhow::anyhow!("webhook.key: {err}"))?;
            let listener = tokio::net::TcpListener::bind(&webhook.listen)
                .await
                .with_context(|| format!("webhook.listen: cannot listen on {}", webhook.listen))?;
            webhook_addr = Some(listener.local_addr()?);
            let endpoint = Webhook {
                transport,
                queue: webhook.queue.clone(),
                key,
                max_body_bytes: webhook.max_body_bytes,
            };
            let stop = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(err) = ingress::serve(listener, endpoint, stop).await {
                    tracing::error!("webhook stopped: {err}");
                }
            }));
            tracing::info!(addr = %webhook_addr.expect("set above"), queue = %webhook.queue, "webhook listening");
        }
        Ok(Self {
            queue,
            webhook_addr,
            executor,
            shutdown,
            tasks,
            _runtime: runtime,
        })
    }

    /// Subscribes to what happens to each message.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<SagaEvent> {
        self.executor.subscribe()
    }

    /// Stops receiving, lets in-flight messages finish and settle, and waits.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
