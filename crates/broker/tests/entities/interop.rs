//! The endpoint driven by the official Python SDK's `ServiceBusAdministrationClient`
//! (`azure-servicebus` from PyPI, in the virtualenv `tests/interop/setup-venv` makes), with the
//! SDK's AMQP client sending and dead-lettering the messages whose counts it then reads.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Broker, connection_string};

/// The checks `tests/interop/servicebus_admin.py` runs, each of which must pass.
const CHECKS: [&str; 9] = [
    "create-queue-with-settings",
    "get-queue",
    "runtime-counts-after-send-and-dead-letter",
    "list-queues-paged",
    "update-queue",
    "delete-queue-and-queue-exists",
    "namespace-properties",
    "sessions-refused-with-400",
    "wrong-key-refused-with-401",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `tests/interop/setup-venv` and returns the venv's python.
fn python() -> String {
    let script = workspace().join("tests/interop/setup-venv");
    let setup = Command::new(&script)
        .output()
        .unwrap_or_else(|err| panic!("running {}: {err}", script.display()));
    assert!(
        setup.status.success(),
        "setting up the Python SDK failed: {}",
        String::from_utf8_lossy(&setup.stderr)
    );
    String::from_utf8(setup.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_admin_client_passes_every_check() {
    let broker = Broker::start().await;
    let (amqp, admin) = (broker.connection_string(), connection_string(broker.http));
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(workspace().join("tests/interop/servicebus_admin.py"))
            .args([amqp, admin])
            .output()
            .unwrap()
    })
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
