//! No secret leaves the host except in the request headers it was meant for. The host runs as
//! `sagahost run` at debug log level with OTLP export to an in-test receiver; partners use their
//! secrets, fail, retry, compensate and dead-letter; an operator scrapes metrics and reads dead
//! letters; clients present wrong keys and tokens. Then every secret value is looked for in the
//! logs, the exported spans, the metrics, the dead-letter records, the queued messages and the
//! error answers, and must be in none of them.

use std::time::{Duration, Instant};

use sagahost::config::Config;
use sagahost::transport::embedded::EmbeddedQueue;
use sagahost::transport::{OutgoingMessage, Output, Transport};

use crate::partners::Partner;
use crate::saga::{DATAVERSE_TOKEN, ERP_TOKEN, MDM_KEY, Servers, WEBHOOK_KEY, config, contact_body, write_config};
use crate::support;
use crate::trace::{Collector, attribute};

const ADMIN_TOKEN: &str = "admin-token-0b7e44";
const LEAKY_KEY: &str = "leaky-key-9d2c61";
/// A secret that cannot be a header value: the error about it must not quote it.
const BROKEN_KEY: &str = "broken-key-\r\nInjected: 6a1f";

/// Adds a `hostile` partner with `attack = "echo-secret"` whose `mdm-api-key` is `key`.
fn echo_partner(table: &mut toml::Table, dir: &std::path::Path, name: &str, key: &str, echo: &Partner, routes: &str) {
    let key_file = dir.join(format!("{name}-key"));
    std::fs::write(&key_file, key).unwrap();
    let text = format!(
        "component = {:?}\nqueue = \"{name}-in\"\n{routes}\n\
         config = {{ attack = \"echo-secret\", echo-url = \"{}/echo\" }}\n\
         secrets = {{ mdm-api-key = {{ file = {:?} }} }}\noutbound = {{ allow = [\"{}\"] }}\n",
        support::component("hostile").display().to_string(),
        echo.origin(),
        key_file.display().to_string(),
        echo.origin(),
    );
    let partners = table["partners"].as_table_mut().unwrap();
    partners.insert(name.into(), toml::from_str::<toml::Table>(&text).unwrap().into());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_traces_metrics_dead_letters_queues_or_errors() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start().await;
    let servers = Servers::retry_then_reject().await;
    let echo = Partner::always(200, "pong").await;
    let mut table = config(dir.path(), &servers);
    // The webhook feeds a queue nobody consumes, so only the messages below run.
    table["webhook"]
        .as_table_mut()
        .unwrap()
        .insert("queue".into(), "inbox".into());
    let admin_token = dir.path().join("admin-token");
    std::fs::write(&admin_token, ADMIN_TOKEN).unwrap();
    let admin = format!(
        "listen = \"127.0.0.1:0\"\ntoken = {{ file = {:?} }}",
        admin_token.display().to_string()
    );
    table.insert("admin".into(), toml::from_str::<toml::Table>(&admin).unwrap().into());
    // `leaky` has no routes, so its forward is dead-lettered; `broken` forwards what it got.
    echo_partner(&mut table, dir.path(), "leaky", LEAKY_KEY, &echo, "");
    echo_partner(
        &mut table,
        dir.path(),
        "broken",
        BROKEN_KEY,
        &echo,
        "routes = { next = \"broken-next\" }",
    );
    let config_path = write_config(dir.path(), &table);
    let loaded = Config::load(&config_path).unwrap().config;
    std::fs::create_dir_all(&loaded.data_dir).unwrap();
    let queue_path = loaded.data_dir.join("queue.sqlite3");
    {
        let queue = EmbeddedQueue::open(&queue_path, &loaded.queue_settings()).unwrap();
        let message = |queue: &str| Output {
            queue: queue.into(),
            message: OutgoingMessage {
                content_type: Some("application/json".into()),
                body: contact_body(),
                ..Default::default()
            },
        };
        queue
            .send(vec![message("contacts"), message("leaky-in"), message("broken-in")])
            .await
            .unwrap();
    }

    let log = dir.path().join("host.log");
    let mut host = support::start_host_logging(
        &config_path,
        "debug",
        &log,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.clone()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ],
    );
    // The contact saga's six steps (mdm 503 and retry, writeback, erp 400, two compensations),
    // plus one message each for `leaky` and `broken`.
    const MESSAGES: usize = 8;
    let started = Instant::now();
    let spans = loop {
        let spans = collector.spans();
        let ended = spans
            .iter()
            .filter(|span| span.name == "message" && attribute(span, "outcome").is_some())
            .count();
        if ended >= MESSAGES {
            break spans;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {ended} messages ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let log_text = || std::fs::read_to_string(&log).unwrap();
    let address = |message: &str| -> String {
        let line = log_text()
            .lines()
            .find(|line| line.contains(message))
            .unwrap_or_else(|| panic!("no `{message}` line in the log"))
            .to_string();
        let line: serde_json::Value = serde_json::from_str(&line).unwrap();
        line["fields"]["addr"].as_str().unwrap().to_string()
    };
    let admin = format!("http://{}", address("admin endpoint listening"));
    let webhook = format!("http://{}/api/webhook", address("webhook listening"));
    let client = reqwest::Client::new();
    let get = |path: &str, token: &str| client.get(format!("{admin}{path}")).bearer_auth(token).send();
    let metrics = get("/metrics", ADMIN_TOKEN).await.unwrap().text().await.unwrap();
    let dead_letters = get("/admin/dead-letters/leaky-in", ADMIN_TOKEN).await.unwrap();
    assert_eq!(dead_letters.status(), 200);
    let dead_letters = dead_letters.text().await.unwrap();
    let partners = get("/admin/partners", ADMIN_TOKEN).await.unwrap().text().await.unwrap();
    let mut errors = Vec::new();
    let wrong_token = get("/admin/partners", "not-the-token").await.unwrap();
    assert_eq!(wrong_token.status(), 401);
    errors.push(wrong_token.text().await.unwrap());
    for (code, content_type, body) in [
        ("wrong-key", "application/json", contact_body()),
        (WEBHOOK_KEY, "text/plain", contact_body()),
        (WEBHOOK_KEY, "application/json", b"{\"not\": \"a context\"".to_vec()),
        (WEBHOOK_KEY, "application/json", contact_body()),
    ] {
        let answer = client
            .post(format!("{webhook}?code={code}"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        errors.push(format!("{} {}", answer.status(), answer.text().await.unwrap()));
    }
    host.kill().unwrap();
    host.wait().unwrap();

    let queue = EmbeddedQueue::open(&queue_path, &loaded.queue_settings()).unwrap();
    let mut stored = String::new();
    for settings in loaded.queue_settings() {
        let messages = queue.peek(&settings.name, 100).await.unwrap();
        let dead = queue.dead_letters(&settings.name, 100).await.unwrap();
        stored.push_str(&format!("{messages:?}{dead:?}"));
    }

    // The grep means something only if each place holds what it should.
    let logs = log_text();
    assert!(logs.contains("dead-lettered"), "the log has the dead letter");
    assert!(spans.iter().any(|span| span.name == "outbound_request"));
    assert!(metrics.contains("sagahost_messages_total"), "{metrics}");
    assert!(dead_letters.contains("UnknownRoute"), "{dead_letters}");
    assert!(stored.contains("UnknownRoute") && stored.contains("inbox"));
    assert!(errors.iter().any(|e| e.starts_with("401")) && errors.iter().any(|e| e.starts_with("202")));
    // … and the secrets were used: each partner got its own.
    assert!(
        servers
            .mdm
            .received()
            .iter()
            .any(|r| r.headers.iter().any(|(_, v)| v.contains(MDM_KEY))),
        "mdm never got its key"
    );
    assert!(
        echo.received().iter().any(|r| r.header("x-token") == Some(LEAKY_KEY)),
        "leaky's request carried its key"
    );
    assert!(
        logs.contains("not a valid header value"),
        "the broken secret's error is in the log"
    );

    let places = [
        ("logs", logs),
        ("spans", format!("{spans:?}")),
        ("metrics", metrics),
        ("dead letters (admin API)", dead_letters),
        ("partners (admin API)", partners),
        ("queues and dead letters (stored)", stored),
        ("error answers", errors.join("\n")),
    ];
    let broken_visible = BROKEN_KEY.split("\r\n").next().unwrap();
    for secret in [
        MDM_KEY,
        DATAVERSE_TOKEN,
        ERP_TOKEN,
        WEBHOOK_KEY,
        ADMIN_TOKEN,
        LEAKY_KEY,
        broken_visible,
    ] {
        for (place, text) in &places {
            assert!(!text.contains(secret), "secret `{secret}` found in the {place}");
        }
    }
}
