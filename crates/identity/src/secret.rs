//! Values that must never be printed: [`Secret`] and the [`AccessToken`] that carries one.
//!
//! Both print `[redacted]` in place of the value, in `Debug` and `Display` alike, so a
//! token or client secret that ends up in a log line, a span field or an error message by
//! mistake shows nothing. Neither implements `Serialize`.

use std::fmt;
use std::time::{Duration, SystemTime};

/// A secret value: a client secret, an access token, a Key Vault secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself. Call only where it goes on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// A bearer token and the moment it stops being accepted.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The token; send it as `Authorization: Bearer …`.
    pub secret: Secret,
    /// When the issuer stops accepting it.
    pub expires_on: SystemTime,
}

impl AccessToken {
    /// How long the token is still accepted (zero once it has expired).
    pub fn remaining(&self) -> Duration {
        self.expires_on.duration_since(SystemTime::now()).unwrap_or_default()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &self.secret)
            .field("expires_in", &self.remaining())
            .finish()
    }
}
