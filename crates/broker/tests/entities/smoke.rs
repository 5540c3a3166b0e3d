//! The Azure smoke test: one pass over what a host does on Service Bus — create its entities,
//! send, receive, renew and complete, dead-letter, list and redrive, read a topic's subscription,
//! and read a session in order with its lock and state.
//!
//! It runs against a real namespace when `SAGAHOST_SERVICEBUS_CONNECTION_STRING` is set, or
//! with Entra ID when `SAGAHOST_SERVICEBUS_NAMESPACE` and an app's credential are (Azure
//! cannot run here, so that half is skipped with the reason printed), and always against the
//! broker, the same code, so the test is known to work before anyone points it at Azure. Entity
//! names derive from `SAGAHOST_SERVICEBUS_QUEUE` (default `sagahost-smoke`): the queue, a
//! session-enabled `<queue>-sessions` and a topic `<queue>-topic` with the subscription `smoke`,
//! all created when missing.

use std::sync::Arc;
use std::time::Duration;

use sagahost_identity::{ClientCredentials, Secret, TokenSource, entra_token_url};

use sagahost_transport::dead_letters::DeadLetterQueues as _;
use sagahost_transport::embedded::{QueueSettings, SubscriptionSettings};
use sagahost_transport::servicebus::dialect::subscription_path;
use sagahost_transport::servicebus::entities::EntityClient;
use sagahost_transport::servicebus::{ServiceBusOptions, ServiceBusTarget, ServiceBusTransport};
use sagahost_transport::sessions::Sessions as _;
use sagahost_transport::{OutgoingMessage, Output, Settlement, Transport, TransportError};

use super::support::Broker;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_against_azure_service_bus() {
    let Ok(connection_string) = std::env::var("SAGAHOST_SERVICEBUS_CONNECTION_STRING") else {
        eprintln!(
            "skipped: set SAGAHOST_SERVICEBUS_CONNECTION_STRING (and SAGAHOST_SERVICEBUS_QUEUE) to run against Azure"
        );
        return;
    };
    let queue = std::env::var("SAGAHOST_SERVICEBUS_QUEUE").unwrap_or_else(|_| "sagahost-smoke".into());
    let target = ServiceBusTarget::connection_string(&connection_string).unwrap();
    smoke(&target, None, &queue).await;
}

/// The same with no connection string: `SAGAHOST_SERVICEBUS_NAMESPACE` and an app's
/// `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and `AZURE_CLIENT_SECRET` (the app needs the Service
/// Bus Data Owner role on the namespace: the test creates entities).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_against_azure_service_bus_with_entra_id() {
    let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let (Some(namespace), Some(tenant), Some(client), Some(secret)) = (
        var("SAGAHOST_SERVICEBUS_NAMESPACE"),
        var("AZURE_TENANT_ID"),
        var("AZURE_CLIENT_ID"),
        var("AZURE_CLIENT_SECRET"),
    ) else {
        eprintln!(
            "skipped: set SAGAHOST_SERVICEBUS_NAMESPACE, AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET \
             to run against Azure with Entra ID"
        );
        return;
    };
    let token_url = entra_token_url("https://login.microsoftonline.com", &tenant);
    let source = ClientCredentials::with_secret(token_url, client, Secret::new(secret));
    let target = ServiceBusTarget::entra(namespace, Arc::new(TokenSource::from(source)));
    let queue = var("SAGAHOST_SERVICEBUS_QUEUE").unwrap_or_else(|| "sagahost-smoke".into());
    smoke(&target, None, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_azure_smoke_test_passes_against_the_broker() {
    let broker = Broker::start().await;
    let management = format!("http://{}", broker.http);
    let target = ServiceBusTarget::connection_string(&broker.connection_string()).unwrap();
    smoke(&target, Some(&management), "sagahost-smoke").await;
    broker.stop().await;
}

/// The whole smoke test against `target`, whose entity-management API is at `management` (or
/// the namespace's own `https://` endpoint).
async fn smoke(target: &ServiceBusTarget, management: Option<&str>, queue: &str) {
    let sessions = format!("{queue}-sessions");
    let topic = format!("{queue}-topic");
    let entities = EntityClient::with_target(target, management).unwrap();
    entities.ensure_queue(&QueueSettings::new(queue)).await.unwrap();
    let session_queue = QueueSettings {
        requires_session: true,
        ..QueueSettings::new(&sessions)
    };
    entities.ensure_queue(&session_queue).await.unwrap();
    entities.ensure_topic(&topic).await.unwrap();
    entities
        .ensure_subscription(&topic, &SubscriptionSettings::new("smoke"))
        .await
        .unwrap();

    let transport = ServiceBusTransport::connect_with(target, ServiceBusOptions::default())
        .await
        .unwrap();
    drain(&transport, queue).await;
    smoke_queue(&transport, queue).await;
    smoke_dead_letters(&transport, queue).await;
    smoke_subscription(&transport, &topic).await;
    smoke_session(&transport, &sessions).await;
    transport.close().await;
}

/// Completes what earlier runs left in `queue`.
async fn drain(transport: &ServiceBusTransport, queue: &str) {
    loop {
        let old = transport.receive(queue, 50, Duration::from_secs(1)).await.unwrap();
        if old.is_empty() {
            return;
        }
        for message in old {
            transport.settle(&message, Settlement::Complete, vec![]).await.unwrap();
        }
    }
}

fn output(queue: &str, id: &str, body: &[u8]) -> Output {
    Output {
        queue: queue.to_owned(),
        message: OutgoingMessage {
            message_id: id.to_owned(),
            properties: vec![("k".into(), "v".into())],
            body: body.to_vec(),
            ..OutgoingMessage::default()
        },
    }
}

/// Send, receive, renew, complete; a second complete finds the lock gone.
async fn smoke_queue(transport: &ServiceBusTransport, queue: &str) {
    let id = uuid::Uuid::new_v4().to_string();
    transport.send(vec![output(queue, &id, b"smoke")]).await.unwrap();
    let received = transport.receive(queue, 1, WAIT).await.unwrap();
    assert_eq!(received.len(), 1);
    let message = &received[0];
    assert_eq!(
        (message.message_id.as_str(), &message.body[..]),
        (id.as_str(), &b"smoke"[..])
    );
    assert_eq!(message.delivery_count, 1);
    let renewed = transport.renew_lock(message).await.unwrap();
    assert!(renewed >= message.locked_until);
    transport.settle(message, Settlement::Complete, vec![]).await.unwrap();
    assert!(matches!(
        transport.settle(message, Settlement::Complete, vec![]).await,
        Err(TransportError::LockLost { .. })
    ));
}

/// Dead-letters a message, finds it by peeking `<queue>/$DeadLetterQueue`, and redrives it
/// (received from the dead-letter queue and completed with its copy in one transaction).
async fn smoke_dead_letters(transport: &ServiceBusTransport, queue: &str) {
    let id = uuid::Uuid::new_v4().to_string();
    let copy = output(queue, &id, b"smoke dead letter");
    transport.send(vec![copy.clone()]).await.unwrap();
    let received = transport.receive(queue, 1, WAIT).await.unwrap();
    let dead_letter = Settlement::DeadLetter {
        reason: "SmokeTest".into(),
        description: "dead-lettered by the smoke test".into(),
        properties: Vec::new(),
    };
    transport.settle(&received[0], dead_letter, vec![]).await.unwrap();

    let mut from = 0;
    let peeked = loop {
        let page = transport.peek_dead_letters(queue, from, 100).await.unwrap();
        assert!(
            !page.is_empty(),
            "the dead letter {id} is not in `{queue}/$DeadLetterQueue`"
        );
        if let Some(found) = page.iter().find(|d| d.message.message_id == id) {
            break found.clone();
        }
        from = page.last().unwrap().message.sequence_number + 1;
    };
    assert_eq!(peeked.reason, "SmokeTest");

    let mut redriven = false;
    for _ in 0..20 {
        for letter in transport
            .receive_dead_letters(queue, 0, 50, Duration::from_secs(5))
            .await
            .unwrap()
        {
            let resend = (letter.message.message_id == id).then(|| copy.clone());
            redriven |= resend.is_some();
            // Leftovers of earlier runs are removed too.
            transport
                .settle(&letter.message, Settlement::Complete, resend.into_iter().collect())
                .await
                .unwrap();
        }
        if redriven {
            break;
        }
    }
    assert!(
        redriven,
        "the dead letter {id} was never received from the dead-letter queue"
    );
    let back = transport.receive(queue, 1, WAIT).await.unwrap();
    assert_eq!(back[0].message_id, id);
    transport.settle(&back[0], Settlement::Complete, vec![]).await.unwrap();
}

/// A message sent to the topic is received from its subscription.
async fn smoke_subscription(transport: &ServiceBusTransport, topic: &str) {
    let subscription = subscription_path(topic, "smoke");
    drain(transport, &subscription).await;
    let id = uuid::Uuid::new_v4().to_string();
    transport.send(vec![output(topic, &id, b"smoke topic")]).await.unwrap();
    let received = transport.receive(&subscription, 1, WAIT).await.unwrap();
    assert_eq!(received.len(), 1, "nothing reached `{subscription}`");
    assert_eq!(received[0].message_id, id);
    transport
        .settle(&received[0], Settlement::Complete, vec![])
        .await
        .unwrap();
}

/// Three messages of one session come in order under the session's lock, which renews, and the
/// session's state is written and read back.
async fn smoke_session(transport: &ServiceBusTransport, queue: &str) {
    let session_id = uuid::Uuid::new_v4().to_string();
    let outputs: Vec<Output> = (0..3)
        .map(|n| {
            let mut output = output(queue, &format!("{session_id}-{n}"), n.to_string().as_bytes());
            output.message.session_id = Some(session_id.clone());
            output
        })
        .collect();
    transport.send(outputs).await.unwrap();
    let session = transport
        .accept_session(queue, Some(&session_id), WAIT)
        .await
        .unwrap()
        .expect("the named session");
    let renewed = transport.renew_session_lock(&session).await.unwrap();
    assert!(renewed >= session.locked_until);
    transport
        .set_session_state(&session, Some(b"smoke".to_vec()))
        .await
        .unwrap();
    assert_eq!(
        transport.session_state(&session).await.unwrap().as_deref(),
        Some(&b"smoke"[..])
    );
    let mut bodies = Vec::new();
    while bodies.len() < 3 {
        let batch = transport.receive_in_session(&session, 3, WAIT).await.unwrap();
        assert!(!batch.is_empty(), "the session's messages stopped after {bodies:?}");
        for message in batch {
            assert_eq!(message.session_id.as_deref(), Some(session_id.as_str()));
            bodies.push(String::from_utf8(message.body.clone()).unwrap());
            transport.settle(&message, Settlement::Complete, vec![]).await.unwrap();
        }
    }
    assert_eq!(bodies, ["0", "1", "2"]);
    transport.set_session_state(&session, None).await.unwrap();
    transport.release_session(&session).await.unwrap();
}
