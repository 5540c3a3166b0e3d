//! Topics, subscriptions and rules with a plain HTTP client: what Service Bus answers, status by
//! status, and the counts after sends to a topic.

use std::time::{Duration, SystemTime};

use sagahost_transport::{OutgoingMessage, Output, Settlement, Transport};

use crate::support::{
    Broker, Client, element, queue_entry, rule_entry, subscription_entry, titles, token_for, topic_entry,
};

const SUBSCRIPTION_SETTINGS: &str = "<LockDuration>PT45S</LockDuration>\
     <DefaultMessageTimeToLive>PT1H</DefaultMessageTimeToLive><MaxDeliveryCount>3</MaxDeliveryCount>";

fn sql(expression: &str) -> String {
    rule_entry(&format!(
        r#"<Filter xsi:type="SqlFilter"><SqlExpression>{expression}</SqlExpression></Filter><Action xsi:type="EmptyRuleAction"/>"#
    ))
}

fn to_topic(topic: &str, body: &str, kind: &str, scheduled: Option<SystemTime>) -> Output {
    Output {
        queue: topic.into(),
        message: OutgoingMessage {
            body: body.as_bytes().to_vec(),
            properties: vec![("kind".into(), kind.into())],
            scheduled_enqueue_time: scheduled,
            ..OutgoingMessage::default()
        },
    }
}

/// `GET path` until `element` reads `expected` (settlements reach the broker asynchronously).
async fn wait_for(client: &Client, path: &str, element_name: &str, expected: &str) -> String {
    let mut got = client.get(path).await;
    for _ in 0..100 {
        if element(&got.body, element_name) == Some(expected) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        got = client.get(path).await;
    }
    got.body
}

#[tokio::test]
async fn creates_gets_lists_updates_and_deletes_topics() {
    let broker = Broker::start().await;
    let client = broker.http_client();

    let created = client.put("/events", topic_entry("")).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(element(&created.body, "title"), Some("events"));
    assert_eq!(element(&created.body, "SubscriptionCount"), Some("0"));
    let twice = client.put("/events", topic_entry("")).await;
    assert_eq!(twice.status, 409, "{}", twice.body);
    assert!(twice.body.contains("If-Match"), "{}", twice.body);
    let as_queue = client.put("/events", queue_entry("")).await;
    assert_eq!(as_queue.status, 409, "a queue named like a topic: {}", as_queue.body);
    assert_eq!(client.put("/orders", queue_entry("")).await.status, 201);
    let as_topic = client.put("/orders", topic_entry("")).await;
    assert_eq!(as_topic.status, 409, "a topic named like a queue: {}", as_topic.body);

    let got = client.get("/events").await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert!(got.body.contains("<TopicDescription"), "{}", got.body);
    assert_eq!(element(&got.body, "MaxSizeInMegabytes"), Some("1024"));
    assert_eq!(element(&got.body, "d2p1:ScheduledMessageCount"), Some("0"));
    assert!(
        client.get("/orders").await.body.contains("<QueueDescription"),
        "queues first"
    );

    let updated = client
        .update("/events", topic_entry("<MaxSizeInMegabytes>2048</MaxSizeInMegabytes>"))
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(client.update("/missing", topic_entry("")).await.status, 404);

    for name in ["a", "b"] {
        assert_eq!(client.put(&format!("/{name}"), topic_entry("")).await.status, 201);
    }
    let first = client.get("/$Resources/topics?$skip=0&$top=2").await;
    assert_eq!(titles(&first.body), ["a", "b"], "{}", first.body);
    assert!(first.body.contains("$skip=2&amp;$top=2"), "{}", first.body);
    let last = client.get("/$Resources/Topics?$skip=2&$top=2").await;
    assert_eq!(titles(&last.body), ["events"], "{}", last.body);
    assert!(!last.body.contains("rel=\"next\""), "{}", last.body);

    assert_eq!(client.delete("/events").await.status, 200);
    assert_eq!(client.get("/events").await.status, 404);
    assert_eq!(client.delete("/events").await.status, 404);
    assert_eq!(client.get("/orders").await.status, 200, "the queue stays");
}

#[tokio::test]
async fn refuses_topic_settings_the_broker_cannot_honour() {
    let broker = Broker::start().await;
    let client = broker.http_client();
    for (elements, reason) in [
        (
            "<DefaultMessageTimeToLive>PT1H</DefaultMessageTimeToLive>",
            "on its subscriptions",
        ),
        (
            "<RequiresDuplicateDetection>true</RequiresDuplicateDetection>",
            "RequiresDuplicateDetection",
        ),
        ("<Status>Disabled</Status>", "Status"),
    ] {
        let answer = client.put("/events", topic_entry(elements)).await;
        assert_eq!(answer.status, 400, "{elements}: {}", answer.body);
        assert!(answer.body.contains(reason), "{elements}: {}", answer.body);
    }
    let nested = client.put("/events/eu", topic_entry("")).await;
    assert_eq!(nested.status, 400, "{}", nested.body);
    let never = topic_entry("<DefaultMessageTimeToLive>P10675199DT2H48M5.4775807S</DefaultMessageTimeToLive>");
    assert_eq!(
        client.put("/events", never).await.status,
        201,
        "never is what the broker does"
    );
}

#[tokio::test]
async fn creates_gets_lists_updates_and_deletes_subscriptions() {
    let broker = Broker::start().await;
    let client = broker.http_client();
    assert_eq!(client.put("/events", topic_entry("")).await.status, 201);

    let created = client
        .put("/events/Subscriptions/mdm", subscription_entry(SUBSCRIPTION_SETTINGS))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(element(&created.body, "title"), Some("mdm"));
    assert!(created.body.contains("/events/Subscriptions/mdm?"), "{}", created.body);
    assert_eq!(element(&created.body, "LockDuration"), Some("PT45S"));
    assert_eq!(element(&created.body, "MaxDeliveryCount"), Some("3"));
    assert_eq!(element(&created.body, "DefaultMessageTimeToLive"), Some("PT1H"));
    assert_eq!(element(&created.body, "MessageCount"), Some("0"));
    assert_eq!(element(&created.body, "DeadLetteringOnMessageExpiration"), Some("true"));
    let twice = client.put("/events/Subscriptions/mdm", subscription_entry("")).await;
    assert_eq!(twice.status, 409, "{}", twice.body);
    let no_topic = client.put("/nothing/Subscriptions/mdm", subscription_entry("")).await;
    assert_eq!(no_topic.status, 404, "{}", no_topic.body);

    let rules = client.get("/events/Subscriptions/mdm/Rules").await;
    assert_eq!(titles(&rules.body), ["$Default"], "{}", rules.body);
    assert!(rules.body.contains(r#"i:type="TrueFilter""#), "{}", rules.body);

    let updated = client
        .update(
            "/events/subscriptions/mdm",
            subscription_entry("<MaxDeliveryCount>5</MaxDeliveryCount>"),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    let got = client.get("/events/Subscriptions/mdm").await;
    assert_eq!(element(&got.body, "MaxDeliveryCount"), Some("5"));
    assert_eq!(element(&got.body, "LockDuration"), Some("PT45S"), "left out: kept");
    assert_eq!(
        client
            .update("/events/Subscriptions/nobody", subscription_entry(""))
            .await
            .status,
        404
    );

    assert_eq!(
        client
            .put("/events/Subscriptions/erp", subscription_entry(""))
            .await
            .status,
        201
    );
    let listed = client.get("/events/Subscriptions/?$top=1").await;
    assert_eq!(titles(&listed.body), ["erp"], "{}", listed.body);
    assert!(listed.body.contains("$skip=1&amp;$top=1"), "{}", listed.body);
    assert_eq!(
        element(&client.get("/events").await.body, "SubscriptionCount"),
        Some("2")
    );

    assert_eq!(client.delete("/events/Subscriptions/erp").await.status, 200);
    assert_eq!(client.get("/events/Subscriptions/erp").await.status, 404);
    assert_eq!(client.delete("/events/Subscriptions/erp").await.status, 404);
    assert_eq!(client.get("/nothing/Subscriptions").await.status, 404);

    for (elements, reason) in [
        ("<RequiresSession>true</RequiresSession>", "RequiresSession"),
        ("<ForwardTo>elsewhere</ForwardTo>", "ForwardTo"),
        ("<LockDuration>PT6M</LockDuration>", "LockDuration"),
        ("<MaxDeliveryCount>0</MaxDeliveryCount>", "MaxDeliveryCount"),
        ("<Status>ReceiveDisabled</Status>", "Status"),
    ] {
        let answer = client
            .put("/events/Subscriptions/bad", subscription_entry(elements))
            .await;
        assert_eq!(answer.status, 400, "{elements}: {}", answer.body);
        assert!(answer.body.contains(reason), "{elements}: {}", answer.body);
    }
    assert_eq!(
        client.get("/events/Subscriptions/bad").await.status,
        404,
        "nothing created"
    );
}

#[tokio::test]
async fn a_default_rule_description_replaces_the_default_rule() {
    let broker = Broker::start().await;
    let client = broker.http_client();
    assert_eq!(client.put("/events", topic_entry("")).await.status, 201);
    let default_rule = r#"<DefaultRuleDescription><Filter xsi:type="SqlFilter"><SqlExpression>kind = 'contact'</SqlExpression></Filter><Action xsi:type="EmptyRuleAction"/><Name>contacts</Name></DefaultRuleDescription>"#;
    let created = client
        .put("/events/Subscriptions/mdm", subscription_entry(default_rule))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let rules = client.get("/events/Subscriptions/mdm/Rules").await;
    assert_eq!(titles(&rules.body), ["contacts"], "{}", rules.body);
}

#[tokio::test]
async fn creates_gets_lists_replaces_and_deletes_rules_of_every_filter_kind() {
    let broker = Broker::start().await;
    let client = broker.http_client();
    assert_eq!(client.put("/events", topic_entry("")).await.status, 201);
    assert_eq!(
        client
            .put("/events/Subscriptions/mdm", subscription_entry(""))
            .await
            .status,
        201
    );
    let rules = "/events/Subscriptions/mdm/Rules";

    let created = client
        .put(&format!("{rules}/sql"), sql("kind = 'contact' AND n &lt; 3"))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert!(created.body.contains(r#"i:type="SqlFilter""#), "{}", created.body);
    assert_eq!(
        element(&created.body, "SqlExpression"),
        Some("kind = 'contact' AND n &lt; 3")
    );
    assert!(
        created.body.contains("/events/Subscriptions/mdm/Rules/sql?"),
        "{}",
        created.body
    );

    // As the JavaScript SDK writes it: `p4:type`, and typed values.
    let correlation = r#"<Filter p4:type="CorrelationFilter" xmlns:p4="http://www.w3.org/2001/XMLSchema-instance"><CorrelationId>c-1</CorrelationId><MessageId>m</MessageId><To>mdm</To><ReplyTo>replies</ReplyTo><Label>Create</Label><SessionId>s</SessionId><ReplyToSessionId>r</ReplyToSessionId><ContentType>application/json</ContentType><Properties><KeyValueOfstringanyType><Key>region</Key><Value p4:type="l28:string" xmlns:l28="http://www.w3.org/2001/XMLSchema">eu</Value></KeyValueOfstringanyType><KeyValueOfstringanyType><Key>n</Key><Value p4:type="l28:double" xmlns:l28="http://www.w3.org/2001/XMLSchema">7</Value></KeyValueOfstringanyType></Properties></Filter><Action p4:type="EmptyRuleAction" xmlns:p4="http://www.w3.org/2001/XMLSchema-instance"/>"#;
    let created = client
        .put(&format!("{rules}/correlation"), rule_entry(correlation))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let got = client.get(&format!("{rules}/correlation")).await;
    for (name, value) in [
        ("CorrelationId", "c-1"),
        ("MessageId", "m"),
        ("To", "mdm"),
        ("ReplyTo", "replies"),
        ("Label", "Create"),
        ("SessionId", "s"),
        ("ReplyToSessionId", "r"),
        ("ContentType", "application/json"),
        ("Key", "n"),
    ] {
        assert_eq!(element(&got.body, name), Some(value), "{name}: {}", got.body);
    }
    assert!(
        got.body
            .contains(r#"<Value i:type="d6p1:string" xmlns:d6p1="http://www.w3.org/2001/XMLSchema">eu</Value>"#),
        "{}",
        got.body
    );

    for (name, kind, expression) in [("always", "TrueFilter", "1=1"), ("never", "FalseFilter", "1=0")] {
        let body = rule_entry(&format!(
            r#"<Filter xsi:type="{kind}"><SqlExpression>{expression}</SqlExpression></Filter>"#
        ));
        assert_eq!(client.put(&format!("{rules}/{name}"), body).await.status, 201);
        let got = client.get(&format!("{rules}/{name}")).await;
        assert!(got.body.contains(&format!(r#"i:type="{kind}""#)), "{}", got.body);
    }
    assert_eq!(
        client.put(&format!("{rules}/unfiltered"), rule_entry("")).await.status,
        201,
        "no filter: true"
    );

    let listed = client.get(&format!("{rules}?$skip=1&$top=2")).await;
    assert_eq!(titles(&listed.body), ["sql", "correlation"], "{}", listed.body);
    assert!(listed.body.contains("$skip=3&amp;$top=2"), "{}", listed.body);
    let everything = client.get(&format!("{rules}/")).await;
    assert_eq!(
        titles(&everything.body),
        ["$Default", "sql", "correlation", "always", "never", "unfiltered"]
    );

    let twice = client.put(&format!("{rules}/sql"), sql("1=1")).await;
    assert_eq!(twice.status, 409, "{}", twice.body);
    let replaced = client.update(&format!("{rules}/sql"), sql("kind = 'account'")).await;
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_eq!(element(&replaced.body, "SqlExpression"), Some("kind = 'account'"));
    assert_eq!(client.update(&format!("{rules}/nothing"), sql("1=1")).await.status, 404);

    assert_eq!(client.get(&format!("{rules}/$Default")).await.status, 200);
    assert_eq!(client.delete(&format!("{rules}/$Default")).await.status, 200);
    assert_eq!(client.get(&format!("{rules}/$Default")).await.status, 404);
    assert_eq!(client.delete(&format!("{rules}/$Default")).await.status, 404);
    assert_eq!(client.get("/events/Subscriptions/nobody/Rules/sql").await.status, 404);
    assert_eq!(
        client
            .put("/nothing/Subscriptions/mdm/Rules/r", sql("1=1"))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn refuses_rules_the_filters_cannot_apply() {
    let broker = Broker::start().await;
    let client = broker.http_client();
    assert_eq!(client.put("/events", topic_entry("")).await.status, 201);
    assert_eq!(
        client
            .put("/events/Subscriptions/mdm", subscription_entry(""))
            .await
            .status,
        201
    );
    let cases = [
        (sql("kind = "), "character"),
        (
            rule_entry(
                r#"<Filter xsi:type="SqlFilter"><SqlExpression>1=1</SqlExpression></Filter><Action xsi:type="SqlRuleAction"><SqlExpression>SET a = 1</SqlExpression></Action>"#,
            ),
            "rule actions are not supported",
        ),
        (
            rule_entry(
                r#"<Filter xsi:type="SqlFilter"><SqlExpression>a = @p</SqlExpression><Parameters><KeyValueOfstringanyType><Key>@p</Key><Value xsi:type="d6p1:string" xmlns:d6p1="http://www.w3.org/2001/XMLSchema">x</Value></KeyValueOfstringanyType></Parameters></Filter>"#,
            ),
            "Parameters",
        ),
        (
            rule_entry("<Filter><SqlExpression>1=1</SqlExpression></Filter>"),
            "i:type",
        ),
        (rule_entry(r#"<Filter xsi:type="LikeFilter"/>"#), "LikeFilter"),
        (rule_entry(r#"<Filter xsi:type="SqlFilter"/>"#), "SqlExpression"),
        (subscription_entry(""), "takes a RuleDescription"),
        (format!("<!DOCTYPE entry [<!ENTITY x \"y\">]>{}", sql("1=1")), "DTD"),
    ];
    for (body, reason) in cases {
        let answer = client.put("/events/Subscriptions/mdm/Rules/bad", body).await;
        assert_eq!(answer.status, 400, "{reason}: {}", answer.body);
        assert!(answer.body.contains(reason), "{reason}: {}", answer.body);
    }
    assert_eq!(
        client.get("/events/Subscriptions/mdm/Rules/bad").await.status,
        404,
        "nothing added"
    );
    // Deep nesting within the 64 KiB: skipped without recursion, so the endpoint still answers.
    let deep = format!("{}{}", "<x>".repeat(8_000), "</x>".repeat(8_000));
    let nested = rule_entry(&format!(r#"<Filter xsi:type="TrueFilter">{deep}</Filter>"#));
    let answer = client.put("/events/Subscriptions/mdm/Rules/deep", nested).await;
    assert!(matches!(answer.status, 201 | 400), "{}: {}", answer.status, answer.body);
    let in_properties = rule_entry(&format!(
        r#"<Filter xsi:type="CorrelationFilter"><Properties><KeyValueOfstringanyType><Key>k</Key><Value>{deep}</Value></KeyValueOfstringanyType></Properties></Filter>"#
    ));
    let answer = client
        .put("/events/Subscriptions/mdm/Rules/deeper", in_properties)
        .await;
    assert!(matches!(answer.status, 201 | 400), "{}: {}", answer.status, answer.body);
    assert_eq!(client.get("/events").await.status, 200, "still serving");
    let wrong_kind = client.put("/events/Subscriptions/other", topic_entry("")).await;
    assert_eq!(wrong_kind.status, 400, "{}", wrong_kind.body);
    let padding = "x".repeat(70 * 1024);
    let large = client.put("/events/Subscriptions/mdm/Rules/large", sql(&padding)).await;
    assert_eq!(large.status, 413, "{}", large.body);
}

#[tokio::test]
async fn topic_paths_need_a_token_that_covers_them() {
    let broker = Broker::start().await;
    let client = broker.http_client();
    assert_eq!(client.put("/events", topic_entry("")).await.status, 201);
    assert_eq!(
        client
            .put("/events/Subscriptions/mdm", subscription_entry(""))
            .await
            .status,
        201
    );
    assert_eq!(client.unsigned().get("/events/Subscriptions/mdm").await.status, 401);
    assert_eq!(client.unsigned().get("/$Resources/topics").await.status, 401);
    let topic_only = client.with_token(&token_for(&format!("https://{}/events", broker.http), "SAS_KEY_VALUE"));
    assert_eq!(
        topic_only.get("/events/Subscriptions/mdm/Rules/$Default").await.status,
        200,
        "below the topic"
    );
    assert_eq!(topic_only.delete("/other").await.status, 401, "another entity");
    let wrong_key = client.with_token(&token_for(&format!("https://{}", broker.http), "not-the-key"));
    assert_eq!(wrong_key.delete("/events").await.status, 401);
    assert_eq!(client.get("/events").await.status, 200, "nothing was deleted");
}

#[tokio::test]
async fn counts_what_was_sent_to_a_topic_and_deletes_it_with_the_topic() {
    let broker = Broker::start().await;
    let client = broker.http_client();
    assert_eq!(client.put("/events", topic_entry("")).await.status, 201);
    assert_eq!(
        client
            .put("/events/Subscriptions/all", subscription_entry(""))
            .await
            .status,
        201
    );
    assert_eq!(
        client
            .put("/events/Subscriptions/contacts", subscription_entry(""))
            .await
            .status,
        201
    );
    let contacts = "/events/Subscriptions/contacts/Rules";
    assert_eq!(client.delete(&format!("{contacts}/$Default")).await.status, 200);
    assert_eq!(
        client
            .put(&format!("{contacts}/contacts"), sql("kind = 'contact'"))
            .await
            .status,
        201
    );

    let amqp = broker.amqp_client().await;
    let later = SystemTime::now() + Duration::from_secs(600);
    amqp.send(vec![
        to_topic("events", "c1", "contact", None),
        to_topic("events", "c2", "contact", None),
        to_topic("events", "a1", "account", None),
        to_topic("events", "later", "contact", Some(later)),
    ])
    .await
    .unwrap();
    let received = amqp
        .receive("events/Subscriptions/contacts", 1, Duration::from_secs(5))
        .await
        .unwrap();
    let dead_letter = Settlement::DeadLetter {
        reason: "Test".into(),
        description: "dead-lettered by the test".into(),
        properties: Vec::new(),
    };
    amqp.settle(&received[0], dead_letter, vec![]).await.unwrap();

    let got = wait_for(
        &client,
        "/events/Subscriptions/contacts",
        "d2p1:DeadLetterMessageCount",
        "1",
    )
    .await;
    assert_eq!(element(&got, "d2p1:ActiveMessageCount"), Some("1"), "{got}");
    assert_eq!(element(&got, "d2p1:DeadLetterMessageCount"), Some("1"));
    assert_eq!(element(&got, "d2p1:ScheduledMessageCount"), Some("1"));
    assert_eq!(element(&got, "d2p1:TransferMessageCount"), Some("0"));
    assert_eq!(element(&got, "MessageCount"), Some("3"));
    let all = client.get("/events/Subscriptions/all").await;
    assert_eq!(element(&all.body, "d2p1:ActiveMessageCount"), Some("3"), "{}", all.body);
    assert_eq!(element(&all.body, "MessageCount"), Some("4"));
    let topic = client.get("/events").await;
    assert_eq!(element(&topic.body, "SubscriptionCount"), Some("2"), "{}", topic.body);
    assert_eq!(element(&topic.body, "d2p1:ScheduledMessageCount"), Some("1"));
    assert_eq!(
        element(&topic.body, "d2p1:ActiveMessageCount"),
        Some("0"),
        "a topic's own"
    );
    assert_eq!(
        element(&topic.body, "SizeInBytes"),
        Some("11"),
        "c1 c2 a1 later, each once"
    );
    amqp.close().await;

    assert_eq!(client.delete("/events").await.status, 200);
    assert_eq!(client.get("/events/Subscriptions/all").await.status, 404);
    assert_eq!(client.put("/events", topic_entry("")).await.status, 201);
    assert_eq!(
        client
            .put("/events/Subscriptions/all", subscription_entry(""))
            .await
            .status,
        201
    );
    let fresh = client.get("/events/Subscriptions/all").await;
    assert_eq!(
        element(&fresh.body, "MessageCount"),
        Some("0"),
        "the messages went with the topic"
    );
}
