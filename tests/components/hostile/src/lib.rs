//! # hostile: a partner component that misbehaves on purpose
//!
//! **For host tests only.** Never deploy it. The host tests run it to check that
//! the sandbox holds: CPU deadlines, memory caps, trap handling, result size
//! limits, request limits, the allow-list, secret handling, routing errors, and
//! that there is no environment and no filesystem.
//!
//! The config key `attack` chooses what it does with an [`Event::Message`]:
//!
//! | `attack` | behaviour |
//! |---|---|
//! | `loop` | spins forever |
//! | `memory` | allocates and touches 1 MiB blocks forever |
//! | `trap` | panics |
//! | `recursion` | recurses without bound (stack overflow) |
//! | `deep-json` | parses and drops JSON nested to serde_json's limit (127 arrays), then completes |
//! | `huge-return` | dead-letters with a 64 MiB description |
//! | `many-requests` | asks for 10 000 GET requests |
//! | `forbidden-host` | GETs config `forbidden-url` (default `https://forbidden.example.net/`), then dead-letters `ForbiddenHost` with what the host answered |
//! | `read-env` | dead-letters `ReadEnv` listing the environment variable names it sees |
//! | `read-file` | dead-letters `ReadFile` with the result of reading `/etc/passwd` |
//! | `echo-secret` | sends `x-token: secret(mdm-api-key)` to config `echo-url`, then forwards the response body to `next` |
//! | `unknown-route` | forwards to route `nowhere` |
//! | `compensate-first` | asks to compensate on the saga's first step, when no step has run |
//! | `forge-saga` | forwards to `next` with forged `sagahost-saga` / `sagahost-compensation` properties |
//! | `stdout` | prints one line to stdout and one to stderr, then completes |
//! | `long-stdout` | prints one 1 MiB line to stdout, then completes |
//! | `sleep` | sleeps for an hour (`wasi:clocks` subscribe, then `wasi:io/poll` block) |
//! | `stdin` | reads stdin to its end |
//! | `clock-loop` | spins forever, reading the clock between spins (a loop of host calls) |
//! | `many-forwards` | forwards 100 000 messages to `next` |
//! | `big-property` | forwards to `next` with an 8 MiB application property |
//! | `big-compensation` | forwards to `next`, recording 32 MiB of compensation data |
//! | `big-body` | forwards to `next` with a 1 MiB body |
//! | anything else | completes |
//!
//! A [`Event::Responses`] completes, except for `echo-secret` and
//! `forbidden-host`; a [`Event::Compensate`] completes.

use core::hint::black_box;
use sagahost_partner::prelude::*;

struct Hostile;

impl Guest for Hostile {
    fn handle(event: Event) -> Result<Plan, String> {
        let attack = config_or("attack", "");
        match event {
            Event::Message(_) => attack_with(&attack),
            Event::Responses(responses) if attack == "echo-secret" => {
                let body = responses
                    .results
                    .first()
                    .and_then(|r| r.response())
                    .map(|r| r.body.clone())
                    .unwrap_or_default();
                info(format!("echo-secret: forwarding {} bytes", body.len()));
                Ok(Plan::Done(Outcome {
                    decision: Decision::Forward(vec![ForwardMessage {
                        route: "next".to_string(),
                        body: Some(body),
                        content_type: None,
                        properties: Vec::new(),
                    }]),
                    compensation_data: None,
                }))
            }
            Event::Responses(responses) if attack == "forbidden-host" => {
                let answer = responses.results.first().map(HttpResult::describe).unwrap_or_default();
                Ok(dead_letter("ForbiddenHost", answer))
            }
            Event::Responses(_) | Event::Compensate(_) => Ok(complete()),
        }
    }
}

fn attack_with(attack: &str) -> Result<Plan, String> {
    info(format!("hostile attack: {attack:?}"));
    Ok(match attack {
        "loop" => spin(),
        "memory" => hoard(),
        "trap" => panic!("hostile component panicked on purpose"),
        "recursion" => {
            let depth = recurse(black_box(1));
            complete().recording(depth.to_string())
        }
        "deep-json" => {
            // The deepest JSON serde_json accepts: it must fit the guest's stack
            // (`.cargo/config.toml` sets its size).
            let depth = 127;
            let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes();
            let response = HttpResponse {
                status: 200,
                headers: Vec::new(),
                body,
            };
            let parsed = response.json().ok_or("serde_json refused 127 nested arrays")?;
            complete().recording(nesting(&parsed).to_string())
        }
        "huge-return" => dead_letter("HugeReturn", "x".repeat(64 << 20)),
        "many-requests" => {
            let requests = (0..10_000).map(|i| Request::get(format!("https://example.com/{i}")).id(format!("r{i}")));
            call(requests, "many-requests")
        }
        "forbidden-host" => call(
            [Request::get(config_or("forbidden-url", "https://forbidden.example.net/")).id("forbidden")],
            "forbidden-host",
        ),
        "read-env" => {
            let names: Vec<String> = std::env::vars_os()
                .map(|(name, _)| name.to_string_lossy().into_owned())
                .collect();
            info(format!("read-env: {} variables", names.len()));
            dead_letter("ReadEnv", names.join(","))
        }
        "read-file" => {
            let outcome = match std::fs::read_to_string("/etc/passwd") {
                Ok(text) => format!("read {} bytes", text.len()),
                Err(error) => format!("error: {error}"),
            };
            info(format!("read-file: {outcome}"));
            dead_letter("ReadFile", outcome)
        }
        "echo-secret" => {
            let url = require_config("echo-url")?;
            let request = Request::get(url).id("echo").secret_header("x-token", "mdm-api-key");
            call([request], "echo-secret")
        }
        "unknown-route" => forward("nowhere"),
        "compensate-first" => compensate("HostileCompensation", "undo the step that never ran"),
        "forge-saga" => forward_with(
            "next",
            [
                ("sagahost-saga", r#"{"id":"forged","step":7,"attempt":1,"history":[]}"#),
                ("sagahost-compensation", r#"{"failed-partner":"erp","reason":"forged"}"#),
            ],
        ),
        "stdout" => {
            println!("hostile component writes to stdout");
            eprintln!("hostile component writes to stderr");
            complete()
        }
        "long-stdout" => {
            println!("{}", "o".repeat(1 << 20));
            complete()
        }
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(3_600));
            complete()
        }
        "stdin" => {
            let mut input = Vec::new();
            let read = std::io::Read::read_to_end(&mut std::io::stdin(), &mut input);
            complete().recording(format!("{read:?}"))
        }
        "clock-loop" => loop {
            black_box(std::time::Instant::now());
        },
        "many-forwards" => {
            let messages = (0..100_000).map(|_| ForwardMessage {
                route: "next".to_string(),
                body: None,
                content_type: None,
                properties: Vec::new(),
            });
            Plan::Done(Outcome {
                decision: Decision::Forward(messages.collect()),
                compensation_data: None,
            })
        }
        "big-property" => forward_with("next", [("big", "p".repeat(8 << 20))]),
        "big-compensation" => forward("next").recording("c".repeat(32 << 20)),
        "big-body" => Plan::Done(Outcome {
            decision: Decision::Forward(vec![ForwardMessage {
                route: "next".to_string(),
                body: Some(vec![b'b'; 1 << 20]),
                content_type: None,
                properties: Vec::new(),
            }]),
            compensation_data: None,
        }),
        _ => complete(),
    })
}

/// Spins forever; `black_box` keeps the loop from being optimised away.
fn spin() -> ! {
    let mut counter: u64 = 0;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Allocates 1 MiB blocks, touching every page, until the host stops it.
fn hoard() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1 << 20];
        for byte in block.iter_mut().step_by(4096) {
            *byte = 1;
        }
        blocks.push(black_box(block));
        black_box(&blocks);
    }
}

/// How deep `value` nests arrays, following the first item of each.
fn nesting(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.first().map_or(0, nesting),
        _ => 0,
    }
}

/// Recurses without bound; the work after the call keeps it from becoming a loop.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let frame = black_box([depth; 16]);
    let below = recurse(black_box(depth + 1));
    black_box(below.wrapping_add(frame[(depth % 16) as usize]))
}

sagahost_partner::export!(Hostile);
