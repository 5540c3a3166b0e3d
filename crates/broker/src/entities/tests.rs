use std::time::Duration;

use sagahost_transport::embedded::{QueueDepth, QueueInfo, QueueSettings};

use super::atom::{self, Description, Entry, Incoming};
use super::names::{self, NameKind};
use super::queue_description::QueueDescription;
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
    assert!(matches!(atom::parse_entry(topic.as_bytes()), Ok(Incoming::Topic)));
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
        Description::QueueDescription(Box::new(description)),
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
