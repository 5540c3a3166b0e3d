//! A production dead letter turned into a fixture (`sagahost fixture from-dead-letter`), so a
//! partner team can reproduce the failure with `sagahost test`.
//!
//! The fixture carries what the dead letter carries: the body (byte for byte, in a file beside
//! `fixture.toml`), its content type, message id and the application properties the component
//! saw, the saga state (step, attempt, the earlier steps and their compensation data), and, for
//! a compensation request, the compensate event the partner got. What the dead letter cannot
//! carry is what the partner systems answered: `fixture.toml` says so in a `TODO` block, and
//! `sagahost test` names each request that has no recorded answer yet.
//!
//! When the fixtures folder has no `partner.toml`, one is written from the host config's
//! partner (its name and its non-secret `config`), so the fixture runs at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sagahost_transport::dead_letters::DeadLetter;

use crate::saga::envelope::Envelope;

/// The fixture's message body file, named after the content type.
fn body_file(content_type: Option<&str>) -> &'static str {
    let content_type = content_type.unwrap_or_default().to_ascii_lowercase();
    if content_type.contains("json") {
        "message.json"
    } else if content_type.contains("msbin") {
        "message.msbin1"
    } else if content_type.contains("xml") {
        "message.xml"
    } else {
        "message.bin"
    }
}

/// The partner whose queue held the dead letter, as the host config names it.
#[derive(Debug, Clone)]
pub struct PartnerOfQueue {
    pub name: String,
    pub config: BTreeMap<String, String>,
}

/// Writes the fixture of dead letter `letter` (number `sequence` of `queue`) into `dir`, which
/// must not exist or be empty; returns the files written.
pub fn write_fixture(
    letter: &DeadLetter,
    queue: &str,
    partner: Option<&PartnerOfQueue>,
    dir: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        anyhow::ensure!(
            entries.next().is_none(),
            "{} already exists and is not empty: name a new fixture folder",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let message = &letter.message;
    let envelope = Envelope::read(&message.properties).map_err(|err| {
        anyhow::anyhow!(
            "dead letter {} of `{queue}`: {err}; its host properties cannot become a fixture",
            message.sequence_number
        )
    })?;
    let mut written = Vec::new();
    let body = dir.join(body_file(message.content_type.as_deref()));
    std::fs::write(&body, &message.body).with_context(|| format!("writing {}", body.display()))?;
    written.push(body);

    let fixture = dir.join("fixture.toml");
    let text = format!("{}\n{}", todo(letter, queue), fixture_toml(letter, queue, &envelope)?);
    std::fs::write(&fixture, text).with_context(|| format!("writing {}", fixture.display()))?;
    written.push(fixture);

    if let (Some(partner), Some(folder)) = (partner, dir.parent()) {
        let partner_file = folder.join("partner.toml");
        if !partner_file.exists() {
            let mut table = toml::Table::new();
            table.insert("name".into(), partner.name.clone().into());
            let config: toml::Table = partner
                .config
                .iter()
                .map(|(key, value)| (key.clone(), toml::Value::from(value.clone())))
                .collect();
            table.insert("config".into(), config.into());
            let text = format!(
                "# The settings of partner `{}` from the host config (its non-secret config only).\n{}",
                partner.name,
                toml::to_string(&table)?
            );
            std::fs::write(&partner_file, text).with_context(|| format!("writing {}", partner_file.display()))?;
            written.push(partner_file);
        }
    }
    Ok(written)
}

/// The comment that opens `fixture.toml`: where it came from and what is left to fill in.
fn todo(letter: &DeadLetter, queue: &str) -> String {
    format!(
        "# Made by `sagahost fixture from-dead-letter` from dead letter {sequence} of `{queue}`,\n\
         # dead-lettered as {reason}.\n\
         #\n\
         # TODO: the HTTP answers. A dead letter does not keep what the partner systems answered.\n\
         # Run `sagahost test COMPONENT FIXTURES`: each request without an answer is named. Add an\n\
         # [[http]] block per request with what the system answered (from its logs or the host's\n\
         # traces), for example\n\
         #   [[http]]\n\
         #   method = \"POST\"\n\
         #   url = \"https://…\"\n\
         #   status = 503\n\
         #   body = '…'\n\
         # or `error = \"timeout\"` instead of status, then `sagahost test --update` writes\n\
         # expected.json; check that it shows the failure before you fix it.\n",
        sequence = letter.message.sequence_number,
        reason = letter.reason,
    )
}

fn fixture_toml(letter: &DeadLetter, queue: &str, envelope: &Envelope) -> anyhow::Result<String> {
    let message = &letter.message;
    let mut input = toml::Table::new();
    input.insert("body".into(), body_file(message.content_type.as_deref()).into());
    if let Some(content_type) = &message.content_type {
        input.insert("content-type".into(), content_type.clone().into());
    }
    input.insert("queue".into(), queue.into());
    input.insert("message-id".into(), message.message_id.clone().into());
    let properties: toml::Table = envelope
        .user_properties
        .iter()
        .map(|(name, value)| (name.clone(), toml::Value::from(value.clone())))
        .collect();
    if !properties.is_empty() {
        input.insert("properties".into(), properties.into());
    }
    if let Some(saga) = &envelope.saga {
        input.insert("saga".into(), toml::Table::try_from(saga)?.into());
    }
    let mut fixture = toml::Table::new();
    fixture.insert(
        "description".into(),
        format!(
            "Dead letter {} of `{queue}`: {}: {} (the HTTP answers are to fill in)",
            message.sequence_number,
            letter.reason,
            one_line(&letter.description, 200)
        )
        .into(),
    );
    fixture.insert("input".into(), input.into());
    if let Some(info) = &envelope.compensation {
        let mut event = toml::Table::new();
        event.insert("kind".into(), "compensate".into());
        event.insert("failed-partner".into(), info.failed_partner.clone().into());
        event.insert("reason".into(), info.reason.clone().into());
        if let Some(details) = &info.details {
            event.insert("details".into(), details.clone().into());
        }
        // The host hands the undo the data its own step recorded: the newest history entry.
        let recorded = envelope.saga.as_ref().and_then(|saga| saga.history.last());
        if let Some(data) = recorded.and_then(|record| record.compensation_data.clone()) {
            event.insert("compensation-data".into(), data.into());
        }
        fixture.insert("event".into(), event.into());
    }
    Ok(toml::to_string(&fixture)?)
}

/// `text` on one line, cut at `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}
