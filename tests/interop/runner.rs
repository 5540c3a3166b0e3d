//! Runs the interop scripts beside this file: sets up an official Service Bus SDK, runs one of
//! its scripts, and checks the report (`ok   <check> …` a line per passed check). The host's
//! end-to-end tests and the broker's tests drive the same scripts against brokers of their own,
//! so both include this file (`#[path = "…/tests/interop/runner.rs"]`) rather than a crate.

use std::path::Path;
use std::process::Command;

/// An official SDK with interop scripts here.
#[derive(Debug, Clone, Copy)]
pub enum Sdk {
    /// `azure-servicebus`, in the virtualenv `setup-venv` makes.
    Python,
    /// `@azure/service-bus`, which `setup-node` installs from the pinned lock file.
    JavaScript,
}

impl Sdk {
    /// The command that runs the script `stem` (e.g. `servicebus_sessions`) with this SDK, once
    /// the SDK is set up. Blocking: setting up may install packages.
    pub fn script(self, workspace: &Path, stem: &str) -> Command {
        let interop = workspace.join("tests/interop");
        match self {
            Self::Python => {
                let mut command = Command::new(set_up(&interop.join("setup-venv"), "Python SDK"));
                command.arg(interop.join(format!("{stem}.py")));
                command
            }
            Self::JavaScript => {
                let dir = set_up(&interop.join("setup-node"), "JavaScript SDK");
                let mut command = Command::new("node");
                command.arg(Path::new(&dir).join(format!("{stem}.js")));
                command
            }
        }
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
    String::from_utf8(setup.stdout).unwrap().trim().to_owned()
}

/// Runs `command` (blocking) and asserts that it succeeded and reported each of `checks` as
/// passed; returns the report.
pub fn run_checks<'a>(mut command: Command, checks: impl IntoIterator<Item = &'a str>) -> String {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("running {command:?}: {err}"));
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for check in checks {
        assert!(
            report.lines().any(|line| line.starts_with(&format!("ok   {check} "))),
            "{check} did not pass:\n{report}"
        );
    }
    report
}
