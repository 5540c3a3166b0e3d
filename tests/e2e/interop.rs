//! `sagahost broker` driven by clients nobody here wrote: the official Azure Service Bus SDKs
//! for Python (`azure-servicebus` from PyPI, in a virtualenv `tests/interop/setup-venv` makes)
//! and for JavaScript (`@azure/service-bus` from npm, pinned by `tests/interop/js/package-lock.json`,
//! installed by `tests/interop/setup-node`), each running every check of its script against a
//! broker of its own.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

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

/// A `sagahost broker` on a loopback port, over a fresh data directory; killed on drop.
struct Broker {
    child: Child,
    connection_string: String,
    _data: tempfile::TempDir,
}

impl Broker {
    fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sagahost"))
            .args([
                "broker",
                "--listen",
                "127.0.0.1:0",
                "--lock-duration-ms",
                "5000",
                "--data",
            ])
            .arg(data.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line.trim().rsplit(' ').next().expect("the broker prints its address");
        let connection_string = format!(
            "Endpoint=sb://{addr};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
        );
        Self {
            child,
            connection_string,
            _data: data,
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    String::from_utf8(setup.stdout).unwrap().trim().to_string()
}

/// Runs `command CONNECTION_STRING` against a fresh broker and asserts every check in `checks`
/// passed; returns the report.
fn run_checks(mut command: Command, checks: &[&str]) -> String {
    let broker = Broker::start();
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
