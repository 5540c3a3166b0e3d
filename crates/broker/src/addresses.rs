//! What an entity path names: a queue, a topic or a topic's subscription, and whether a link may
//! send to it or receive from it.
//!
//! Queues come into existence the first time a client names one (with [`BrokerConfig`]'s
//! settings). Topics cannot: a name alone does not tell a topic from a queue, so topics and their
//! subscriptions exist only when configured ([`BrokerConfig::topics`]) or created at run time
//! through the embedded queue's API (`EmbeddedQueue::ensure_topic` and its siblings, which the
//! HTTP entity-management endpoint calls). A subscription is addressed by its Service Bus entity
//! path, `<topic>/Subscriptions/<subscription>`, which is also the name of the embedded queue
//! holding its copies.

use fe2o3_amqp_types::definitions::{AmqpError, Error as AmqpErrorInfo, ErrorCondition};
use sagahost_transport::embedded::EmbeddedQueue;
use sagahost_transport::servicebus::dialect::parse_subscription_path;

use crate::BrokerConfig;

/// What a path (without `/$DeadLetterQueue` or `/$management`) names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    /// A queue; created on first use.
    Queue(String),
    /// A configured topic: sent to, never received from.
    Topic(String),
    /// A subscription, by its entity path: received from, never sent to.
    Subscription(String),
}

impl Entity {
    /// The embedded queue name messages of this entity are sent to or received from.
    pub fn name(&self) -> &str {
        match self {
            Entity::Queue(name) | Entity::Topic(name) | Entity::Subscription(name) => name,
        }
    }

    /// Refuses a receiver on a topic, as Service Bus does.
    pub fn receivable(self) -> Result<Self, AmqpErrorInfo> {
        match self {
            Entity::Topic(topic) => Err(error(
                AmqpError::NotAllowed,
                format!(
                    "`{topic}` is a topic, which cannot be received from: receive from `{topic}/Subscriptions/<name>`"
                ),
            )),
            entity => Ok(entity),
        }
    }

    /// Refuses a sender to a subscription, as Service Bus does.
    pub fn sendable(self) -> Result<Self, AmqpErrorInfo> {
        match self {
            Entity::Subscription(path) => {
                let topic = parse_subscription_path(&path).map_or("its topic", |(topic, _)| topic);
                Err(error(
                    AmqpError::NotAllowed,
                    format!("`{path}` is a subscription, which cannot be sent to: send to the topic `{topic}`"),
                ))
            }
            entity => Ok(entity),
        }
    }
}

fn error(condition: AmqpError, description: String) -> AmqpErrorInfo {
    AmqpErrorInfo {
        condition: ErrorCondition::AmqpError(condition),
        description: Some(description),
        info: None,
    }
}

/// Resolves `path` to the entity it names, creating a queue it names if there is none yet.
pub async fn resolve(queue: &EmbeddedQueue, config: &BrokerConfig, path: &str) -> Result<Entity, AmqpErrorInfo> {
    if queue.has_topic(path) {
        return Ok(Entity::Topic(path.to_owned()));
    }
    if let Some((topic, subscription)) = parse_subscription_path(path) {
        if queue.has_subscription_path(path) {
            return Ok(Entity::Subscription(path.to_owned()));
        }
        let what = if queue.has_topic(topic) {
            format!("topic `{topic}` has no subscription `{subscription}`")
        } else {
            format!("there is no topic `{topic}`")
        };
        return Err(error(
            AmqpError::NotFound,
            format!("`{path}` does not exist: {what}; add it under the broker's topics config or create it first"),
        ));
    }
    if path.is_empty() || path.contains('/') || path.starts_with('$') {
        return Err(error(
            AmqpError::NotFound,
            format!("`{path}` is not a queue, topic or subscription address this broker serves"),
        ));
    }
    queue
        .ensure_queue(config.queue_settings(path))
        .await
        .map_err(|failure| error(AmqpError::InternalError, failure.to_string()))?;
    Ok(Entity::Queue(path.to_owned()))
}
