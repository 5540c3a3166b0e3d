//! The host's TOML configuration: transport, queues, partners and the webhook.
//!
//! Every table rejects unknown keys, so a typo is an error that names the file
//! and the key instead of a setting silently ignored. Secrets are never written
//! in the file: they name an environment variable or a file to read. Relative
//! paths (data dir, components, secret files) are relative to the config file.
//! The keys that open the webhook and the admin API are checked here too
//! (`access.rs`).

mod access;
mod fleet;
mod ordering;
mod topics;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sagahost_transport::embedded::{QueueSettings, TopicSettings};
use sagahost_transport::servicebus::ServiceBusTarget;
use sagahost_transport::servicebus::dialect::{MAX_TRANSACTION_MESSAGES, parse_subscription_path};
use sagahost_transport::servicebus::entities::EntityClient;
use serde::Deserialize;

use crate::component::{ComponentSource, Limits, RegistryConfig};
use crate::outbound::{CredentialKind, IdentityConfig, PartnerPolicy, SecretSource};

pub use access::{AccessKey, AccessKeyError};
pub use fleet::FleetConfig;
pub use ordering::{Ordering, SessionKey, ordered_queues};
pub use topics::Source;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Where the host keeps its state (embedded queue, compiled-component cache),
    /// relative to the config file.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The transport: the embedded queue (default) or Azure Service Bus.
    #[serde(default)]
    pub transport: TransportConfig,
    /// Settings for queues; queues named by partners but not listed here get defaults.
    #[serde(default)]
    pub queues: BTreeMap<String, QueueConfig>,
    /// Topics with their subscriptions and rules, which the embedded queue serves (on Service
    /// Bus they are the namespace's). Partners read subscriptions through `source`; routes and
    /// the webhook may name a topic.
    #[serde(default)]
    pub topics: Vec<TopicSettings>,
    /// Partners by name.
    pub partners: BTreeMap<String, PartnerConfig>,
    /// The Dataverse webhook listener, if any.
    pub webhook: Option<WebhookConfig>,
    /// The operator endpoint (health, metrics, admin API), if any.
    pub admin: Option<AdminConfig>,
    /// Reload a partner when its component file changes.
    #[serde(default = "default_true")]
    pub watch_components: bool,
    /// How often components from an OCI tag are checked for a new digest, in milliseconds.
    #[serde(default = "default_component_poll_interval_ms")]
    pub component_poll_interval_ms: u64,
    /// How the host signs in to OCI registries, by `HOST[:PORT]`; anonymous for others.
    #[serde(default)]
    pub registries: BTreeMap<String, RegistryConfig>,
    /// The keys that authenticate saga state; required on Service Bus, made by the host in
    /// `data-dir` on the embedded queue when absent.
    pub saga_state: Option<SagaStateConfig>,
    /// How the host signs in to Entra ID (Key Vault secrets); managed identity when absent.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// What replicas share through the transport (canaries); see [`Config::shared_canaries`].
    pub fleet: Option<FleetConfig>,
}

/// The keys that sign and verify the saga state the host writes (see `saga::seal`).
///
/// ```toml
/// [saga-state]
/// signing-key = "2026-12"
/// keys = { "2026-12" = { env = "SAGAHOST_STATE_KEY" }, "2026-11" = { file = "/run/secrets/state-2026-11" } }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SagaStateConfig {
    /// The id of the key that signs what this host sends.
    pub signing_key: String,
    /// Every key accepted when verifying, by id, each of at least 32 bytes.
    pub keys: BTreeMap<String, SecretSource>,
}

fn default_true() -> bool {
    true
}

fn default_component_poll_interval_ms() -> u64 {
    60_000
}

/// The operator endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AdminConfig {
    /// Address to listen on; localhost by default.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    /// Bearer token the `/admin` routes require; mandatory off localhost.
    pub token: Option<SecretSource>,
    /// The console's link to a step's trace, with `{trace-id}` (and `{saga-id}`) to fill in,
    /// e.g. `http://localhost:16686/trace/{trace-id}` for Jaeger.
    pub trace_url: Option<String>,
    /// How long the index of recent sagas keeps steps, in days.
    #[serde(default = "default_saga_index_days")]
    pub saga_index_days: u32,
    /// How many steps the index of recent sagas keeps at most (the newest).
    #[serde(default = "default_saga_index_steps")]
    pub saga_index_steps: u64,
}

fn default_saga_index_days() -> u32 {
    crate::activity::Keep::default().days
}

fn default_saga_index_steps() -> u64 {
    crate::activity::Keep::default().steps
}

impl AdminConfig {
    /// The bearer token, read and checked, if one is configured.
    pub fn access_token(&self) -> Result<Option<AccessKey>, AccessKeyError> {
        self.token
            .as_ref()
            .map(|token| AccessKey::read("admin.token", token))
            .transpose()
    }
}

fn default_admin_listen() -> String {
    "127.0.0.1:9090".into()
}

fn default_data_dir() -> PathBuf {
    ".sagahost".into()
}

/// Which transport the host runs on.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TransportConfig {
    /// The durable SQLite queue under `data-dir`.
    #[default]
    Embedded,
    /// Azure Service Bus over AMQP (or `sagahost broker`, with `UseDevelopmentEmulator=true`).
    #[serde(rename_all = "kebab-case")]
    Servicebus {
        /// The connection string (SAS), read from an environment variable or a file; or
        /// `namespace` and an Entra ID credential instead.
        connection_string: Option<SecretSource>,
        /// `NAME.servicebus.windows.net`: sign in with Entra ID, no connection string.
        namespace: Option<String>,
        /// With `namespace`: which credential (default: `[identity]`'s); the other settings
        /// of a client secret or certificate are `[identity]`'s.
        credential: Option<CredentialKind>,
        /// Messages each receiver keeps in flight ahead of handling.
        #[serde(default)]
        prefetch: u32,
        /// Settle each message and send its outputs in one AMQP transaction (off only for a
        /// broker without `$coordinator`; then outputs are sent first, at least once).
        #[serde(default = "default_true")]
        transactions: bool,
        /// The namespace's largest message in bytes: 262144 (256 KB) on Standard, up to
        /// 104857600 on Premium.
        #[serde(default = "default_servicebus_max_message_bytes")]
        max_message_bytes: usize,
        /// The entity-management API (queue-depth gauges, `sagahost entities apply`): by default
        /// `https://<namespace>`; `sagahost broker --http-listen ADDR` serves it at `http://ADDR`.
        #[serde(default)]
        management_endpoint: Option<String>,
    },
}

fn default_servicebus_max_message_bytes() -> usize {
    256 << 10
}

/// Settings of one queue.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct QueueConfig {
    /// How long a received message stays locked, in milliseconds.
    pub lock_duration_ms: Option<u64>,
    /// Deliveries before a message is dead-lettered with `MaxDeliveryCountExceeded`.
    pub max_delivery_count: Option<u32>,
}

/// One partner: its component, its queues and how it may behave.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PartnerConfig {
    /// The partner's component: a `.wasm` file (relative to the config file),
    /// `oci://REGISTRY/REPO:TAG` (polled), `oci://REGISTRY/REPO@sha256:…` (pinned), or an
    /// `https://` URL with `component-sha256`.
    pub component: ComponentSource,
    /// With an `https://` component, the SHA-256 (hex) the download must have.
    pub component_sha256: Option<String>,
    /// The queue the partner consumes; for a partner with a `source`, its subscription's path
    /// (`<topic>/Subscriptions/<subscription>`), set when the config is loaded.
    #[serde(default)]
    pub queue: String,
    /// A topic subscription to read instead of a queue.
    pub source: Option<Source>,
    /// The queue its compensation requests arrive on; defaults to `<queue>-compensate`.
    pub compensation_queue: Option<String>,
    /// Route names the component may forward to, mapped to queues.
    #[serde(default)]
    pub routes: BTreeMap<String, String>,
    /// Messages handled at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Messages received ahead of handling.
    #[serde(default = "default_prefetch")]
    pub prefetch: usize,
    /// Rounds of requests per step before the component must decide.
    #[serde(default = "default_max_rounds")]
    pub max_rounds: u32,
    /// Non-secret values the component reads through the `config` import.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Secrets by name, each read from an environment variable or a file.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
    /// Per-call sandbox limits.
    #[serde(default)]
    pub limits: Limits,
    /// Who the partner may call, and how.
    #[serde(default)]
    pub outbound: PartnerPolicy,
    /// How transient failures are retried.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// How much one step may send.
    #[serde(default)]
    pub outputs: OutputLimits,
    /// Whether one record's messages are handled in the order sent (`per-record`); the
    /// partner's queue is then session-enabled.
    #[serde(default)]
    pub ordering: Ordering,
    /// With `ordering = "per-record"`, the context field that names a record.
    #[serde(default)]
    pub session_key: SessionKey,
}

/// Bounds on what one step sends, checked before anything is sent. A plan over a bound is
/// dead-lettered (`TooManyOutputs`, `OutputTooLarge`) instead of becoming a send that the
/// broker refuses on every redelivery. The defaults fit Service Bus Standard (256 KB
/// messages, 64 KB of properties); raise them for Premium.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct OutputLimits {
    /// Messages one step may forward.
    pub max_forwards: usize,
    /// Bytes of one message: body, properties and the host's saga state.
    pub max_message_bytes: usize,
    /// Bytes of one message's application properties, names and values.
    pub max_properties_bytes: usize,
    /// Bytes of compensation data one step may record (it rides in every later message of
    /// the saga).
    pub max_compensation_data_bytes: usize,
}

impl Default for OutputLimits {
    fn default() -> Self {
        Self {
            max_forwards: 16,
            max_message_bytes: 256 << 10,
            max_properties_bytes: 64 << 10,
            max_compensation_data_bytes: 8 << 10,
        }
    }
}

fn default_concurrency() -> usize {
    8
}
fn default_prefetch() -> usize {
    16
}
/// Rounds of requests a step may take when the partner's config does not say.
pub const DEFAULT_MAX_ROUNDS: u32 = 8;

/// Serde's default for `max-rounds`, in the host config and in a harness's `partner.toml`.
pub(crate) fn default_max_rounds() -> u32 {
    DEFAULT_MAX_ROUNDS
}

impl PartnerConfig {
    /// The compensation queue, explicit or derived from the main queue.
    pub fn compensation_queue(&self) -> String {
        let reads = match &self.source {
            Some(source) => format!("{}-{}", source.topic, source.subscription),
            None => self.queue.clone(),
        };
        self.compensation_queue
            .clone()
            .unwrap_or_else(|| format!("{reads}-compensate"))
    }
}

/// What to do when a step's retries run out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exhausted {
    /// Dead-letter the message with reason `RetriesExhausted`.
    #[default]
    DeadLetter,
    /// Compensate the earlier steps.
    Compensate,
}

/// Exponential backoff with jitter, capped, honouring `Retry-After`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetryPolicy {
    /// Attempts of a step, the first included.
    pub max_attempts: u32,
    /// Delay before the second attempt, in milliseconds.
    pub initial_delay_ms: u64,
    /// Growth factor per attempt.
    pub multiplier: f64,
    /// Longest delay, in milliseconds (a longer `Retry-After` is honoured up to this cap).
    pub max_delay_ms: u64,
    /// Random spread, as a fraction of the delay (0.2 = ±20 %).
    pub jitter: f64,
    /// What happens after the last attempt.
    pub exhausted: Exhausted,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_delay_ms: 1_000,
            multiplier: 2.0,
            max_delay_ms: 300_000,
            jitter: 0.2,
            exhausted: Exhausted::DeadLetter,
        }
    }
}

/// The Dataverse webhook listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WebhookConfig {
    /// Address to listen on, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// Queue the posted contexts go to.
    pub queue: String,
    /// The key Dataverse sends (as `?code=`, the `x-functions-key` header, or a
    /// query string of your choice), read from an environment variable or a file.
    pub key: SecretSource,
    /// Largest body accepted, in bytes.
    #[serde(default = "default_webhook_max_body")]
    pub max_body_bytes: usize,
    /// How long a client has to send a request's headers, and then its body, in
    /// milliseconds; a slower client is disconnected (408 once the headers are in).
    #[serde(default = "default_webhook_request_timeout_ms")]
    pub request_timeout_ms: u64,
}

impl WebhookConfig {
    /// The key, read and checked.
    pub fn access_key(&self) -> Result<AccessKey, AccessKeyError> {
        AccessKey::read("webhook.key", &self.key)
    }
}

fn default_webhook_max_body() -> usize {
    1 << 20
}

fn default_webhook_request_timeout_ms() -> u64 {
    10_000
}

/// A loaded configuration with paths made absolute.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The file it came from.
    pub path: PathBuf,
}

/// The directory a config file at `path` is in; relative paths in it are relative to this.
fn directory_of(path: &Path) -> &Path {
    // A bare file name (`sagahost.toml`) has the empty path as its parent, which
    // `std::path::absolute` refuses.
    path.parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

impl Config {
    /// Reads and checks `path`. Errors name the file, the key and the fix.
    pub fn load(path: &Path) -> anyhow::Result<Loaded> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        let mut config: Config = toml::from_str(&text)
            .map_err(|err| anyhow::anyhow!("config {}: {}", path.display(), err.to_string().trim_end()))?;
        // Absolute paths, so the file watcher can match the paths it reports.
        let base = std::path::absolute(directory_of(path))
            .with_context(|| format!("config {}: resolving its directory", path.display()))?;
        config.resolve_paths(&base);
        config
            .resolve_sources()
            .and_then(|()| config.pin_components())
            .and_then(|()| config.check())
            .map_err(|err| anyhow::anyhow!("config {}: {err}", path.display()))?;
        Ok(Loaded {
            config,
            path: path.to_path_buf(),
        })
    }

    /// Makes every relative path in the config relative to `base`, the config file's directory.
    fn resolve_paths(&mut self, base: &Path) {
        let resolve_file = |file: &mut PathBuf| *file = base.join(&*file);
        let resolve_secret = |source: &mut SecretSource| match source {
            SecretSource::File(file) => resolve_file(file),
            SecretSource::Oauth2(oauth2) => {
                if let Some(SecretSource::File(file)) = oauth2.client_secret.as_deref_mut() {
                    resolve_file(file);
                }
                if let Some(file) = &mut oauth2.client_certificate {
                    resolve_file(file);
                }
            }
            SecretSource::Env(_) | SecretSource::KeyVault(_) => {}
        };
        for registry in self.registries.values_mut() {
            registry.password.iter_mut().for_each(&resolve_secret);
            registry.token.iter_mut().for_each(&resolve_secret);
        }
        if let Some(SecretSource::File(file)) = &mut self.identity.client_secret {
            resolve_file(file);
        }
        if let Some(file) = &mut self.identity.client_certificate {
            resolve_file(file);
        }
        self.data_dir = base.join(&self.data_dir);
        for partner in self.partners.values_mut() {
            partner.component.resolve(base);
            partner.secrets.values_mut().for_each(&resolve_secret);
        }
        if let Some(webhook) = &mut self.webhook {
            resolve_secret(&mut webhook.key);
        }
        if let Some(token) = self.admin.as_mut().and_then(|admin| admin.token.as_mut()) {
            resolve_secret(token);
        }
        if let TransportConfig::Servicebus {
            connection_string: Some(connection_string),
            ..
        } = &mut self.transport
        {
            resolve_secret(connection_string);
        }
        if let Some(saga_state) = &mut self.saga_state {
            saga_state.keys.values_mut().for_each(&resolve_secret);
        }
    }

    /// Puts each `component-sha256` into its partner's `https://` component.
    fn pin_components(&mut self) -> anyhow::Result<()> {
        for (name, partner) in &mut self.partners {
            let source = std::mem::take(&mut partner.component);
            partner.component = source
                .pinned(partner.component_sha256.as_deref())
                .map_err(|err| anyhow::anyhow!("partners.{name}: {err:#}"))?;
        }
        Ok(())
    }

    fn check(&self) -> anyhow::Result<()> {
        if let Some(admin) = &self.admin {
            let addr: std::net::SocketAddr = admin
                .listen
                .parse()
                .map_err(|e| anyhow::anyhow!("admin.listen `{}`: {e}", admin.listen))?;
            if !addr.ip().is_loopback() && admin.token.is_none() {
                anyhow::bail!(
                    "admin.listen `{}` is not localhost: set admin.token so the admin API is not open",
                    admin.listen
                );
            }
            if let Some(template) = &admin.trace_url {
                let web = template.starts_with("https://") || template.starts_with("http://");
                if !web || !(template.contains("{trace-id}") || template.contains("{saga-id}")) {
                    anyhow::bail!(
                        "admin.trace-url `{template}`: give an http(s) URL with {{trace-id}} (or {{saga-id}}) \
                         in it, e.g. http://localhost:16686/trace/{{trace-id}}"
                    );
                }
            }
            if admin.saga_index_days == 0 || admin.saga_index_steps == 0 {
                anyhow::bail!("admin.saga-index-days and admin.saga-index-steps must be at least 1");
            }
        }
        if let Some(webhook) = &self.webhook
            && (webhook.max_body_bytes == 0 || webhook.request_timeout_ms == 0)
        {
            anyhow::bail!("webhook.max-body-bytes and webhook.request-timeout-ms must be at least 1");
        }
        if self.partners.is_empty() {
            anyhow::bail!("no partners: add at least one [partners.NAME] table");
        }
        if let TransportConfig::Servicebus {
            connection_string,
            namespace,
            credential,
            ..
        } = &self.transport
        {
            match (connection_string, namespace) {
                (Some(_), Some(_)) => anyhow::bail!(
                    "transport: set connection-string or namespace, not both (a namespace signs in with Entra ID)"
                ),
                (None, None) => anyhow::bail!(
                    "transport: say how to reach Service Bus: connection-string = {{ env = \"VAR\" }}, or \
                     namespace = \"NAME.servicebus.windows.net\" with an Entra ID credential"
                ),
                (Some(_), None) if credential.is_some() => {
                    anyhow::bail!("transport.credential is for namespace; a connection string carries its own key")
                }
                _ => {}
            }
        }
        if self.component_poll_interval_ms == 0 {
            anyhow::bail!("component-poll-interval-ms must be at least 1");
        }
        for (registry, auth) in &self.registries {
            auth.check(registry)?;
        }
        for (name, partner) in &self.partners {
            partner
                .component
                .check()
                .map_err(|err| anyhow::anyhow!("partners.{name}.component: {err:#}"))?;
            if partner.concurrency == 0 {
                anyhow::bail!("partners.{name}.concurrency must be at least 1");
            }
            if partner.retry.max_attempts == 0 {
                anyhow::bail!("partners.{name}.retry.max-attempts must be at least 1");
            }
            if !(0.0..=1.0).contains(&partner.retry.jitter) {
                anyhow::bail!("partners.{name}.retry.jitter must be between 0 and 1");
            }
            if partner.outputs.max_forwards == 0 || partner.outputs.max_message_bytes == 0 {
                anyhow::bail!("partners.{name}.outputs: max-forwards and max-message-bytes must be at least 1");
            }
            // Every settle would be refused, and the message redelivered until dead-lettered.
            if let TransportConfig::Servicebus { transactions: true, .. } = &self.transport
                && partner.outputs.max_forwards >= MAX_TRANSACTION_MESSAGES
            {
                anyhow::bail!(
                    "partners.{name}.outputs.max-forwards is {}, but one Service Bus transaction takes at most \
                     {MAX_TRANSACTION_MESSAGES} messages: the step's input and what it forwards. Set it to \
                     at most {}",
                    partner.outputs.max_forwards,
                    MAX_TRANSACTION_MESSAGES - 1
                );
            }
            if partner.queue == partner.compensation_queue() {
                anyhow::bail!("partners.{name}: compensation-queue must differ from queue");
            }
        }
        self.check_ordering()?;
        self.check_topics()?;
        self.check_access_keys()
    }

    /// Refuses an empty or short webhook key or admin token, so no door opens to
    /// a missing key.
    ///
    /// `send` and `dead-letters` load the config only for its queues, and an
    /// operator's shell may lack a variable the service has, so a key that cannot
    /// be read yet is left to `run`, which reads it again to open the door and
    /// fails then; a key that can be read must be usable.
    fn check_access_keys(&self) -> anyhow::Result<()> {
        let keys = [
            self.webhook.as_ref().map(WebhookConfig::access_key),
            self.admin.as_ref().and_then(|admin| admin.access_token().transpose()),
        ];
        for key in keys.into_iter().flatten() {
            match key {
                Ok(_) | Err(AccessKeyError::Unreadable { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }

    /// The partner reading each queue (its queue and its compensation queue).
    pub fn queue_partners(&self) -> BTreeMap<String, String> {
        let mut readers = BTreeMap::new();
        for (name, partner) in &self.partners {
            readers.insert(partner.queue.clone(), name.clone());
            readers.insert(partner.compensation_queue(), name.clone());
        }
        readers
    }

    /// A client of the namespace's entity-management API, when the transport is Service Bus.
    pub fn entity_client(&self) -> anyhow::Result<Option<EntityClient>> {
        let TransportConfig::Servicebus {
            management_endpoint, ..
        } = &self.transport
        else {
            return Ok(None);
        };
        let target = self.servicebus_target()?.expect("the transport is Service Bus");
        EntityClient::with_target(&target, management_endpoint.as_deref())
            .context("transport.management-endpoint")
            .map(Some)
    }

    /// Where the Service Bus transport connects and how it signs in: the connection string, or
    /// `namespace` with an Entra ID credential. `None` on the embedded queue.
    pub fn servicebus_target(&self) -> anyhow::Result<Option<ServiceBusTarget>> {
        let TransportConfig::Servicebus {
            connection_string,
            namespace,
            credential,
            ..
        } = &self.transport
        else {
            return Ok(None);
        };
        let target = match (connection_string, namespace) {
            (Some(source), None) => {
                let connection_string = source
                    .read()
                    .map_err(|err| anyhow::anyhow!("transport.connection-string: {err}"))?;
                ServiceBusTarget::connection_string(connection_string.expose())
                    .context("transport.connection-string")?
            }
            (None, Some(namespace)) => {
                let identity = IdentityConfig {
                    credential: credential.unwrap_or(self.identity.credential),
                    ..self.identity.clone()
                };
                let source = identity.token_source().context("transport.credential")?;
                ServiceBusTarget::entra(namespace.clone(), Arc::new(source))
            }
            _ => anyhow::bail!(
                "transport: set either connection-string, or namespace (with credential or [identity]), not both"
            ),
        };
        Ok(Some(target))
    }

    /// Every entity the host reads dead letters and depths of: its queues and the subscriptions
    /// its partners read, in name order.
    pub fn entities(&self) -> Vec<String> {
        let mut names: Vec<String> = self.queue_settings().into_iter().map(|q| q.name).collect();
        names.extend(
            self.partners
                .values()
                .filter(|p| p.source.is_some())
                .map(|p| p.queue.clone()),
        );
        names.sort();
        names.dedup();
        names
    }

    /// Every queue the partners and the webhook use, with its settings (topics and
    /// subscriptions are not queues: see [`Config::topics`]).
    pub fn queue_settings(&self) -> Vec<QueueSettings> {
        let mut names: Vec<String> = self.queues.keys().cloned().collect();
        for partner in self.partners.values() {
            names.push(partner.queue.clone());
            names.push(partner.compensation_queue());
            names.extend(partner.routes.values().cloned());
        }
        names.extend(self.webhook.iter().map(|w| w.queue.clone()));
        let control = self.shared_canaries().map(|fleet| fleet.control_queue);
        names.extend(control.clone());
        names.retain(|name| self.topic(name).is_none() && parse_subscription_path(name).is_none());
        names.sort();
        names.dedup();
        let ordered = self.ordered_queues();
        names
            .into_iter()
            .map(|name| {
                let settings = self.queues.get(&name).cloned().unwrap_or_default();
                let mut queue = QueueSettings::new(&name);
                queue.requires_session = ordered.contains_key(&name) || control.as_ref() == Some(&name);
                if let Some(ms) = settings.lock_duration_ms {
                    queue.lock_duration = Duration::from_millis(ms);
                }
                if let Some(count) = settings.max_delivery_count {
                    queue.max_delivery_count = count;
                }
                queue
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
