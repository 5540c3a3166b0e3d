//! The Atom envelopes of the entity-management API: an `<entry>` around one description, a
//! `<feed>` of entries for a list, and the reading of a `PUT` body into the description it carries.
//!
//! # Reading bodies safely
//! A body is at most [`super::MAX_BODY_BYTES`] (checked before it gets here). It is first read as
//! plain XML events to refuse any `<!DOCTYPE …>` (so no entity declarations, internal or external,
//! are ever seen; quick-xml would not expand them, but refusing says so plainly) and to check that
//! the document is an Atom `<entry>`; only then is it deserialized. Element names are matched by
//! local name: the SDKs differ in prefixes (`ns0:entry`, a default namespace), never in names.

use quick_xml::Reader;
use quick_xml::events::Event;
use serde::{Deserialize, Serialize};

use super::errors::EntityError;
use super::namespace::NamespaceInfo;
use super::queue_description::{QueueDescription, QueueDescriptionUpdate};
use super::rule_description::{RuleDescription, RuleDescriptionUpdate};
use super::subscription_description::{SubscriptionDescription, SubscriptionDescriptionUpdate};
use super::topic_description::{TopicDescription, TopicDescriptionUpdate};

/// The Atom namespace.
const ATOM: &str = "http://www.w3.org/2005/Atom";
/// The `type` of an entry's content.
const CONTENT_TYPE: &str = "application/xml";

/// `Content-Type` of an entry response.
pub const ENTRY_MEDIA_TYPE: &str = "application/atom+xml;type=entry;charset=utf-8";
/// `Content-Type` of a feed response.
pub const FEED_MEDIA_TYPE: &str = "application/atom+xml;type=feed;charset=utf-8";

/// A description in an entry's `<content>`, written as the element its `rename` names.
#[derive(Debug, Serialize)]
pub enum Description {
    /// A queue.
    #[serde(rename = "QueueDescription")]
    Queue(Box<QueueDescription>),
    /// A topic.
    #[serde(rename = "TopicDescription")]
    Topic(Box<TopicDescription>),
    /// A subscription of a topic.
    #[serde(rename = "SubscriptionDescription")]
    Subscription(Box<SubscriptionDescription>),
    /// A rule of a subscription.
    #[serde(rename = "RuleDescription")]
    Rule(Box<RuleDescription>),
    /// The namespace.
    NamespaceInfo(NamespaceInfo),
}

/// Text with a `type` attribute, as Atom titles are.
#[derive(Debug, Serialize)]
struct Title {
    #[serde(rename = "@type")]
    kind: &'static str,
    #[serde(rename = "$text")]
    text: String,
}

#[derive(Debug, Serialize)]
struct Author {
    name: String,
}

#[derive(Debug, Serialize)]
struct Link {
    #[serde(rename = "@rel")]
    rel: &'static str,
    #[serde(rename = "@href")]
    href: String,
}

#[derive(Debug, Serialize)]
struct Content {
    #[serde(rename = "@type")]
    kind: &'static str,
    #[serde(rename = "$value")]
    description: Description,
}

/// One entity in Atom: `<entry>` with its title (the entity's name), times, self link and content.
#[derive(Debug, Serialize)]
#[serde(rename = "entry")]
pub struct Entry {
    /// Set on an entry that is the document; entries in a feed inherit the feed's.
    #[serde(rename = "@xmlns", skip_serializing_if = "Option::is_none")]
    xmlns: Option<&'static str>,
    id: String,
    title: Title,
    published: String,
    updated: String,
    author: Author,
    link: Link,
    content: Content,
}

impl Entry {
    /// An entry for the entity `name` at `href` (its address), holding `description`.
    pub fn new(name: &str, href: String, namespace: &str, times: (String, String), description: Description) -> Self {
        let (published, updated) = times;
        Self {
            xmlns: Some(ATOM),
            id: href.clone(),
            title: Title {
                kind: "text",
                text: name.to_owned(),
            },
            published,
            updated,
            author: Author {
                name: namespace.to_owned(),
            },
            link: Link { rel: "self", href },
            content: Content {
                kind: CONTENT_TYPE,
                description,
            },
        }
    }

    /// The entry as an XML document.
    pub fn to_xml(&self) -> Result<String, EntityError> {
        to_document(self)
    }
}

/// A page of a list: `<feed>` with a self link, a `next` link when more entries follow (the SDKs
/// page on its `$skip` and `$top`), and the page's entries.
#[derive(Debug, Serialize)]
#[serde(rename = "feed")]
pub struct Feed {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    title: Title,
    id: String,
    updated: String,
    link: Vec<Link>,
    entry: Vec<Entry>,
}

impl Feed {
    /// A feed titled `title` at `href`, continued at `next` if more entries follow.
    pub fn new(title: &str, href: String, next: Option<String>, updated: String, entries: Vec<Entry>) -> Self {
        let mut link = vec![Link {
            rel: "self",
            href: href.clone(),
        }];
        link.extend(next.map(|href| Link { rel: "next", href }));
        Self {
            xmlns: ATOM,
            title: Title {
                kind: "text",
                text: title.to_owned(),
            },
            id: href,
            updated,
            link,
            entry: entries
                .into_iter()
                .map(|entry| Entry { xmlns: None, ..entry })
                .collect(),
        }
    }

    /// The feed as an XML document.
    pub fn to_xml(&self) -> Result<String, EntityError> {
        to_document(self)
    }
}

fn to_document<T: Serialize>(value: &T) -> Result<String, EntityError> {
    let body = quick_xml::se::to_string(value).map_err(EntityError::internal)?;
    Ok(format!("<?xml version=\"1.0\" encoding=\"utf-8\"?>{body}"))
}

/// What a `PUT` body describes.
#[derive(Debug)]
pub enum Incoming {
    /// A queue, to create or update.
    Queue(QueueDescriptionUpdate),
    /// A topic, to create or update.
    Topic(TopicDescriptionUpdate),
    /// A subscription, to create or update.
    Subscription(Box<SubscriptionDescriptionUpdate>),
    /// A rule, to create.
    Rule(RuleDescriptionUpdate),
}

impl Incoming {
    /// The description's element name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Queue(_) => "QueueDescription",
            Self::Topic(_) => "TopicDescription",
            Self::Subscription(_) => "SubscriptionDescription",
            Self::Rule(_) => "RuleDescription",
        }
    }
}

#[derive(Deserialize)]
struct EntryIn {
    content: ContentIn,
}

/// The descriptions a `PUT` may carry.
#[derive(Deserialize)]
struct ContentIn {
    #[serde(rename = "QueueDescription")]
    queue: Option<QueueDescriptionUpdate>,
    #[serde(rename = "TopicDescription")]
    topic: Option<TopicDescriptionUpdate>,
    #[serde(rename = "SubscriptionDescription")]
    subscription: Option<SubscriptionDescriptionUpdate>,
    #[serde(rename = "RuleDescription")]
    rule: Option<RuleDescriptionUpdate>,
}

/// Reads a `PUT` body: an Atom entry whose content is one description.
pub fn parse_entry(body: &[u8]) -> Result<Incoming, EntityError> {
    let text = std::str::from_utf8(body).map_err(|_| EntityError::bad_request("the body is not UTF-8 text"))?;
    check_document(text)?;
    let entry: EntryIn = quick_xml::de::from_str(text)
        .map_err(|error| EntityError::bad_request(format!("the body is not an entity description: {error}")))?;
    let content = entry.content;
    match (content.queue, content.topic, content.subscription, content.rule) {
        (Some(queue), None, None, None) => Ok(Incoming::Queue(queue)),
        (None, Some(topic), None, None) => Ok(Incoming::Topic(topic)),
        (None, None, Some(subscription), None) => Ok(Incoming::Subscription(Box::new(subscription))),
        (None, None, None, Some(rule)) => Ok(Incoming::Rule(rule)),
        _ => Err(EntityError::bad_request(
            "the entry's content must hold exactly one QueueDescription, TopicDescription, SubscriptionDescription or RuleDescription",
        )),
    }
}

/// Refuses a document with a DTD, one that is not well formed, and one whose root is not an Atom
/// `<entry>`.
fn check_document(text: &str) -> Result<(), EntityError> {
    let mut reader = Reader::from_str(text);
    let mut root = None;
    let mut depth = 0_usize;
    loop {
        let event = reader.read_event().map_err(|error| {
            EntityError::bad_request(format!(
                "the body is not well-formed XML (at byte {}): {error}",
                reader.error_position()
            ))
        })?;
        match event {
            Event::DocType(_) => {
                return Err(EntityError::bad_request(
                    "the body declares a DTD (<!DOCTYPE …>); entity descriptions must not",
                ));
            }
            Event::Start(element) => {
                depth += 1;
                root.get_or_insert_with(|| String::from_utf8_lossy(element.local_name().as_ref()).into_owned());
            }
            Event::Empty(element) => {
                root.get_or_insert_with(|| String::from_utf8_lossy(element.local_name().as_ref()).into_owned());
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Eof if depth > 0 => {
                return Err(EntityError::bad_request(
                    "the body is not well-formed XML: it ends inside an element",
                ));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    match root.as_deref() {
        Some("entry") => Ok(()),
        Some(other) => Err(EntityError::bad_request(format!(
            "the body's root element is <{other}>; send an Atom <entry> whose <content> holds the description"
        ))),
        None => Err(EntityError::bad_request("the body holds no XML element")),
    }
}
