//! The endpoint with a plain HTTP client: what Service Bus answers, status by status.

use std::time::{Duration, SystemTime};

use sagahost_transport::{OutgoingMessage, Output, Settlement, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Broker, element, queue_entry, token_for};

const SETTINGS: &str = "<LockDuration>PT45S</LockDuration><MaxDeliveryCount>3</MaxDeliveryCount>\
     <DefaultMessageTimeToLive>PT1H</DefaultMessageTimeToLive>";

fn message(queue: &str, id: &str, scheduled: Option<SystemTime>) -> Output {
    Output {
        queue: queue.into(),
        message: OutgoingMessage {
            message_id: id.into(),
            body: b"body".to_vec(),
            scheduled_enqueue_time: scheduled,
            ..OutgoingMessage::default()
        },
    }
}

#[tokio::test]
async fn creates_gets_lists_updates_and_deletes_a_queue() {
    let broker = Broker::start().await;
    let client = broker.http_client();

    let created = client.put("/orders", queue_entry(SETTINGS)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(element(&created.body, "title"), Some("orders"));
    assert_eq!(element(&created.body, "LockDuration"), Some("PT45S"));

    let got = client.get("/orders").await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(element(&got.body, "MaxDeliveryCount"), Some("3"));
    assert_eq!(element(&got.body, "DefaultMessageTimeToLive"), Some("PT1H"));
    assert_eq!(element(&got.body, "RequiresSession"), Some("false"));
    assert_eq!(element(&got.body, "d2p1:ActiveMessageCount"), Some("0"));
    assert_ne!(element(&got.body, "CreatedAt"), Some("0001-01-01T00:00:00Z"));

    let updated = client
        .update("/orders", queue_entry("<LockDuration>PT1M</LockDuration>"))
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    let got = client.get("/orders").await;
    assert_eq!(element(&got.body, "LockDuration"), Some("PT1M"));
    assert_eq!(element(&got.body, "MaxDeliveryCount"), Some("3"), "left out: kept");

    assert_eq!(client.put("/billing.eu", queue_entry("")).await.status, 201);
    let nested = client.put("/billing/eu", queue_entry("")).await;
    assert_eq!(nested.status, 400, "AMQP serves no such address: {}", nested.body);
    let listed = client.get("/$Resources/queues").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let titles: Vec<&str> = listed
        .body
        .match_indices("<title type=\"text\">")
        .map(|(at, _)| &listed.body[at..])
        .filter_map(|rest| element(rest, "title"))
        .collect();
    assert_eq!(titles, ["Queues", "billing.eu", "orders"]);

    assert_eq!(client.delete("/orders").await.status, 200);
    assert_eq!(client.get("/orders").await.status, 404);
    assert_eq!(client.get("/billing.eu").await.status, 200);
}

#[tokio::test]
async fn lists_page_by_skip_and_top_with_a_next_link() {
    let broker = Broker::start().await;
    let client = broker.http_client();
    for name in ["a", "b", "c"] {
        assert_eq!(client.put(&format!("/{name}"), queue_entry("")).await.status, 201);
    }
    let first = client.get("/$Resources/queues?$skip=0&$top=2").await;
    assert_eq!(first.body.matches("<entry>").count(), 2, "{}", first.body);
    assert!(first.body.contains("rel=\"next\""), "{}", first.body);
    assert!(first.body.contains("$skip=2&amp;$top=2"), "{}", first.body);
    let last = client.get("/$Resources/queues?$skip=2&$top=2").await;
    assert_eq!(last.body.matches("<entry>").count(), 1, "{}", last.body);
    assert!(!last.body.contains("rel=\"next\""), "{}", last.body);
    assert_eq!(client.get("/$Resources/queues?$top=0").await.status, 400);
}

#[tokio::test]
async fn counts_what_sagahost_s_service_bus_client_sent() {
    let broker = Broker::start().await;
    let client = broker.http_client();
    assert_eq!(client.put("/counted", queue_entry(SETTINGS)).await.status, 201);
    let amqp = broker.amqp_client().await;
    let later = SystemTime::now() + Duration::from_secs(600);
    amqp.send(vec![
        message("counted", "1", None),
        message("counted", "2", None),
        message("counted", "3", None),
        message("counted", "4", Some(later)),
    ])
    .await
    .unwrap();
    let received = amqp.receive("counted", 1, Duration::from_secs(5)).await.unwrap();
    let dead_letter = Settlement::DeadLetter {
        reason: "Test".into(),
        description: "dead-lettered by the test".into(),
        properties: Vec::new(),
    };
    amqp.settle(&received[0], dead_letter, vec![]).await.unwrap();

    // The settlement reaches the broker asynchronously: wait for the counts to show it.
    let mut got = client.get("/counted").await;
    for _ in 0..100 {
        if element(&got.body, "d2p1:DeadLetterMessageCount") == Some("1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        got = client.get("/counted").await;
    }
    assert_eq!(element(&got.body, "d2p1:ActiveMessageCount"), Some("2"), "{}", got.body);
    assert_eq!(element(&got.body, "d2p1:DeadLetterMessageCount"), Some("1"));
    assert_eq!(element(&got.body, "d2p1:ScheduledMessageCount"), Some("1"));
    assert_eq!(element(&got.body, "d2p1:TransferMessageCount"), Some("0"));
    assert_eq!(element(&got.body, "MessageCount"), Some("4"));
    assert_eq!(element(&got.body, "SizeInBytes"), Some("16"));
    amqp.close().await;
}

#[tokio::test]
async fn refuses_requests_without_a_valid_token() {
    let broker = Broker::start().await;
    let client = broker.http_client();
    let missing = client.unsigned().get("/$Resources/queues").await;
    assert_eq!(missing.status, 401);
    assert!(
        missing.body.starts_with("<Error><Code>401</Code><Detail>"),
        "{}",
        missing.body
    );
    assert!(missing.body.contains("no Authorization header"), "{}", missing.body);

    let wrong_key = token_for(&format!("https://{}", broker.http), "not-the-key");
    let refused = client.with_token(&wrong_key).put("/orders", queue_entry("")).await;
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("signature does not match"), "{}", refused.body);
    assert_eq!(client.get("/orders").await.status, 404, "nothing was created");

    let one_queue = client.with_token(&token_for(&format!("https://{}/orders", broker.http), "SAS_KEY_VALUE"));
    assert_eq!(
        one_queue.put("/orders", queue_entry("")).await.status,
        201,
        "its own queue"
    );
    assert_eq!(one_queue.get("/payments").await.status, 401, "another queue");
    assert_eq!(
        one_queue.get("/$Resources/queues").await.status,
        401,
        "the list of every queue"
    );
    // As the JavaScript SDK signs: the request's own URL, query and all.
    let own_url = |path: &str| {
        client.with_token(&token_for(
            &format!("https://{}{path}?api-version=2021-05", broker.http),
            "SAS_KEY_VALUE",
        ))
    };
    assert_eq!(own_url("/orders").get("/orders").await.status, 200);
    assert_eq!(
        own_url("/$resources/queues").get("/$Resources/queues").await.status,
        200
    );
    assert_eq!(own_url("/$resources/queues").get("/orders").await.status, 401);
    let bearer = client.with_token("Bearer eyJ0eXAiOiJKV1QifQ");
    assert_eq!(bearer.get("/orders").await.status, 401);
}

#[tokio::test]
async fn answers_conflicts_missing_entities_and_bad_requests_as_service_bus_does() {
    let broker = Broker::start().await;
    let client = broker.http_client();
    assert_eq!(client.put("/orders", queue_entry("")).await.status, 201);
    let twice = client.put("/orders", queue_entry("")).await;
    assert_eq!(twice.status, 409);
    assert!(
        twice.body.contains("<Code>409</Code>") && twice.body.contains("If-Match"),
        "{}",
        twice.body
    );

    for missing in [
        client.get("/nothing").await,
        client.delete("/nothing").await,
        client.update("/nothing", queue_entry("")).await,
        client.get("/topic/Subscriptions/sub").await,
    ] {
        assert_eq!(missing.status, 404, "{}", missing.body);
        assert!(missing.body.contains("<Code>404</Code>"), "{}", missing.body);
    }

    for (path, reason) in [
        ("/$weird", "reserved"),
        ("/a..b", ".."),
        ("/bad%20name", "' '"),
        (&*format!("/{}", "q".repeat(261)), "at most 260"),
        ("/t/Subscriptions/s/Rules/r/x", "not an entity path"),
    ] {
        let answer = client.put(path, queue_entry("")).await;
        assert_eq!(answer.status, 400, "{path}: {}", answer.body);
        assert!(answer.body.contains(reason), "{path}: {}", answer.body);
    }
    for (body, reason) in [
        ("<entry><content>".to_owned(), "not well-formed"),
        ("not xml at all".to_owned(), "no XML element"),
        (queue_entry("<LockDuration>soon</LockDuration>"), "LockDuration"),
        (
            queue_entry("<RequiresSession>perhaps</RequiresSession>"),
            "RequiresSession",
        ),
        (
            format!("<!DOCTYPE entry [<!ENTITY x \"y\">]>{}", queue_entry("")),
            "DTD",
        ),
    ] {
        let answer = client.put("/fresh", body).await;
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert!(answer.body.contains(reason), "{reason}: {}", answer.body);
    }
    assert_eq!(client.get("/fresh").await.status, 404, "no bad request created a queue");

    assert_eq!(
        client.send(reqwest::Method::POST, "/orders", None, false).await.status,
        405
    );
}

#[tokio::test]
async fn refuses_bodies_over_64_kib_declared_or_streamed() {
    let broker = Broker::start().await;
    let client = broker.http_client();
    let padding = "x".repeat(70 * 1024);
    let large = queue_entry(&format!("<UserMetadata>{padding}</UserMetadata>"));
    let answer = client.put("/large", large).await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert!(answer.body.contains("<Code>413</Code>"), "{}", answer.body);

    // Chunked, with no Content-Length to refuse up front: refused once 64 KiB have come.
    let token = client.token.clone().unwrap();
    let mut stream = tokio::net::TcpStream::connect(broker.http).await.unwrap();
    let head = format!(
        "PUT /chunked HTTP/1.1\r\nHost: {}\r\nAuthorization: {token}\r\nTransfer-Encoding: chunked\r\n\r\n",
        broker.http
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'x'; 70 * 1024];
    stream
        .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
        .await
        .unwrap();
    // The server may answer and close before reading all of it.
    let _ = stream.write_all(&chunk).await;
    let _ = stream.write_all(b"\r\n0\r\n\r\n").await;
    let mut answer = vec![0; 1024];
    let read = stream.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(client.get("/chunked").await.status, 404);
}

#[tokio::test]
async fn created_queues_keep_their_settings_across_a_restart() {
    let broker = Broker::start().await;
    let client = broker.http_client();
    assert_eq!(client.put("/kept", queue_entry(SETTINGS)).await.status, 201);
    let created = element(&client.get("/kept").await.body, "CreatedAt")
        .unwrap()
        .to_owned();
    let dir = broker.stop().await;

    let broker = Broker::start_in(dir).await;
    let client = broker.http_client();
    let got = client.get("/kept").await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(element(&got.body, "LockDuration"), Some("PT45S"));
    assert_eq!(element(&got.body, "MaxDeliveryCount"), Some("3"));
    assert_eq!(element(&got.body, "DefaultMessageTimeToLive"), Some("PT1H"));
    assert_eq!(element(&got.body, "CreatedAt"), Some(created.as_str()));
    broker.stop().await;
}

#[tokio::test]
async fn describes_the_namespace() {
    let broker = Broker::start().await;
    let answer = broker.http_client().get("/$namespaceinfo").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(element(&answer.body, "Name"), Some("127.0.0.1"));
    assert_eq!(element(&answer.body, "MessagingSKU"), Some("Standard"));
    assert_eq!(element(&answer.body, "NamespaceType"), Some("Messaging"));
}
