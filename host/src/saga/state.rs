//! Saga state: who the saga is, which step and attempt this is, and what earlier
//! steps recorded. It travels with every message the host sends.

use serde::{Deserialize, Serialize};

use crate::component::wit;

/// The state of one saga, carried in each of its messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SagaState {
    /// Saga id: the Dataverse `CorrelationId` unless a step set another.
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
