//! Decode throughput, every format into the model: the 5 KB sample of each format
//! (`json`, `xml`, `binary`) and, with `FORMAT-200k`, a 200 KB message of many small values
//! (the contact-create context with small shared variables of every kind, written by
//! `make-samples.py --dense` with the same writers and binary encoder as the samples).
//!
//! - `decode FORMAT`: about 10 MB decoded per pass; the figure is the median of
//!   [`PASSES`] passes after one to warm up. Baseline for `binary`: the PyPI `wcf` decoder on
//!   the same file, in the same run.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::{Value, json};

use super::common::{DECODE_SAMPLES, sample, samples, workspace};
use super::{Row, bench_python, med, median, python_baseline, repeat};

/// Timed passes of about 10 MB each per run, after one to warm up.
const PASSES: usize = 5;
/// The formats, and the same with `-200k` for the large message.
const FORMATS: [&str; 6] = ["json", "xml", "binary", "json-200k", "xml-200k", "binary-200k"];

/// `decode FORMAT`: MB/s decoding one body over and over, and `wcf`'s for the binary ones.
pub fn scenario(format: &str) -> Value {
    let (format, large) = match format.strip_suffix("-200k") {
        Some(format) => (format, true),
        None => (format, false),
    };
    let (_, file, content_type) = *DECODE_SAMPLES
        .iter()
        .find(|(name, ..)| *name == format)
        .expect("a decode format: json, xml or binary, with -200k for the large message");
    let (path, body) = if large {
        let path = dense_samples().join(file.replace("contact-create", "contact-dense"));
        let body = std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        (path, body)
    } else {
        (samples().join(file), sample(file))
    };
    let limits = Default::default();
    // About 10 MB decoded per pass, whatever the body's size. The first pass warms up (a
    // fresh process's heap grows page by page, which a running host has long done); the
    // figure is the median of the passes after it.
    let rounds = (10_000_000 / body.len()).clamp(20, 2_000);
    let mut passes: Vec<f64> = (0..=PASSES)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(sagahost_dataverse::decode(&body, Some(content_type), &limits).unwrap());
            }
            (body.len() * rounds) as f64 / started.elapsed().as_secs_f64() / 1e6
        })
        .skip(1)
        .collect();
    let mb_per_s = median(&mut passes);
    let mut result = json!({"mb_per_s": mb_per_s, "bytes": body.len()});
    if format == "binary" {
        let wcf_rounds = if large { "10" } else { "200" };
        result["wcf_mb_per_s"] = json!(python_baseline(&["wcf", path.to_str().unwrap(), wcf_rounds]));
    }
    result
}

/// Where the decode group's 200 KB messages are written (by `make-samples.py --dense`).
fn dense_samples() -> PathBuf {
    workspace().join("target/bench/dense")
}

/// Writes the 200 KB messages in the three formats: the contact-create context with
/// small shared variables of every kind added, encoded by the same script (and the same
/// independent binary encoder, PyPI `wcf`) as the repository's samples.
fn make_dense_samples() {
    let status = bench_python()
        .arg(samples().join("make-samples.py"))
        .args(["--dense", "200"])
        .arg(dense_samples())
        .status()
        .expect("running make-samples.py (scripts/bench sets SAGAHOST_BENCH_PYTHON)");
    assert!(status.success(), "make-samples.py --dense failed");
}

/// Runs the group; returns its rows and every run's JSON by key.
pub fn group() -> (Vec<Row>, Vec<(String, Vec<Value>)>) {
    make_dense_samples();
    let mut rows = Vec::new();
    let mut results = Vec::new();
    for format in FORMATS {
        let runs = repeat("decode", format);
        let what = if format.ends_with("-200k") { "message" } else { "sample" };
        rows.push(Row {
            figure: format!("decode {format} ({} B {what})", runs[0]["bytes"]),
            value: med(&runs, "mb_per_s"),
            unit: "MB/s",
            baseline: format
                .starts_with("binary")
                .then(|| ("PyPI wcf".into(), med(&runs, "wcf_mb_per_s"))),
            target: match format.split('-').next() {
                Some("binary") => "≥ 20 × wcf".into(),
                Some("json") => "≥ 250 MB/s".into(),
                _ => "≥ 150 MB/s".into(),
            },
        });
        results.push((format!("decode-{format}"), runs));
    }
    (rows, results)
}
