//! `sagahost test`: runs a component against its fixtures, once or on every change.
//!
//! With `--watch`, the command runs the project's build (`--build`), then the fixtures, and
//! again each time a file under the current folder or the fixtures changes, until Ctrl-C.
//! Build outputs and tool folders (`target/`, `dist/`, `node_modules/`, `.venv/`…) are not
//! watched, so a build does not trigger the next one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::Context as _;
use sagahost::harness::{Harness, Mode};
use sagahost::service::{WATCH_DEBOUNCE, changes_content};

/// Folders whose changes never start a run: build outputs, tools and caches.
const IGNORED: [&str; 8] = [
    "target",
    "dist",
    "build",
    "node_modules",
    ".venv",
    ".git",
    "__pycache__",
    ".mypy_cache",
];

/// Arguments of `sagahost test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The component (`.wasm`).
    component: PathBuf,
    /// Directory holding `partner.toml` and one sub-directory per fixture.
    fixtures: PathBuf,
    /// Write the current results as the expected ones.
    #[arg(long, conflicts_with = "watch")]
    update: bool,
    /// Run again whenever a source file or a fixture changes (after `--build`), until Ctrl-C.
    #[arg(long)]
    watch: bool,
    /// The command that builds the component (run with `sh -c` in the current folder) before
    /// each run, e.g. `cargo build --release` or `npm run build`.
    #[arg(long)]
    build: Option<String>,
    /// Where compiled components are kept between runs [default: $XDG_CACHE_HOME/sagahost/compiled,
    /// or ~/.cache/sagahost/compiled].
    #[arg(long, env = "SAGAHOST_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile the component afresh and keep nothing (wins over `--cache-dir`).
    #[arg(long)]
    no_cache: bool,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.watch {
        return watch(&args);
    }
    let passed = build(&args)? && run_fixtures(&args)?;
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Runs `--build`, if any; false (with the reason printed) when it fails.
fn build(args: &Args) -> anyhow::Result<bool> {
    let Some(command) = &args.build else {
        return Ok(true);
    };
    println!("==> build: {command}");
    let started = Instant::now();
    let status = std::process::Command::new("sh")
        .args(["-c", command])
        .status()
        .with_context(|| format!("starting the build `{command}`"))?;
    if !status.success() {
        println!("build failed ({status}): fix it and save, or press Ctrl-C");
        return Ok(false);
    }
    println!("    built in {:.1} s", started.elapsed().as_secs_f64());
    Ok(true)
}

/// Runs every fixture once and prints the report; true when all passed.
fn run_fixtures(args: &Args) -> anyhow::Result<bool> {
    let cache_dir = if args.no_cache {
        None
    } else {
        args.cache_dir.clone().or_else(user_cache_dir)
    };
    let harness = Harness::load_cached(&args.component, &args.fixtures, cache_dir)?;
    let report = harness.run(if args.update { Mode::Update } else { Mode::Check })?;
    print!("{}", report.render());
    Ok(report.passed())
}

/// The per-user cache of compiled components, as the XDG base directory spec places it.
fn user_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("sagahost").join("compiled"))
}

fn watch(args: &Args) -> anyhow::Result<ExitCode> {
    use notify::Watcher as _;

    let (changed, changes) = mpsc::channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && changes_content(&event.kind)
        {
            event.paths.into_iter().for_each(|path| {
                let _ = changed.send(path);
            });
        }
    })
    .context("starting the file watcher")?;
    let here = std::env::current_dir().context("reading the current folder")?;
    let fixtures = std::path::absolute(&args.fixtures)?;
    for dir in [&here, &fixtures] {
        watcher
            .watch(dir, notify::RecursiveMode::Recursive)
            .with_context(|| format!("watching {}", dir.display()))?;
    }
    let component = std::path::absolute(&args.component)?;
    loop {
        // A failed run is reported and watched on; only a broken setup ends the watch.
        if let Err(err) = build(args).and_then(|built| if built { run_fixtures(args) } else { Ok(false) }) {
            println!("error: {err:#}");
        }
        println!("--- watching {} for changes (Ctrl-C to stop)", here.display());
        loop {
            let first = changes.recv().context("the file watcher stopped")?;
            std::thread::sleep(WATCH_DEBOUNCE);
            let paths: Vec<PathBuf> = std::iter::once(first).chain(changes.try_iter()).collect();
            if let Some(path) = paths.iter().find(|path| starts_a_run(path, &here, &component)) {
                println!("\n==> {} changed", path.strip_prefix(&here).unwrap_or(path).display());
                break;
            }
        }
    }
}

/// Whether a change to `path` starts a new run: not the built component, and not inside a
/// build output or tool folder.
fn starts_a_run(path: &Path, here: &Path, component: &Path) -> bool {
    path != component
        && !path
            .strip_prefix(here)
            .unwrap_or(path)
            .components()
            .any(|part| IGNORED.iter().any(|ignored| part.as_os_str() == *ignored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_outputs_and_the_component_do_not_start_a_run() {
        let here = Path::new("/p");
        let component = Path::new("/p/dist/crm.wasm");
        assert!(starts_a_run(Path::new("/p/src/lib.rs"), here, component));
        assert!(starts_a_run(
            Path::new("/p/fixtures/created/fixture.toml"),
            here,
            component
        ));
        assert!(!starts_a_run(component, here, component));
        assert!(!starts_a_run(Path::new("/p/target/release/x.d"), here, component));
        assert!(!starts_a_run(Path::new("/p/node_modules/a/index.js"), here, component));
        assert!(!starts_a_run(Path::new("/p/app/__pycache__/app.pyc"), here, component));
    }
}
