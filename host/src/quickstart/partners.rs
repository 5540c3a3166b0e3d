//! Small local stand-ins for the quickstart's partner systems, on loopback.
//!
//! They behave like the real ones in the ways a saga cares about: the MDM
//! assigns ids and can delete them again, the Dataverse Web API accepts the
//! write-back, and the ERP rejects contacts with an invalid email. Each fails
//! transiently now and then (503, or 429 with `Retry-After`) and checks the
//! credentials the host injects, answering 401 when they are wrong. The Dataverse
//! Web API takes short-lived access tokens from its own OAuth token endpoint
//! (client credentials), as the real one takes Entra ID tokens, so the host's
//! token refresh runs during the quickstart. The MDM and
//! the ERP honour `Idempotency-Key` as real APIs do, so a repeated call (after a
//! lost answer or a redelivery) does not create a second record.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, patch, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::random_token;

/// The credentials the partner systems expect; the host reads them from secret
/// files and the components only name them.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub mdm_api_key: String,
    /// The writeback's client secret at the Dataverse token endpoint.
    pub dataverse_client_secret: String,
    pub erp_token: String,
}

/// The writeback's client id at the Dataverse token endpoint.
pub const DATAVERSE_CLIENT_ID: &str = "quickstart-writeback";
/// How long a Dataverse access token lasts: short, so the host refreshes it during the run.
const TOKEN_LIFETIME: Duration = Duration::from_secs(5);

/// What the partner systems saw, for the summary.
#[derive(Debug, Default)]
pub struct Ledger {
    /// MDM records by id, with the Dataverse id they were created for.
    pub mdm_records: BTreeMap<String, String>,
    /// MDM ids deleted by compensation.
    pub mdm_deleted: Vec<String>,
    /// Contacts whose MDM id was written back (Dataverse id → MDM id, or empty when cleared).
    pub writebacks: BTreeMap<String, String>,
    /// ERP customers created (MDM ids).
    pub erp_customers: Vec<String>,
    /// MDM ids handed out so far; ids are never reused, even after a delete.
    pub mdm_issued: u64,
    /// What each `Idempotency-Key` already created: an MDM id, or an ERP customer.
    pub created_by_key: BTreeMap<String, String>,
    /// Transient failures injected, by system.
    pub injected_failures: BTreeMap<&'static str, u64>,
    /// Access tokens the Dataverse token endpoint issued.
    pub tokens_issued: u64,
}

#[derive(Clone)]
struct Shared {
    credentials: Credentials,
    ledger: Arc<Mutex<Ledger>>,
    calls: Arc<AtomicU64>,
    /// Access tokens issued and when each expires.
    tokens: Arc<Mutex<BTreeMap<String, Instant>>>,
}

impl Shared {
    /// Every `every`-th call fails transiently, so the quickstart shows retries.
    fn flaky(&self, system: &'static str, every: u64) -> Option<Response> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if !n.is_multiple_of(every) {
            return None;
        }
        *self
            .ledger
            .lock()
            .expect("ledger")
            .injected_failures
            .entry(system)
            .or_default() += 1;
        Some(if n.is_multiple_of(2) {
            (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")], "slow down").into_response()
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable").into_response()
        })
    }
}

/// The base URLs of the running partner systems.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub mdm: SocketAddr,
    pub dataverse: SocketAddr,
    pub erp: SocketAddr,
}

/// Starts the three systems on loopback ports; they stop when `shutdown` is cancelled.
pub async fn start(
    credentials: Credentials,
    ledger: Arc<Mutex<Ledger>>,
    shutdown: CancellationToken,
) -> std::io::Result<Endpoints> {
    let shared = |calls| Shared {
        credentials: credentials.clone(),
        ledger: ledger.clone(),
        calls,
        tokens: Arc::default(),
    };
    let mdm = Router::new()
        .route("/api/contacts", post(mdm_create))
        .route("/api/contacts/{id}", delete(mdm_delete))
        .with_state(shared(Arc::new(AtomicU64::new(0))));
    let dataverse = Router::new()
        .route("/oauth2/token", post(dataverse_token))
        .route("/api/data/v9.2/{target}", patch(dataverse_patch))
        .with_state(shared(Arc::new(AtomicU64::new(0))));
    let erp = Router::new()
        .route("/api/customers", post(erp_create))
        .with_state(shared(Arc::new(AtomicU64::new(0))));
    Ok(Endpoints {
        mdm: serve(mdm, shutdown.clone()).await?,
        dataverse: serve(dataverse, shutdown.clone()).await?,
        erp: serve(erp, shutdown).await?,
    })
}

async fn serve(app: Router, shutdown: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    });
    Ok(addr)
}

fn header_is(headers: &HeaderMap, name: &str, expected: &str) -> bool {
    headers.get(name).and_then(|v| v.to_str().ok()) == Some(expected)
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, "bad credentials").into_response()
}

async fn mdm_create(State(s): State<Shared>, headers: HeaderMap, body: String) -> Response {
    if !header_is(&headers, "x-api-key", &s.credentials.mdm_api_key) {
        return unauthorized();
    }
    if let Some(failure) = s.flaky("mdm", 7) {
        return failure;
    }
    let Ok(contact) = serde_json::from_str::<serde_json::Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "body is not JSON").into_response();
    };
    let dataverse_id = contact["dataverseId"].as_str().unwrap_or_default().to_string();
    let mut ledger = s.ledger.lock().expect("ledger");
    let key = idempotency_key(&headers);
    let id = match key.as_ref().and_then(|key| ledger.created_by_key.get(key)) {
        Some(id) => id.clone(),
        None => {
            ledger.mdm_issued += 1;
            let id = format!("MDM-{:06}", ledger.mdm_issued);
            ledger.mdm_records.insert(id.clone(), dataverse_id);
            if let Some(key) = key {
                ledger.created_by_key.insert(key, id.clone());
            }
            id
        }
    };
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"id\":\"{id}\"}}"),
    )
        .into_response()
}

async fn mdm_delete(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !header_is(&headers, "x-api-key", &s.credentials.mdm_api_key) {
        return unauthorized();
    }
    let mut ledger = s.ledger.lock().expect("ledger");
    if ledger.mdm_records.remove(&id).is_none() {
        return (StatusCode::NOT_FOUND, "no such record").into_response();
    }
    ledger.mdm_deleted.push(id);
    StatusCode::NO_CONTENT.into_response()
}

/// The client-credentials grant: a token for the writeback's client id and secret.
async fn dataverse_token(State(s): State<Shared>, body: String) -> Response {
    let form: BTreeMap<&str, &str> = body.split('&').filter_map(|pair| pair.split_once('=')).collect();
    let granted = form.get("grant_type") == Some(&"client_credentials")
        && form.get("client_id") == Some(&DATAVERSE_CLIENT_ID)
        && form.get("client_secret") == Some(&s.credentials.dataverse_client_secret.as_str());
    if !granted {
        let refusal = r#"{"error":"invalid_client","error_description":"unknown client or wrong secret"}"#;
        return (StatusCode::UNAUTHORIZED, refusal).into_response();
    }
    let token = random_token();
    let now = Instant::now();
    let mut tokens = s.tokens.lock().expect("tokens");
    tokens.retain(|_, expires| *expires > now);
    tokens.insert(token.clone(), now + TOKEN_LIFETIME);
    s.ledger.lock().expect("ledger").tokens_issued += 1;
    let answer = serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME.as_secs(),
    });
    ([(header::CONTENT_TYPE, "application/json")], answer.to_string()).into_response()
}

/// Whether `headers` carry a Dataverse access token that has not expired.
fn valid_token(s: &Shared, headers: &HeaderMap) -> bool {
    let Some(token) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let tokens = s.tokens.lock().expect("tokens");
    tokens.get(token).is_some_and(|expires| *expires > Instant::now())
}

async fn dataverse_patch(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(target): Path<String>,
    body: String,
) -> Response {
    if !valid_token(&s, &headers) {
        return unauthorized();
    }
    if let Some(failure) = s.flaky("dataverse", 5) {
        return failure;
    }
    let Some(contact_id) = target.strip_prefix("contacts(").and_then(|t| t.strip_suffix(')')) else {
        return (StatusCode::NOT_FOUND, "unknown entity set").into_response();
    };
    let Ok(update) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&body) else {
        return (StatusCode::BAD_REQUEST, "body is not a JSON object").into_response();
    };
    let value = update
        .values()
        .next()
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    s.ledger
        .lock()
        .expect("ledger")
        .writebacks
        .insert(contact_id.to_string(), value);
    StatusCode::NO_CONTENT.into_response()
}

async fn erp_create(State(s): State<Shared>, headers: HeaderMap, body: String) -> Response {
    if !header_is(
        &headers,
        "authorization",
        &format!("Bearer {}", s.credentials.erp_token),
    ) {
        return unauthorized();
    }
    if let Some(failure) = s.flaky("erp", 6) {
        return failure;
    }
    let Ok(customer) = serde_json::from_str::<serde_json::Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "body is not JSON").into_response();
    };
    let email = customer["email"].as_str().unwrap_or_default();
    if !email.contains('@') {
        return (
            StatusCode::BAD_REQUEST,
            format!("{{\"error\":\"invalid email: {email}\"}}"),
        )
            .into_response();
    }
    let mdm_id = customer["mdmId"].as_str().unwrap_or_default().to_string();
    let mut ledger = s.ledger.lock().expect("ledger");
    match idempotency_key(&headers) {
        Some(key) if ledger.created_by_key.contains_key(&key) => {}
        key => {
            if let Some(key) = key {
                ledger.created_by_key.insert(key, mdm_id.clone());
            }
            ledger.erp_customers.push(mdm_id);
        }
    }
    StatusCode::CREATED.into_response()
}

fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
