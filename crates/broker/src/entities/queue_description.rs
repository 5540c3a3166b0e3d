//! `QueueDescription`, both ways: what a `PUT` asks of a queue ([`QueueDescriptionUpdate`], read
//! into the embedded queue's [`QueueSettings`]) and what the endpoint answers about one
//! ([`QueueDescription`], with the runtime counts KEDA and the SDKs read).
//!
//! # What is stored, what is echoed, what is refused
//! - Stored (the embedded queue honours them, and they persist): `LockDuration` (more than zero,
//!   at most `PT5M` as in Service Bus), `MaxDeliveryCount` (at least 1),
//!   `DefaultMessageTimeToLive` and, on create, `RequiresSession`. What a create leaves out is the
//!   broker's default, as for a queue created on first use ([`BrokerConfig`]); what an update
//!   leaves out stays as it was. An update that changes `RequiresSession` is refused with 400, as
//!   Service Bus refuses it.
//! - Refused with 400, because the queue would behave otherwise than asked:
//!   `RequiresDuplicateDetection`, `ForwardTo` and `ForwardDeadLetteredMessagesTo`, and a `Status`
//!   other than `Active`.
//! - Accepted and answered with what the broker does: `DeadLetteringOnMessageExpiration` is always
//!   `true` (expired messages are dead-lettered), `MaxMessageSizeInKilobytes` is the broker's
//!   limit, `AutoDeleteOnIdle` is never, and the sizing and tuning properties
//!   (`MaxSizeInMegabytes`, `EnableBatchedOperations`, `EnablePartitioning`, `EnableExpress`,
//!   `UserMetadata`) have Service Bus's defaults.

use sagahost_transport::embedded::{QueueDepth, QueueInfo, QueueSettings};
use serde::{Deserialize, Serialize};

use super::errors::EntityError;
use super::settings::{self, given, invalid};
use super::xsd;
use crate::BrokerConfig;

/// The namespace of Service Bus entity descriptions.
pub const SERVICE_BUS_NAMESPACE: &str = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect";
/// The XML Schema instance namespace, declared on descriptions as Service Bus does.
pub const XML_SCHEMA_INSTANCE: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// The namespace of the message count details.
const COUNT_DETAILS_NAMESPACE: &str = "http://schemas.microsoft.com/netservices/2011/06/servicebus";

/// A queue's description as a `PUT` carries it. Every element is optional and read as text, so
/// that each one's error names it; read-only elements an SDK sends back on update (counts, times)
/// are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueueDescriptionUpdate {
    lock_duration: Option<String>,
    max_delivery_count: Option<String>,
    default_message_time_to_live: Option<String>,
    requires_session: Option<String>,
    requires_duplicate_detection: Option<String>,
    forward_to: Option<String>,
    forward_dead_lettered_messages_to: Option<String>,
    status: Option<String>,
}

/// The description's name in errors.
const QUEUE: &str = "QueueDescription";

impl QueueDescriptionUpdate {
    /// `base` with what this description sets; refuses what the embedded queue cannot do.
    pub fn apply(&self, base: QueueSettings) -> Result<QueueSettings, EntityError> {
        settings::refuse_enabled(
            QUEUE,
            &[("RequiresDuplicateDetection", &self.requires_duplicate_detection)],
        )?;
        settings::refuse_forwarding(QUEUE, &self.forward_to, &self.forward_dead_lettered_messages_to)?;
        settings::refuse_inactive(QUEUE, &self.status)?;
        let mut settings = base;
        if let Some(text) = given(&self.lock_duration) {
            settings.lock_duration = settings::lock_duration(QUEUE, text)?;
        }
        if let Some(text) = given(&self.max_delivery_count) {
            settings.max_delivery_count = settings::max_delivery_count(QUEUE, text)?;
        }
        if let Some(text) = given(&self.default_message_time_to_live) {
            settings.default_ttl = settings::default_ttl(QUEUE, text)?;
        }
        if let Some(text) = given(&self.requires_session) {
            settings.requires_session =
                xsd::parse_bool(text).map_err(|reason| invalid(QUEUE, "RequiresSession", reason))?;
        }
        Ok(settings)
    }

    /// The queue's `current` settings with what this description sets, for an update: like
    /// [`Self::apply`], but a queue's `RequiresSession` cannot change once it exists.
    pub fn apply_update(&self, current: QueueSettings) -> Result<QueueSettings, EntityError> {
        let was = current.requires_session;
        let settings = self.apply(current)?;
        if settings.requires_session != was {
            return Err(invalid(
                QUEUE,
                "RequiresSession",
                format!(
                    "the value for the RequiresSession property of an existing queue cannot be changed (queue \
                     `{}` has {was}): delete the queue and create it again",
                    settings.name
                ),
            ));
        }
        Ok(settings)
    }
}

/// A queue's description as the endpoint answers it, elements in Service Bus's order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueueDescription {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    #[serde(rename = "@xmlns:i")]
    xmlns_i: &'static str,
    lock_duration: String,
    max_size_in_megabytes: u64,
    requires_duplicate_detection: bool,
    requires_session: bool,
    default_message_time_to_live: String,
    dead_lettering_on_message_expiration: bool,
    duplicate_detection_history_time_window: String,
    max_delivery_count: u32,
    enable_batched_operations: bool,
    size_in_bytes: u64,
    message_count: u64,
    is_anonymous_accessible: bool,
    status: &'static str,
    created_at: String,
    updated_at: String,
    accessed_at: String,
    support_ordering: bool,
    count_details: CountDetails,
    auto_delete_on_idle: String,
    enable_partitioning: bool,
    entity_availability_status: &'static str,
    enable_express: bool,
    max_message_size_in_kilobytes: u64,
}

/// `CountDetails`: the counts per kind, in their own namespace (prefix `d2p1`, as Service Bus
/// writes it; readers go by the namespace).
#[derive(Debug, Serialize)]
pub struct CountDetails {
    #[serde(rename = "@xmlns:d2p1")]
    xmlns: &'static str,
    #[serde(rename = "d2p1:ActiveMessageCount")]
    active: u64,
    #[serde(rename = "d2p1:DeadLetterMessageCount")]
    dead_letter: u64,
    #[serde(rename = "d2p1:ScheduledMessageCount")]
    scheduled: u64,
    #[serde(rename = "d2p1:TransferMessageCount")]
    transfer: u64,
    #[serde(rename = "d2p1:TransferDeadLetterMessageCount")]
    transfer_dead_letter: u64,
}

impl CountDetails {
    /// The counts of `depth`; the broker never transfers, so those counts are zero.
    pub fn new(depth: &QueueDepth) -> Self {
        Self {
            xmlns: COUNT_DETAILS_NAMESPACE,
            active: depth.active,
            dead_letter: depth.dead_lettered,
            scheduled: depth.scheduled,
            transfer: 0,
            transfer_dead_letter: 0,
        }
    }
}

impl QueueDescription {
    /// The description of the queue `info` describes, on a broker configured by `config`.
    pub fn new(info: &QueueInfo, config: &BrokerConfig) -> Self {
        let depth = info.depth;
        Self {
            xmlns: SERVICE_BUS_NAMESPACE,
            xmlns_i: XML_SCHEMA_INSTANCE,
            lock_duration: xsd::format_duration(Some(info.settings.lock_duration)),
            max_size_in_megabytes: 1024,
            requires_duplicate_detection: false,
            requires_session: info.settings.requires_session,
            default_message_time_to_live: xsd::format_duration(info.settings.default_ttl),
            dead_lettering_on_message_expiration: true,
            duplicate_detection_history_time_window: "PT10M".to_owned(),
            max_delivery_count: info.settings.max_delivery_count,
            enable_batched_operations: true,
            size_in_bytes: info.size_in_bytes,
            message_count: depth.active + depth.scheduled + depth.dead_lettered,
            is_anonymous_accessible: false,
            status: "Active",
            created_at: xsd::format_time(info.created_at),
            updated_at: xsd::format_time(info.updated_at),
            accessed_at: xsd::format_time(None),
            support_ordering: true,
            count_details: CountDetails::new(&depth),
            auto_delete_on_idle: xsd::format_duration(None),
            enable_partitioning: false,
            entity_availability_status: "Available",
            enable_express: false,
            max_message_size_in_kilobytes: config.max_message_size / 1024,
        }
    }
}
