//! Shared helpers: where the built guest components and the samples are, and a `sagahost broker`
//! process to test against.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// The repository's own Dataverse samples (`tests/samples/dataverse/INDEX.md` says what
/// each is).
pub fn samples() -> PathBuf {
    workspace().join("tests/samples/dataverse")
}

/// Every samples folder there is: the repository's, then `../shared/samples/dataverse`
/// when the repository is checked out beside it (optional: nothing requires it).
pub fn sample_folders() -> Vec<PathBuf> {
    let shared = workspace().join("../shared/samples/dataverse");
    let mut folders = vec![samples()];
    if shared.is_dir() {
        folders.push(shared);
    }
    folders
}

/// The languages partner components are written in, as `scripts/build-guests` names them.
pub const LANGUAGES: [&str; 3] = ["rust", "typescript", "python"];

/// Path of a built Rust guest component, e.g. `component("mdm")`.
///
/// Panics with the command to run when the component has not been built.
pub fn component(name: &str) -> PathBuf {
    component_in("rust", name)
}

/// Path of the guest component `name` written in `language` (one of [`LANGUAGES`]).
///
/// Panics with the command to run when the component has not been built.
pub fn component_in(language: &str, name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace().join("target"), PathBuf::from);
    let guests = target.join("wasm32-wasip2/guest");
    let path = sagahost::quickstart::built_guest(&guests, language, name);
    assert!(
        path.is_file(),
        "{} is missing: run `scripts/build-guests` (or `scripts/test`) first",
        path.display()
    );
    path
}

/// Reads a built guest component.
pub fn component_bytes(name: &str) -> Vec<u8> {
    std::fs::read(component(name)).expect("reading component")
}

/// Starts `sagahost run --config CONFIG --log-format json` as a child process with `RUST_LOG`
/// at `filter`, its stdout and stderr both appended to `log`, and `env` added to its
/// environment.
pub fn start_host_logging(config: &Path, filter: &str, log: &Path, env: &[(&str, String)]) -> Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("opening the host's log file");
    Command::new(env!("CARGO_BIN_EXE_sagahost"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(config)
        .env("RUST_LOG", filter)
        .envs(env.iter().map(|(name, value)| (name, value)))
        .stdout(file.try_clone().expect("duplicating the log file"))
        .stderr(file)
        .spawn()
        .expect("starting sagahost run")
}

/// Starts `sagahost run --config CONFIG` as a child process, with warnings only on its stderr
/// (discarded) and `env` added to its environment.
pub fn start_host(config: &Path, env: &[(&str, String)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sagahost"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(name, value)| (name, value)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting sagahost run")
}

/// A `sagahost broker` process on a loopback port, over a fresh data directory; killed on drop.
pub struct BrokerProcess {
    child: Child,
    /// The connection string that reaches it (the emulator's key).
    pub connection_string: String,
    /// `http://ADDR` of its entity-management API, when started with `--http-listen`.
    pub management: Option<String>,
    _data: tempfile::TempDir,
}

impl BrokerProcess {
    /// Starts `sagahost broker --listen 127.0.0.1:0` with `extra` arguments, and reads the
    /// addresses it prints.
    pub fn start(extra: &[&str]) -> Self {
        use std::io::{BufRead as _, BufReader};

        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sagahost"))
            .args(["broker", "--listen", "127.0.0.1:0", "--data"])
            .arg(data.path())
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut last_word = || lines.next().unwrap().unwrap().rsplit(' ').next().unwrap().to_owned();
        let address = last_word();
        let management = extra.contains(&"--http-listen").then(&mut last_word);
        Self {
            child,
            connection_string: format!(
                "Endpoint=sb://{address};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
            ),
            management,
            _data: data,
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GETs `url`, with `token` as the bearer when given, and parses the JSON answer.
pub async fn get_json(url: &str, token: Option<&str>) -> serde_json::Value {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let answer = request.send().await.unwrap_or_else(|err| panic!("GET {url}: {err}"));
    answer
        .json()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: the answer is not JSON: {err}"))
}
