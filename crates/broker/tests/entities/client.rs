//! sagahost's own entity-management client (`EntityClient`, behind `sagahost entities apply`)
//! against the endpoint: each `ensure_…` creates what is missing once and then finds it there.

use std::time::Duration;

use sagahost_transport::embedded::{QueueSettings, Rule, SubscriptionSettings};
use sagahost_transport::filter::{CorrelationFilter, RuleFilter};
use sagahost_transport::servicebus::entities::{Ensured, EntityClient};

use crate::support::{Broker, element, titles};

fn entity_client(broker: &Broker) -> EntityClient {
    EntityClient::new(&broker.connection_string(), Some(&format!("http://{}", broker.http))).unwrap()
}

#[tokio::test]
async fn ensures_topics_subscriptions_and_rules_once() {
    let broker = Broker::start().await;
    let entities = entity_client(&broker);
    let http = broker.http_client();

    assert_eq!(entities.ensure_topic("contacts").await.unwrap(), Ensured::Created);
    assert_eq!(entities.ensure_topic("contacts").await.unwrap(), Ensured::Existed);

    let mdm = SubscriptionSettings {
        lock_duration: Duration::from_millis(45_500),
        max_delivery_count: 4,
        default_ttl: Some(Duration::from_secs(3_600)),
        rules: vec![Rule {
            name: "creates".into(),
            filter: RuleFilter::Sql("MessageName = 'Create' AND n < 3".into()),
        }],
        ..SubscriptionSettings::new("mdm")
    };
    assert_eq!(
        entities.ensure_subscription("contacts", &mdm).await.unwrap(),
        Ensured::Created
    );
    let got = http.get("/contacts/Subscriptions/mdm").await;
    assert_eq!(element(&got.body, "LockDuration"), Some("PT45.5S"), "{}", got.body);
    assert_eq!(element(&got.body, "MaxDeliveryCount"), Some("4"));
    assert_eq!(element(&got.body, "DefaultMessageTimeToLive"), Some("PT1H"));
    let rules = http.get("/contacts/Subscriptions/mdm/Rules").await;
    assert_eq!(titles(&rules.body), ["creates"], "the first rule instead of $Default");

    let changed = SubscriptionSettings {
        max_delivery_count: 9,
        ..mdm.clone()
    };
    assert_eq!(
        entities.ensure_subscription("contacts", &changed).await.unwrap(),
        Ensured::Existed
    );
    let got = http.get("/contacts/Subscriptions/mdm").await;
    assert_eq!(element(&got.body, "MaxDeliveryCount"), Some("4"), "left as it was");

    let erp = RuleFilter::Correlation(CorrelationFilter {
        correlation_id: Some("c&1".into()),
        subject: Some("Create".into()),
        properties: vec![("region".into(), "eu".into())],
        ..CorrelationFilter::default()
    });
    for (name, filter) in [
        ("creates", &mdm.rules[0].filter),
        ("erp", &erp),
        ("always", &RuleFilter::True),
        ("never", &RuleFilter::False),
    ] {
        let expected = if name == "creates" {
            Ensured::Existed
        } else {
            Ensured::Created
        };
        assert_eq!(
            entities.ensure_rule("contacts", "mdm", name, filter).await.unwrap(),
            expected,
            "{name}"
        );
        assert_eq!(
            entities.ensure_rule("contacts", "mdm", name, filter).await.unwrap(),
            Ensured::Existed,
            "{name} again"
        );
    }
    let rules = http.get("/contacts/Subscriptions/mdm/Rules").await;
    assert_eq!(titles(&rules.body), ["creates", "erp", "always", "never"]);
    let correlation = http.get("/contacts/Subscriptions/mdm/Rules/erp").await;
    assert_eq!(
        element(&correlation.body, "CorrelationId"),
        Some("c&amp;1"),
        "{}",
        correlation.body
    );
    assert_eq!(element(&correlation.body, "Label"), Some("Create"));

    let plain = SubscriptionSettings::new("erp");
    assert_eq!(
        entities.ensure_subscription("contacts", &plain).await.unwrap(),
        Ensured::Created
    );
    let rules = http.get("/contacts/Subscriptions/erp/Rules").await;
    assert_eq!(titles(&rules.body), ["$Default"]);
    broker.stop().await;
}

#[tokio::test]
async fn a_refusal_names_the_entity_and_the_reason() {
    let broker = Broker::start().await;
    let entities = entity_client(&broker);
    let missing = entities
        .ensure_subscription("nowhere", &SubscriptionSettings::new("mdm"))
        .await
        .unwrap_err()
        .to_string();
    assert!(missing.contains("subscription `mdm` of topic `nowhere`"), "{missing}");
    assert!(missing.contains("does not exist"), "{missing}");

    entities.ensure_topic("contacts").await.unwrap();
    entities
        .ensure_subscription("contacts", &SubscriptionSettings::new("mdm"))
        .await
        .unwrap();
    let bad = entities
        .ensure_rule("contacts", "mdm", "bad", &RuleFilter::Sql("kind = ".into()))
        .await
        .unwrap_err()
        .to_string();
    assert!(bad.contains("rule `bad`") && bad.contains("400"), "{bad}");
    let queue = QueueSettings::new("contacts");
    let taken = entities.ensure_queue(&queue).await.unwrap_err().to_string();
    assert!(
        taken.contains("queue `contacts`") && taken.contains("another kind"),
        "{taken}"
    );
    entities.ensure_queue(&QueueSettings::new("orders")).await.unwrap();
    let taken = entities.ensure_topic("orders").await.unwrap_err().to_string();
    assert!(
        taken.contains("topic `orders`") && taken.contains("another kind"),
        "{taken}"
    );
    broker.stop().await;
}
