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
