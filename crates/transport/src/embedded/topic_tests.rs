//! Topics, subscriptions and rules in the embedded queue, on a real SQLite file.

use std::time::{Duration, SystemTime};

use tempfile::TempDir;

use super::super::{OutgoingMessage, Output, Settlement, Transport, TransportError};
use super::store::MAX_DELIVERY_COUNT_EXCEEDED;
use super::{
    DEFAULT_RULE, EmbeddedQueue, QueueDepth, QueueSettings, Rule, SubscriptionSettings, TopicError, TopicSettings,
};
use crate::dead_letters::DeadLetterQueues;
use crate::filter::{CorrelationFilter, RuleFilter};

const NO_WAIT: Duration = Duration::ZERO;
const MDM: &str = "contacts/Subscriptions/mdm";
const ERP: &str = "contacts/Subscriptions/erp";

fn open(dir: &TempDir, queues: &[QueueSettings]) -> EmbeddedQueue {
    EmbeddedQueue::open(&dir.path().join("queue.db"), queues).expect("open queue")
}

fn message(queue: &str, body: &str, properties: &[(&str, &str)]) -> Output {
    Output {
        queue: queue.into(),
        message: OutgoingMessage {
            body: body.into(),
            properties: properties
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Default::default()
        },
    }
}

fn sql_rule(name: &str, sql: &str) -> Rule {
    Rule {
        name: name.into(),
        filter: RuleFilter::Sql(sql.into()),
    }
}

/// `contacts` with subscriptions `mdm` and `erp`, both with the `$Default` rule.
async fn contacts(q: &EmbeddedQueue) {
    let created = q
        .ensure_topic(TopicSettings {
            name: "contacts".into(),
            subscriptions: vec![SubscriptionSettings::new("mdm"), SubscriptionSettings::new("erp")],
        })
        .await
        .unwrap();
    assert!(created);
}

async fn bodies(q: &EmbeddedQueue, path: &str) -> Vec<String> {
    q.peek(path, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| String::from_utf8(m.body).unwrap())
        .collect()
}

#[tokio::test]
async fn a_message_to_a_topic_is_copied_to_every_subscription() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[]);
    contacts(&q).await;
    assert!(
        !q.ensure_topic(TopicSettings::new("contacts")).await.unwrap(),
        "exists already"
    );
    let mut sent = message("contacts", "hello", &[("k", "v")]);
    sent.message.correlation_id = Some("c-1".into());
    q.send(vec![sent]).await.unwrap();

    let mdm = q.receive(MDM, 10, NO_WAIT).await.unwrap();
    let erp = q.receive(ERP, 10, NO_WAIT).await.unwrap();
    assert_eq!((mdm.len(), erp.len()), (1, 1));
    assert_eq!(mdm[0].queue, MDM);
    assert_eq!(mdm[0].body, b"hello");
    assert_eq!(mdm[0].correlation_id.as_deref(), Some("c-1"));
    assert_eq!(mdm[0].message_id, erp[0].message_id, "one message id for every copy");
    assert_eq!(
        mdm[0].sequence_number, erp[0].sequence_number,
        "the topic's sequence number"
    );
    q.settle(&mdm[0], Settlement::Complete, vec![]).await.unwrap();
    assert_eq!(q.queue_depth(MDM).await.unwrap().active, 0);
    assert_eq!(
        q.queue_depth(ERP).await.unwrap().active,
        1,
        "each copy is settled on its own"
    );

    q.send(vec![message("contacts", "second", &[])]).await.unwrap();
    let next = q.receive(MDM, 10, NO_WAIT).await.unwrap();
    assert!(next[0].sequence_number > mdm[0].sequence_number);
}

#[tokio::test]
async fn rules_decide_which_subscriptions_get_a_copy() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[]);
    q.ensure_topic(TopicSettings::new("contacts")).await.unwrap();
    let creates = SubscriptionSettings {
        rules: vec![sql_rule("creates", "MessageName = 'Create' AND Depth <= 1")],
        ..SubscriptionSettings::new("mdm")
    };
    assert!(q.ensure_subscription("contacts", creates).await.unwrap());
    q.ensure_subscription("contacts", SubscriptionSettings::new("erp"))
        .await
        .unwrap();
    q.remove_rule("contacts", "erp", DEFAULT_RULE).await.unwrap();
    let eu = Rule {
        name: "eu".into(),
        filter: RuleFilter::Correlation(CorrelationFilter {
            properties: vec![("region".into(), "eu".into())],
            ..CorrelationFilter::default()
        }),
    };
    q.add_rule("contacts", "erp", eu.clone()).await.unwrap();
    q.add_rule("contacts", "erp", sql_rule("deletes", "messagename LIKE 'Del%'"))
        .await
        .unwrap();
    assert_eq!(
        q.rules("contacts", "erp").unwrap(),
        vec![eu, sql_rule("deletes", "messagename LIKE 'Del%'")]
    );

    q.send(vec![
        message(
            "contacts",
            "create-eu",
            &[("MessageName", "Create"), ("Depth", "1"), ("Region", "eu")],
        ),
        message("contacts", "create-deep", &[("MessageName", "Create"), ("Depth", "2")]),
        message("contacts", "delete", &[("MessageName", "Delete"), ("Depth", "1")]),
        message("contacts", "update-us", &[("MessageName", "Update"), ("region", "us")]),
    ])
    .await
    .unwrap();
    assert_eq!(bodies(&q, MDM).await, vec!["create-eu"]);
    assert_eq!(
        bodies(&q, ERP).await,
        vec!["create-eu", "delete"],
        "a message matching two rules is copied once"
    );
}

#[tokio::test]
async fn bad_rules_are_refused_with_a_readable_error() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[]);
    contacts(&q).await;
    let error = q
        .add_rule("contacts", "mdm", sql_rule("broken", "MessageName = 'Create' AND ("))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("rule `broken`") && text.contains("at character 29"),
        "{text}"
    );
    assert!(matches!(
        q.add_rule("contacts", "mdm", Rule::default_rule()).await,
        Err(TopicError::RuleExists { .. })
    ));
    assert!(matches!(
        q.remove_rule("contacts", "mdm", "nope").await,
        Err(TopicError::UnknownRule { .. })
    ));
    assert!(matches!(
        q.add_rule("nope", "mdm", Rule::default_rule()).await,
        Err(TopicError::UnknownTopic(_))
    ));
    assert!(matches!(
        q.add_rule("contacts", "nope", Rule::default_rule()).await,
        Err(TopicError::UnknownSubscription { .. })
    ));
    assert_eq!(q.rules("contacts", "mdm").unwrap(), vec![Rule::default_rule()]);
    let bad_subscription = SubscriptionSettings {
        rules: vec![sql_rule("r", "a +")],
        ..SubscriptionSettings::new("new")
    };
    assert!(matches!(
        q.ensure_subscription("contacts", bad_subscription).await,
        Err(TopicError::Filter { .. })
    ));
    assert!(q.subscription("contacts", "new").is_err(), "nothing created");
}

#[tokio::test]
async fn each_subscription_has_its_own_dead_letter_queue_and_max_delivery_count() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[]);
    q.ensure_topic(TopicSettings {
        name: "contacts".into(),
        subscriptions: vec![
            SubscriptionSettings {
                max_delivery_count: 1,
                lock_duration: Duration::from_secs(5),
                ..SubscriptionSettings::new("mdm")
            },
            SubscriptionSettings::new("erp"),
        ],
    })
    .await
    .unwrap();
    q.send(vec![message("contacts", "x", &[])]).await.unwrap();

    let mdm = q.receive(MDM, 1, NO_WAIT).await.unwrap();
    assert!(
        mdm[0].locked_until < SystemTime::now() + Duration::from_secs(6),
        "mdm's 5 s lock"
    );
    q.settle(&mdm[0], Settlement::Abandon, vec![]).await.unwrap();
    assert!(
        q.receive(MDM, 1, NO_WAIT).await.unwrap().is_empty(),
        "one delivery only"
    );
    let dead = q.peek_dead_letters(MDM, 0, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, MAX_DELIVERY_COUNT_EXCEEDED);
    assert_eq!(dead[0].message.queue, MDM);

    let erp = q.receive(ERP, 1, NO_WAIT).await.unwrap();
    q.settle(&erp[0], Settlement::Abandon, vec![]).await.unwrap();
    assert_eq!(
        q.receive(ERP, 1, NO_WAIT).await.unwrap()[0].delivery_count,
        2,
        "erp allows 10"
    );
    assert_eq!(q.queue_depth(ERP).await.unwrap().dead_lettered, 0);

    // The dead letter can be received under a lock from the subscription's dead-letter queue.
    let locked = q.receive_dead_letters(MDM, 0, 10, NO_WAIT).await.unwrap();
    assert_eq!(locked.len(), 1);
    q.settle(&locked[0].message, Settlement::Complete, vec![])
        .await
        .unwrap();
    assert_eq!(q.queue_depth(MDM).await.unwrap(), QueueDepth::default());
}

#[tokio::test]
async fn settling_and_sending_to_a_topic_is_one_atomic_step() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[QueueSettings::new("in")]);
    contacts(&q).await;
    q.send(vec![message("in", "input", &[])]).await.unwrap();
    let input = q.receive("in", 1, NO_WAIT).await.unwrap().remove(0);

    // An output to an unknown queue fails the whole step: the input stays locked, no copies.
    let failed = q
        .settle(
            &input,
            Settlement::Complete,
            vec![message("contacts", "out", &[]), message("nope", "x", &[])],
        )
        .await;
    assert!(matches!(failed, Err(TransportError::UnknownQueue(_))));
    assert_eq!(q.queue_depth(MDM).await.unwrap().active, 0);
    assert_eq!(q.queue_depth("in").await.unwrap().active, 1);

    q.settle(&input, Settlement::Complete, vec![message("contacts", "out", &[])])
        .await
        .unwrap();
    assert_eq!(q.queue_depth("in").await.unwrap().active, 0);
    assert_eq!(bodies(&q, MDM).await, vec!["out"]);
    assert_eq!(bodies(&q, ERP).await, vec!["out"]);
}

#[tokio::test]
async fn a_message_no_subscription_matches_is_dropped() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[]);
    contacts(&q).await;
    q.remove_rule("contacts", "mdm", DEFAULT_RULE).await.unwrap();
    q.remove_rule("contacts", "erp", DEFAULT_RULE).await.unwrap();
    q.add_rule("contacts", "erp", sql_rule("never", "1 = 0")).await.unwrap();
    q.send(vec![message("contacts", "lost", &[])]).await.unwrap();
    assert_eq!(q.queue_depth(MDM).await.unwrap(), QueueDepth::default());
    assert_eq!(q.queue_depth(ERP).await.unwrap(), QueueDepth::default());

    q.ensure_topic(TopicSettings::new("empty")).await.unwrap();
    q.send(vec![message("empty", "nobody listens", &[])]).await.unwrap();
}

#[tokio::test]
async fn scheduled_messages_are_copied_at_send_and_cancelled_on_the_topic() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[]);
    contacts(&q).await;
    let mut later = message("contacts", "later", &[]);
    later.message.scheduled_enqueue_time = Some(SystemTime::now() + Duration::from_secs(3600));
    let numbers = q.send_with_sequence_numbers(vec![later]).await.unwrap();
    assert_eq!(q.queue_depth(MDM).await.unwrap().scheduled, 1);
    assert_eq!(q.queue_depth(ERP).await.unwrap().scheduled, 1);
    assert!(q.receive(MDM, 1, NO_WAIT).await.unwrap().is_empty());
    assert!(q.cancel_scheduled("contacts", numbers[0]).await.unwrap());
    assert_eq!(q.queue_depth(MDM).await.unwrap(), QueueDepth::default());
    assert_eq!(q.queue_depth(ERP).await.unwrap(), QueueDepth::default());
}

#[tokio::test]
async fn a_waiting_receiver_wakes_when_the_topic_gets_a_message() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[]);
    contacts(&q).await;
    let receiver = {
        let q = q.clone();
        tokio::spawn(async move { q.receive(MDM, 1, Duration::from_secs(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    q.send(vec![message("contacts", "wake", &[])]).await.unwrap();
    let got = receiver.await.unwrap().unwrap();
    assert_eq!(got[0].body, b"wake");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn topics_subscriptions_rules_and_messages_survive_a_reopen() {
    let dir = TempDir::new().unwrap();
    {
        let q = open(&dir, &[]);
        q.ensure_topic(TopicSettings {
            name: "contacts".into(),
            subscriptions: vec![
                SubscriptionSettings {
                    max_delivery_count: 3,
                    default_ttl: Some(Duration::from_secs(600)),
                    rules: vec![sql_rule("creates", "MessageName = 'Create'")],
                    ..SubscriptionSettings::new("mdm")
                },
                SubscriptionSettings::new("erp"),
            ],
        })
        .await
        .unwrap();
        q.send(vec![message("contacts", "before", &[("MessageName", "Create")])])
            .await
            .unwrap();
    }
    let q = open(&dir, &[]);
    let topics = q.topics();
    assert_eq!(topics.len(), 1);
    let mdm = &topics[0].subscriptions[1];
    assert_eq!(mdm.name, "mdm");
    assert_eq!(mdm.max_delivery_count, 3);
    assert_eq!(mdm.default_ttl, Some(Duration::from_secs(600)));
    assert_eq!(mdm.rules, vec![sql_rule("creates", "MessageName = 'Create'")]);
    assert_eq!(topics[0].subscriptions[0].rules, vec![Rule::default_rule()]);
    assert_eq!(bodies(&q, MDM).await, vec!["before"]);

    q.send(vec![
        message("contacts", "update", &[("MessageName", "Update")]),
        message("contacts", "create", &[("MessageName", "Create")]),
    ])
    .await
    .unwrap();
    assert_eq!(
        bodies(&q, MDM).await,
        vec!["before", "create"],
        "filters compiled again on open"
    );
    let numbers: Vec<i64> = q
        .peek(ERP, 10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.sequence_number)
        .collect();
    assert_eq!(numbers, vec![1, 2, 3], "the topic's counter continues");
}

#[tokio::test]
async fn names_keep_queues_topics_and_subscriptions_apart() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[QueueSettings::new("orders")]);
    contacts(&q).await;
    assert!(matches!(
        q.ensure_topic(TopicSettings::new("orders")).await,
        Err(TopicError::NameTaken(_))
    ));
    assert!(q.ensure_queue(QueueSettings::new("contacts")).await.is_err());
    assert!(q.ensure_queue(QueueSettings::new(MDM)).await.is_err());
    let direct = q.send(vec![message(MDM, "x", &[])]).await.unwrap_err();
    assert!(direct.to_string().contains("send to its topic `contacts`"), "{direct}");
    assert!(matches!(
        q.ensure_topic(TopicSettings::new("a/Subscriptions/b")).await,
        Err(TopicError::Invalid(_))
    ));
    assert!(matches!(
        q.ensure_subscription("contacts", SubscriptionSettings::new("a/b"))
            .await,
        Err(TopicError::Invalid(_))
    ));
    assert!(matches!(
        q.ensure_subscription("nope", SubscriptionSettings::new("a")).await,
        Err(TopicError::UnknownTopic(_))
    ));
    assert!(q.has_subscription_path(MDM));
    assert!(!q.has_queue(MDM), "a subscription is not listed as a queue");
    drop(q);
    let clash = EmbeddedQueue::open(&dir.path().join("queue.db"), &[QueueSettings::new("contacts")])
        .err()
        .expect("a configured queue named like a stored topic is refused");
    assert!(format!("{clash:#}").contains("rename the queue"), "{clash:#}");
}

#[tokio::test]
async fn deleting_subscriptions_and_topics_removes_their_messages() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[]);
    contacts(&q).await;
    q.send(vec![message("contacts", "x", &[])]).await.unwrap();
    assert!(q.delete_subscription("contacts", "mdm").await.unwrap());
    assert!(!q.delete_subscription("contacts", "mdm").await.unwrap());
    assert!(matches!(
        q.receive(MDM, 1, NO_WAIT).await,
        Err(TransportError::UnknownQueue(_))
    ));
    // Created again, it starts empty.
    q.ensure_subscription("contacts", SubscriptionSettings::new("mdm"))
        .await
        .unwrap();
    assert_eq!(q.queue_depth(MDM).await.unwrap(), QueueDepth::default());

    assert!(q.delete_topic("contacts").await.unwrap());
    assert!(!q.has_topic("contacts"));
    assert!(q.topics().is_empty());
    assert!(matches!(
        q.send(vec![message("contacts", "x", &[])]).await,
        Err(TransportError::UnknownQueue(_))
    ));
    drop(q);
    let q = open(&dir, &[]);
    assert!(q.topics().is_empty(), "deleted for good");
    q.ensure_topic(TopicSettings {
        name: "contacts".into(),
        subscriptions: vec![SubscriptionSettings::new("erp")],
    })
    .await
    .unwrap();
    assert_eq!(
        q.queue_depth(ERP).await.unwrap(),
        QueueDepth::default(),
        "no old messages"
    );
}

/// A database written by schema version 2 gets the topic tables and keeps its messages.
#[tokio::test]
async fn opens_and_upgrades_a_version_2_database() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("queue.db");
    super::tests::write_version_2_database(&path, "erp", "kept");

    let q = open(&dir, &[QueueSettings::new("erp")]);
    assert_eq!(bodies(&q, "erp").await, vec!["kept"]);
    contacts(&q).await;
    q.send(vec![message("contacts", "x", &[])]).await.unwrap();
    assert_eq!(bodies(&q, MDM).await, vec!["x"]);
    drop(q);
    super::tests::assert_current_schema(&path);
}

#[test]
fn topic_settings_read_from_config() {
    let json = r#"{
        "name": "contacts",
        "subscriptions": [
            { "name": "mdm", "lock-duration-ms": 5000, "max-delivery-count": 3 },
            { "name": "erp", "default-ttl-ms": 60000,
              "rules": [ { "name": "creates", "filter": { "sql": "MessageName = 'Create'" } },
                         { "name": "all", "filter": "true" } ] }
        ]
    }"#;
    let topic: TopicSettings = serde_json::from_str(json).unwrap();
    assert_eq!(topic.subscriptions[0].lock_duration, Duration::from_secs(5));
    assert_eq!(topic.subscriptions[0].max_delivery_count, 3);
    assert!(
        topic.subscriptions[0].rules.is_empty(),
        "no rules: $Default when created"
    );
    assert_eq!(topic.subscriptions[1].default_ttl, Some(Duration::from_secs(60)));
    assert_eq!(
        topic.subscriptions[1].rules,
        vec![
            sql_rule("creates", "MessageName = 'Create'"),
            Rule {
                name: "all".into(),
                filter: RuleFilter::True
            }
        ]
    );
    assert!(serde_json::from_str::<TopicSettings>(r#"{"name":"t","other":1}"#).is_err());
}

#[tokio::test]
async fn a_topic_is_described_with_its_messages_counted_once() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[]);
    contacts(&q).await;
    // A topic whose name extends `contacts` must not be counted with it.
    q.ensure_topic(TopicSettings {
        name: "contacts2".into(),
        subscriptions: vec![SubscriptionSettings::new("all")],
    })
    .await
    .unwrap();
    let mut later = message("contacts", "later", &[]);
    later.message.scheduled_enqueue_time = Some(SystemTime::now() + Duration::from_secs(3600));
    q.send(vec![
        message("contacts", "12345", &[]),
        later,
        message("contacts2", "xx", &[]),
    ])
    .await
    .unwrap();
    let info = q.describe_topic("contacts").await.unwrap().expect("the topic exists");
    assert_eq!(info.settings.subscriptions.len(), 2);
    assert_eq!(info.size_in_bytes, 10, "`12345` and `later`, once each");
    assert_eq!(info.scheduled, 1);
    assert_eq!(q.describe_topic("missing").await.unwrap(), None);
}

#[tokio::test]
async fn a_subscription_update_keeps_its_rules_and_messages() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[]);
    contacts(&q).await;
    q.send(vec![message("contacts", "kept", &[])]).await.unwrap();
    let changed = SubscriptionSettings {
        lock_duration: Duration::from_secs(45),
        max_delivery_count: 2,
        default_ttl: Some(Duration::from_secs(60)),
        ..SubscriptionSettings::new("mdm")
    };
    q.update_subscription("contacts", changed).await.unwrap();
    let mdm = q.subscription("contacts", "mdm").unwrap();
    assert_eq!(
        (mdm.lock_duration, mdm.max_delivery_count, mdm.default_ttl),
        (Duration::from_secs(45), 2, Some(Duration::from_secs(60)))
    );
    assert_eq!(mdm.rules, vec![Rule::default_rule()]);
    assert_eq!(bodies(&q, MDM).await, ["kept"]);
    let missing = q
        .update_subscription("contacts", SubscriptionSettings::new("nobody"))
        .await
        .unwrap_err();
    assert!(matches!(missing, TopicError::UnknownSubscription { .. }), "{missing}");
}

#[tokio::test]
async fn a_rule_is_replaced_in_one_step() {
    let dir = TempDir::new().unwrap();
    let q = open(&dir, &[]);
    contacts(&q).await;
    q.replace_rule("contacts", "mdm", sql_rule(DEFAULT_RULE, "kind = 'a'"))
        .await
        .unwrap();
    assert_eq!(
        q.rules("contacts", "mdm").unwrap(),
        [sql_rule(DEFAULT_RULE, "kind = 'a'")]
    );
    q.send(vec![
        message("contacts", "b", &[("kind", "b")]),
        message("contacts", "a", &[("kind", "a")]),
    ])
    .await
    .unwrap();
    assert_eq!(bodies(&q, MDM).await, ["a"]);
    let missing = q
        .replace_rule("contacts", "mdm", sql_rule("other", "1=1"))
        .await
        .unwrap_err();
    assert!(matches!(missing, TopicError::UnknownRule { .. }), "{missing}");
    let bad = q
        .replace_rule("contacts", "mdm", sql_rule(DEFAULT_RULE, "kind = "))
        .await
        .unwrap_err();
    assert!(matches!(bad, TopicError::Filter { .. }), "{bad}");
    assert_eq!(
        q.rules("contacts", "mdm").unwrap(),
        [sql_rule(DEFAULT_RULE, "kind = 'a'")],
        "kept"
    );
}
