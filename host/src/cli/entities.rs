//! `sagahost entities apply`: creates on Service Bus (Azure or `sagahost broker --http-listen`)
//! the queues a config uses, through the entity-management API. Idempotent: a queue that exists
//! is left as it is.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use sagahost_transport::servicebus::entities::Ensured;

use sagahost::config::Config;

/// `sagahost entities` subcommands.
#[derive(Debug, Subcommand)]
pub enum EntitiesCommand {
    /// Create every queue the config uses (partners' queues, compensation queues, route targets,
    /// the webhook's queue) that does not exist yet, with its `[queues]` settings.
    Apply {
        /// The TOML config; its transport must be Service Bus.
        #[arg(long)]
        config: std::path::PathBuf,
    },
}

/// Runs an `entities` subcommand.
pub async fn run(command: EntitiesCommand) -> anyhow::Result<ExitCode> {
    let EntitiesCommand::Apply { config } = command;
    apply(&config).await
}

async fn apply(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?.config;
    let Some(client) = config.entity_client()? else {
        println!(
            "{} uses the embedded queue, which creates its queues and topics itself: nothing to apply",
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    };
    anyhow::ensure!(
        config.topics.is_empty(),
        "{} declares [[topics]]; `entities apply` creates queues only so far: create the topics and \
         subscriptions with the Azure portal, the az CLI or Bicep",
        path.display()
    );
    let (mut created, mut existed) = (0, 0);
    for queue in config.queue_settings() {
        match client.ensure_queue(&queue).await? {
            Ensured::Created => {
                created += 1;
                println!("created queue `{}`", queue.name);
            }
            Ensured::Existed => {
                existed += 1;
                println!("queue `{}` exists", queue.name);
            }
        }
    }
    println!("{created} created, {existed} already there");
    Ok(ExitCode::SUCCESS)
}
