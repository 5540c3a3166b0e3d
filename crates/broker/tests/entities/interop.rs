//! The endpoint driven by the official SDKs' `ServiceBusAdministrationClient`: Python's
//! (`azure-servicebus` from PyPI, in the virtualenv `tests/interop/setup-venv` makes) and
//! JavaScript's (`@azure/service-bus` from npm, pinned by `tests/interop/js/package-lock.json`,
//! installed by `tests/interop/setup-node`), each with its SDK's AMQP client sending and
//! dead-lettering the messages whose counts it then reads, against a broker of its own: queues,
//! and topics with their subscriptions and rules.

use std::path::Path;

use crate::runner::{Sdk, run_checks};
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

/// Starts a broker, runs the admin script of `sdk` with `AMQP_CONNECTION_STRING
/// ADMIN_CONNECTION_STRING`, and asserts that every check passed.
async fn run_admin_checks(sdk: Sdk) {
    let broker = Broker::start().await;
    let (amqp, admin) = (broker.connection_string(), connection_string(broker.http));
    tokio::task::spawn_blocking(move || {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut command = sdk.script(&workspace, "servicebus_admin");
        command.args([amqp, admin]);
        run_checks(command, CHECKS)
    })
    .await
    .unwrap();
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_admin_client_passes_every_check() {
    run_admin_checks(Sdk::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_javascript_admin_client_passes_every_check() {
    run_admin_checks(Sdk::JavaScript).await;
}
