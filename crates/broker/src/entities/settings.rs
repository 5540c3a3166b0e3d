//! The description elements queues, topics and subscriptions share, read the same way for each:
//! the delivery settings the embedded queue stores (`LockDuration`, `MaxDeliveryCount`,
//! `DefaultMessageTimeToLive`), and the properties it refuses because the entity would behave
//! otherwise than asked (sessions, duplicate detection, forwarding, a `Status` other than
//! `Active`). Every error names the description and the element, and says what to send instead.

use std::time::Duration;

use super::errors::EntityError;
use super::xsd;

/// The longest lock Service Bus allows.
const MAX_LOCK_DURATION: Duration = Duration::from_secs(5 * 60);

/// `Some` only for an element that is there and not empty.
pub fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|text| !text.is_empty())
}

/// A 400 naming `description/element` and why it was refused.
pub fn invalid(description: &str, element: &str, reason: impl std::fmt::Display) -> EntityError {
    EntityError::bad_request(format!("{description}/{element}: {reason}"))
}

/// `LockDuration`: more than zero and at most `PT5M`, as in Service Bus.
pub fn lock_duration(description: &str, text: &str) -> Result<Duration, EntityError> {
    let lock = xsd::parse_duration(text).map_err(|reason| invalid(description, "LockDuration", reason))?;
    lock.filter(|lock| !lock.is_zero() && *lock <= MAX_LOCK_DURATION)
        .ok_or_else(|| {
            invalid(
                description,
                "LockDuration",
                format!("`{text}` is not more than zero and at most PT5M"),
            )
        })
}

/// `MaxDeliveryCount`: a whole number of at least 1.
pub fn max_delivery_count(description: &str, text: &str) -> Result<u32, EntityError> {
    text.parse::<u32>().ok().filter(|count| *count >= 1).ok_or_else(|| {
        invalid(
            description,
            "MaxDeliveryCount",
            format!("`{text}` is not a whole number of at least 1"),
        )
    })
}

/// `DefaultMessageTimeToLive`: more than zero; `None` is "never" (.NET's `TimeSpan.MaxValue`).
pub fn default_ttl(description: &str, text: &str) -> Result<Option<Duration>, EntityError> {
    let ttl = xsd::parse_duration(text).map_err(|reason| invalid(description, "DefaultMessageTimeToLive", reason))?;
    if ttl.is_some_and(|ttl| ttl.is_zero()) {
        return Err(invalid(
            description,
            "DefaultMessageTimeToLive",
            "must be more than zero",
        ));
    }
    Ok(ttl)
}

/// Refuses each of `flags` (element, value) that is `true`: a feature the broker does not have.
pub fn refuse_enabled(description: &str, flags: &[(&str, &Option<String>)]) -> Result<(), EntityError> {
    for (element, value) in flags {
        if let Some(text) = given(value)
            && xsd::parse_bool(text).map_err(|reason| invalid(description, element, reason))?
        {
            return Err(invalid(
                description,
                element,
                "this broker does not support it yet; create the entity with it false or left out",
            ));
        }
    }
    Ok(())
}

/// Refuses `ForwardTo` and `ForwardDeadLetteredMessagesTo` when they name an entity.
pub fn refuse_forwarding(
    description: &str,
    forward_to: &Option<String>,
    forward_dead_lettered_messages_to: &Option<String>,
) -> Result<(), EntityError> {
    for (element, value) in [
        ("ForwardTo", forward_to),
        ("ForwardDeadLetteredMessagesTo", forward_dead_lettered_messages_to),
    ] {
        if given(value).is_some() {
            return Err(invalid(
                description,
                element,
                "this broker does not forward messages; leave it out",
            ));
        }
    }
    Ok(())
}

/// Refuses a `Status` other than `Active`: the broker's entities cannot be disabled.
pub fn refuse_inactive(description: &str, status: &Option<String>) -> Result<(), EntityError> {
    match given(status) {
        Some(status) if status != "Active" => Err(invalid(
            description,
            "Status",
            format!("`{status}`: this broker's entities are always Active"),
        )),
        _ => Ok(()),
    }
}
