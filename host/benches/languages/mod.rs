//! Partner components in Rust, TypeScript and Python side by side: the `mdm` example built in
//! each language (`scripts/build-guests`), measured the same way in the same run, with the
//! Rust build as the baseline of the other two.
//!
//! - `language LANG`: compiling the component cold (Cranelift, into an empty compiled-artifact
//!   cache, as a host's first load does) and loading it from that cache, and one `handle` call
//!   of a new contact (a fresh instance from the pool each call; the plan is the MDM request),
//!   median and p99.
//! - `loaded LANG N DIR`: the resident set of a process with N partners of that component
//!   loaded (from the artifact cache DIR, which another process filled, as a restarted host
//!   loads them) and each called once, so every partner has instantiated its memory image at
//!   least once. The partners run the same build, so they share its code and memory image.
//!   The group fills one cache per language for all its `loaded` runs: compiling a 12–19 MB
//!   component takes seconds, and once is enough.

use std::collections::BTreeMap;
use std::time::Instant;

use sagahost::component::{Limits, PartnerComponent, PoolNeeds, Runtime, RuntimeOptions, wit};
use serde_json::{Value, json};

use super::common::{call_runtime, component_in, contact_body, message_event};
use super::{Row, med, median, percentile, repeat};

/// The languages, as `scripts/build-guests` names them.
const LANGUAGES: [&str; 3] = ["rust", "typescript", "python"];
/// Calls timed per run.
const CALLS: usize = 1_000;
/// Partners loaded for the resident-set figures.
const LOADED: [usize; 2] = [10, 100];

fn config() -> BTreeMap<String, String> {
    BTreeMap::from([("mdm-url".to_string(), "http://127.0.0.1:9/api".to_string())])
}

fn load(runtime: &Runtime, partner: &str, wasm: &[u8]) -> PartnerComponent {
    runtime
        .load(partner, wasm, Limits::default(), config())
        .unwrap_or_else(|err| panic!("loading {partner}: {err:#}"))
}

/// A runtime with the artifact cache `cache`, whose pool is sized for `wasm`, as the host
/// sizes it for its components.
fn runtime(cache: &std::path::Path, wasm: &[u8]) -> Runtime {
    Runtime::new(RuntimeOptions {
        cache_dir: Some(cache.to_path_buf()),
        pool: PoolNeeds::of(wasm).unwrap().with_headroom(),
        ..RuntimeOptions::default()
    })
    .unwrap()
}

/// Calls `component` with a new contact; panics unless it plans the MDM request.
fn call(rt: &tokio::runtime::Runtime, component: &PartnerComponent, event: &wit::Event) {
    match rt.block_on(component.handle("m-1", event)) {
        Ok(wit::Plan::Call(_)) => {}
        other => panic!("the mdm example plans a request for a new contact, got {other:?}"),
    }
}

/// `language LANG`: compile times and the call's median and p99.
pub fn scenario_language(language: &str) -> Value {
    let wasm = std::fs::read(component_in(language, "mdm")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let started = Instant::now();
    drop(load(&runtime(cache.path(), &wasm), "mdm", &wasm));
    let compile_cold_ms = started.elapsed().as_secs_f64() * 1e3;

    let runtime = runtime(cache.path(), &wasm);
    let started = Instant::now();
    let component = load(&runtime, "mdm", &wasm);
    let compile_cached_ms = started.elapsed().as_secs_f64() * 1e3;

    let rt = call_runtime();
    let event = message_event(contact_body(5));
    for _ in 0..CALLS / 10 {
        call(&rt, &component, &event);
    }
    let mut samples: Vec<f64> = (0..CALLS)
        .map(|_| {
            let started = Instant::now();
            call(&rt, &component, &event);
            started.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    json!({
        "bytes": wasm.len(),
        "compile_cold_ms": compile_cold_ms,
        "compile_cached_ms": compile_cached_ms,
        "call_median_us": median(&mut samples.clone()),
        "call_p99_us": percentile(&mut samples, 0.99),
    })
}

/// `loaded LANG N DIR`: resident set with N partners loaded from the cache DIR and called once.
pub fn scenario_loaded(arg: &str) -> Value {
    let mut parts = arg.splitn(3, ' ');
    let (Some(language), Some(partners), Some(cache)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("LANG N DIR, got {arg:?}");
    };
    let partners: usize = partners.parse().unwrap();
    let wasm = std::fs::read(component_in(language, "mdm")).unwrap();
    let runtime = runtime(std::path::Path::new(cache), &wasm);
    let rt = call_runtime();
    let event = message_event(contact_body(5));
    let loaded: Vec<PartnerComponent> = (0..partners)
        .map(|i| {
            let component = load(&runtime, &format!("p{i}"), &wasm);
            call(&rt, &component, &event);
            component
        })
        .collect();
    let rss = rss_mib();
    drop(loaded);
    json!({"rss_mib": rss})
}

/// Fills a new artifact cache with the mdm component of `language`, in a process of its own:
/// Cranelift's working memory, which the allocator keeps, would otherwise count in the
/// resident set of the process that loads from it (about 250 MiB for these components).
fn compiled_cache(language: &str) -> tempfile::TempDir {
    let cache = tempfile::tempdir().unwrap();
    let compiled = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--scenario",
            "compile",
            &format!("{language} {}", cache.path().display()),
        ])
        .output()
        .unwrap();
    assert!(
        compiled.status.success(),
        "{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    cache
}

/// `compile LANG DIR`: compiles the mdm component of LANG into the artifact cache DIR.
pub fn scenario_compile(arg: &str) -> Value {
    let (language, dir) = arg.split_once(' ').expect("LANG DIR");
    let wasm = std::fs::read(component_in(language, "mdm")).unwrap();
    drop(load(&runtime(std::path::Path::new(dir), &wasm), "mdm", &wasm));
    json!({})
}

/// The current resident set of this process, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Runs the group; returns its rows and every run's JSON by key.
pub fn group() -> (Vec<Row>, Vec<(String, Vec<Value>)>) {
    let mut rows = Vec::new();
    let mut results = Vec::new();
    let calls: Vec<Vec<Value>> = LANGUAGES.iter().map(|l| repeat("language", l)).collect();
    let rust = &calls[0];
    for (language, runs) in LANGUAGES.iter().zip(&calls) {
        let baseline = |key: &str| (*language != "rust").then(|| ("Rust".to_string(), med(rust, key)));
        let target = match *language {
            "typescript" => "≤ 1 ms",
            "python" => "≤ 2 ms",
            _ => "",
        };
        let size = runs[0]["bytes"].as_f64().unwrap_or_default() / 1e6;
        rows.push(Row {
            figure: format!("mdm call in {language} ({size:.1} MB component), median"),
            value: med(runs, "call_median_us"),
            unit: "µs",
            baseline: baseline("call_median_us"),
            target: target.into(),
        });
        rows.push(Row {
            figure: format!("mdm call in {language}, p99"),
            value: med(runs, "call_p99_us"),
            unit: "µs",
            baseline: baseline("call_p99_us"),
            target: String::new(),
        });
        rows.push(Row {
            figure: format!("compile {language} mdm, cold"),
            value: med(runs, "compile_cold_ms"),
            unit: "ms",
            baseline: baseline("compile_cold_ms"),
            target: String::new(),
        });
        rows.push(Row {
            figure: format!("compile {language} mdm, from the cache"),
            value: med(runs, "compile_cached_ms"),
            unit: "ms",
            baseline: baseline("compile_cached_ms"),
            target: String::new(),
        });
        results.push((format!("language-{language}"), runs.clone()));
    }
    let caches: Vec<tempfile::TempDir> = LANGUAGES.iter().map(|language| compiled_cache(language)).collect();
    for partners in LOADED {
        let loaded: Vec<Vec<Value>> = LANGUAGES
            .iter()
            .zip(&caches)
            .map(|(language, cache)| repeat("loaded", &format!("{language} {partners} {}", cache.path().display())))
            .collect();
        for (language, runs) in LANGUAGES.iter().zip(&loaded) {
            rows.push(Row {
                figure: format!("RSS with {partners} {language} partners loaded"),
                value: med(runs, "rss_mib"),
                unit: "MiB",
                baseline: (*language != "rust").then(|| ("Rust".to_string(), med(&loaded[0], "rss_mib"))),
                target: if *language == "python" && partners == 100 {
                    "≤ 1 GiB".into()
                } else {
                    String::new()
                },
            });
            results.push((format!("loaded-{language}-{partners}"), runs.clone()));
        }
    }
    (rows, results)
}
