//! Hostile components under the real host: one partner per attack, each on its own queue, next
//! to a healthy partner. Every attack must end in a typed outcome with a readable reason that
//! names the partner, nothing may be lost, and the healthy partner must keep being served while
//! the attacks run.

use std::collections::BTreeMap;
use std::time::Duration;

use sagahost::config::Config;
use sagahost::saga::{SagaEvent, Verdict};
use sagahost::service::Host;
use sagahost_transport::dead_letters::DeadLetterQueues;
use sagahost_transport::{OutgoingMessage, Output, Transport};

use crate::partners::Partner;
use crate::saga::contact_body;
use crate::support;

/// Messages for the healthy partner, sent together with the attacks.
const HEALTHY_MESSAGES: usize = 100;
/// Messages for the looping partner; it handles one at a time, so the loop runs for this many
/// deadlines in a row while the healthy partner works.
const LOOPS: usize = 3;

/// What each attack must end in: the dead-letter reason (or another verdict) and text the
/// description must hold.
struct Expected {
    attack: &'static str,
    /// Extra settings of the partner (TOML, inside `[partners.NAME]`).
    settings: &'static str,
    reason: &'static str,
    description: &'static [&'static str],
}

const DEAD_LETTERED: &[Expected] = &[
    Expected {
        attack: "loop",
        settings: "concurrency = 1\nlimits = { deadline-ms = 1500 }",
        reason: "ComponentDeadlineExceeded",
        description: &["deadline-ms"],
    },
    Expected {
        attack: "memory",
        // A long deadline, so that on a loaded machine the memory cap, not the clock, ends it.
        settings: "limits = { memory-bytes = 33554432, deadline-ms = 20000 }",
        reason: "ComponentMemoryLimit",
        description: &["33554432"],
    },
    Expected {
        attack: "trap",
        settings: "",
        reason: "ComponentTrap",
        description: &["hostile component panicked on purpose"],
    },
    Expected {
        attack: "huge-return",
        settings: "limits = { memory-bytes = 268435456 }",
        reason: "HugeReturn",
        description: &["xxxx", "[cut from 67108864 bytes]"],
    },
    Expected {
        attack: "many-requests",
        settings: "",
        reason: "TooManyRequests",
        description: &["10000"],
    },
    Expected {
        attack: "forbidden-host",
        settings: "",
        reason: "ForbiddenHost",
        description: &["is not on the allow-list of partner `h-forbidden-host`"],
    },
    Expected {
        attack: "read-file",
        settings: "",
        reason: "ReadFile",
        description: &["error:"],
    },
    Expected {
        attack: "sleep",
        settings: "limits = { deadline-ms = 1000 }",
        reason: "ComponentDeadlineExceeded",
        description: &["deadline-ms"],
    },
    Expected {
        attack: "clock-loop",
        settings: "limits = { deadline-ms = 500 }",
        reason: "ComponentDeadlineExceeded",
        description: &["deadline-ms"],
    },
    Expected {
        attack: "many-forwards",
        // Lifting 100,000 records out of the guest takes a while in a debug build.
        settings: "limits = { deadline-ms = 20000 }",
        reason: "TooManyOutputs",
        description: &["100000", "max-forwards"],
    },
    Expected {
        attack: "big-property",
        settings: "",
        reason: "OutputTooLarge",
        description: &["max-properties-bytes"],
    },
    Expected {
        attack: "big-compensation",
        settings: "limits = { memory-bytes = 268435456 }",
        reason: "OutputTooLarge",
        description: &["max-compensation-data-bytes"],
    },
    Expected {
        attack: "big-body",
        settings: "",
        reason: "OutputTooLarge",
        description: &["max-message-bytes"],
    },
    Expected {
        attack: "unknown-route",
        settings: "",
        reason: "UnknownRoute",
        description: &["nowhere"],
    },
];

/// Attacks that do not dead-letter, checked one by one below.
const OTHERS: &[&str] = &["recursion", "read-env", "compensate-first", "forge-saga"];

fn partner(text: &mut String, name: &str, attack: &str, settings: &str, extra_config: &str) {
    text.push_str(&format!(
        "[partners.{name}]\ncomponent = {:?}\nqueue = \"{name}-in\"\nroutes = {{ next = \"{name}-next\" }}\n\
         config = {{ attack = \"{attack}\"{extra_config} }}\n{settings}\n",
        support::component("hostile").display().to_string(),
    ));
}

fn send(body: &[u8]) -> OutgoingMessage {
    OutgoingMessage {
        content_type: Some("application/json".into()),
        body: body.to_vec(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_ends_typed_and_named_while_the_healthy_partner_keeps_being_served() {
    let dir = tempfile::tempdir().unwrap();
    // Not on any allow-list: a request reaching it would be a sandbox escape.
    let forbidden = Partner::always(200, "reached").await;
    let mut text = format!("data-dir = {:?}\n", dir.path().join("data").display().to_string());
    partner(&mut text, "healthy", "none", "concurrency = 4", "");
    for expected in DEAD_LETTERED {
        let extra = if expected.attack == "forbidden-host" {
            format!(", forbidden-url = \"{}/steal\"", forbidden.origin())
        } else {
            String::new()
        };
        partner(
            &mut text,
            &format!("h-{}", expected.attack),
            expected.attack,
            expected.settings,
            &extra,
        );
    }
    for attack in OTHERS {
        partner(&mut text, &format!("h-{attack}"), attack, "", "");
    }
    let path = dir.path().join("sagahost.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap().config;
    let host = Host::start(&config).await.unwrap();
    let mut events = host.subscribe();
    let store = host.transport.embedded().unwrap().clone();

    let body = contact_body();
    let mut outputs: Vec<Output> = (0..LOOPS)
        .map(|_| Output {
            queue: "h-loop-in".into(),
            message: send(&body),
        })
        .collect();
    for attack in DEAD_LETTERED
        .iter()
        .map(|e| e.attack)
        .filter(|a| *a != "loop")
        .chain(OTHERS.iter().copied())
    {
        outputs.push(Output {
            queue: format!("h-{attack}-in"),
            message: send(&body),
        });
    }
    outputs.extend((0..HEALTHY_MESSAGES).map(|_| Output {
        queue: "healthy-in".into(),
        message: send(&body),
    }));
    let expected_events = outputs.len();
    store.send(outputs).await.unwrap();

    // Every message ends; record the order in which they did.
    let mut ended: Vec<SagaEvent> = Vec::new();
    while ended.len() < expected_events {
        let event = tokio::time::timeout(Duration::from_secs(120), events.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {expected_events} messages ended: {ended:#?}", ended.len()))
            .unwrap();
        ended.push(event);
    }
    let by_partner = |name: &str| ended.iter().filter(|e| e.partner == name).collect::<Vec<_>>();

    // The healthy partner was served while the loop held its deadlines: all of its messages
    // completed before the last looping message was stopped.
    let healthy = by_partner("healthy");
    assert_eq!(healthy.len(), HEALTHY_MESSAGES);
    assert!(healthy.iter().all(|e| e.verdict == Verdict::Completed), "{healthy:#?}");
    let last_healthy = ended.iter().rposition(|e| e.partner == "healthy").unwrap();
    let last_loop = ended.iter().rposition(|e| e.partner == "h-loop").unwrap();
    assert!(
        last_healthy < last_loop,
        "the healthy partner finished only after the looping one ({last_healthy} vs {last_loop})"
    );

    let mut dead_letters = BTreeMap::new();
    for expected in DEAD_LETTERED {
        let name = format!("h-{}", expected.attack);
        let runs = by_partner(&name);
        assert!(!runs.is_empty(), "{name} never ended");
        for run in runs {
            let Verdict::DeadLettered { reason, description } = &run.verdict else {
                panic!("{name}: expected a dead letter, got {:?}", run.verdict)
            };
            assert_eq!(reason, expected.reason, "{name}: {description}");
            assert!(
                description.len() <= 4096,
                "{name}: description of {} bytes",
                description.len()
            );
            for needle in expected.description {
                assert!(description.contains(needle), "{name}: `{needle}` not in: {description}");
            }
            if expected.reason.starts_with("Component")
                || ["TooManyRequests", "TooManyOutputs", "OutputTooLarge"].contains(&expected.reason)
            {
                assert!(description.contains(&format!("`{name}`")), "{name}: {description}");
            }
        }
        let stored = store.peek_dead_letters(&format!("{name}-in"), 0, 10).await.unwrap();
        dead_letters.insert(name, stored);
    }
    for (name, stored) in &dead_letters {
        let expected = if name == "h-loop" { LOOPS } else { 1 };
        assert_eq!(stored.len(), expected, "{name}: dead letters on its queue");
        assert!(stored.iter().all(|d| !d.reason.is_empty() && !d.description.is_empty()));
    }
    assert!(
        forbidden.received().is_empty(),
        "a host not on the allow-list was reached"
    );

    // Deep recursion: a typed failure (stack overflow, or the trap it becomes).
    let [recursion] = by_partner("h-recursion")[..] else {
        panic!("one recursion message")
    };
    assert!(
        matches!(&recursion.verdict, Verdict::DeadLettered { reason, description }
            if (reason == "ComponentStackOverflow" || reason == "ComponentTrap") && description.contains("`h-recursion`")),
        "{:?}",
        recursion.verdict
    );
    // The guest sees no environment: the names it lists are none.
    let [env] = by_partner("h-read-env")[..] else {
        panic!("one read-env message")
    };
    assert_eq!(
        env.verdict,
        Verdict::DeadLettered {
            reason: "ReadEnv".into(),
            description: String::new()
        }
    );
    // Compensating on the first step undoes nothing: the saga ends compensated and no
    // compensation request goes to anyone.
    let [first] = by_partner("h-compensate-first")[..] else {
        panic!("one compensate-first message")
    };
    assert_eq!(first.verdict, Verdict::Compensated);
    for partner in config.partners.values() {
        let depth = store.queue_depth(&partner.compensation_queue()).await.unwrap();
        assert_eq!(depth.active, 0, "a compensation request reached {}", partner.queue);
    }
    // Host-owned properties cannot be forged: the forwarded message carries the host's saga
    // state (step 1 of this saga), not the component's.
    let forwarded = store.peek("h-forge-saga-next", 10).await.unwrap();
    assert_eq!(forwarded.len(), 1);
    let saga = forwarded[0]
        .properties
        .iter()
        .find(|(name, _)| name == "sagahost-saga")
        .map(|(_, value)| value.clone())
        .expect("the host's saga state");
    assert!(!saga.contains("forged"), "{saga}");
    assert!(
        !forwarded[0]
            .properties
            .iter()
            .any(|(name, _)| name == "sagahost-compensation"),
        "{:?}",
        forwarded[0].properties
    );

    // Nothing lost: every input queue is empty apart from the dead letters counted above.
    for partner in config.partners.values() {
        let depth = store.queue_depth(&partner.queue).await.unwrap();
        assert_eq!(
            depth.active + depth.scheduled,
            0,
            "{} still holds messages",
            partner.queue
        );
    }
    host.shutdown().await;
}

/// `sagahost run` with a guest asleep in a WASI call stops on SIGTERM within the partner's
/// deadline: the call ends at its deadline, the message is dead-lettered, and the host exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_sleeping_guest_in_flight_stops_within_the_deadline() {
    const DEADLINE: Duration = Duration::from_millis(2_000);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut text = format!("data-dir = {:?}\n", data.display().to_string());
    let settings = format!("limits = {{ deadline-ms = {} }}", DEADLINE.as_millis());
    partner(&mut text, "sleeper", "sleep", &settings, "");
    let path = dir.path().join("sagahost.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap().config;
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let queue = sagahost_transport::embedded::EmbeddedQueue::open(
        &config.data_dir.join("queue.sqlite3"),
        &config.queue_settings(),
    )
    .unwrap();
    let output = Output {
        queue: "sleeper-in".into(),
        message: send(&contact_body()),
    };
    queue.send(vec![output]).await.unwrap();
    drop(queue);

    let log = dir.path().join("host.log");
    let mut host = support::start_host_logging(&path, "info", &log, &[]);
    let asleep = std::time::Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("hostile attack: \\\"sleep\\\"")
    {
        assert!(asleep.elapsed() < Duration::from_secs(60), "the guest never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let term = std::time::Instant::now();
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(host.id().to_string())
        .status()
        .unwrap();
    let status = loop {
        if let Some(status) = host.try_wait().unwrap() {
            break status;
        }
        if term.elapsed() > DEADLINE + Duration::from_secs(10) {
            host.kill().unwrap();
            panic!(
                "the host did not stop on SIGTERM: {}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stopped = term.elapsed();
    assert!(status.success(), "{status}");
    // The deadline, plus the settle and the process exit on a busy machine.
    assert!(
        stopped < DEADLINE + Duration::from_secs(1),
        "stopped {stopped:?} after SIGTERM"
    );
    let queue = sagahost_transport::embedded::EmbeddedQueue::open(
        &config.data_dir.join("queue.sqlite3"),
        &config.queue_settings(),
    )
    .unwrap();
    let dead = queue.peek_dead_letters("sleeper-in", 0, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "the sleeping message is dead-lettered, not lost");
    assert_eq!(dead[0].reason, "ComponentDeadlineExceeded");
}
