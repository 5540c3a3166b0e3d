//! A loopback HTTP server that records each request and answers with a test's closure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    /// The body's fields when it is a form.
    pub form: HashMap<String, String>,
}

/// What the server answers.
pub struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json".to_string())],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    /// A successful OAuth answer.
    pub fn token(token: &str, expires_in: u64) -> Self {
        Self::json(
            200,
            serde_json::json!({"token_type": "Bearer", "access_token": token, "expires_in": expires_in}),
        )
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Answers only after `delay`.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Respond = dyn Fn(&Recorded, usize) -> Reply + Send + Sync;

/// What the handler shares: the recorded requests and the test's closure.
type Shared = (Arc<Mutex<Vec<Recorded>>>, Arc<Respond>);

/// A running server; it stops with the test's runtime.
#[derive(Clone)]
pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    recorded: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    /// Starts a server that answers the n-th request (from 0) with `respond(request, n)`.
    pub async fn start(respond: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static) -> Self {
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let respond: Arc<Respond> = Arc::new(respond);
        let app = axum::Router::new()
            .fallback(handle)
            .with_state((recorded.clone(), respond));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, recorded }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.recorded.lock().unwrap().len()
    }
}

async fn handle(State((recorded, respond)): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let pairs = |text: &str| -> HashMap<String, String> {
        reqwest::Url::parse(&format!("http://x/?{text}"))
            .unwrap()
            .query_pairs()
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect()
    };
    let is_form = parts
        .headers
        .get("content-type")
        .is_some_and(|kind| kind.as_bytes().starts_with(b"application/x-www-form-urlencoded"));
    let request = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: pairs(parts.uri.query().unwrap_or_default()),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    value.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        form: if is_form {
            pairs(std::str::from_utf8(&body).unwrap())
        } else {
            HashMap::new()
        },
    };
    let n = {
        let mut recorded = recorded.lock().unwrap();
        recorded.push(request.clone());
        recorded.len() - 1
    };
    let reply = respond(&request, n);
    tokio::time::sleep(reply.delay).await;
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    for (name, value) in reply.headers {
        response
            .headers_mut()
            .append(HeaderName::from_static(name), HeaderValue::from_str(&value).unwrap());
    }
    response
}
