//! Service Bus sessions driven by the official Azure Service Bus SDKs: for Python
//! (`azure-servicebus`, in the virtualenv `tests/interop/setup-venv` makes) and for JavaScript
//! (`@azure/service-bus`, which `tests/interop/setup-node` installs), each running every check of
//! its sessions script against a broker started here, in process, with the session-enabled queues
//! those checks expect.

#[path = "../../../tests/interop/runner.rs"]
mod runner;

use std::path::Path;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use sagahost_broker::{self as broker, BrokerConfig};
use sagahost_transport::embedded::{EmbeddedQueue, QueueSettings};

use runner::{Sdk, run_checks};

/// The checks both scripts run; each uses the session-enabled queue `sessions-<check>`.
const CHECKS: [&str; 4] = [
    "next-available-in-order",
    "named-session-state-and-renew",
    "competing-receivers",
    "refusals",
];

/// Runs the sessions script of `sdk` against a fresh in-process broker with a session-enabled
/// queue per check, and asserts that every check passed.
async fn run_session_checks(sdk: Sdk) {
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
    tokio::task::spawn_blocking(move || {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut command = sdk.script(&workspace, "servicebus_sessions");
        command.arg(connection_string);
        run_checks(command, CHECKS)
    })
    .await
    .unwrap();
    shutdown.cancel();
    served.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_receives_sessions() {
    run_session_checks(Sdk::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_javascript_sdk_receives_sessions() {
    run_session_checks(Sdk::JavaScript).await;
}
