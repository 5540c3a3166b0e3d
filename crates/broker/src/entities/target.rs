//! What a request addresses: the path and query of an entity-management request, read into a
//! [`Target`] before any handler runs, so routing is one pure function that tests can call.
//!
//! Entity names may hold `/` (a queue `orders/eu` is the path `/orders/eu`), so the path is not
//! matched against fixed patterns: a segment `Subscriptions` (any case) splits a topic's name from
//! a subscription's, and `Rules` a subscription's from a rule's, as in Service Bus.

use percent_encoding::percent_decode_str;

use sagahost_transport::embedded::DEFAULT_RULE;
use sagahost_transport::servicebus::dialect::{rule_path, subscription_path};

use super::names::{self, NameKind};

/// The path of the namespace's own description.
const NAMESPACE_INFO: &str = "$namespaceinfo";
/// The folder the namespace lists its entities under.
const RESOURCES: &str = "$Resources";
/// The path segment between a topic and its subscriptions.
const SUBSCRIPTIONS: &str = "Subscriptions";
/// The path segment between a subscription and its rules.
const RULES: &str = "Rules";

/// The largest page a list returns, as in Service Bus.
pub const MAX_PAGE: usize = 100;

/// What a request addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/$namespaceinfo`.
    NamespaceInfo,
    /// A list of entities, one page at a time.
    List(Listing),
    /// One entity.
    Entity(Entity),
}

/// The lists the namespace has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// `/$Resources/queues`.
    Queues,
    /// `/$Resources/topics`.
    Topics,
    /// `/{topic}/Subscriptions`.
    Subscriptions { topic: String },
    /// `/{topic}/Subscriptions/{subscription}/Rules`.
    Rules { topic: String, subscription: String },
}

/// One entity, named as the path names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    /// `/{name}`: a queue or a topic (they share one namespace of names; the body of a `PUT`
    /// says which is meant, and otherwise whichever exists).
    QueueOrTopic(String),
    /// `/{topic}/Subscriptions/{subscription}`.
    Subscription { topic: String, subscription: String },
    /// `/{topic}/Subscriptions/{subscription}/Rules/{rule}`.
    Rule {
        topic: String,
        subscription: String,
        rule: String,
    },
}

impl Target {
    /// The path below the namespace a SAS token's `sr` must cover: the entity's, or the list's or
    /// `$namespaceinfo` itself (the JavaScript SDK signs each request's own URL; a token for the
    /// namespace covers them all).
    pub fn path(&self) -> String {
        match self {
            Self::NamespaceInfo => NAMESPACE_INFO.to_owned(),
            Self::List(Listing::Queues) => format!("{RESOURCES}/queues"),
            Self::List(Listing::Topics) => format!("{RESOURCES}/topics"),
            Self::List(Listing::Subscriptions { topic }) => format!("{topic}/{SUBSCRIPTIONS}"),
            Self::List(Listing::Rules { topic, subscription }) => {
                format!("{topic}/{SUBSCRIPTIONS}/{subscription}/{RULES}")
            }
            Self::Entity(entity) => entity.path(),
        }
    }
}

impl Entity {
    /// The entity's path below the namespace, as a SAS token's `sr` names it.
    pub fn path(&self) -> String {
        match self {
            Self::QueueOrTopic(name) => name.clone(),
            Self::Subscription { topic, subscription } => subscription_path(topic, subscription),
            Self::Rule {
                topic,
                subscription,
                rule,
            } => rule_path(topic, subscription, rule),
        }
    }
}

/// A page of a list: `$skip` and `$top`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Entries to pass over, in name order.
    pub skip: usize,
    /// Entries to return at most (1 to [`MAX_PAGE`]).
    pub top: usize,
}

impl Default for Page {
    fn default() -> Self {
        Self { skip: 0, top: MAX_PAGE }
    }
}

/// Reads the path (as sent, percent-encoded) into a [`Target`]; the error says what is wrong.
pub fn parse_path(raw: &str) -> Result<Target, String> {
    let path = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| "the path is not valid UTF-8 once percent-decoded".to_owned())?;
    // The JavaScript SDK lists subscriptions and rules at `{topic}/Subscriptions/` (and
    // `…/Rules/`), with a trailing slash.
    let path = path.trim_matches('/');
    if path.eq_ignore_ascii_case(NAMESPACE_INFO) {
        return Ok(Target::NamespaceInfo);
    }
    let segments: Vec<&str> = path.split('/').collect();
    if let [first, kind] = segments[..]
        && first.eq_ignore_ascii_case(RESOURCES)
    {
        return match kind.to_ascii_lowercase().as_str() {
            "queues" => Ok(Target::List(Listing::Queues)),
            "topics" => Ok(Target::List(Listing::Topics)),
            other => Err(format!(
                "`{RESOURCES}/{other}` is not a list this namespace has (queues, topics)"
            )),
        };
    }
    let Some(split) = segments.iter().position(|s| s.eq_ignore_ascii_case(SUBSCRIPTIONS)) else {
        names::check(NameKind::Path, path)?;
        return Ok(Target::Entity(Entity::QueueOrTopic(path.to_owned())));
    };
    let topic = segments[..split].join("/");
    names::check(NameKind::Path, &topic)?;
    match segments[split + 1..] {
        [] => Ok(Target::List(Listing::Subscriptions { topic })),
        [subscription] => {
            names::check(NameKind::Segment, subscription)?;
            Ok(Target::Entity(Entity::Subscription {
                topic,
                subscription: subscription.to_owned(),
            }))
        }
        [subscription, rules] if rules.eq_ignore_ascii_case(RULES) => {
            names::check(NameKind::Segment, subscription)?;
            Ok(Target::List(Listing::Rules {
                topic,
                subscription: subscription.to_owned(),
            }))
        }
        [subscription, rules, rule] if rules.eq_ignore_ascii_case(RULES) => {
            names::check(NameKind::Segment, subscription)?;
            // `$Default` is the one `$` name a client may address: every new subscription has it.
            if rule != DEFAULT_RULE {
                names::check(NameKind::Segment, rule)?;
            }
            Ok(Target::Entity(Entity::Rule {
                topic,
                subscription: subscription.to_owned(),
                rule: rule.to_owned(),
            }))
        }
        _ => Err(format!(
            "`{path}` is not an entity path: use {{topic}}/Subscriptions/{{subscription}}[/Rules/{{rule}}]"
        )),
    }
}

/// Reads `$skip` and `$top` from a query string (other parameters, such as `api-version`, are
/// accepted and ignored: every version the SDKs send reads the same here).
pub fn parse_page(query: Option<&str>) -> Result<Page, String> {
    let mut page = Page::default();
    for pair in query.unwrap_or_default().split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode_str(key).decode_utf8_lossy();
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("`{key}={value}` is not a whole number"))
        };
        match key.as_ref() {
            "$skip" => page.skip = number()?,
            "$top" => {
                page.top = number()?;
                if !(1..=MAX_PAGE).contains(&page.top) {
                    return Err(format!("`$top={value}`: a page holds 1 to {MAX_PAGE} entries"));
                }
            }
            _ => {}
        }
    }
    Ok(page)
}
