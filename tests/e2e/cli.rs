//! The `sagahost` command line: `validate` and `inspect` as the README shows them.

use std::process::{Command, Output};

use crate::support;

fn sagahost(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sagahost"))
        .args(args)
        .output()
        .expect("running sagahost")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn validate_accepts_every_example_and_lists_its_interfaces() {
    for example in ["mdm", "dataverse-writeback", "erp"] {
        let path = support::component(example);
        let output = sagahost(&["validate".as_ref(), path.as_os_str()]);
        let stdout = text(&output.stdout);
        assert!(output.status.success(), "{example}: {}", text(&output.stderr));
        assert!(stdout.contains("implements sagahost:partner/partner@0.1.0"), "{stdout}");
        assert!(stdout.contains("sagahost:partner/handler@0.1.0"), "{stdout}");
        assert!(stdout.contains("sagahost:partner/log@0.1.0"), "{stdout}");
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(stdout.contains(&format!("size:    {size} bytes")), "{stdout}");
    }
}

#[test]
fn validate_refuses_a_file_that_is_not_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("billing.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap(); // a core module, not a component
    let output = sagahost(&["validate".as_ref(), path.as_os_str()]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("partner `billing`") && stderr.contains("not a valid WebAssembly component"),
        "{stderr}"
    );
}

#[test]
fn inspect_decodes_every_json_sample() {
    let samples: Vec<_> = std::fs::read_dir(support::samples())
        .expect("the samples folder beside the repository")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(samples.len(), 3, "{samples:?}");
    for sample in samples {
        let output = sagahost(&["inspect".as_ref(), sample.as_os_str()]);
        let stdout = text(&output.stdout);
        assert!(
            output.status.success(),
            "{}: {}",
            sample.display(),
            text(&output.stderr)
        );
        let json_start = stdout.find("\n{").expect("canonical JSON after the summary");
        let json: serde_json::Value = serde_json::from_str(&stdout[json_start..]).expect("valid JSON");
        let message = json["MessageName"].as_str().unwrap();
        let entity = json["PrimaryEntityName"].as_str().unwrap();
        let id = json["PrimaryEntityId"].as_str().unwrap();
        assert!(
            stdout.starts_with(&format!("message:  {message} {entity} {id}")),
            "{stdout}"
        );
        assert!(stdout.contains(&format!("target: {entity} {id}")), "{stdout}");
        assert!(stdout.contains("post-image AsynchronousStepPrimaryName"), "{stdout}");
        assert_eq!(json["InputParameters"]["Target"]["$type"], "Entity");
    }
}

#[test]
fn inspect_shows_typed_target_attributes() {
    let sample = support::samples().join("synthetic-update-contact.dcjs.json");
    let output = sagahost(&["inspect".as_ref(), sample.as_os_str()]);
    let stdout = text(&output.stdout);
    for line in [
        "creditlimit         money                  1500.50",
        "statecode           option-set             0",
        "new_colors          option-set-collection  [1, 2]",
        "modifiedon          datetime               2017-09-26T00:04:07Z",
        "modifiedby          reference              systemuser 75c2dd85-e89e-e711-8122-000d3aa2331c",
        "exchangerate        decimal                1.0000000000",
        "alias.name          aliased                account.name = \"Contoso\"",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in:\n{stdout}");
    }
}

#[test]
fn inspect_reports_a_malformed_body_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.json");
    std::fs::write(&path, "{\"MessageName\": \"Create\",\n \"Depth\": }").unwrap();
    let output = sagahost(&["inspect".as_ref(), path.as_os_str()]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("broken.json") && stderr.contains("line 2"), "{stderr}");
}
