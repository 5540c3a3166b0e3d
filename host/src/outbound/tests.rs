//! End-to-end tests against real HTTP servers on loopback.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::HeaderValue as HyperHeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap as HyperHeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;
use crate::telemetry::capture::CapturedLogs;

mod tokens;

type Body = BoxBody<Bytes, Infallible>;
type Handler = Arc<dyn Fn(Seen) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync>;

const PARTNER: &str = "mdm";
const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HyperHeaderMap,
    body: Bytes,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

struct TestServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl TestServer {
    /// Serves HTTP/1.1 on 127.0.0.1 with `handler`.
    async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(Seen) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |seen| Box::pin(handler(seen)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (conns, log) = (connections.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                conns.fetch_add(1, Ordering::SeqCst);
                let (handler, log) = (handler.clone(), log.clone());
                let service = service_fn(move |req: Request<Incoming>| {
                    let (handler, log) = (handler.clone(), log.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let seen = Seen {
                            method: parts.method.to_string(),
                            path: parts.uri.path().to_string(),
                            headers: parts.headers,
                            body,
                        };
                        log.lock().unwrap().push(seen.clone());
                        Ok::<_, Infallible>(handler(seen).await)
                    }
                });
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            connections,
            seen,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

fn ok(body: &'static str) -> Response<Body> {
    Response::new(full(body))
}

fn policy(allow: &[String]) -> PartnerPolicy {
    PartnerPolicy {
        allow: allow.to_vec(),
        ..PartnerPolicy::default()
    }
}

fn outbound(policies: Vec<(&str, PartnerPolicy)>, secrets: ConfigSecrets) -> HttpOutbound {
    HttpOutbound::new(
        policies.into_iter().map(|(p, policy)| (p.to_string(), policy)),
        Arc::new(secrets),
    )
    .unwrap()
}

fn ctx() -> RequestContext {
    RequestContext {
        saga_id: "saga-1".into(),
        step: 2,
        partner: PARTNER.into(),
        message_id: Some("msg-1".into()),
        round: 1,
        traceparent: Some(TraceParent::parse(TRACE).unwrap()),
    }
}

fn get(id: &str, url: &str) -> wit::HttpRequest {
    wit::HttpRequest {
        id: id.into(),
        method: "GET".into(),
        url: url.into(),
        headers: Vec::new(),
        body: None,
        timeout_ms: None,
    }
}

fn header(name: &str, value: wit::HeaderValue) -> wit::Header {
    wit::Header {
        name: name.into(),
        value,
    }
}

fn response(result: &wit::HttpResult) -> &wit::HttpResponse {
    match &result.response {
        Ok(response) => response,
        Err(err) => panic!("request `{}` failed: {err:?}", result.id),
    }
}

fn error(result: &wit::HttpResult) -> &wit::HttpError {
    match &result.response {
        Ok(response) => panic!("request `{}` unexpectedly got status {}", result.id, response.status),
        Err(err) => err,
    }
}

fn unique_env_var(tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "SAGAHOST_OUTBOUND_TEST_{tag}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

#[tokio::test]
async fn allowed_request_gets_secrets_idempotency_key_and_traceparent() {
    let server = TestServer::start(|_| async {
        let mut response = ok("created");
        *response.status_mut() = StatusCode::CREATED;
        response
            .headers_mut()
            .insert("X-Reply", HyperHeaderValue::from_static("yes"));
        response
    })
    .await;
    let var = unique_env_var("TOKEN");
    // SAFETY: the variable name is unique to this test.
    unsafe { std::env::set_var(&var, "env-secret-value") };
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("api-key");
    std::fs::write(&key_file, "file-secret-value\n").unwrap();
    let secrets = ConfigSecrets::new(HashMap::from([(
        PARTNER.to_string(),
        HashMap::from([
            ("token".to_string(), SecretSource::Env(var)),
            ("api-key".to_string(), SecretSource::File(key_file)),
        ]),
    )]));
    let http = outbound(vec![(PARTNER, policy(&[server.origin()]))], secrets);
    let step = http.for_message(ctx());

    let request = wit::HttpRequest {
        id: "create".into(),
        method: "post".into(),
        url: server.url("/contacts?x=1"),
        headers: vec![
            header(
                "Authorization",
                wit::HeaderValue::SecretTemplate(wit::SecretTemplate {
                    template: "Bearer {}".into(),
                    secret: "token".into(),
                }),
            ),
            header("X-Api-Key", wit::HeaderValue::Secret("api-key".into())),
            header("Content-Type", wit::HeaderValue::Literal("application/json".into())),
        ],
        body: Some(b"{\"name\":\"x\"}".to_vec()),
        timeout_ms: None,
    };
    let results = step.execute(PARTNER, &[request]).await;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].id, "create");
    let resp = response(&results[0]);
    assert_eq!(resp.status, 201);
    assert_eq!(resp.body, b"created");
    assert!(resp.headers.contains(&("x-reply".to_string(), "yes".to_string())));
    assert!(resp.headers.iter().all(|(name, _)| *name == name.to_lowercase()));

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let seen = &seen[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/contacts");
    assert_eq!(seen.body.as_ref(), b"{\"name\":\"x\"}");
    assert_eq!(seen.header("authorization"), Some("Bearer env-secret-value"));
    assert_eq!(seen.header("x-api-key"), Some("file-secret-value"));
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(
        seen.header("idempotency-key"),
        Some(idempotency_key("saga-1", 2, PARTNER, 1, "create").as_str())
    );
    let sent = TraceParent::parse(seen.header("traceparent").unwrap()).unwrap();
    let given = TraceParent::parse(TRACE).unwrap();
    assert_eq!(sent.trace_id, given.trace_id);
    assert_ne!(sent.span_id, given.span_id);
    assert_eq!(sent.flags, 0x01);
}

#[tokio::test]
async fn idempotency_keys_are_stable_across_retries_and_differ_by_round_and_id() {
    let server = TestServer::start(|_| async { ok("ok") }).await;
    let http = outbound(vec![(PARTNER, policy(&[server.origin()]))], ConfigSecrets::default());
    let round1 = [get("a", &server.url("/a")), get("b", &server.url("/b"))];
    let own_key = wit::HttpRequest {
        headers: vec![header("Idempotency-Key", wit::HeaderValue::Literal("mine".into()))],
        ..get("c", &server.url("/c"))
    };

    // First attempt: two rounds on one step.
    let attempt = http.for_message(ctx());
    attempt.execute(PARTNER, &round1).await;
    attempt.execute(PARTNER, &round1[..1]).await;
    assert_eq!(attempt.next_round(), 3);
    // Retry of the step: a fresh outbound with the same context.
    let retry = http.for_message(ctx());
    retry.execute(PARTNER, &[round1[0].clone(), own_key]).await;

    let keys: Vec<String> = server
        .seen()
        .iter()
        .map(|s| s.header("idempotency-key").unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 5);
    // Round 1 of each attempt runs concurrently: look keys up by path.
    let by_path = |skip: usize, take: usize, path: &str| {
        server.seen()[skip..skip + take]
            .iter()
            .find(|s| s.path == path)
            .unwrap()
            .header("idempotency-key")
            .unwrap()
            .to_string()
    };
    let a1 = by_path(0, 2, "/a");
    let b1 = by_path(0, 2, "/b");
    let a2 = by_path(2, 1, "/a");
    let a1_retry = by_path(3, 2, "/a");
    assert_eq!(a1, idempotency_key("saga-1", 2, PARTNER, 1, "a"));
    assert_eq!(a1, a1_retry, "a retried step sends the same key");
    assert_ne!(a1, b1, "different request ids get different keys");
    assert_ne!(a1, a2, "different rounds get different keys");
    assert_eq!(by_path(3, 2, "/c"), "mine", "a key the component set is kept");
    assert_eq!(a1.len(), 64);
    assert!(a1.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));

    // Every field is part of the key.
    let base = idempotency_key("s", 1, "p", 1, "r");
    assert_eq!(base, idempotency_key("s", 1, "p", 1, "r"));
    for other in [
        idempotency_key("s2", 1, "p", 1, "r"),
        idempotency_key("s", 2, "p", 1, "r"),
        idempotency_key("s", 1, "p2", 1, "r"),
        idempotency_key("s", 1, "p", 2, "r"),
        idempotency_key("s", 1, "p", 1, "r2"),
        idempotency_key("sp", 1, "", 1, "r"),
    ] {
        assert_ne!(base, other);
    }
}

#[tokio::test]
async fn host_not_on_allow_list_is_blocked_and_never_contacted() {
    let server = TestServer::start(|_| async { ok("ok") }).await;
    let http = outbound(
        vec![
            (
                PARTNER,
                policy(&["http://127.0.0.1:1".to_string(), "https://mdm.example.com".into()]),
            ),
            ("empty", PartnerPolicy::default()),
        ],
        ConfigSecrets::default(),
    );
    let results = http
        .for_message(ctx())
        .execute(PARTNER, &[get("x", &server.url("/"))])
        .await;
    match error(&results[0]) {
        wit::HttpError::Blocked(reason) => {
            assert!(reason.contains(&server.addr.to_string()), "{reason}");
            assert!(reason.contains(PARTNER), "{reason}");
        }
        other => panic!("expected blocked, got {other:?}"),
    }
    for partner in ["empty", "no-policy"] {
        let step = http.for_message(RequestContext {
            partner: partner.into(),
            ..ctx()
        });
        let results = step.execute(partner, &[get("x", &server.url("/"))]).await;
        assert!(matches!(error(&results[0]), wit::HttpError::Blocked(_)));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.connections(), 0, "a blocked request must not reach the server");
}

#[tokio::test]
async fn https_entry_does_not_allow_plain_http() {
    let server = TestServer::start(|_| async { ok("ok") }).await;
    let entries = [format!("https://{}", server.addr), server.addr.to_string()];
    let http = outbound(vec![(PARTNER, policy(&entries))], ConfigSecrets::default());
    let results = http
        .for_message(ctx())
        .execute(PARTNER, &[get("x", &server.url("/"))])
        .await;
    assert!(matches!(error(&results[0]), wit::HttpError::Blocked(_)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn slow_server_times_out_with_the_shorter_timeout() {
    let server = TestServer::start(|_| async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        ok("late")
    })
    .await;
    let short_policy = PartnerPolicy {
        timeout_ms: 200,
        ..policy(&[server.origin()])
    };
    let http = outbound(
        vec![(PARTNER, policy(&[server.origin()])), ("short", short_policy)],
        ConfigSecrets::default(),
    );

    // The request asks for less than the partner's 10 s.
    let started = Instant::now();
    let request = wit::HttpRequest {
        timeout_ms: Some(200),
        ..get("slow", &server.url("/"))
    };
    let results = http.for_message(ctx()).execute(PARTNER, &[request]).await;
    assert!(matches!(error(&results[0]), wit::HttpError::Timeout));
    assert!(started.elapsed() < Duration::from_secs(2));

    // The request asks for more than the partner's 200 ms: the partner's wins.
    let started = Instant::now();
    let request = wit::HttpRequest {
        timeout_ms: Some(60_000),
        ..get("slow", &server.url("/"))
    };
    let step = http.for_message(RequestContext {
        partner: "short".into(),
        ..ctx()
    });
    let results = step.execute("short", &[request]).await;
    assert!(matches!(error(&results[0]), wit::HttpError::Timeout));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn oversized_responses_are_too_large() {
    let server = TestServer::start(|seen| async move {
        match seen.path.as_str() {
            "/fixed" => Response::new(full(vec![b'x'; 1025])),
            "/exact" => Response::new(full(vec![b'x'; 1024])),
            // Chunked, no Content-Length: 64 chunks of 1 KiB.
            _ => {
                let chunks = (0..64).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'y'; 1024]))));
                Response::new(BodyExt::boxed(StreamBody::new(futures::stream::iter(chunks))))
            }
        }
    })
    .await;
    let http = outbound(
        vec![(
            PARTNER,
            PartnerPolicy {
                max_response_bytes: 1024,
                ..policy(&[server.origin()])
            },
        )],
        ConfigSecrets::default(),
    );
    let results = http
        .for_message(ctx())
        .execute(
            PARTNER,
            &[
                get("fixed", &server.url("/fixed")),
                get("exact", &server.url("/exact")),
                get("chunked", &server.url("/chunked")),
            ],
        )
        .await;
    assert!(matches!(error(&results[0]), wit::HttpError::TooLarge(1025)));
    assert_eq!(response(&results[1]).body.len(), 1024);
    match error(&results[2]) {
        wit::HttpError::TooLarge(size) => assert!(*size > 1024 && *size <= 2048, "{size}"),
        other => panic!("expected too-large, got {other:?}"),
    }
}

#[tokio::test]
async fn connection_refused_is_a_connection_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let http = outbound(
        vec![(PARTNER, policy(&[format!("http://{addr}")]))],
        ConfigSecrets::default(),
    );
    let results = http
        .for_message(ctx())
        .execute(PARTNER, &[get("x", &format!("http://{addr}/"))])
        .await;
    match error(&results[0]) {
        wit::HttpError::Connection(reason) => {
            assert!(!reason.is_empty());
            assert!(!reason.contains("http://"), "the URL is not repeated: {reason}");
        }
        other => panic!("expected connection error, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_secrets_and_headers_are_invalid_and_never_sent() {
    let server = TestServer::start(|_| async { ok("ok") }).await;
    let var = unique_env_var("BAD");
    // SAFETY: the variable name is unique to this test.
    unsafe { std::env::set_var(&var, "line1\r\nInjected: yes") };
    let other_var = unique_env_var("OTHER");
    // SAFETY: the variable name is unique to this test.
    unsafe { std::env::set_var(&other_var, "other-partner-value") };
    let secrets = ConfigSecrets::new(HashMap::from([
        (
            PARTNER.to_string(),
            HashMap::from([("multiline".to_string(), SecretSource::Env(var))]),
        ),
        (
            "other".to_string(),
            HashMap::from([("theirs".to_string(), SecretSource::Env(other_var))]),
        ),
    ]));
    let http = outbound(vec![(PARTNER, policy(&[server.origin()]))], secrets);
    let with = |name: &str, value: wit::HeaderValue| wit::HttpRequest {
        headers: vec![header(name, value)],
        ..get("x", &server.url("/"))
    };
    let template = |template: &str, secret: &str| {
        wit::HeaderValue::SecretTemplate(wit::SecretTemplate {
            template: template.into(),
            secret: secret.into(),
        })
    };
    let requests = [
        with("Authorization", wit::HeaderValue::Secret("nope".into())),
        with("Authorization", wit::HeaderValue::Secret("theirs".into())),
        with("Authorization", template("Bearer", "multiline")),
        with("Authorization", template("{} and {}", "multiline")),
        with("X-Evil", wit::HeaderValue::Literal("a\r\nInjected: yes".into())),
        with("Authorization", wit::HeaderValue::Secret("multiline".into())),
        with("Bad Name", wit::HeaderValue::Literal("x".into())),
        with("Host", wit::HeaderValue::Literal("elsewhere.example.com".into())),
        wit::HttpRequest {
            method: "GE T".into(),
            ..get("x", &server.url("/"))
        },
        wit::HttpRequest {
            method: "CONNECT".into(),
            ..get("x", &server.url("/"))
        },
        get("x", "not a url"),
        get("x", "ftp://127.0.0.1/"),
        get("x", &format!("http://user:pw@{}/", server.addr)),
        wit::HttpRequest {
            body: Some(vec![0; (DEFAULT_MAX_REQUEST_BYTES + 1) as usize]),
            ..get("x", &server.url("/"))
        },
    ];
    let results = http.for_message(ctx()).execute(PARTNER, &requests).await;
    let reasons: Vec<String> = results
        .iter()
        .map(|r| match error(r) {
            wit::HttpError::Invalid(reason) => reason.clone(),
            other => panic!("expected invalid, got {other:?}"),
        })
        .collect();
    assert_eq!(reasons[0], "unknown secret `nope` for partner `mdm`");
    assert_eq!(reasons[1], "unknown secret `theirs` for partner `mdm`");
    assert!(reasons[2].contains("exactly once"), "{}", reasons[2]);
    assert!(reasons[3].contains("exactly once"), "{}", reasons[3]);
    assert!(reasons[4].contains("CR, LF"), "{}", reasons[4]);
    assert!(reasons[5].contains("`multiline`"), "{}", reasons[5]);
    for reason in &reasons {
        assert!(
            !reason.contains("line1") && !reason.contains("other-partner-value"),
            "{reason}"
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.connections(), 0, "invalid requests must not be sent");
}

#[tokio::test]
async fn concurrent_results_keep_request_order() {
    let server = TestServer::start(|seen| async move {
        let n: u64 = seen.path.trim_start_matches('/').parse().unwrap();
        // The first request answers last.
        tokio::time::sleep(Duration::from_millis(100 * (5 - n))).await;
        Response::new(full(format!("answer {n}")))
    })
    .await;
    let http = outbound(vec![(PARTNER, policy(&[server.origin()]))], ConfigSecrets::default());
    let requests: Vec<_> = (0..5)
        .map(|n| get(&format!("r{n}"), &server.url(&format!("/{n}"))))
        .collect();
    let started = Instant::now();
    let results = http.for_message(ctx()).execute(PARTNER, &requests).await;
    let elapsed = started.elapsed();
    for (n, result) in results.iter().enumerate() {
        assert_eq!(result.id, format!("r{n}"));
        assert_eq!(response(result).body, format!("answer {n}").into_bytes());
    }
    // Sequentially this would take 1.5 s.
    assert!(
        elapsed < Duration::from_millis(1000),
        "requests did not run concurrently: {elapsed:?}"
    );
    // All requests of one step share the trace.
    let traces: Vec<_> = server
        .seen()
        .iter()
        .map(|s| TraceParent::parse(s.header("traceparent").unwrap()).unwrap())
        .collect();
    assert!(
        traces
            .iter()
            .all(|t| t.trace_id_hex() == "4bf92f3577b34da6a3ce929d0e0e4736")
    );
}

#[tokio::test]
async fn redirects_are_returned_not_followed() {
    let server = TestServer::start(|seen| async move {
        if seen.path == "/old" {
            let mut response = ok("");
            *response.status_mut() = StatusCode::FOUND;
            response
                .headers_mut()
                .insert("Location", HyperHeaderValue::from_static("/new"));
            response
        } else {
            ok("new")
        }
    })
    .await;
    let http = outbound(vec![(PARTNER, policy(&[server.origin()]))], ConfigSecrets::default());
    let results = http
        .for_message(ctx())
        .execute(PARTNER, &[get("x", &server.url("/old"))])
        .await;
    let resp = response(&results[0]);
    assert_eq!(resp.status, 302);
    assert!(resp.headers.contains(&("location".to_string(), "/new".to_string())));
    let paths: Vec<_> = server.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/old"]);
}

#[tokio::test]
async fn new_trace_when_context_has_none_and_non_utf8_headers_are_lossy() {
    let server = TestServer::start(|_| async {
        let mut response = ok("ok");
        response
            .headers_mut()
            .insert("x-latin1", HyperHeaderValue::from_bytes(b"caf\xe9").unwrap());
        response
    })
    .await;
    let http = outbound(vec![(PARTNER, policy(&[server.origin()]))], ConfigSecrets::default());
    let step = http.for_message(RequestContext {
        traceparent: None,
        ..ctx()
    });
    let root = step.context().traceparent.unwrap();
    let results = step
        .execute(PARTNER, &[get("a", &server.url("/a")), get("b", &server.url("/b"))])
        .await;
    let latin1 = &response(&results[0])
        .headers
        .iter()
        .find(|(n, _)| n == "x-latin1")
        .unwrap()
        .1;
    assert!(latin1.starts_with("caf"));
    for seen in server.seen() {
        let sent = TraceParent::parse(seen.header("traceparent").unwrap()).unwrap();
        assert_eq!(sent.trace_id, root.trace_id);
        assert_ne!(sent.span_id, root.span_id);
    }
}

#[tokio::test]
async fn component_traceparent_is_replaced_and_wrong_partner_is_blocked() {
    let server = TestServer::start(|_| async { ok("ok") }).await;
    let http = outbound(
        vec![
            (PARTNER, policy(&[server.origin()])),
            ("other", policy(&[server.origin()])),
        ],
        ConfigSecrets::default(),
    );
    let step = http.for_message(ctx());
    let request = wit::HttpRequest {
        headers: vec![header(
            "traceparent",
            wit::HeaderValue::Literal("00-11111111111111111111111111111111-2222222222222222-01".into()),
        )],
        ..get("x", &server.url("/"))
    };
    let results = step.execute(PARTNER, std::slice::from_ref(&request)).await;
    response(&results[0]);
    let seen = server.seen();
    assert_eq!(seen[0].headers.get_all("traceparent").iter().count(), 1);
    let sent = TraceParent::parse(seen[0].header("traceparent").unwrap()).unwrap();
    assert_eq!(sent.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");

    let results = step.execute("other", &[request]).await;
    assert!(matches!(error(&results[0]), wit::HttpError::Blocked(_)));
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn invalid_allow_entries_fail_construction() {
    let err = HttpOutbound::new(
        [(
            PARTNER.to_string(),
            policy(&["https://mdm.example.com/api".to_string()]),
        )],
        Arc::new(ConfigSecrets::default()),
    )
    .unwrap_err();
    assert!(matches!(err, OutboundError::InvalidAllowEntry { .. }));
    assert!(err.to_string().contains("mdm.example.com/api"));
}

#[test]
fn secret_debug_is_masked() {
    assert_eq!(format!("{:?}", Secret::new("s3cr3t")), "[redacted]");
    assert_eq!(format!("{}", Secret::new("s3cr3t")), "[redacted]");
}

#[tokio::test]
async fn logs_name_partner_method_host_and_status_but_never_secrets_or_bodies() {
    let server = TestServer::start(|_| async { ok("response-body-marker") }).await;
    let var = unique_env_var("LOGGED");
    // SAFETY: the variable name is unique to this test.
    unsafe { std::env::set_var(&var, "secret-value-marker") };
    let secrets = ConfigSecrets::new(HashMap::from([(
        PARTNER.to_string(),
        HashMap::from([("token".to_string(), SecretSource::Env(var))]),
    )]));
    let http = outbound(vec![(PARTNER, policy(&[server.origin()]))], secrets);
    let (captured, _guard) = CapturedLogs::install();

    let request = wit::HttpRequest {
        method: "PUT".into(),
        headers: vec![
            header("Authorization", wit::HeaderValue::Secret("token".into())),
            header("X-Literal", wit::HeaderValue::Literal("literal-header-marker".into())),
        ],
        body: Some(b"request-body-marker".to_vec()),
        ..get("put", &server.url("/path-marker"))
    };
    let blocked = get("blocked", "https://blocked.example.com/");
    let results = http.for_message(ctx()).execute(PARTNER, &[request, blocked]).await;
    assert_eq!(response(&results[0]).status, 200);
    assert!(matches!(error(&results[1]), wit::HttpError::Blocked(_)));
    assert_eq!(server.seen()[0].header("authorization"), Some("secret-value-marker"));

    let logs = captured.text();
    for expected in [
        "partner=mdm",
        "method=PUT",
        "host=127.0.0.1",
        "status=200",
        "duration_ms=",
        "host=blocked.example.com",
        "error=\"blocked\"",
    ] {
        assert!(logs.contains(expected), "`{expected}` missing from logs:\n{logs}");
    }
    for secret in [
        "secret-value-marker",
        "literal-header-marker",
        "request-body-marker",
        "response-body-marker",
    ] {
        assert!(!logs.contains(secret), "`{secret}` leaked into logs:\n{logs}");
    }
}
