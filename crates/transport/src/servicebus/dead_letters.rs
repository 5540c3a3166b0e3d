//! Peeking, and dead letters on Service Bus: the `com.microsoft:peek-message` operation on an
//! entity's `$management` node, and [`DeadLetterQueues`] over `<queue>/$DeadLetterQueue`.
//!
//! A dead-letter queue is an entity like its queue: it is peeked through its own
//! `<queue>/$DeadLetterQueue/$management` node and received from under a lock. Service Bus keeps a
//! dead letter's reason and description as the `DeadLetterReason` and
//! `DeadLetterErrorDescription` application properties; here they become
//! [`DeadLetter::reason`] and [`DeadLetter::description`] and leave the properties, so a dead
//! letter reads the same as on the embedded queue. Service Bus does not record when a message was
//! dead-lettered, so [`DeadLetter::dead_lettered_at`] is `None`.

use std::time::Duration;

use anyhow::{Context, anyhow};
use fe2o3_amqp::types::messaging::message::__private::Deserializable;
use fe2o3_amqp::types::messaging::{Body, Message};
use fe2o3_amqp::types::primitives::{OrderedMap, SimpleValue, Value};

use super::dialect::{DEAD_LETTER_DESCRIPTION, DEAD_LETTER_REASON, dead_letter_queue};
use super::{ServiceBusTransport, codec};
use crate::dead_letters::{DeadLetter, DeadLetterQueues, LockedDeadLetter};
use crate::{StoredMessage, Transport, TransportError};

/// Most messages one peek asks for (Service Bus answers with at most this many anyway).
const MAX_PEEK: usize = 1000;

impl ServiceBusTransport {
    /// Up to `count` messages of `entity` (a queue or a dead-letter queue path) with a sequence
    /// number of at least `from_sequence`, in sequence order, without locking them.
    pub async fn peek(
        &self,
        entity: &str,
        from_sequence: i64,
        count: usize,
    ) -> Result<Vec<StoredMessage>, TransportError> {
        let live = self.live().await?;
        let management = live.management(entity).await?;
        let count = count.clamp(1, MAX_PEEK);
        let mut body = OrderedMap::new();
        body.insert(Value::String("from-sequence-number".into()), Value::Long(from_sequence));
        body.insert(
            Value::String("message-count".into()),
            Value::Int(i32::try_from(count).unwrap_or(i32::MAX)),
        );
        let timeout = self.options.operation_timeout;
        let properties = vec![(
            "com.microsoft:server-timeout".to_string(),
            SimpleValue::Uint(u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX)),
        )];
        let response = management
            .request("com.microsoft:peek-message", properties, Value::Map(body), timeout)
            .await?;
        match response.status {
            200 => {}
            // No messages at or after `from_sequence`.
            204 => return Ok(Vec::new()),
            status => {
                return Err(anyhow!(
                    "peeking `{entity}` on Service Bus `{}` failed: {status} {}",
                    self.target.host,
                    response.description
                )
                .into());
            }
        }
        peeked_messages(entity, &response.body)
            .with_context(|| format!("reading the peek answer for `{entity}`"))
            .map_err(TransportError::from)
    }
}

impl DeadLetterQueues for ServiceBusTransport {
    async fn peek_dead_letters(
        &self,
        queue: &str,
        from_sequence: i64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, TransportError> {
        let peeked = self.peek(&dead_letter_queue(queue), from_sequence, limit).await?;
        Ok(peeked
            .into_iter()
            .map(|mut message| {
                let (reason, description) = take_dead_letter_record(&mut message.properties);
                message.queue = queue.to_owned();
                DeadLetter {
                    message,
                    reason,
                    description,
                    dead_lettered_at: None,
                }
            })
            .collect())
    }

    /// Receives from `<queue>/$DeadLetterQueue`, oldest first: Service Bus cannot start a receive
    /// at a sequence number, so `from_sequence` is left to the caller.
    async fn receive_dead_letters(
        &self,
        queue: &str,
        _from_sequence: i64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<LockedDeadLetter>, TransportError> {
        let received = self.receive(&dead_letter_queue(queue), max, wait).await?;
        Ok(received
            .into_iter()
            .map(|mut message| {
                let (reason, description) = take_dead_letter_record(&mut message.properties);
                LockedDeadLetter {
                    message,
                    reason,
                    description,
                }
            })
            .collect())
    }
}

/// Removes the dead-letter reason and description from `properties` and returns them (empty
/// when absent).
fn take_dead_letter_record(properties: &mut Vec<(String, String)>) -> (String, String) {
    let mut reason = String::new();
    let mut description = String::new();
    properties.retain(|(name, value)| match name.as_str() {
        DEAD_LETTER_REASON => {
            reason = value.clone();
            false
        }
        DEAD_LETTER_DESCRIPTION => {
            description = value.clone();
            false
        }
        _ => true,
    });
    (reason, description)
}

/// The messages of a `peek-message` answer: a map whose `messages` is a list of maps, each with
/// the encoded message under `message`.
fn peeked_messages(entity: &str, body: &Value) -> anyhow::Result<Vec<StoredMessage>> {
    let Value::Map(map) = body else {
        anyhow::bail!("the answer body is not a map");
    };
    let Some(Value::List(messages)) = field(map, "messages") else {
        anyhow::bail!("the answer has no `messages` list");
    };
    messages
        .iter()
        .map(|entry| {
            let Value::Map(entry) = entry else {
                anyhow::bail!("a `messages` entry is not a map");
            };
            let Some(Value::Binary(bytes)) = field(entry, "message") else {
                anyhow::bail!("a `messages` entry has no binary `message`");
            };
            // fe2o3's `Message` decodes through this wrapper (its sections are described types).
            let Deserializable(message): Deserializable<Message<Body<Value>>> =
                serde_amqp::from_slice(bytes.as_slice()).context("decoding a peeked message")?;
            codec::stored(entity, &message)
        })
        .collect()
}

/// The value under `name` in a management map, whose keys are strings or symbols.
pub(super) fn field<'a>(map: &'a OrderedMap<Value, Value>, name: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(key, _)| matches!(key, Value::String(s) if s == name) || matches!(key, Value::Symbol(s) if s.0 == name))
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dead_letter_record_leaves_the_properties() {
        let mut properties = vec![
            ("a".to_owned(), "1".to_owned()),
            (DEAD_LETTER_REASON.to_owned(), "Bad".to_owned()),
            (DEAD_LETTER_DESCRIPTION.to_owned(), "it was bad".to_owned()),
        ];
        let record = take_dead_letter_record(&mut properties);
        assert_eq!(record, ("Bad".to_owned(), "it was bad".to_owned()));
        assert_eq!(properties, vec![("a".to_owned(), "1".to_owned())]);
    }

    #[test]
    fn an_answer_without_messages_is_an_error_not_an_empty_page() {
        let err = peeked_messages("q", &Value::Map(OrderedMap::new())).unwrap_err();
        assert!(err.to_string().contains("no `messages`"), "{err}");
    }
}
