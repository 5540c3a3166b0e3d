use super::super::tests::load;
use super::{Ordering, SessionKey};

const ORDERED: &str = "[partners.erp]\ncomponent = \"erp.wasm\"\nqueue = \"erp\"\nordering = \"per-record\"\n";
const UNORDERED: &str = "[partners.mdm]\ncomponent = \"mdm.wasm\"\nqueue = \"contacts\"\nroutes = { next = \"erp\" }\n";

#[test]
fn a_per_record_partners_queue_is_session_enabled_and_the_rest_are_not() {
    let config = load(&format!("{ORDERED}{UNORDERED}")).unwrap();
    let erp = &config.partners["erp"];
    assert_eq!(
        (erp.ordering, &erp.session_key),
        (Ordering::PerRecord, &SessionKey::PrimaryEntityId)
    );
    let sessions: Vec<(String, bool)> = config
        .queue_settings()
        .into_iter()
        .map(|queue| (queue.name, queue.requires_session))
        .collect();
    assert_eq!(
        sessions,
        [
            ("contacts".to_string(), false),
            ("contacts-compensate".to_string(), false),
            ("erp".to_string(), true),
            ("erp-compensate".to_string(), false),
        ]
    );
    assert_eq!(config.ordered_queues().keys().collect::<Vec<_>>(), ["erp"]);
}

#[test]
fn the_session_key_can_name_a_target_attribute() {
    let config = load(&format!("{ORDERED}session-key = \"target.parentcustomerid\"\n")).unwrap();
    assert_eq!(
        config.partners["erp"].session_key,
        SessionKey::TargetAttribute("parentcustomerid".into())
    );
}

#[test]
fn what_ordering_cannot_do_is_refused_with_the_fix() {
    let cases: &[(String, &str)] = &[
        (
            format!("{ORDERED}session-key = \"record\"\n"),
            "session-key `record` is not one of",
        ),
        (format!("{ORDERED}ordering = \"strict\"\n"), "duplicate key"),
        (
            "[partners.erp]\ncomponent = \"erp.wasm\"\nqueue = \"erp\"\nordering = \"strict\"\n".into(),
            "unknown variant `strict`",
        ),
        (
            format!("{UNORDERED}session-key = \"correlation-id\"\n"),
            "session-key has no effect without ordering = \"per-record\"",
        ),
        (
            "[partners.erp]\ncomponent = \"erp.wasm\"\nsource = { topic = \"contacts\", subscription = \"erp\" }\n\
             ordering = \"per-record\"\n"
                .into(),
            "needs a queue",
        ),
        (
            format!("{ORDERED}[partners.audit]\ncomponent = \"audit.wasm\"\nqueue = \"erp\"\n"),
            "with different `ordering`",
        ),
    ];
    for (text, expected) in cases {
        let error = load(text).unwrap_err();
        assert!(error.contains(expected), "{text}\n→ {error}");
    }
}
