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
    // The guest's stack pointer wraps below zero: an out-of-bounds trap at the top of the
    // address space, told apart from other out-of-bounds accesses.
    assert!(
        matches!(err, ComponentError::StackOverflow { .. }),
        "expected a stack overflow, got: {err}"
    );
    assert!(err.to_string().contains("-zstack-size"), "{err}");
    assert_eq!(err.partner(), "hostile-recursion");
    let reason = err.reason();
    assert_host_still_serves(&runtime, &component, reason).await;
}

/// The guest stack `.cargo/config.toml` sets (128 KiB, against Rust's 1 MiB) still holds the
/// deepest JSON serde_json parses.
#[tokio::test]
async fn the_guest_stack_holds_json_at_serde_jsons_nesting_limit() {
    let runtime = runtime(false);
    let component = hostile(&runtime, "deep-json", Limits::default());
    let plan = component
        .handle("m-1", &contact_created())
        .await
        .expect("deep JSON fits the stack");
    let Plan::Done(outcome) = plan else {
        panic!("expected a decision, got {plan:?}")
    };
    assert_eq!(outcome.compensation_data.as_deref(), Some("127"));
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

/// A guest blocked in a host call (a WASI sleep is a `wasi:io/poll` block) cannot be reached
/// by epoch interruption; the call still ends by its deadline, and the thread it ran on is
/// free again. This test runs on tokio's current-thread runtime: had the sleep held the
/// thread, nothing after it could run.
#[tokio::test]
async fn a_guest_sleeping_for_an_hour_ends_at_its_deadline_and_frees_its_thread() {
    let runtime = runtime(false);
    let limits = Limits {
        deadline_ms: 300,
        ..Limits::default()
    };
    let component = hostile(&runtime, "sleep", limits);
    let started = Instant::now();
    let err = component.handle("m-1", &contact_created()).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, ComponentError::DeadlineExceeded { ref partner, .. } if partner == "hostile-sleep"),
        "{err}"
    );
    assert_eq!(err.reason(), "ComponentDeadlineExceeded");
    // The deadline plus one 5 ms epoch tick, with room for a loaded machine's scheduler.
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(300 + 5 + 250),
        "the sleeping guest ended after {took:?}"
    );
    // A timer on this same thread fires on time: the thread is not held by the guest.
    let timer = Instant::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(timer.elapsed() < Duration::from_millis(200), "{:?}", timer.elapsed());
    assert_host_still_serves(&runtime, &component, "ComponentDeadlineExceeded").await;
}

/// A loop between host calls (reading the clock) is wasm code between imports: it yields
/// every tick and traps at the deadline like any loop.
#[tokio::test]
async fn a_guest_looping_over_host_calls_ends_at_its_deadline() {
    let runtime = runtime(false);
    let limits = Limits {
        deadline_ms: 200,
        ..Limits::default()
    };
    let component = hostile(&runtime, "clock-loop", limits);
    let started = Instant::now();
    let err = component.handle("m-1", &contact_created()).await.unwrap_err();
    assert!(matches!(err, ComponentError::DeadlineExceeded { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(200 + 5 + 250),
        "{:?}",
        started.elapsed()
    );
}

/// Stdin is empty and closed: a guest reading it to the end gets end-of-file at once
/// instead of blocking.
#[tokio::test]
async fn a_guest_reading_stdin_sees_it_closed() {
    let runtime = runtime(false);
    let component = hostile(&runtime, "stdin", Limits::default());
    let Plan::Done(outcome) = component.handle("m-1", &contact_created()).await.unwrap() else {
        panic!("stdin completes")
    };
    assert_eq!(outcome.compensation_data.as_deref(), Some("Ok(0)"));
}

/// Two calls sleeping on a two-thread runtime and a third, healthy call: every sleeper ends at
/// its deadline and the healthy call is not kept waiting behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_guests_do_not_hold_the_worker_threads() {
    let runtime = std::sync::Arc::new(runtime(false));
    let limits = Limits {
        deadline_ms: 1_000,
        ..Limits::default()
    };
    let sleeper = std::sync::Arc::new(hostile(&runtime, "sleep", limits));
    let sleepers: Vec<_> = (0..4)
        .map(|i| {
            let sleeper = sleeper.clone();
            tokio::spawn(async move { sleeper.handle(&format!("m-{i}"), &contact_created()).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let healthy = hostile(&runtime, "none", Limits::default());
    let started = Instant::now();
    assert!(matches!(
        decision(healthy.handle("m-h", &contact_created()).await.unwrap()),
        Decision::Complete
    ));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    for sleeper in sleepers {
        let err = sleeper.await.unwrap().unwrap_err();
        assert_eq!(err.reason(), "ComponentDeadlineExceeded");
    }
}

/// The instance pool is sized from what the components need: a Python component instantiates
/// 14 core modules, so a pool sized for Rust components (8 per instance) could run only a
/// fraction of the partner's concurrency. Sized from the component, every instance runs at once;
/// and a pool sized for smaller components refuses it at load, naming what it needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_is_sized_from_what_the_components_need() {
    use sagahost::component::PoolNeeds;

    const INSTANCES: u32 = 4;
    let python = std::fs::read(support::component_in("python", "hostile")).unwrap();
    let needs = PoolNeeds::of(&python).unwrap();
    let rust = PoolNeeds::of(&support::component_bytes("hostile")).unwrap();
    assert!(rust.core_instances <= PoolNeeds::FLOOR.core_instances, "{rust:?}");
    assert!(needs.core_instances > PoolNeeds::FLOOR.core_instances, "{needs:?}");

    let config = BTreeMap::from([("attack".to_string(), "sleep".to_string())]);
    let limits = Limits {
        deadline_ms: 1_500,
        ..Limits::default()
    };
    let too_small = Runtime::new(RuntimeOptions {
        max_instances: INSTANCES,
        ..RuntimeOptions::default()
    })
    .unwrap();
    let err = too_small
        .load("py", &python, limits.clone(), config.clone())
        .err()
        .expect("a pool sized for Rust components refuses the Python one")
        .to_string();
    assert!(
        err.contains("partner `py`") && err.contains("core module instances") && err.contains("restart"),
        "{err}"
    );

    let sized = Runtime::new(RuntimeOptions {
        max_instances: INSTANCES,
        pool: needs.with_headroom(),
        cache_dir: Some(support::workspace().join("target/e2e-compiled")),
        ..RuntimeOptions::default()
    })
    .unwrap();
    let component = std::sync::Arc::new(sized.load("py", &python, limits, config).unwrap());
    // Every slot busy at once: each sleeps until its deadline, so all are alive together.
    let calls = (0..INSTANCES).map(|i| {
        let component = component.clone();
        tokio::spawn(async move { component.handle(&format!("m-{i}"), &contact_created()).await })
    });
    for call in calls.collect::<Vec<_>>() {
        let err = call.await.unwrap().unwrap_err();
        assert_eq!(err.reason(), "ComponentDeadlineExceeded", "{err}");
    }
}

/// Partners running the same build share one compiled component (its code and memory image);
/// it is freed when the last of them lets go, and another build is loaded on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partners_running_the_same_build_share_it() {
    let runtime = runtime(false);
    let first = hostile(&runtime, "none", Limits::default());
    let second = hostile(&runtime, "trap", Limits::default());
    assert_eq!(runtime.builds_loaded(), 1);
    assert_eq!(first.info().version, second.info().version);
    let other = runtime
        .load(
            "mdm",
            &support::component_bytes("mdm"),
            Limits::default(),
            BTreeMap::new(),
        )
        .unwrap();
    assert_eq!(runtime.builds_loaded(), 2);
    // Each keeps its own config: the shared build runs each partner's attack.
    assert!(matches!(
        decision(first.handle("m-1", &contact_created()).await.unwrap()),
        Decision::Complete
    ));
    assert_eq!(
        second.handle("m-2", &contact_created()).await.unwrap_err().reason(),
        "ComponentTrap"
    );
    drop((first, second));
    assert_eq!(runtime.builds_loaded(), 1);
    drop(other);
    assert_eq!(runtime.builds_loaded(), 0);
}
