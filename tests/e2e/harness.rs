//! The guest harness on every example's fixtures, through the library and the CLI.

use std::path::PathBuf;
use std::process::Command;
use std::time::SystemTime;

use sagahost::harness::{Harness, Mode, Status};

use crate::support;

const EXAMPLES: [&str; 3] = ["mdm", "dataverse-writeback", "erp"];

/// The same fixtures (`partner.toml`, inputs, `expected.json`) pass against the example written
/// in every language: the proof that the SDKs behave alike.
#[test]
fn every_example_in_every_language_passes_its_fixtures() {
    let cache = tempfile::tempdir().unwrap();
    for language in support::LANGUAGES {
        for example in EXAMPLES {
            let fixtures = support::workspace()
                .join("guest-examples")
                .join(example)
                .join("fixtures");
            let component = support::component_in(language, example);
            let harness = Harness::load_cached(&component, &fixtures, Some(cache.path().to_path_buf()))
                .unwrap_or_else(|err| panic!("{language} {example}: {err:#}"));
            let report = harness.run(Mode::Check).expect("run fixtures");
            assert!(report.passed(), "{language} {example}:\n{}", report.render());
            assert!(
                report.results.len() >= 4,
                "{example} should cover success, transient, fatal and compensation"
            );
        }
    }
}

/// Copies the mdm fixtures to a temporary directory so tests can break them.
fn mdm_fixtures_copy() -> tempfile::TempDir {
    let source = support::workspace().join("guest-examples/mdm/fixtures");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        let target = dir.path().join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir(&target).unwrap();
            for file in std::fs::read_dir(entry.path()).unwrap() {
                let file = file.unwrap();
                std::fs::copy(file.path(), target.join(file.file_name())).unwrap();
            }
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
    // Bodies are referenced relative to the fixture; point them at the originals.
    for fixture in std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
    {
        let path = fixture.path().join("fixture.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let messages = support::workspace().join("guest-examples/messages");
        std::fs::write(
            &path,
            text.replace("../../../messages", &messages.display().to_string()),
        )
        .unwrap();
    }
    dir
}

#[test]
fn a_changed_expectation_fails_with_a_diff_naming_the_path() {
    let dir = mdm_fixtures_copy();
    let expected = dir.path().join("created-and-forwarded/expected.json");
    let text = std::fs::read_to_string(&expected).unwrap();
    std::fs::write(&expected, text.replace("MDM-000042", "MDM-999999")).unwrap();

    let report = Harness::load(&support::component("mdm"), dir.path())
        .unwrap()
        .run(Mode::Check)
        .unwrap();
    assert!(!report.passed());
    let failed = report
        .results
        .iter()
        .find(|r| r.name == "created-and-forwarded")
        .unwrap();
    let Status::Failed { differences, .. } = &failed.status else {
        panic!("expected a failure: {:?}", failed.status)
    };
    assert!(
        differences
            .iter()
            .any(|d| d.contains("$.outcome.decision.forward[0].properties.mdm-id")
                && d.contains("MDM-999999")
                && d.contains("MDM-000042")),
        "{differences:#?}"
    );
    // Every other fixture still passes.
    assert_eq!(
        report.results.iter().filter(|r| r.status == Status::Passed).count(),
        report.results.len() - 1
    );
}

#[test]
fn cli_test_exits_non_zero_on_failure_and_update_rewrites_expectations() {
    let dir = mdm_fixtures_copy();
    let expected = dir.path().join("mdm-unavailable-503/expected.json");
    std::fs::write(&expected, "{}").unwrap();
    let bin = env!("CARGO_BIN_EXE_sagahost");
    let component = support::component("mdm");
    let cache = tempfile::tempdir().unwrap();
    let sagahost = || {
        let mut command = Command::new(bin);
        command.env("SAGAHOST_CACHE_DIR", cache.path());
        command
    };
    let artifacts = || -> Vec<(PathBuf, SystemTime)> {
        std::fs::read_dir(cache.path())
            .unwrap()
            .map(|entry| {
                let path = entry.unwrap().path();
                let modified = path.metadata().unwrap().modified().unwrap();
                (path, modified)
            })
            .collect()
    };

    let failing = sagahost().arg("test").arg(&component).arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&failing.stdout);
    assert!(!failing.status.success(), "{stdout}");
    assert!(stdout.contains("FAIL    mdm-unavailable-503"), "{stdout}");
    assert!(stdout.contains("PASS    created-and-forwarded"), "{stdout}");
    assert!(stdout.contains("5 passed, 1 failed"), "{stdout}");
    // The compiled component is kept, and the later runs load it instead of compiling again.
    let compiled = artifacts();
    assert_eq!(compiled.len(), 1, "{compiled:?}");
    assert!(compiled[0].0.extension().is_some_and(|e| e == "cwasm"), "{compiled:?}");

    let update = sagahost()
        .arg("test")
        .arg(&component)
        .arg(dir.path())
        .arg("--update")
        .output()
        .unwrap();
    assert!(update.status.success());
    let rewritten: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&expected).unwrap()).unwrap();
    assert_eq!(
        rewritten["outcome"]["decision"]["retry"]["reason"],
        "MDM create: HTTP 503: Service Unavailable"
    );

    let passing = sagahost().arg("test").arg(&component).arg(dir.path()).output().unwrap();
    assert!(passing.status.success(), "{}", String::from_utf8_lossy(&passing.stdout));
    assert_eq!(artifacts(), compiled);

    // `--no-cache` compiles afresh and writes nothing.
    let uncached = sagahost()
        .args(["test", "--no-cache"])
        .arg(&component)
        .arg(dir.path())
        .env("SAGAHOST_CACHE_DIR", cache.path().join("unused"))
        .output()
        .unwrap();
    assert!(uncached.status.success());
    assert!(!cache.path().join("unused").exists());
}

#[test]
fn fixture_with_a_bad_mock_is_an_error_naming_the_file() {
    let dir = mdm_fixtures_copy();
    let path = dir.path().join("mdm-unavailable-503/fixture.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("status = 503", "error = \"exploded\"")).unwrap();
    let report = Harness::load(&support::component("mdm"), dir.path())
        .unwrap()
        .run(Mode::Check)
        .unwrap();
    let result = report.results.iter().find(|r| r.name == "mdm-unavailable-503").unwrap();
    let Status::Error(message) = &result.status else {
        panic!("expected an error: {:?}", result.status)
    };
    assert!(
        message.contains("fixture.toml") && message.contains("exploded") && message.contains("timeout"),
        "{message}"
    );
}

/// A fixture runs under the partner's `max-rounds`, as production does: with none allowed,
/// a component that needs a round of requests fails the step instead of passing.
#[test]
fn fixtures_run_under_the_partners_max_rounds() {
    let dir = mdm_fixtures_copy();
    let partner = dir.path().join("partner.toml");
    let text = std::fs::read_to_string(&partner).unwrap();
    std::fs::write(&partner, format!("max-rounds = 0\n{text}")).unwrap();
    let report = Harness::load(&support::component("mdm"), dir.path())
        .unwrap()
        .run(Mode::Check)
        .unwrap();
    let created = report
        .results
        .iter()
        .find(|r| r.name == "created-and-forwarded")
        .unwrap();
    let Status::Failed { differences, .. } = &created.status else {
        panic!("expected a failure: {:?}", created.status)
    };
    assert!(
        differences.iter().any(|d| d.contains("more than 0 rounds")),
        "{differences:#?}"
    );
}

/// `sagahost test --watch --build CMD` builds and runs the fixtures, then again when a source
/// file changes; the build writing its output starts nothing.
#[test]
fn watch_rebuilds_and_reruns_the_fixtures_when_a_source_changes() {
    use std::io::BufRead as _;
    use std::time::Duration;

    let fixtures = mdm_fixtures_copy();
    let project = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let choice = project.path().join("src/choice");
    std::fs::create_dir_all(choice.parent().unwrap()).unwrap();
    std::fs::write(&choice, support::component("mdm").display().to_string()).unwrap();
    let mut watch = Command::new(env!("CARGO_BIN_EXE_sagahost"))
        .current_dir(project.path())
        .args(["test", "--watch", "--build"])
        .arg("mkdir -p dist && cp \"$(cat src/choice)\" dist/p.wasm")
        .arg("dist/p.wasm")
        .arg(fixtures.path())
        .env("SAGAHOST_CACHE_DIR", cache.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (line, lines) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for text in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line.send(text);
        }
    });
    let mut seen = Vec::new();
    let mut wait_for = |what: &str| {
        loop {
            let Ok(text) = lines.recv_timeout(Duration::from_secs(60)) else {
                panic!("no `{what}` in:\n{}", seen.join("\n"))
            };
            seen.push(text.clone());
            if text.contains(what) {
                return;
            }
        }
    };
    wait_for("==> build:");
    wait_for("6 passed, 0 failed");
    wait_for("watching");
    // The erp component does not make the mdm requests: every fixture fails.
    std::fs::write(&choice, support::component("erp").display().to_string()).unwrap();
    wait_for("src/choice changed");
    wait_for("0 passed, 6 failed");
    wait_for("watching");
    watch.kill().unwrap();
    watch.wait().unwrap();
}

/// A production failure reproduced: the MDM is down, the host exhausts its retries and
/// dead-letters the contact; `sagahost fixture from-dead-letter` turns that dead letter into a
/// fixture (the body byte for byte, the saga state, the partner's config), `sagahost test` names
/// the request whose answer is missing, and once the answer is filled in the fixture shows the
/// failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_becomes_a_fixture_that_reproduces_the_failure() {
    use sagahost_transport::dead_letters::DeadLetterQueues as _;
    use sagahost_transport::{OutgoingMessage, Output, Transport as _};

    let mdm = crate::partners::Partner::always(503, "down for maintenance").await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("mdm-api-key");
    std::fs::write(&key, "k-123").unwrap();
    let config = dir.path().join("sagahost.toml");
    std::fs::write(
        &config,
        format!(
            "data-dir = {data:?}\n[partners.mdm]\ncomponent = {component:?}\nqueue = \"contacts\"\n\
             routes = {{ next = \"parked\" }}\nconfig = {{ mdm-url = \"{origin}/api\" }}\n\
             secrets = {{ mdm-api-key = {{ file = {key:?} }} }}\noutbound = {{ allow = [\"{origin}\"] }}\n\
             retry = {{ initial-delay-ms = 20, max-delay-ms = 20, max-attempts = 2, jitter = 0.0 }}\n",
            data = dir.path().join("data").display().to_string(),
            component = support::component("mdm").display().to_string(),
            origin = mdm.origin(),
            key = key.display().to_string(),
        ),
    )
    .unwrap();
    let loaded = sagahost::config::Config::load(&config).unwrap().config;
    let host = sagahost::service::Host::start(&loaded).await.unwrap();
    let body = std::fs::read(support::workspace().join("guest-examples/messages/contact-create.json")).unwrap();
    let store = host.transport.embedded().unwrap().clone();
    let message = OutgoingMessage {
        content_type: Some("application/json".into()),
        body: body.clone(),
        properties: vec![("x-source".into(), "dataverse".into())],
        ..Default::default()
    };
    store
        .send(vec![Output {
            queue: "contacts".into(),
            message,
        }])
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let letter = loop {
        if let Some(letter) = store.peek_dead_letters("contacts", 0, 1).await.unwrap().pop() {
            break letter;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the contact was never dead-lettered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    host.shutdown().await;

    let fixtures = dir.path().join("fixtures");
    let fixture = fixtures.join("mdm-down");
    let sagahost = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sagahost"));
        command.env("SAGAHOST_CACHE_DIR", dir.path().join("cache"));
        command
    };
    let made = sagahost()
        .args(["fixture", "from-dead-letter", "--config"])
        .arg(&config)
        .args(["--queue", "contacts", &letter.message.sequence_number.to_string()])
        .arg(&fixture)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    assert_eq!(std::fs::read(fixture.join("message.json")).unwrap(), body);
    let text = std::fs::read_to_string(fixture.join("fixture.toml")).unwrap();
    for needle in [
        "TODO: the HTTP answers",
        "RetriesExhausted",
        "x-source = \"dataverse\"",
        "attempt = 2",
    ] {
        assert!(text.contains(needle), "`{needle}` not in:\n{text}");
    }
    let partner = std::fs::read_to_string(fixtures.join("partner.toml")).unwrap();
    assert!(
        partner.contains("name = \"mdm\"") && partner.contains("/api"),
        "{partner}"
    );
    assert!(
        !partner.contains("k-123") && !text.contains("k-123"),
        "a secret reached the fixture"
    );

    // Without the answer, `test --update` records the request the component made.
    let component = support::component("mdm");
    let update = || {
        let update = sagahost()
            .arg("test")
            .arg("--update")
            .arg(&component)
            .arg(&fixtures)
            .output()
            .unwrap();
        assert!(update.status.success(), "{}", String::from_utf8_lossy(&update.stdout));
    };
    update();
    let expected = std::fs::read_to_string(fixture.join("expected.json")).unwrap();
    assert!(
        expected.contains("/api/contacts") && expected.contains("no recorded answer"),
        "{expected}"
    );

    // The team fills in what the MDM answered: the fixture reproduces the retry.
    let url = "https://mdm.example.com/api/contacts";
    let partner = partner.replace(&format!("{}/api", mdm.origin()), "https://mdm.example.com/api");
    std::fs::write(fixtures.join("partner.toml"), partner).unwrap();
    std::fs::write(
        fixture.join("fixture.toml"),
        format!(
            "{text}\n[[http]]\nmethod = \"POST\"\nurl = \"{url}\"\nstatus = 503\nbody = \"down for maintenance\"\n"
        ),
    )
    .unwrap();
    update();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("expected.json")).unwrap()).unwrap();
    assert_eq!(
        expected["outcome"]["decision"]["retry"]["reason"], "MDM create: HTTP 503: down for maintenance",
        "{expected:#}"
    );
    let check = sagahost().arg("test").arg(&component).arg(&fixtures).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
}
