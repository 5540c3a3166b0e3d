//! `sagahost send` and `sagahost dead-letters`: operator access to the embedded queue.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use sagahost_transport::embedded::{DeadLetter, EmbeddedQueue};
use sagahost_transport::{OutgoingMessage, Output, Transport};

use sagahost::config::Config;

/// `sagahost dead-letters` subcommands.
#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// List a queue's dead-lettered messages with their reasons.
    List {
        #[arg(long)]
        queue: String,
        /// Most messages to list.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one dead-lettered message in full: reason, description, properties, body.
    Show {
        #[arg(long)]
        queue: String,
        /// Its sequence number, from `list`.
        sequence: i64,
    },
    /// Send a dead-lettered message back to its queue.
    Redrive {
        #[arg(long)]
        queue: String,
        /// Its sequence number, from `list`.
        sequence: i64,
    },
}

/// Opens the embedded queue a config file uses.
fn open(config: &Path) -> anyhow::Result<EmbeddedQueue> {
    let config = Config::load(config)?.config;
    EmbeddedQueue::open(&config.data_dir.join("queue.sqlite3"), &config.queue_settings())
}

/// The content type a message file's extension implies.
fn content_type_of(path: &Path) -> Option<&'static str> {
    match path.extension()?.to_str()? {
        "json" => Some("application/json"),
        "xml" => Some("application/xml"),
        "msbin1" => Some("application/msbin1"),
        _ => None,
    }
}

/// Enqueues each file as one message.
pub async fn send(
    config: &Path,
    queue: &str,
    files: &[PathBuf],
    content_type: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let transport = open(config)?;
    for file in files {
        let body = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let message = OutgoingMessage {
            content_type: content_type.or_else(|| content_type_of(file)).map(str::to_owned),
            body,
            ..OutgoingMessage::default()
        };
        transport
            .send(vec![Output {
                queue: queue.to_string(),
                message,
            }])
            .await?;
        println!("sent {} to `{queue}`", file.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs a `dead-letters` subcommand.
pub async fn dead_letters(config: &Path, command: DeadLetterCommand) -> anyhow::Result<ExitCode> {
    let transport = open(config)?;
    match command {
        DeadLetterCommand::List { queue, limit } => {
            let dead = transport.dead_letters(&queue, limit).await?;
            if dead.is_empty() {
                println!("no dead-lettered messages on `{queue}`");
            }
            for d in dead {
                println!(
                    "{:>8}  {:<28} {}",
                    d.message.sequence_number,
                    d.reason,
                    one_line(&d.description, 100)
                );
            }
        }
        DeadLetterCommand::Show { queue, sequence } => match transport.dead_letter(&queue, sequence).await? {
            Some(d) => print_dead_letter(&d),
            None => anyhow::bail!("no dead-lettered message {sequence} on `{queue}`; `dead-letters list` shows them"),
        },
        DeadLetterCommand::Redrive { queue, sequence } => {
            if !transport.redrive(&queue, sequence).await? {
                anyhow::bail!("no dead-lettered message {sequence} on `{queue}`; `dead-letters list` shows them");
            }
            println!("message {sequence} is back on `{queue}`");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_dead_letter(d: &DeadLetter) {
    let m = &d.message;
    println!("sequence:     {}", m.sequence_number);
    println!("message id:   {}", m.message_id);
    println!("reason:       {}", d.reason);
    println!("description:  {}", d.description);
    println!("deliveries:   {}", m.delivery_count);
    println!("content type: {}", m.content_type.as_deref().unwrap_or("-"));
    println!("properties:");
    for (name, value) in &m.properties {
        println!("  {name} = {value}");
    }
    println!("body ({} bytes):\n{}", m.body.len(), String::from_utf8_lossy(&m.body));
}

fn one_line(text: &str, max: usize) -> String {
    let line: String = text
        .chars()
        .map(|c| if c == '\n' { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        format!("{line}…")
    } else {
        line
    }
}
