//! `SubscriptionDescription`, both ways: what a `PUT` asks of a subscription
//! ([`SubscriptionDescriptionUpdate`], read into the embedded queue's [`SubscriptionSettings`])
//! and what the endpoint answers about one ([`SubscriptionDescription`], with `MessageCount` and
//! `CountDetails`).
//!
//! # What is stored, what is echoed, what is refused
//! As for queues (`queue_description.rs`), since a subscription is a queue of the embedded store:
//! - Stored: `LockDuration` (more than zero, at most `PT5M`), `MaxDeliveryCount` (at least 1) and
//!   `DefaultMessageTimeToLive`. What a create leaves out is the broker's default for queues;
//!   what an update leaves out stays as it was. `DefaultRuleDescription` on a create is the
//!   subscription's first rule instead of `$Default` (`rule_description.rs` reads it); on an
//!   update it is ignored, as Service Bus only uses it at creation.
//! - Refused with 400: `RequiresSession`, `ForwardTo`, `ForwardDeadLetteredMessagesTo`, and a
//!   `Status` other than `Active`.
//! - Accepted and answered with what the broker does: `DeadLetteringOnMessageExpiration` is always
//!   `true` (expired messages are dead-lettered), `DeadLetteringOnFilterEvaluationExceptions` is
//!   Service Bus's default `true` (the embedded filters never fail at evaluation: a property they
//!   cannot compare makes the filter not match), `AutoDeleteOnIdle` is never,
//!   `EnableBatchedOperations` is `true`.

use sagahost_transport::embedded::{QueueDepth, Rule, SubscriptionSettings};
use serde::{Deserialize, Serialize};

use super::errors::EntityError;
use super::queue_description::{CountDetails, SERVICE_BUS_NAMESPACE, XML_SCHEMA_INSTANCE};
use super::rule_description::RuleDescriptionUpdate;
use super::settings::{self, given};
use super::xsd;

/// The description's name in errors.
const SUBSCRIPTION: &str = "SubscriptionDescription";

/// A subscription's description as a `PUT` carries it; read-only elements an SDK sends back on
/// update (counts, times) are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubscriptionDescriptionUpdate {
    lock_duration: Option<String>,
    max_delivery_count: Option<String>,
    default_message_time_to_live: Option<String>,
    requires_session: Option<String>,
    forward_to: Option<String>,
    forward_dead_lettered_messages_to: Option<String>,
    status: Option<String>,
    default_rule_description: Option<RuleDescriptionUpdate>,
}

impl SubscriptionDescriptionUpdate {
    /// `base` with what this description sets; refuses what the embedded queue cannot do. The
    /// rules of `base` are kept.
    pub fn apply(&self, base: SubscriptionSettings) -> Result<SubscriptionSettings, EntityError> {
        settings::refuse_enabled(SUBSCRIPTION, &[("RequiresSession", &self.requires_session)])?;
        settings::refuse_forwarding(SUBSCRIPTION, &self.forward_to, &self.forward_dead_lettered_messages_to)?;
        settings::refuse_inactive(SUBSCRIPTION, &self.status)?;
        let mut settings = base;
        if let Some(text) = given(&self.lock_duration) {
            settings.lock_duration = settings::lock_duration(SUBSCRIPTION, text)?;
        }
        if let Some(text) = given(&self.max_delivery_count) {
            settings.max_delivery_count = settings::max_delivery_count(SUBSCRIPTION, text)?;
        }
        if let Some(text) = given(&self.default_message_time_to_live) {
            settings.default_ttl = settings::default_ttl(SUBSCRIPTION, text)?;
        }
        Ok(settings)
    }

    /// The rule `DefaultRuleDescription` asks for, named by its `Name` or `$Default`.
    pub fn default_rule(&self) -> Result<Option<Rule>, EntityError> {
        self.default_rule_description
            .as_ref()
            .map(|rule| rule.to_rule(None))
            .transpose()
    }
}

/// A subscription's description as the endpoint answers it, elements in Service Bus's order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubscriptionDescription {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    #[serde(rename = "@xmlns:i")]
    xmlns_i: &'static str,
    lock_duration: String,
    requires_session: bool,
    default_message_time_to_live: String,
    dead_lettering_on_message_expiration: bool,
    dead_lettering_on_filter_evaluation_exceptions: bool,
    message_count: u64,
    max_delivery_count: u32,
    enable_batched_operations: bool,
    status: &'static str,
    created_at: String,
    updated_at: String,
    accessed_at: String,
    count_details: CountDetails,
    auto_delete_on_idle: String,
    entity_availability_status: &'static str,
}

impl SubscriptionDescription {
    /// The description of a subscription with `settings` holding `depth`. The embedded queue
    /// keeps no times for subscriptions: they are written as unknown.
    pub fn new(settings: &SubscriptionSettings, depth: &QueueDepth) -> Self {
        Self {
            xmlns: SERVICE_BUS_NAMESPACE,
            xmlns_i: XML_SCHEMA_INSTANCE,
            lock_duration: xsd::format_duration(Some(settings.lock_duration)),
            requires_session: false,
            default_message_time_to_live: xsd::format_duration(settings.default_ttl),
            dead_lettering_on_message_expiration: true,
            dead_lettering_on_filter_evaluation_exceptions: true,
            message_count: depth.active + depth.scheduled + depth.dead_lettered,
            max_delivery_count: settings.max_delivery_count,
            enable_batched_operations: true,
            status: "Active",
            created_at: xsd::format_time(None),
            updated_at: xsd::format_time(None),
            accessed_at: xsd::format_time(None),
            count_details: CountDetails::new(depth),
            auto_delete_on_idle: xsd::format_duration(None),
            entity_availability_status: "Available",
        }
    }
}
