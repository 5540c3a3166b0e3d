//! Service Bus sessions driven by the official Azure Service Bus SDKs: for Python
//! (`azure-servicebus`, in the virtualenv `tests/interop/setup-venv` makes) and for JavaScript
//! (`@azure/service-bus`, which `tests/interop/setup-node` installs), each running every check of
//! its sessions script against a broker started here, in process, with the session-enabled queues
//! those checks expect.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use sagahost_broker::{self as broker, BrokerConfig};
use sagahost_transport::embedded::{EmbeddedQueue, QueueSettings};

/// The checks both scripts run; each uses the session-enabled queue `sessions-<check>`.
const CHECKS: [&str; 4] = [
    "next-available-in-order",
    "named-session-state-and-renew",
    "competing-receivers",
    "refusals",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

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
    String::from_utf8(setup.stdout).unwrap().trim().to_owned()
}

/// Runs `program script CONNECTION_STRING` against a fresh in-process broker with a session-enabled
/// queue per check, and asserts that every check passed.
async fn run_session_checks(program: String, script: PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let queue = EmbeddedQueue::open(&dir.path().join("queue.db"), &[]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let config = BrokerConfig {
        queues: CHECKS
            .iter()
            .map(|check| QueueSettings {
                lock_duration: Duration::from_secs(5),
                requires_session: true,
                ..QueueSettings::new(format!("sessions-{check}"))
            })
            .collect(),
        ..BrokerConfig::default()
    };
    let served = tokio::spawn(broker::serve_with(listener, queue, config, shutdown.clone()));

    let connection_string = format!(
        "Endpoint=sb://{address};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    );
    // The client blocks this thread while it runs; the broker serves on the runtime's other one.
    let output = tokio::task::spawn_blocking(move || {
        Command::new(program)
            .arg(script)
            .arg(connection_string)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    shutdown.cancel();
    served.await.unwrap().unwrap();

    let report = String::from_utf8_lossy(&output.stdout).into_owned();
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_receives_sessions() {
    let root = workspace();
    let script = root.join("tests/interop/setup-venv");
    let python = tokio::task::spawn_blocking(move || set_up(&script, "Python SDK"))
        .await
        .unwrap();
    run_session_checks(python, root.join("tests/interop/servicebus_sessions.py")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_javascript_sdk_receives_sessions() {
    let root = workspace();
    let script = root.join("tests/interop/setup-node");
    let dir = tokio::task::spawn_blocking(move || set_up(&script, "JavaScript SDK"))
        .await
        .unwrap();
    run_session_checks("node".to_owned(), Path::new(&dir).join("servicebus_sessions.js")).await;
}
