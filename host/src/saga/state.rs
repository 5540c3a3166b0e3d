//! Saga state: who the saga is, which step and attempt this is, and what earlier
//! steps recorded. It travels with every message the host sends.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::component::wit;

/// The state of one saga, carried in each of its messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SagaState {
    /// Saga id: derived from the first step's message (see [`new_saga_id`]).
    pub id: String,
    /// Zero-based step index.
    pub step: u32,
    /// Attempt of this step, from 1.
    pub attempt: u32,
    /// Completed steps, oldest first.
    #[serde(default)]
    pub history: Vec<StepRecord>,
}

/// One completed step and the data it recorded for compensation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StepRecord {
    pub partner: String,
    #[serde(default)]
    pub component_version: String,
    #[serde(default)]
    pub compensation_data: Option<String>,
}

impl SagaState {
    /// The state of a saga's first step.
    pub fn start(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            step: 0,
            attempt: 1,
            history: Vec::new(),
        }
    }

    /// The state of the saga that the first-step message `message_id` with `body` starts.
    pub fn first(message_id: &str, body: &[u8]) -> Self {
        Self::start(new_saga_id(message_id, body))
    }

    /// The WIT view of this state.
    pub fn to_wit(&self) -> wit::Saga {
        wit::Saga {
            id: self.id.clone(),
            step: self.step,
            attempt: self.attempt,
            history: self
                .history
                .iter()
                .map(|r| wit::StepRecord {
                    partner: r.partner.clone(),
                    component_version: r.component_version.clone(),
                    compensation_data: r.compensation_data.clone(),
                })
                .collect(),
        }
    }
}

/// The id of the saga a first-step message starts: a UUID made from the message id and the
/// body, so it is the same on every redelivery of that message (retries stay idempotent) and
/// differs between events.
///
/// Not the Dataverse `CorrelationId`: Dataverse shares one across every operation of a request
/// pipeline (plugin chains, and the `ParentContext` carries the same value), so two events
/// would share a saga, its `Idempotency-Key`s and its forwarded message ids. The body is
/// hashed as well as the id because message ids are whatever the sender chose.
pub fn new_saga_id(message_id: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(b"sagahost saga id v1\0");
    hash.update((message_id.len() as u64).to_le_bytes());
    hash.update(message_id.as_bytes());
    hash.update(body);
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saga_id_is_stable_per_message_and_differs_between_events() {
        let body = br#"{"CorrelationId":"7d4e2b9a-1c3f-4a5e-9b8d-2f6a0c1e3b57","PrimaryEntityId":"a"}"#;
        let other = br#"{"CorrelationId":"7d4e2b9a-1c3f-4a5e-9b8d-2f6a0c1e3b57","PrimaryEntityId":"b"}"#;
        let id = new_saga_id("m-1", body);
        assert_eq!(id, new_saga_id("m-1", body), "a redelivery keeps its saga id");
        assert_ne!(id, new_saga_id("m-1", other), "same message id, another event");
        assert_ne!(id, new_saga_id("m-2", body), "the same body sent twice is two events");
        assert_ne!(
            new_saga_id("m-1", b"2"),
            new_saga_id("m-12", b""),
            "id and body do not run together"
        );
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    }
}
