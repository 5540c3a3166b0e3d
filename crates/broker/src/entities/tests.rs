use std::time::Duration;

use sagahost_transport::embedded::{QueueDepth, QueueInfo, QueueSettings, Rule, SubscriptionSettings, TopicError};
use sagahost_transport::filter::{CorrelationFilter, RuleFilter};

use super::atom::{self, Description, Entry, Incoming};
use super::names::{self, NameKind};
use super::queue_description::QueueDescription;
use super::rule_description::RuleDescription;
use super::target::{self, Entity, Listing, Page, Target};
use super::xsd;
use crate::BrokerConfig;

/// The body `ServiceBusAdministrationClient.create_queue` (Python, 7.15.0) sends.
const PYTHON_CREATE: &str = r#"<?xml version='1.0' encoding='utf-8'?>
<ns0:entry xmlns:ns0="http://www.w3.org/2005/Atom" xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"><ns0:content type="application/xml"><QueueDescription><LockDuration>PT45S</LockDuration><DefaultMessageTimeToLive>PT1H</DefaultMessageTimeToLive><DeadLetteringOnMessageExpiration>true</DeadLetteringOnMessageExpiration><MaxDeliveryCount>3</MaxDeliveryCount></QueueDescription></ns0:content></ns0:entry>"#;

fn queue_of(body: &str) -> super::queue_description::QueueDescriptionUpdate {
    match atom::parse_entry(body.as_bytes()).expect("parses") {
        Incoming::Queue(queue) => queue,
        other => panic!("expected a queue, got {other:?}"),
    }
}

#[test]
fn durations_read_and_write_as_dotnet_timespans() {
    let cases = [
        ("PT30S", Some(Duration::from_secs(30))),
        ("PT1M", Some(Duration::from_secs(60))),
        ("PT1H30M", Some(Duration::from_secs(5_400))),
        ("P14D", Some(Duration::from_secs(14 * 86_400))),
        ("P1DT2H3M4.5S", Some(Duration::new(93_784, 500_000_000))),
        ("P1W", Some(Duration::from_secs(7 * 86_400))),
        ("PT0.25S", Some(Duration::from_millis(250))),
        (xsd::NEVER, None),
        ("P10675199DT2H48M5.477580S", None),
    ];
    for (text, expected) in cases {
        assert_eq!(xsd::parse_duration(text), Ok(expected), "{text}");
    }
    for bad in [
        "", "P", "PT", "30S", "PT30", "P1Y", "P2M", "PT1.5M", "-PT1S", "PTxS", "P1DT",
    ] {
        assert!(xsd::parse_duration(bad).is_err(), "{bad} should be refused");
    }
    assert!(xsd::parse_duration("P1Y").unwrap_err().contains("years or months"));
    let written = [
        (Duration::from_secs(30), "PT30S"),
        (Duration::from_secs(60), "PT1M"),
        (Duration::from_secs(90), "PT1M30S"),
        (Duration::from_secs(86_400), "P1D"),
        (Duration::from_secs(93_784), "P1DT2H3M4S"),
        (Duration::from_millis(500), "PT0.5S"),
        (Duration::ZERO, "PT0S"),
    ];
    for (duration, text) in written {
        assert_eq!(xsd::format_duration(Some(duration)), text);
        assert_eq!(xsd::parse_duration(text), Ok(Some(duration)), "round trip of {text}");
    }
    assert_eq!(xsd::format_duration(None), xsd::NEVER);
}

#[test]
fn times_are_written_in_utc() {
    let time = std::time::UNIX_EPOCH + Duration::from_millis(1_796_547_346_123);
    assert_eq!(xsd::format_time(Some(time)), "2026-12-06T08:55:46.123Z");
    assert_eq!(
        xsd::format_time(Some(std::time::UNIX_EPOCH)),
        "1970-01-01T00:00:00.000Z"
    );
    assert_eq!(xsd::format_time(None), xsd::UNKNOWN_TIME);
}

#[test]
fn names_follow_the_service_bus_rules() {
    for good in ["orders", "a", "orders/eu-west.1", "Q_2", &"q".repeat(260)] {
        assert_eq!(names::check(NameKind::Path, good), Ok(()), "{good}");
    }
    let refused = [
        ("", "empty"),
        (&*"q".repeat(261), "261 characters"),
        ("$Resources", "reserved"),
        ("/orders", "start and end"),
        ("orders/", "start and end"),
        ("-orders", "start and end"),
        ("a..b", ".."),
        ("a//b", "empty path segment"),
        ("a b", "' '"),
        ("a?b", "'?'"),
        ("caf\u{e9}", "'\u{e9}'"),
    ];
    for (name, reason) in refused {
        let error = names::check(NameKind::Path, name).expect_err(name);
        assert!(error.contains(reason), "{name}: {error}");
    }
    assert!(names::check(NameKind::Segment, "a/b").is_err());
    assert!(names::check(NameKind::Segment, &"s".repeat(51)).is_err());
    assert!(names::check(NameKind::Segment, &"s".repeat(50)).is_ok());
}

#[test]
fn paths_name_entities_and_lists() {
    let entity = |name: &str| Target::Entity(Entity::QueueOrTopic(name.into()));
    assert_eq!(target::parse_path("/orders"), Ok(entity("orders")));
    assert_eq!(target::parse_path("/orders/eu"), Ok(entity("orders/eu")));
    assert_eq!(target::parse_path("/orders%2Feu"), Ok(entity("orders/eu")));
    assert_eq!(target::parse_path("/$namespaceinfo"), Ok(Target::NamespaceInfo));
    assert_eq!(
        target::parse_path("/$Resources/queues"),
        Ok(Target::List(Listing::Queues))
    );
    assert_eq!(
        target::parse_path("/%24Resources/Topics"),
        Ok(Target::List(Listing::Topics))
    );
    assert_eq!(
        target::parse_path("/t/Subscriptions"),
        Ok(Target::List(Listing::Subscriptions { topic: "t".into() }))
    );
    assert_eq!(
        target::parse_path("/a/b/subscriptions/s"),
        Ok(Target::Entity(Entity::Subscription {
            topic: "a/b".into(),
            subscription: "s".into()
        }))
    );
    assert_eq!(
        target::parse_path("/t/Subscriptions/s/Rules"),
        Ok(Target::List(Listing::Rules {
            topic: "t".into(),
            subscription: "s".into()
        }))
    );
    let rule = Entity::Rule {
        topic: "t".into(),
        subscription: "s".into(),
        rule: "r".into(),
    };
    assert_eq!(rule.path(), "t/Subscriptions/s/Rules/r");
    assert_eq!(
        target::parse_path("/t/Subscriptions/s/Rules/r"),
        Ok(Target::Entity(rule))
    );
    for bad in [
        "/",
        "/$Resources/things",
        "/t/Subscriptions/s/x",
        "/t/Subscriptions/s/Rules/r/x",
        "/a..b",
        "/%FF",
    ] {
        assert!(target::parse_path(bad).is_err(), "{bad}");
    }
}

#[test]
fn pages_read_skip_and_top() {
    assert_eq!(target::parse_page(None), Ok(Page::default()));
    assert_eq!(
        target::parse_page(Some("$skip=5&$top=2&api-version=2024-05")),
        Ok(Page { skip: 5, top: 2 })
    );
    assert_eq!(target::parse_page(Some("%24skip=1")), Ok(Page { skip: 1, top: 100 }));
    for bad in ["$top=0", "$top=101", "$skip=-1", "$skip=x"] {
        assert!(target::parse_page(Some(bad)).is_err(), "{bad}");
    }
}

#[test]
fn a_python_create_body_sets_the_stored_settings() {
    let settings = queue_of(PYTHON_CREATE).apply(QueueSettings::new("q")).unwrap();
    assert_eq!(
        settings,
        QueueSettings {
            name: "q".into(),
            lock_duration: Duration::from_secs(45),
            max_delivery_count: 3,
            default_ttl: Some(Duration::from_secs(3_600)),
            requires_session: false,
        }
    );
    let empty = PYTHON_CREATE.replace(
        "<LockDuration>PT45S</LockDuration><DefaultMessageTimeToLive>PT1H</DefaultMessageTimeToLive>",
        "<DefaultMessageTimeToLive>P10675199DT2H48M5.4775807S</DefaultMessageTimeToLive>",
    );
    let base = QueueSettings {
        default_ttl: Some(Duration::from_secs(1)),
        ..QueueSettings::new("q")
    };
    let kept = queue_of(&empty).apply(base).unwrap();
    assert_eq!(kept.lock_duration, Duration::from_secs(30), "left out: the base stays");
    assert_eq!(kept.default_ttl, None, "TimeSpan.MaxValue is no time to live");
}

#[test]
fn unsupported_and_invalid_settings_are_refused_by_name() {
    let with = |element: &str| PYTHON_CREATE.replace("<MaxDeliveryCount>3</MaxDeliveryCount>", element);
    let refused = [
        (
            "<RequiresDuplicateDetection>true</RequiresDuplicateDetection>",
            "RequiresDuplicateDetection",
        ),
        ("<ForwardTo>elsewhere</ForwardTo>", "ForwardTo"),
        ("<Status>Disabled</Status>", "Status"),
        ("<MaxDeliveryCount>0</MaxDeliveryCount>", "MaxDeliveryCount"),
        ("<MaxDeliveryCount>many</MaxDeliveryCount>", "MaxDeliveryCount"),
        ("<RequiresSession>maybe</RequiresSession>", "RequiresSession"),
    ];
    for (element, name) in refused {
        let error = queue_of(&with(element)).apply(QueueSettings::new("q")).unwrap_err();
        assert_eq!(error.status.as_u16(), 400);
        assert!(error.detail.contains(name), "{element}: {}", error.detail);
    }
    for lock in ["PT0S", "PT6M", "P1Y"] {
        let body = PYTHON_CREATE.replace("PT45S", lock);
        let error = queue_of(&body).apply(QueueSettings::new("q")).unwrap_err();
        assert!(error.detail.contains("LockDuration"), "{lock}: {}", error.detail);
    }
    let accepted = with("<RequiresSession>false</RequiresSession><ForwardTo/><Status>Active</Status>");
    assert!(queue_of(&accepted).apply(QueueSettings::new("q")).is_ok());
}

#[test]
fn requires_session_is_stored_on_create_and_cannot_change_on_update() {
    let sessions = queue_of(&PYTHON_CREATE.replace(
        "<MaxDeliveryCount>3</MaxDeliveryCount>",
        "<RequiresSession>true</RequiresSession>",
    ));
    let created = sessions.apply(QueueSettings::new("q")).unwrap();
    assert!(created.requires_session);
    assert!(
        sessions.apply_update(created.clone()).unwrap().requires_session,
        "unchanged is fine"
    );
    let error = sessions.apply_update(QueueSettings::new("q")).unwrap_err();
    assert_eq!(error.status.as_u16(), 400);
    assert!(error.detail.contains("RequiresSession"), "{}", error.detail);
}

#[test]
fn bodies_with_dtds_other_roots_or_broken_xml_are_refused() {
    let doctype = PYTHON_CREATE.replace(
        "<ns0:entry",
        "<!DOCTYPE entry [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><ns0:entry",
    );
    let cases = [
        (doctype.as_str(), "DTD"),
        ("<QueueDescription/>", "root element is <QueueDescription>"),
        ("<entry><content>", "ends inside an element"),
        ("", "no XML element"),
        ("<entry><content/></entry>", "exactly one"),
        (
            "<entry><content><QueueDescription><LockDuration>&x;</LockDuration></QueueDescription></content></entry>",
            "x",
        ),
    ];
    for (body, reason) in cases {
        let error = atom::parse_entry(body.as_bytes()).expect_err(body);
        assert_eq!(error.status.as_u16(), 400);
        assert!(error.detail.contains(reason), "{body}: {}", error.detail);
    }
    assert!(atom::parse_entry(b"\xff\xfe").is_err());
    let topic = r#"<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml"><TopicDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"><MaxSizeInMegabytes>1024</MaxSizeInMegabytes></TopicDescription></content></entry>"#;
    assert!(matches!(atom::parse_entry(topic.as_bytes()), Ok(Incoming::Topic(_))));
}

#[test]
fn a_queue_entry_carries_the_counts_in_their_namespaces() {
    let info = QueueInfo {
        settings: QueueSettings {
            default_ttl: None,
            ..QueueSettings::new("orders")
        },
        created_at: None,
        updated_at: None,
        depth: QueueDepth {
            active: 2,
            scheduled: 1,
            dead_lettered: 1,
        },
        size_in_bytes: 42,
    };
    let description = QueueDescription::new(&info, &BrokerConfig::default());
    let entry = Entry::new(
        "orders",
        "http://127.0.0.1/orders?api-version=2021-05".into(),
        "127.0.0.1",
        (xsd::UNKNOWN_TIME.into(), xsd::UNKNOWN_TIME.into()),
        Description::Queue(Box::new(description)),
    );
    let xml = entry.to_xml().unwrap();
    for expected in [
        r#"<entry xmlns="http://www.w3.org/2005/Atom">"#,
        r#"<title type="text">orders</title>"#,
        r#"<content type="application/xml"><QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect""#,
        "<LockDuration>PT30S</LockDuration>",
        "<DefaultMessageTimeToLive>P10675199DT2H48M5.4775807S</DefaultMessageTimeToLive>",
        "<MessageCount>4</MessageCount>",
        "<SizeInBytes>42</SizeInBytes>",
        r#"<CountDetails xmlns:d2p1="http://schemas.microsoft.com/netservices/2011/06/servicebus"><d2p1:ActiveMessageCount>2</d2p1:ActiveMessageCount><d2p1:DeadLetterMessageCount>1</d2p1:DeadLetterMessageCount><d2p1:ScheduledMessageCount>1</d2p1:ScheduledMessageCount>"#,
        "<MaxMessageSizeInKilobytes>16384</MaxMessageSizeInKilobytes>",
    ] {
        assert!(xml.contains(expected), "{expected} missing from {xml}");
    }
}

/// The body the Python SDK (7.15.0) sends for `create_rule`; `FILTER` stands for the filter and
/// the action.
const PYTHON_RULE: &str = r#"<?xml version='1.0' encoding='utf-8'?>
<ns0:entry xmlns:ns0="http://www.w3.org/2005/Atom" xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><ns0:content type="application/xml"><RuleDescription>FILTER<Name>r1</Name></RuleDescription></ns0:content></ns0:entry>"#;

/// The rule a Python body with `filter` asks for, with the empty action the SDK sends unless
/// `filter` has an action of its own.
fn rule_of(filter: &str) -> Result<Rule, super::errors::EntityError> {
    let action = if filter.contains("<Action") {
        ""
    } else {
        r#"<Action xsi:type="EmptyRuleAction" />"#
    };
    let body = PYTHON_RULE.replace("FILTER", &format!("{filter}{action}"));
    match atom::parse_entry(body.as_bytes()).expect("parses") {
        Incoming::Rule(rule) => rule.to_rule(Some("from-path")),
        other => panic!("expected a rule, got {other:?}"),
    }
}

#[test]
fn python_rule_bodies_become_filters() {
    let sql = rule_of(
        r#"<Filter xsi:type="SqlFilter"><SqlExpression>a = 1</SqlExpression><CompatibilityLevel>20</CompatibilityLevel><RequiresPreprocessing>true</RequiresPreprocessing></Filter>"#,
    )
    .unwrap();
    assert_eq!(sql.name, "from-path", "the path names the rule");
    assert_eq!(sql.filter, RuleFilter::Sql("a = 1".into()));
    let correlation = rule_of(
        r#"<Filter xsi:type="CorrelationFilter"><CorrelationId>c</CorrelationId><Label>L</Label><Properties><KeyValueOfstringanyType><Key>k</Key><Value xsi:type="d6p1:string" xmlns:d6p1="http://www.w3.org/2001/XMLSchema">v</Value></KeyValueOfstringanyType><KeyValueOfstringanyType><Key>n</Key><Value xsi:type="d6p1:int" xmlns:d6p1="http://www.w3.org/2001/XMLSchema">7</Value></KeyValueOfstringanyType></Properties></Filter>"#,
    )
    .unwrap();
    assert_eq!(
        correlation.filter,
        RuleFilter::Correlation(CorrelationFilter {
            correlation_id: Some("c".into()),
            subject: Some("L".into()),
            properties: vec![("k".into(), "v".into()), ("n".into(), "7".into())],
            ..CorrelationFilter::default()
        })
    );
    let always = rule_of(r#"<Filter xsi:type="TrueFilter"><SqlExpression>1=1</SqlExpression></Filter>"#).unwrap();
    assert_eq!(always.filter, RuleFilter::True);
    let never = rule_of(r#"<Filter xsi:type="FalseFilter"><SqlExpression>1&gt;1</SqlExpression></Filter>"#).unwrap();
    assert_eq!(never.filter, RuleFilter::False);
    assert_eq!(
        rule_of("").unwrap().filter,
        RuleFilter::True,
        "no filter: true, as in Service Bus"
    );
}

#[test]
fn rule_actions_parameters_and_unknown_kinds_are_refused_by_name() {
    let sql = r#"<Filter xsi:type="SqlFilter"><SqlExpression>a = 1</SqlExpression></Filter>"#;
    let cases = [
        (
            format!(
                r#"{sql}<Action xsi:type="SqlRuleAction"><SqlExpression>SET a = 2</SqlExpression></Action>"#
            ),
            "RuleDescription/Action: filter error: rule actions are not supported",
        ),
        (
            r#"<Filter xsi:type="SqlFilter"><SqlExpression>a = @p</SqlExpression><Parameters><KeyValueOfstringanyType><Key>@p</Key><Value>x</Value></KeyValueOfstringanyType></Parameters></Filter>"#.to_owned(),
            "Filter/Parameters",
        ),
        (r#"<Filter xsi:type="Nonsense"/>"#.to_owned(), "`Nonsense` is not a filter type"),
        ("<Filter><SqlExpression>1=1</SqlExpression></Filter>".to_owned(), "no i:type"),
        (
            format!(r#"{sql}<Action xsi:type="Shout"/>"#),
            "`Shout` is not a rule action type",
        ),
    ];
    for (filter, reason) in cases {
        let error = rule_of(&filter).unwrap_err();
        assert_eq!(error.status.as_u16(), 400);
        assert!(error.detail.contains(reason), "{filter}: {}", error.detail);
    }
}

#[test]
fn a_javascript_subscription_body_with_a_default_rule_sets_settings_and_the_rule() {
    let body = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><entry xmlns="http://www.w3.org/2005/Atom"><updated>2026-12-06T10:28:44.622Z</updated><content type="application/xml"><SubscriptionDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><LockDuration>PT45S</LockDuration><DefaultMessageTimeToLive>PT1H</DefaultMessageTimeToLive><DefaultRuleDescription><Filter p4:type="SqlFilter" xmlns:p4="http://www.w3.org/2001/XMLSchema-instance"><SqlExpression>a = 1</SqlExpression></Filter><Action p4:type="EmptyRuleAction" xmlns:p4="http://www.w3.org/2001/XMLSchema-instance"/><Name>d</Name></DefaultRuleDescription><MaxDeliveryCount>3</MaxDeliveryCount></SubscriptionDescription></content></entry>"#;
    let Incoming::Subscription(description) = atom::parse_entry(body.as_bytes()).unwrap() else {
        panic!("expected a subscription");
    };
    let settings = description.apply(SubscriptionSettings::new("s")).unwrap();
    assert_eq!(
        (
            settings.lock_duration,
            settings.max_delivery_count,
            settings.default_ttl
        ),
        (Duration::from_secs(45), 3, Some(Duration::from_secs(3_600)))
    );
    let rule = description.default_rule().unwrap().expect("a default rule");
    assert_eq!(
        (rule.name.as_str(), rule.filter),
        ("d", RuleFilter::Sql("a = 1".into()))
    );
}

#[test]
fn topic_descriptions_refuse_what_a_topic_here_cannot_do() {
    let topic = |elements: &str| {
        let body = format!(
            r#"<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml"><TopicDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect">{elements}</TopicDescription></content></entry>"#
        );
        match atom::parse_entry(body.as_bytes()).unwrap() {
            Incoming::Topic(topic) => topic.check(),
            other => panic!("expected a topic, got {other:?}"),
        }
    };
    assert!(
        topic("<MaxSizeInMegabytes>2048</MaxSizeInMegabytes><EnablePartitioning>false</EnablePartitioning>").is_ok()
    );
    assert!(
        topic(&format!(
            "<DefaultMessageTimeToLive>{}</DefaultMessageTimeToLive>",
            xsd::NEVER
        ))
        .is_ok()
    );
    for (elements, reason) in [
        (
            "<DefaultMessageTimeToLive>PT1H</DefaultMessageTimeToLive>",
            "on its subscriptions",
        ),
        (
            "<RequiresDuplicateDetection>true</RequiresDuplicateDetection>",
            "RequiresDuplicateDetection",
        ),
        ("<Status>Disabled</Status>", "TopicDescription/Status"),
    ] {
        let error = topic(elements).unwrap_err();
        assert!(error.detail.contains(reason), "{elements}: {}", error.detail);
    }
}

#[test]
fn rules_are_written_with_their_filter_type_and_typed_values() {
    let correlation = Rule {
        name: "r".into(),
        filter: RuleFilter::Correlation(CorrelationFilter {
            to: Some("mdm".into()),
            properties: vec![("region".into(), "eu".into())],
            ..CorrelationFilter::default()
        }),
    };
    let xml = quick_xml::se::to_string(&RuleDescription::new(&correlation)).unwrap();
    assert!(
        xml.contains(r#"<Filter i:type="CorrelationFilter"><To>mdm</To><Properties>"#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<Value i:type="d6p1:string" xmlns:d6p1="http://www.w3.org/2001/XMLSchema">eu</Value>"#),
        "{xml}"
    );
    assert!(xml.contains(r#"<Action i:type="EmptyRuleAction"/>"#), "{xml}");
    let always = quick_xml::se::to_string(&RuleDescription::new(&Rule::default_rule())).unwrap();
    assert!(
        always.contains(r#"<Filter i:type="TrueFilter"><SqlExpression>1=1</SqlExpression><CompatibilityLevel>20</CompatibilityLevel></Filter>"#),
        "{always}"
    );
    assert!(always.ends_with("<Name>$Default</Name></RuleDescription>"), "{always}");
}

#[test]
fn list_paths_may_end_in_a_slash_and_default_rules_are_addressable() {
    assert_eq!(
        target::parse_path("/t/Subscriptions/"),
        Ok(Target::List(Listing::Subscriptions { topic: "t".into() }))
    );
    assert_eq!(
        target::parse_path("/t/Subscriptions/s/Rules/"),
        Ok(Target::List(Listing::Rules {
            topic: "t".into(),
            subscription: "s".into()
        }))
    );
    assert_eq!(
        target::parse_path("/t/subscriptions/s/rules/%24Default"),
        Ok(Target::Entity(Entity::Rule {
            topic: "t".into(),
            subscription: "s".into(),
            rule: "$Default".into()
        }))
    );
    assert!(target::parse_path("/t/Subscriptions/s/Rules/$Other").is_err());
    assert!(
        target::parse_path("/t/Subscriptions/$Default").is_err(),
        "only a rule may be $Default"
    );
}

#[test]
fn topic_failures_answer_as_service_bus_does() {
    let status = |error: TopicError| super::errors::EntityError::from(error).status.as_u16();
    assert_eq!(status(TopicError::UnknownTopic("t".into())), 404);
    assert_eq!(
        status(TopicError::UnknownRule {
            topic: "t".into(),
            subscription: "s".into(),
            rule: "r".into()
        }),
        404
    );
    assert_eq!(status(TopicError::NameTaken("t".into())), 409);
    assert_eq!(status(TopicError::Invalid("x".into())), 400);
}
