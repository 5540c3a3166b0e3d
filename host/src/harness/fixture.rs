//! The on-disk fixture format: `partner.toml` for the directory and one
//! `fixture.toml` (plus `expected.json`) per fixture.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

use crate::component::Limits;
use crate::saga::{MessageParts, SagaState, StepRecord};

/// `partner.toml`: the partner the fixtures are for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PartnerFile {
    /// Partner name, as in the host config.
    pub name: String,
    /// Non-secret config the component reads through the `config` import.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Limits; defaults as in the host config.
    #[serde(default)]
    pub limits: Limits,
    /// Rounds of requests per step before the component must decide, as the partner's
    /// `max-rounds` in the host config (and with its default), so that fixtures run under
    /// the limits production uses.
    #[serde(default = "crate::config::default_max_rounds")]
    pub max_rounds: u32,
}

/// One `fixture.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FixtureFile {
    /// What the fixture shows, printed on failure.
    #[serde(default)]
    pub description: String,
    pub input: Input,
    #[serde(default)]
    pub event: EventSpec,
    /// Recorded answers, matched by method and exact URL, each used once, in order.
    #[serde(default)]
    pub http: Vec<MockResponse>,
}

/// The input message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Input {
    /// Body file, relative to the fixture's directory.
    pub body: PathBuf,
    pub content_type: Option<String>,
    #[serde(default = "default_queue")]
    pub queue: String,
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    pub saga: Option<SagaSpec>,
}

fn default_queue() -> String {
    "fixture".into()
}

/// Saga state of the input message; anything left out takes the first-step default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SagaSpec {
    pub id: Option<String>,
    #[serde(default)]
    pub step: u32,
    #[serde(default = "one")]
    pub attempt: u32,
    #[serde(default)]
    pub history: Vec<StepRecord>,
}

fn one() -> u32 {
    1
}

/// Which event the component gets first.
#[derive(Debug, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum EventSpec {
    /// A new message (the default).
    #[default]
    Message,
    /// A compensation request.
    #[serde(rename_all = "kebab-case")]
    Compensate {
        #[serde(default)]
        failed_partner: String,
        #[serde(default)]
        reason: String,
        details: Option<String>,
        compensation_data: Option<String>,
    },
}

/// One recorded answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MockResponse {
    pub method: String,
    pub url: String,
    /// HTTP status; required unless `error` is set.
    pub status: Option<u16>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
    /// Instead of a response: `timeout`, `connection`, `blocked`, `too-large` or `invalid`.
    pub error: Option<String>,
}

/// The values `[[http]] error` accepts, one per `http-error` case.
pub const MOCK_ERRORS: [&str; 5] = ["timeout", "connection", "blocked", "too-large", "invalid"];

/// A fixture loaded from its directory.
#[derive(Debug)]
pub struct Fixture {
    pub name: String,
    pub dir: PathBuf,
    pub file: FixtureFile,
}

impl Fixture {
    /// Loads `dir/fixture.toml`.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("fixture.toml");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let file: FixtureFile = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        for mock in &file.http {
            if let Some(error) = mock.error.as_deref().filter(|e| !MOCK_ERRORS.contains(e)) {
                anyhow::bail!(
                    "{}: the [[http]] entry for {} {} has error = \"{error}\"; use one of {}",
                    path.display(),
                    mock.method,
                    mock.url,
                    MOCK_ERRORS.join(", ")
                );
            }
            if mock.status.is_none() == mock.error.is_none() {
                anyhow::bail!(
                    "{}: the [[http]] entry for {} {} needs exactly one of `status` or `error`",
                    path.display(),
                    mock.method,
                    mock.url
                );
            }
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            name,
            dir: dir.to_path_buf(),
            file,
        })
    }

    /// The input message, with its body read from disk.
    pub fn message(&self) -> anyhow::Result<MessageParts> {
        let input = &self.file.input;
        let path = self.dir.join(&input.body);
        let body = std::fs::read(&path)
            .with_context(|| format!("fixture `{}`: reading input body {}", self.name, path.display()))?;
        Ok(MessageParts {
            message_id: input
                .message_id
                .clone()
                .unwrap_or_else(|| format!("fixture-{}", self.name)),
            queue: input.queue.clone(),
            content_type: input.content_type.clone(),
            properties: input.properties.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            body,
        })
    }

    /// The input saga state, if the fixture sets one.
    pub fn saga(&self, default_id: &str) -> Option<SagaState> {
        self.file.input.saga.as_ref().map(|spec| SagaState {
            id: spec.id.clone().unwrap_or_else(|| default_id.to_string()),
            step: spec.step,
            attempt: spec.attempt,
            history: spec.history.clone(),
        })
    }

    /// Where the expected outcome lives.
    pub fn expected_path(&self) -> PathBuf {
        self.dir.join("expected.json")
    }
}
