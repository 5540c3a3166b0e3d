//! `sagahost quickstart`, the README's first command, on both transports: every saga ends,
//! and the partner systems' books agree with the sagas' end states; the Dataverse writeback
//! signs in with an OAuth client-credentials token.

use std::process::Command;

use crate::support;

fn quickstart(transport: &str, language: &str) {
    let target = support::component("mdm").parent().unwrap().to_path_buf();
    let output = Command::new(env!("CARGO_BIN_EXE_sagahost"))
        .current_dir(support::workspace())
        .args([
            "quickstart",
            "--transport",
            transport,
            "--language",
            language,
            "--components",
        ])
        .arg(&target)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running sagahost quickstart");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "quickstart failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("The books balance"), "{stdout}");
    // The totals name the completed sagas, and the ledger the live MDM records: the same count.
    let completed = number_before(&stdout, " completed;").or_else(|| number_before(&stdout, " completed,"));
    let records = number_before(&stdout, " records (");
    assert!(completed.is_some() && completed == records, "{stdout}");
    // The writeback signed in with client credentials: at least one token was issued.
    let tokens = number_before(&stdout, " access tokens from the Dataverse token endpoint");
    assert!(tokens.is_some_and(|n| n >= 1), "{stdout}");
}

/// The number just before the first `marker` in `text`.
fn number_before(text: &str, marker: &str) -> Option<usize> {
    let end = text.find(marker)?;
    let digits: String = text[..end].chars().rev().take_while(char::is_ascii_digit).collect();
    digits.chars().rev().collect::<String>().parse().ok()
}

#[test]
fn the_quickstart_balances_its_books_on_the_embedded_queue() {
    quickstart("embedded", "rust");
}

/// The saga with the MDM step in TypeScript, the Dataverse writeback in Python and the ERP
/// step in Rust: the languages interoperate through the host and the queues alone.
#[test]
fn the_quickstart_balances_its_books_with_components_in_three_languages() {
    quickstart("embedded", "mixed");
}

#[test]
fn the_quickstart_balances_its_books_on_service_bus() {
    quickstart("servicebus", "rust");
}

/// `--console` keeps the host running after the summary with the admin endpoint up: the
/// console's overview names the three partners and its saga index holds the sagas just run,
/// and Ctrl-C (SIGINT) stops it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_with_the_console_keeps_serving_until_interrupted() {
    use std::io::{BufRead as _, BufReader};

    let target = support::component("mdm").parent().unwrap().to_path_buf();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sagahost"))
        .current_dir(support::workspace())
        .args([
            "quickstart",
            "--contacts",
            "4",
            "--console",
            "127.0.0.1:0",
            "--components",
        ])
        .arg(&target)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running sagahost quickstart --console");
    // The whole output is read to its end, so the quickstart never writes to a closed pipe;
    // the console's address is passed on as soon as it is printed.
    let stdout = child.stdout.take().unwrap();
    let (found, console_line) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(url) = line.strip_prefix("console: ") {
                let _ = found.send(url.split_whitespace().next().unwrap().to_string());
            }
            seen.push(line);
        }
        seen
    });
    let console = tokio::task::spawn_blocking(move || console_line.recv_timeout(std::time::Duration::from_secs(300)))
        .await
        .unwrap()
        .ok();
    let Some(console) = console else {
        let _ = child.kill();
        panic!("no console line:\n{}", reader.join().unwrap().join("\n"));
    };
    let admin = console.trim_end_matches("/console/");
    let overview = support::get_json(&format!("{admin}/admin/overview"), None).await;
    let partners: Vec<_> = overview["partners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["partner"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(partners, ["dataverse-writeback", "erp", "mdm"]);
    let page = reqwest::get(&console).await.unwrap();
    assert_eq!(page.status(), 200);
    // The index is written a moment after each step settles.
    let started = std::time::Instant::now();
    loop {
        let sagas = support::get_json(&format!("{admin}/admin/sagas?limit=100"), None).await;
        if sagas["sagas"].as_array().unwrap().len() >= 4 {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{sagas:#}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let lines = reader.join().unwrap().join("\n");
    assert!(status.success(), "{status}:\n{lines}");
    assert!(lines.contains("The books balance"), "{lines}");
}
