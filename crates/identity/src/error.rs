//! The one error type of this crate, and which of its failures are worth retrying.
//!
//! Every message names where the failure happened (token URL, client id, vault, secret
//! name) and, where one exists, the fix. None ever contains a secret, a token or a response
//! body: bodies can echo what was sent, so only the OAuth `error` and `error_description`
//! fields, which the identity platform writes for people, are quoted.

use std::time::Duration;

/// Why a token or a Key Vault secret could not be had.
///
/// The host treats every variant as a failure of the saga step that needed the value, and
/// retries the step; none of them is a reason to dead-letter a message. [`is_transient`]
/// tells the two kinds apart for logs and alerts: a transient failure is expected to pass by
/// itself, the others need an operator.
///
/// [`is_transient`]: Error::is_transient
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The endpoint could not be reached, was too slow, or answered with a server error,
    /// a throttling status or something that is not a token. Retrying later may succeed.
    #[error("{endpoint} is unavailable: {detail}; the step will be retried")]
    Transient {
        /// What was being called, e.g. ``token endpoint `https://…` for client `…` ``.
        endpoint: String,
        /// What went wrong, without secrets.
        detail: String,
    },
    /// The endpoint did not answer within the configured timeout.
    #[error("{endpoint} did not answer within {after:?}; the step will be retried")]
    Timeout {
        /// What was being called.
        endpoint: String,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The endpoint answered and refused: wrong credentials, missing role, unknown secret.
    /// Retrying will not help until the configuration or the grant changes.
    #[error("{endpoint} refused: {reason}; {fix}")]
    Rejected {
        /// What was being called.
        endpoint: String,
        /// What it said (OAuth `error: error_description`, or the HTTP status).
        reason: String,
        /// What the operator should check.
        fix: String,
    },
    /// The local configuration cannot be used: a variable is missing, a file is unreadable,
    /// a key does not parse.
    #[error("{what}: {detail}; {fix}")]
    Config {
        /// Which setting.
        what: String,
        /// What is wrong with it.
        detail: String,
        /// How to correct it.
        fix: String,
    },
}

impl Error {
    /// Whether the failure is expected to pass by itself (endpoint down, slow, throttling).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. } | Self::Timeout { .. })
    }

    pub(crate) fn config(what: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::Config {
            what: what.into(),
            detail: detail.into(),
            fix: fix.into(),
        }
    }
}
