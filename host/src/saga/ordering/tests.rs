use std::collections::BTreeMap;

use sagahost_dataverse::Limits;
use sagahost_transport::{OutgoingMessage, Output};

use super::SessionIds;
use crate::component::wit;
use crate::config::SessionKey;
use crate::saga::{MessageParts, build_inbound};

/// The Create of contact `0c7f3a5e-…` by the guest examples, decoded as a step sees it.
fn contact() -> wit::Context {
    let body = include_bytes!("../../../../guest-examples/messages/contact-create.json");
    let parts = MessageParts {
        message_id: "m-1".into(),
        queue: "contacts".into(),
        content_type: Some("application/json".into()),
        body: body.to_vec(),
        ..MessageParts::default()
    };
    build_inbound(parts, None, &Limits::default()).unwrap().context.unwrap()
}

fn ids(key: &str) -> SessionIds {
    SessionIds::new(BTreeMap::from([(
        "erp".to_string(),
        key.parse::<SessionKey>().unwrap(),
    )]))
}

#[test]
fn the_session_key_names_the_context_field_and_only_ordered_queues_get_one() {
    let context = contact();
    let of = |key: &str| ids(key).for_queue("erp", Some(&context), "saga-1");
    assert_eq!(of("primary-entity-id").as_deref(), context.primary_entity_id.as_deref());
    assert!(of("primary-entity-id").is_some());
    assert_eq!(
        of("correlation-id").as_deref(),
        Some("7d4e2b9a-1c3f-4a5e-9b8d-2f6a0c1e3b57")
    );
    assert_eq!(
        of("initiating-user-id").as_deref(),
        Some("a3f1c2d4-6b8e-ef11-8ee9-000d3a4f5b21")
    );
    assert_eq!(of("target.lastname").as_deref(), Some("Ruiz"));
    assert_eq!(
        of("target.owningbusinessunit").as_deref(),
        Some("9e4b7a10-6b8e-ef11-8ee9-000d3a4f5b21"),
        "a lookup orders by the row it points at"
    );
    assert_eq!(
        ids("primary-entity-id").for_queue("mdm", Some(&context), "saga-1"),
        None
    );
}

#[test]
fn a_missing_field_falls_back_to_the_correlation_id_then_the_callers_id() {
    let mut context = contact();
    assert_eq!(
        ids("target.nosuchcolumn")
            .for_queue("erp", Some(&context), "saga-1")
            .as_deref(),
        Some("7d4e2b9a-1c3f-4a5e-9b8d-2f6a0c1e3b57")
    );
    context.correlation_id = None;
    context.primary_entity_id = None;
    assert_eq!(
        ids("primary-entity-id")
            .for_queue("erp", Some(&context), "saga-1")
            .as_deref(),
        Some("saga-1")
    );
    assert_eq!(
        ids("primary-entity-id").for_queue("erp", None, "m-9").as_deref(),
        Some("m-9")
    );
}

#[test]
fn outputs_for_ordered_queues_get_their_session_and_others_are_left_alone() {
    let context = contact();
    let output = |queue: &str| Output {
        queue: queue.into(),
        message: OutgoingMessage::default(),
    };
    let mut outputs = vec![output("erp"), output("mdm-compensate")];
    ids("primary-entity-id").assign(&mut outputs, Some(&context), "saga-1");
    assert_eq!(outputs[0].message.session_id, context.primary_entity_id);
    assert_eq!(outputs[1].message.session_id, None);
}

#[test]
fn unknown_session_keys_are_refused_with_the_choices() {
    let refused = "primary-key".parse::<SessionKey>().unwrap_err();
    assert!(
        refused.contains("primary-entity-id") && refused.contains("target.<attribute>"),
        "{refused}"
    );
    assert!("target.".parse::<SessionKey>().is_err());
    assert_eq!(
        "target.parentcustomerid".parse::<SessionKey>().unwrap().to_string(),
        "target.parentcustomerid"
    );
}
