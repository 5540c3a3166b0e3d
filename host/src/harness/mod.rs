//! The guest harness: runs a component against recorded fixtures, with no
//! queue, no network and no Azure.
//!
//! A fixture directory holds `partner.toml` (partner name, config, limits) and
//! one sub-directory per fixture with `fixture.toml` (the input message, the
//! first event, recorded HTTP answers) and `expected.json` (the requests the
//! component should make and its outcome). `sagahost test` is a thin front on
//! [`Harness`]; partner repos can call it from `cargo test`:
//!
//! ```no_run
//! let harness = sagahost::harness::Harness::load("target/wasm32-wasip2/release/mdm.wasm".as_ref(), "fixtures".as_ref())?;
//! let report = harness.run(sagahost::harness::Mode::Check)?;
//! assert!(report.passed(), "{}", report.render());
//! # anyhow::Ok(())
//! ```

mod fixture;
pub mod from_dead_letter;
mod mock;
mod record;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

pub use fixture::{Fixture, PartnerFile};
pub use record::{diff, record};

use crate::component::{PartnerComponent, PoolNeeds, Runtime, RuntimeOptions, wit};
use crate::saga::{StepLimits, build_inbound, run_step};
use mock::MockOutbound;

/// Whether to compare with `expected.json` or rewrite it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Compare and report differences.
    Check,
    /// Write the current results as the expected ones.
    Update,
}

/// A component and the fixtures to run it against.
pub struct Harness {
    component: Arc<PartnerComponent>,
    /// The partner's step limits, as production would apply them.
    limits: StepLimits,
    fixtures: Vec<PathBuf>,
    // Keeps the engine's epoch ticker alive while the component runs.
    _runtime: Runtime,
}

impl Harness {
    /// Loads `component_path` with the partner settings in `fixtures_dir/partner.toml`,
    /// compiling it every time.
    pub fn load(component_path: &Path, fixtures_dir: &Path) -> anyhow::Result<Self> {
        Self::load_cached(component_path, fixtures_dir, None)
    }

    /// As [`Harness::load`], keeping the compiled component in `cache_dir` (keyed by the
    /// component's content hash), so the next run of the same build loads in milliseconds:
    /// components made with ComponentizeJS or componentize-py take seconds to compile.
    pub fn load_cached(component_path: &Path, fixtures_dir: &Path, cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let partner_path = fixtures_dir.join("partner.toml");
        let partner: PartnerFile = toml::from_str(
            &std::fs::read_to_string(&partner_path).with_context(|| format!("reading {}", partner_path.display()))?,
        )
        .with_context(|| format!("parsing {}", partner_path.display()))?;
        let wasm =
            std::fs::read(component_path).with_context(|| format!("reading component {}", component_path.display()))?;
        let runtime = Runtime::new(RuntimeOptions {
            max_instances: 16,
            fuel: partner.limits.fuel.is_some(),
            cache_dir,
            pool: PoolNeeds::of(&wasm).map_or(PoolNeeds::FLOOR, PoolNeeds::with_headroom),
            ..RuntimeOptions::default()
        })?;
        let component = runtime.load(&partner.name, &wasm, partner.limits, partner.config)?;
        let mut fixtures: Vec<PathBuf> = std::fs::read_dir(fixtures_dir)
            .with_context(|| format!("listing {}", fixtures_dir.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.join("fixture.toml").is_file())
            .collect();
        fixtures.sort();
        if fixtures.is_empty() {
            anyhow::bail!(
                "no fixtures in {}: expected sub-directories holding fixture.toml",
                fixtures_dir.display()
            );
        }
        Ok(Self {
            component: Arc::new(component),
            limits: StepLimits::with_max_rounds(partner.max_rounds),
            fixtures,
            _runtime: runtime,
        })
    }

    /// Runs every fixture, in name order.
    pub fn run(&self, mode: Mode) -> anyhow::Result<Report> {
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("starting the harness runtime")?;
        let results = self
            .fixtures
            .iter()
            .map(|dir| {
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let status = tokio
                    .block_on(self.run_one(dir, mode))
                    .unwrap_or_else(|err| Status::Error(format!("{err:#}")));
                FixtureResult { name, status }
            })
            .collect();
        Ok(Report { results })
    }

    async fn run_one(&self, dir: &Path, mode: Mode) -> anyhow::Result<Status> {
        let fixture = Fixture::load(dir)?;
        let parts = fixture.message()?;
        let saga = fixture.saga(&parts.message_id);
        let inbound = build_inbound(parts, saga, &Default::default())
            .with_context(|| format!("fixture `{}`: decoding the input body", fixture.name))?;
        let first = match &fixture.file.event {
            fixture::EventSpec::Message => wit::Event::Message(inbound),
            fixture::EventSpec::Compensate {
                failed_partner,
                reason,
                details,
                compensation_data,
            } => wit::Event::Compensate(wit::Compensation {
                inbound,
                compensation_data: compensation_data.clone(),
                failed_partner: failed_partner.clone(),
                reason: reason.clone(),
                details: details.clone(),
            }),
        };
        let outbound = MockOutbound::new(fixture.file.http.clone());
        let run = run_step(&self.component, first, &outbound, self.limits).await;
        let actual = record(&run);
        let expected_path = fixture.expected_path();
        if mode == Mode::Update {
            let text = serde_json::to_string_pretty(&actual)? + "\n";
            std::fs::write(&expected_path, text).with_context(|| format!("writing {}", expected_path.display()))?;
            return Ok(Status::Updated);
        }
        let expected: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&expected_path)
                .with_context(|| format!("reading {} (run with --update to create it)", expected_path.display()))?,
        )
        .with_context(|| format!("parsing {}", expected_path.display()))?;
        let mut differences = diff(&expected, &actual);
        differences.extend(
            outbound
                .unused()
                .iter()
                .map(|m| format!("recorded answer for {} {} was never requested", m.method, m.url)),
        );
        Ok(if differences.is_empty() {
            Status::Passed
        } else {
            Status::Failed {
                description: fixture.file.description.clone(),
                differences,
            }
        })
    }
}

/// How one fixture went.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Passed,
    /// The outcome differs from `expected.json`.
    Failed {
        description: String,
        differences: Vec<String>,
    },
    /// `expected.json` was rewritten.
    Updated,
    /// The fixture could not be run (bad file, undecodable body…).
    Error(String),
}

/// One fixture's name and status.
#[derive(Debug, Clone)]
pub struct FixtureResult {
    pub name: String,
    pub status: Status,
}

/// The results of a harness run.
#[derive(Debug, Clone)]
pub struct Report {
    pub results: Vec<FixtureResult>,
}

impl Report {
    /// True when no fixture failed or errored.
    pub fn passed(&self) -> bool {
        self.results
            .iter()
            .all(|r| matches!(r.status, Status::Passed | Status::Updated))
    }

    /// A pass/fail line per fixture, differences under each failure, and totals.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for result in &self.results {
            let _ = match &result.status {
                Status::Passed => writeln!(out, "PASS    {}", result.name),
                Status::Updated => writeln!(out, "UPDATED {}", result.name),
                Status::Error(err) => writeln!(out, "ERROR   {}\n        {err}", result.name),
                Status::Failed {
                    description,
                    differences,
                } => {
                    let _ = writeln!(out, "FAIL    {}  ({description})", result.name);
                    differences.iter().try_for_each(|d| writeln!(out, "        {d}"))
                }
            };
        }
        let count = |f: fn(&Status) -> bool| self.results.iter().filter(|r| f(&r.status)).count();
        let _ = writeln!(
            out,
            "{} passed, {} failed",
            count(|s| matches!(s, Status::Passed | Status::Updated)),
            count(|s| matches!(s, Status::Failed { .. } | Status::Error(_)))
        );
        out
    }
}
