//! The `sagahost` command line as the README shows it: `validate`, `inspect`, `send`,
//! `dead-letters`, `run` with a config named the way the README names it, and `deploy kubernetes`.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sagahost_transport::servicebus::{ServiceBusOptions, ServiceBusTransport};
use sagahost_transport::sessions::Sessions;
use sagahost_transport::{OutgoingMessage, Output as QueueOutput, Transport};

use crate::support;

fn sagahost(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sagahost"))
        .args(args)
        .output()
        .expect("running sagahost")
}

/// Runs `sagahost ARGS` with `dir` as its working directory and `env` added to its environment.
fn sagahost_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sagahost"))
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .expect("running sagahost")
}

/// Runs `sagahost run --config CONFIG` in `dir` with `env` added, expecting it to refuse to
/// start: its stderr, or a panic if it is still running after 30 s.
fn refused_run(dir: &Path, config: &str, env: &[(&str, &str)]) -> String {
    let stderr = dir.join(format!("{config}.stderr"));
    let mut host = Command::new(env!("CARGO_BIN_EXE_sagahost"))
        .args(["run", "--config", config])
        .current_dir(dir)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("running sagahost");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = host.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            host.kill().unwrap();
            host.wait().unwrap();
            panic!("sagahost run --config {config} started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    std::fs::read_to_string(stderr).unwrap()
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
        // Built with the 128 KiB stack of `.cargo/config.toml`: 3 pages, and no note about it.
        assert!(stdout.contains("memory at start: 192 KiB"), "{stdout}");
        assert!(!stdout.contains("note:"), "{stdout}");
    }
}

/// A component whose memory starts large (a TypeScript one: SpiderMonkey's image) is told
/// that every call resets it.
#[test]
fn validate_says_what_a_large_starting_memory_costs() {
    let path = support::component_in("typescript", "mdm");
    let output = sagahost(&["validate".as_ref(), path.as_os_str()]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let kib: u64 = stdout
        .split_once("memory at start: ")
        .and_then(|(_, rest)| rest.split_once(" KiB"))
        .and_then(|(kib, _)| kib.parse().ok())
        .unwrap_or_else(|| panic!("no starting memory in {stdout}"));
    assert!(kib > 512, "{stdout}");
    assert!(
        stdout.contains("note: the host resets this memory after every call"),
        "{stdout}"
    );
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
fn validate_refuses_a_component_of_another_world() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("billing.wasm");
    std::fs::write(&path, b"\0asm\x0d\0\x01\0").unwrap(); // a component that exports nothing
    let output = sagahost(&["validate".as_ref(), path.as_os_str()]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("partner `billing`")
            && stderr.contains("does not implement the `sagahost:partner/partner` world")
            && stderr.contains("sagahost:partner/handler@0.1.0"),
        "{stderr}"
    );
}

#[test]
fn inspect_decodes_every_json_sample() {
    let json_files = |folder: &std::path::Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(folder)
            .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect()
    };
    assert_eq!(json_files(&support::samples()).len(), 3);
    for sample in support::sample_folders().iter().flat_map(|folder| json_files(folder)) {
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
        let images = json["PostEntityImages"].as_object().unwrap();
        assert!(!images.is_empty(), "{}", sample.display());
        for image in images.keys() {
            assert!(stdout.contains(&format!("post-image {image}: ")), "{stdout}");
        }
        assert_eq!(json["InputParameters"]["Target"]["$type"], "Entity");
    }
}

#[test]
fn inspect_shows_typed_target_attributes() {
    let expected: [(&str, &[&str]); 2] = [
        (
            "account-update.dcjs.json",
            &[
                r#"  name                text                   "Fabrikam & Söhne \"Nord\" <Großhandel>""#,
                r#"  description         text                   "Line one\r\nLine two\tindented \\ backslash / slash 😀 end""#,
                "  revenue             money                  2500000.75",
                "  creditlimit         money                  0.00",
                "  industrycode        option-set             7",
                "  new_healthscore     integer                -15",
                "  exchangerate        decimal                1.0000000000",
                "  modifiedon          datetime               2024-03-18T09:41:27.357Z",
                "  primarycontactid    reference              contact e2a96c58-0d4f-4b73-8a1e-5c7f3b9d2064",
                "pre-image PreImage: account b7e41f02-6c3a-4d85-9f17-2a0c8e5d4b91",
            ],
        ),
        (
            "email-create.dcjs.json",
            &[
                "  new_topics                   option-set-collection  [1, 3, 4]",
                r#"  regarding.accountnumber      aliased                account.accountnumber = "FAB-00042""#,
                "  to                           entity-collection      activityparty 8d0c5a27-e3f6-4b19-b7d4-5a2e9f1c0b63, \
                 activityparty a6f19d3c-0b72-4e8a-95c1-d7e4b3a20f58",
            ],
        ),
    ];
    for (file, lines) in expected {
        let output = sagahost(&["inspect".as_ref(), support::samples().join(file).as_os_str()]);
        let stdout = text(&output.stdout);
        for line in lines {
            assert!(stdout.contains(&format!("{line}\n")), "missing `{line}` in:\n{stdout}");
        }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_list_show_and_redrive() {
    use sagahost_transport::{Settlement, Transport};

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sagahost.toml");
    let component = support::component("mdm");
    std::fs::write(
        &config,
        format!("[partners.mdm]\ncomponent = {:?}\nqueue = \"contacts\"\n", component),
    )
    .unwrap();
    let message = support::workspace().join("guest-examples/messages/contact-create.json");
    let sent = sagahost(&[
        "send".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--queue".as_ref(),
        "contacts".as_ref(),
        message.as_os_str(),
    ]);
    assert!(sent.status.success(), "{}", text(&sent.stderr));

    let loaded = sagahost::config::Config::load(&config).unwrap().config;
    let db = loaded.data_dir.join("queue.sqlite3");
    {
        let queue = sagahost_transport::embedded::EmbeddedQueue::open(&db, &loaded.queue_settings()).unwrap();
        let received = queue
            .receive("contacts", 1, std::time::Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(
            received[0].content_type.as_deref(),
            Some("application/json"),
            "send sets the type from the extension"
        );
        let settlement = Settlement::DeadLetter {
            reason: "ErpRejected".into(),
            description: "400: invalid email".into(),
            properties: Vec::new(),
        };
        queue.settle(&received[0], settlement, Vec::new()).await.unwrap();
    }
    let args = |rest: &[&str]| {
        let mut all: Vec<&std::ffi::OsStr> = vec!["dead-letters".as_ref(), "--config".as_ref(), config.as_os_str()];
        all.extend(rest.iter().map(|s| std::ffi::OsStr::new(*s)));
        sagahost(&all)
    };
    let list = text(&args(&["list", "--queue", "contacts"]).stdout);
    let sequence = list.split_whitespace().next().unwrap().to_string();
    assert!(
        list.contains("ErpRejected") && list.contains("400: invalid email"),
        "{list}"
    );
    let show = text(&args(&["show", "--queue", "contacts", &sequence]).stdout);
    assert!(
        show.contains("reason:         ErpRejected") && show.contains("\"MessageName\": \"Create\""),
        "{show}"
    );
    assert!(args(&["redrive", "--queue", "contacts", &sequence]).status.success());
    assert!(text(&args(&["list", "--queue", "contacts"]).stdout).contains("no dead letters on `contacts` match"));
    let missing = args(&["show", "--queue", "contacts", "999"]);
    assert!(!missing.status.success() && text(&missing.stderr).contains("dead-letters list"));
    let queue = sagahost_transport::embedded::EmbeddedQueue::open(&db, &loaded.queue_settings()).unwrap();
    assert_eq!(
        queue.queue_depth("contacts").await.unwrap().active,
        1,
        "redriven message is back on its queue"
    );
}

#[test]
fn inspect_decodes_the_xml_and_binary_twins_to_the_same_context() {
    let json_of = |file: &str, content_type: Option<&str>| {
        let path = support::samples().join(file);
        let mut args: Vec<&std::ffi::OsStr> = vec!["inspect".as_ref(), path.as_os_str(), "--json".as_ref()];
        if let Some(ct) = content_type {
            args.extend(["--content-type".as_ref(), std::ffi::OsStr::new(ct)]);
        }
        let output = sagahost(&args);
        assert!(output.status.success(), "{file}: {}", text(&output.stderr));
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let xml = json_of("account-update.dcs.xml", None);
    let binary = json_of("account-update.dcs-binary.msbin1", None);
    let binary_declared = json_of("account-update.dcs-binary.msbin1", Some("application/msbin1"));
    assert_eq!(xml, binary, "the XML and binary twins decode alike");
    assert_eq!(binary, binary_declared, "sniffing and the content type agree");
    let target = &xml["InputParameters"]["Target"];
    assert_eq!(
        target["Attributes"]["revenue"],
        serde_json::from_str::<serde_json::Value>(r#"{"$type": "Money", "Value": 2500000.75}"#).unwrap()
    );
    // XML and binary type the GUID, which JSON cannot.
    assert_eq!(target["Attributes"]["accountid"]["$type"], "Guid");
    assert_eq!(xml["ParentContext"]["Stage"], 30);

    let summary = text(
        &sagahost(&[
            "inspect".as_ref(),
            support::samples().join("account-update.dcs-binary.msbin1").as_os_str(),
        ])
        .stdout,
    );
    assert!(
        summary.starts_with("message:  Update account b7e41f02-6c3a-4d85-9f17-2a0c8e5d4b91"),
        "{summary}"
    );
    assert!(summary.contains("accountid           guid"), "{summary}");
}

#[test]
fn inspect_with_a_wrong_content_type_says_which_format_failed_and_where() {
    let path = support::samples().join("contact-create.dcs-binary.msbin1");
    let output = sagahost(&[
        "inspect".as_ref(),
        path.as_os_str(),
        "--content-type".as_ref(),
        "application/xml".as_ref(),
    ]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("XML body is not valid at line"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_named_without_a_directory_works_for_send_dead_letters_and_run() {
    const KEY: &str = "bare-config-key-8c41d07e";
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // Every path in the config is relative, so relative to the config file: the working directory.
    std::fs::copy(support::component("hostile"), dir.join("partner.wasm")).unwrap();
    std::fs::write(dir.join("webhook-key"), format!("{KEY}\n")).unwrap();
    std::fs::copy(
        support::workspace().join("guest-examples/messages/contact-create.json"),
        dir.join("contact.json"),
    )
    .unwrap();
    std::fs::write(
        dir.join("sagahost.toml"),
        "[webhook]\nlisten = \"127.0.0.1:0\"\nqueue = \"contacts\"\nkey = { file = \"webhook-key\" }\n\
         [partners.p]\ncomponent = \"partner.wasm\"\nqueue = \"elsewhere\"\n",
    )
    .unwrap();

    let sent = sagahost_in(
        dir,
        &[
            "send",
            "--config",
            "sagahost.toml",
            "--queue",
            "contacts",
            "contact.json",
        ],
        &[],
    );
    assert!(sent.status.success(), "send: {}", text(&sent.stderr));
    assert!(
        dir.join(".sagahost/queue.sqlite3").is_file(),
        "the data dir is beside the config"
    );
    let listed = sagahost_in(
        dir,
        &[
            "dead-letters",
            "--config",
            "sagahost.toml",
            "list",
            "--queue",
            "contacts",
        ],
        &[],
    );
    assert!(listed.status.success(), "dead-letters: {}", text(&listed.stderr));
    assert!(text(&listed.stdout).contains("no dead letters on `contacts` match"));

    let log = dir.join("host.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut host = Command::new(env!("CARGO_BIN_EXE_sagahost"))
        .args(["--log-format", "json", "run", "--config", "sagahost.toml"])
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let webhook = loop {
        let logged = std::fs::read_to_string(&log).unwrap();
        if let Some(line) = logged.lines().find(|line| line.contains("webhook listening")) {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            break line["fields"]["addr"].as_str().unwrap().to_string();
        }
        if let Some(status) = host.try_wait().unwrap() {
            panic!("sagahost run exited with {status}:\n{logged}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no webhook after 60 s:\n{logged}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let posted = reqwest::Client::new()
        .post(format!("http://{webhook}/api/webhook"))
        .header("x-functions-key", KEY)
        .header("content-type", "application/json")
        .body(std::fs::read(dir.join("contact.json")).unwrap())
        .send()
        .await
        .unwrap();
    host.kill().unwrap();
    host.wait().unwrap();
    assert_eq!(posted.status(), 202, "the key file beside the config was read");
    let queues = sagahost::config::Config::load(&dir.join("sagahost.toml"))
        .unwrap()
        .config
        .queue_settings();
    let queue =
        sagahost_transport::embedded::EmbeddedQueue::open(&dir.join(".sagahost/queue.sqlite3"), &queues).unwrap();
    assert_eq!(queue.queue_depth("contacts").await.unwrap().active, 2);
}

#[test]
fn run_refuses_an_empty_webhook_key_and_a_short_admin_token_naming_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let partner = format!(
        "[partners.p]\ncomponent = {:?}\nqueue = \"elsewhere\"\n",
        support::component("hostile").display().to_string()
    );
    let webhook =
        "[webhook]\nlisten = \"127.0.0.1:0\"\nqueue = \"contacts\"\nkey = { env = \"SAGAHOST_E2E_WEBHOOK_KEY\" }\n";
    std::fs::write(dir.join("empty-key.toml"), format!("{webhook}{partner}")).unwrap();
    let stderr = refused_run(dir, "empty-key.toml", &[("SAGAHOST_E2E_WEBHOOK_KEY", "")]);
    assert!(
        stderr.contains(
            "config empty-key.toml: webhook.key read from environment variable `SAGAHOST_E2E_WEBHOOK_KEY` is empty; \
             set it to a random value of at least 16 characters"
        ),
        "{stderr}"
    );

    std::fs::write(dir.join("admin-token"), "hunter2\n").unwrap();
    let admin = "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = { file = \"admin-token\" }\n";
    std::fs::write(dir.join("short-token.toml"), format!("{admin}{partner}")).unwrap();
    let stderr = refused_run(dir, "short-token.toml", &[]);
    assert!(
        stderr.contains("config short-token.toml: admin.token read from file `")
            && stderr.contains("admin-token` is only 7 characters long"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "the error quotes the token: {stderr}");
}

/// `sagahost broker --http-listen … --topics …` serves the entity-management API beside AMQP:
/// queues are listed, a request without a token is refused, the configured topic fans out to
/// its subscription, and the configured session-enabled queue is read through sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_serves_entity_management_and_configured_topics() {
    use std::io::BufRead as _;

    let dir = tempfile::tempdir().unwrap();
    let topics = dir.path().join("topics.toml");
    std::fs::write(
        &topics,
        "[[topics]]\nname = \"contacts\"\n[[topics.subscriptions]]\nname = \"mdm\"\n\
         [[queues]]\nname = \"erp\"\nrequires-session = true\n",
    )
    .unwrap();
    let mut broker = Command::new(env!("CARGO_BIN_EXE_sagahost"))
        .args([
            "broker",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--topics",
        ])
        .arg(&topics)
        .arg("--data")
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(broker.stdout.take().unwrap()).lines();
    let amqp = lines.next().unwrap().unwrap();
    assert!(amqp.starts_with("sagahost broker listening on "), "{amqp}");
    let http = lines.next().unwrap().unwrap();
    let base = http
        .strip_prefix("sagahost broker entity management on ")
        .unwrap_or_else(|| panic!("{http}"))
        .to_owned();

    let client = reqwest::Client::new();
    let refused = client.get(format!("{base}/contacts")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let host = base.trim_start_matches("http://");
    let token = sagahost_transport::sas::sas_token(
        &format!("sb://{host}/"),
        "RootManageSharedAccessKey",
        "SAS_KEY_VALUE",
        expiry,
    );
    let queues = client
        .get(format!("{base}/$Resources/queues?api-version=2021-05"))
        .header("Authorization", token)
        .send()
        .await
        .unwrap();
    let status = queues.status();
    let body = queues.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<feed"), "{body}");

    // The configured topic fans out to its subscription over AMQP.
    let address = amqp.rsplit(' ').next().unwrap();
    let connection_string = format!(
        "Endpoint=sb://{address};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    );
    let transport = ServiceBusTransport::connect(&connection_string, ServiceBusOptions::default())
        .await
        .unwrap();
    let message = OutgoingMessage {
        message_id: "m-1".into(),
        body: b"hello".to_vec(),
        ..OutgoingMessage::default()
    };
    transport
        .send(vec![QueueOutput {
            queue: "contacts".into(),
            message,
        }])
        .await
        .unwrap();
    let received = transport
        .receive("contacts/Subscriptions/mdm", 1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].message_id, "m-1");

    // The configured queue takes sessions only.
    let in_session = OutgoingMessage {
        message_id: "e-1".into(),
        session_id: Some("contact-1".into()),
        ..OutgoingMessage::default()
    };
    transport
        .send(vec![QueueOutput {
            queue: "erp".into(),
            message: in_session,
        }])
        .await
        .unwrap();
    let refused = transport.receive("erp", 1, Duration::from_secs(5)).await.unwrap_err();
    assert!(refused.to_string().contains("session"), "{refused}");
    let session = transport
        .accept_session("erp", None, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the session with a message");
    assert_eq!(session.session_id, "contact-1");
    transport.close().await;
    // SIGTERM stops it cleanly, as `docker stop` and Kubernetes ask a container's PID 1 to.
    Command::new("kill")
        .args(["-TERM", &broker.id().to_string()])
        .status()
        .unwrap();
    assert!(
        broker.wait().unwrap().success(),
        "the broker did not exit cleanly on SIGTERM"
    );
}

#[test]
fn deploy_kubernetes_prints_or_writes_the_checked_in_keda_manifests_and_refuses_the_embedded_queue() {
    let base = support::workspace().join("deploy/kubernetes/base");
    let checked_in = std::fs::read_to_string(base.join("keda.yaml")).unwrap();
    let config = base.join("sagahost.toml");
    let printed = sagahost(&[
        "deploy".as_ref(),
        "kubernetes".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert!(printed.status.success(), "{}", text(&printed.stderr));
    assert_eq!(text(&printed.stdout), checked_in);

    let out = tempfile::tempdir().unwrap();
    let written = sagahost(&[
        "deploy".as_ref(),
        "kubernetes".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--out".as_ref(),
        out.path().as_os_str(),
    ]);
    assert!(written.status.success(), "{}", text(&written.stderr));
    assert_eq!(
        std::fs::read_to_string(out.path().join("keda.yaml")).unwrap(),
        checked_in
    );

    std::fs::write(
        out.path().join("embedded.toml"),
        "[partners.erp]\ncomponent = \"erp.wasm\"\nqueue = \"erp\"\n",
    )
    .unwrap();
    let embedded = sagahost_in(out.path(), &["deploy", "kubernetes", "--config", "embedded.toml"], &[]);
    assert!(!embedded.status.success());
    let stderr = text(&embedded.stderr);
    assert!(
        stderr.contains("embedded.toml") && stderr.contains("embedded queue"),
        "{stderr}"
    );
}
