//! `sagahost quickstart`: the three-partner contact saga, end to end, on one machine.
//!
//! It starts local stand-ins for the partner systems (`partners.rs`), writes a
//! config for the example components, starts the host on the embedded queue
//! exactly as `sagahost run` does, posts contact messages through the webhook,
//! prints each step as it happens, and ends with the path every message took
//! and the totals. No cloud, no Docker. With `--transport servicebus` the host
//! runs the production Service Bus transport against a `sagahost broker` it
//! starts on loopback.

mod partners;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sagahost_broker::{self as broker, BrokerConfig};
use sagahost_transport::embedded::EmbeddedQueue;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::saga::{SagaEvent, Verdict};
use crate::service::Host;

/// Options of `sagahost quickstart`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Where the built example components are.
    #[arg(long, default_value = "target/wasm32-wasip2/guest")]
    pub components: PathBuf,
    /// The example messages (`contact-create.json` is the template).
    #[arg(long, default_value = "guest-examples/messages")]
    pub messages: PathBuf,
    /// Dataverse sample folders: the webhook samples found in them are posted as well
    /// (folders that do not exist are skipped, so `../shared` is optional).
    #[arg(long, default_values = ["tests/samples/dataverse", "../shared/samples/dataverse"])]
    pub samples: Vec<PathBuf>,
    /// How many contacts to create; every fourth has an invalid email, which the ERP rejects.
    #[arg(long, default_value_t = 12)]
    pub contacts: usize,
    /// Give up waiting for the sagas after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
    /// The queues: the embedded queue in process, or the Service Bus transport (the production
    /// code path, over AMQP) against a `sagahost broker` started on loopback.
    #[arg(long, value_enum, default_value_t = QueueKind::Embedded)]
    pub transport: QueueKind,
    /// The language of the example components the saga runs (`scripts/build-guests` builds
    /// all three); `mixed` runs the MDM step in TypeScript, the Dataverse writeback in Python
    /// and the ERP step in Rust.
    #[arg(long, value_enum, default_value_t = Language::Rust)]
    pub language: Language,
    /// Also serve the admin endpoint and its operator console (on 127.0.0.1:9090 unless an
    /// address is given), and keep the host and the partner systems running after the
    /// summary until Ctrl-C, to look around in `http://ADDRESS/console/`.
    #[arg(long, value_name = "ADDRESS", num_args = 0..=1, default_missing_value = "127.0.0.1:9090")]
    pub console: Option<String>,
}

/// Which build of the example components the quickstart runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    Typescript,
    Python,
    Mixed,
}

impl Language {
    /// Where `scripts/build-guests` puts `step`'s component of this language under `dir`.
    fn component(self, dir: &Path, step: &str) -> PathBuf {
        let language = match (self, step) {
            (Language::Mixed, "mdm") => "typescript",
            (Language::Mixed, "dataverse-writeback") => "python",
            (Language::Mixed | Language::Rust, _) => "rust",
            (Language::Typescript, _) => "typescript",
            (Language::Python, _) => "python",
        };
        built_guest(dir, language, step)
    }
}

/// Where `scripts/build-guests` puts the guest `name` written in `language` (`rust`,
/// `typescript` or `python`) under `dir` (`target/wasm32-wasip2/guest`). Tests and benchmarks
/// find the built guests through here too.
pub fn built_guest(dir: &Path, language: &str, name: &str) -> PathBuf {
    match language {
        // Cargo names the Rust builds after their crates.
        "rust" => dir.join(format!("{}.wasm", name.replace('-', "_"))),
        _ => dir.join(language).join(format!("{name}.wasm")),
    }
}

/// Which transport the quickstart runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueKind {
    Embedded,
    Servicebus,
}

const STEPS: [&str; 3] = ["mdm", "dataverse-writeback", "erp"];

/// Runs the quickstart; exits non-zero if any saga did not reach an end state.
pub async fn run(options: Options) -> anyhow::Result<ExitCode> {
    let dir = std::env::temp_dir().join(format!("sagahost-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let outcome = run_in(&options, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

async fn run_in(options: &Options, dir: &Path) -> anyhow::Result<ExitCode> {
    let components = std::path::absolute(&options.components)?;
    for step in STEPS {
        let path = options.language.component(&components, step);
        if !path.is_file() {
            anyhow::bail!(
                "{} is missing: build the examples with `scripts/build-guests` first",
                path.display()
            );
        }
    }
    let credentials = partners::Credentials {
        mdm_api_key: random_token(),
        dataverse_client_secret: random_token(),
        erp_token: random_token(),
    };
    let ledger = Arc::new(Mutex::new(partners::Ledger::default()));
    let stop_partners = CancellationToken::new();
    let endpoints = partners::start(credentials.clone(), ledger.clone(), stop_partners.clone()).await?;
    println!(
        "partner systems on loopback: MDM {}, Dataverse Web API {}, ERP {}",
        endpoints.mdm, endpoints.dataverse, endpoints.erp
    );

    let stop_broker = CancellationToken::new();
    let (mut tables, queues) = match options.transport {
        QueueKind::Embedded => (String::new(), "the embedded queue".to_string()),
        QueueKind::Servicebus => {
            let address = start_broker(dir, stop_broker.clone()).await?;
            let connection_string = format!(
                "Endpoint=sb://{address};SharedAccessKeyName=RootManageSharedAccessKey;\
                 SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
            );
            let path = dir.join("servicebus-connection-string");
            std::fs::write(&path, connection_string)?;
            let table = format!(
                "[transport]\nkind = \"servicebus\"\nconnection-string = {{ file = {} }}\n",
                toml_string(&path.display().to_string())
            );
            (table, format!("Service Bus (AMQP, sagahost broker on {address})"))
        }
    };
    if let Some(address) = &options.console {
        writeln!(tables, "[admin]\nlisten = {}\n", toml_string(address))?;
    }
    let webhook_key = random_token();
    let config_path = write_config(
        dir,
        &components,
        options.language,
        &endpoints,
        &credentials,
        &webhook_key,
        &tables,
    )?;
    println!("config: {}", config_path.display());
    let host = Host::start(&Config::load(&config_path)?.config).await?;
    let mut events = host.subscribe();
    let webhook = host.webhook_addr.context("the quickstart config has a webhook")?;
    println!("host running on {queues}; webhook on http://{webhook}/api/webhook\n");

    let bodies = messages(options)?;
    let client = reqwest::Client::new();
    // Sagas by the message id each post became, until the saga's first event names its id.
    let mut posted: BTreeMap<String, String> = BTreeMap::new();
    for (label, body) in &bodies {
        let response = client
            .post(format!("http://{webhook}/api/webhook?code={webhook_key}"))
            .header("content-type", "application/json")
            .header("x-ms-dynamics-organization", "contoso.crm.dynamics.com")
            .header("x-ms-dynamics-entity-name", "contact")
            .header("x-ms-dynamics-request-name", "Create")
            .body(body.clone())
            .send()
            .await
            .context("posting to the webhook")?;
        anyhow::ensure!(response.status().is_success(), "webhook answered {}", response.status());
        let answer = response.text().await.context("reading the webhook's answer")?;
        let message_id = answer
            .trim()
            .rsplit_once("as message ")
            .map(|(_, id)| id.to_string())
            .with_context(|| format!("the webhook's answer names no message: {answer}"))?;
        posted.insert(message_id, label.clone());
    }
    println!(
        "posted {} messages through the webhook; following the sagas:\n",
        posted.len()
    );
    let mut sagas: BTreeMap<String, Saga> = BTreeMap::new();

    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.timeout_secs);
    while !posted.is_empty() || sagas.values().any(|s| s.end.is_none()) {
        let event = match tokio::time::timeout_at(deadline.into(), events.recv()).await {
            Ok(Ok(event)) => event,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                println!("(missed {n} progress events)");
                continue;
            }
            Ok(Err(_)) | Err(_) => break,
        };
        if !event.compensation
            && event.step == 0
            && let Some(label) = posted.remove(&event.message_id)
        {
            sagas.insert(
                event.saga_id.clone(),
                Saga {
                    label,
                    path: Vec::new(),
                    end: None,
                },
            );
        }
        let Some(saga) = sagas.get_mut(&event.saga_id) else {
            continue;
        };
        println!("  {:<28} {}", saga.label, describe(&event));
        saga.record(&event);
    }
    let elapsed = started.elapsed();
    let verdict = report(&sagas, posted.len(), elapsed, &ledger, options.timeout_secs);
    if let Some(admin) = host.admin_addr {
        use tokio::signal::unix::{SignalKind, signal};
        // Listening before saying so: a Ctrl-C right after the line stops the host cleanly.
        let mut interrupt = signal(SignalKind::interrupt()).context("listening for Ctrl-C")?;
        let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        println!("\nconsole: http://{admin}/console/ (no token: it answers on this machine only)");
        println!("the host and the partner systems keep running; press Ctrl-C to stop");
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    }
    host.shutdown().await;
    stop_broker.cancel();
    stop_partners.cancel();
    Ok(verdict)
}

/// Prints the summary and the partner systems' books; fails when a saga did not finish or
/// the books do not balance.
fn report(
    sagas: &BTreeMap<String, Saga>,
    unstarted: usize,
    elapsed: Duration,
    ledger: &Mutex<partners::Ledger>,
    timeout_secs: u64,
) -> ExitCode {
    println!("\n{}", summary(sagas, elapsed));
    let ledger = ledger.lock().expect("ledger");
    println!("{}", ledger_summary(&ledger));
    let unfinished = sagas.values().filter(|s| s.end.is_none()).count() + unstarted;
    if unfinished > 0 {
        println!("{unfinished} sagas did not finish within {timeout_secs} s");
        return ExitCode::FAILURE;
    }
    let mismatches = unbalanced_books(sagas, &ledger);
    if !mismatches.is_empty() {
        println!("The books do NOT balance:");
        for mismatch in &mismatches {
            println!("  - {mismatch}");
        }
        return ExitCode::FAILURE;
    }
    println!(
        "The books balance: every completed saga has one live MDM record and one ERP customer, every compensated one a deleted MDM record."
    );
    ExitCode::SUCCESS
}

/// Serves a Service Bus–compatible broker over a fresh queue in `dir` on a loopback port.
async fn start_broker(dir: &Path, stop: CancellationToken) -> anyhow::Result<std::net::SocketAddr> {
    let queue = EmbeddedQueue::open(&dir.join("broker.sqlite3"), &[])?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the broker")?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(err) = broker::serve_with(listener, queue, BrokerConfig::default(), stop).await {
            eprintln!("the quickstart broker stopped: {err:#}");
        }
    });
    Ok(address)
}

/// Writes the quickstart's config (and the secret files it names) into `dir`.
fn write_config(
    dir: &Path,
    components: &Path,
    language: Language,
    endpoints: &partners::Endpoints,
    credentials: &partners::Credentials,
    webhook_key: &str,
    tables: &str,
) -> anyhow::Result<PathBuf> {
    let secret = |name: &str, value: &str| -> anyhow::Result<String> {
        let path = dir.join(name);
        std::fs::write(&path, value)?;
        Ok(toml_string(&path.display().to_string()))
    };
    let retry = "[partners.{}.retry]\ninitial-delay-ms = 200\nmax-delay-ms = 2000\nmax-attempts = 6\n";
    let mut text = String::new();
    writeln!(
        text,
        "data-dir = {}\n",
        toml_string(&dir.join("data").display().to_string())
    )?;
    let state_key = hex::encode(rand::random::<[u8; 32]>());
    writeln!(
        text,
        "[saga-state]\nsigning-key = \"quickstart\"\nkeys = {{ quickstart = {{ file = {} }} }}\n",
        secret("saga-state-key", &state_key)?
    )?;
    writeln!(text, "{tables}")?;
    writeln!(
        text,
        "[webhook]\nlisten = \"127.0.0.1:0\"\nqueue = \"contacts\"\nkey = {{ file = {} }}\n",
        secret("webhook-key", webhook_key)?
    )?;
    let partners = [
        (
            "mdm",
            "contacts",
            Some("writeback"),
            "mdm-url",
            format!("http://{}/api", endpoints.mdm),
            format!(
                "mdm-api-key = {{ file = {} }}",
                secret("mdm-api-key", &credentials.mdm_api_key)?
            ),
        ),
        (
            "dataverse-writeback",
            "writeback",
            Some("erp"),
            "dataverse-url",
            format!("http://{}", endpoints.dataverse),
            // An access token from the demo Dataverse's token endpoint, refreshed as it expires.
            format!(
                "dataverse-token = {{ oauth2 = {{ token-url = {}, client-id = \"{}\", \
                 client-secret = {{ file = {} }}, scope = {} }} }}",
                toml_string(&format!("http://{}/oauth2/token", endpoints.dataverse)),
                partners::DATAVERSE_CLIENT_ID,
                secret("dataverse-client-secret", &credentials.dataverse_client_secret)?,
                toml_string(&format!("http://{}/.default", endpoints.dataverse)),
            ),
        ),
        (
            "erp",
            "erp",
            None,
            "erp-url",
            format!("http://{}/api", endpoints.erp),
            format!(
                "erp-token = {{ file = {} }}",
                secret("erp-token", &credentials.erp_token)?
            ),
        ),
    ];
    for (name, queue, next, url_key, url, secrets) in partners {
        writeln!(text, "[partners.{name}]")?;
        writeln!(
            text,
            "component = {}",
            toml_string(&language.component(components, name).display().to_string())
        )?;
        writeln!(text, "queue = \"{queue}\"")?;
        if let Some(next) = next {
            writeln!(text, "routes = {{ next = \"{next}\" }}")?;
        }
        writeln!(text, "config = {{ {url_key} = {} }}", toml_string(&url))?;
        writeln!(text, "secrets = {{ {secrets} }}")?;
        let origin = url.split('/').take(3).collect::<Vec<_>>().join("/");
        writeln!(text, "outbound = {{ allow = [{}] }}", toml_string(&origin))?;
        writeln!(text, "{}", retry.replace("{}", name))?;
    }
    let path = dir.join("quickstart.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// The webhook samples posted after the contacts, by file name, from whichever sample
/// folder has them: the repository's own, and Microsoft's documented body from `../shared`.
const WEBHOOK_SAMPLES: [(&str, &str); 2] = [
    ("contact-create.dcjs.json", "contact create sample"),
    (
        "MicrosoftDocs__powerapps-docs__use-webhooks.md__webhook-update-contact.json",
        "docs webhook sample",
    ),
];

/// The messages to post: contacts made from the template, then the webhook samples.
fn messages(options: &Options) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    const TEMPLATE_CORRELATION: &str = "7d4e2b9a-1c3f-4a5e-9b8d-2f6a0c1e3b57";
    const TEMPLATE_CONTACT: &str = "0c7f3a5e-6b8e-ef11-8ee9-000d3a4f5b21";
    const NAMES: [&str; 8] = ["Ana", "Bo", "Chen", "Dara", "Eli", "Femi", "Gus", "Hana"];
    let template_path = options.messages.join("contact-create.json");
    let template = std::fs::read_to_string(&template_path)
        .with_context(|| format!("reading the message template {}", template_path.display()))?;
    let mut out = Vec::new();
    for i in 0..options.contacts {
        let first = NAMES[i % NAMES.len()];
        let email = if i % 4 == 3 {
            "not-an-email".to_string()
        } else {
            format!("{}.{i}@contoso.com", first.to_lowercase())
        };
        let body = template
            .replace(TEMPLATE_CORRELATION, &random_guid())
            .replace(TEMPLATE_CONTACT, &random_guid())
            .replace("ana.ruiz@contoso.com", &email)
            .replace("\"Ana\"", &format!("\"{first}\""));
        let label = format!(
            "contact {:>2} {first}{}",
            i + 1,
            if i % 4 == 3 { " (bad email)" } else { "" }
        );
        out.push((label, body.into_bytes()));
    }
    for folder in &options.samples {
        for (file, label) in WEBHOOK_SAMPLES {
            if let Ok(body) = std::fs::read(folder.join(file)) {
                out.push((label.to_string(), body));
            }
        }
    }
    Ok(out)
}

fn random_guid() -> String {
    let h = hex::encode(rand::random::<[u8; 16]>());
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// One saga as the quickstart follows it.
struct Saga {
    label: String,
    path: Vec<String>,
    end: Option<&'static str>,
}

impl Saga {
    fn record(&mut self, event: &SagaEvent) {
        let partner = &event.partner;
        let (step, end) = match &event.verdict {
            Verdict::Completed => (format!("{partner} ✓"), Some("completed")),
            Verdict::Forwarded { .. } => (format!("{partner} ✓"), None),
            Verdict::Retried { .. } if event.compensation => (format!("undo {partner} ↻"), None),
            Verdict::Retried { .. } => (format!("{partner} ↻"), None),
            Verdict::Compensating { .. } if !event.compensation => (format!("{partner} ✗"), None),
            Verdict::Compensating { .. } => (format!("undo {partner} ✓"), None),
            Verdict::Compensated if !event.compensation => (format!("{partner} ✗"), Some("failed, nothing to undo")),
            Verdict::Compensated => (format!("undo {partner} ✓"), Some("compensated")),
            Verdict::DeadLettered { .. } => (format!("{partner} ☠"), Some("dead-lettered")),
        };
        self.path.push(step);
        self.end = end;
    }
}

fn describe(event: &SagaEvent) -> String {
    let who = if event.compensation {
        format!("undo {}", event.partner)
    } else {
        event.partner.clone()
    };
    match &event.verdict {
        Verdict::Completed => format!("{who}: completed"),
        Verdict::Forwarded { queues } => format!("{who}: forwarded to {}", queues.join(", ")),
        Verdict::Retried { attempt, delay } => format!("{who}: transient failure, attempt {attempt} in {delay:.1?}"),
        Verdict::Compensating { next_partner } => format!("{who}: compensating, next undo {next_partner}"),
        Verdict::Compensated => format!("{who}: saga compensated"),
        Verdict::DeadLettered { reason, description } => format!("{who}: dead-lettered ({reason}): {description}"),
    }
}

fn summary(sagas: &BTreeMap<String, Saga>, elapsed: Duration) -> String {
    let mut out = String::from("Summary: the path each message took\n");
    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ordered: Vec<&Saga> = sagas.values().collect();
    ordered.sort_by(|a, b| a.label.cmp(&b.label));
    for saga in ordered {
        let end = saga.end.unwrap_or("unfinished");
        *totals.entry(end).or_default() += 1;
        let _ = writeln!(out, "  {:<28} {:<16} {}", saga.label, end, saga.path.join(" → "));
    }
    let retries: usize = sagas
        .values()
        .map(|s| s.path.iter().filter(|p| p.ends_with('↻')).count())
        .sum();
    let totals: Vec<String> = totals.iter().map(|(end, n)| format!("{n} {end}")).collect();
    let _ = writeln!(
        out,
        "\nTotals: {} messages in {elapsed:.1?}: {}; {retries} retries",
        sagas.len(),
        totals.join(", ")
    );
    out
}

/// Where the partner systems disagree with the sagas' end states: completed sagas, live MDM
/// records and ERP customers must be as many, and compensated sagas as many as deleted MDM
/// records. Empty when the books balance.
fn unbalanced_books(sagas: &BTreeMap<String, Saga>, ledger: &partners::Ledger) -> Vec<String> {
    let ended = |end: &str| sagas.values().filter(|s| s.end == Some(end)).count();
    let (completed, compensated) = (ended("completed"), ended("compensated"));
    let mut mismatches = Vec::new();
    for (count, what) in [
        (ledger.mdm_records.len(), "live MDM records"),
        (ledger.erp_customers.len(), "ERP customers"),
    ] {
        if count != completed {
            mismatches.push(format!("{completed} sagas completed, but there are {count} {what}"));
        }
    }
    if ledger.mdm_deleted.len() != compensated {
        mismatches.push(format!(
            "{compensated} sagas were compensated, but {} MDM records were deleted",
            ledger.mdm_deleted.len()
        ));
    }
    mismatches
}

fn ledger_summary(ledger: &partners::Ledger) -> String {
    let failures: Vec<String> = ledger
        .injected_failures
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    format!(
        "Partner systems: MDM holds {} records ({} deleted by compensation), {} contacts written back \
         (with {} access tokens from the Dataverse token endpoint), {} ERP customers; transient failures injected: {}",
        ledger.mdm_records.len(),
        ledger.mdm_deleted.len(),
        ledger.writebacks.values().filter(|v| !v.is_empty()).count(),
        ledger.tokens_issued,
        ledger.erp_customers.len(),
        if failures.is_empty() {
            "none".to_string()
        } else {
            failures.join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Command {
        #[command(flatten)]
        options: Options,
    }

    #[test]
    fn the_repository_sample_is_posted_and_a_missing_sample_folder_is_skipped() {
        let defaults = Command::parse_from(["quickstart"]).options;
        assert_eq!(
            defaults.samples,
            [
                PathBuf::from("tests/samples/dataverse"),
                PathBuf::from("../shared/samples/dataverse")
            ]
        );

        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let options = Options {
            messages: workspace.join("guest-examples/messages"),
            samples: vec![
                workspace.join("tests/samples/dataverse"),
                workspace.join("no-such-folder"),
            ],
            contacts: 2,
            ..defaults
        };
        let bodies = messages(&options).unwrap();
        let labels: Vec<&str> = bodies.iter().map(|(label, _)| label.as_str()).collect();
        assert_eq!(labels, ["contact  1 Ana", "contact  2 Bo", "contact create sample"]);
        let sample = workspace.join("tests/samples/dataverse/contact-create.dcjs.json");
        assert_eq!(bodies[2].1, std::fs::read(sample).unwrap());
    }
}
