//! `sagahost broker` driven by clients nobody here wrote: the official Azure Service Bus SDKs
//! for Python (`azure-servicebus` from PyPI, in a virtualenv `tests/interop/setup-venv` makes)
//! and for JavaScript (`@azure/service-bus` from npm, pinned by `tests/interop/js/package-lock.json`,
//! installed by `tests/interop/setup-node`), each running every check of its script against a
//! broker of its own.

#[path = "../interop/runner.rs"]
mod runner;

use runner::{Sdk, run_checks};

use crate::support;

/// The checks both SDKs run, under the same names.
const SHARED_CHECKS: [&str; 8] = [
    "send-receive-complete",
    "batch-send",
    "schedule-and-cancel",
    "abandon-redelivers-with-count+1",
    "dead-letter-to-dlq-with-reason",
    "renew-lock",
    "peek",
    "receive-and-delete",
];

/// Runs `command CONNECTION_STRING` against a fresh broker and asserts every check in `checks`
/// passed.
fn run_against_broker(mut command: std::process::Command, checks: &[&str]) {
    let broker = support::BrokerProcess::start(&["--lock-duration-ms", "5000"]);
    command.arg(&broker.connection_string);
    run_checks(command, checks.iter().copied());
}

#[test]
fn the_official_python_sdk_passes_every_check_against_the_broker() {
    let command = Sdk::Python.script(&support::workspace(), "servicebus_sdk");
    run_against_broker(command, &SHARED_CHECKS);
}

#[test]
fn the_official_javascript_sdk_passes_every_check_against_the_broker() {
    let command = Sdk::JavaScript.script(&support::workspace(), "servicebus_sdk");
    let checks: Vec<&str> = SHARED_CHECKS
        .iter()
        .copied()
        .chain(["dead-letter-without-reason", "settle-after-the-link-is-gone"])
        .collect();
    run_against_broker(command, &checks);
}
