//! Builds the `inbound` record a component sees from a message's raw parts.

use sagahost_dataverse::{DecodeError, Format, Limits};
use sagahost_transport::ReceivedMessage;

use crate::component::{context, wit};

use super::envelope::Envelope;
use super::state::SagaState;

/// A message as a transport or the harness hands it over.
#[derive(Debug, Clone, Default)]
pub struct MessageParts {
    pub message_id: String,
    pub queue: String,
    pub content_type: Option<String>,
    pub properties: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl MessageParts {
    /// The parts of a received message, with the properties a component may see (the
    /// envelope's user properties, not the host's own).
    pub fn of(message: &ReceivedMessage, envelope: &Envelope) -> Self {
        Self {
            message_id: message.message_id.clone(),
            queue: message.queue.clone(),
            content_type: message.content_type.clone(),
            properties: envelope.user_properties.clone(),
            body: message.body.clone(),
        }
    }
}

/// Decodes `parts` into the record the component receives.
///
/// A body with a content type the decoders read (see [`Format::from_content_type`]), or
/// with none, must decode; another content type is passed through with no context. `saga` of `None` starts a new saga
/// (see [`SagaState::first`]).
pub fn build_inbound(
    parts: MessageParts,
    saga: Option<SagaState>,
    limits: &Limits,
) -> Result<wit::Inbound, DecodeError> {
    let is_dataverse = match &parts.content_type {
        None => true,
        Some(content_type) => Format::from_content_type(content_type).is_some(),
    };
    let context = if is_dataverse {
        Some(sagahost_dataverse::decode(
            &parts.body,
            parts.content_type.as_deref(),
            limits,
        )?)
    } else {
        None
    };
    let saga = saga.unwrap_or_else(|| SagaState::first(&parts.message_id, &parts.body));
    let size_exceeded = sagahost_dataverse::message_size_exceeded(&parts.properties);
    Ok(wit::Inbound {
        message_id: parts.message_id,
        queue: parts.queue,
        content_type: parts.content_type,
        properties: parts.properties,
        body: parts.body,
        context: context.map(|c| context::to_wit(&c, size_exceeded)),
        saga: saga.to_wit(),
    })
}

#[cfg(test)]
mod tests {
    use sagahost_dataverse::Limits;
    use sagahost_transport::embedded::MAX_MESSAGE_BYTES;

    /// The embedded queue refuses what the decoders would refuse anyway, and nothing less.
    #[test]
    fn the_embedded_queue_takes_the_largest_body_the_decoders_take() {
        assert_eq!(MAX_MESSAGE_BYTES, Limits::default().max_body_bytes);
    }
}
