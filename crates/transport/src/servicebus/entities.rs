//! A client of Service Bus's entity-management API (the ATOM feed over HTTPS at
//! `https://<namespace>/<entity>?api-version=2021-05`), for what AMQP cannot do: read a queue's
//! runtime counts (active, scheduled, dead-lettered) and create the queues a config names.
//!
//! Requests carry a SAS token signed for the request's own URL (as the official SDKs sign
//! them). `sagahost broker --http-listen` serves the same API over plain HTTP; point
//! [`EntityClient::new`]'s `endpoint` at it. The XML is read with quick-xml: only the few
//! elements used here, by local name, so the namespaces Service Bus puts on them do not matter.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use quick_xml::Reader;
use quick_xml::events::Event;

use super::connection_string::{ConnectionString, Credential};
use crate::embedded::{QueueDepth, QueueSettings};
use crate::sas;

/// The API version every request names.
const API_VERSION: &str = "2021-05";
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the tokens signed for requests live.
const TOKEN_TTL: Duration = Duration::from_secs(600);

/// A client of one namespace's entity-management API.
pub struct EntityClient {
    http: reqwest::Client,
    /// `https://<namespace>` or the configured endpoint, without a trailing `/`.
    endpoint: String,
    credential: Credential,
}

/// What [`EntityClient::ensure_queue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// The queue was created with the settings.
    Created,
    /// A queue of that name was there already; it was left as it is.
    Existed,
}

impl EntityClient {
    /// A client for the namespace of `connection_string`, at `endpoint` (by default
    /// `https://<namespace host>`).
    pub fn new(connection_string: &str, endpoint: Option<&str>) -> anyhow::Result<Self> {
        let target = ConnectionString::parse(connection_string)?;
        let endpoint = endpoint
            .map(|e| e.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| format!("https://{}", target.host));
        anyhow::ensure!(
            endpoint.starts_with("https://") || endpoint.starts_with("http://"),
            "management endpoint `{endpoint}` must start with https:// (or http:// for a local broker)"
        );
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building the HTTP client for entity management")?;
        Ok(Self {
            http,
            endpoint,
            credential: target.credential,
        })
    }

    fn url(&self, entity: &str) -> String {
        format!("{}/{entity}?api-version={API_VERSION}", self.endpoint)
    }

    fn authorization(&self, entity: &str) -> String {
        match &self.credential {
            Credential::SharedAccessKey { name, key } => sas::sas_token(
                &format!("{}/{entity}", self.endpoint),
                name,
                key,
                sas::expiry_from_now(TOKEN_TTL),
            ),
            Credential::SharedAccessSignature(token) => token.clone(),
        }
    }

    /// The description of `entity`, or `None` when it does not exist.
    async fn get(&self, entity: &str) -> anyhow::Result<Option<String>> {
        let response = self
            .http
            .get(self.url(entity))
            .header("Authorization", self.authorization(entity))
            .send()
            .await
            .with_context(|| format!("asking {} about `{entity}`", self.endpoint))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        // Service Bus answers a missing entity with 200 and an empty feed; the broker with 404.
        if status == reqwest::StatusCode::NOT_FOUND || (status.is_success() && !body.contains("<entry")) {
            return Ok(None);
        }
        if !status.is_success() {
            bail!(
                "{} answered {status} for `{entity}`: {}",
                self.endpoint,
                error_detail(&body)
            );
        }
        Ok(Some(body))
    }

    /// How many messages `queue` holds, from its runtime counts.
    pub async fn queue_depth(&self, queue: &str) -> anyhow::Result<QueueDepth> {
        let body = self
            .get(queue)
            .await?
            .ok_or_else(|| anyhow!("queue `{queue}` does not exist in {}", self.endpoint))?;
        let count = |name: &str| -> anyhow::Result<u64> {
            element_text(&body, name)?
                .map(|text| text.parse::<u64>())
                .transpose()
                .with_context(|| format!("`{name}` of queue `{queue}` is not a count"))
                .map(Option::unwrap_or_default)
        };
        Ok(QueueDepth {
            active: count("ActiveMessageCount")?,
            scheduled: count("ScheduledMessageCount")?,
            dead_lettered: count("DeadLetterMessageCount")?,
        })
    }

    /// Creates `settings.name` with its lock duration and max delivery count unless a queue of
    /// that name exists (whose settings are then left alone: a config never rewrites a queue
    /// someone tuned by hand).
    pub async fn ensure_queue(&self, settings: &QueueSettings) -> anyhow::Result<Ensured> {
        let name = &settings.name;
        if self.get(name).await?.is_some() {
            return Ok(Ensured::Existed);
        }
        let response = self
            .http
            .put(self.url(name))
            .header("Authorization", self.authorization(name))
            .header("Content-Type", "application/atom+xml;type=entry;charset=utf-8")
            .body(queue_description(settings))
            .send()
            .await
            .with_context(|| format!("creating queue `{name}` in {}", self.endpoint))?;
        let status = response.status();
        match status {
            _ if status.is_success() => Ok(Ensured::Created),
            // Someone else created it between the two requests.
            reqwest::StatusCode::CONFLICT => Ok(Ensured::Existed),
            _ => {
                let body = response.text().await.unwrap_or_default();
                bail!(
                    "{} refused to create queue `{name}` ({status}): {}",
                    self.endpoint,
                    error_detail(&body)
                )
            }
        }
    }
}

/// The ATOM entry that creates a queue with `settings`.
fn queue_description(settings: &QueueSettings) -> String {
    let lock = settings.lock_duration.as_millis();
    let ttl = settings
        .default_ttl
        .map(|ttl| {
            format!(
                "<DefaultMessageTimeToLive>PT{}S</DefaultMessageTimeToLive>",
                ttl.as_secs().max(1)
            )
        })
        .unwrap_or_default();
    // Service Bus reads the elements in the schema's order: RequiresSession comes before the TTL.
    let sessions = if settings.requires_session {
        "<RequiresSession>true</RequiresSession>"
    } else {
        ""
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
         <entry xmlns=\"http://www.w3.org/2005/Atom\"><content type=\"application/xml\">\
         <QueueDescription xmlns=\"http://schemas.microsoft.com/netservices/2010/10/servicebus/connect\" \
         xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\">\
         <LockDuration>PT{}.{:03}S</LockDuration>{sessions}{ttl}\
         <MaxDeliveryCount>{}</MaxDeliveryCount>\
         </QueueDescription></content></entry>",
        lock / 1000,
        lock % 1000,
        settings.max_delivery_count
    )
}

/// The text of the first element whose local name is `name`, if there is one.
fn element_text(xml: &str, name: &str) -> anyhow::Result<Option<String>> {
    let mut reader = Reader::from_str(xml);
    let mut inside = false;
    loop {
        match reader.read_event().context("reading the entity description")? {
            Event::Start(start) => inside = start.local_name().as_ref() == name.as_bytes(),
            Event::Text(text) if inside => {
                let text = text.decode().context("reading the entity description")?;
                return Ok(Some(text.trim().to_owned()));
            }
            Event::End(_) => inside = false,
            Event::Eof => return Ok(None),
            _ => {}
        }
    }
}

/// The `<Detail>` of a Service Bus error body, or the body itself.
fn error_detail(body: &str) -> String {
    match element_text(body, "Detail") {
        Ok(Some(detail)) => detail,
        _ => body.chars().take(300).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_read_by_local_name_whatever_the_namespace() {
        let xml = r#"<entry><content><QueueDescription><CountDetails xmlns:d2p1="x">
            <d2p1:ActiveMessageCount>2</d2p1:ActiveMessageCount>
            <d2p1:DeadLetterMessageCount>1</d2p1:DeadLetterMessageCount>
            </CountDetails></QueueDescription></content></entry>"#;
        assert_eq!(element_text(xml, "ActiveMessageCount").unwrap().as_deref(), Some("2"));
        assert_eq!(
            element_text(xml, "DeadLetterMessageCount").unwrap().as_deref(),
            Some("1")
        );
        assert_eq!(element_text(xml, "ScheduledMessageCount").unwrap(), None);
    }

    #[test]
    fn a_queue_description_carries_the_settings() {
        let settings = QueueSettings {
            lock_duration: Duration::from_millis(45_500),
            max_delivery_count: 7,
            ..QueueSettings::new("orders")
        };
        let xml = queue_description(&settings);
        assert!(xml.contains("<LockDuration>PT45.500S</LockDuration>"), "{xml}");
        assert!(xml.contains("<MaxDeliveryCount>7</MaxDeliveryCount>"), "{xml}");
        assert!(!xml.contains("RequiresSession"), "{xml}");
        let sessions = queue_description(&QueueSettings {
            requires_session: true,
            ..settings
        });
        assert!(
            sessions.contains("PT45.500S</LockDuration><RequiresSession>true</RequiresSession>"),
            "{sessions}"
        );
    }

    #[test]
    fn an_error_body_gives_its_detail() {
        let body = "<Error><Code>400</Code><Detail>bad name</Detail></Error>";
        assert_eq!(error_detail(body), "bad name");
    }
}
