//! A broker serving AMQP and the entity-management endpoint in-process, and a client for the
//! endpoint that signs its requests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sagahost_broker::{self as broker, BrokerConfig, SharedAccessKey};
use sagahost_transport::embedded::EmbeddedQueue;
use sagahost_transport::sas;
use sagahost_transport::servicebus::{ServiceBusOptions, ServiceBusTransport};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running broker: AMQP on `amqp`, the entity endpoint on `http`, over `queue.db` in `dir`.
pub struct Broker {
    pub amqp: SocketAddr,
    pub http: SocketAddr,
    pub dir: tempfile::TempDir,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Broker {
    pub async fn start() -> Self {
        Self::start_in(tempfile::tempdir().unwrap()).await
    }

    /// Starts a broker over the queue database in `dir` (made before, or new).
    pub async fn start_in(dir: tempfile::TempDir) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let queue = EmbeddedQueue::open(&database(dir.path()), &[]).unwrap();
        let amqp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (amqp, http) = (amqp_listener.local_addr().unwrap(), http_listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let config = BrokerConfig::default();
        let tasks = vec![
            tokio::spawn(broker::serve_with(
                amqp_listener,
                queue.clone(),
                config.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(broker::serve_entities(http_listener, queue, config, shutdown.clone())),
        ];
        Self {
            amqp,
            http,
            dir,
            shutdown,
            tasks,
        }
    }

    /// Stops both listeners and waits for them; returns the data folder for a restart.
    pub async fn stop(self) -> tempfile::TempDir {
        self.shutdown.cancel();
        for task in self.tasks {
            task.await.unwrap().unwrap();
        }
        self.dir
    }

    /// The connection string of the AMQP listener, as the SDKs and sagahost's client take it.
    pub fn connection_string(&self) -> String {
        connection_string(self.amqp)
    }

    /// sagahost's own Service Bus client on the AMQP listener.
    pub async fn amqp_client(&self) -> ServiceBusTransport {
        let options = ServiceBusOptions {
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            ..ServiceBusOptions::default()
        };
        ServiceBusTransport::connect(&self.connection_string(), options)
            .await
            .unwrap()
    }

    /// A client of the entity endpoint that signs with the broker's key for the namespace.
    pub fn http_client(&self) -> Client {
        Client {
            base: format!("http://{}", self.http),
            http: reqwest::Client::new(),
            token: Some(token_for(
                &format!("https://{}", self.http),
                SharedAccessKey::EMULATOR_KEY,
            )),
        }
    }
}

pub fn database(dir: &Path) -> PathBuf {
    dir.join("queue.db")
}

pub fn connection_string(address: SocketAddr) -> String {
    format!(
        "Endpoint=sb://{address};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"
    )
}

/// A SAS token for `resource` signed with `key` under the emulator's key name, valid for an hour.
pub fn token_for(resource: &str, key: &str) -> String {
    sas::sas_token(
        resource,
        SharedAccessKey::EMULATOR_NAME,
        key,
        sas::expiry_from_now(Duration::from_secs(3_600)),
    )
}

/// A signed client of the entity endpoint.
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    /// The `Authorization` header; `None` sends none.
    pub token: Option<String>,
}

/// A response's status and body.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Client {
    pub fn unsigned(&self) -> Self {
        Self {
            token: None,
            ..self.with_token("")
        }
    }

    pub fn with_token(&self, token: &str) -> Self {
        Self {
            base: self.base.clone(),
            http: self.http.clone(),
            token: Some(token.to_owned()),
        }
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<String>, update: bool) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .query(&[("api-version", "2021-05")]);
        if let Some(token) = &self.token {
            request = request.header("Authorization", token);
        }
        if update {
            request = request.header("If-Match", "*");
        }
        if let Some(body) = body {
            request = request.header("Content-Type", "application/atom+xml").body(body);
        }
        let response = request.send().await.unwrap();
        Answer {
            status: response.status().as_u16(),
            body: response.text().await.unwrap(),
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(reqwest::Method::GET, path, None, false).await
    }

    pub async fn put(&self, path: &str, body: String) -> Answer {
        self.send(reqwest::Method::PUT, path, Some(body), false).await
    }

    pub async fn update(&self, path: &str, body: String) -> Answer {
        self.send(reqwest::Method::PUT, path, Some(body), true).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(reqwest::Method::DELETE, path, None, false).await
    }
}

/// An Atom entry holding a `QueueDescription` with `elements`, as the SDKs send it.
pub fn queue_entry(elements: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml"><QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect">{elements}</QueueDescription></content></entry>"#
    )
}

/// An Atom entry holding a `TopicDescription` with `elements`.
pub fn topic_entry(elements: &str) -> String {
    description_entry("TopicDescription", elements)
}

/// An Atom entry holding a `SubscriptionDescription` with `elements`.
pub fn subscription_entry(elements: &str) -> String {
    description_entry("SubscriptionDescription", elements)
}

/// An Atom entry holding a `RuleDescription` with `elements`, declaring `xsi` for its types as the
/// Python SDK does.
pub fn rule_entry(elements: &str) -> String {
    description_entry("RuleDescription", elements)
}

fn description_entry(kind: &str, elements: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><entry xmlns="http://www.w3.org/2005/Atom" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><content type="application/xml"><{kind} xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect">{elements}</{kind}></content></entry>"#
    )
}

/// The titles of a feed's entries, in order (the feed's own title left out).
pub fn titles(feed: &str) -> Vec<&str> {
    feed.match_indices("<entry>")
        .filter_map(|(at, _)| element(&feed[at..], "title"))
        .collect()
}

/// The text of the first element named `name` (with any prefix) in `xml`.
pub fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let opening = xml.match_indices(name).find(|(at, _)| {
        let before = xml[..*at].chars().next_back();
        let after = xml[at + name.len()..].chars().next();
        matches!(before, Some('<' | ':')) && matches!(after, Some('>' | ' ')) && !xml[..*at].ends_with("</")
    })?;
    let start = opening.0 + xml[opening.0..].find('>')? + 1;
    let end = xml[start..].find('<')?;
    Some(&xml[start..start + end])
}
