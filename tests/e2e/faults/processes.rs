//! The processes of a run: `sagahost broker` and the `sagahost run` replicas, as children that
//! can be killed and restarted, and the run's directory that keeps their logs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::LOCK_MS;
use crate::support;
/// The log filter of the host and the broker (`SAGAHOST_FAULTS_LOG`, default `warn`).
pub(super) fn log_filter() -> String {
    std::env::var("SAGAHOST_FAULTS_LOG").unwrap_or_else(|_| "warn".into())
}

/// A run's directory: removed after a passing run, kept (and its path printed) after a failed
/// one or when `SAGAHOST_FAULTS_KEEP` is set, so that its logs can be read.
pub(super) struct RunDir(Option<tempfile::TempDir>);

impl RunDir {
    pub(super) fn new() -> Self {
        Self(Some(tempfile::tempdir().unwrap()))
    }

    pub(super) fn path(&self) -> &Path {
        self.0.as_ref().expect("present until dropped").path()
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let dir = self.0.take().expect("present until dropped");
        if std::thread::panicking() || std::env::var_os("SAGAHOST_FAULTS_KEEP").is_some() {
            eprintln!("faults: the run's logs and data are kept in {}", dir.keep().display());
        }
    }
}

/// `sagahost broker` as a child process on a fixed address, restartable.
pub(super) struct BrokerProcess {
    pub(super) addr: SocketAddr,
    data: PathBuf,
    child: Child,
}

impl BrokerProcess {
    pub(super) fn start(addr: SocketAddr, data: &Path) -> Self {
        std::fs::create_dir_all(data).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.join("broker.log"))
            .expect("opening the broker's log file");
        // The control queue the replicas share their canaries on requires sessions, as
        // `sagahost entities apply` creates it on Service Bus.
        let entities = data.join("entities.toml");
        std::fs::write(
            &entities,
            "[[queues]]\nname = \"sagahost-control\"\nrequires-session = true\n",
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sagahost"))
            .args([
                "broker",
                "--listen",
                &addr.to_string(),
                "--lock-duration-ms",
                &LOCK_MS.to_string(),
                "--topics",
            ])
            .arg(&entities)
            .arg("--data")
            .arg(data)
            .env("RUST_LOG", log_filter())
            .stdout(log.try_clone().expect("duplicating the log file"))
            .stderr(log)
            .spawn()
            .expect("starting sagahost broker");
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "the broker never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            addr,
            data: data.to_path_buf(),
            child,
        }
    }

    pub(super) fn restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        *self = Self::start(self.addr, &self.data);
    }

    pub(super) fn database(&self) -> PathBuf {
        self.data.join("broker.sqlite3")
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `sagahost run` replica, with its own config, component file, data directory and log, as
/// a pod has. Killed if the test ends early (a failed assertion), so that it does not outlive
/// the run.
pub(super) struct Replica {
    pub(super) config: PathBuf,
    pub(super) log: PathBuf,
    /// The replica's MDM component file, which a rollout replaces.
    pub(super) mdm_component: PathBuf,
    child: Child,
}

impl Replica {
    pub(super) fn start(config: PathBuf, log: PathBuf, mdm_component: PathBuf) -> Self {
        let child = support::start_host_logging(&config, &log_filter(), &log, &[]);
        Self {
            config,
            log,
            mdm_component,
            child,
        }
    }

    /// SIGKILL, then start again on the same config.
    pub(super) fn kill_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = support::start_host_logging(&self.config, &log_filter(), &self.log, &[]);
    }

    /// SIGTERM; true when the replica drained and exited cleanly.
    pub(super) fn stop(&mut self) -> bool {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        self.child.wait().unwrap().success()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
