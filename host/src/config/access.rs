//! The keys that open the host's doors: the webhook key and the admin token.
//!
//! A door is shut only if its key is a real secret and the comparison cannot be
//! satisfied by asking with nothing. So an [`AccessKey`] is read once, trimmed,
//! and refused when it is empty or short (at config load, naming the file and
//! the key), and [`keys_match`] compares in constant time and never admits a
//! request that presents no key, or a configured key that is empty.

use subtle::ConstantTimeEq as _;

use crate::outbound::{Secret, SecretReadError, SecretSource};

/// The fewest characters an access key may have.
///
/// Length is the one thing about a key's strength the host can check. 16 refuses
/// the empty value (which would otherwise match a missing header), placeholders
/// such as `changeme` and short hand-typed passwords that an online guesser could
/// reach, while every generated key passes: `openssl rand -hex 16` gives 32
/// characters, and so does the quickstart.
const MIN_KEY_CHARS: usize = 16;

/// A key callers must present to pass a door: read from its source, with
/// surrounding whitespace removed, and at least 16 characters long.
///
/// Whitespace is trimmed because a key file written by an editor or `echo`
/// ends in a newline (or two) that no caller sends.
#[derive(Debug, Clone)]
pub struct AccessKey(Secret);

impl AccessKey {
    /// Reads the key `name` (e.g. `webhook.key`) from `source` and checks its length.
    pub fn read(name: &str, source: &SecretSource) -> Result<Self, AccessKeyError> {
        let value = source.read().map_err(|reason| AccessKeyError::Unreadable {
            name: name.to_owned(),
            reason,
        })?;
        let value = value.expose().trim();
        let chars = value.chars().count();
        if chars < MIN_KEY_CHARS {
            return Err(AccessKeyError::TooShort {
                name: name.to_owned(),
                from: describe(source),
                chars,
            });
        }
        Ok(Self(Secret::new(value)))
    }

    /// Whether `presented` (the key a request carried, `None` when it carried
    /// none) is this key.
    pub fn admits(&self, presented: Option<&str>) -> bool {
        keys_match(presented, self.0.expose())
    }
}

/// Whether a request that presented `presented` may pass a door whose key is
/// `expected`, compared in constant time.
///
/// A request that presents no key never passes, and neither does any request
/// when `expected` is empty: an empty key is a configuration mistake, never a
/// way of saying "open".
fn keys_match(presented: Option<&str>, expected: &str) -> bool {
    match presented {
        Some(presented) if !expected.is_empty() => bool::from(presented.as_bytes().ct_eq(expected.as_bytes())),
        _ => false,
    }
}

/// Why an access key cannot be used. Never contains the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessKeyError {
    /// The variable is not set, or the file cannot be read.
    #[error("{name}: {reason}")]
    Unreadable { name: String, reason: SecretReadError },
    /// Empty, blank or shorter than 16 characters.
    #[error(
        "{name} read from {from} is {}; set it to a random value of at least {MIN_KEY_CHARS} characters, e.g. `openssl rand -hex 32`",
        if *chars == 0 { "empty".to_string() } else { format!("only {chars} characters long") }
    )]
    TooShort { name: String, from: String, chars: usize },
}

/// Where a key comes from, in words.
fn describe(source: &SecretSource) -> String {
    match source {
        SecretSource::Env(var) => format!("environment variable `{var}`"),
        SecretSource::File(path) => format!("file `{}`", path.display()),
        SecretSource::Oauth2(oauth2) => format!("an oauth2 token for `{}`", oauth2.scope),
        SecretSource::KeyVault(key_vault) => format!("Key Vault secret `{}`", key_vault.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_key_never_matches_even_an_empty_configured_one() {
        assert!(!keys_match(None, ""));
        assert!(!keys_match(Some(""), ""));
        assert!(!keys_match(None, "a-configured-key-1234"));
        assert!(!keys_match(Some(""), "a-configured-key-1234"));
        assert!(!keys_match(Some("a-configured-key-123"), "a-configured-key-1234"));
        assert!(!keys_match(Some("a-configured-key-12345"), "a-configured-key-1234"));
        assert!(keys_match(Some("a-configured-key-1234"), "a-configured-key-1234"));
    }

    #[test]
    fn keys_are_trimmed_and_refused_when_empty_blank_or_short() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            SecretSource::File(path)
        };
        let good = AccessKey::read("webhook.key", &file("good", "  0123456789abcdef\n\n")).unwrap();
        assert!(good.admits(Some("0123456789abcdef")));
        assert!(!good.admits(Some("  0123456789abcdef\n\n")));
        assert!(!good.admits(None));

        for (text, says) in [
            ("", "is empty"),
            (" \r\n\t\n", "is empty"),
            ("0123456789abcde\n", "is only 15 characters long"),
        ] {
            let source = file("short", text);
            let error = AccessKey::read("admin.token", &source).unwrap_err().to_string();
            assert!(error.starts_with("admin.token read from file `"), "{error}");
            assert!(
                error.contains(says) && error.contains("openssl rand -hex 32"),
                "{error}"
            );
        }
        let unset = SecretSource::Env(format!("SAGAHOST_ACCESS_TEST_UNSET_{}", std::process::id()));
        let error = AccessKey::read("webhook.key", &unset).unwrap_err();
        assert!(matches!(error, AccessKeyError::Unreadable { .. }), "{error}");
    }
}
