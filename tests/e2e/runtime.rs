//! The component runtime against hostile components: every misbehaviour is
//! stopped, typed, attributed to its partner, and leaves the host serving.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sagahost::component::wit::{Decision, Event, Plan};
use sagahost::component::{ComponentError, Limits, PartnerComponent, Runtime, RuntimeOptions};
use sagahost::saga::{MessageParts, build_inbound};

use crate::support;

fn runtime(fuel: bool) -> Runtime {
    Runtime::new(RuntimeOptions {
        max_instances: 8,
        fuel,
        ..RuntimeOptions::default()
    })
    .expect("runtime")
}

fn hostile(runtime: &Runtime, attack: &str, limits: Limits) -> PartnerComponent {
    let config = BTreeMap::from([("attack".to_string(), attack.to_string())]);
    runtime
        .load(
            &format!("hostile-{attack}"),
            &support::component_bytes("hostile"),
            limits,
            config,
        )
        .expect("load hostile")
}

fn contact_created() -> Event {
    let body = std::fs::read(support::workspace().join("guest-examples/messages/contact-create.json")).unwrap();
    let parts = MessageParts {
        message_id: "m-1".into(),
        queue: "q".into(),
        content_type: Some("application/json".into()),
        properties: Vec::new(),
        body,
    };
    Event::Message(build_inbound(parts, None, &Default::default()).expect("decode"))
}

fn decision(plan: Plan) -> Decision {
    match plan {
        Plan::Done(outcome) => outcome.decision,
        Plan::Call(_) => panic!("expected a decision, got a call plan"),
    }
}

/// After any failure, a well-behaved component on the same runtime still works,
/// and so does the failing one on its next call (the failure is repeatable, not
/// a poisoned pool slot).
async fn assert_host_still_serves(runtime: &Runtime, failed: &PartnerComponent, expected_reason: &str) {
    let healthy = hostile(runtime, "none", Limits::default());
    assert!(matches!(
        decision(healthy.handle("m-2", &contact_created()).await.unwrap()),
        Decision::Complete
    ));
    let again = failed.handle("m-3", &contact_created()).await.unwrap_err();
    assert_eq!(again.reason(), expected_reason);
}

#[tokio::test]
async fn infinite_loop_is_stopped_at_its_deadline() {
    let runtime = runtime(false);
    let limits = Limits {
        deadline_ms: 200,
        ..Limits::default()
    };
    let component = hostile(&runtime, "loop", limits);
    let started = Instant::now();
    let err = component.handle("m-1", &contact_created()).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, ComponentError::DeadlineExceeded { ref partner, .. } if partner == "hostile-loop"),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(200),
        "stopped before its deadline: {took:?}"
    );
    assert!(
        took < Duration::from_secs(10),
        "not stopped near its deadline: {took:?}"
    );
    assert!(
        err.to_string().contains("hostile-loop") && err.to_string().contains("deadline-ms"),
        "{err}"
    );
    assert_host_still_serves(&runtime, &component, "ComponentDeadlineExceeded").await;
}

#[tokio::test]
async fn memory_growth_is_stopped_at_the_cap() {
    let runtime = runtime(false);
    let limits = Limits {
        memory_bytes: 32 << 20,
        ..Limits::default()
    };
    let component = hostile(&runtime, "memory", limits);
    let err = component.handle("m-1", &contact_created()).await.unwrap_err();
    assert!(
        matches!(err, ComponentError::MemoryLimit { limit_bytes, .. } if limit_bytes == 32 << 20),
        "expected a memory limit, got: {err}"
    );
    assert_eq!(err.partner(), "hostile-memory");
    assert_host_still_serves(&runtime, &component, "ComponentMemoryLimit").await;
}

#[tokio::test]
async fn trap_is_reported_with_the_partner_and_the_panic_message() {
    let runtime = runtime(false);
    let component = hostile(&runtime, "trap", Limits::default());
    let err = component.handle("m-1", &contact_created()).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ComponentError::Trap { .. }), "{text}");
    assert!(text.contains("partner `hostile-trap`"), "{text}");
    assert!(text.contains("hostile component panicked on purpose"), "{text}");
    assert_host_still_serves(&runtime, &component, "ComponentTrap").await;
}

#[tokio::test]
async fn runaway_recursion_is_a_typed_failure() {
    let runtime = runtime(false);
    let component = hostile(&runtime, "recursion", Limits::default());
    let err = component.handle("m-1", &contact_created()).await.unwrap_err();
    assert!(
        matches!(err, ComponentError::StackOverflow { .. } | ComponentError::Trap { .. }),
        "expected a stack overflow or trap, got: {err}"
    );
    assert_eq!(err.partner(), "hostile-recursion");
    let reason = err.reason();
    assert_host_still_serves(&runtime, &component, reason).await;
}

#[tokio::test]
async fn fuel_budget_stops_a_busy_guest() {
    let runtime = runtime(true);
    let limits = Limits {
        fuel: Some(5_000_000),
        deadline_ms: 30_000,
        ..Limits::default()
    };
    let component = hostile(&runtime, "loop", limits);
    let err = component.handle("m-1", &contact_created()).await.unwrap_err();
    assert!(
        matches!(err, ComponentError::FuelExhausted { fuel: 5_000_000, .. }),
        "{err}"
    );
    assert_host_still_serves(&runtime, &component, "ComponentFuelExhausted").await;
}

#[tokio::test]
async fn guest_sees_no_environment_and_no_files() {
    let runtime = runtime(false);
    let env = hostile(&runtime, "read-env", Limits::default());
    let Decision::DeadLetter(report) = decision(env.handle("m-1", &contact_created()).await.unwrap()) else {
        panic!("read-env should report through a dead-letter");
    };
    // The description lists every variable the guest could see: none.
    assert_eq!(report.description, "", "guest saw host environment variables");

    let file = hostile(&runtime, "read-file", Limits::default());
    let Decision::DeadLetter(report) = decision(file.handle("m-1", &contact_created()).await.unwrap()) else {
        panic!("read-file should report through a dead-letter");
    };
    assert!(
        report.description.starts_with("error:"),
        "guest read /etc/passwd: {}",
        report.description
    );
}

#[tokio::test]
async fn guest_error_return_is_typed() {
    let runtime = runtime(false);
    let component = runtime
        .load(
            "mdm",
            &support::component_bytes("mdm"),
            Limits::default(),
            BTreeMap::new(),
        )
        .expect("load mdm");
    // mdm without its `mdm-url` config returns `err(...)` naming the key.
    let err = component.handle("m-1", &contact_created()).await.unwrap_err();
    assert!(matches!(err, ComponentError::Returned { .. }), "{err}");
    assert_eq!(err.reason(), "ComponentError");
    assert!(err.to_string().contains("mdm-url"), "{err}");
}

#[test]
fn a_file_that_is_not_a_partner_component_is_refused_with_the_partner_name() {
    let runtime = runtime(false);
    let err = runtime
        .load("billing", b"not wasm", Limits::default(), BTreeMap::new())
        .err()
        .expect("must fail");
    assert!(format!("{err:#}").contains("partner `billing`"), "{err:#}");
}

#[tokio::test]
async fn compiled_artifacts_are_cached_by_content_hash() {
    let dir = tempfile::tempdir().unwrap();
    let options = RuntimeOptions {
        cache_dir: Some(dir.path().to_path_buf()),
        max_instances: 4,
        ..Default::default()
    };
    let wasm = support::component_bytes("erp");
    let first = Runtime::new(options.clone()).unwrap();
    let loaded = first.load("erp", &wasm, Limits::default(), BTreeMap::new()).unwrap();
    let artifacts: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    let name = artifacts[0].to_string_lossy().into_owned();
    assert!(
        name.starts_with(&loaded.info().version) && name.ends_with(".cwasm"),
        "{name}"
    );
    // A second runtime loads the artifact instead of compiling, and it works.
    let second = Runtime::new(options).unwrap();
    let again = second.load("erp", &wasm, Limits::default(), BTreeMap::new()).unwrap();
    assert_eq!(again.info().version, loaded.info().version);
    assert!(
        again
            .handle("m-1", &contact_created())
            .await
            .is_err_and(|e| e.to_string().contains("erp-url"))
    );
}
