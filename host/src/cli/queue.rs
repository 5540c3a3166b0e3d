//! `sagahost send` and `sagahost dead-letters`: operator access to the queues, on whichever
//! transport the config names (the embedded queue or Service Bus).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use sagahost_transport::dead_letters::DeadLetter;
use sagahost_transport::{HostTransport, OutgoingMessage, Output, Transport};

use sagahost::config::Config;
use sagahost::dead_letters::{
    DeadLetterQueue, Filter, RedriveOptions, Selection, format_instant, parse_instant, partner_of, version_of,
};
use sagahost::harness::from_dead_letter::{PartnerOfQueue, write_fixture};
use sagahost::saga::ordering::SessionIds;
use sagahost::saga::{MessageParts, build_inbound};
use sagahost::service::{open_transport, saga_state_keys};
use sagahost_dataverse::Limits;

use super::inspect;

/// `sagahost dead-letters` subcommands.
#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// List a queue's dead letters with their reasons, oldest first, a page at a time.
    List {
        #[arg(long)]
        queue: String,
        #[command(flatten)]
        filter: FilterArgs,
        /// Start at this sequence number (the `next page` a listing prints).
        #[arg(long, default_value_t = 0)]
        from: i64,
        /// Most dead letters to list.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one dead letter in full: reason, description, properties, and the body decoded as
    /// `inspect` decodes it.
    Show {
        #[arg(long)]
        queue: String,
        /// Its sequence number, from `list`.
        sequence: i64,
    },
    /// Send dead letters back to their queue, each removed from the dead-letter queue in the
    /// same step: one by sequence number, those the filters match, or `--all`.
    Redrive {
        #[arg(long)]
        queue: String,
        #[command(flatten)]
        select: SelectionArgs,
        /// Start each saga step's attempts again from 1 (the step gets its full retry budget
        /// back); by default the attempt counter is kept.
        #[arg(long)]
        reset_attempts: bool,
    },
    /// Remove dead letters for good: one by sequence number, those the filters match, or `--all`.
    Purge {
        #[arg(long)]
        queue: String,
        #[command(flatten)]
        select: SelectionArgs,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// Which dead letters a redrive or purge takes, and how many.
#[derive(Debug, Args)]
pub struct SelectionArgs {
    /// One dead letter's sequence number, from `list`.
    sequence: Option<i64>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Every dead letter of the queue (when no sequence number or filter is given).
    #[arg(long)]
    all: bool,
    /// Take at most this many.
    #[arg(long)]
    limit: Option<usize>,
    /// Only count what would be taken.
    #[arg(long)]
    dry_run: bool,
}

/// Which dead letters: every filter given must match.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// The dead-letter reason, exactly (e.g. RetriesExhausted, MaxDeliveryCountExceeded).
    #[arg(long)]
    reason: Option<String>,
    /// The partner whose step dead-lettered them.
    #[arg(long)]
    partner: Option<String>,
    /// The component version that ran (its content hash, or a prefix of it).
    #[arg(long)]
    version: Option<String>,
    /// Enqueued at or after: an RFC 3339 time or a duration ago (90m, 2h, 3days).
    #[arg(long, value_parser = parse_instant)]
    since: Option<std::time::SystemTime>,
    /// Enqueued before: an RFC 3339 time or a duration ago.
    #[arg(long, value_parser = parse_instant)]
    until: Option<std::time::SystemTime>,
}

impl FilterArgs {
    fn filter(self) -> Filter {
        Filter {
            reason: self.reason,
            partner: self.partner,
            version: self.version,
            since: self.since,
            until: self.until,
        }
    }
}

impl SelectionArgs {
    /// The selection these arguments name, refusing to guess "everything".
    fn selection(self, verb: &str) -> anyhow::Result<Selection> {
        let filter = self.filter.filter();
        match (self.sequence, filter.is_empty(), self.all) {
            (Some(sequence), true, false) => Ok(Selection::One(sequence)),
            (None, false, false) | (None, true, true) => Ok(Selection::Matching(filter)),
            (None, true, false) => anyhow::bail!(
                "say which dead letters to {verb}: a sequence number (from `dead-letters list`), filters \
                 (--reason, --partner, --version, --since, --until), or --all"
            ),
            _ => anyhow::bail!("give a sequence number, filters, or --all: only one of them"),
        }
    }
}

/// The config at `path` and its transport, with `queue` checked to be one the config uses.
async fn open(path: &Path, queue: Option<&str>) -> anyhow::Result<(Config, HostTransport)> {
    let config = Config::load(path)?.config;
    if let Some(queue) = queue {
        let known = config.entities();
        anyhow::ensure!(
            known.iter().any(|k| k == queue),
            "queue `{queue}` is not in {}; its queues are: {}",
            path.display(),
            known.join(", ")
        );
    }
    let transport = open_transport(&config).await?;
    Ok((config, transport))
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
    let (loaded, transport) = open(config, Some(queue)).await?;
    let sessions = SessionIds::new(loaded.ordered_queues());
    for file in files {
        let body = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let content_type = content_type.or_else(|| content_type_of(file)).map(str::to_owned);
        let session_id = if sessions.is_ordered(queue) {
            Some(session_id_of(&sessions, queue, file, &body, content_type.as_deref())?)
        } else {
            None
        };
        let message = OutgoingMessage {
            content_type,
            body,
            session_id,
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
    transport.close().await;
    Ok(ExitCode::SUCCESS)
}

/// The session id of `body` (the file `file`) on the session-enabled `queue`: decoded as the host
/// will decode it, so `send` groups it with the record's other messages.
fn session_id_of(
    sessions: &SessionIds,
    queue: &str,
    file: &Path,
    body: &[u8],
    content_type: Option<&str>,
) -> anyhow::Result<String> {
    let parts = MessageParts {
        queue: queue.to_owned(),
        content_type: content_type.map(str::to_owned),
        body: body.to_vec(),
        ..MessageParts::default()
    };
    let inbound = build_inbound(parts, None, &Limits::default()).with_context(|| {
        format!(
            "{} is not a Dataverse context, so it has no record to keep in order on queue `{queue}` \
             (ordering = \"per-record\"): fix the file or its content type",
            file.display()
        )
    })?;
    let fallback = inbound.saga.id.clone();
    Ok(sessions
        .for_queue(queue, inbound.context.as_ref(), &fallback)
        .unwrap_or(fallback))
}

/// `sagahost fixture from-dead-letter`: writes dead letter `sequence` of `queue` as a fixture.
pub async fn fixture_from_dead_letter(
    config: &Path,
    queue: &str,
    sequence: i64,
    dir: &Path,
) -> anyhow::Result<ExitCode> {
    let (loaded, transport) = open(config, Some(queue)).await?;
    let partner = loaded.queue_partners().get(queue).and_then(|name| {
        loaded.partners.get(name).map(|partner| PartnerOfQueue {
            name: name.clone(),
            config: partner.config.clone(),
        })
    });
    let dlq = DeadLetterQueue {
        transport: &transport,
        queue,
        partner: partner.as_ref().map(|p| p.name.as_str()),
    };
    let letter = dlq.show(sequence).await;
    transport.close().await;
    let Some(letter) = letter? else {
        anyhow::bail!("no dead letter {sequence} on `{queue}`; `dead-letters list` shows them");
    };
    for file in write_fixture(&letter, queue, partner.as_ref(), dir)? {
        println!("wrote {}", file.display());
    }
    println!(
        "next: fill in the HTTP answers (see the TODO in {}), then `sagahost test --update COMPONENT {}`",
        dir.join("fixture.toml").display(),
        dir.parent().map_or_else(|| ".".into(), |p| p.display().to_string())
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs a `dead-letters` subcommand.
pub async fn dead_letters(config: &Path, command: DeadLetterCommand) -> anyhow::Result<ExitCode> {
    let queue = match &command {
        DeadLetterCommand::List { queue, .. }
        | DeadLetterCommand::Show { queue, .. }
        | DeadLetterCommand::Redrive { queue, .. }
        | DeadLetterCommand::Purge { queue, .. } => queue.clone(),
    };
    let (loaded, transport) = open(config, Some(&queue)).await?;
    let done = run_dead_letters(&loaded, &transport, &queue, command).await;
    transport.close().await;
    done
}

async fn run_dead_letters(
    loaded: &Config,
    transport: &HostTransport,
    queue: &str,
    command: DeadLetterCommand,
) -> anyhow::Result<ExitCode> {
    let queue_partners = loaded.queue_partners();
    let dlq = DeadLetterQueue {
        transport,
        queue,
        partner: queue_partners.get(queue).map(String::as_str),
    };
    match command {
        DeadLetterCommand::List {
            filter, from, limit, ..
        } => {
            let page = dlq.list(&filter.filter(), from, limit.max(1)).await?;
            if page.letters.is_empty() {
                println!("no dead letters on `{queue}` match");
            }
            for letter in &page.letters {
                println!(
                    "{:>8}  {}  {:<28} {:<14} {}",
                    letter.message.sequence_number,
                    format_instant(letter.message.enqueued_time),
                    letter.reason,
                    partner_of(letter).unwrap_or("-"),
                    one_line(&letter.description, 80)
                );
            }
            if let Some(next) = page.next {
                println!("next page: --from {next}");
            }
        }
        DeadLetterCommand::Show { sequence, .. } => match dlq.show(sequence).await? {
            Some(letter) => print_dead_letter(&letter),
            None => anyhow::bail!("no dead letter {sequence} on `{queue}`; `dead-letters list` shows them"),
        },
        DeadLetterCommand::Redrive {
            select, reset_attempts, ..
        } => {
            let (limit, dry_run) = (select.limit, select.dry_run);
            let selection = select.selection("redrive")?;
            let matched = dlq.count(&selection, limit).await?;
            if dry_run {
                println!("would redrive {matched} dead letters to `{queue}` (dry run)");
                return Ok(ExitCode::SUCCESS);
            }
            if let Selection::One(sequence) = selection
                && matched == 0
            {
                anyhow::bail!("no dead letter {sequence} on `{queue}`; `dead-letters list` shows them");
            }
            let keys = reset_attempts.then(|| saga_state_keys(loaded)).transpose()?;
            let options = RedriveOptions {
                limit,
                reset_attempts: keys.as_ref(),
            };
            let mut progress = Progress::new("redriven", matched);
            let outcome = dlq.redrive(&selection, options, |done| progress.show(done)).await?;
            progress.finish(outcome.done);
            for (sequence, why) in &outcome.skipped {
                eprintln!("left dead letter {sequence} where it is: {why}");
            }
            println!("redrove {} dead letters to `{queue}`", outcome.done);
        }
        DeadLetterCommand::Purge { select, yes, .. } => {
            let (limit, dry_run) = (select.limit, select.dry_run);
            let selection = select.selection("purge")?;
            let matched = dlq.count(&selection, limit).await?;
            if dry_run {
                println!("would purge {matched} dead letters from `{queue}` (dry run)");
                return Ok(ExitCode::SUCCESS);
            }
            if matched == 0 {
                println!("no dead letters on `{queue}` match; nothing purged");
                return Ok(ExitCode::SUCCESS);
            }
            if !yes && !confirm(&format!("remove {matched} dead letters from `{queue}` for good?"))? {
                println!("nothing purged");
                return Ok(ExitCode::FAILURE);
            }
            let mut progress = Progress::new("purged", matched);
            let outcome = dlq.purge(&selection, limit, |done| progress.show(done)).await?;
            progress.finish(outcome.done);
            println!("purged {} dead letters from `{queue}`", outcome.done);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks on the terminal; refuses when there is none to ask on.
fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead as _, IsTerminal as _, Write as _};
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "{question} There is no terminal to confirm on: add --yes"
    );
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Progress of a long redrive or purge, on stderr about once a second.
struct Progress {
    verb: &'static str,
    expected: usize,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(verb: &'static str, expected: usize) -> Self {
        let now = Instant::now();
        Self {
            verb,
            expected,
            started: now,
            last: now,
        }
    }

    fn show(&mut self, done: usize) {
        if self.last.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last = Instant::now();
        let rate = done as f64 / self.started.elapsed().as_secs_f64();
        eprintln!("{} {done} of {} ({rate:.0}/s)", self.verb, self.expected);
    }

    fn finish(&self, done: usize) {
        if self.started.elapsed() >= Duration::from_secs(1) {
            eprintln!("{} {done} in {:.1?}", self.verb, self.started.elapsed());
        }
    }
}

fn print_dead_letter(letter: &DeadLetter) {
    let m = &letter.message;
    println!("sequence:       {}", m.sequence_number);
    println!("message id:     {}", m.message_id);
    println!("reason:         {}", letter.reason);
    println!("description:    {}", letter.description);
    println!("partner:        {}", partner_of(letter).unwrap_or("-"));
    println!("version:        {}", version_of(letter).unwrap_or("-"));
    println!("enqueued:       {}", format_instant(m.enqueued_time));
    if let Some(at) = letter.dead_lettered_at {
        println!("dead-lettered:  {}", format_instant(at));
    }
    println!("deliveries:     {}", m.delivery_count);
    println!("content type:   {}", m.content_type.as_deref().unwrap_or("-"));
    println!("properties:");
    for (name, value) in &m.properties {
        println!("  {name} = {value}");
    }
    match sagahost_dataverse::decode(&m.body, m.content_type.as_deref(), &Default::default()) {
        Ok(context) => {
            println!(
                "body ({} bytes), decoded:\n{}",
                m.body.len(),
                inspect::summary(&context)
            );
            match serde_json::to_string_pretty(&context.to_canonical_json()) {
                Ok(json) => println!("{json}"),
                Err(err) => println!("(the canonical JSON does not print: {err})"),
            }
        }
        Err(err) => println!(
            "body ({} bytes), which does not decode ({err}):\n{}",
            m.body.len(),
            String::from_utf8_lossy(&m.body)
        ),
    }
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
