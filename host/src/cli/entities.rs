//! `sagahost entities apply`: creates on Service Bus (Azure or `sagahost broker --http-listen`)
//! the queues, topics, subscriptions and rules a config uses, through the entity-management API.
//! Idempotent: an entity that exists is left as it is (a subscription's rules included).

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use sagahost_transport::servicebus::dialect::subscription_path;
use sagahost_transport::servicebus::entities::Ensured;

use sagahost::config::Config;

/// `sagahost entities` subcommands.
#[derive(Debug, Subcommand)]
pub enum EntitiesCommand {
    /// Create every queue the config uses (partners' queues, compensation queues, route targets,
    /// the webhook's queue) that does not exist yet, with its `[queues]` settings (session-enabled
    /// for `ordering = "per-record"` partners), and every `[[topics]]` topic, subscription and rule.
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
    let mut tally = Tally::default();
    for queue in config.queue_settings() {
        tally.count(client.ensure_queue(&queue).await?, &format!("queue `{}`", queue.name));
    }
    for topic in &config.topics {
        tally.count(
            client.ensure_topic(&topic.name).await?,
            &format!("topic `{}`", topic.name),
        );
        for subscription in &topic.subscriptions {
            let path = subscription_path(&topic.name, &subscription.name);
            let ensured = client.ensure_subscription(&topic.name, subscription).await?;
            tally.count(ensured, &format!("subscription `{path}`"));
            // A new subscription was created with its first rule; the others are added here.
            for rule in subscription.rules.iter().skip(1) {
                let ensured = client
                    .ensure_rule(&topic.name, &subscription.name, &rule.name, &rule.filter)
                    .await?;
                tally.count(ensured, &format!("rule `{}` of `{path}`", rule.name));
            }
        }
    }
    println!("{} created, {} already there", tally.created, tally.existed);
    Ok(ExitCode::SUCCESS)
}

/// What `apply` created and found, said as it goes.
#[derive(Default)]
struct Tally {
    created: usize,
    existed: usize,
}

impl Tally {
    fn count(&mut self, ensured: Ensured, what: &str) {
        match ensured {
            Ensured::Created => {
                self.created += 1;
                println!("created {what}");
            }
            Ensured::Existed => {
                self.existed += 1;
                println!("{what} exists");
            }
        }
    }
}
