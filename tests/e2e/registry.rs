//! Partner components from an OCI registry and from a URL: `sagahost publish` to a real
//! registry (Debian's `docker-registry`, the CNCF distribution registry, which each test starts
//! on loopback), a host pulling by tag and by digest and following a tag that moves, wrong
//! digests refused, a registry that goes down (the running version serves on, a restart starts
//! from the cache), basic authentication, and a download pinned by sha256.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sagahost::component::source::oci;
use sagahost::component::{CanaryPlan, ComponentSource, SlotStatus};
use sagahost::config::Config;
use sagahost::saga::{SagaEvent, Verdict};
use sagahost::service::Host;
use sagahost_transport::{OutgoingMessage, Transport};
use sha2::{Digest as _, Sha256};

use crate::operate::next_version;
use crate::saga::contact_body;
use crate::support;

/// The user and password of the registry with basic authentication; the hash is bcrypt's (the
/// only kind the registry's htpasswd takes), made once with libxcrypt's `crypt`.
const USER: &str = "sagahost";
const PASSWORD: &str = "registry-test-password";
const HTPASSWD: &str = "sagahost:$2y$05$aHh9idtTjxjtKam87uv8ROCVKofUm0hx5gbtSBF4QEEK6S46rjV82\n";

/// A `docker-registry serve` process on a loopback port over a fresh directory; killed on drop.
struct Registry {
    child: Option<Child>,
    /// `127.0.0.1:PORT`.
    addr: String,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry, with basic authentication when `auth`.
    fn start(auth: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.path().join("storage").display()
        );
        if auth {
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, HTPASSWD).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: sagahost-e2e\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let mut registry = Self { child: None, addr, dir };
        registry.resume();
        registry
    }

    /// Starts (again) the registry process on its address and storage, and waits until it answers.
    fn resume(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("registry.log")).unwrap();
        let child = Command::new(registry_binary())
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&self.addr).is_err() {
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "docker-registry did not start: {}",
                std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the process; its storage stays for [`Registry::resume`].
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `oci://ADDR/sagahost/NAME` followed by `tail` (`:TAG` or `@DIGEST`).
    fn reference(&self, name: &str, tail: &str) -> String {
        format!("oci://{}/sagahost/{name}{tail}", self.addr)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The registry binary; installed with apt when missing and possible (`scripts/test` installs
/// it first, so CI always has it).
fn registry_binary() -> PathBuf {
    let installed = || {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .chain([PathBuf::from("/usr/bin")])
            .map(|dir| dir.join("docker-registry"))
            .find(|path| path.is_file())
    };
    if let Some(path) = installed() {
        return path;
    }
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let _ = Command::new("sh")
            .args(["-c", "apt-get update -qq && apt-get install -y -qq docker-registry"])
            .stdout(Stdio::null())
            .status();
    });
    installed().expect(
        "docker-registry is missing and could not be installed: run `apt-get install docker-registry` \
         (scripts/test does)",
    )
}

/// Runs `sagahost publish FILE REFERENCE EXTRA…` with `env`.
fn publish(file: &Path, reference: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sagahost"))
        .arg("publish")
        .arg(file)
        .arg(reference)
        .args(extra)
        .envs(env.iter().copied())
        .output()
        .expect("running sagahost publish")
}

/// The digest a successful publish printed.
fn published(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "publish failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("digest "))
        .expect("publish prints the digest")
        .to_owned()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A one-partner config: `partner` runs `component` (the hostile component, which completes
/// every message when no attack is configured), polled every 200 ms; `extra` is appended.
fn config(dir: &Path, partner: &str, component: &str, extra: &str) -> anyhow::Result<Config> {
    let text = format!(
        r#"
data-dir = "{}"
component-poll-interval-ms = 200
watch-components = false
[admin]
listen = "127.0.0.1:0"
[partners.{partner}]
component = "{component}"
queue = "in"
{extra}
"#,
        dir.join("data").display(),
    );
    let path = dir.join("sagahost.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).map(|loaded| loaded.config)
}

/// Sends one message and returns what happened to it.
async fn run_one(host: &Host) -> SagaEvent {
    let mut events = host.subscribe();
    let message = OutgoingMessage {
        content_type: Some("application/json".into()),
        body: contact_body(),
        ..Default::default()
    };
    host.transport
        .send(vec![sagahost_transport::Output {
            queue: "in".into(),
            message,
        }])
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(60), events.recv())
        .await
        .expect("an event within 60 s")
        .unwrap();
    assert_eq!(event.verdict, Verdict::Completed, "{event:?}");
    event
}

fn status(host: &Host, partner: &str) -> SlotStatus {
    host.registry
        .status()
        .into_iter()
        .find(|status| status.partner == partner)
        .unwrap()
}

/// Waits up to 30 s for `done` to hold of `partner`'s status.
async fn until(host: &Host, partner: &str, what: &str, done: impl Fn(&SlotStatus) -> bool) -> SlotStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = status(host, partner);
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{what} within 30 s: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(host: &Host, path: &str) -> String {
    let url = format!("http://{}{path}", host.admin_addr.unwrap());
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_component_runs_from_its_tag_and_the_host_follows_the_tag_when_it_moves() {
    let registry = Registry::start(false);
    let dir = tempfile::tempdir().unwrap();
    let tag = registry.reference("tagged", ":v1");

    // Something that is not a component is refused before anything is pushed.
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm\x0d\0\x01\0 not a component").unwrap();
    let refused = publish(&junk, &tag, &[], &[]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("not a valid WebAssembly component"), "{stderr}");

    let v1 = support::component_bytes("hostile");
    let first = published(&publish(
        &support::component("hostile"),
        &tag,
        &["--version", "1.0.0", "--source", "https://example.com/hostile"],
        &[],
    ));

    // The artifact follows the wasm OCI convention, with the standard annotations.
    let manifest: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/v2/sagahost/tagged/manifests/{first}", registry.addr))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.wasm.config.v0+json");
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
    assert_eq!(manifest["layers"][0]["digest"], format!("sha256:{}", sha256(&v1)));
    let annotations = &manifest["annotations"];
    assert_eq!(annotations["org.opencontainers.image.title"], "hostile.wasm");
    assert_eq!(annotations["org.opencontainers.image.version"], "1.0.0");
    assert_eq!(
        annotations["org.opencontainers.image.source"],
        "https://example.com/hostile"
    );
    assert!(
        annotations["org.opencontainers.image.created"].is_string(),
        "{manifest}"
    );

    let host = Host::start(&config(dir.path(), "tagged", &tag, "").unwrap())
        .await
        .unwrap();
    let loaded = status(&host, "tagged");
    assert_eq!(
        (loaded.source.as_str(), loaded.digest.as_deref(), loaded.path.as_ref()),
        (tag.as_str(), Some(first.as_str()), None)
    );
    assert!(loaded.last_pulled_at.is_some() && loaded.last_pull_error.is_none());
    assert_eq!(run_one(&host).await.version, sha256(&v1));

    // Move the tag: the polling host pulls the new digest and swaps it in.
    let v2 = next_version(&v1, "v2");
    let v2_file = dir.path().join("hostile-v2.wasm");
    std::fs::write(&v2_file, &v2).unwrap();
    let second = published(&publish(&v2_file, &tag, &[], &[]));
    assert_ne!(first, second);
    let moved = until(&host, "tagged", "the new digest swapped in", |s| {
        s.version == sha256(&v2)
    })
    .await;
    assert_eq!((moved.digest.as_deref(), moved.reloads), (Some(second.as_str()), 1));
    assert_eq!(run_one(&host).await.version, sha256(&v2));
    let metrics = get(&host, "/metrics").await;
    assert!(
        metrics.contains("sagahost_component_reloads_total{partner=\"tagged\",result=\"replaced\"} 1"),
        "{metrics}"
    );

    // A tag moved to something that does not load leaves the running version serving, counted
    // once: the bad digest is not pulled again at every check. (`publish` would refuse it, so
    // it is pushed through the library.)
    let info = sagahost::component::ComponentInfo {
        version: String::new(),
        size: 0,
        imports: Vec::new(),
        exports: Vec::new(),
    };
    let text = tag.strip_prefix("oci://").unwrap();
    let broken = oci::push(
        &oci::OciReference::parse(text).unwrap(),
        b"\0asm\x0d\0\x01\0 not a component".to_vec(),
        &info,
        &oci::Annotations::default(),
        &oci_client::secrets::RegistryAuth::Anonymous,
        false,
    )
    .await
    .unwrap();
    let failed = until(&host, "tagged", "the broken digest refused", |s| s.failed_reloads > 0).await;
    let error = failed.last_error.unwrap();
    assert!(
        error.contains(&broken) && error.contains("not a valid WebAssembly component"),
        "{error}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = status(&host, "tagged");
    assert_eq!(
        (later.failed_reloads, later.version),
        (1, sha256(&v2)),
        "five checks later"
    );
    assert_eq!(run_one(&host).await.version, sha256(&v2));

    // A canary may come from the registry too: here the first version, pinned.
    let plan = CanaryPlan {
        component: ComponentSource::parse(&registry.reference("tagged", &format!("@{first}"))).unwrap(),
        component_sha256: None,
        percent: 50,
        margin: 0.05,
        window: 50,
    };
    assert_eq!(host.registry.start_canary("tagged", plan).await.unwrap(), sha256(&v1));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_registry_down_the_running_version_serves_on_and_a_restart_starts_from_the_cache() {
    let mut registry = Registry::start(false);
    let dir = tempfile::tempdir().unwrap();
    let tag = registry.reference("down", ":stable");
    let v1 = support::component_bytes("hostile");
    let digest = published(&publish(&support::component("hostile"), &tag, &[], &[]));
    let tagged = config(dir.path(), "down", &tag, "").unwrap();

    let host = Host::start(&tagged).await.unwrap();
    run_one(&host).await;
    registry.stop();
    let failing = until(&host, "down", "a failed check", |s| s.last_pull_error.is_some()).await;
    let error = failing.last_pull_error.unwrap();
    assert!(error.contains("partner `down`") && error.contains(&tag), "{error}");
    assert_eq!(failing.digest.as_deref(), Some(digest.as_str()));
    assert_eq!(
        run_one(&host).await.version,
        sha256(&v1),
        "the running version serves on"
    );
    let partners: serde_json::Value = serde_json::from_str(&get(&host, "/admin/partners").await).unwrap();
    assert!(partners[0]["last_pull_error"].is_string(), "{partners}");
    assert_eq!(
        (&partners[0]["source"], &partners[0]["digest"]),
        (&tag.clone().into(), &digest.clone().into())
    );
    let metrics = get(&host, "/metrics").await;
    assert!(
        metrics.contains("sagahost_component_source_failures_total{partner=\"down\"}"),
        "{metrics}"
    );
    host.shutdown().await;

    // A restart with the registry down starts from the digest the tag last resolved to.
    let restarted = Host::start(&tagged).await.unwrap();
    let cached = status(&restarted, "down");
    assert_eq!(cached.digest.as_deref(), Some(digest.as_str()));
    assert!(
        cached.last_pull_error.is_some(),
        "the status says the registry was not reached"
    );
    assert_eq!(run_one(&restarted).await.version, sha256(&v1));
    restarted.shutdown().await;

    // A component pinned by digest starts from the cache without asking the registry.
    let pinned = config(
        dir.path(),
        "down",
        &registry.reference("down", &format!("@{digest}")),
        "",
    )
    .unwrap();
    let host = Host::start(&pinned).await.unwrap();
    assert!(status(&host, "down").last_pull_error.is_none());
    run_one(&host).await;
    host.shutdown().await;

    // A tag never pulled has nothing to start from.
    let never = config(dir.path(), "down", &registry.reference("down", ":never"), "").unwrap();
    let err = format!("{:#}", Host::start(&never).await.err().unwrap());
    assert!(
        err.contains("partner `down`") && err.contains("no earlier pull"),
        "{err}"
    );

    // The registry back: the tag's check succeeds again.
    registry.resume();
    let host = Host::start(&tagged).await.unwrap();
    assert!(status(&host, "down").last_pull_error.is_none());
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_that_does_not_match_is_refused() {
    let registry = Registry::start(false);
    let dir = tempfile::tempdir().unwrap();
    published(&publish(
        &support::component("hostile"),
        &registry.reference("pinned", ":v1"),
        &[],
        &[],
    ));
    let wrong = format!("sha256:{}", sha256(b"another component"));
    let reference = registry.reference("pinned", &format!("@{wrong}"));
    let config = config(dir.path(), "pinned", &reference, "").unwrap();
    let err = format!("{:#}", Host::start(&config).await.err().unwrap());
    assert!(
        err.contains("partner `pinned`")
            && err.contains(&reference)
            && err.contains("check the repository, tag or digest"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_with_basic_authentication_takes_the_configured_credentials() {
    let registry = Registry::start(true);
    let dir = tempfile::tempdir().unwrap();
    let tag = registry.reference("private", ":v1");
    let component = support::component("hostile");
    let anonymous = publish(&component, &tag, &[], &[]);
    assert!(!anonymous.status.success(), "the registry refuses anonymous pushes");
    let stderr = String::from_utf8_lossy(&anonymous.stderr);
    assert!(
        stderr.contains("--password-env"),
        "the error says how to sign in: {stderr}"
    );

    let var = format!("SAGAHOST_E2E_REGISTRY_PASSWORD_{}", std::process::id());
    let env = [(var.as_str(), PASSWORD)];
    published(&publish(
        &component,
        &tag,
        &["--username", USER, "--password-env", &var],
        &env,
    ));

    let err = format!(
        "{:#}",
        Host::start(&config(dir.path(), "private", &tag, "").unwrap())
            .await
            .err()
            .unwrap()
    );
    assert!(err.contains(&format!("[registries.\"{}\"]", registry.addr)), "{err}");

    // SAFETY: the variable's name is unique to this test and this process.
    unsafe { std::env::set_var(&var, PASSWORD) };
    let credentials = format!(
        "[registries.\"{}\"]\nusername = \"{USER}\"\npassword = {{ env = \"{var}\" }}\n",
        registry.addr
    );
    let host = Host::start(&config(dir.path(), "private", &tag, &credentials).unwrap())
        .await
        .unwrap();
    run_one(&host).await;
    host.shutdown().await;
}

/// Serves `body` at every path on a loopback port; returns `http://ADDR`.
async fn serve(body: Vec<u8>) -> String {
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { body }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_runs_only_with_the_pinned_sha256() {
    let wasm = support::component_bytes("hostile");
    let url = format!("{}/components/hostile.wasm", serve(wasm.clone()).await);
    let sha = sha256(&wasm);

    let missing = format!(
        "{:#}",
        config(tempfile::tempdir().unwrap().path(), "dl", &url, "").unwrap_err()
    );
    assert!(
        missing.contains("partners.dl.component") && missing.contains("component-sha256"),
        "{missing}"
    );

    let wrong = sha256(b"another component");
    let dir = tempfile::tempdir().unwrap();
    let pinned_wrong = config(dir.path(), "dl", &url, &format!("component-sha256 = \"{wrong}\"")).unwrap();
    let err = format!("{:#}", Host::start(&pinned_wrong).await.err().unwrap());
    for part in ["partner `dl`", url.as_str(), wrong.as_str(), sha.as_str()] {
        assert!(err.contains(part), "{part} in {err}");
    }

    let dir = tempfile::tempdir().unwrap();
    let pinned = config(dir.path(), "dl", &url, &format!("component-sha256 = \"{sha}\"")).unwrap();
    let host = Host::start(&pinned).await.unwrap();
    let loaded = status(&host, "dl");
    assert_eq!(
        (loaded.source.as_str(), loaded.digest.clone()),
        (url.as_str(), Some(format!("sha256:{sha}")))
    );
    assert_eq!(run_one(&host).await.version, sha);
    host.shutdown().await;
}
