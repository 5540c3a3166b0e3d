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
    /// The settings for TypeScript and Python components, where they differ: their engines
    /// build the attack's huge strings far slower than Rust does (ComponentizeJS hands a
    /// string to the host at about 0.3 µs a character), so the output limits, not the
    /// deadline, must be what ends them.
    interpreted: Option<&'static str>,
    reason: &'static str,
    description: &'static [&'static str],
}

const DEAD_LETTERED: &[Expected] = &[
    Expected {
        attack: "loop",
        settings: "concurrency = 1\nlimits = { deadline-ms = 1500 }",
        interpreted: Some("concurrency = 1\nlimits = { deadline-ms = 5000 }"),
        reason: "ComponentDeadlineExceeded",
        description: &["deadline-ms"],
    },
    Expected {
        attack: "memory",
        // A long deadline, so that on a loaded machine the memory cap, not the clock, ends it.
        settings: "limits = { memory-bytes = 33554432, deadline-ms = 20000 }",
        interpreted: None,
        reason: "ComponentMemoryLimit",
        description: &["33554432"],
    },
    Expected {
        attack: "trap",
        settings: "",
        interpreted: None,
        reason: "ComponentTrap",
        description: &["hostile component panicked on purpose"],
    },
    Expected {
        attack: "huge-return",
        settings: "limits = { memory-bytes = 268435456 }",
        interpreted: Some("limits = { memory-bytes = 268435456, deadline-ms = 60000 }"),
        reason: "HugeReturn",
        description: &["xxxx", "[cut from 67108864 bytes]"],
    },
    Expected {
        attack: "many-requests",
        settings: "",
        interpreted: Some("limits = { deadline-ms = 30000 }"),
        reason: "TooManyRequests",
        description: &["10000"],
    },
    Expected {
        attack: "forbidden-host",
        settings: "",
        interpreted: None,
        reason: "ForbiddenHost",
        description: &["is not on the allow-list of partner `h-forbidden-host`"],
    },
    Expected {
        attack: "read-file",
        settings: "",
        interpreted: None,
        reason: "ReadFile",
        description: &["error:"],
    },
    Expected {
        attack: "sleep",
        settings: "limits = { deadline-ms = 1000 }",
        interpreted: None,
        reason: "ComponentDeadlineExceeded",
        description: &["deadline-ms"],
    },
    Expected {
        attack: "clock-loop",
        settings: "limits = { deadline-ms = 500 }",
        interpreted: None,
        reason: "ComponentDeadlineExceeded",
        description: &["deadline-ms"],
    },
    Expected {
        attack: "many-forwards",
        // Lifting 100,000 records out of the guest takes a while in a debug build.
        settings: "limits = { deadline-ms = 20000 }",
        interpreted: Some("limits = { deadline-ms = 60000 }"),
        reason: "TooManyOutputs",
        description: &["100000", "max-forwards"],
    },
    Expected {
        attack: "big-property",
        settings: "",
        interpreted: Some("limits = { deadline-ms = 30000 }"),
        reason: "OutputTooLarge",
        description: &["max-properties-bytes"],
    },
    Expected {
        attack: "big-compensation",
        settings: "limits = { memory-bytes = 268435456 }",
        interpreted: Some("limits = { memory-bytes = 268435456, deadline-ms = 60000 }"),
        reason: "OutputTooLarge",
        description: &["max-compensation-data-bytes"],
    },
    Expected {
        attack: "big-body",
        settings: "",
        interpreted: Some("limits = { deadline-ms = 30000 }"),
        reason: "OutputTooLarge",
        description: &["max-message-bytes"],
    },
    Expected {
        attack: "unknown-route",
        settings: "",
        interpreted: None,
        reason: "UnknownRoute",
        description: &["nowhere"],
    },
];

/// Attacks that do not dead-letter, checked one by one below.
const OTHERS: &[&str] = &["recursion", "read-env", "compensate-first", "forge-saga"];

/// Whether `language`'s hostile component has `attack`: JavaScript under ComponentizeJS has no
/// way to ask for the environment or a file, so those attacks do not exist there.
fn ported(language: &str, attack: &str) -> bool {
    !(language == "typescript" && ["read-env", "read-file"].contains(&attack))
}

/// `settings` for a TypeScript or Python partner: a call of those takes tens of milliseconds in
/// a debug build and, beside the attacks on two cores, can pass the default 1 s deadline. An
/// attack whose point is the deadline keeps its own.
fn with_interpreted_deadline(settings: &str) -> String {
    const DEADLINE: &str = "deadline-ms = 10000";
    if settings.contains("deadline-ms") {
        settings.to_string()
    } else if settings.contains("limits = { ") {
        settings.replacen("limits = { ", &format!("limits = {{ {DEADLINE}, "), 1)
    } else {
        format!("{settings}\nlimits = {{ {DEADLINE} }}")
    }
}

/// Adds the partner `name` running `attack` of `language`'s hostile component to `text`.
fn partner(text: &mut String, language: &str, name: &str, attack: &str, settings: &str, extra_config: &str) {
    text.push_str(&format!(
        "[partners.{name}]\ncomponent = {:?}\nqueue = \"{name}-in\"\nroutes = {{ next = \"{name}-next\" }}\n\
         config = {{ attack = \"{attack}\"{extra_config} }}\n{settings}\n",
        support::component_in(language, "hostile").display().to_string(),
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
    every_attack_in("rust").await;
}

/// The same attacks from a component made with ComponentizeJS: the sandbox does not depend on
/// the language the guest was written in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_from_a_typescript_component_ends_typed_and_named() {
    every_attack_in("typescript").await;
}

/// The same attacks from a component made with componentize-py.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_from_a_python_component_ends_typed_and_named() {
    every_attack_in("python").await;
}

/// Runs every attack of `language`'s hostile component, each as its own partner, next to a
/// healthy partner of the same component.
async fn every_attack_in(language: &str) {
    let dead_lettered: Vec<&Expected> = DEAD_LETTERED.iter().filter(|e| ported(language, e.attack)).collect();
    let others: Vec<&str> = OTHERS.iter().copied().filter(|a| ported(language, a)).collect();
    let dir = tempfile::tempdir().unwrap();
    // Not on any allow-list: a request reaching it would be a sandbox escape.
    let forbidden = Partner::always(200, "reached").await;
    let mut text = format!("data-dir = {:?}\n", dir.path().join("data").display().to_string());
    // Interpreted guests are slower per call (tens of ms in a debug build) and share two
    // cores with the attacks: the healthy partner's deadline allows for that.
    let healthy = match language {
        "rust" => "concurrency = 4",
        _ => "concurrency = 4\nlimits = { deadline-ms = 10000 }",
    };
    partner(&mut text, language, "healthy", "none", healthy, "");
    for expected in &dead_lettered {
        let settings = match (language, expected.interpreted) {
            ("rust", _) => expected.settings.to_string(),
            (_, Some(settings)) => settings.to_string(),
            (_, None) => with_interpreted_deadline(expected.settings),
        };
        let extra = if expected.attack == "forbidden-host" {
            format!(", forbidden-url = \"{}/steal\"", forbidden.origin())
        } else {
            String::new()
        };
        partner(
            &mut text,
            language,
            &format!("h-{}", expected.attack),
            expected.attack,
            &settings,
            &extra,
        );
    }
    for attack in &others {
        // An engine's own recursion limit (SpiderMonkey's, CPython's) takes seconds to reach.
        let settings = match language {
            "rust" => String::new(),
            _ => "limits = { deadline-ms = 30000 }".to_string(),
        };
        partner(&mut text, language, &format!("h-{attack}"), attack, &settings, "");
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
    for attack in dead_lettered
        .iter()
        .map(|e| e.attack)
        .filter(|a| *a != "loop")
        .chain(others.iter().copied())
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
    for expected in &dead_lettered {
        let name = format!("h-{}", expected.attack);
        let runs = by_partner(&name);
        assert!(!runs.is_empty(), "{language} {name} never ended");
        for run in runs {
            let Verdict::DeadLettered { reason, description } = &run.verdict else {
                panic!("{language} {name}: expected a dead letter, got {:?}", run.verdict)
            };
            assert_eq!(reason, expected.reason, "{language} {name}: {description}");
            assert!(
                description.len() <= 4096,
                "{language} {name}: description of {} bytes",
                description.len()
            );
            for needle in expected.description {
                assert!(
                    description.contains(needle),
                    "{language} {name}: `{needle}` not in: {description}"
                );
            }
            if expected.reason.starts_with("Component")
                || ["TooManyRequests", "TooManyOutputs", "OutputTooLarge"].contains(&expected.reason)
            {
                assert!(
                    description.contains(&format!("`{name}`")),
                    "{language} {name}: {description}"
                );
            }
        }
        let stored = store.peek_dead_letters(&format!("{name}-in"), 0, 10).await.unwrap();
        dead_letters.insert(name, stored);
    }
    for (name, stored) in &dead_letters {
        let expected = if name == "h-loop" { LOOPS } else { 1 };
        assert_eq!(stored.len(), expected, "{language} {name}: dead letters on its queue");
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
    if others.contains(&"read-env") {
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
    }
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
    partner(&mut text, "rust", "sleeper", "sleep", &settings, "");
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
