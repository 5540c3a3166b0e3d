//! The subscription handlers: create (with `$Default`, or the description's
//! `DefaultRuleDescription`), update, get (with `MessageCount` and `CountDetails`), list a page,
//! delete, over the embedded queue's subscriptions (`EmbeddedQueue::ensure_subscription` and its
//! neighbours). A subscription's counts are those of its queue, named by its entity path.

use axum::http::StatusCode;
use sagahost_transport::TransportError;
use sagahost_transport::embedded::{QueueDepth, SubscriptionSettings, TopicError};
use sagahost_transport::servicebus::dialect::subscription_path;

use super::atom::{Description, Entry};
use super::errors::EntityError;
use super::subscription_description::{SubscriptionDescription, SubscriptionDescriptionUpdate};
use super::target::Page;
use super::{Entities, PutMode, Site, page_feed, xsd};

fn unknown(topic: &str, subscription: &str) -> EntityError {
    TopicError::UnknownSubscription {
        topic: topic.to_owned(),
        subscription: subscription.to_owned(),
    }
    .into()
}

/// What the subscription's queue holds.
async fn depth(entities: &Entities, topic: &str, subscription: &str) -> Result<QueueDepth, EntityError> {
    match entities
        .queue
        .queue_depth(&subscription_path(topic, subscription))
        .await
    {
        Ok(depth) => Ok(depth),
        // Deleted since its settings were read.
        Err(TransportError::UnknownQueue(_)) => Err(unknown(topic, subscription)),
        Err(error) => Err(EntityError::internal(error)),
    }
}

fn entry(site: &Site, topic: &str, settings: &SubscriptionSettings, depth: &QueueDepth) -> Entry {
    let unknown = xsd::format_time(None);
    Entry::new(
        &settings.name,
        site.href(&subscription_path(topic, &settings.name)),
        &site.namespace,
        (unknown.clone(), unknown),
        Description::Subscription(Box::new(SubscriptionDescription::new(settings, depth))),
    )
}

/// `GET /{topic}/Subscriptions/{subscription}`: its description with its counts.
pub async fn get(entities: &Entities, site: &Site, topic: &str, subscription: &str) -> Result<String, EntityError> {
    let settings = entities.queue.subscription(topic, subscription)?;
    let depth = depth(entities, topic, subscription).await?;
    entry(site, topic, &settings, &depth).to_xml()
}

/// `PUT /{topic}/Subscriptions/{subscription}`: creates the subscription or updates it, as `mode`
/// says; answers its description.
pub async fn put(
    entities: &Entities,
    site: &Site,
    (topic, subscription): (&str, &str),
    description: &SubscriptionDescriptionUpdate,
    mode: PutMode,
) -> Result<(StatusCode, String), EntityError> {
    let queue = &entities.queue;
    let status = match mode {
        PutMode::Create => {
            let defaults = entities.config.queue_settings(&subscription_path(topic, subscription));
            let base = SubscriptionSettings {
                lock_duration: defaults.lock_duration,
                max_delivery_count: defaults.max_delivery_count,
                default_ttl: defaults.default_ttl,
                ..SubscriptionSettings::new(subscription)
            };
            let settings = SubscriptionSettings {
                rules: description.default_rule()?.into_iter().collect(),
                ..description.apply(base)?
            };
            if !queue.ensure_subscription(topic, settings).await? {
                return Err(EntityError::conflict(format!(
                    "subscription `{subscription}` of topic `{topic}` already exists; send If-Match: * to update it"
                )));
            }
            StatusCode::CREATED
        }
        PutMode::Update => {
            let settings = description.apply(queue.subscription(topic, subscription)?)?;
            queue.update_subscription(topic, settings).await?;
            StatusCode::OK
        }
    };
    Ok((status, get(entities, site, topic, subscription).await?))
}

/// `DELETE /{topic}/Subscriptions/{subscription}`: removes it with its rules and messages.
pub async fn delete(entities: &Entities, topic: &str, subscription: &str) -> Result<(), EntityError> {
    if entities.queue.delete_subscription(topic, subscription).await? {
        Ok(())
    } else {
        Err(unknown(topic, subscription))
    }
}

/// `GET /{topic}/Subscriptions?$skip=…&$top=…`: one page of the topic's subscriptions, by name.
pub async fn list(entities: &Entities, site: &Site, topic: &str, page: Page) -> Result<String, EntityError> {
    let subscriptions = entities
        .queue
        .topic(topic)
        .ok_or_else(|| TopicError::UnknownTopic(topic.to_owned()))?
        .subscriptions;
    let mut entries = Vec::new();
    for settings in subscriptions.iter().skip(page.skip).take(page.top) {
        match depth(entities, topic, &settings.name).await {
            Ok(depth) => entries.push(entry(site, topic, settings, &depth)),
            // Deleted since the list was taken: left out, as if listed a moment later.
            Err(error) if error.status == StatusCode::NOT_FOUND => {}
            Err(error) => return Err(error),
        }
    }
    let path = format!("{topic}/Subscriptions");
    page_feed(site, "Subscriptions", &path, page, subscriptions.len(), entries)
}
