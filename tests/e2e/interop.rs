//! `sagahost broker` driven by a client nobody here wrote: the official Azure
//! Service Bus SDK for Python (`azure-servicebus` from PyPI, in a virtualenv the
//! test creates), running every check in `tests/interop/servicebus_sdk.py`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::support;

#[test]
fn the_official_python_sdk_passes_every_check_against_the_broker() {
    let root = support::workspace();
    let setup = Command::new(root.join("tests/interop/setup-venv"))
        .output()
        .expect("running tests/interop/setup-venv");
    assert!(
        setup.status.success(),
        "setting up the Python SDK failed: {}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let python = String::from_utf8(setup.stdout).unwrap().trim().to_string();

    let data = tempfile::tempdir().unwrap();
    let mut broker = Command::new(env!("CARGO_BIN_EXE_sagahost"))
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
    BufReader::new(broker.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .rsplit(' ')
        .next()
        .expect("the broker prints its address")
        .to_string();

    let connection_string = format!(
        "Endpoint=sb://{addr};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    );
    let checks = Command::new(&python)
        .arg(root.join("tests/interop/servicebus_sdk.py"))
        .arg(&connection_string)
        .output()
        .unwrap();
    broker.kill().unwrap();
    let _ = broker.wait();
    let report = String::from_utf8_lossy(&checks.stdout);
    assert!(
        checks.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&checks.stderr)
    );
    for check in [
        "send-receive-complete",
        "batch-send",
        "schedule-and-cancel",
        "abandon-redelivers-with-count+1",
        "dead-letter-to-dlq-with-reason",
        "renew-lock",
        "peek",
        "receive-and-delete",
    ] {
        assert!(
            report.lines().any(|l| l.starts_with(&format!("ok   {check} "))),
            "{check} did not pass:\n{report}"
        );
    }
}
