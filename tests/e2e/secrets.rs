//! No secret leaves the host except in the request headers it was meant for. The host runs as
//! `sagahost run` at debug log level with OTLP export to an in-test receiver; partners use their
//! secrets (the writeback partner an OAuth access token, one-second tokens from an in-test token
//! endpoint), fail, retry, compensate and dead-letter; an operator scrapes metrics and reads dead
//! letters; clients present wrong keys and tokens. Then every secret value is looked for in the
//! logs, the exported spans, the metrics, the dead-letter records, the queued messages and the
//! error answers, and must be in none of them.
//!
//! A component's own view is checked step by step: everything the host hands a component that
//! used a secret, and everything the component makes of it, holds the secret's value only where
//! the partner API itself answered with it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sagahost::component::wit::{self, Decision, Event};
use sagahost::component::{Limits, Runtime, RuntimeOptions};
use sagahost::config::Config;
use sagahost::outbound::{ConfigSecrets, HttpOutbound, PartnerPolicy, RequestContext, SecretSource};
use sagahost::saga::{MessageParts, StepLimits, StepRun, build_inbound, run_step};
use sagahost_transport::dead_letters::DeadLetterQueues;
use sagahost_transport::embedded::EmbeddedQueue;
use sagahost_transport::{OutgoingMessage, Output, Transport};
use sha2::{Digest as _, Sha256};

use crate::partners::{Answer, Partner, Received};
use crate::saga::{DATAVERSE_TOKEN, ERP_TOKEN, MDM_KEY, Servers, WEBHOOK_KEY, config, contact_body, write_config};
use crate::support;
use crate::trace::{Collector, attribute};

const ADMIN_TOKEN: &str = "admin-token-0b7e44";
/// The writeback partner's OAuth client secret, and the access tokens issued for it.
const CLIENT_SECRET: &str = "client-secret-3e81c5";
const ACCESS_TOKEN: &str = "access-token-77d0a2";
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
    // Short-lived tokens, so the run also refreshes them.
    let issuer = Partner::start(|request, index| {
        assert!(
            request.body.contains(&format!("client_secret={CLIENT_SECRET}")),
            "{}",
            request.body
        );
        let token = format!("{{\"access_token\":\"{ACCESS_TOKEN}-{index}\",\"expires_in\":1}}");
        (200, vec![("content-type", "application/json".into())], token)
    })
    .await;
    let mut table = config(dir.path(), &servers);
    let client_secret = dir.path().join("client-secret");
    std::fs::write(&client_secret, CLIENT_SECRET).unwrap();
    let oauth2 = format!(
        "dataverse-token = {{ oauth2 = {{ token-url = \"{}/token\", client-id = \"writeback\", \
         client-secret = {{ file = {:?} }}, scope = \"https://org.crm.dynamics.com/.default\" }} }}",
        issuer.origin(),
        client_secret.display().to_string()
    );
    table["partners"]["dataverse-writeback"]
        .as_table_mut()
        .unwrap()
        .insert("secrets".into(), toml::from_str::<toml::Table>(&oauth2).unwrap().into());
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
        let dead = queue.peek_dead_letters(&settings.name, 0, 100).await.unwrap();
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
        servers.dataverse.received().iter().any(|r| r
            .header("authorization")
            .is_some_and(|v| v.starts_with(&format!("Bearer {ACCESS_TOKEN}-")))),
        "the writeback partner never sent its access token"
    );
    assert!(!issuer.received().is_empty());
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
        CLIENT_SECRET,
        ACCESS_TOKEN,
        broken_visible,
    ] {
        for (place, text) in &places {
            assert!(!text.contains(secret), "secret `{secret}` found in the {place}");
        }
    }
}

/// The answer of a partner API that echoes the request's headers back, one `name: value` a
/// line. On `/masked` it shows `x-token` as `sha256:<hex>` of its value instead.
fn echo_headers(request: &Received, _: usize) -> Answer {
    let masked = request.path == "/masked";
    let mut body = String::new();
    for (name, value) in &request.headers {
        if masked && name == "x-token" {
            writeln!(body, "{name}: sha256:{}", hex::encode(Sha256::digest(value))).unwrap();
        } else {
            writeln!(body, "{name}: {value}").unwrap();
        }
    }
    (200, vec![("content-type", "text/plain".into())], body)
}

/// Everything a component was handed in a step (each answer, or the host's reason for none)
/// and everything it made (its requests and its outcome), as text to search.
fn component_view(run: &StepRun) -> String {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let mut view = String::new();
    for round in &run.rounds {
        for request in &round.requests {
            let body = text(request.body.as_deref().unwrap_or_default());
            writeln!(view, "{} {} {:?} {body}", request.method, request.url, request.headers).unwrap();
        }
        for result in &round.results {
            match &result.response {
                Ok(response) => {
                    let body = text(&response.body);
                    writeln!(view, "{} {:?} {body}", response.status, response.headers).unwrap();
                }
                Err(error) => writeln!(view, "{error:?}").unwrap(),
            }
        }
    }
    match &run.outcome {
        Ok(outcome) => match &outcome.decision {
            Decision::Forward(messages) => {
                for message in messages {
                    let body = text(message.body.as_deref().unwrap_or_default());
                    writeln!(view, "forward {} {:?} {body}", message.route, message.properties).unwrap();
                }
            }
            decision => writeln!(view, "{decision:?}").unwrap(),
        },
        Err(error) => writeln!(view, "{error}").unwrap(),
    }
    view
}

/// The body of the one answer the step got.
fn answer_body(run: &StepRun) -> &[u8] {
    match &run.rounds[0].results[0].response {
        Ok(response) => &response.body,
        Err(error) => panic!("the request got no answer: {error:?}"),
    }
}

/// The body the step forwarded.
fn forwarded_body(run: &StepRun) -> &[u8] {
    match &run.outcome.as_ref().expect("the step ended").decision {
        Decision::Forward(messages) => messages[0].body.as_deref().unwrap_or_default(),
        decision => panic!("expected a forward, got {decision:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_sees_a_secret_it_uses_only_if_the_partner_api_answers_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let api = Partner::start(echo_headers).await;
    let key_file = |name: &str, value: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, value).unwrap();
        SecretSource::File(path)
    };
    // Three partners run the hostile `echo-secret` attack: it sends `x-token:
    // secret(mdm-api-key)` to its `echo-url` and forwards the answer's body.
    let partners = [
        ("masked", "/masked", key_file("masked-key", MDM_KEY)),
        ("verbatim", "/verbatim", key_file("verbatim-key", LEAKY_KEY)),
        ("broken", "/broken", key_file("broken-key", BROKEN_KEY)),
    ];
    let policy: PartnerPolicy = toml::from_str(&format!("allow = [\"{}\"]", api.origin())).unwrap();
    let secrets = ConfigSecrets::new(partners.iter().map(|(partner, _, source)| {
        (
            partner.to_string(),
            BTreeMap::from([("mdm-api-key".to_string(), source.clone())]),
        )
    }));
    let http = HttpOutbound::new(
        partners
            .iter()
            .map(|(partner, _, _)| (partner.to_string(), policy.clone())),
        Arc::new(secrets),
    )
    .unwrap();
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    let body = std::fs::read(support::workspace().join("guest-examples/messages/contact-create.json")).unwrap();
    let mut runs = BTreeMap::new();
    for (partner, path, _) in &partners {
        let config = BTreeMap::from([
            ("attack".to_string(), "echo-secret".to_string()),
            ("echo-url".to_string(), format!("{}{path}", api.origin())),
        ]);
        let component = runtime
            .load(partner, &support::component_bytes("hostile"), Limits::default(), config)
            .map(Arc::new)
            .unwrap();
        let parts = MessageParts {
            message_id: format!("{partner}-1"),
            queue: "q".into(),
            content_type: Some("application/json".into()),
            properties: Vec::new(),
            body: body.clone(),
        };
        let inbound = build_inbound(parts, None, &Default::default()).unwrap();
        let outbound = http.for_message(RequestContext {
            partner: partner.to_string(),
            ..RequestContext::default()
        });
        let run = run_step(&component, Event::Message(inbound), &outbound, StepLimits::default()).await;
        runs.insert(*partner, run);
    }
    let received = api.received();
    let got = |path: &str| received.iter().find(|r| r.path == path);

    // The component named the secret; the host put its value on the wire.
    for run in runs.values() {
        let headers = &run.rounds[0].requests[0].headers;
        assert!(
            matches!(&headers[..], [wit::Header { name, value: wit::HeaderValue::Secret(secret) }]
                if name == "x-token" && secret == "mdm-api-key"),
            "{headers:?}"
        );
    }
    assert_eq!(got("/masked").unwrap().header("x-token"), Some(MDM_KEY));
    assert_eq!(got("/verbatim").unwrap().header("x-token"), Some(LEAKY_KEY));

    // An API that answers with what it got, but not the secret: the component sees exactly that
    // answer, the server's account of the secret included (so this view is where a leak would
    // show), and never the value.
    let masked = &runs["masked"];
    let (_, _, answered) = echo_headers(got("/masked").unwrap(), 0);
    assert_eq!(answer_body(masked), answered.as_bytes(), "the host changed the answer");
    assert_eq!(forwarded_body(masked), answered.as_bytes());
    let view = component_view(masked);
    let digest = format!("x-token: sha256:{}", hex::encode(Sha256::digest(MDM_KEY)));
    assert!(view.contains(&digest), "{view}");
    assert!(!view.contains(MDM_KEY), "the component saw the secret:\n{view}");

    // An API that answers with the secret itself: then, and only through that answer, the
    // component sees it. The host cannot tell a secret in an answer from any other text.
    let verbatim = &runs["verbatim"];
    let (_, _, answered) = echo_headers(got("/verbatim").unwrap(), 0);
    assert_eq!(
        answer_body(verbatim),
        answered.as_bytes(),
        "the host changed the answer"
    );
    assert!(answered.contains(&format!("x-token: {LEAKY_KEY}")), "{answered}");
    let view = component_view(verbatim);
    assert_eq!(
        view.matches(LEAKY_KEY).count(),
        2,
        "only in the answer and the forward it made: {view}"
    );

    // A secret that cannot be a header value: nothing is sent, and the host's reason, which
    // the component sees, names the secret without quoting it.
    let broken = &runs["broken"];
    assert!(got("/broken").is_none(), "a request with a broken secret was sent");
    let reason = match &broken.rounds[0].results[0].response {
        Err(wit::HttpError::Invalid(reason)) => reason.clone(),
        other => panic!("expected an invalid request, got {other:?}"),
    };
    assert!(reason.contains("mdm-api-key"), "{reason}");
    let view = component_view(broken);
    for part in BROKEN_KEY.split("\r\n") {
        assert!(
            !view.contains(part),
            "the component saw `{part}` of the secret:\n{view}"
        );
    }
}
