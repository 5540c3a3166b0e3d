//! `TopicDescription`, both ways: what a `PUT` asks of a topic ([`TopicDescriptionUpdate`]) and
//! what the endpoint answers about one ([`TopicDescription`], with the runtime properties the SDKs'
//! `get_topic_runtime_properties` read: `SizeInBytes`, `SubscriptionCount`, `CountDetails`).
//!
//! # What is stored, what is echoed, what is refused
//! The embedded queue keeps no settings on a topic (its subscriptions have them), so nothing of a
//! `TopicDescription` is stored.
//! - Refused with 400, because the topic would behave otherwise than asked: a
//!   `DefaultMessageTimeToLive` other than "never" (set it on the subscriptions instead),
//!   `RequiresDuplicateDetection`, and a `Status` other than `Active`.
//! - Accepted and answered with what the broker does: `MaxMessageSizeInKilobytes` is the broker's
//!   limit, `AutoDeleteOnIdle` is never, and the sizing and tuning properties
//!   (`MaxSizeInMegabytes`, `EnableBatchedOperations`, `EnablePartitioning`, `SupportOrdering`,
//!   `EnableExpress`, `UserMetadata`) have Service Bus's defaults.
//!
//! # Counts
//! `SizeInBytes` and the scheduled count take each message sent to the topic once, however many
//! subscriptions hold a copy, as Service Bus counts a topic's own messages; the active and
//! dead-letter counts of a topic are zero in Service Bus too (they are the subscriptions').

use sagahost_transport::embedded::{QueueDepth, TopicInfo};
use serde::{Deserialize, Serialize};

use super::errors::EntityError;
use super::queue_description::{CountDetails, SERVICE_BUS_NAMESPACE, XML_SCHEMA_INSTANCE};
use super::settings::{self, given};
use super::xsd;
use crate::BrokerConfig;

/// The description's name in errors.
const TOPIC: &str = "TopicDescription";

/// A topic's description as a `PUT` carries it; read-only elements an SDK sends back on update
/// are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TopicDescriptionUpdate {
    default_message_time_to_live: Option<String>,
    requires_duplicate_detection: Option<String>,
    status: Option<String>,
}

impl TopicDescriptionUpdate {
    /// Refuses what the embedded topic cannot do; the rest is Service Bus's default here.
    pub fn check(&self) -> Result<(), EntityError> {
        settings::refuse_enabled(
            TOPIC,
            &[("RequiresDuplicateDetection", &self.requires_duplicate_detection)],
        )?;
        settings::refuse_inactive(TOPIC, &self.status)?;
        if let Some(text) = given(&self.default_message_time_to_live)
            && settings::default_ttl(TOPIC, text)?.is_some()
        {
            return Err(settings::invalid(
                TOPIC,
                "DefaultMessageTimeToLive",
                format!(
                    "`{text}`: this broker keeps no time to live on a topic; set DefaultMessageTimeToLive on its subscriptions instead"
                ),
            ));
        }
        Ok(())
    }
}

/// A topic's description as the endpoint answers it, elements in Service Bus's order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TopicDescription {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    #[serde(rename = "@xmlns:i")]
    xmlns_i: &'static str,
    default_message_time_to_live: String,
    max_size_in_megabytes: u64,
    requires_duplicate_detection: bool,
    duplicate_detection_history_time_window: String,
    enable_batched_operations: bool,
    size_in_bytes: u64,
    filtering_messages_before_publishing: bool,
    is_anonymous_accessible: bool,
    status: &'static str,
    created_at: String,
    updated_at: String,
    accessed_at: String,
    support_ordering: bool,
    count_details: CountDetails,
    subscription_count: usize,
    auto_delete_on_idle: String,
    enable_partitioning: bool,
    is_express: bool,
    entity_availability_status: &'static str,
    enable_subscription_partitioning: bool,
    enable_express: bool,
    max_message_size_in_kilobytes: u64,
}

impl TopicDescription {
    /// The description of the topic `info` describes, on a broker configured by `config`. The
    /// embedded queue keeps no times for topics: they are written as unknown.
    pub fn new(info: &TopicInfo, config: &BrokerConfig) -> Self {
        let depth = QueueDepth {
            scheduled: info.scheduled,
            ..QueueDepth::default()
        };
        Self {
            xmlns: SERVICE_BUS_NAMESPACE,
            xmlns_i: XML_SCHEMA_INSTANCE,
            default_message_time_to_live: xsd::format_duration(None),
            max_size_in_megabytes: 1024,
            requires_duplicate_detection: false,
            duplicate_detection_history_time_window: "PT10M".to_owned(),
            enable_batched_operations: true,
            size_in_bytes: info.size_in_bytes,
            filtering_messages_before_publishing: false,
            is_anonymous_accessible: false,
            status: "Active",
            created_at: xsd::format_time(None),
            updated_at: xsd::format_time(None),
            accessed_at: xsd::format_time(None),
            support_ordering: true,
            count_details: CountDetails::new(&depth),
            subscription_count: info.settings.subscriptions.len(),
            auto_delete_on_idle: xsd::format_duration(None),
            enable_partitioning: false,
            is_express: false,
            entity_availability_status: "Available",
            enable_subscription_partitioning: false,
            enable_express: false,
            max_message_size_in_kilobytes: config.max_message_size / 1024,
        }
    }
}
