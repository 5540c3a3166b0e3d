//! Fault injection: the three-step contact saga (mdm → dataverse-writeback → erp, compensating
//! on an ERP rejection) runs a batch of contacts through `sagahost run` while everything around
//! it misbehaves, then the books are checked.
//!
//! The partner servers (real HTTP on loopback) answer 503 at random, 429 with `Retry-After`,
//! answer after the host's timeout, reset the connection mid-response, or never answer; the
//! writeback partner sometimes takes longer than the queue's lock, so only lock renewal keeps
//! the message. Like real idempotent APIs, a server that has done the work for an
//! `Idempotency-Key` answers every repeat of that key the same way. Meanwhile the host is
//! killed with SIGKILL and restarted several times, a new version of a component is deployed
//! mid-run, and (Service Bus scenario) `sagahost broker` itself is killed and restarted.
//!
//! The books: every contact reached exactly one end state (completed at the ERP, compensated
//! back to the MDM, or dead-lettered with a reason), no queue holds anything, a failed undo
//! of a later step never kept the MDM's step from being undone, and every repeated
//! partner call is explained (a retry after a fault, or a redelivery after a kill or a broker
//! restart); a repeat with no such cause would mean a lock was lost while a call ran.
//!
//! The short version runs in the README's test command. The long one:
//! `SAGAHOST_FAULTS_LONG=1 cargo test -p sagahost --test e2e faults -- --nocapture --test-threads 1`
//! (after `scripts/build-guests`). The faults are pseudo-random per `Idempotency-Key`, from
//! `SAGAHOST_FAULTS_SEED` (default 0): the same seed injects the same faults.
//!
//! Each run works in a temporary directory holding the host's and the broker's logs
//! (`host.log`, `broker.log`, at the `SAGAHOST_FAULTS_LOG` filter, default `warn`). A failed run
//! keeps it and prints where; `SAGAHOST_FAULTS_KEEP=1` keeps it after a passing run too.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use sagahost::config::Config;
use sagahost::saga::envelope::UNDO_CONTINUED_PROPERTY;
use sagahost_transport::dead_letters::DeadLetterQueues;
use sagahost_transport::embedded::EmbeddedQueue;

use crate::operate::{next_version, replace};
use crate::saga::{SAGA_QUEUES, config_for, send_contacts, write_config};
use crate::support;

/// The host's whole-request timeout for every partner, in milliseconds.
const TIMEOUT_MS: u64 = 1_000;
/// Lock duration of every queue; the writeback partner's slow answers take longer.
const LOCK_MS: u64 = 3_000;
/// The writeback partner may take this long (past the lock; within its own timeout).
const LINGER_MS: u64 = 3_500;
/// The host's timeout for the writeback partner, which lingers.
const WRITEBACK_TIMEOUT_MS: u64 = LINGER_MS + 1_000;

/// How big a run is: the short one in the test command, the long one on request.
struct Scale {
    contacts: usize,
    host_kills: usize,
    broker_restarts: usize,
}

fn scale(broker_restarts: usize) -> Scale {
    if std::env::var_os("SAGAHOST_FAULTS_LONG").is_some() {
        Scale {
            contacts: 3_000,
            host_kills: 5,
            broker_restarts: broker_restarts * 3,
        }
    } else {
        Scale {
            contacts: 150,
            host_kills: 2,
            broker_restarts,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Partner servers that misbehave
// ---------------------------------------------------------------------------------------------

/// What a server did with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    /// Did the work and answered.
    None,
    /// Answered as it did the first time for this key (work already done).
    Replayed,
    /// 503 without doing the work.
    ServerError,
    /// 429 with `Retry-After: 1`, without doing the work.
    TooManyRequests,
    /// Did the work but answered after the host's timeout.
    Slow,
    /// Did the work and reset the connection in the middle of the answer.
    Reset,
    /// Never answered (and did no work).
    Hang,
    /// Did the work, answering after the lock would have expired without renewal.
    Linger,
}

impl Fault {
    /// Whether the client saw a failure (and so may retry with the same key).
    fn failed(self) -> bool {
        !matches!(self, Fault::None | Fault::Replayed | Fault::Linger)
    }
}

/// One call as the server saw it.
#[derive(Debug, Clone)]
struct Call {
    key: String,
    method: String,
    path: String,
    body: String,
    fault: Fault,
    at: Instant,
}

/// The answer a partner gives when it does the work.
type Answer = fn(&Call, usize) -> (u16, String);

struct Server {
    calls: Mutex<Vec<Call>>,
    /// Calls so far, readable without the lock: the test polls it while the server serves.
    count: AtomicUsize,
    /// Calls per key so far, for the fault roll.
    per_key: Mutex<HashMap<String, usize>>,
    /// Answers already given per key: what a repeat gets.
    done: Mutex<HashMap<String, (u16, String)>>,
    answer: Answer,
    /// How long a slow answer takes: past the host's timeout for this partner.
    slow: Duration,
    /// Percent chance of each fault, in [`Fault`] order from `ServerError`.
    odds: [u64; 6],
}

struct FaultyPartner {
    addr: SocketAddr,
    server: Arc<Server>,
}

impl FaultyPartner {
    /// A server answering with `answer`, injecting faults at `odds`, for a host whose timeout
    /// for it is `timeout_ms`.
    async fn start(answer: Answer, odds: [u64; 6], timeout_ms: u64) -> Self {
        let server = Arc::new(Server {
            calls: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            per_key: Mutex::new(HashMap::new()),
            done: Mutex::new(HashMap::new()),
            answer,
            slow: Duration::from_millis(timeout_ms + 300),
            odds,
        });
        let state = server.clone();
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let server = state.clone();
            async move { serve(&server, method, uri, headers, body).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, server }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn calls(&self) -> Vec<Call> {
        self.server.calls.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.server.count.load(Ordering::Relaxed)
    }
}

/// The seed of the faults: `SAGAHOST_FAULTS_SEED`, else 0, so that a failing run can be rerun
/// with the same faults.
/// The log filter of the host and the broker (`SAGAHOST_FAULTS_LOG`, default `warn`).
fn log_filter() -> String {
    std::env::var("SAGAHOST_FAULTS_LOG").unwrap_or_else(|_| "warn".into())
}

/// A run's directory: removed after a passing run, kept (and its path printed) after a failed
/// one or when `SAGAHOST_FAULTS_KEEP` is set, so that its logs can be read.
struct RunDir(Option<tempfile::TempDir>);

impl RunDir {
    fn new() -> Self {
        Self(Some(tempfile::tempdir().unwrap()))
    }

    fn path(&self) -> &Path {
        self.0.as_ref().expect("present until dropped").path()
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let dir = self.0.take().expect("present until dropped");
        if std::thread::panicking() || std::env::var_os("SAGAHOST_FAULTS_KEEP").is_some() {
            eprintln!("faults: the run's logs and data are kept in {}", dir.keep().display());
        }
    }
}

fn seed() -> u64 {
    std::env::var("SAGAHOST_FAULTS_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0)
}

/// A deterministic pseudo-random number in 0..100 for the `n`th call with `key` (FNV-1a).
fn roll(key: &str, n: usize) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in seed()
        .to_le_bytes()
        .into_iter()
        .chain(key.bytes())
        .chain(n.to_le_bytes())
    {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash % 100
}

async fn serve(server: &Server, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut call = Call {
        key: key.clone(),
        method: method.to_string(),
        path: uri.path().to_string(),
        body: String::from_utf8_lossy(&body).into_owned(),
        fault: Fault::None,
        at: Instant::now(),
    };
    let replay = server.done.lock().unwrap().get(&key).cloned();
    let repeats = {
        let mut per_key = server.per_key.lock().unwrap();
        let seen = per_key.entry(key.clone()).or_default();
        *seen += 1;
        *seen - 1
    };
    let fault = if replay.is_some() {
        Fault::Replayed
    } else {
        let mut roll = roll(&key, repeats);
        let faults = [
            Fault::ServerError,
            Fault::TooManyRequests,
            Fault::Slow,
            Fault::Reset,
            Fault::Hang,
            Fault::Linger,
        ];
        let mut chosen = Fault::None;
        for (fault, odds) in faults.into_iter().zip(server.odds) {
            if roll < odds {
                chosen = fault;
                break;
            }
            roll -= odds;
        }
        chosen
    };
    call.fault = fault;
    let index = {
        let mut calls = server.calls.lock().unwrap();
        calls.push(call.clone());
        calls.len() - 1
    };
    server.count.fetch_add(1, Ordering::Relaxed);
    let (status, text) = match (fault, replay) {
        (Fault::Replayed, Some(answer)) => answer,
        (Fault::ServerError, _) => return (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response(),
        (Fault::TooManyRequests, _) => {
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "slow down").into_response();
        }
        (Fault::Hang, _) => {
            tokio::time::sleep(Duration::from_secs(3_600)).await;
            unreachable!("nobody waits an hour")
        }
        _ => {
            let answer = (server.answer)(&call, index);
            server.done.lock().unwrap().insert(key, answer.clone());
            answer
        }
    };
    match fault {
        Fault::Slow => tokio::time::sleep(server.slow).await,
        Fault::Linger => tokio::time::sleep(Duration::from_millis(LINGER_MS)).await,
        Fault::Reset => {
            // Headers and half a body, then the stream fails: hyper drops the connection. A 204
            // has no body to break, so the answer becomes a 200 that never finishes.
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(Bytes::from_static(b"{\"id\":")),
                Err(std::io::Error::other("reset on purpose")),
            ];
            let body = Body::from_stream(futures::stream::iter(chunks));
            return Response::builder()
                .status(if status == 204 { 200 } else { status })
                .header("content-type", "application/json")
                .body(body)
                .unwrap();
        }
        _ => {}
    }
    let mut response = (StatusCode::from_u16(status).unwrap(), text).into_response();
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

/// The contact index a request body or path names: its ids end in `-0000-4000-8000-<index>`
/// (see [`crate::saga::contacts`]), and so does the MDM id the server makes from them.
fn contact_of(text: &str) -> Option<usize> {
    const MARK: &str = "-0000-4000-8000-";
    let at = text.find(MARK)? + MARK.len();
    text.get(at..at + 12)?.parse().ok()
}

fn mdm_answer(call: &Call, _: usize) -> (u16, String) {
    match call.method.as_str() {
        "POST" => {
            let contact = contact_of(&call.body).expect("a contact id in the MDM create");
            (201, format!("{{\"id\":\"MDM-0000-4000-8000-{contact:012}\"}}"))
        }
        _ => (204, String::new()),
    }
}

fn writeback_answer(_: &Call, _: usize) -> (u16, String) {
    (204, String::new())
}

/// The ERP rejects every tenth contact, which the saga compensates.
fn erp_answer(call: &Call, _: usize) -> (u16, String) {
    match contact_of(&call.body) {
        Some(contact) if contact % 10 == 7 => (400, r#"{"error":"invalid email"}"#.into()),
        _ => (201, String::new()),
    }
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

struct Partners {
    mdm: FaultyPartner,
    writeback: FaultyPartner,
    erp: FaultyPartner,
}

/// The saga's config against the faulty partners, with short locks and timeouts.
fn saga_config(dir: &Path, partners: &Partners, transport: Option<&str>) -> (PathBuf, Config) {
    let mut table = config_for(
        dir,
        [
            partners.mdm.origin(),
            partners.writeback.origin(),
            partners.erp.origin(),
        ],
    );
    table.remove("webhook");
    let component = dir.join("mdm.wasm");
    std::fs::copy(support::component("mdm"), &component).unwrap();
    let partner_tables = table["partners"].as_table_mut().unwrap();
    partner_tables["mdm"]
        .as_table_mut()
        .unwrap()
        .insert("component".into(), component.display().to_string().into());
    for (name, timeout) in [
        ("mdm", TIMEOUT_MS),
        ("dataverse-writeback", WRITEBACK_TIMEOUT_MS),
        ("erp", TIMEOUT_MS),
    ] {
        let partner = partner_tables[name].as_table_mut().unwrap();
        let outbound = partner["outbound"].as_table_mut().unwrap();
        outbound.insert("timeout-ms".into(), (timeout as i64).into());
        let retry: toml::Table = toml::from_str(
            "initial-delay-ms = 100\nmax-delay-ms = 1000\nmax-attempts = 4\njitter = 0.2\nexhausted = \"dead-letter\"",
        )
        .unwrap();
        partner.insert("retry".into(), retry.into());
        partner.insert("concurrency".into(), 16.into());
    }
    let mut queues = toml::Table::new();
    for queue in SAGA_QUEUES {
        queues.insert(
            queue.into(),
            toml::from_str::<toml::Value>(&format!("lock-duration-ms = {LOCK_MS}")).unwrap(),
        );
    }
    table.insert("queues".into(), queues.into());
    if let Some(transport) = transport {
        table.insert(
            "transport".into(),
            toml::from_str::<toml::Table>(transport).unwrap().into(),
        );
    }
    let path = write_config(dir, &table);
    let loaded = Config::load(&path).unwrap().config;
    (path, loaded)
}

/// Something that happened to the run, and when.
#[derive(Debug, Clone, Copy)]
enum Incident {
    HostKilled(Instant),
    /// The broker was killed at the first instant and served again from the second.
    BrokerRestarted(Instant, Instant),
}

/// `sagahost broker` as a child process on a fixed address, restartable.
struct BrokerProcess {
    addr: SocketAddr,
    data: PathBuf,
    child: Child,
}

impl BrokerProcess {
    fn start(addr: SocketAddr, data: &Path) -> Self {
        std::fs::create_dir_all(data).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.join("broker.log"))
            .expect("opening the broker's log file");
        let child = Command::new(env!("CARGO_BIN_EXE_sagahost"))
            .args([
                "broker",
                "--listen",
                &addr.to_string(),
                "--lock-duration-ms",
                &LOCK_MS.to_string(),
                "--data",
            ])
            .arg(data)
            .env("RUST_LOG", log_filter())
            .stdout(log.try_clone().expect("duplicating the log file"))
            .stderr(log)
            .spawn()
            .expect("starting sagahost broker");
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "the broker never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            addr,
            data: data.to_path_buf(),
            child,
        }
    }

    fn restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        *self = Self::start(self.addr, &self.data);
    }

    fn database(&self) -> PathBuf {
        self.data.join("broker.sqlite3")
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `sagahost run` child, killed if the test ends early (a failed assertion) so that it does
/// not outlive the run.
struct HostProcess(Child);

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// End states and explanations found after a run.
#[derive(Debug, Default)]
struct Books {
    completed: BTreeSet<usize>,
    compensated: BTreeSet<usize>,
    dead_lettered: BTreeMap<usize, String>,
    /// Undos dead-lettered while the compensation went on to the older steps (not end states).
    failed_undos: BTreeMap<usize, String>,
    /// Contacts with evidence of two end states.
    conflicts: BTreeSet<usize>,
    faults: BTreeMap<String, usize>,
    repeats: BTreeMap<&'static str, usize>,
    /// The first few unexplained repeats: partner, the two calls' faults and the time between.
    unexplained: Vec<String>,
}

/// Why the `n`th call for a key was made, given the one before it.
fn repeat_cause(previous: &Call, next: &Call, incidents: &[Incident]) -> &'static str {
    if previous.fault.failed() {
        return "retry after a fault";
    }
    for incident in incidents {
        match *incident {
            Incident::HostKilled(at) if previous.at <= at && at <= next.at => return "redelivery after SIGKILL",
            // The host lives on: a delivery it held (prefetched ones included) may still call
            // its partner for up to a lock's time after the broker is back, then fail to settle.
            Incident::BrokerRestarted(killed, back)
                if previous.at <= back + Duration::from_millis(LOCK_MS + 1_000) && killed <= next.at =>
            {
                return "redelivery after a broker restart";
            }
            _ => {}
        }
    }
    "unexplained"
}

/// The books of a run that started at `started` (repeats are reported by their time since then).
async fn keep_books(queue: &EmbeddedQueue, partners: &Partners, incidents: &[Incident], started: Instant) -> Books {
    let mut books = Books::default();
    for queue_name in SAGA_QUEUES {
        for dead in queue.peek_dead_letters(queue_name, 0, 100_000).await.unwrap() {
            let contact = contact_of(&String::from_utf8_lossy(&dead.message.body)).expect("a contact's message");
            assert!(
                !dead.reason.is_empty(),
                "a dead letter without a reason on {queue_name}"
            );
            let continued = dead
                .message
                .properties
                .iter()
                .any(|(name, value)| name == UNDO_CONTINUED_PROPERTY && value == "true");
            // The MDM's undo is the oldest: after it there is nothing left to undo.
            if continued && queue_name != "contacts-compensate" {
                books
                    .failed_undos
                    .insert(contact, format!("{queue_name}: {}", dead.reason));
                continue;
            }
            let previous = books
                .dead_lettered
                .insert(contact, format!("{queue_name}: {}", dead.reason));
            assert!(previous.is_none(), "contact {contact} dead-lettered twice");
        }
    }
    let succeeded = |calls: &[Call], method: &str| -> BTreeSet<usize> {
        calls
            .iter()
            .filter(|c| c.method == method && !c.fault.failed())
            .filter_map(|c| contact_of(&c.body).or_else(|| contact_of(&c.path)))
            .collect()
    };
    let mdm = partners.mdm.calls();
    let erp = partners.erp.calls();
    let deleted = succeeded(&mdm, "DELETE");
    let accepted: BTreeSet<usize> = erp
        .iter()
        .filter(|c| !c.fault.failed())
        .filter_map(|c| contact_of(&c.body).filter(|contact| contact % 10 != 7))
        .collect();
    // Each piece of evidence points at one end state: no contact may have two.
    let dead: BTreeSet<usize> = books.dead_lettered.keys().copied().collect();
    books.conflicts = dead
        .intersection(&accepted)
        .chain(dead.intersection(&deleted))
        .chain(accepted.intersection(&deleted))
        .copied()
        .collect();
    books.compensated = deleted
        .iter()
        .filter(|c| !books.dead_lettered.contains_key(c))
        .copied()
        .collect();
    books.completed = accepted
        .iter()
        .filter(|c| !books.dead_lettered.contains_key(c) && !deleted.contains(c))
        .copied()
        .collect();
    for (name, calls) in [("mdm", mdm), ("writeback", partners.writeback.calls()), ("erp", erp)] {
        let mut by_key: BTreeMap<&str, Vec<&Call>> = BTreeMap::new();
        for call in &calls {
            if call.fault != Fault::None && call.fault != Fault::Replayed {
                *books.faults.entry(format!("{name} {:?}", call.fault)).or_default() += 1;
            }
            by_key.entry(call.key.as_str()).or_default().push(call);
        }
        for calls in by_key.values() {
            for pair in calls.windows(2) {
                let cause = repeat_cause(pair[0], pair[1], incidents);
                *books.repeats.entry(cause).or_default() += 1;
                if cause == "unexplained" && books.unexplained.len() < 10 {
                    books.unexplained.push(format!(
                        "{name} {} {}: {:?} at {:.1?}, then {:?} at {:.1?}",
                        pair[0].method,
                        pair[0].key,
                        pair[0].fault,
                        pair[0].at.duration_since(started),
                        pair[1].fault,
                        pair[1].at.duration_since(started)
                    ));
                }
            }
        }
    }
    books
}

/// Runs one scenario; `broker` is set for the Service Bus transport.
async fn run_scenario(name: &str, scale: Scale, service_bus: bool) {
    let dir = RunDir::new();
    let partners = Partners {
        // 503 7%, 429 5%, slow 3%, reset 3%, hang 2%.
        mdm: FaultyPartner::start(mdm_answer, [7, 5, 3, 3, 2, 0], TIMEOUT_MS).await,
        // The same, and one call in ten outlasts the lock.
        writeback: FaultyPartner::start(writeback_answer, [7, 5, 3, 3, 2, 10], WRITEBACK_TIMEOUT_MS).await,
        erp: FaultyPartner::start(erp_answer, [7, 5, 3, 3, 2, 0], TIMEOUT_MS).await,
    };
    let mut broker = None;
    let transport = if service_bus {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let process = BrokerProcess::start(addr, &dir.path().join("broker"));
        let connection = dir.path().join("connection-string");
        std::fs::write(
            &connection,
            format!(
                "Endpoint=sb://{addr};SharedAccessKeyName=RootManageSharedAccessKey;\
                 SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
            ),
        )
        .unwrap();
        broker = Some(process);
        Some(format!(
            "kind = \"servicebus\"\nprefetch = 8\nconnection-string = {{ file = {:?} }}",
            connection.display().to_string()
        ))
    } else {
        None
    };
    let (config_path, loaded) = saga_config(dir.path(), &partners, transport.as_deref());
    let database = match &broker {
        Some(broker) => broker.database(),
        None => {
            std::fs::create_dir_all(&loaded.data_dir).unwrap();
            loaded.data_dir.join("queue.sqlite3")
        }
    };
    send_contacts(&database, &loaded, scale.contacts).await;

    let started = Instant::now();
    let log = dir.path().join("host.log");
    let start_host = || HostProcess(support::start_host_logging(&config_path, &log_filter(), &log, &[]));
    let mut host = start_host();
    let mut incidents = Vec::new();
    // Incidents spread over the run by progress (partner calls so far), never at the same point.
    // Every contact makes at least two calls (an MDM create and a writeback, or four MDM
    // attempts), so each threshold is reached.
    let expected_calls = scale.contacts * 2;
    let mut plan: Vec<(usize, &str)> = (1..=scale.host_kills)
        .map(|k| (k * expected_calls / (scale.host_kills + 2), "kill"))
        .chain((1..=scale.broker_restarts).map(|k| (k * expected_calls / (scale.broker_restarts + 1) + 7, "broker")))
        .chain(std::iter::once((expected_calls / 2 + 3, "reload")))
        .collect();
    plan.sort();
    let calls = || partners.mdm.count() + partners.writeback.count() + partners.erp.count();
    for (threshold, what) in plan {
        while calls() < threshold {
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "{name}: no progress before the {what} at {threshold} calls (now {})",
                calls()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match what {
            "kill" => {
                host.0.kill().unwrap(); // SIGKILL
                host.0.wait().unwrap();
                incidents.push(Incident::HostKilled(Instant::now()));
                host = start_host();
            }
            "broker" => {
                let killed = Instant::now();
                broker.as_mut().expect("a broker").restart();
                incidents.push(Incident::BrokerRestarted(killed, Instant::now()));
            }
            _ => replace(
                &dir.path().join("mdm.wasm"),
                &next_version(&support::component_bytes("mdm"), "mid-run"),
            ),
        }
    }

    // Wait until every contact has an end state and every queue is empty, or until nothing is
    // queued and nothing has changed for a while (then the books below say what is missing).
    let mut last = (0, Instant::now());
    let books = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let queue = EmbeddedQueue::open(&database, &loaded.queue_settings()).unwrap();
        let mut busy = 0;
        for queue_name in SAGA_QUEUES {
            let depth = queue.queue_depth(queue_name).await.unwrap();
            busy += depth.active + depth.scheduled;
        }
        let books = keep_books(&queue, &partners, &incidents, started).await;
        let ended = books.completed.len() + books.compensated.len() + books.dead_lettered.len();
        if busy == 0 && ended >= scale.contacts {
            break books;
        }
        if ended != last.0 {
            last = (ended, Instant::now());
        } else if busy == 0 && last.1.elapsed() > Duration::from_secs(20) {
            break books;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "{name}: after {:?}, {ended} of {} contacts ended, {busy} messages queued; log:\n{}",
            started.elapsed(),
            scale.contacts,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    Command::new("kill")
        .arg("-TERM")
        .arg(host.0.id().to_string())
        .status()
        .unwrap();
    assert!(host.0.wait().unwrap().success(), "{name}: graceful shutdown failed");
    drop(broker);

    let every: BTreeSet<usize> = (0..scale.contacts).collect();
    let ended: BTreeSet<usize> = books
        .completed
        .iter()
        .chain(&books.compensated)
        .chain(books.dead_lettered.keys())
        .copied()
        .collect();
    let lost: Vec<&usize> = every.difference(&ended).collect();
    // A failed undo of a later step must not have kept the MDM's step from being undone. Checked
    // once the run is quiet: while it runs, the MDM's undo may still be on its way.
    for (contact, undo) in &books.failed_undos {
        assert!(
            books.compensated.contains(contact) || books.dead_lettered.contains_key(contact),
            "contact {contact}: the undo `{undo}` failed and the MDM record was never deleted"
        );
    }
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for reason in books.dead_lettered.values() {
        *reasons.entry(reason.as_str()).or_default() += 1;
    }
    println!(
        "faults/{name} (seed {}): {} contacts in {:.0?}; {} host kills, {} broker restarts, 1 reload; \
         faults injected {:?}; end states: {} completed, {} compensated, {} dead-lettered {reasons:?}; \
         failed undos the compensation went past {:?}; lost {}; repeated calls by cause {:?}",
        seed(),
        scale.contacts,
        started.elapsed(),
        incidents
            .iter()
            .filter(|i| matches!(i, Incident::HostKilled(_)))
            .count(),
        incidents
            .iter()
            .filter(|i| matches!(i, Incident::BrokerRestarted(..)))
            .count(),
        books.faults,
        books.completed.len(),
        books.compensated.len(),
        books.dead_lettered.len(),
        books.failed_undos,
        lost.len(),
        books.repeats,
    );
    let history = |contact: usize| -> Vec<String> {
        let mut seen = Vec::new();
        for (partner, calls) in [
            ("mdm", partners.mdm.calls()),
            ("writeback", partners.writeback.calls()),
            ("erp", partners.erp.calls()),
        ] {
            for call in calls {
                if contact_of(&call.body).or_else(|| contact_of(&call.path)) == Some(contact) {
                    let at = call.at.duration_since(started);
                    seen.push(format!("{at:.1?} {partner} {} {:?}", call.method, call.fault));
                }
            }
        }
        seen.sort();
        seen
    };
    let incident_times: Vec<String> = incidents
        .iter()
        .map(|i| match i {
            Incident::HostKilled(at) => format!("kill {:.1?}", at.duration_since(started)),
            Incident::BrokerRestarted(at, _) => format!("broker {:.1?}", at.duration_since(started)),
        })
        .collect();
    assert!(
        lost.is_empty(),
        "{name}: contacts with no end state: {:?}; incidents at {incident_times:?}",
        lost.iter().map(|c| (c, history(**c))).collect::<Vec<_>>(),
    );
    assert!(
        books.conflicts.is_empty(),
        "{name}: contacts that reached more than one end state: {:?}",
        books.conflicts
    );
    assert_eq!(
        books.repeats.get("unexplained"),
        None,
        "{name}: {:?}; first unexplained: {:?}; incidents at {incident_times:?}",
        books.repeats,
        books.unexplained
    );
    // The faults really happened, and the saga still got through most of the time.
    assert!(books.faults.len() >= 5, "{name}: {:?}", books.faults);
    assert!(!books.compensated.is_empty() && books.completed.len() > scale.contacts / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_queue_with_faulty_partners_kills_and_a_reload_loses_nothing() {
    run_scenario("embedded", scale(0), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_bus_with_faulty_partners_kills_and_broker_restarts_loses_nothing() {
    run_scenario("servicebus", scale(1), true).await;
}
