//! The operator console in a real browser: headless Chromium, driven through chromedriver,
//! against a real `sagahost run` with the contact saga's partners on loopback.
//!
//! One operator's incident, in order: signing in (and being refused without the token),
//! watching the partners' counts move without reloading, finding a dead letter whose contact
//! name is an XSS payload (shown as text), redriving it once the partner is back and seeing its
//! saga finish, finding that saga by its record id, and starting, aborting and promoting a
//! canary from the page. A page of another origin then tries to change things with the
//! operator's cookie, and is refused. Screenshots of each page land in
//! `target/console-screenshots/`.

mod browser;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::response::Html;
use serde_json::Value;

use crate::operate::next_version;
use crate::partners::{Partner, mdm_like};
use crate::saga::{self, WEBHOOK_KEY};
use crate::support;
use browser::Browser;

const ADMIN_TOKEN: &str = "console-admin-token-3f9a1c";
/// What a contact named by an attacker is called.
const XSS_NAME: &str = "<img src=x onerror=alert(1)>";
const TRACE_URL: &str = "http://jaeger.example/trace/{trace-id}";

fn screenshots() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| support::workspace().join("target"), PathBuf::from);
    target.join("console-screenshots")
}

/// The address the host logged for `what` ("admin endpoint listening", "webhook listening").
async fn logged_address(log: &Path, what: &str) -> String {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|line| line.contains(what)) {
            let line: Value = serde_json::from_str(line).unwrap();
            return line["fields"]["addr"].as_str().unwrap().to_string();
        }
        assert!(
            started.elapsed() < browser::PATIENCE,
            "the host never logged `{what}`:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `index`th test contact (ids ending in `…-8000-<index>`), named `first_name`.
fn contact(index: usize, first_name: &str) -> Vec<u8> {
    let body = String::from_utf8(saga::contacts(index + 1).pop().unwrap()).unwrap();
    let name = serde_json::to_string(first_name).unwrap();
    body.replacen(
        r#"{"key":"firstname","value":"Ana"}"#,
        &format!(r#"{{"key":"firstname","value":{name}}}"#),
        1,
    )
    .into_bytes()
}

fn record_id(index: usize) -> String {
    format!("11111111-0000-4000-8000-{index:012}")
}

/// What the admin API (with the bearer token) says about `partner`.
async fn partner_status(admin: &str, partner: &str) -> Value {
    let all = support::get_json(&format!("{admin}/admin/partners"), Some(ADMIN_TOKEN)).await;
    all.as_array()
        .unwrap()
        .iter()
        .find(|p| p["partner"] == partner)
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_runs_an_incident_from_the_console_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let shots = screenshots();
    let mdm_down = Arc::new(AtomicBool::new(false));
    let down = mdm_down.clone();
    let servers = saga::Servers {
        mdm: Partner::start(move |request, index| {
            if down.load(Ordering::SeqCst) {
                (503, Vec::new(), "maintenance".into())
            } else {
                mdm_like(request, index)
            }
        })
        .await,
        dataverse: Partner::always(204, "").await,
        erp: Partner::always(201, "").await,
    };
    let mut table = saga::config(dir.path(), &servers);
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, ADMIN_TOKEN).unwrap();
    let admin_section = format!(
        "listen = \"127.0.0.1:0\"\ntoken = {{ file = {:?} }}\ntrace-url = {TRACE_URL:?}",
        token_file.display().to_string()
    );
    table.insert(
        "admin".into(),
        toml::from_str::<toml::Table>(&admin_section).unwrap().into(),
    );
    // Two quick tries, so a contact MDM cannot take is dead-lettered within a second.
    let retry = "initial-delay-ms = 100\nmax-delay-ms = 200\nmax-attempts = 2\njitter = 0.0";
    table["partners"]["mdm"]
        .as_table_mut()
        .unwrap()
        .insert("retry".into(), toml::from_str::<toml::Table>(retry).unwrap().into());
    let config = saga::write_config(dir.path(), &table);
    let log = dir.path().join("host.log");
    let mut host = support::start_host_logging(&config, "info", &log, &[]);
    let admin = format!("http://{}", logged_address(&log, "admin endpoint listening").await);
    let webhook = format!(
        "http://{}/api/webhook?code={WEBHOOK_KEY}",
        logged_address(&log, "webhook listening").await
    );
    let post_contact = |body: Vec<u8>| {
        let webhook = webhook.clone();
        async move {
            let answer = reqwest::Client::new()
                .post(webhook)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(answer.status().is_success(), "the webhook said {}", answer.status());
        }
    };

    let browser = Browser::start().await;

    // Without a session the API answers nothing, and the console asks for the token.
    browser.goto(&format!("{admin}/admin/overview")).await;
    assert!(browser.body_text().await.contains("missing or wrong admin token"));
    browser.goto(&format!("{admin}/console/")).await;
    browser.view("signin").await;
    browser.fill("#token", "not-the-token").await;
    browser.click("#signin-submit").await;
    browser
        .text_until("#signin-error", "the refusal", |t| t.contains("wrong admin token"))
        .await;
    browser.screenshot(&shots, "signin").await;
    browser.fill("#token", ADMIN_TOKEN).await;
    browser.click("#signin-submit").await;
    browser.view("partners").await;

    // Counts move while the operator watches, without a reload.
    for index in 0..3 {
        post_contact(contact(index, "Ana")).await;
    }
    for partner in ["mdm", "dataverse-writeback", "erp"] {
        let processed = format!("section.partner[data-partner=\"{partner}\"] [data-field=\"processed\"]");
        browser.text_until(&processed, "3 processed", |t| t.trim() == "3").await;
    }
    let version = browser
        .find("section.partner[data-partner=\"mdm\"] .version")
        .await
        .text()
        .await
        .unwrap();
    let serving = partner_status(&admin, "mdm").await["version"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(serving.starts_with(version.trim()), "{version} is not {serving}");
    browser.screenshot(&shots, "partners").await;

    // MDM goes down; a contact named by an attacker is dead-lettered.
    mdm_down.store(true, Ordering::SeqCst);
    post_contact(contact(3, XSS_NAME)).await;
    browser.click("nav a[href=\"#/queues\"]").await;
    browser.view("queues").await;
    browser
        .text_until(
            "tr[data-queue=\"contacts\"] td[data-field=\"dead-lettered\"]",
            "1 dead letter",
            |t| t.trim() == "1",
        )
        .await;
    browser.screenshot(&shots, "queues").await;

    browser.goto(&format!("{admin}/console/#/dead-letters/contacts")).await;
    browser.view("dead-letters").await;
    let row = browser.find("table#dl-list tr[data-sequence]").await;
    let listed = row.text().await.unwrap();
    assert!(
        listed.contains("RetriesExhausted") && listed.contains("mdm"),
        "the row names neither the reason nor the partner: {listed}"
    );
    let sequence = row.attr("data-sequence").await.unwrap().unwrap();
    browser.screenshot(&shots, "dead-letters").await;
    browser.click("table#dl-list tr[data-sequence] a.open").await;
    browser.view("dead-letter").await;
    let decoded = browser
        .text_until("pre#dl-decoded", "the contact", |t| t.contains("firstname"))
        .await;
    assert!(
        decoded.contains(XSS_NAME),
        "the payload is not shown as text: {decoded}"
    );
    assert!(
        browser.all("#dl-decoded img, img[src=\"x\"]").await.is_empty(),
        "the payload became an element"
    );
    assert!(!browser.alert_open().await, "the payload ran");
    // The saga state the message carries, as the API reads it, is what the page shows.
    let letter = support::get_json(
        &format!("{admin}/admin/dead-letters/contacts/{sequence}"),
        Some(ADMIN_TOKEN),
    )
    .await;
    let saga_id = letter["saga"]["id"]
        .as_str()
        .expect("the dead letter carries saga state");
    let saga_text = browser.find("#dl-saga").await.text().await.unwrap();
    assert!(saga_text.contains(saga_id), "saga {saga_id} is not shown: {saga_text}");
    browser.screenshot(&shots, "dead-letter").await;

    // MDM is back: the operator redrives, and the saga finishes.
    mdm_down.store(false, Ordering::SeqCst);
    browser.click("#dl-redrive").await;
    browser
        .text_until("#notice", "the redrive", |t| t.contains("Redrove"))
        .await;
    browser.goto(&format!("{admin}/console/#/sagas")).await;
    browser.view("sagas").await;
    let started = Instant::now();
    let saga = loop {
        browser.find("#saga-by").await.select_by_value("record").await.unwrap();
        browser.fill("#saga-query", &record_id(3)).await;
        browser.click("#saga-search").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Some(saga) = browser.all("section.saga").await.into_iter().next() {
            let text = saga.text().await.unwrap_or_default();
            if text.contains("erp") && text.contains("completed") {
                break saga;
            }
        }
        assert!(
            started.elapsed() < browser::PATIENCE,
            "the redriven saga never finished"
        );
    };
    let steps = saga.find_all(fantoccini::Locator::Css("tr.step")).await.unwrap();
    assert!(
        steps.len() >= 4,
        "dead-lettered try, then mdm, writeback and erp: {} steps",
        steps.len()
    );
    let trace = saga.find(fantoccini::Locator::Css("a.trace")).await.unwrap();
    let href = trace.attr("href").await.unwrap().unwrap();
    assert!(href.starts_with("http://jaeger.example/trace/"), "{href}");
    assert!(!browser.alert_open().await);
    browser.screenshot(&shots, "sagas").await;
    browser.goto(&format!("{admin}/console/#/dead-letters/contacts")).await;
    browser.view("dead-letters").await;
    browser.find("#dl-empty").await;

    // A canary from the page: started, aborted, started again and promoted.
    let candidate = dir.path().join("mdm-candidate.wasm");
    std::fs::write(&candidate, next_version(&support::component_bytes("mdm"), "console")).unwrap();
    let mdm = "section.partner[data-partner=\"mdm\"]";
    browser.goto(&format!("{admin}/console/#/partners")).await;
    browser.view("partners").await;
    for ending in ["abort", "promote"] {
        browser
            .fill(
                &format!("{mdm} form.start-canary input[name=\"component\"]"),
                &candidate.display().to_string(),
            )
            .await;
        browser
            .fill(&format!("{mdm} form.start-canary input[name=\"percent\"]"), "25")
            .await;
        browser
            .click(&format!("{mdm} form.start-canary button[type=\"submit\"]"))
            .await;
        browser
            .text_until(
                &format!("{mdm} .canary [data-field=\"canary-percent\"]"),
                "the canary's 25 %",
                |t| t.contains("25"),
            )
            .await;
        // The page names the candidate the host runs.
        let running = partner_status(&admin, "mdm").await["canary"]["version"]
            .as_str()
            .expect("a canary runs")
            .to_string();
        browser
            .text_until(
                &format!("{mdm} .canary [data-field=\"canary-version\"]"),
                "the candidate's version",
                |t| !t.trim().is_empty() && running.starts_with(t.trim()),
            )
            .await;
        if ending == "abort" {
            browser.screenshot(&shots, "canary").await;
        }
        browser.click(&format!("{mdm} .canary button.{ending}")).await;
        browser.gone(&format!("{mdm} .canary")).await;
    }
    let status = partner_status(&admin, "mdm").await;
    let promoted = status["version"].as_str().unwrap().to_string();
    assert_ne!(promoted, serving, "the promoted candidate is not serving");
    browser
        .text_until(&format!("{mdm} .version"), "the promoted version", |t| {
            !t.trim().is_empty() && promoted.starts_with(t.trim())
        })
        .await;
    let history = browser
        .find(&format!("{mdm} ul.reload-history"))
        .await
        .text()
        .await
        .unwrap();
    assert!(history.contains("promoted") && history.contains("aborted"), "{history}");

    // A page of another origin (same site: another port of 127.0.0.1, so the cookie goes
    // along) tries to reload a partner and purge the dead letters, and is refused.
    let reloads_before = status["reloads"].as_u64().unwrap();
    let history_before = status["history"].as_array().unwrap().len();
    let attacker = attacker_page(&admin).await;
    browser.goto(&attacker).await;
    browser
        .text_until("body", "the refusal", |t| t.contains("another site"))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = partner_status(&admin, "mdm").await;
    assert_eq!(status["reloads"].as_u64().unwrap(), reloads_before);
    assert_eq!(
        status["history"].as_array().unwrap().len(),
        history_before,
        "{status:#}"
    );

    // Signing out ends the session.
    browser.goto(&format!("{admin}/console/#/partners")).await;
    browser.view("partners").await;
    browser.click("#signout").await;
    browser.view("signin").await;
    browser.goto(&format!("{admin}/admin/overview")).await;
    assert!(browser.body_text().await.contains("missing or wrong admin token"));

    browser.quit().await;
    host.kill().unwrap();
    host.wait().unwrap();
}

/// Serves, from another port, a page that posts a form to the admin API as soon as it loads.
async fn attacker_page(admin: &str) -> String {
    let page = format!(
        r#"<!doctype html><html><body>
<form id="reload" method="POST" action="{admin}/admin/partners/mdm/reload"></form>
<script>
fetch("{admin}/admin/dead-letters/contacts/purge", {{
  method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"content-type": "text/plain"}}, body: '{{"confirm": true}}'
}});
document.getElementById("reload").submit();
</script></body></html>"#
    );
    let app = axum::Router::new().route("/", axum::routing::get(move || async move { Html(page) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/")
}

/// A host with one partner and an admin endpoint on loopback, with `admin` added to its
/// `[admin]` section.
async fn small_host(dir: &Path, admin: &str) -> (sagahost::service::Host, String) {
    let text = format!(
        "data-dir = {:?}\n[partners.mdm]\ncomponent = {:?}\nqueue = \"contacts\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{admin}\n",
        dir.join("data").display().to_string(),
        support::component("mdm").display().to_string(),
    );
    let path = dir.join("sagahost.toml");
    std::fs::write(&path, text).unwrap();
    let config = sagahost::config::Config::load(&path).unwrap().config;
    let host = sagahost::service::Host::start(&config).await.unwrap();
    let port = host.admin_addr.unwrap().port();
    (host, format!("http://127.0.0.1:{port}"))
}

/// Without a token (loopback only), the admin endpoint answers only to loopback names, and no
/// page of another origin can change anything; a console session must send its CSRF token.
/// What a hostile page would send is sent here by hand, header by header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_refuses_what_a_hostile_page_could_send() {
    let dir = tempfile::tempdir().unwrap();
    let (host, admin) = small_host(dir.path(), "").await;
    let client = reqwest::Client::new();
    let reload = format!("{admin}/admin/partners/mdm/reload");

    // DNS rebinding: the attacker's own name pointed at 127.0.0.1.
    let overview_for = |host: &'static str| {
        client
            .get(format!("{admin}/admin/overview"))
            .header("host", host)
            .send()
    };
    let rebound = overview_for("attacker.example:9090").await.unwrap();
    assert_eq!(rebound.status(), 403);
    assert!(rebound.text().await.unwrap().contains("localhost names"));
    let local = overview_for("localhost").await.unwrap();
    assert_eq!(local.status(), 200);
    let overview: Value = local.json().await.unwrap();
    assert_eq!(overview["partners"][0]["partner"], "mdm");
    assert_eq!(overview["queues"][0]["queue"], "contacts");

    // Changes from another origin, however the browser marks them.
    for (name, value) in [
        ("origin", "http://attacker.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        let answer = client.post(&reload).header(name, value).send().await.unwrap();
        assert_eq!(answer.status(), 403, "{name}: {value}");
    }
    // A script on this machine (no Origin, no cookie) may.
    assert_eq!(client.post(&reload).send().await.unwrap().status(), 200);

    // Signing in takes JSON only, so that no form of another site can.
    let form = client
        .post(format!("{admin}/console/api/session"))
        .header("content-type", "text/plain")
        .body(r#"{"token": ""}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
    let signed_in = client
        .post(format!("{admin}/console/api/session"))
        .json(&serde_json::json!({ "token": "" }))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap().to_string();
    let csrf = signed_in.json::<Value>().await.unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_string();
    let with_cookie = client.post(&reload).header("cookie", &session).send().await.unwrap();
    assert_eq!(with_cookie.status(), 403, "a session's change without its CSRF token");
    let wrong = client
        .post(&reload)
        .header("cookie", &session)
        .header("x-csrf-token", "0".repeat(64))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let right = client
        .post(&reload)
        .header("cookie", &session)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);

    // The page itself: a strict policy, no framing, and bad input answered plainly.
    let page = client.get(format!("{admin}/console/")).send().await.unwrap();
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(
        policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"),
        "{policy}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert!(page.text().await.unwrap().contains("/console/js/main.js"));
    // Only the console's own files are served, whatever the path says.
    for path in ["js%2F..%2F..%2FCargo.toml", "js/nothing.js", "%2Fetc%2Fpasswd"] {
        let missing = client.get(format!("{admin}/console/{path}")).send().await.unwrap();
        assert_eq!(missing.status(), 404, "{path}");
    }
    let bad = client
        .get(format!("{admin}/admin/sagas?by=colour&q=red"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("saga, record or correlation"));

    // A live stream sends the overview, and does not keep the host from stopping.
    let mut stream = client
        .get(format!("{admin}/admin/overview/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let first = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let first = String::from_utf8_lossy(&first);
    assert!(
        first.contains("event: overview") && first.contains("\"partner\":\"mdm\""),
        "{first}"
    );
    tokio::time::timeout(Duration::from_secs(20), host.shutdown())
        .await
        .expect("the host did not stop while a console stream was open");
    drop(stream);
}

/// With a token, a wrong sign-in is refused and nothing is readable without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_console_and_the_api_need_it() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, ADMIN_TOKEN).unwrap();
    let section = format!("token = {{ file = {:?} }}", token_file.display().to_string());
    let (host, admin) = small_host(dir.path(), &section).await;
    let client = reqwest::Client::new();
    for path in [
        "/admin/overview",
        "/admin/overview/stream",
        "/admin/sagas",
        "/admin/dead-letters/contacts",
    ] {
        let answer = client.get(format!("{admin}{path}")).send().await.unwrap();
        assert_eq!(answer.status(), 401, "{path}");
    }
    let session = support::get_json(&format!("{admin}/console/api/session"), None).await;
    assert_eq!(session["signed-in"], false);
    assert_eq!(session["token-required"], true);
    assert!(session["csrf"].is_null());
    let wrong = client
        .post(format!("{admin}/console/api/session"))
        .json(&serde_json::json!({ "token": "not-the-token" }))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let forged = client
        .get(format!("{admin}/admin/overview"))
        .header("cookie", format!("sagahost-console={}", "a".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401, "a made-up session");
    let scripted = client
        .get(format!("{admin}/admin/overview"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(scripted.status(), 200);
    host.shutdown().await;
}
