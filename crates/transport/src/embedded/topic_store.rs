//! The SQL behind topics: their tables, loading them into a [`Catalog`], their changes, and the
//! fan-out of a message sent to a topic into its subscriptions. Runs on the writer thread, inside
//! the batch transaction, like `store.rs`.

use anyhow::Context;
use rusqlite::{Connection, params};

use super::super::Output;
use super::schema;
use super::store::{self, duration_ms};
use super::topics::{Catalog, CompiledRule, Rule, SubscriptionEntry, SubscriptionSettings, compile};
use crate::filter::{Filter, MessageFields, RuleFilter};
use crate::servicebus::dialect::subscription_path;

/// The topic tables (schema version 3). A topic's sequence counter is its row in `queues`; each
/// subscription's messages are `messages` rows whose queue is the subscription's entity path.
/// A rule's filter is kept as the JSON of its [`RuleFilter`] (for SQL: the text as given) and
/// compiled again on open.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS subscriptions (
    topic              TEXT NOT NULL,
    name               TEXT NOT NULL,
    lock_duration_ms   INTEGER NOT NULL,
    max_delivery_count INTEGER NOT NULL,
    default_ttl_ms     INTEGER,
    PRIMARY KEY (topic, name)
);
CREATE TABLE IF NOT EXISTS rules (
    id           INTEGER PRIMARY KEY, -- keeps the order rules were added in
    topic        TEXT NOT NULL,
    subscription TEXT NOT NULL,
    name         TEXT NOT NULL,
    filter       TEXT NOT NULL,
    UNIQUE (topic, subscription, name)
);
";

/// Adds the topic tables to a version-2 database, in one transaction.
pub(super) fn migrate_from_v2(conn: &Connection) -> anyhow::Result<()> {
    tracing::info!("upgrading the queue database to schema version 3 (topics)");
    conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = 3; COMMIT;"))
        .context("upgrading the queue database from schema version 2")
}

/// Reads every topic, subscription and rule. A stored filter that no longer compiles (the
/// database was written by a version that accepted more) matches nothing, with a warning, rather
/// than keeping the whole queue from opening.
pub(super) fn load(conn: &Connection) -> anyhow::Result<Catalog> {
    let mut catalog = Catalog::default();
    let topics = conn
        .prepare_cached("SELECT name FROM topics")?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    for topic in &topics {
        catalog.insert(topic, None);
    }
    let subscriptions = conn
        .prepare_cached(
            "SELECT topic, name, lock_duration_ms, max_delivery_count, default_ttl_ms FROM subscriptions \
             ORDER BY topic, name",
        )?
        .query_map([], |row| {
            let ms = |value: i64| std::time::Duration::from_millis(u64::try_from(value).unwrap_or(0));
            let topic: String = row.get(0)?;
            let settings = SubscriptionSettings {
                name: row.get(1)?,
                lock_duration: ms(row.get(2)?),
                max_delivery_count: row.get(3)?,
                default_ttl: row.get::<_, Option<i64>>(4)?.map(ms),
                rules: Vec::new(),
            };
            Ok((topic, settings))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut rules =
        conn.prepare_cached("SELECT name, filter FROM rules WHERE topic = ?1 AND subscription = ?2 ORDER BY id")?;
    for (topic, settings) in subscriptions {
        let path = subscription_path(&topic, &settings.name);
        let stored = rules
            .query_map(params![topic, settings.name], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut compiled = Vec::with_capacity(stored.len());
        for (name, filter) in stored {
            let filter: RuleFilter = serde_json::from_str(&filter)
                .with_context(|| format!("rule `{name}` of `{path}`: the stored filter is not valid JSON"))?;
            let rule = Rule { name, filter };
            compiled.push(compile(&rule).unwrap_or_else(|error| {
                tracing::warn!(subscription = %path, "{error}; the rule matches no message until it is replaced");
                CompiledRule {
                    rule,
                    filter: Filter::compile(&RuleFilter::False).expect("the false filter compiles"),
                }
            }));
        }
        catalog.insert(&topic, Some(SubscriptionEntry::new(&topic, settings, compiled)));
    }
    Ok(catalog)
}

/// Records a topic and gives it a sequence counter, unless it exists.
pub(super) fn create_topic(conn: &Connection, topic: &str) -> anyhow::Result<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO topics (name) VALUES (?1)")?
        .execute([topic])?;
    schema::register_queue(conn, topic)
}

/// Records a subscription with its rules (`$Default` when it has none), unless it exists.
pub(super) fn create_subscription(
    conn: &Connection,
    topic: &str,
    settings: &SubscriptionSettings,
) -> anyhow::Result<()> {
    let added = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO subscriptions (topic, name, lock_duration_ms, max_delivery_count, default_ttl_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            topic,
            settings.name,
            duration_ms(settings.lock_duration),
            settings.max_delivery_count,
            settings.default_ttl.map(duration_ms),
        ])?;
    if added == 0 {
        return Ok(());
    }
    let default = [Rule::default_rule()];
    let rules = if settings.rules.is_empty() {
        &default[..]
    } else {
        &settings.rules[..]
    };
    for rule in rules {
        add_rule(conn, topic, &settings.name, rule)?;
    }
    Ok(())
}

pub(super) fn add_rule(conn: &Connection, topic: &str, subscription: &str, rule: &Rule) -> anyhow::Result<()> {
    conn.prepare_cached("INSERT INTO rules (topic, subscription, name, filter) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![
            topic,
            subscription,
            rule.name,
            serde_json::to_string(&rule.filter)?
        ])?;
    Ok(())
}

pub(super) fn remove_rule(conn: &Connection, topic: &str, subscription: &str, rule: &str) -> anyhow::Result<()> {
    conn.prepare_cached("DELETE FROM rules WHERE topic = ?1 AND subscription = ?2 AND name = ?3")?
        .execute(params![topic, subscription, rule])?;
    Ok(())
}

/// Replaces a subscription's lock duration, max delivery count and default time to live; its
/// rules and messages stay.
pub(super) fn update_subscription(
    conn: &Connection,
    topic: &str,
    settings: &SubscriptionSettings,
) -> anyhow::Result<()> {
    conn.prepare_cached(
        "UPDATE subscriptions SET lock_duration_ms = ?3, max_delivery_count = ?4, default_ttl_ms = ?5 \
         WHERE topic = ?1 AND name = ?2",
    )?
    .execute(params![
        topic,
        settings.name,
        duration_ms(settings.lock_duration),
        settings.max_delivery_count,
        settings.default_ttl.map(duration_ms),
    ])?;
    Ok(())
}

/// The bytes and the still-scheduled count of the messages sent to `topic` that a subscription
/// holds, each message counted once however many subscriptions hold a copy (the copies share
/// their sequence number). Subscription names have no `/`, so the subscriptions' entity paths
/// are exactly the names from `<topic>/Subscriptions/` up to (not including)
/// `<topic>/Subscriptions0`, the next string after the prefix: a range the `messages` index serves.
pub(super) fn usage(conn: &Connection, topic: &str) -> anyhow::Result<(u64, u64)> {
    let prefix = subscription_path(topic, "");
    let end = format!("{}0", prefix.trim_end_matches('/'));
    let (size, scheduled): (i64, i64) = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(size), 0), COALESCE(SUM(scheduled), 0) FROM ( \
             SELECT MAX(LENGTH(bodies.body)) AS size, MAX(dead_lettered_at IS NULL AND scheduled_at > ?3) AS scheduled \
             FROM messages JOIN bodies ON bodies.id = messages.id \
             WHERE queue >= ?1 AND queue < ?2 GROUP BY sequence_number)",
        )?
        .query_row(params![prefix, end, store::now_ms()], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok((count(size), count(scheduled)))
}

/// Deletes a subscription, its rules and every message in it.
pub(super) fn delete_subscription(conn: &Connection, topic: &str, subscription: &str) -> anyhow::Result<()> {
    conn.prepare_cached("DELETE FROM rules WHERE topic = ?1 AND subscription = ?2")?
        .execute(params![topic, subscription])?;
    conn.prepare_cached("DELETE FROM subscriptions WHERE topic = ?1 AND name = ?2")?
        .execute(params![topic, subscription])?;
    conn.prepare_cached("DELETE FROM messages WHERE queue = ?1")?
        .execute([subscription_path(topic, subscription)])?;
    Ok(())
}

/// Deletes a topic, its subscriptions (with their rules and messages) and its sequence counter.
pub(super) fn delete_topic(conn: &Connection, topic: &str) -> anyhow::Result<()> {
    let subscriptions = conn
        .prepare_cached("SELECT name FROM subscriptions WHERE topic = ?1")?
        .query_map([topic], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    for subscription in subscriptions {
        delete_subscription(conn, topic, &subscription)?;
    }
    conn.prepare_cached("DELETE FROM topics WHERE name = ?1")?
        .execute([topic])?;
    conn.prepare_cached("DELETE FROM queues WHERE name = ?1")?
        .execute([topic])?;
    Ok(())
}

/// Copies a message sent to `topic` into every subscription that accepts it, all under one
/// sequence number from the topic's counter; returns that number. A message no subscription
/// accepts is dropped, as in Service Bus, but still uses up a number.
pub(super) fn fan_out(
    conn: &Connection,
    catalog: &Catalog,
    topic: &str,
    output: &Output,
    now: i64,
) -> anyhow::Result<i64> {
    let sequence_number = store::next_sequence(conn, topic)?;
    let message = &output.message;
    // One id for every copy, so the subscribers see the same message.
    let message_id = if message.message_id.is_empty() {
        store::new_guid()
    } else {
        message.message_id.clone()
    };
    let fields = MessageFields::stored(
        &message_id,
        message.correlation_id.as_deref(),
        message.content_type.as_deref(),
        &message.properties,
    );
    for subscription in catalog.topics.get(topic).into_iter().flat_map(|subs| subs.values()) {
        if subscription.accepts(&fields) {
            store::insert_copy(conn, &subscription.queue, sequence_number, &message_id, message, now)?;
        }
    }
    Ok(sequence_number)
}

/// Removes the still-scheduled copies of the topic message with `sequence_number` from every
/// subscription; returns whether any was removed.
pub(super) fn cancel_scheduled(
    conn: &Connection,
    catalog: &Catalog,
    topic: &str,
    sequence_number: i64,
) -> anyhow::Result<bool> {
    let mut removed = false;
    for subscription in catalog.topics.get(topic).into_iter().flat_map(|subs| subs.values()) {
        removed |= store::cancel_scheduled(conn, &subscription.queue.name, sequence_number)?;
    }
    Ok(removed)
}
