use super::*;

/// One partner's routing settings, with `next` routed to queue `out`.
struct Fixture {
    routes: BTreeMap<String, String>,
    retry: RetryPolicy,
    outputs: OutputLimits,
    compensation_queues: BTreeMap<String, String>,
    message: ReceivedMessage,
    envelope: Envelope,
    saga: SagaState,
}

impl Fixture {
    fn new() -> Self {
        Self {
            routes: BTreeMap::from([("next".to_string(), "out".to_string())]),
            retry: RetryPolicy::default(),
            outputs: OutputLimits::default(),
            compensation_queues: BTreeMap::from([("p".to_string(), "in-compensate".to_string())]),
            message: ReceivedMessage {
                queue: "in".into(),
                message_id: "m-1".into(),
                correlation_id: None,
                content_type: Some("application/json".into()),
                properties: Vec::new(),
                body: vec![b'{'; 1024],
                session_id: None,
                sequence_number: 1,
                delivery_count: 1,
                enqueued_time: SystemTime::UNIX_EPOCH,
                lock_token: "t".into(),
                locked_until: SystemTime::UNIX_EPOCH,
            },
            envelope: Envelope::default(),
            saga: SagaState::start("saga-1"),
        }
    }

    fn route(&self, decision: wit::Decision, compensation_data: Option<String>) -> Routed {
        let partner = PartnerRoutes {
            partner: "p",
            version: "v1",
            routes: &self.routes,
            retry: &self.retry,
            outputs: &self.outputs,
            transport_max_message_bytes: 4 << 20,
            compensation_queues: &self.compensation_queues,
        };
        let input = StepInput {
            message: &self.message,
            envelope: &self.envelope,
            saga: &self.saga,
            traceparent: &trace(),
            retry_after: None,
        };
        let outcome = wit::Outcome {
            decision,
            compensation_data,
        };
        route(&partner, &input, &outcome, SystemTime::UNIX_EPOCH)
    }
}

fn forward(count: usize, properties: Vec<(String, String)>, body: Option<Vec<u8>>) -> wit::Decision {
    let message = wit::ForwardMessage {
        route: "next".into(),
        body,
        content_type: None,
        properties,
    };
    wit::Decision::Forward(vec![message; count])
}

fn dead_letter_reason(routed: &Routed) -> (&str, &str) {
    match &routed.verdict {
        Verdict::DeadLettered { reason, description } => (reason, description),
        other => panic!("expected a dead letter, got {other:?}"),
    }
}

#[test]
fn forwards_over_the_partner_limit_are_dead_lettered_before_any_is_built() {
    let fixture = Fixture::new();
    let routed = fixture.route(forward(100_000, Vec::new(), None), None);
    let (reason, description) = dead_letter_reason(&routed);
    assert_eq!(reason, "TooManyOutputs");
    assert!(
        description.contains("100000") && description.contains("outputs.max-forwards"),
        "{description}"
    );
    assert!(routed.outputs.is_empty());
    let routed = fixture.route(forward(16, Vec::new(), None), None);
    assert_eq!(routed.outputs.len(), 16, "{:?}", routed.verdict);
}

#[test]
fn an_oversized_property_body_or_compensation_record_is_dead_lettered() {
    let fixture = Fixture::new();
    let big_property = vec![("big".to_string(), "p".repeat(8 << 20))];
    let routed = fixture.route(forward(1, big_property, None), None);
    let (reason, description) = dead_letter_reason(&routed);
    assert_eq!(reason, "OutputTooLarge");
    assert!(
        description.contains("max-properties-bytes") && description.contains("`out`"),
        "{description}"
    );

    let routed = fixture.route(forward(1, Vec::new(), Some(vec![b'b'; 1 << 20])), None);
    let (reason, description) = dead_letter_reason(&routed);
    assert_eq!(reason, "OutputTooLarge");
    assert!(description.contains("max-message-bytes"), "{description}");

    let routed = fixture.route(forward(1, Vec::new(), None), Some("c".repeat(32 << 20)));
    let (reason, description) = dead_letter_reason(&routed);
    assert_eq!(reason, "OutputTooLarge");
    assert!(description.contains("max-compensation-data-bytes"), "{description}");

    let fits = fixture.route(forward(1, Vec::new(), None), Some("c".repeat(8 << 10)));
    assert!(matches!(fits.verdict, Verdict::Forwarded { .. }), "{:?}", fits.verdict);
}

#[test]
fn the_transport_maximum_bounds_every_output_including_retries() {
    let mut fixture = Fixture::new();
    fixture.outputs.max_message_bytes = usize::MAX;
    fixture.message.body = vec![b'{'; (4 << 20) - 100];
    let routed = fixture.route(
        wit::Decision::Retry(wit::Retry {
            delay_ms: Some(10),
            reason: "later".into(),
        }),
        None,
    );
    let (reason, description) = dead_letter_reason(&routed);
    assert_eq!(reason, "OutputTooLarge");
    assert!(description.contains("transport's maximum"), "{description}");
}

/// A fixture on the compensation message for step 2 of a three-step saga (partners a, b, p).
fn compensating_step_two() -> Fixture {
    let mut fixture = Fixture::new();
    fixture.compensation_queues = ["a", "b", "p"]
        .into_iter()
        .map(|p| (p.to_string(), format!("{p}-compensate")))
        .collect();
    fixture.saga.history = ["a", "b", "p"]
        .into_iter()
        .map(|p| StepRecord {
            partner: p.into(),
            component_version: "v1".into(),
            compensation_data: None,
        })
        .collect();
    fixture.saga.step = 2;
    fixture.envelope.compensation = Some(CompensationInfo {
        failed_partner: "c".into(),
        reason: "Rejected".into(),
        details: None,
        failed_undos: Vec::new(),
    });
    fixture
}

fn dead_letter_decision() -> wit::Decision {
    wit::Decision::DeadLetter(wit::DeadLetter {
        reason: "UndoRefused".into(),
        description: "the partner keeps the record".into(),
    })
}

/// What the executor does with a step's routing: [`route`], then the failed-undo rule.
fn route_as_executor(fixture: &Fixture, decision: wit::Decision) -> Routed {
    let partner = PartnerRoutes {
        partner: "p",
        version: "v1",
        routes: &fixture.routes,
        retry: &fixture.retry,
        outputs: &fixture.outputs,
        transport_max_message_bytes: 4 << 20,
        compensation_queues: &fixture.compensation_queues,
    };
    let input = StepInput {
        message: &fixture.message,
        envelope: &fixture.envelope,
        saga: &fixture.saga,
        traceparent: &trace(),
        retry_after: None,
    };
    let outcome = wit::Outcome {
        decision,
        compensation_data: None,
    };
    let routed = route(&partner, &input, &outcome, SystemTime::UNIX_EPOCH);
    continue_past_failed_undo(&partner, &input, routed)
}

#[test]
fn a_failed_undo_is_dead_lettered_marked_and_the_older_steps_are_still_undone() {
    let fixture = compensating_step_two();
    let routed = route_as_executor(&fixture, dead_letter_decision());
    let Settlement::DeadLetter {
        reason,
        description,
        properties,
    } = &routed.settlement
    else {
        panic!("the failed undo is dead-lettered: {:?}", routed.settlement)
    };
    assert_eq!(reason, "UndoRefused");
    assert!(description.contains("undoes step 2 only"), "{description}");
    assert_eq!(
        properties,
        &vec![(UNDO_CONTINUED_PROPERTY.to_string(), "true".to_string())]
    );
    let [next] = &routed.outputs[..] else {
        panic!("one undo request for the older step: {:?}", routed.outputs)
    };
    assert_eq!(next.queue, "b-compensate");
    let envelope = Envelope::read(&next.message.properties).unwrap();
    let saga = envelope.saga.unwrap();
    assert_eq!((saga.step, saga.history.len()), (1, 2));
    assert_eq!(
        envelope.compensation.unwrap().failed_undos,
        vec![FailedUndo {
            step: 2,
            partner: "p".into(),
            reason: "UndoRefused".into()
        }]
    );
}

#[test]
fn a_redriven_undo_that_succeeds_undoes_its_own_step_only() {
    let mut fixture = compensating_step_two();
    fixture.envelope.undo_continued = true;
    let routed = route_as_executor(&fixture, wit::Decision::Complete);
    assert_eq!(routed.settlement, Settlement::Complete);
    assert!(routed.outputs.is_empty(), "the older steps were undone already");
    // Dead-lettered again, it stays a plain dead letter: the chain does not go on twice.
    let again = route_as_executor(&fixture, dead_letter_decision());
    assert!(again.outputs.is_empty());
    assert!(matches!(again.verdict, Verdict::DeadLettered { .. }));
}

#[test]
fn the_oldest_failed_undo_ends_the_chain_with_nothing_more_to_send() {
    let mut fixture = compensating_step_two();
    fixture.saga.history.truncate(1);
    fixture.saga.step = 0;
    let routed = route_as_executor(&fixture, dead_letter_decision());
    assert!(routed.outputs.is_empty());
    assert!(matches!(routed.settlement, Settlement::DeadLetter { .. }));
}

#[test]
fn a_component_retry_delay_is_clamped_to_the_partner_maximum() {
    let fixture = Fixture::new();
    let routed = fixture.route(
        wit::Decision::Retry(wit::Retry {
            delay_ms: Some(u64::MAX),
            reason: "forever".into(),
        }),
        None,
    );
    let max = Duration::from_millis(fixture.retry.max_delay_ms);
    assert_eq!(routed.verdict, Verdict::Retried { attempt: 2, delay: max });
    let scheduled = routed.outputs[0].message.scheduled_enqueue_time.unwrap();
    assert_eq!(scheduled, SystemTime::UNIX_EPOCH + max);
}

#[test]
fn dead_letter_reason_and_description_are_bounded_at_a_character_boundary() {
    let routed = Routed::dead_letter("R".repeat(1_000), "é".repeat(64 << 10));
    let Settlement::DeadLetter {
        reason, description, ..
    } = &routed.settlement
    else {
        panic!("a dead-letter settlement")
    };
    assert!(reason.len() <= MAX_REASON_BYTES, "{}", reason.len());
    assert!(reason.ends_with("… [cut from 1000 bytes]"), "{reason}");
    assert!(description.len() <= MAX_DESCRIPTION_BYTES, "{}", description.len());
    assert!(description.starts_with("éé"));
    assert!(
        description.ends_with(&format!("… [cut from {} bytes]", 128 << 10)),
        "{description}"
    );
    assert_eq!(
        routed.verdict,
        Verdict::DeadLettered {
            reason: reason.clone(),
            description: description.clone()
        }
    );
    let short = Routed::dead_letter("Broken", "it broke");
    assert_eq!(
        short.settlement,
        Settlement::DeadLetter {
            reason: "Broken".into(),
            description: "it broke".into(),
            properties: Vec::new(),
        }
    );
}

/// The trace context every routed input here carries.
fn trace() -> TraceParent {
    TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap()
}
