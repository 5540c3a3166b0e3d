//! One contact's saga is one trace, exported over OTLP. The host runs as `sagahost run` with the
//! standard `OTEL_*` variables pointing at an OTLP/HTTP receiver in this test (real protobuf over
//! real HTTP on loopback); the saga retries its first step, then fails at step three and
//! compensates steps two and one.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use sagahost::config::Config;
use sagahost::telemetry::traceparent::TraceParent;
use sagahost_transport::embedded::EmbeddedQueue;
use sagahost_transport::{OutgoingMessage, Output, Transport};

use crate::saga::{SAGA_ID, Servers, config, contact_body, write_config};
use crate::support;

/// An OTLP/HTTP trace receiver: keeps every span posted to `/v1/traces`.
pub struct Collector {
    pub endpoint: String,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Collector {
    pub async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let store = spans.clone();
        let app = Router::new().route(
            "/v1/traces",
            post(move |body: Bytes| {
                let store = store.clone();
                async move {
                    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
                    let mut spans = store.lock().unwrap();
                    for resource in request.resource_spans {
                        for scope in resource.scope_spans {
                            spans.extend(scope.spans);
                        }
                    }
                    // An empty ExportTraceServiceResponse.
                    ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { endpoint, spans }
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }
}

pub fn attribute(span: &Span, key: &str) -> Option<String> {
    let value = span
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match value {
        Value::StringValue(text) => text.clone(),
        Value::IntValue(number) => number.to_string(),
        Value::BoolValue(flag) => flag.to_string(),
        other => format!("{other:?}"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_saga_is_one_trace_across_steps_a_retry_and_compensation() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start().await;
    let servers = Servers::retry_then_reject().await;
    let mut table = config(dir.path(), &servers);
    table.remove("webhook");
    let config_path = write_config(dir.path(), &table);
    let loaded = Config::load(&config_path).unwrap().config;
    std::fs::create_dir_all(&loaded.data_dir).unwrap();
    {
        let queue = EmbeddedQueue::open(&loaded.data_dir.join("queue.sqlite3"), &loaded.queue_settings()).unwrap();
        let contact = Output {
            queue: "contacts".into(),
            message: OutgoingMessage {
                content_type: Some("application/json".into()),
                body: contact_body(),
                ..Default::default()
            },
        };
        queue.send(vec![contact]).await.unwrap();
    }

    let mut host = support::start_host(
        &config_path,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.clone()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
            ("OTEL_SERVICE_NAME", "sagahost-trace-test".into()),
        ],
    );
    // mdm twice (503, then forwarded), writeback, erp (fails), then writeback and mdm compensating.
    const MESSAGES: usize = 6;
    let started = Instant::now();
    let spans = loop {
        let spans = collector.spans();
        if spans.iter().filter(|span| span.name == "message").count() >= MESSAGES {
            break spans;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only these spans arrived: {:?}",
            spans.iter().map(|span| &span.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    host.kill().unwrap();
    host.wait().unwrap();

    // One trace id for everything.
    let traces: BTreeSet<&[u8]> = spans.iter().map(|span| span.trace_id.as_slice()).collect();
    assert_eq!(traces.len(), 1, "{} traces", traces.len());
    let trace_id = hex::encode(traces.first().unwrap());

    let names: BTreeSet<&str> = spans.iter().map(|span| span.name.as_str()).collect();
    for expected in ["message", "decode", "component_round", "outbound_request", "route"] {
        assert!(names.contains(expected), "no `{expected}` span in {names:?}");
    }

    // The message spans, in the order the saga ran them, with what they did.
    let mut messages: Vec<&Span> = spans.iter().filter(|span| span.name == "message").collect();
    messages.sort_by_key(|span| span.start_time_unix_nano);
    let path: Vec<(String, String, String)> = messages
        .iter()
        .map(|span| {
            (
                attribute(span, "partner").unwrap(),
                attribute(span, "attempt").unwrap(),
                attribute(span, "outcome").unwrap(),
            )
        })
        .collect();
    let expected = [
        ("mdm", "1", "retried"),
        ("mdm", "2", "forwarded"),
        ("dataverse-writeback", "1", "forwarded"),
        ("erp", "1", "compensating"),
        ("dataverse-writeback", "1", "compensating"),
        ("mdm", "1", "compensated"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(partner, attempt, outcome)| (partner.to_string(), attempt.to_string(), outcome.to_string()))
        .collect();
    assert_eq!(path, expected);
    let saga_id = attribute(messages[0], "saga_id").expect("a saga id");
    assert_ne!(saga_id, SAGA_ID, "the saga id is not the Dataverse CorrelationId");
    for span in &messages {
        assert_eq!(attribute(span, "saga_id"), Some(saga_id.clone()));
        assert_eq!(attribute(span, "correlation_id").as_deref(), Some(SAGA_ID));
        let version = attribute(span, "version").unwrap();
        assert!(
            version.len() == 64 && version.chars().all(|c| c.is_ascii_hexdigit()),
            "{version}"
        );
        assert!(attribute(span, "queue").is_some() && attribute(span, "message_id").is_some());
    }

    // Each step's span is the child of the span of the step that sent its message.
    let by_id: HashMap<&[u8], &Span> = spans.iter().map(|span| (span.span_id.as_slice(), span)).collect();
    assert!(
        messages[0].parent_span_id.is_empty(),
        "the first message starts the trace"
    );
    for pair in messages.windows(2) {
        assert_eq!(
            pair[1].parent_span_id, pair[0].span_id,
            "{} follows {}",
            pair[1].name, pair[0].name
        );
    }
    // Every other span hangs off a span of the same trace.
    for span in spans.iter().filter(|span| span.name != "message") {
        assert!(
            by_id.contains_key(span.parent_span_id.as_slice()),
            "{} has no parent",
            span.name
        );
    }
    let outbound: Vec<&Span> = spans.iter().filter(|span| span.name == "outbound_request").collect();
    assert!(
        outbound
            .iter()
            .any(|span| attribute(span, "status").as_deref() == Some("503"))
    );

    // The partners saw the trace too: each request's traceparent names its outbound_request span.
    let outbound_ids: BTreeSet<String> = outbound.iter().map(|span| hex::encode(&span.span_id)).collect();
    for request in servers
        .mdm
        .received()
        .iter()
        .chain(servers.dataverse.received().iter())
        .chain(servers.erp.received().iter())
    {
        let sent = TraceParent::parse(request.header("traceparent").unwrap()).unwrap();
        assert_eq!(sent.trace_id_hex(), trace_id);
        assert!(
            outbound_ids.contains(&sent.span_id_hex()),
            "{} names no exported span",
            request.path
        );
    }
}
