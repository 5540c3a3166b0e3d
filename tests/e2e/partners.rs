//! Real HTTP partner servers on loopback for the saga tests: each records every
//! request it gets and answers from a script the test gives it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// One request a partner server received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub at: Instant,
}

impl Received {
    /// A header's value, by lowercase name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// The answer to one request: status, headers and body.
pub type Answer = (u16, Vec<(&'static str, String)>, String);
/// Decides the answer from the request and how many requests came before it.
pub type Script = Arc<dyn Fn(&Received, usize) -> Answer + Send + Sync>;

/// A running partner server.
#[derive(Clone)]
pub struct Partner {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Partner {
    /// Starts a server answering with `script`.
    pub async fn start(script: impl Fn(&Received, usize) -> Answer + Send + Sync + 'static) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let script: Script = Arc::new(script);
        let log = received.clone();
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (log, script) = (log.clone(), script.clone());
            async move { answer(&log, &script, method, uri, headers, body) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, received }
    }

    /// Answers every request with `status` and `body`.
    pub async fn always(status: u16, body: &str) -> Self {
        let body = body.to_string();
        Self::start(move |_, _| (status, Vec::new(), body.clone())).await
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn answer(
    log: &Mutex<Vec<Received>>,
    script: &Script,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = Received {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    };
    let index = {
        let mut log = log.lock().unwrap();
        log.push(request.clone());
        log.len() - 1
    };
    let (status, headers, body) = script(&request, index);
    let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
    for (name, value) in headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// A partner answering like the real MDM: ids for creates, 204 for deletes.
pub fn mdm_like(request: &Received, index: usize) -> Answer {
    match request.method.as_str() {
        "POST" => (
            201,
            vec![("content-type", "application/json".into())],
            format!("{{\"id\":\"MDM-{index:06}\"}}"),
        ),
        _ => (204, Vec::new(), String::new()),
    }
}
