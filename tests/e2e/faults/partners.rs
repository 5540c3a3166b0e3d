//! Partner servers that misbehave: real HTTP on loopback, answering like idempotent APIs and
//! injecting faults pseudo-randomly per `Idempotency-Key` (from `SAGAHOST_FAULTS_SEED`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::{LINGER_MS, TIMEOUT_MS, WRITEBACK_TIMEOUT_MS};

/// What a server did with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Fault {
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
    pub(super) fn failed(self) -> bool {
        !matches!(self, Fault::None | Fault::Replayed | Fault::Linger)
    }
}

/// One call as the server saw it.
#[derive(Debug, Clone)]
pub(super) struct Call {
    pub(super) key: String,
    pub(super) method: String,
    pub(super) path: String,
    pub(super) body: String,
    pub(super) fault: Fault,
    pub(super) at: Instant,
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

pub(super) struct FaultyPartner {
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

    pub(super) fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(super) fn calls(&self) -> Vec<Call> {
        self.server.calls.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.server.count.load(Ordering::Relaxed)
    }
}

/// The seed of the faults: `SAGAHOST_FAULTS_SEED`, else 0, so that a failing run can be rerun
/// with the same faults.
pub(super) fn seed() -> u64 {
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
pub(super) fn contact_of(text: &str) -> Option<usize> {
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

/// The saga's three partners.
pub(super) struct Partners {
    pub(super) mdm: FaultyPartner,
    pub(super) writeback: FaultyPartner,
    pub(super) erp: FaultyPartner,
}

impl Partners {
    /// The three partners, each injecting 503 7%, 429 5%, slow 3%, reset 3% and hang 2%; one
    /// writeback call in ten also outlasts the lock.
    pub(super) async fn start() -> Self {
        Self {
            mdm: FaultyPartner::start(mdm_answer, [7, 5, 3, 3, 2, 0], TIMEOUT_MS).await,
            writeback: FaultyPartner::start(writeback_answer, [7, 5, 3, 3, 2, 10], WRITEBACK_TIMEOUT_MS).await,
            erp: FaultyPartner::start(erp_answer, [7, 5, 3, 3, 2, 0], TIMEOUT_MS).await,
        }
    }

    /// Calls so far to all three.
    pub(super) fn calls(&self) -> usize {
        self.mdm.count() + self.writeback.count() + self.erp.count()
    }
}
