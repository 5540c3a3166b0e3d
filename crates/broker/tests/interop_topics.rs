//! Topics and subscriptions driven by the official Azure Service Bus SDKs: for Python
//! (`azure-servicebus`, in the virtualenv `tests/interop/setup-venv` makes) and for JavaScript
//! (`@azure/service-bus`, which `tests/interop/setup-node` installs), each running the topic checks
//! of its script against a broker started here, in process, with the topic those checks expect.
//! (The queue checks run from the host crate's e2e tests against the `sagahost broker` binary; this
//! runner keeps topics testable without building the host.)

#[path = "../../../tests/interop/runner.rs"]
mod runner;

use std::path::Path;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use sagahost_broker::{self as broker, BrokerConfig};
use sagahost_transport::embedded::{EmbeddedQueue, Rule, SubscriptionSettings, TopicSettings};
use sagahost_transport::filter::{CorrelationFilter, RuleFilter};

use runner::{Sdk, run_checks};

/// The checks of `servicebus_sdk.py` that need [`interop_topic`].
const TOPIC_CHECKS: [&str; 3] = [
    "topic-fan-out-with-filters",
    "subscription-dead-letter",
    "topic-schedule-and-subscription-lock",
];

/// The topic the script's topic checks expect (see its docstring).
fn interop_topic() -> TopicSettings {
    let rule = |name: &str, filter: RuleFilter| Rule {
        name: name.into(),
        filter,
    };
    TopicSettings {
        name: "interop-topic".into(),
        subscriptions: vec![
            SubscriptionSettings::new("all"),
            SubscriptionSettings {
                rules: vec![rule("creates", RuleFilter::Sql("kind = 'create'".into()))],
                ..SubscriptionSettings::new("creates")
            },
            SubscriptionSettings {
                rules: vec![rule(
                    "eu",
                    RuleFilter::Correlation(CorrelationFilter {
                        properties: vec![("region".into(), "eu".into())],
                        ..CorrelationFilter::default()
                    }),
                )],
                ..SubscriptionSettings::new("eu")
            },
            SubscriptionSettings {
                rules: vec![rule("hello", RuleFilter::Sql("sys.Label = 'hello'".into()))],
                ..SubscriptionSettings::new("greetings")
            },
            // Its rules are changed by the JavaScript rule-manager check.
            SubscriptionSettings::new("managed"),
        ],
    }
}

/// Runs the script of `sdk` with `CONNECTION_STRING TOPIC_CHECKS… extra…` against a fresh
/// in-process broker with [`interop_topic`], and asserts that every check named passed.
async fn run_topic_checks(sdk: Sdk, extra: &'static [&'static str]) {
    let dir = tempfile::tempdir().unwrap();
    let queue = EmbeddedQueue::open(&dir.path().join("queue.db"), &[]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let config = BrokerConfig {
        lock_duration: Duration::from_secs(5),
        topics: vec![interop_topic()],
        ..BrokerConfig::default()
    };
    let served = tokio::spawn(broker::serve_with(listener, queue, config, shutdown.clone()));

    let connection_string = format!(
        "Endpoint=sb://{address};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    );
    // The client blocks this thread while it runs; the broker serves on the runtime's other one.
    tokio::task::spawn_blocking(move || {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut command = sdk.script(&workspace, "servicebus_sdk");
        command.arg(connection_string).args(TOPIC_CHECKS).args(extra);
        run_checks(command, TOPIC_CHECKS.iter().chain(extra).copied())
    })
    .await
    .unwrap();
    shutdown.cancel();
    served.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_sends_to_topics_and_receives_from_subscriptions() {
    run_topic_checks(Sdk::Python, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_javascript_sdk_sends_to_topics_and_receives_from_subscriptions() {
    run_topic_checks(Sdk::JavaScript, &["subscription-rule-manager"]).await;
}
