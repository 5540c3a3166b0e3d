//! Session ids for per-record ordering: every message the host sends to a session-enabled queue
//! (a `per-record` partner's) carries the session id its context names, whoever sends it: a step's
//! forwards, retries and compensation requests, the webhook and `sagahost send`.
//!
//! The id is the context field the partner's `session-key` names; when the context lacks it (a
//! `Create` before the row has an id, a body that is not a Dataverse context), the correlation id,
//! and failing that the `fallback` the caller gives (the saga id, or the message id). A message
//! therefore always has a session, and those without the key are ordered by the whole operation
//! that caused them.

use std::collections::BTreeMap;

use sagahost_transport::Output;

use crate::component::wit;
use crate::config::SessionKey;

/// The session-enabled queues of a config and the key of each.
#[derive(Debug, Clone, Default)]
pub struct SessionIds {
    by_queue: BTreeMap<String, SessionKey>,
}

impl SessionIds {
    /// Session ids for the queues of `by_queue` (see [`crate::config::Config::ordered_queues`]).
    pub fn new(by_queue: BTreeMap<String, SessionKey>) -> Self {
        Self { by_queue }
    }

    /// Whether `queue` is session-enabled, so read one session at a time.
    pub fn is_ordered(&self, queue: &str) -> bool {
        self.by_queue.contains_key(queue)
    }

    /// The session id of a message for `queue` with `context`: `None` when the queue is not
    /// session-enabled.
    pub fn for_queue(&self, queue: &str, context: Option<&wit::Context>, fallback: &str) -> Option<String> {
        let key = self.by_queue.get(queue)?;
        let named = context.and_then(|context| field(key, context));
        let correlation = || context.and_then(|context| context.correlation_id.clone());
        Some(named.or_else(correlation).unwrap_or_else(|| fallback.to_owned()))
    }

    /// Sets the session id of each of `outputs` bound for a session-enabled queue.
    pub fn assign(&self, outputs: &mut [Output], context: Option<&wit::Context>, fallback: &str) {
        for output in outputs {
            if let Some(session_id) = self.for_queue(&output.queue, context, fallback) {
                output.message.session_id = Some(session_id);
            }
        }
    }
}

/// The value of `key` in `context`, if it has one.
fn field(key: &SessionKey, context: &wit::Context) -> Option<String> {
    let value = match key {
        SessionKey::PrimaryEntityId => context.primary_entity_id.clone(),
        SessionKey::CorrelationId => context.correlation_id.clone(),
        SessionKey::OrganizationId => context.organization_id.clone(),
        SessionKey::UserId => context.user_id.clone(),
        SessionKey::InitiatingUserId => context.initiating_user_id.clone(),
        SessionKey::TargetAttribute(name) => {
            let target = context.entities.get(usize::try_from(context.target?).ok()?)?;
            let attribute = target.attributes.iter().find(|attribute| &attribute.name == name)?;
            value_text(&attribute.value)
        }
    };
    value.filter(|value| !value.is_empty())
}

/// A scalar value as session-id text: a lookup by the row it points at.
fn value_text(value: &wit::Value) -> Option<String> {
    Some(match value {
        wit::Value::Text(text)
        | wit::Value::Guid(text)
        | wit::Value::Decimal(text)
        | wit::Value::Money(text)
        | wit::Value::Datetime(text) => text.clone(),
        wit::Value::Reference(reference) => reference.id.clone(),
        wit::Value::Integer(n) => n.to_string(),
        wit::Value::OptionSet(n) => n.to_string(),
        wit::Value::Boolean(b) => b.to_string(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
