//! `sagahost new` in every language: the project builds with the command it prints (the one
//! its README gives) and passes its fixtures with `sagahost test`, with no edits.
//!
//! Each language's build fetches its tools (crates, npm packages, the componentize-py wheel)
//! from the registries a partner team would use; cargo's, npm's and pip's own caches make the
//! later runs quicker.

use std::path::Path;
use std::process::Command;

use crate::support;

/// The commands `sagahost new` prints after `next:`: `cd DIR`, the build, the test.
fn next_steps(stdout: &str) -> (String, String) {
    let steps: Vec<&str> = stdout
        .split_once("next:\n")
        .map(|(_, rest)| rest.lines().map(str::trim).collect())
        .unwrap_or_default();
    match steps.as_slice() {
        [cd, build, test] if cd.starts_with("cd ") && test.starts_with("sagahost test ") => {
            (build.to_string(), test["sagahost ".len()..].to_string())
        }
        _ => panic!("no `next:` steps in:\n{stdout}"),
    }
}

fn sh(dir: &Path, command: &str) -> std::process::Output {
    // As a partner team runs it: the project's own target folder, not this workspace's.
    Command::new("sh")
        .args(["-c", command])
        .current_dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap()
}

#[test]
fn a_new_project_in_every_language_builds_and_passes_its_fixtures() {
    let sagahost = env!("CARGO_BIN_EXE_sagahost");
    let cache = tempfile::tempdir().unwrap();
    for language in support::LANGUAGES {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("{language}-crm");
        let new = Command::new(sagahost)
            .args(["new", "--language", language, &name])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&new.stdout);
        assert!(
            new.status.success(),
            "{language}: {stdout}{}",
            String::from_utf8_lossy(&new.stderr)
        );
        let project = dir.path().join(&name);
        let (build, test) = next_steps(&stdout);
        // The README gives the same commands.
        let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
        assert!(
            readme.contains(&build) && readme.contains(&format!("sagahost {test}")),
            "{readme}"
        );

        let built = sh(&project, &build);
        assert!(
            built.status.success(),
            "{language}: `{build}` failed:\n{}{}",
            String::from_utf8_lossy(&built.stdout),
            String::from_utf8_lossy(&built.stderr)
        );
        let tested = Command::new(sagahost)
            .args(test.split(' '))
            .current_dir(&project)
            .env("SAGAHOST_CACHE_DIR", cache.path())
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&tested.stdout);
        assert!(tested.status.success(), "{language}: sagahost {test}:\n{report}");
        assert!(report.contains("2 passed, 0 failed"), "{language}: {report}");
    }
}
