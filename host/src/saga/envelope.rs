//! The host's own message properties: saga state and compensation details.
//!
//! They travel as application properties (prefixed `sagahost-`) so that any
//! Service Bus tool shows them, and they are hidden from components, which see
//! the same state as typed WIT records instead.

use serde::{Deserialize, Serialize};

use super::state::SagaState;
use crate::telemetry::traceparent::TraceParent;

/// Property holding the JSON [`SagaState`].
pub const SAGA_PROPERTY: &str = "sagahost-saga";
/// Property holding the JSON [`CompensationInfo`] on compensation messages.
pub const COMPENSATION_PROPERTY: &str = "sagahost-compensation";
/// Set on a dead-lettered undo whose saga went on to the older steps without it: redriving
/// the message undoes its own step only.
pub const UNDO_CONTINUED_PROPERTY: &str = "sagahost-undo-continued";
/// Set on a message the host dead-letters: the partner whose step gave up on it.
pub const PARTNER_PROPERTY: &str = "sagahost-partner";
/// Set on a message the host dead-letters: the content hash of the component version that ran
/// (absent when none did).
pub const COMPONENT_VERSION_PROPERTY: &str = "sagahost-component-version";
/// W3C trace context, continued across saga steps.
pub const TRACEPARENT_PROPERTY: &str = "traceparent";
/// The same trace context under the name Service Bus tooling reads.
pub const DIAGNOSTIC_ID_PROPERTY: &str = "Diagnostic-Id";
/// The prefix of every host-owned property.
const HOST_PREFIX: &str = "sagahost-";

/// Why a saga is being compensated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CompensationInfo {
    /// The partner whose failure started compensation.
    pub failed_partner: String,
    pub reason: String,
    #[serde(default)]
    pub details: Option<String>,
    /// Undos of later steps that were dead-lettered while the compensation went on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_undos: Vec<FailedUndo>,
}

/// An undo that failed and was dead-lettered; the saga's older steps were undone anyway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FailedUndo {
    /// The step whose undo failed, from 0.
    pub step: u32,
    pub partner: String,
    /// The dead-letter reason.
    pub reason: String,
}

/// The host-owned parts of a received message's properties.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Envelope {
    /// Saga state, absent on a saga's first message.
    pub saga: Option<SagaState>,
    /// Present on compensation messages.
    pub compensation: Option<CompensationInfo>,
    /// Incoming trace context, if any (and valid).
    pub traceparent: Option<TraceParent>,
    /// This undo was dead-lettered once and its saga's compensation went on without it.
    pub undo_continued: bool,
    /// The properties a component sees: everything but the host's own.
    pub user_properties: Vec<(String, String)>,
}

impl Envelope {
    /// Splits `properties` into host state and the component's view.
    ///
    /// Fails with a readable reason when a host property does not parse
    /// (hand-edited or from another tool).
    pub fn read(properties: &[(String, String)]) -> Result<Self, String> {
        let mut envelope = Self::default();
        for (name, value) in properties {
            match name.as_str() {
                SAGA_PROPERTY => {
                    envelope.saga = Some(
                        serde_json::from_str(value)
                            .map_err(|e| format!("property `{SAGA_PROPERTY}` is not valid saga state: {e}"))?,
                    )
                }
                COMPENSATION_PROPERTY => {
                    envelope.compensation = Some(serde_json::from_str(value).map_err(|e| {
                        format!("property `{COMPENSATION_PROPERTY}` is not valid compensation data: {e}")
                    })?)
                }
                UNDO_CONTINUED_PROPERTY => envelope.undo_continued = value == "true",
                TRACEPARENT_PROPERTY | DIAGNOSTIC_ID_PROPERTY => {}
                _ if name.starts_with(HOST_PREFIX) => {}
                _ => envelope.user_properties.push((name.clone(), value.clone())),
            }
        }
        envelope.traceparent = traceparent(properties);
        Ok(envelope)
    }
}

/// The trace context `properties` carry: `traceparent`, else `Diagnostic-Id` (a message from
/// Service Bus tooling may carry only that). An invalid value counts as none.
pub fn traceparent(properties: &[(String, String)]) -> Option<TraceParent> {
    let value = |wanted: &str| {
        properties
            .iter()
            .find(|(name, _)| name == wanted)
            .map(|(_, value)| value.as_str())
    };
    value(TRACEPARENT_PROPERTY)
        .or_else(|| value(DIAGNOSTIC_ID_PROPERTY))
        .and_then(|value| TraceParent::parse(value).ok())
}

/// The properties of a message the host sends: the user's, then the host's.
pub fn write(
    user_properties: &[(String, String)],
    saga: &SagaState,
    compensation: Option<&CompensationInfo>,
    traceparent: &TraceParent,
) -> Vec<(String, String)> {
    let mut properties: Vec<(String, String)> = user_properties
        .iter()
        .filter(|(name, _)| {
            !name.starts_with(HOST_PREFIX) && name != TRACEPARENT_PROPERTY && name != DIAGNOSTIC_ID_PROPERTY
        })
        .cloned()
        .collect();
    properties.push((
        SAGA_PROPERTY.into(),
        serde_json::to_string(saga).expect("saga state serializes"),
    ));
    if let Some(info) = compensation {
        properties.push((
            COMPENSATION_PROPERTY.into(),
            serde_json::to_string(info).expect("compensation serializes"),
        ));
    }
    properties.push((TRACEPARENT_PROPERTY.into(), traceparent.to_string()));
    properties.push((DIAGNOSTIC_ID_PROPERTY.into(), traceparent.to_string()));
    properties
}

/// `base` with `overrides` added or replacing same-named entries.
pub fn overlay(base: &[(String, String)], overrides: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = base
        .iter()
        .filter(|(name, _)| !overrides.iter().any(|(o, _)| o == name))
        .cloned()
        .collect();
    out.extend(overrides.iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_host_state_and_hides_it_from_components() {
        let saga = SagaState::start("saga-1");
        let info = CompensationInfo {
            failed_partner: "erp".into(),
            reason: "ErpRejected".into(),
            details: None,
            failed_undos: Vec::new(),
        };
        let user = vec![("mdm-id".to_string(), "M-1".to_string())];
        let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let written = write(&user, &saga, Some(&info), &TraceParent::parse(trace).unwrap());
        let read = Envelope::read(&written).unwrap();
        assert_eq!(read.saga, Some(saga));
        assert_eq!(read.compensation, Some(info));
        assert_eq!(read.user_properties, user);
        assert_eq!(read.traceparent.map(|t| t.to_string()).as_deref(), Some(trace));
        assert!(
            written
                .iter()
                .any(|(name, value)| name == "Diagnostic-Id" && value == trace)
        );
    }

    #[test]
    fn reads_diagnostic_id_when_traceparent_is_missing_and_ignores_invalid_context() {
        let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let only_diagnostic = vec![("Diagnostic-Id".to_string(), trace.to_string())];
        assert_eq!(
            traceparent(&only_diagnostic).map(|t| t.to_string()).as_deref(),
            Some(trace)
        );
        let invalid = vec![("traceparent".to_string(), "00-zz".to_string())];
        assert_eq!(traceparent(&invalid), None);
        assert_eq!(Envelope::read(&invalid).unwrap().user_properties, vec![]);
    }

    #[test]
    fn a_garbled_saga_property_is_a_readable_error() {
        let err = Envelope::read(&[(SAGA_PROPERTY.to_string(), "{".to_string())]).unwrap_err();
        assert!(err.contains("sagahost-saga"), "{err}");
    }

    #[test]
    fn overlay_replaces_and_adds() {
        let base = vec![("a".to_string(), "1".to_string()), ("b".to_string(), "2".to_string())];
        let out = overlay(
            &base,
            &[("b".to_string(), "3".to_string()), ("c".to_string(), "4".to_string())],
        );
        assert_eq!(
            out,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "3".into()),
                ("c".into(), "4".into())
            ]
        );
    }
}
