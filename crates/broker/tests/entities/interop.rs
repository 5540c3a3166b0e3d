//! The endpoint driven by the official SDKs' `ServiceBusAdministrationClient`: Python's
//! (`azure-servicebus` from PyPI, in the virtualenv `tests/interop/setup-venv` makes) and
//! JavaScript's (`@azure/service-bus` from npm, pinned by `tests/interop/js/package-lock.json`,
//! installed by `tests/interop/setup-node`), each with its SDK's AMQP client sending and
//! dead-lettering the messages whose counts it then reads, against a broker of its own: queues,
//! and topics with their subscriptions and rules.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Broker, connection_string};

/// The checks both scripts run, under the same names; each must pass.
const CHECKS: [&str; 13] = [
    "create-queue-with-settings",
    "get-queue",
    "runtime-counts-after-send-and-dead-letter",
    "list-queues-paged",
    "update-queue",
    "delete-queue-and-queue-exists",
    "namespace-properties",
    "requires-session-stored-and-unchangeable",
    "wrong-key-refused-with-401",
    "topic-create-get-update-list-delete",
    "subscription-create-get-update-list-delete",
    "rule-create-get-update-list-delete",
    "topic-and-subscription-runtime-counts-after-send",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs a setup script and returns what it printed: the interpreter or directory to use.
fn set_up(script: &str, what: &str) -> String {
    let script = workspace().join(script);
    let setup = Command::new(&script)
        .output()
        .unwrap_or_else(|err| panic!("running {}: {err}", script.display()));
    assert!(
        setup.status.success(),
        "setting up the {what} failed: {}",
        String::from_utf8_lossy(&setup.stderr)
    );
    String::from_utf8(setup.stdout).unwrap().trim().to_owned()
}

/// Starts a broker, runs `program script AMQP_CONNECTION_STRING ADMIN_CONNECTION_STRING`, and
/// asserts that every check passed.
async fn run_checks(program: String, script: PathBuf) {
    let broker = Broker::start().await;
    let (amqp, admin) = (broker.connection_string(), connection_string(broker.http));
    let output =
        tokio::task::spawn_blocking(move || Command::new(program).arg(script).args([amqp, admin]).output().unwrap())
            .await
            .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for check in CHECKS {
        assert!(
            report.lines().any(|line| line.starts_with(&format!("ok   {check} "))),
            "{check} did not pass:\n{report}"
        );
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_admin_client_passes_every_check() {
    let python = tokio::task::spawn_blocking(|| set_up("tests/interop/setup-venv", "Python SDK"))
        .await
        .unwrap();
    run_checks(python, workspace().join("tests/interop/servicebus_admin.py")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_javascript_admin_client_passes_every_check() {
    let dir = tokio::task::spawn_blocking(|| set_up("tests/interop/setup-node", "JavaScript SDK"))
        .await
        .unwrap();
    run_checks("node".to_owned(), Path::new(&dir).join("servicebus_admin.js")).await;
}
