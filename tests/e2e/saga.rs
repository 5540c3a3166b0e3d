//! The saga engine end to end, in process: the real embedded queue, the example
//! components, and real HTTP partner servers on loopback.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use sagahost::config::Config;
use sagahost::dead_letters::{DeadLetterQueue, RedriveOptions, Selection};
use sagahost::saga::{SagaEvent, Verdict};
use sagahost::service::Host;
use sagahost_broker::{self as broker, BrokerConfig};
use sagahost_transport::dead_letters::DeadLetterQueues;
use sagahost_transport::embedded::EmbeddedQueue;
use sagahost_transport::{OutgoingMessage, Output, Transport};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::partners::{Partner, Received, mdm_like};
use crate::support;

/// The example message: a contact created in Dynamics 365.
pub const SAGA_ID: &str = "7d4e2b9a-1c3f-4a5e-9b8d-2f6a0c1e3b57";
pub const MDM_KEY: &str = "mdm-key-7f3a9c";
pub const DATAVERSE_TOKEN: &str = "dataverse-token-51be02";
pub const ERP_TOKEN: &str = "erp-token-c4d8e1";
pub const WEBHOOK_KEY: &str = "webhook-key-93aa10";
/// The key that authenticates saga state (a Service Bus host must have one configured).
pub const STATE_KEY: &str = "state-key-5d1f0e7a9b3c24681357924680abcdef";

/// Every queue of the contact saga: each partner's and each partner's compensation queue.
pub const SAGA_QUEUES: [&str; 6] = [
    "contacts",
    "writeback",
    "erp",
    "contacts-compensate",
    "writeback-compensate",
    "erp-compensate",
];

/// The three partner servers of a test.
pub struct Servers {
    pub mdm: Partner,
    pub dataverse: Partner,
    pub erp: Partner,
}

impl Servers {
    /// Servers that behave: MDM assigns ids, Dataverse and ERP accept.
    pub async fn healthy() -> Self {
        Self {
            mdm: Partner::start(mdm_like).await,
            dataverse: Partner::always(204, "").await,
            erp: Partner::always(201, "").await,
        }
    }

    /// MDM is busy (503) the first time, ERP rejects every contact: the saga retries its
    /// first step, then compensates steps two and one.
    pub async fn retry_then_reject() -> Self {
        Self {
            mdm: Partner::start(|request, index| match index {
                0 => (503, Vec::new(), "busy".into()),
                _ => mdm_like(request, index),
            })
            .await,
            dataverse: Partner::always(204, "").await,
            erp: Partner::always(400, r#"{"error":"invalid email"}"#).await,
        }
    }
}

/// The config of the contact saga for `servers`, as a TOML table tests can change.
pub fn config(dir: &std::path::Path, servers: &Servers) -> toml::Table {
    config_for(
        dir,
        [servers.mdm.origin(), servers.dataverse.origin(), servers.erp.origin()],
    )
}

/// The config of the contact saga for partner servers at these origins (MDM, Dataverse, ERP).
pub fn config_for(dir: &std::path::Path, [mdm_origin, dataverse_origin, erp_origin]: [String; 3]) -> toml::Table {
    let secret = |name: &str, value: &str| {
        let path = dir.join(name);
        std::fs::write(&path, value).unwrap();
        path.display().to_string()
    };
    let component = |name: &str| support::component(name).display().to_string();
    let text = format!(
        r#"
data-dir = "{data}"

[queues.contacts]
lock-duration-ms = 5000

[saga-state]
signing-key = "test-1"
keys = {{ test-1 = {{ file = "{state_key}" }} }}

[webhook]
listen = "127.0.0.1:0"
queue = "contacts"
key = {{ file = "{webhook_key}" }}

[partners.mdm]
component = "{mdm}"
queue = "contacts"
routes = {{ next = "writeback" }}
config = {{ mdm-url = "{mdm_origin}/api" }}
secrets = {{ mdm-api-key = {{ file = "{mdm_key}" }} }}
outbound = {{ allow = ["{mdm_origin}"] }}
retry = {{ initial-delay-ms = 100, max-delay-ms = 3000, max-attempts = 4, jitter = 0.2 }}

[partners.dataverse-writeback]
component = "{writeback}"
queue = "writeback"
routes = {{ next = "erp" }}
config = {{ dataverse-url = "{dataverse_origin}" }}
secrets = {{ dataverse-token = {{ file = "{dataverse_token}" }} }}
outbound = {{ allow = ["{dataverse_origin}"] }}
retry = {{ initial-delay-ms = 100, max-delay-ms = 3000, max-attempts = 4, jitter = 0.2 }}

[partners.erp]
component = "{erp}"
queue = "erp"
config = {{ erp-url = "{erp_origin}/api" }}
secrets = {{ erp-token = {{ file = "{erp_token}" }} }}
outbound = {{ allow = ["{erp_origin}"] }}
retry = {{ initial-delay-ms = 100, max-delay-ms = 3000, max-attempts = 4, jitter = 0.2 }}
"#,
        data = dir.join("data").display(),
        webhook_key = secret("webhook-key", WEBHOOK_KEY),
        state_key = secret("state-key", STATE_KEY),
        mdm = component("mdm"),
        writeback = component("dataverse-writeback"),
        erp = component("erp"),
        mdm_key = secret("mdm-key", MDM_KEY),
        dataverse_token = secret("dataverse-token", DATAVERSE_TOKEN),
        erp_token = secret("erp-token", ERP_TOKEN),
    );
    toml::from_str(&text).unwrap()
}

/// `count` copies of the example contact, each with ids of its own: the saga and contact ids
/// end in `-0000-4000-8000-<index>`.
pub fn contacts(count: usize) -> Vec<Vec<u8>> {
    let template = String::from_utf8(contact_body()).unwrap();
    (0..count)
        .map(|i| {
            template
                .replace(SAGA_ID, &format!("00000000-0000-4000-8000-{i:012}"))
                .replace(
                    "0c7f3a5e-6b8e-ef11-8ee9-000d3a4f5b21",
                    &format!("11111111-0000-4000-8000-{i:012}"),
                )
                .into_bytes()
        })
        .collect()
}

/// Puts `count` [`contacts`] on the `contacts` queue of the queue database at `path`.
pub async fn send_contacts(path: &std::path::Path, config: &Config, count: usize) {
    let queue = EmbeddedQueue::open(path, &config.queue_settings()).unwrap();
    let outputs = contacts(count)
        .into_iter()
        .map(|body| Output {
            queue: "contacts".into(),
            message: OutgoingMessage {
                content_type: Some("application/json".into()),
                body,
                ..Default::default()
            },
        })
        .collect();
    queue.send(outputs).await.unwrap();
}

/// Writes `table` as `sagahost.toml` in `dir` and returns its path.
pub fn write_config(dir: &std::path::Path, table: &toml::Table) -> PathBuf {
    let path = dir.join("sagahost.toml");
    std::fs::write(&path, toml::to_string(table).unwrap()).unwrap();
    path
}

/// Sets `partners.NAME.KEY = value` in a config table.
fn set(table: &mut toml::Table, partner: &str, key: &str, value: toml::Value) {
    table["partners"].as_table_mut().unwrap()[partner]
        .as_table_mut()
        .unwrap()
        .insert(key.into(), value);
}

/// The transport a test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// The embedded queue, in process.
    Embedded,
    /// The Service Bus transport, over AMQP, against `sagahost broker` on loopback.
    ServiceBus,
}

/// A started host and the queue store behind its transport.
pub struct Running {
    pub host: Host,
    /// The embedded queue the messages live in: the host's own, or the one the
    /// broker serves. Tests send and inspect through it.
    pub store: EmbeddedQueue,
    pub events: broadcast::Receiver<SagaEvent>,
}

/// Starts a host on `table`, on the transport `kind`; its config is `dir/sagahost.toml`.
pub async fn start(dir: &std::path::Path, mut table: toml::Table, kind: Kind) -> Running {
    let broker_store = match kind {
        Kind::Embedded => None,
        Kind::ServiceBus => {
            // The broker serves the same queues and topics the host config names.
            let named = Config::load(&write_config(dir, &table)).unwrap().config;
            let store = EmbeddedQueue::open(&dir.join("broker.sqlite3"), &named.queue_settings()).unwrap();
            for topic in named.topics {
                store.ensure_topic(topic).await.unwrap();
            }
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let config = BrokerConfig {
                lock_duration: Duration::from_secs(5),
                ..BrokerConfig::default()
            };
            let served = store.clone();
            tokio::spawn(async move { broker::serve_with(listener, served, config, CancellationToken::new()).await });
            let path = dir.join("connection-string");
            let connection_string = format!(
                "Endpoint=sb://{addr};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
            );
            std::fs::write(&path, connection_string).unwrap();
            let transport = format!(
                "kind = \"servicebus\"\nprefetch = 8\nconnection-string = {{ file = {:?} }}",
                path.display().to_string()
            );
            table.insert(
                "transport".into(),
                toml::from_str::<toml::Table>(&transport).unwrap().into(),
            );
            Some(store)
        }
    };
    let config = Config::load(&write_config(dir, &table)).unwrap().config;
    let host = Host::start(&config).await.unwrap();
    let events = host.subscribe();
    let store = broker_store.unwrap_or_else(|| host.transport.embedded().expect("embedded transport").clone());
    Running { host, store, events }
}

/// MDM reads a subscription of the `contacts` topic instead of a queue; a second subscription
/// gets its own copy of each event. The saga runs to its end as it does from a queue.
async fn a_partner_reads_a_topic_subscription_and_the_saga_runs_to_the_end(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let servers = Servers::healthy().await;
    let mut table = config(dir.path(), &servers);
    table.remove("queues");
    let topics: toml::Table = toml::from_str(
        r#"
[[topics]]
name = "contacts"
[[topics.subscriptions]]
name = "mdm"
[[topics.subscriptions]]
name = "audit"
[[topics.subscriptions.rules]]
name = "json-only"
filter = { sql = "sys.ContentType = 'application/json'" }
"#,
    )
    .unwrap();
    table.insert("topics".into(), topics["topics"].clone());
    let mdm = table["partners"].as_table_mut().unwrap()["mdm"].as_table_mut().unwrap();
    mdm.remove("queue");
    mdm.insert(
        "source".into(),
        toml::from_str::<toml::Table>("topic = \"contacts\"\nsubscription = \"mdm\"")
            .unwrap()
            .into(),
    );
    let Running {
        host,
        store,
        mut events,
    } = start(dir.path(), table, kind).await;
    send_contact(&store).await;
    let seen = events_until(&mut events, is_end).await;
    host.shutdown().await;

    let path: Vec<(&str, &str)> = seen
        .iter()
        .map(|e| (e.partner.as_str(), e.verdict.metric_name()))
        .collect();
    assert_eq!(
        path,
        [
            ("mdm", "forwarded"),
            ("dataverse-writeback", "forwarded"),
            ("erp", "completed")
        ]
    );
    assert_eq!(seen[0].queue, "contacts/Subscriptions/mdm");
    let audit = store.peek("contacts/Subscriptions/audit", 10).await.unwrap();
    assert_eq!(audit.len(), 1, "the other subscription has its own copy");
}

/// MDM's route names a topic: its forward reaches the writeback partner through its
/// subscription, and an audit subscription gets its own copy; the saga runs to its end.
async fn a_route_naming_a_topic_fans_the_forward_out_to_its_subscriptions(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let servers = Servers::healthy().await;
    let mut table = config(dir.path(), &servers);
    let topics: toml::Table = toml::from_str(
        r#"
[[topics]]
name = "mastered"
[[topics.subscriptions]]
name = "writeback"
[[topics.subscriptions]]
name = "audit"
"#,
    )
    .unwrap();
    table.insert("topics".into(), topics["topics"].clone());
    let partners = table["partners"].as_table_mut().unwrap();
    let mdm = partners["mdm"].as_table_mut().unwrap();
    mdm.insert(
        "routes".into(),
        toml::from_str::<toml::Table>("next = \"mastered\"").unwrap().into(),
    );
    let writeback = partners["dataverse-writeback"].as_table_mut().unwrap();
    writeback.remove("queue");
    writeback.insert(
        "source".into(),
        toml::from_str::<toml::Table>("topic = \"mastered\"\nsubscription = \"writeback\"")
            .unwrap()
            .into(),
    );
    let Running {
        host,
        store,
        mut events,
    } = start(dir.path(), table, kind).await;
    send_contact(&store).await;
    let seen = events_until(&mut events, is_end).await;
    host.shutdown().await;

    let path: Vec<(&str, &str, &str)> = seen
        .iter()
        .map(|e| (e.partner.as_str(), e.queue.as_str(), e.verdict.metric_name()))
        .collect();
    assert_eq!(
        path,
        [
            ("mdm", "contacts", "forwarded"),
            ("dataverse-writeback", "mastered/Subscriptions/writeback", "forwarded"),
            ("erp", "erp", "completed")
        ]
    );
    assert_eq!(
        seen[0].verdict,
        Verdict::Forwarded {
            queues: vec!["mastered".into()]
        }
    );
    let audit = store.peek("mastered/Subscriptions/audit", 10).await.unwrap();
    assert_eq!(audit.len(), 1, "the audit subscription has its own copy of the forward");
    assert!(
        audit[0].properties.iter().any(|(name, _)| name == "mdm-id"),
        "the copy is the forward itself, with the MDM id: {:?}",
        audit[0].properties
    );
}

on_both_transports!(
    happy_path_runs_through_three_partners_with_secrets_keys_and_one_trace,
    transient_failures_are_retried_with_backoff_and_retry_after_then_succeed,
    exhausted_retries_dead_letter_with_the_reason,
    fatal_failure_at_step_three_compensates_steps_two_and_one_in_reverse_order,
    a_forward_to_an_unknown_route_is_dead_lettered_naming_the_route,
    a_host_not_on_the_allow_list_is_never_called,
    two_events_with_one_correlation_id_are_two_sagas_with_keys_of_their_own,
    a_failed_undo_does_not_stop_the_compensation_and_its_redrive_undoes_only_itself,
    forged_saga_state_is_dead_lettered_and_undoes_nothing,
    the_webhook_rejects_a_wrong_key_and_enqueues_with_the_right_one,
    an_undecodable_body_is_dead_lettered_with_where_and_why_and_the_host_keeps_serving,
    a_partner_reads_a_topic_subscription_and_the_saga_runs_to_the_end,
    a_route_naming_a_topic_fans_the_forward_out_to_its_subscriptions,
);

pub fn contact_body() -> Vec<u8> {
    std::fs::read(support::workspace().join("guest-examples/messages/contact-create.json")).unwrap()
}

async fn send_contact(store: &EmbeddedQueue) {
    let message = OutgoingMessage {
        content_type: Some("application/json".into()),
        body: contact_body(),
        ..Default::default()
    };
    store
        .send(vec![Output {
            queue: "contacts".into(),
            message,
        }])
        .await
        .unwrap();
}

/// Runs the example contact through a host on `table` and returns the events up
/// to its end state.
async fn run_contact(dir: &std::path::Path, table: toml::Table, kind: Kind) -> Vec<SagaEvent> {
    let Running {
        host,
        store,
        mut events,
    } = start(dir, table, kind).await;
    send_contact(&store).await;
    let seen = events_until(&mut events, is_end).await;
    host.shutdown().await;
    seen
}

/// The reason and description of a saga that ended dead-lettered.
fn dead_lettered(seen: &[SagaEvent]) -> (&str, &str) {
    match &seen.last().expect("an end state").verdict {
        Verdict::DeadLettered { reason, description } => (reason, description),
        _ => panic!("expected a dead-letter: {seen:#?}"),
    }
}

/// Collects events until one satisfies `last`, or fails after 30 s.
async fn events_until(
    events: &mut broadcast::Receiver<SagaEvent>,
    last: impl Fn(&SagaEvent) -> bool,
) -> Vec<SagaEvent> {
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .unwrap_or_else(|_| panic!("no end state within 30 s; saw {seen:#?}"))
            .unwrap();
        let done = last(&event);
        seen.push(event);
        if done {
            return seen;
        }
    }
}

fn is_end(event: &SagaEvent) -> bool {
    matches!(
        event.verdict,
        Verdict::Completed | Verdict::Compensated | Verdict::DeadLettered { .. }
    )
}

fn trace_id(request: &Received) -> String {
    request
        .header("traceparent")
        .expect("traceparent on every request")
        .split('-')
        .nth(1)
        .unwrap()
        .to_string()
}

async fn happy_path_runs_through_three_partners_with_secrets_keys_and_one_trace(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let servers = Servers::healthy().await;
    let seen = run_contact(dir.path(), config(dir.path(), &servers), kind).await;

    let path: Vec<(&str, &Verdict)> = seen.iter().map(|e| (e.partner.as_str(), &e.verdict)).collect();
    assert_eq!(
        path,
        vec![
            (
                "mdm",
                &Verdict::Forwarded {
                    queues: vec!["writeback".into()]
                }
            ),
            (
                "dataverse-writeback",
                &Verdict::Forwarded {
                    queues: vec!["erp".into()]
                }
            ),
            ("erp", &Verdict::Completed),
        ]
    );
    // One saga id for the whole saga, and not the Dataverse CorrelationId, which Dataverse
    // shares across every operation of a request pipeline.
    assert!(seen.iter().all(|e| e.saga_id == seen[0].saga_id), "{seen:#?}");
    assert_ne!(seen[0].saga_id, SAGA_ID);

    let mdm = servers.mdm.received();
    let writeback = servers.dataverse.received();
    let erp = servers.erp.received();
    assert_eq!((mdm.len(), writeback.len(), erp.len()), (1, 1, 1));
    assert_eq!(mdm[0].header("x-api-key"), Some(MDM_KEY));
    assert_eq!(writeback[0].method, "PATCH");
    assert_eq!(
        writeback[0].path,
        "/api/data/v9.2/contacts(0c7f3a5e-6b8e-ef11-8ee9-000d3a4f5b21)"
    );
    assert_eq!(
        writeback[0].header("authorization"),
        Some(format!("Bearer {DATAVERSE_TOKEN}").as_str())
    );
    assert!(writeback[0].body.contains("MDM-000000"), "{}", writeback[0].body);
    assert_eq!(
        erp[0].header("authorization"),
        Some(format!("Bearer {ERP_TOKEN}").as_str())
    );
    assert!(erp[0].body.contains("\"mdmId\":\"MDM-000000\""), "{}", erp[0].body);
    for request in [&mdm[0], &writeback[0], &erp[0]] {
        assert_eq!(request.header("idempotency-key").map(str::len), Some(64), "{request:?}");
    }
    // One contact's saga is one trace across the three steps.
    assert_eq!(trace_id(&mdm[0]), trace_id(&writeback[0]));
    assert_eq!(trace_id(&mdm[0]), trace_id(&erp[0]));
}

async fn transient_failures_are_retried_with_backoff_and_retry_after_then_succeed(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let mut servers = Servers::healthy().await;
    servers.mdm = Partner::start(|request, index| match index {
        0 => (503, Vec::new(), "busy".into()),
        1 => (429, vec![("retry-after", "1".into())], "slow down".into()),
        _ => mdm_like(request, index),
    })
    .await;
    let seen = run_contact(dir.path(), config(dir.path(), &servers), kind).await;

    let retries: Vec<(u32, Duration)> = seen
        .iter()
        .filter_map(|e| match e.verdict {
            Verdict::Retried { attempt, delay } => Some((attempt, delay)),
            _ => None,
        })
        .collect();
    assert_eq!(retries.len(), 2, "{seen:#?}");
    // 503 without Retry-After: the partner's backoff, 100 ms ± 20 % jitter.
    assert_eq!(retries[0].0, 2);
    assert!((80..=120).contains(&retries[0].1.as_millis()), "{retries:?}");
    // 429 with Retry-After: 1: the component asks for exactly 1 s.
    assert_eq!(retries[1], (3, Duration::from_secs(1)));
    assert!(matches!(seen.last().unwrap().verdict, Verdict::Completed));

    let mdm = servers.mdm.received();
    assert_eq!(mdm.len(), 3);
    assert!(mdm[1].at - mdm[0].at >= Duration::from_millis(80), "retried too early");
    assert!(
        mdm[2].at - mdm[1].at >= Duration::from_secs(1),
        "Retry-After not honoured"
    );
    // The same request on every attempt carries the same Idempotency-Key.
    let keys: Vec<_> = mdm
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_string())
        .collect();
    assert!(keys.windows(2).all(|w| w[0] == w[1]), "{keys:?}");
}

async fn exhausted_retries_dead_letter_with_the_reason(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let mut servers = Servers::healthy().await;
    servers.mdm = Partner::always(503, "down for maintenance").await;
    let mut table = config(dir.path(), &servers);
    set(
        &mut table,
        "mdm",
        "retry",
        toml::from_str("max-attempts = 3\ninitial-delay-ms = 50\njitter = 0.0").unwrap(),
    );
    let Running {
        host,
        store,
        mut events,
    } = start(dir.path(), table, kind).await;
    send_contact(&store).await;
    let seen = events_until(&mut events, is_end).await;

    let (reason, description) = dead_lettered(&seen);
    assert_eq!(reason, "RetriesExhausted");
    assert!(
        description.contains("partner `mdm` gave up after 3 attempts"),
        "{description}"
    );
    assert!(description.contains("HTTP 503"), "{description}");
    assert_eq!(servers.mdm.received().len(), 3);
    // Over AMQP the settlement lands at the broker just after the host reports it.
    let mut dead = Vec::new();
    for _ in 0..100 {
        dead = store.peek_dead_letters("contacts", 0, 10).await.unwrap();
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    host.shutdown().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "RetriesExhausted");
    assert_eq!(
        dead[0].message.body,
        contact_body(),
        "the dead-lettered message is the original"
    );
}

async fn fatal_failure_at_step_three_compensates_steps_two_and_one_in_reverse_order(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let mut servers = Servers::healthy().await;
    servers.erp = Partner::always(400, r#"{"error":"invalid email"}"#).await;
    let seen = run_contact(dir.path(), config(dir.path(), &servers), kind).await;

    let path: Vec<(&str, bool, &Verdict)> = seen
        .iter()
        .map(|e| (e.partner.as_str(), e.compensation, &e.verdict))
        .collect();
    assert_eq!(
        path,
        vec![
            (
                "mdm",
                false,
                &Verdict::Forwarded {
                    queues: vec!["writeback".into()]
                }
            ),
            (
                "dataverse-writeback",
                false,
                &Verdict::Forwarded {
                    queues: vec!["erp".into()]
                }
            ),
            (
                "erp",
                false,
                &Verdict::Compensating {
                    next_partner: "dataverse-writeback".into()
                }
            ),
            (
                "dataverse-writeback",
                true,
                &Verdict::Compensating {
                    next_partner: "mdm".into()
                }
            ),
            ("mdm", true, &Verdict::Compensated),
        ]
    );
    let erp = servers.erp.received();
    let writeback = servers.dataverse.received();
    let mdm = servers.mdm.received();
    assert_eq!(writeback.len(), 2, "write, then undo");
    assert!(
        writeback[1].body.contains("null"),
        "the undo clears the column: {}",
        writeback[1].body
    );
    assert_eq!(
        (mdm[1].method.as_str(), mdm[1].path.as_str()),
        ("DELETE", "/api/contacts/MDM-000000")
    );
    assert!(
        erp[0].at < writeback[1].at && writeback[1].at < mdm[1].at,
        "compensation ran newest first"
    );
    // Undoing a step does not reuse the keys of the step it undoes.
    assert_ne!(
        writeback[0].header("idempotency-key"),
        writeback[1].header("idempotency-key")
    );
}

async fn a_forward_to_an_unknown_route_is_dead_lettered_naming_the_route(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let servers = Servers::healthy().await;
    let mut table = config(dir.path(), &servers);
    set(
        &mut table,
        "mdm",
        "routes",
        toml::from_str("elsewhere = \"writeback\"").unwrap(),
    );
    let seen = run_contact(dir.path(), table, kind).await;
    let (reason, description) = dead_lettered(&seen);
    assert_eq!(reason, "UnknownRoute");
    assert!(
        description.contains("route `next`") && description.contains("[elsewhere]"),
        "{description}"
    );
    assert!(servers.dataverse.received().is_empty());
}

async fn a_host_not_on_the_allow_list_is_never_called(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let servers = Servers::healthy().await;
    let mut table = config(dir.path(), &servers);
    set(
        &mut table,
        "mdm",
        "outbound",
        toml::from_str("allow = [\"https://mdm.example.com\"]").unwrap(),
    );
    let seen = run_contact(dir.path(), table, kind).await;
    let (reason, description) = dead_lettered(&seen);
    assert_eq!(reason, "MdmRejected");
    assert!(description.contains("allow-list"), "{description}");
    assert!(
        servers.mdm.received().is_empty(),
        "a blocked request reached the server"
    );
}

async fn the_webhook_rejects_a_wrong_key_and_enqueues_with_the_right_one(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let servers = Servers::healthy().await;
    let mut table = config(dir.path(), &servers);
    // No partner consumes `contacts` here, so the queue can be inspected.
    set(&mut table, "mdm", "queue", "mdm-in".into());
    let Running { host, store, .. } = start(dir.path(), table, kind).await;
    let url = format!("http://{}/api/webhook", host.webhook_addr.unwrap());
    let client = reqwest::Client::new();
    let post = |code: &str, content_type: &str| {
        client
            .post(format!("{url}?code={code}"))
            .header("content-type", content_type)
            .header("x-ms-dynamics-organization", "contoso.crm.dynamics.com")
            .body(contact_body())
            .send()
    };
    assert_eq!(post("wrong", "application/json").await.unwrap().status(), 401);
    assert_eq!(post("", "application/json").await.unwrap().status(), 401);
    assert_eq!(store.queue_depth("contacts").await.unwrap().active, 0);
    assert_eq!(post(WEBHOOK_KEY, "text/plain").await.unwrap().status(), 415);
    assert_eq!(post(WEBHOOK_KEY, "application/json").await.unwrap().status(), 202);
    let by_header = client
        .post(&url)
        .header("x-functions-key", WEBHOOK_KEY)
        .header("content-type", "application/json")
        .body(contact_body())
        .send()
        .await
        .unwrap();
    assert_eq!(by_header.status(), 202);
    let queued = store.peek("contacts", 10).await.unwrap();
    host.shutdown().await;
    assert_eq!(queued.len(), 2);
    assert!(
        queued[0]
            .properties
            .contains(&("x-ms-dynamics-organization".into(), "contoso.crm.dynamics.com".into()))
    );
    assert_eq!(queued[0].correlation_id.as_deref(), Some(SAGA_ID));
}

/// Dataverse shares one `CorrelationId` across every operation of a request pipeline: two
/// events carrying it (here the same sample sent twice) must still be two sagas, with their
/// own `Idempotency-Key`s, or an idempotent partner would answer the second with the first's
/// result.
async fn two_events_with_one_correlation_id_are_two_sagas_with_keys_of_their_own(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let servers = Servers::healthy().await;
    let Running {
        host,
        store,
        mut events,
    } = start(dir.path(), config(dir.path(), &servers), kind).await;
    send_contact(&store).await;
    send_contact(&store).await;
    let mut ends = Vec::new();
    while ends.len() < 2 {
        ends.extend(events_until(&mut events, is_end).await.into_iter().filter(is_end));
    }
    host.shutdown().await;
    assert!(ends.iter().all(|e| e.verdict == Verdict::Completed), "{ends:#?}");
    assert_ne!(ends[0].saga_id, ends[1].saga_id);
    let keys: BTreeSet<String> = servers
        .mdm
        .received()
        .iter()
        .map(|r| r.header("idempotency-key").expect("an Idempotency-Key").to_string())
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
}

/// ERP rejects the contact, so steps two and one are undone; the write-back's undo fails
/// (Dataverse answers 403) and is dead-lettered, yet MDM's step is still undone. Redriving
/// the dead letter once Dataverse accepts undoes the write-back only: MDM is not asked twice.
async fn a_failed_undo_does_not_stop_the_compensation_and_its_redrive_undoes_only_itself(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let mut servers = Servers::healthy().await;
    servers.erp = Partner::always(400, r#"{"error":"invalid email"}"#).await;
    servers.dataverse = Partner::start(|_, index| match index {
        1 => (403, Vec::new(), r#"{"error":"the record is locked"}"#.into()),
        _ => (204, Vec::new(), String::new()),
    })
    .await;
    let Running {
        host,
        store,
        mut events,
    } = start(dir.path(), config(dir.path(), &servers), kind).await;
    send_contact(&store).await;
    let seen = events_until(&mut events, |e| e.partner == "mdm" && e.compensation).await;
    let undo = seen
        .iter()
        .find(|e| e.partner == "dataverse-writeback" && e.compensation)
        .expect("the write-back's undo ran");
    assert!(matches!(undo.verdict, Verdict::DeadLettered { .. }), "{seen:#?}");
    assert_eq!(seen.last().unwrap().verdict, Verdict::Compensated, "{seen:#?}");
    let mdm = servers.mdm.received();
    assert_eq!(mdm.iter().filter(|r| r.method == "DELETE").count(), 1);

    let dead = store.peek_dead_letters("writeback-compensate", 0, 10).await.unwrap();
    let [dead] = &dead[..] else {
        panic!("one dead-lettered undo: {dead:#?}")
    };
    assert!(
        dead.description.contains("went on to the older steps"),
        "{}",
        dead.description
    );
    // Redriven through the host's own transport, as `sagahost dead-letters redrive` does.
    let dlq = DeadLetterQueue {
        transport: &*host.transport,
        queue: "writeback-compensate",
        partner: Some("dataverse-writeback"),
    };
    let redrive = Selection::One(dead.message.sequence_number);
    let outcome = dlq.redrive(&redrive, RedriveOptions::default(), |_| {}).await.unwrap();
    assert_eq!(outcome.done, 1);
    let redriven = events_until(&mut events, |e| e.partner == "dataverse-writeback").await;
    host.shutdown().await;
    assert_eq!(redriven.last().unwrap().verdict, Verdict::Completed, "{redriven:#?}");
    assert_eq!(
        servers.dataverse.received().len(),
        3,
        "write, failed undo, redriven undo"
    );
    let deletes = servers.mdm.received().iter().filter(|r| r.method == "DELETE").count();
    assert_eq!(deletes, 1, "the redrive must not undo MDM's step again");
}

/// Whoever can send to a queue cannot write a saga's history: state without the host's tag,
/// or with a tag from another key, is dead-lettered as `InvalidSagaState`, and no partner
/// is called to "undo" anything.
async fn forged_saga_state_is_dead_lettered_and_undoes_nothing(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let servers = Servers::healthy().await;
    let Running {
        host,
        store,
        mut events,
    } = start(dir.path(), config(dir.path(), &servers), kind).await;
    let saga = r#"{"id":"forged","step":0,"attempt":1,"history":[{"partner":"mdm","component-version":"","compensation-data":"{\"mdmId\":\"M-VICTIM\"}"}]}"#;
    let compensation = r#"{"failed-partner":"erp","reason":"forged"}"#;
    let other_key = sagahost::saga::seal::StateKeys::new(
        "test-1",
        std::collections::BTreeMap::from([("test-1".to_string(), vec![7; 32])]),
    )
    .unwrap();
    let forged = |tag: bool| {
        let mut message = OutgoingMessage {
            content_type: Some("application/json".into()),
            properties: vec![
                ("sagahost-saga".into(), saga.into()),
                ("sagahost-compensation".into(), compensation.into()),
            ],
            body: contact_body(),
            ..Default::default()
        };
        if tag {
            other_key.seal(&mut message);
        }
        Output {
            queue: "contacts-compensate".into(),
            message,
        }
    };
    for tagged in [false, true] {
        store.send(vec![forged(tagged)]).await.unwrap();
        let seen = events_until(&mut events, is_end).await;
        let (reason, description) = dead_lettered(&seen);
        assert_eq!(reason, "InvalidSagaState");
        let expected = if tagged { "does not match" } else { "sagahost-state-tag" };
        assert!(
            description.contains(expected) && description.contains("partner `mdm`"),
            "{description}"
        );
    }
    host.shutdown().await;
    assert!(servers.mdm.received().is_empty(), "a forged undo reached MDM");
}

async fn an_undecodable_body_is_dead_lettered_with_where_and_why_and_the_host_keeps_serving(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let servers = Servers::healthy().await;
    let Running {
        host,
        store,
        mut events,
    } = start(dir.path(), config(dir.path(), &servers), kind).await;
    let xml = std::fs::read(support::samples().join("contact-create.dcs.xml")).unwrap();
    let binary = std::fs::read(support::samples().join("contact-create.dcs-binary.msbin1")).unwrap();
    let bad_bodies: [(&str, Vec<u8>, &str); 5] = [
        (
            "application/json",
            b"{\"MessageName\": \"Create\",\n \"Depth\": }".to_vec(),
            "JSON body is not valid at line 2",
        ),
        (
            "application/xml",
            xml[..xml.len() / 2].to_vec(),
            "XML body is not valid at line",
        ),
        (
            "application/msbin1",
            binary[..binary.len() / 2].to_vec(),
            ".NET binary XML body is not valid at byte",
        ),
        (
            "application/msbin1",
            vec![0x56, 0x02, 0x0b, 0x01],
            ".NET binary XML body is not valid at byte",
        ),
        // A good body under the wrong content type.
        (
            "application/json",
            binary.clone(),
            "the content type says JSON, but the body looks like .NET binary XML",
        ),
    ];
    for (content_type, body, expected) in bad_bodies {
        let broken = OutgoingMessage {
            content_type: Some(content_type.into()),
            body,
            ..Default::default()
        };
        store
            .send(vec![Output {
                queue: "contacts".into(),
                message: broken,
            }])
            .await
            .unwrap();
        let seen = events_until(&mut events, is_end).await;
        let Verdict::DeadLettered { reason, description } = &seen[0].verdict else {
            panic!("{seen:#?}")
        };
        assert_eq!(reason, "DecodeFailed");
        assert!(
            description.contains("partner `mdm`") && description.contains(expected),
            "{description}"
        );
    }
    // The next, good message goes through.
    send_contact(&store).await;
    let seen = events_until(&mut events, is_end).await;
    host.shutdown().await;
    assert!(matches!(seen.last().unwrap().verdict, Verdict::Completed), "{seen:#?}");
}
