//! `sagahost deploy kubernetes`: writes the KEDA manifests a config implies
//! ([`sagahost::deploy`]), to stdout or as `keda.yaml` in a directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use sagahost::config::Config;
use sagahost::deploy::{KEDA_FILE, KedaOptions, keda_manifests};

/// `sagahost deploy` subcommands.
#[derive(Debug, Subcommand)]
pub enum DeployCommand {
    /// Write the KEDA ScaledObject (one azure-servicebus trigger per queue and subscription the
    /// partners read) and its TriggerAuthentication (workload identity) for a config.
    Kubernetes {
        /// The TOML config; its transport must be Service Bus with `namespace`.
        #[arg(long)]
        config: PathBuf,
        /// Write `keda.yaml` into this directory instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The Deployment to scale (and the ScaledObject's name).
        #[arg(long, default_value = "sagahost")]
        name: String,
        /// Replicas when the queues are empty (0: scale to zero).
        #[arg(long, default_value_t = 1)]
        min_replicas: u32,
        /// Most replicas.
        #[arg(long, default_value_t = 10)]
        max_replicas: u32,
    },
}

/// Runs a `deploy` subcommand.
pub fn run(command: DeployCommand) -> anyhow::Result<ExitCode> {
    let DeployCommand::Kubernetes {
        config,
        out,
        name,
        min_replicas,
        max_replicas,
    } = command;
    let loaded = Config::load(&config)?;
    let options = KedaOptions {
        name,
        min_replicas,
        max_replicas,
    };
    let manifests = keda_manifests(&loaded.config, &options).with_context(|| format!("config {}", config.display()))?;
    match out {
        None => print!("{manifests}"),
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("--out: creating {}", dir.display()))?;
            let path = dir.join(KEDA_FILE);
            std::fs::write(&path, manifests).with_context(|| format!("--out: writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
