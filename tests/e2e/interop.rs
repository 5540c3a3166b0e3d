//! `sagahost broker` driven by clients nobody here wrote: the official Azure Service Bus SDKs
//! for Python (`azure-servicebus` from PyPI, in a virtualenv `tests/interop/setup-venv` makes)
//! and for JavaScript (`@azure/service-bus` from npm, pinned by `tests/interop/js/package-lock.json`,
//! installed by `tests/interop/setup-node`), each running every check of its script against a
//! broker of its own.

use std::path::Path;
use std::process::Command;

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

/// Runs a setup script and returns what it printed: the interpreter or directory to use.
fn set_up(script: &Path, what: &str) -> String {
    let setup = Command::new(script)
        .output()
        .unwrap_or_else(|err| panic!("running {}: {err}", script.display()));
    assert!(
        setup.status.success(),
        "setting up the {what} failed: {}",
        String::from_utf8_lossy(&setup.stderr)
    );
    String::from_utf8(setup.stdout).unwrap().trim().to_string()
}

/// Runs `command CONNECTION_STRING` against a fresh broker and asserts every check in `checks`
/// passed; returns the report.
fn run_checks(mut command: Command, checks: &[&str]) -> String {
    let broker = support::BrokerProcess::start(&["--lock-duration-ms", "5000"]);
    let output = command.arg(&broker.connection_string).output().unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for check in checks {
        assert!(
            report.lines().any(|l| l.starts_with(&format!("ok   {check} "))),
            "{check} did not pass:\n{report}"
        );
    }
    report
}

#[test]
fn the_official_python_sdk_passes_every_check_against_the_broker() {
    let root = support::workspace();
    let python = set_up(&root.join("tests/interop/setup-venv"), "Python SDK");
    let mut command = Command::new(python);
    command.arg(root.join("tests/interop/servicebus_sdk.py"));
    run_checks(command, &SHARED_CHECKS);
}

#[test]
fn the_official_javascript_sdk_passes_every_check_against_the_broker() {
    let root = support::workspace();
    let dir = set_up(&root.join("tests/interop/setup-node"), "JavaScript SDK");
    let mut command = Command::new("node");
    command.arg(Path::new(&dir).join("servicebus_sdk.js"));
    let checks: Vec<&str> = SHARED_CHECKS
        .iter()
        .copied()
        .chain(["dead-letter-without-reason", "settle-after-the-link-is-gone"])
        .collect();
    run_checks(command, &checks);
}
