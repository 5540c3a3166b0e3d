//! Bad input at the webhook, the host's door to the internet: oversized bodies, bodies that
//! never finish, clients that never finish their headers, and bodies in a format the content
//! type does not name. Each gets a clear refusal, nothing half-received is enqueued, and the
//! webhook keeps serving. Requests that bring no key are refused at the webhook and at the
//! admin API. (Wrong keys and content types: `saga.rs`; queue bodies: `saga.rs`; the AMQP door:
//! the broker's unit tests; empty and short keys: the config module's unit tests and `cli.rs`.)

use std::time::Duration;

use sagahost::config::Config;
use sagahost::service::Host;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::saga::contact_body;
use crate::support;

const KEY: &str = "door-key-5e1f-77a0c3";
const ADMIN_TOKEN: &str = "door-admin-token-3b9e06";
const MAX_BODY: usize = 64 * 1024;

/// Reads what the server sends until it closes the connection (or 10 s pass).
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut seen))
        .await
        .expect("the webhook closed the connection");
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_refuses_huge_slow_and_stalled_clients_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("webhook-key");
    std::fs::write(&key, KEY).unwrap();
    let text = format!(
        "data-dir = {:?}\n[webhook]\nlisten = \"127.0.0.1:0\"\nqueue = \"contacts\"\nkey = {{ file = {:?} }}\n\
         max-body-bytes = {MAX_BODY}\nrequest-timeout-ms = 400\n\
         [partners.p]\ncomponent = {:?}\nqueue = \"elsewhere\"\n",
        dir.path().join("data").display().to_string(),
        key.display().to_string(),
        support::component("hostile").display().to_string(),
    );
    let path = dir.path().join("sagahost.toml");
    std::fs::write(&path, text).unwrap();
    let host = Host::start(&Config::load(&path).unwrap().config).await.unwrap();
    let store = host.transport.embedded().unwrap().clone();
    let addr = host.webhook_addr.unwrap();
    let url = format!("http://{addr}/api/webhook?code={KEY}");
    let client = reqwest::Client::new();
    let post = |body: Vec<u8>, content_type: &'static str| {
        client.post(&url).header("content-type", content_type).body(body).send()
    };

    // Over the size limit: 413, whether the length is announced or streamed.
    let huge = post(vec![b' '; MAX_BODY + 1], "application/json").await.unwrap();
    assert_eq!(huge.status(), 413);
    assert!(
        huge.text()
            .await
            .unwrap()
            .contains(&format!("limit of {MAX_BODY} bytes"))
    );
    let mut streamed = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/webhook?code={KEY} HTTP/1.1\r\nHost: x\r\nconnection: close\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\n\r\n"
    );
    streamed.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..100 {
        // The server may answer and close before the last chunk: later writes may fail.
        if streamed
            .write_all(format!("400\r\n{}\r\n", " ".repeat(1024)).as_bytes())
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = streamed.write_all(b"0\r\n\r\n").await;
    let answer = read_to_close(&mut streamed).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // A body in another format than its content type says: 400 naming both.
    let binary = std::fs::read(support::samples().join("contact-create.dcs-binary.msbin1")).unwrap();
    let mislabelled = post(binary, "application/json").await.unwrap();
    assert_eq!(mislabelled.status(), 400);
    let why = mislabelled.text().await.unwrap();
    assert!(why.contains("looks like .NET binary XML"), "{why}");

    // A body that stops arriving: 408 once the deadline passes.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(
            format!(
                "POST /api/webhook?code={KEY} HTTP/1.1\r\nHost: x\r\nconnection: close\r\ncontent-type: application/json\r\n\
                 content-length: 5000\r\n\r\n{{\"MessageName\":"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let answer = read_to_close(&mut stalled).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within"), "{answer}");

    // Slow-loris: headers trickled a byte at a time are cut off at the deadline.
    let mut loris = TcpStream::connect(addr).await.unwrap();
    loris
        .write_all(b"POST /api/webhook HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let trickle = async {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if loris.write_all(b"X").await.is_err() {
                return true;
            }
        }
        false
    };
    let cut_off = tokio::time::timeout(Duration::from_secs(10), trickle)
        .await
        .unwrap_or(false);
    let mut rest = String::new();
    let closed = cut_off
        || matches!(
            tokio::time::timeout(Duration::from_secs(5), loris.read_to_string(&mut rest)).await,
            Ok(Ok(_) | Err(_))
        );
    assert!(closed, "a client trickling its headers was never cut off");

    // Nothing half-received was enqueued, and the webhook still takes a good post.
    assert_eq!(store.queue_depth("contacts").await.unwrap().active, 0);
    assert_eq!(post(contact_body(), "application/json").await.unwrap().status(), 202);
    assert_eq!(store.queue_depth("contacts").await.unwrap().active, 1);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_key_or_with_an_empty_one_are_refused_at_both_doors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("webhook-key"), KEY).unwrap();
    std::fs::write(dir.path().join("admin-token"), ADMIN_TOKEN).unwrap();
    let text = format!(
        "[webhook]\nlisten = \"127.0.0.1:0\"\nqueue = \"contacts\"\nkey = {{ file = \"webhook-key\" }}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\ntoken = {{ file = \"admin-token\" }}\n\
         [partners.p]\ncomponent = {:?}\nqueue = \"elsewhere\"\n",
        support::component("hostile").display().to_string(),
    );
    let path = dir.path().join("sagahost.toml");
    std::fs::write(&path, text).unwrap();
    let host = Host::start(&Config::load(&path).unwrap().config).await.unwrap();
    let client = reqwest::Client::new();
    let webhook = format!("http://{}/api/webhook", host.webhook_addr.unwrap());
    let post = |query: &str, header: Option<(&'static str, &'static str)>| {
        let mut request = client
            .post(format!("{webhook}{query}"))
            .header("content-type", "application/json")
            .body(contact_body());
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        request.send()
    };
    for (query, header) in [
        ("", None),
        ("?code=", None),
        ("", Some(("x-functions-key", ""))),
        ("", Some(("x-webhook-key", ""))),
    ] {
        let answer = post(query, header).await.unwrap();
        assert_eq!(answer.status(), 401, "{query:?} {header:?}");
    }
    let admin = format!("http://{}", host.admin_addr.unwrap());
    let get = |path: &str, authorization: Option<&str>| {
        let request = client.get(format!("{admin}{path}"));
        match authorization {
            Some(value) => request.header("authorization", value),
            None => request,
        }
        .send()
    };
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    for path in ["/admin/partners", "/admin/dead-letters/elsewhere"] {
        for authorization in [None, Some(""), Some("Bearer "), Some("Bearer"), Some(ADMIN_TOKEN)] {
            assert_eq!(
                get(path, authorization).await.unwrap().status(),
                401,
                "{path} {authorization:?}"
            );
        }
        // The admin door does open, to the right token.
        assert_eq!(get(path, Some(&bearer)).await.unwrap().status(), 200, "{path}");
    }
    assert_eq!(post(&format!("?code={KEY}"), None).await.unwrap().status(), 202);
    host.shutdown().await;
}
