//! Per-record ordering in the config: `ordering = "per-record"` on a partner, and which context
//! field names a record (`session-key`).
//!
//! An ordered partner's queue is session-enabled: every message the host sends to it carries a
//! session id (by default the primary entity id), and the partner receives one session at a time,
//! so a record's messages reach it in the order they were sent, even across competing hosts.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

use super::{Config, PartnerConfig};

/// Whether a partner's messages are kept in order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ordering {
    /// Messages are handled concurrently, in any order (the default).
    #[default]
    None,
    /// The messages of one record (one session key) are handled one at a time, in the order sent;
    /// a retry holds that record's later messages back. Other records go on.
    PerRecord,
}

/// The context field whose value is a message's session id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SessionKey {
    /// `PrimaryEntityId`: the row the event is about (the default).
    #[default]
    PrimaryEntityId,
    /// `CorrelationId`: everything one Dataverse operation caused.
    CorrelationId,
    /// `OrganizationId`: the whole environment in one order.
    OrganizationId,
    /// `UserId`.
    UserId,
    /// `InitiatingUserId`.
    InitiatingUserId,
    /// An attribute of the `Target` row, e.g. `target.parentcustomerid` to keep every contact of
    /// one account in order. A reference's id, or the value's text.
    TargetAttribute(String),
}

/// The names `session-key` takes, for error messages.
const SESSION_KEYS: &str = "primary-entity-id, correlation-id, organization-id, user-id, initiating-user-id, \
     target.<attribute>";

impl FromStr for SessionKey {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "primary-entity-id" => Self::PrimaryEntityId,
            "correlation-id" => Self::CorrelationId,
            "organization-id" => Self::OrganizationId,
            "user-id" => Self::UserId,
            "initiating-user-id" => Self::InitiatingUserId,
            other => match other.strip_prefix("target.") {
                Some(attribute) if !attribute.is_empty() => Self::TargetAttribute(attribute.to_owned()),
                _ => return Err(format!("session-key `{other}` is not one of: {SESSION_KEYS}")),
            },
        })
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PrimaryEntityId => f.write_str("primary-entity-id"),
            Self::CorrelationId => f.write_str("correlation-id"),
            Self::OrganizationId => f.write_str("organization-id"),
            Self::UserId => f.write_str("user-id"),
            Self::InitiatingUserId => f.write_str("initiating-user-id"),
            Self::TargetAttribute(attribute) => write!(f, "target.{attribute}"),
        }
    }
}

impl<'de> Deserialize<'de> for SessionKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The session-enabled queues of `partners` (those of the `per-record` ones), with the key each
/// one's messages are grouped by.
pub fn ordered_queues<'a>(partners: impl IntoIterator<Item = &'a PartnerConfig>) -> BTreeMap<String, SessionKey> {
    partners
        .into_iter()
        .filter(|partner| partner.ordering == Ordering::PerRecord)
        .map(|partner| (partner.queue.clone(), partner.session_key.clone()))
        .collect()
}

impl Config {
    /// The session-enabled queues of the config's partners: see [`ordered_queues`].
    pub fn ordered_queues(&self) -> BTreeMap<String, SessionKey> {
        ordered_queues(self.partners.values())
    }

    /// Refuses what ordering cannot do: a subscription (the embedded queue's subscriptions have
    /// no sessions), and one queue read in order by one partner and out of order by another.
    pub(super) fn check_ordering(&self) -> anyhow::Result<()> {
        for (name, partner) in &self.partners {
            if partner.ordering == Ordering::PerRecord && partner.source.is_some() {
                anyhow::bail!(
                    "partners.{name}: ordering = \"per-record\" needs a queue; a topic subscription cannot be \
                     read in order here (give the partner a queue and route the topic's messages to it)"
                );
            }
            if partner.ordering == Ordering::None && partner.session_key != SessionKey::default() {
                anyhow::bail!("partners.{name}: session-key has no effect without ordering = \"per-record\"");
            }
            for (other, theirs) in &self.partners {
                if other != name && theirs.queue == partner.queue && theirs.ordering != partner.ordering {
                    anyhow::bail!(
                        "partners.{name} and partners.{other} read queue `{}` with different `ordering`",
                        partner.queue
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
