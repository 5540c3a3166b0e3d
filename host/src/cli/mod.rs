//! The `sagahost` command line.
//!
//! Each subcommand is a thin front on a library module: `validate` on
//! [`component`](sagahost::component), `test` on [`harness`](sagahost::harness),
//! `inspect` on [`dataverse`](sagahost_dataverse), `run` on
//! [`service`](sagahost::service), `send` and `dead-letters` on the embedded
//! queue, `quickstart` on [`quickstart`](sagahost::quickstart), `deploy` on
//! [`deploy`](sagahost::deploy).

mod admin;
mod deploy;
mod entities;
mod inspect;
mod probe;
mod publish;
mod queue;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sagahost_broker::SharedAccessKey;

use sagahost::component::{ComponentInfo, Limits, PoolNeeds, Runtime, RuntimeOptions};
use sagahost::config::Config;
use sagahost::service::Host;
use sagahost::telemetry::{self, LogFormat};

/// Runs Dataverse saga steps as sandboxed WebAssembly partner components.
#[derive(Debug, Parser)]
#[command(name = "sagahost", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// `sagahost fixture` subcommands.
#[derive(Debug, Subcommand)]
pub enum FixtureCommand {
    /// Turn a dead letter into a fixture: its body, properties and saga state, with the HTTP
    /// answers left to fill in (the fixture says how).
    FromDeadLetter {
        /// The host's TOML config.
        #[arg(long)]
        config: PathBuf,
        /// The queue whose dead-letter queue holds it.
        #[arg(long)]
        queue: String,
        /// Its sequence number (`sagahost dead-letters list` shows them).
        sequence: i64,
        /// The new fixture's folder, inside the partner's fixtures folder.
        dir: PathBuf,
    },
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check that a file is a partner component and print what it imports and exports.
    Validate {
        /// The component (`.wasm`).
        component: PathBuf,
    },
    /// Run a component against recorded fixtures.
    Test(test::Args),
    /// Print the decoded context (the canonical JSON a component receives) of a message body.
    Inspect {
        /// The message body file.
        file: PathBuf,
        /// Content type, overriding detection (`application/json`, `application/xml`, `application/msbin1`).
        #[arg(long)]
        content_type: Option<String>,
        /// Print only the canonical JSON, without the typed summary.
        #[arg(long)]
        json: bool,
    },
    /// Run every partner from a config file until Ctrl-C.
    Run {
        /// The TOML config.
        #[arg(long)]
        config: PathBuf,
    },
    /// Put message files on a queue, on the transport the config names.
    Send {
        /// The TOML config (its transport and queues).
        #[arg(long)]
        config: PathBuf,
        /// Queue to send to.
        #[arg(long)]
        queue: String,
        /// Content type; by default from the extension (.json, .xml, .msbin1).
        #[arg(long)]
        content_type: Option<String>,
        /// Message body files, one message each.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// See why messages died, and send them back.
    DeadLetters {
        /// The TOML config (its transport and queues).
        #[arg(long)]
        config: PathBuf,
        #[command(subcommand)]
        command: queue::DeadLetterCommand,
    },
    /// Create on Service Bus the queues a config uses (idempotent).
    Entities {
        #[command(subcommand)]
        command: entities::EntitiesCommand,
    },
    /// Serve an embedded queue over AMQP 1.0 in the Azure Service Bus dialect (for SDKs and tests).
    Broker(BrokerArgs),
    /// Show a running host's partners: version, state, counters, canary (through its admin API).
    Partners {
        #[command(flatten)]
        endpoint: admin::Endpoint,
    },
    /// Reload a partner's component in a running host (through its admin API).
    Reload {
        /// The partner to reload.
        #[arg(long)]
        partner: String,
        #[command(flatten)]
        endpoint: admin::Endpoint,
    },
    /// Start, promote or abort a canary rollout in a running host (through its admin API).
    Canary {
        #[command(subcommand)]
        command: admin::CanaryCommand,
        #[command(flatten)]
        endpoint: admin::Endpoint,
    },
    /// Write deployment manifests that follow from a config (KEDA autoscaling for Kubernetes).
    Deploy {
        #[command(subcommand)]
        command: deploy::DeployCommand,
    },
    /// Ask a running host's admin endpoint whether it is ready (`/readyz`); exit 0 or 1.
    Probe(probe::ProbeArgs),
    /// Run the three-partner contact saga locally, with demo partner systems, and summarise it.
    Quickstart(sagahost::quickstart::Options),
    /// Make fixtures for `sagahost test`.
    Fixture {
        #[command(subcommand)]
        command: FixtureCommand,
    },
    /// Write a new partner project: a handler, the SDK, fixtures that pass, and a README.
    New {
        /// The language of the component.
        #[arg(long, value_enum, default_value_t = sagahost::scaffold::Language::Rust)]
        language: sagahost::scaffold::Language,
        /// The partner's name (lowercase letters, digits and hyphens); also the project folder.
        name: String,
        /// Where to write the project [default: ./NAME].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Check a component as `validate` does and push it to an OCI registry (oci://REGISTRY/REPO:TAG).
    Publish(publish::PublishArgs),
}

/// Parses the command line, runs the command and turns errors into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_filter = if matches!(cli.command, Command::Quickstart(_)) {
        "warn"
    } else {
        "info"
    };
    let _telemetry = telemetry::init(cli.log_format, default_filter);
    match run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Validate { component } => validate(&component),
        Command::Test(args) => test::run(args),
        Command::Fixture {
            command:
                FixtureCommand::FromDeadLetter {
                    config,
                    queue,
                    sequence,
                    dir,
                },
        } => tokio_runtime()?.block_on(queue::fixture_from_dead_letter(&config, &queue, sequence, &dir)),
        Command::Inspect {
            file,
            content_type,
            json,
        } => inspect(&file, content_type.as_deref(), json),
        Command::Run { config } => tokio_runtime()?.block_on(run_host(&config)),
        Command::Send {
            config,
            queue,
            content_type,
            files,
        } => tokio_runtime()?.block_on(queue::send(&config, &queue, &files, content_type.as_deref())),
        Command::DeadLetters { config, command } => tokio_runtime()?.block_on(queue::dead_letters(&config, command)),
        Command::Entities { command } => tokio_runtime()?.block_on(entities::run(command)),
        Command::Broker(args) => tokio_runtime()?.block_on(broker(args)),
        Command::Partners { endpoint } => tokio_runtime()?.block_on(admin::partners(&endpoint)),
        Command::Reload { partner, endpoint } => tokio_runtime()?.block_on(admin::reload(&endpoint, &partner)),
        Command::Canary { command, endpoint } => tokio_runtime()?.block_on(admin::canary(&endpoint, command)),
        Command::Deploy { command } => deploy::run(command),
        Command::Probe(args) => probe::run(&args),
        Command::Quickstart(options) => tokio_runtime()?.block_on(sagahost::quickstart::run(options)),
        Command::Publish(args) => tokio_runtime()?.block_on(publish::run(args)),
        Command::New { language, name, dir } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let project = sagahost::scaffold::create(language, &name, &dir)?;
            println!("wrote {} files into {}", project.files.len(), project.dir.display());
            println!("next:\n  cd {}", project.dir.display());
            println!("  {}", project.build);
            println!("  sagahost test {} fixtures", project.component);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `sagahost broker` options.
#[derive(Debug, clap::Args)]
pub struct BrokerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5672")]
    listen: String,
    /// Also serve Service Bus's entity-management HTTP API (queues, topics, subscriptions,
    /// rules and their message counts, for `ServiceBusAdministrationClient` and KEDA) on this
    /// address, e.g. 127.0.0.1:5300.
    #[arg(long)]
    http_listen: Option<String>,
    /// A TOML file of entities to create at start: `[[topics]] name = "contacts"` with
    /// `[[topics.subscriptions]] name = "mdm"` and optional `rules`, and `[[queues]]
    /// name = "erp"` with `requires-session = true` (sessions), `lock-duration-ms` and
    /// `max-delivery-count`. Other queues are created on first use.
    #[arg(long)]
    topics: Option<PathBuf>,
    /// Directory for the queue's data.
    #[arg(long)]
    data: PathBuf,
    /// Lock duration of queues, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    lock_duration_ms: u64,
    /// Name of the shared access key clients must sign their SAS tokens with
    /// (`SharedAccessKeyName` in their connection string).
    #[arg(long, env = "SAGAHOST_BROKER_SAS_KEY_NAME", default_value = SharedAccessKey::EMULATOR_NAME)]
    sas_key_name: String,
    /// The shared access key (`SharedAccessKey`); the default is the Service Bus emulator's
    /// public one. Prefer the environment variable: arguments show in the process list.
    #[arg(
        long,
        env = "SAGAHOST_BROKER_SAS_KEY",
        default_value = SharedAccessKey::EMULATOR_KEY,
        hide_env_values = true
    )]
    sas_key: String,
    /// A token to accept as an Entra ID `jwt` (on `$cbs`) and as `Bearer` (on the entity
    /// endpoint), standing in for Entra ID, which cannot run locally: for trying a host
    /// configured with `namespace` and a credential. Repeat for several.
    #[arg(long, env = "SAGAHOST_BROKER_BEARER_TOKEN", hide_env_values = true)]
    bearer_token: Vec<String>,
}

fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn run_host(config: &std::path::Path) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};

    let loaded = Config::load(config)?;
    let host = Host::start(&loaded.config).await?;
    tracing::info!(config = %loaded.path.display(), "sagahost running; Ctrl-C to stop, SIGHUP to reload components");
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut hangup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading every partner's component");
                host.reload_all().await;
            }
        }
    }
    tracing::info!("stopping: finishing in-flight messages");
    host.shutdown().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn broker(args: BrokerArgs) -> anyhow::Result<ExitCode> {
    use sagahost_broker::{self as broker, BearerToken, BrokerConfig};
    use sagahost_transport::embedded::{EmbeddedQueue, QueueSettings, TopicSettings};

    /// The `--topics` file.
    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct TopicsFile {
        #[serde(default)]
        topics: Vec<TopicSettings>,
        #[serde(default)]
        queues: Vec<QueueSettings>,
    }

    let data = &args.data;
    let key = SharedAccessKey {
        name: args.sas_key_name,
        key: args.sas_key,
    };
    if key.name.is_empty() || key.key.is_empty() {
        anyhow::bail!("--sas-key-name and --sas-key must not be empty");
    }
    let entities = match &args.topics {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("--topics: reading {}", path.display()))?;
            toml::from_str::<TopicsFile>(&text).with_context(|| format!("--topics: {}", path.display()))?
        }
        None => TopicsFile::default(),
    };
    std::fs::create_dir_all(data).with_context(|| format!("--data: creating {}", data.display()))?;
    let queue = EmbeddedQueue::open(&data.join("broker.sqlite3"), &[])?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("--listen: cannot listen on {}", args.listen))?;
    let http = match &args.http_listen {
        Some(at) => Some(
            tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("--http-listen: cannot listen on {at}"))?,
        ),
        None => None,
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    // SIGTERM too: in a container the broker is PID 1, and `docker stop` sends SIGTERM.
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("listening for SIGTERM")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        stop.cancel();
    });
    let address = listener.local_addr()?;
    if !address.ip().is_loopback() && key == SharedAccessKey::default() {
        tracing::warn!(
            %address,
            "the broker listens beyond loopback with the emulator's public key: set --sas-key \
             (or SAGAHOST_BROKER_SAS_KEY) to keep other machines out"
        );
    }
    let config = BrokerConfig {
        lock_duration: std::time::Duration::from_millis(args.lock_duration_ms),
        key,
        bearer_tokens: args.bearer_token.into_iter().map(BearerToken::new).collect(),
        topics: entities.topics,
        queues: entities.queues,
        ..BrokerConfig::default()
    };
    // Scripts and tests read the first line to learn the port.
    println!("sagahost broker listening on {address}");
    if let Some(http) = http {
        println!("sagahost broker entity management on http://{}", http.local_addr()?);
        let (queue, config, shutdown) = (queue.clone(), config.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(err) = broker::serve_entities(http, queue, config, shutdown).await {
                tracing::error!("the entity-management endpoint stopped: {err:#}");
            }
        });
    }
    broker::serve_with(listener, queue, config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// Linear memory at start past which `validate` says what it costs: a Rust component with
/// Rust's default 1 MiB stack starts above it, one with the 128 KiB stack below.
const LARGE_INITIAL_MEMORY: u64 = 512 << 10;

fn validate(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let (wasm, info) = check_component(path)?;
    println!("{}: implements sagahost:partner/partner@0.1.0", path.display());
    println!("  size:    {} bytes", info.size);
    println!("  version: {}", info.version);
    let memory = PoolNeeds::initial_memory_bytes(&wasm)?;
    println!("  memory at start: {} KiB", memory >> 10);
    if memory > LARGE_INITIAL_MEMORY {
        println!(
            "  note: the host resets this memory after every call, so each call costs more with more of it; \
             a Rust component built with Rust's default 1 MiB stack can link a smaller one \
             (`-C link-arg=-zstack-size=131072` in `.cargo/config.toml`, as `sagahost new` does)"
        );
    }
    println!("  exports:");
    info.exports.iter().for_each(|e| println!("    {e}"));
    println!("  imports:");
    info.imports.iter().for_each(|i| println!("    {i}"));
    Ok(ExitCode::SUCCESS)
}

/// Reads `path` and checks that it is a partner component: compiles and links it as the host
/// would. `validate` and `publish` both check through here.
fn check_component(path: &std::path::Path) -> anyhow::Result<(Vec<u8>, ComponentInfo)> {
    let wasm = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let runtime = Runtime::new(RuntimeOptions {
        max_instances: 1,
        pool: PoolNeeds::of(&wasm).map_or(PoolNeeds::FLOOR, PoolNeeds::with_headroom),
        ..RuntimeOptions::default()
    })?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let component = runtime.load(&name, &wasm, Limits::default(), Default::default())?;
    Ok((wasm, component.info().clone()))
}

fn inspect(path: &std::path::Path, content_type: Option<&str>, json_only: bool) -> anyhow::Result<ExitCode> {
    let body = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let context = sagahost_dataverse::decode(&body, content_type, &Default::default())
        .with_context(|| format!("decoding {}", path.display()))?;
    if !json_only {
        println!("{}", inspect::summary(&context));
    }
    println!("{}", serde_json::to_string_pretty(&context.to_canonical_json())?);
    Ok(ExitCode::SUCCESS)
}
