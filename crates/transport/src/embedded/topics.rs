//! Topics, subscriptions and rules in the embedded queue, as Azure Service Bus has them: a message
//! sent to a topic is copied, in the same transaction, to every subscription one of whose rules'
//! filters it matches, and dropped when it matches none.
//!
//! # What it owns
//! The public settings ([`TopicSettings`], [`SubscriptionSettings`], [`Rule`]), the errors of
//! topic management ([`TopicError`]), the in-memory catalog the send path routes with, and the
//! [`EmbeddedQueue`] methods that create, list and delete topics, subscriptions and rules. The
//! SQL behind them is in `topic_store.rs`.
//!
//! # How a subscription is stored
//! A subscription is a queue whose name is its Service Bus entity path,
//! `<topic>/Subscriptions/<subscription>` ([`subscription_path`]), with the subscription's own
//! lock duration, max delivery count and default time to live. Everything a queue does (peek-lock
//! receives, delivery counts, TTL, the dead-letter sub-queue, scheduled messages, peeks) works on
//! that name unchanged. A topic's copies share one sequence number, taken from the topic's own
//! counter, as in Service Bus; so a scheduled message sent to a topic is copied at send time, each
//! copy keeps the schedule, and cancelling it on the topic cancels every copy. A subscription
//! cannot be sent to directly.
//!
//! Topics, subscriptions and rules are durable in the queue database and come back on open.
//! Management calls are serialized among themselves (one at a time), change the database first
//! and then swap the catalog: a send sees a subscription or rule once the change is committed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::super::TransportError;
use super::{EmbeddedQueue, QueueSettings, default_lock_duration, default_max_delivery_count, millis, optional_millis};
use super::{topic_store, validate};
use crate::filter::{Filter, FilterError, MessageFields, RuleFilter};
use crate::servicebus::dialect::{SUBSCRIPTIONS_SEGMENT, subscription_path};

/// The name of the rule a new subscription gets when none are given, as in Service Bus.
pub const DEFAULT_RULE: &str = "$Default";
/// The longest rule name Service Bus accepts.
const MAX_RULE_NAME: usize = 50;

/// One topic and its subscriptions. In TOML:
///
/// ```toml
/// [[topics]]
/// name = "contacts"
/// [[topics.subscriptions]]
/// name = "mdm"
/// max-delivery-count = 5
/// [[topics.subscriptions.rules]]
/// name = "creates"
/// filter = { sql = "MessageName = 'Create'" }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TopicSettings {
    /// The topic's name, as senders address it.
    pub name: String,
    /// Its subscriptions.
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionSettings>,
}

impl TopicSettings {
    /// A topic with no subscriptions yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            subscriptions: Vec::new(),
        }
    }
}

/// One subscription's settings; durations in TOML are whole milliseconds, as for queues.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SubscriptionSettings {
    /// The subscription's name within its topic.
    pub name: String,
    /// How long a receive locks a message (default 30 s).
    #[serde(
        rename = "lock-duration-ms",
        default = "default_lock_duration",
        deserialize_with = "millis"
    )]
    pub lock_duration: Duration,
    /// Deliveries after which a message is dead-lettered with `MaxDeliveryCountExceeded` (default 10).
    #[serde(default = "default_max_delivery_count")]
    pub max_delivery_count: u32,
    /// Time to live for copies of messages sent without one; `None` keeps them until consumed.
    #[serde(rename = "default-ttl-ms", default, deserialize_with = "optional_millis")]
    pub default_ttl: Option<Duration>,
    /// Its rules; none given means the `$Default` rule, which matches every message.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

impl SubscriptionSettings {
    /// Settings for `name` with the defaults: 30 s locks, 10 deliveries, no default time to live,
    /// and the `$Default` rule.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            lock_duration: default_lock_duration(),
            max_delivery_count: default_max_delivery_count(),
            default_ttl: None,
            rules: Vec::new(),
        }
    }

    /// The settings its queue (named by its entity path) runs with.
    fn queue(&self, topic: &str) -> QueueSettings {
        QueueSettings {
            name: subscription_path(topic, &self.name),
            lock_duration: self.lock_duration,
            max_delivery_count: self.max_delivery_count,
            default_ttl: self.default_ttl,
            requires_session: false,
        }
    }
}

/// A subscription rule: a name and a filter. (Service Bus rules may also have a SQL action; this
/// queue refuses them, see [`crate::filter::check_action`].)
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Rule {
    /// Unique within the subscription; at most 50 characters.
    pub name: String,
    /// Which messages the rule lets into the subscription.
    pub filter: RuleFilter,
}

impl Rule {
    /// The rule every new subscription gets unless it is given others: `$Default`, matching all.
    pub fn default_rule() -> Self {
        Self {
            name: DEFAULT_RULE.to_owned(),
            filter: RuleFilter::True,
        }
    }
}

/// A topic as the management endpoint shows it: its subscriptions and what they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic with its subscriptions and their rules.
    pub settings: TopicSettings,
    /// The bodies of the messages sent to it that its subscriptions hold (dead letters included),
    /// each counted once however many subscriptions have a copy, in bytes.
    pub size_in_bytes: u64,
    /// Messages sent to it that are still scheduled, each counted once.
    pub scheduled: u64,
}

/// Why a topic management call failed.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error(
        "topic `{0}` does not exist; create it first (EmbeddedQueue::ensure_topic, or [[topics]] in the broker config)"
    )]
    UnknownTopic(String),
    #[error("subscription `{subscription}` of topic `{topic}` does not exist; create it first")]
    UnknownSubscription { topic: String, subscription: String },
    #[error("rule `{rule}` already exists on `{}`; remove it first or pick another name", subscription_path(.topic, .subscription))]
    RuleExists {
        topic: String,
        subscription: String,
        rule: String,
    },
    #[error("rule `{rule}` does not exist on `{}`", subscription_path(.topic, .subscription))]
    UnknownRule {
        topic: String,
        subscription: String,
        rule: String,
    },
    /// The name is taken by an entity of another kind (a queue named like the topic).
    #[error("`{0}` is already a queue; a topic needs a name no queue uses")]
    NameTaken(String),
    /// Settings or names the queue cannot work with.
    #[error("{0}")]
    Invalid(String),
    #[error("rule `{rule}`: {error}")]
    Filter { rule: String, error: FilterError },
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// A rule with its compiled filter.
#[derive(Debug, Clone)]
pub(super) struct CompiledRule {
    pub(super) rule: Rule,
    pub(super) filter: Filter,
}

/// A subscription as the send path routes to it.
#[derive(Debug, Clone)]
pub(super) struct SubscriptionEntry {
    pub(super) settings: SubscriptionSettings,
    pub(super) queue: QueueSettings,
    pub(super) rules: Vec<CompiledRule>,
}

impl SubscriptionEntry {
    pub(super) fn new(topic: &str, settings: SubscriptionSettings, rules: Vec<CompiledRule>) -> Self {
        let queue = settings.queue(topic);
        Self { settings, queue, rules }
    }

    /// Whether any rule lets `message` in.
    pub(super) fn accepts(&self, message: &MessageFields<'_>) -> bool {
        self.rules.iter().any(|rule| rule.filter.matches(message))
    }
}

/// Every topic with its subscriptions and rules: what `topic_store::load` reads, and the snapshot
/// sends route with.
#[derive(Debug, Clone, Default)]
pub(super) struct Catalog {
    /// By topic name, then by subscription name (ordered, so listings are stable).
    pub(super) topics: HashMap<String, BTreeMap<String, SubscriptionEntry>>,
    /// Each subscription's queue settings, by entity path.
    pub(super) paths: HashMap<String, QueueSettings>,
}

impl Catalog {
    pub(super) fn insert(&mut self, topic: &str, entry: Option<SubscriptionEntry>) {
        let subscriptions = self.topics.entry(topic.to_owned()).or_default();
        if let Some(entry) = entry {
            self.paths.insert(entry.queue.name.clone(), entry.queue.clone());
            subscriptions.insert(entry.settings.name.clone(), entry);
        }
    }

    fn subscription(&self, topic: &str, subscription: &str) -> Result<&SubscriptionEntry, TopicError> {
        self.topics
            .get(topic)
            .ok_or_else(|| TopicError::UnknownTopic(topic.to_owned()))?
            .get(subscription)
            .ok_or_else(|| TopicError::UnknownSubscription {
                topic: topic.to_owned(),
                subscription: subscription.to_owned(),
            })
    }

    fn settings(&self, topic: &str) -> Option<TopicSettings> {
        let subscriptions = self.topics.get(topic)?;
        Some(TopicSettings {
            name: topic.to_owned(),
            subscriptions: subscriptions.values().map(listed).collect(),
        })
    }
}

/// A subscription's settings with its current rules.
fn listed(entry: &SubscriptionEntry) -> SubscriptionSettings {
    SubscriptionSettings {
        rules: entry.rules.iter().map(|compiled| compiled.rule.clone()).collect(),
        ..entry.settings.clone()
    }
}

fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() || name.contains('$') || name.contains(SUBSCRIPTIONS_SEGMENT) {
        return Err(TopicError::Invalid(format!(
            "`{name}` is not a topic name: it must be non-empty, without `$` and without `{SUBSCRIPTIONS_SEGMENT}`"
        )));
    }
    Ok(())
}

fn validate_subscription(topic: &str, settings: &SubscriptionSettings) -> Result<(), TopicError> {
    let name = &settings.name;
    if name.is_empty() || name.contains('/') || name.contains('$') {
        return Err(TopicError::Invalid(format!(
            "`{name}` is not a subscription name for topic `{topic}`: it must be non-empty, without `/` and `$`"
        )));
    }
    validate(&settings.queue(topic)).map_err(|error| TopicError::Invalid(format!("{error:#}")))?;
    for rule in &settings.rules {
        compile(rule)?;
    }
    Ok(())
}

/// Checks a rule's name and compiles its filter.
pub(super) fn compile(rule: &Rule) -> Result<CompiledRule, TopicError> {
    if rule.name.is_empty() || rule.name.chars().count() > MAX_RULE_NAME {
        return Err(TopicError::Invalid(format!(
            "`{}` is not a rule name: it must have 1 to {MAX_RULE_NAME} characters",
            rule.name
        )));
    }
    let filter = Filter::compile(&rule.filter).map_err(|error| TopicError::Filter {
        rule: rule.name.clone(),
        error,
    })?;
    Ok(CompiledRule {
        rule: rule.clone(),
        filter,
    })
}

impl EmbeddedQueue {
    /// The current topic catalog, as one consistent snapshot.
    pub(super) fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(
            &self
                .shared
                .topics
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// Runs one management change in the database, then reloads the catalog and swaps it in,
    /// creating the arrival notifiers of new subscriptions first (a receive that finds a
    /// subscription also finds its notifier). The caller holds the management lock.
    async fn change<T, F>(&self, mut change: F) -> Result<T, TopicError>
    where
        T: Send + 'static,
        F: FnMut(&rusqlite::Connection) -> anyhow::Result<T> + Send + 'static,
    {
        let (result, catalog) = self
            .shared
            .writer
            .call(move |conn| {
                let result = change(conn)?;
                Ok((result, topic_store::load(conn)?))
            })
            .await?;
        self.add_arrivals(catalog.paths.keys());
        *self
            .shared
            .topics
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(catalog);
        Ok(result)
    }

    /// Whether a topic named `topic` exists.
    pub fn has_topic(&self, topic: &str) -> bool {
        self.catalog().topics.contains_key(topic)
    }

    /// Whether `path` is a subscription's entity path (`<topic>/Subscriptions/<subscription>`).
    pub fn has_subscription_path(&self, path: &str) -> bool {
        self.catalog().paths.contains_key(path)
    }

    /// Every topic with its subscriptions and their rules, by name.
    pub fn topics(&self) -> Vec<TopicSettings> {
        let catalog = self.catalog();
        let mut names: Vec<&String> = catalog.topics.keys().collect();
        names.sort();
        names.into_iter().filter_map(|name| catalog.settings(name)).collect()
    }

    /// The topic `topic` with its subscriptions and their rules, if it exists.
    pub fn topic(&self, topic: &str) -> Option<TopicSettings> {
        self.catalog().settings(topic)
    }

    /// Creates `settings.name` unless it exists, then each of its subscriptions that does not exist
    /// yet (existing ones keep their settings and rules). Returns whether the topic was created.
    /// Fails with [`TopicError::NameTaken`] if a queue has the name.
    pub async fn ensure_topic(&self, settings: TopicSettings) -> Result<bool, TopicError> {
        validate_topic_name(&settings.name)?;
        for subscription in &settings.subscriptions {
            validate_subscription(&settings.name, subscription)?;
        }
        let _serial = self.shared.entity_changes.lock().await;
        if self.has_queue(&settings.name) {
            return Err(TopicError::NameTaken(settings.name));
        }
        let catalog = self.catalog();
        let existing = catalog.topics.get(&settings.name);
        let created = existing.is_none();
        let missing: Vec<SubscriptionSettings> = settings
            .subscriptions
            .into_iter()
            .filter(|subscription| existing.is_none_or(|subs| !subs.contains_key(&subscription.name)))
            .collect();
        if !created && missing.is_empty() {
            return Ok(false);
        }
        let name = settings.name;
        self.change(move |conn| {
            topic_store::create_topic(conn, &name)?;
            for subscription in &missing {
                topic_store::create_subscription(conn, &name, subscription)?;
            }
            Ok(())
        })
        .await?;
        Ok(created)
    }

    /// Creates subscription `settings.name` of `topic` unless it exists (which then keeps its
    /// settings and rules). With no rules given it gets `$Default`, which matches every message.
    /// Returns whether it was created.
    pub async fn ensure_subscription(&self, topic: &str, settings: SubscriptionSettings) -> Result<bool, TopicError> {
        validate_subscription(topic, &settings)?;
        let _serial = self.shared.entity_changes.lock().await;
        let catalog = self.catalog();
        let subscriptions = catalog
            .topics
            .get(topic)
            .ok_or_else(|| TopicError::UnknownTopic(topic.to_owned()))?;
        if subscriptions.contains_key(&settings.name) {
            return Ok(false);
        }
        let topic = topic.to_owned();
        self.change(move |conn| topic_store::create_subscription(conn, &topic, &settings))
            .await?;
        Ok(true)
    }

    /// `topic` with its subscriptions and what they hold, or `None` when there is no such topic.
    pub async fn describe_topic(&self, topic: &str) -> Result<Option<TopicInfo>, TransportError> {
        let Some(settings) = self.topic(topic) else {
            return Ok(None);
        };
        let name = topic.to_owned();
        let (size_in_bytes, scheduled) = self
            .shared
            .writer
            .call(move |conn| topic_store::usage(conn, &name))
            .await?;
        Ok(Some(TopicInfo {
            settings,
            size_in_bytes,
            scheduled,
        }))
    }

    /// Replaces the lock duration, max delivery count and default time to live of the existing
    /// subscription `settings.name` of `topic` (its rules and messages stay; `settings.rules` is
    /// not used). Receives, renewals and copies sent later use the new settings.
    pub async fn update_subscription(&self, topic: &str, settings: SubscriptionSettings) -> Result<(), TopicError> {
        let settings = SubscriptionSettings {
            rules: Vec::new(),
            ..settings
        };
        validate_subscription(topic, &settings)?;
        let _serial = self.shared.entity_changes.lock().await;
        self.catalog().subscription(topic, &settings.name)?;
        let topic = topic.to_owned();
        self.change(move |conn| topic_store::update_subscription(conn, &topic, &settings))
            .await
    }

    /// The subscription `subscription` of `topic` with its rules.
    pub fn subscription(&self, topic: &str, subscription: &str) -> Result<SubscriptionSettings, TopicError> {
        self.catalog().subscription(topic, subscription).map(listed)
    }

    /// Deletes a topic with all its subscriptions, their rules and their messages (dead letters
    /// included). Returns false when there was no such topic.
    pub async fn delete_topic(&self, topic: &str) -> Result<bool, TopicError> {
        let _serial = self.shared.entity_changes.lock().await;
        if !self.has_topic(topic) {
            return Ok(false);
        }
        let topic = topic.to_owned();
        self.change(move |conn| topic_store::delete_topic(conn, &topic)).await?;
        Ok(true)
    }

    /// Deletes a subscription with its rules and messages (dead letters included). Returns false
    /// when the topic has no such subscription.
    pub async fn delete_subscription(&self, topic: &str, subscription: &str) -> Result<bool, TopicError> {
        let _serial = self.shared.entity_changes.lock().await;
        match self.catalog().subscription(topic, subscription) {
            Ok(_) => {}
            Err(TopicError::UnknownSubscription { .. }) => return Ok(false),
            Err(error) => return Err(error),
        }
        let (topic, subscription) = (topic.to_owned(), subscription.to_owned());
        self.change(move |conn| topic_store::delete_subscription(conn, &topic, &subscription))
            .await?;
        Ok(true)
    }

    /// The rules of a subscription, in the order they were added.
    pub fn rules(&self, topic: &str, subscription: &str) -> Result<Vec<Rule>, TopicError> {
        Ok(listed(self.catalog().subscription(topic, subscription)?).rules)
    }

    /// Adds `rule` to a subscription. Its filter is compiled first: a filter that does not parse is
    /// refused with [`TopicError::Filter`], naming the rule and, for SQL, the position.
    pub async fn add_rule(&self, topic: &str, subscription: &str, rule: Rule) -> Result<(), TopicError> {
        compile(&rule)?;
        let _serial = self.shared.entity_changes.lock().await;
        let entry = self.catalog().subscription(topic, subscription)?.clone();
        if entry.rules.iter().any(|existing| existing.rule.name == rule.name) {
            return Err(TopicError::RuleExists {
                topic: topic.to_owned(),
                subscription: subscription.to_owned(),
                rule: rule.name,
            });
        }
        let (topic, subscription) = (topic.to_owned(), subscription.to_owned());
        self.change(move |conn| topic_store::add_rule(conn, &topic, &subscription, &rule))
            .await
    }

    /// Replaces the filter of the existing rule `rule.name` of a subscription, in one step: a
    /// message sent meanwhile meets either the old rule or the new one. The new filter is compiled
    /// first, as for [`EmbeddedQueue::add_rule`].
    pub async fn replace_rule(&self, topic: &str, subscription: &str, rule: Rule) -> Result<(), TopicError> {
        compile(&rule)?;
        let _serial = self.shared.entity_changes.lock().await;
        let entry = self.catalog().subscription(topic, subscription)?.clone();
        if !entry.rules.iter().any(|existing| existing.rule.name == rule.name) {
            return Err(TopicError::UnknownRule {
                topic: topic.to_owned(),
                subscription: subscription.to_owned(),
                rule: rule.name,
            });
        }
        let (topic, subscription) = (topic.to_owned(), subscription.to_owned());
        self.change(move |conn| {
            topic_store::remove_rule(conn, &topic, &subscription, &rule.name)?;
            topic_store::add_rule(conn, &topic, &subscription, &rule)
        })
        .await
    }

    /// Removes the rule named `rule` from a subscription. A subscription left with no rules gets no
    /// messages, as in Service Bus.
    pub async fn remove_rule(&self, topic: &str, subscription: &str, rule: &str) -> Result<(), TopicError> {
        let _serial = self.shared.entity_changes.lock().await;
        let entry = self.catalog().subscription(topic, subscription)?.clone();
        if !entry.rules.iter().any(|existing| existing.rule.name == rule) {
            return Err(TopicError::UnknownRule {
                topic: topic.to_owned(),
                subscription: subscription.to_owned(),
                rule: rule.to_owned(),
            });
        }
        let (topic, subscription, rule) = (topic.to_owned(), subscription.to_owned(), rule.to_owned());
        self.change(move |conn| topic_store::remove_rule(conn, &topic, &subscription, &rule))
            .await
    }
}
