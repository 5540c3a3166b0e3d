//! Topics and subscriptions through `sagahost broker` on loopback, driven by sagahost's own
//! Service Bus transport: sends to a topic, receives from its subscriptions and their dead-letter
//! queues, settle-and-send to a topic in one transaction, and what the broker refuses.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use sagahost_broker::{self as broker, BrokerConfig};
use sagahost_transport::dead_letters::DeadLetterQueues;
use sagahost_transport::embedded::{EmbeddedQueue, Rule, SubscriptionSettings, TopicSettings};
use sagahost_transport::filter::RuleFilter;
use sagahost_transport::servicebus::{ServiceBusOptions, ServiceBusTransport};
use sagahost_transport::{OutgoingMessage, Output, Settlement, Transport};

const ALL: &str = "contacts/Subscriptions/all";
const CREATES: &str = "contacts/Subscriptions/creates";

struct Broker {
    address: std::net::SocketAddr,
    queue: EmbeddedQueue,
    shutdown: CancellationToken,
    _dir: Arc<tempfile::TempDir>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A broker with topic `contacts`: subscription `all` ($Default) and `creates` (a SQL filter,
/// at most 2 deliveries).
async fn start() -> Broker {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let queue = EmbeddedQueue::open(&dir.path().join("queue.db"), &[]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let config = BrokerConfig {
        topics: vec![TopicSettings {
            name: "contacts".into(),
            subscriptions: vec![
                SubscriptionSettings::new("all"),
                SubscriptionSettings {
                    max_delivery_count: 2,
                    rules: vec![Rule {
                        name: "creates".into(),
                        filter: RuleFilter::Sql(
                            "MessageName = 'Create' AND sys.ContentType LIKE 'application/%'".into(),
                        ),
                    }],
                    ..SubscriptionSettings::new("creates")
                },
            ],
        }],
        ..BrokerConfig::default()
    };
    tokio::spawn(broker::serve_with(listener, queue.clone(), config, shutdown.clone()));
    // The topics exist once the broker has created them, before it accepts connections.
    for _ in 0..100 {
        if queue.has_topic("contacts") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Broker {
        address,
        queue,
        shutdown,
        _dir: dir,
    }
}

async fn client(broker: &Broker) -> ServiceBusTransport {
    let connection_string = format!(
        "Endpoint=sb://127.0.0.1:{}/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true",
        broker.address.port()
    );
    let options = ServiceBusOptions {
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        ..ServiceBusOptions::default()
    };
    ServiceBusTransport::connect(&connection_string, options).await.unwrap()
}

fn output(queue: &str, id: &str, message_name: &str) -> Output {
    Output {
        queue: queue.into(),
        message: OutgoingMessage {
            message_id: id.into(),
            content_type: Some("application/json".into()),
            properties: vec![("MessageName".into(), message_name.into())],
            body: format!("{{\"id\":\"{id}\"}}").into_bytes(),
            ..OutgoingMessage::default()
        },
    }
}

/// Every message now in `path`, received and completed, by message id.
async fn drain(transport: &ServiceBusTransport, path: &str) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let batch = transport.receive(path, 10, Duration::from_millis(300)).await.unwrap();
        if batch.is_empty() {
            ids.sort();
            return ids;
        }
        for message in batch {
            assert_eq!(message.queue, path);
            ids.push(message.message_id.clone());
            transport.settle(&message, Settlement::Complete, vec![]).await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_topic_fans_out_to_its_subscriptions_by_their_rules() {
    let broker = start().await;
    let transport = client(&broker).await;
    transport
        .send(vec![
            output("contacts", "c1", "Create"),
            output("contacts", "u1", "Update"),
            output("contacts", "c2", "Create"),
        ])
        .await
        .unwrap();
    assert_eq!(drain(&transport, ALL).await, ["c1", "c2", "u1"]);
    assert_eq!(drain(&transport, CREATES).await, ["c1", "c2"]);

    // A rule added at run time (as the entity-management endpoint would) applies to the next send.
    broker
        .queue
        .add_rule(
            "contacts",
            "creates",
            Rule {
                name: "updates".into(),
                filter: RuleFilter::Sql("messagename = 'Update'".into()),
            },
        )
        .await
        .unwrap();
    transport.send(vec![output("contacts", "u2", "Update")]).await.unwrap();
    assert_eq!(drain(&transport, CREATES).await, ["u2"]);
    assert_eq!(drain(&transport, ALL).await, ["u2"]);
    transport.close().await;
}

#[tokio::test]
async fn each_subscription_dead_letters_into_its_own_queue() {
    let broker = start().await;
    let transport = client(&broker).await;
    transport.send(vec![output("contacts", "bad", "Create")]).await.unwrap();
    // `creates` allows two deliveries: abandon both, and the third receive finds it dead-lettered.
    for _ in 0..2 {
        let batch = transport.receive(CREATES, 1, Duration::from_secs(5)).await.unwrap();
        assert_eq!(batch.len(), 1);
        transport.settle(&batch[0], Settlement::Abandon, vec![]).await.unwrap();
    }
    assert!(drain(&transport, CREATES).await.is_empty());
    let dead_letter_queue = format!("{CREATES}/$DeadLetterQueue");
    let letters = transport
        .receive(&dead_letter_queue, 10, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].message_id, "bad");
    transport
        .settle(&letters[0], Settlement::Complete, vec![])
        .await
        .unwrap();
    assert!(drain(&transport, &dead_letter_queue).await.is_empty(), "completed");

    // The copy in `all` is untouched by what happened in `creates`; dead-letter it by hand.
    let copy = transport.receive(ALL, 1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(copy[0].delivery_count, 1);
    let settlement = Settlement::DeadLetter {
        reason: "BadInput".into(),
        description: "by hand".into(),
        properties: vec![],
    };
    transport.settle(&copy[0], settlement, vec![]).await.unwrap();
    let mut letters = Vec::new();
    for _ in 0..50 {
        letters = broker.queue.peek_dead_letters(ALL, 0, 10).await.unwrap();
        if !letters.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, "BadInput");
    transport.close().await;
}

#[tokio::test]
async fn settling_and_sending_to_a_topic_is_one_transaction() {
    let broker = start().await;
    let transport = client(&broker).await;
    transport.send(vec![output("step1", "in", "Create")]).await.unwrap();
    let input = transport
        .receive("step1", 1, Duration::from_secs(5))
        .await
        .unwrap()
        .remove(0);
    transport
        .settle(&input, Settlement::Complete, vec![output("contacts", "out", "Create")])
        .await
        .unwrap();
    assert_eq!(drain(&transport, ALL).await, ["out"]);
    assert_eq!(drain(&transport, CREATES).await, ["out"]);
    assert!(drain(&transport, "step1").await.is_empty());
    transport.close().await;
}

#[tokio::test]
async fn subscriptions_cannot_be_sent_to_and_topics_cannot_be_received_from() {
    let broker = start().await;
    let transport = client(&broker).await;
    assert!(transport.send(vec![output(ALL, "x", "Create")]).await.is_err());
    assert!(
        transport
            .receive("contacts", 1, Duration::from_millis(500))
            .await
            .is_err()
    );
    assert!(
        transport
            .receive("contacts/Subscriptions/nope", 1, Duration::from_millis(500))
            .await
            .is_err()
    );
    assert!(
        !broker.queue.has_queue("contacts"),
        "no queue was created under the topic's name"
    );
    transport.close().await;
}

#[tokio::test]
async fn a_topic_created_at_run_time_is_served_at_once() {
    let broker = start().await;
    let transport = client(&broker).await;
    broker
        .queue
        .ensure_topic(TopicSettings {
            name: "accounts".into(),
            subscriptions: vec![SubscriptionSettings::new("erp")],
        })
        .await
        .unwrap();
    transport.send(vec![output("accounts", "a1", "Create")]).await.unwrap();
    assert_eq!(drain(&transport, "accounts/Subscriptions/erp").await, ["a1"]);
    transport.close().await;
}
