//! A client of Service Bus's entity-management API (the ATOM feed over HTTPS at
//! `https://<namespace>/<entity>?api-version=2021-05`), for what AMQP cannot do: read a queue's
//! runtime counts (active, scheduled, dead-lettered) and create the queues, topics,
//! subscriptions and rules a config names. Each `ensure_…` creates what is missing and leaves
//! what exists as it is, so running it again changes nothing.
//!
//! Requests carry a SAS token signed for the request's own URL (as the official SDKs sign
//! them), or, for a [`ServiceBusTarget::Entra`] target, `Authorization: Bearer` with the
//! credential's Entra ID token for [`SERVICE_BUS_SCOPE`](super::SERVICE_BUS_SCOPE); a `401` to a
//! bearer token makes the credential fetch a new one, and the request is repeated once with it.
//! `sagahost broker --http-listen` serves the same API over plain HTTP; point
//! [`EntityClient::new`]'s `endpoint` at it. The XML is read with quick-xml: only the few
//! elements used here, by local name, so the namespaces Service Bus puts on them do not matter.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use quick_xml::Reader;
use quick_xml::escape::escape;
use quick_xml::events::Event;

use sagahost_identity::AccessToken;

use super::connection_string::Credential;
use super::dialect::{rule_path, subscription_path};
use super::target::{Auth, ServiceBusTarget};
use crate::embedded::{QueueDepth, QueueSettings, SubscriptionSettings};
use crate::filter::{CorrelationFilter, RuleFilter};
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
    auth: Auth,
}

/// An `Authorization` header value, and the Entra ID token in it, if any, to forget on a `401`.
struct Authorization {
    header: String,
    bearer: Option<AccessToken>,
}

/// What [`EntityClient::ensure_queue`] (or its siblings for topics, subscriptions and rules) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// The entity was created with the settings.
    Created,
    /// An entity of that name was there already; it was left as it is.
    Existed,
}

impl EntityClient {
    /// A client for the namespace of `connection_string`, at `endpoint` (by default
    /// `https://<namespace host>`).
    pub fn new(connection_string: &str, endpoint: Option<&str>) -> anyhow::Result<Self> {
        Self::with_target(&ServiceBusTarget::connection_string(connection_string)?, endpoint)
    }

    /// A client for `target`'s namespace (SAS or Entra ID, as the transport connects to it), at
    /// `endpoint` (by default `https://<namespace host>`).
    pub fn with_target(target: &ServiceBusTarget, endpoint: Option<&str>) -> anyhow::Result<Self> {
        let target = target.endpoint()?;
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
            auth: target.auth,
        })
    }

    fn url(&self, entity: &str) -> String {
        format!("{}/{entity}?api-version={API_VERSION}", self.endpoint)
    }

    async fn authorization(&self, entity: &str) -> anyhow::Result<Authorization> {
        let sas = |header| Authorization { header, bearer: None };
        Ok(match &self.auth {
            Auth::Sas(Credential::SharedAccessKey { name, key }) => sas(sas::sas_token(
                &format!("{}/{entity}", self.endpoint),
                name,
                key,
                sas::expiry_from_now(TOKEN_TTL),
            )),
            Auth::Sas(Credential::SharedAccessSignature(token)) => sas(token.clone()),
            Auth::Entra(credential) => {
                let token = credential.token().await.map_err(|err| {
                    anyhow!(
                        "getting an Entra ID token for the entity API of {} failed: {err}",
                        self.endpoint
                    )
                })?;
                Authorization {
                    header: format!("Bearer {}", token.secret.expose()),
                    bearer: Some(token),
                }
            }
        })
    }

    /// Sends the request `build` makes for `entity` with its authorization; after a `401` to an
    /// Entra ID token, forgets that token and sends once more with a fresh one.
    async fn send(
        &self,
        entity: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let authorization = self.authorization(entity).await?;
        let response = build().header("Authorization", &authorization.header).send().await?;
        match (&self.auth, authorization.bearer) {
            (Auth::Entra(credential), Some(token)) if response.status() == reqwest::StatusCode::UNAUTHORIZED => {
                credential.invalidate(&token);
                let again = self.authorization(entity).await?;
                Ok(build().header("Authorization", &again.header).send().await?)
            }
            _ => Ok(response),
        }
    }

    /// The description of `entity`, or `None` when it does not exist.
    async fn get(&self, entity: &str) -> anyhow::Result<Option<String>> {
        let response = self
            .send(entity, || self.http.get(self.url(entity)))
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
        let what = format!("queue `{}`", settings.name);
        self.ensure(&settings.name, &what, "QueueDescription", queue_description(settings))
            .await
    }

    /// Creates the topic `name` unless it exists.
    pub async fn ensure_topic(&self, name: &str) -> anyhow::Result<Ensured> {
        let what = format!("topic `{name}`");
        self.ensure(name, &what, "TopicDescription", entry("TopicDescription", ""))
            .await
    }

    /// Creates the subscription `settings.name` of `topic` with its lock duration, max delivery
    /// count and default time to live unless it exists (then left as it is, rules included). A
    /// new subscription gets the first of `settings.rules` as its only rule, or `$Default`
    /// (matching every message) when there are none, as Service Bus does; add the other rules
    /// with [`EntityClient::ensure_rule`].
    pub async fn ensure_subscription(&self, topic: &str, settings: &SubscriptionSettings) -> anyhow::Result<Ensured> {
        let path = subscription_path(topic, &settings.name);
        let what = format!("subscription `{}` of topic `{topic}`", settings.name);
        self.ensure(
            &path,
            &what,
            "SubscriptionDescription",
            subscription_description(settings),
        )
        .await
    }

    /// Adds the rule `name` with `filter` to the subscription `subscription` of `topic` unless it
    /// has a rule of that name (whose filter is then left as it is).
    pub async fn ensure_rule(
        &self,
        topic: &str,
        subscription: &str,
        name: &str,
        filter: &RuleFilter,
    ) -> anyhow::Result<Ensured> {
        let path = rule_path(topic, subscription, name);
        let what = format!("rule `{name}` of `{}`", subscription_path(topic, subscription));
        let body = entry("RuleDescription", &rule_elements(name, filter));
        self.ensure(&path, &what, "RuleDescription", body).await
    }

    /// Creates the entity at `path` (`what` names it in errors) with the entry `body`, holding a
    /// `kind` description, unless it exists. Queues and topics share one namespace of names: one
    /// of the other kind there is an error, not "existed".
    async fn ensure(&self, path: &str, what: &str, kind: &str, body: String) -> anyhow::Result<Ensured> {
        if let Some(existing) = self.get(path).await? {
            if !has_element(&existing, kind)? {
                bail!(
                    "cannot create {what} in {}: an entity of another kind has that name (no {kind} there)",
                    self.endpoint
                );
            }
            return Ok(Ensured::Existed);
        }
        let response = self
            .send(path, || {
                self.http
                    .put(self.url(path))
                    .header("Content-Type", "application/atom+xml;type=entry;charset=utf-8")
                    .body(body.clone())
            })
            .await
            .with_context(|| format!("creating {what} in {}", self.endpoint))?;
        let status = response.status();
        match status {
            _ if status.is_success() => Ok(Ensured::Created),
            // Someone else created it between the two requests.
            reqwest::StatusCode::CONFLICT => Ok(Ensured::Existed),
            _ => {
                let body = response.text().await.unwrap_or_default();
                bail!(
                    "{} refused to create {what} ({status}): {}",
                    self.endpoint,
                    error_detail(&body)
                )
            }
        }
    }
}

/// An ATOM entry whose content is the description `kind` holding `elements`.
fn entry(kind: &str, elements: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
         <entry xmlns=\"http://www.w3.org/2005/Atom\"><content type=\"application/xml\">\
         <{kind} xmlns=\"http://schemas.microsoft.com/netservices/2010/10/servicebus/connect\" \
         xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\">{elements}</{kind}></content></entry>"
    )
}

/// A duration as `xs:duration` in seconds with milliseconds: `PT45.500S`.
fn duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    format!("PT{}.{:03}S", ms / 1000, ms % 1000)
}

/// The ATOM entry that creates a subscription with `settings`, its first rule as the default.
fn subscription_description(settings: &SubscriptionSettings) -> String {
    let ttl = settings
        .default_ttl
        .map(|ttl| format!("<DefaultMessageTimeToLive>{}</DefaultMessageTimeToLive>", duration(ttl)))
        .unwrap_or_default();
    let default_rule = settings
        .rules
        .first()
        .map(|rule| {
            format!(
                "<DefaultRuleDescription>{}</DefaultRuleDescription>",
                rule_elements(&rule.name, &rule.filter)
            )
        })
        .unwrap_or_default();
    // Service Bus reads the elements in this order only.
    entry(
        "SubscriptionDescription",
        &format!(
            "<LockDuration>{}</LockDuration>{ttl}{default_rule}<MaxDeliveryCount>{}</MaxDeliveryCount>",
            duration(settings.lock_duration),
            settings.max_delivery_count
        ),
    )
}

/// A `RuleDescription`'s elements: the filter, an empty action and the name, in Service Bus's
/// order.
fn rule_elements(name: &str, filter: &RuleFilter) -> String {
    let sql = |kind: &str, expression: &str| {
        format!(
            "<Filter i:type=\"{kind}\"><SqlExpression>{}</SqlExpression><CompatibilityLevel>20</CompatibilityLevel></Filter>",
            escape(expression)
        )
    };
    let filter = match filter {
        RuleFilter::True => sql("TrueFilter", "1=1"),
        RuleFilter::False => sql("FalseFilter", "1=0"),
        RuleFilter::Sql(expression) => sql("SqlFilter", expression),
        RuleFilter::Correlation(correlation) => correlation_filter(correlation),
    };
    format!(
        "{filter}<Action i:type=\"EmptyRuleAction\"/><Name>{}</Name>",
        escape(name)
    )
}

fn correlation_filter(filter: &CorrelationFilter) -> String {
    let mut xml = String::from("<Filter i:type=\"CorrelationFilter\">");
    for (element, value) in [
        ("CorrelationId", &filter.correlation_id),
        ("MessageId", &filter.message_id),
        ("To", &filter.to),
        ("ReplyTo", &filter.reply_to),
        ("Label", &filter.subject),
        ("SessionId", &filter.session_id),
        ("ReplyToSessionId", &filter.reply_to_session_id),
        ("ContentType", &filter.content_type),
    ] {
        if let Some(value) = value {
            xml.push_str(&format!("<{element}>{}</{element}>", escape(value)));
        }
    }
    if !filter.properties.is_empty() {
        xml.push_str("<Properties>");
        for (key, value) in &filter.properties {
            xml.push_str(&format!(
                "<KeyValueOfstringanyType><Key>{}</Key>\
                 <Value i:type=\"d6p1:string\" xmlns:d6p1=\"http://www.w3.org/2001/XMLSchema\">{}</Value>\
                 </KeyValueOfstringanyType>",
                escape(key),
                escape(value)
            ));
        }
        xml.push_str("</Properties>");
    }
    xml.push_str("</Filter>");
    xml
}

/// The ATOM entry that creates a queue with `settings`.
fn queue_description(settings: &QueueSettings) -> String {
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
    entry(
        "QueueDescription",
        &format!(
            "<LockDuration>{}</LockDuration>{sessions}{ttl}<MaxDeliveryCount>{}</MaxDeliveryCount>",
            duration(settings.lock_duration),
            settings.max_delivery_count
        ),
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

/// Whether `xml` has an element whose local name is `name`.
fn has_element(xml: &str, name: &str) -> anyhow::Result<bool> {
    let mut reader = Reader::from_str(xml);
    loop {
        match reader.read_event().context("reading the entity description")? {
            Event::Start(element) | Event::Empty(element) if element.local_name().as_ref() == name.as_bytes() => {
                return Ok(true);
            }
            Event::Eof => return Ok(false),
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
    fn a_subscription_description_carries_its_settings_and_first_rule_in_order() {
        let settings = SubscriptionSettings {
            lock_duration: Duration::from_secs(45),
            max_delivery_count: 3,
            default_ttl: Some(Duration::from_secs(60)),
            rules: vec![crate::embedded::Rule {
                name: "creates".into(),
                filter: RuleFilter::Sql("name = 'a&b' AND n < 3".into()),
            }],
            ..SubscriptionSettings::new("mdm")
        };
        let xml = subscription_description(&settings);
        let expected = "<LockDuration>PT45.000S</LockDuration><DefaultMessageTimeToLive>PT60.000S</DefaultMessageTimeToLive>\
             <DefaultRuleDescription><Filter i:type=\"SqlFilter\"><SqlExpression>name = &apos;a&amp;b&apos; AND n &lt; 3</SqlExpression>";
        assert!(xml.contains(expected), "{xml}");
        assert!(
            xml.contains("<Name>creates</Name></DefaultRuleDescription><MaxDeliveryCount>3</MaxDeliveryCount>"),
            "{xml}"
        );
    }

    #[test]
    fn a_correlation_rule_writes_its_fields_in_service_bus_order() {
        let filter = RuleFilter::Correlation(CorrelationFilter {
            correlation_id: Some("c".into()),
            subject: Some("Create".into()),
            properties: vec![("region".into(), "eu".into())],
            ..CorrelationFilter::default()
        });
        let xml = rule_elements("r", &filter);
        assert!(
            xml.starts_with(
                "<Filter i:type=\"CorrelationFilter\"><CorrelationId>c</CorrelationId><Label>Create</Label><Properties>"
            ),
            "{xml}"
        );
        assert!(xml.contains("<Key>region</Key><Value i:type=\"d6p1:string\""), "{xml}");
        assert!(
            xml.ends_with("<Action i:type=\"EmptyRuleAction\"/><Name>r</Name>"),
            "{xml}"
        );
    }

    #[test]
    fn an_error_body_gives_its_detail() {
        let body = "<Error><Code>400</Code><Detail>bad name</Detail></Error>";
        assert_eq!(error_detail(body), "bad name");
    }
}
