//! Headless Chromium driven through chromedriver (WebDriver, with fantoccini), for the
//! console tests. Debian's `chromium` and `chromium-driver` must be installed; `scripts/test`
//! installs them when they are missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

/// How long a page gets to show what a test waits for: CI runs the browser beside the whole
/// suite on two cores.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A headless Chromium session; quit with [`Browser::quit`] (or killed on drop).
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn program(variable: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(variable).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/test, which installs Debian's chromium and chromium-driver \
         (or `apt-get install chromium chromium-driver`; {variable} names another)",
        path.display()
    );
    path
}

impl Browser {
    /// Starts chromedriver and a fresh headless Chromium profile.
    pub async fn start() -> Self {
        let chromium = program("SAGAHOST_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = program("SAGAHOST_CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let profile = tempfile::tempdir().unwrap();
        // Without the background-networking flags Chromium keeps dialling Google's hosts,
        // which this closed network refuses.
        let capabilities = serde_json::json!({
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-quic", "--no-first-run", "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let started = Instant::now();
        let client = loop {
            let connected = ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await;
            match connected {
                Ok(client) => break client,
                Err(err) if started.elapsed() > PATIENCE => panic!("chromedriver did not start Chromium: {err}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        Self {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Ends the session and stops chromedriver.
    pub async fn quit(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|err| panic!("opening {url}: {err}"));
    }

    /// The first element `css` selects, waiting for it.
    pub async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("no `{css}` on the page within {PATIENCE:?}: {err}"))
    }

    /// Every element `css` selects now.
    pub async fn all(&self, css: &str) -> Vec<Element> {
        self.client.find_all(Locator::Css(css)).await.unwrap()
    }

    /// Waits until the console has rendered `view` (its `main#view[data-view]`).
    pub async fn view(&self, view: &str) {
        self.find(&format!("main#view[data-view=\"{view}\"]")).await;
    }

    /// Waits until the text of `css` satisfies `ok`; returns it.
    pub async fn text_until(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        let mut last = None;
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = element.text().await
            {
                if ok(&text) {
                    return text;
                }
                last = Some(text);
            }
            assert!(
                started.elapsed() < PATIENCE,
                "`{css}` never showed {what}; it last read {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until nothing matches `css`.
    pub async fn gone(&self, css: &str) {
        let started = Instant::now();
        while !self.all(css).await.is_empty() {
            assert!(started.elapsed() < PATIENCE, "`{css}` is still on the page");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|err| panic!("clicking `{css}`: {err}"));
    }

    /// Replaces the value of the input `css` with `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        let input = self.find(css).await;
        input.clear().await.unwrap();
        input.send_keys(text).await.unwrap();
    }

    /// The text of the whole page.
    pub async fn body_text(&self) -> String {
        self.find("body").await.text().await.unwrap()
    }

    /// Whether a JavaScript dialog (an `alert` an injected script raised) is open.
    pub async fn alert_open(&self) -> bool {
        self.client.get_alert_text().await.is_ok()
    }

    /// Saves a screenshot as `dir/NAME.png`.
    pub async fn screenshot(&self, dir: &Path, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
