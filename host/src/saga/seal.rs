//! Authenticates the saga state the host writes, so that a message's history and
//! compensation details can only come from a host holding the key.
//!
//! Anyone who can send to a queue (the holder of the SAS key Dataverse uses, say) could
//! otherwise write `sagahost-saga` / `sagahost-compensation` properties with an invented
//! history and have partners "undo" data of their choosing. Every message the host sends
//! with saga state carries a tag, `KEY-ID:BASE64(HMAC-SHA256)`, over that state and the
//! body; a message whose state is missing its tag or fails the check is dead-lettered as
//! `InvalidSagaState`. A first-step message (from Dataverse) carries no state and needs
//! no tag.
//!
//! Keys rotate by id: the host signs with one key and accepts every configured one, so
//! a new key is added everywhere first, then made the signing key, and the old one is
//! removed once no message signed with it is left.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sagahost_transport::OutgoingMessage;
use sha2::{Digest, Sha256};

use super::envelope::{COMPENSATION_PROPERTY, SAGA_PROPERTY};

/// Property holding the tag over the saga state.
pub const TAG_PROPERTY: &str = "sagahost-state-tag";
/// Shortest key accepted, in bytes: HMAC-SHA256 keys shorter than the hash add no strength.
pub const MIN_KEY_BYTES: usize = 32;
/// The id of a key the host made itself (see [`StateKeys::local`]).
const LOCAL_KEY_ID: &str = "local";
/// Separates this MAC's inputs from any other use of the key.
const DOMAIN: &[u8] = b"sagahost saga state v1\0";

/// The keys that sign and verify saga state.
#[derive(Clone)]
pub struct StateKeys {
    signing_id: String,
    keys: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for StateKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateKeys")
            .field("signing_id", &self.signing_id)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl StateKeys {
    /// Keys by id; `signing_id` names the one that signs. Every key must be at least
    /// [`MIN_KEY_BYTES`] long.
    pub fn new(signing_id: &str, keys: BTreeMap<String, Vec<u8>>) -> anyhow::Result<Self> {
        anyhow::ensure!(
            keys.contains_key(signing_id),
            "the signing key `{signing_id}` is not among the keys ({})",
            keys.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        for (id, key) in &keys {
            anyhow::ensure!(
                !id.is_empty() && !id.contains(':'),
                "key id `{id}` must be non-empty and must not contain `:`"
            );
            anyhow::ensure!(
                key.len() >= MIN_KEY_BYTES,
                "key `{id}` is {} bytes; it must be at least {MIN_KEY_BYTES} (e.g. `openssl rand -hex 32`)",
                key.len()
            );
        }
        Ok(Self {
            signing_id: signing_id.to_string(),
            keys,
        })
    }

    /// The key in `data_dir/saga-state.key`, made from 32 random bytes on first use. For a
    /// single host (the embedded queue); replicas on Service Bus must share configured keys.
    pub fn local(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("saga-state.key");
        let key = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().to_string(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
                let key = hex::encode(rand::random::<[u8; 32]>());
                write_private(&path, &key)?;
                key
            }
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        Self::new(
            LOCAL_KEY_ID,
            BTreeMap::from([(LOCAL_KEY_ID.to_string(), key.into_bytes())]),
        )
        .with_context(|| format!("the saga-state key in {}", path.display()))
    }

    /// Adds the tag to `message` when it carries saga state; replaces any tag it had.
    pub fn seal(&self, message: &mut OutgoingMessage) {
        message.properties.retain(|(name, _)| name != TAG_PROPERTY);
        let Some(state) = State::of(&message.properties) else {
            return;
        };
        let key = &self.keys[&self.signing_id];
        let tag = URL_SAFE_NO_PAD.encode(mac(key, &state, &message.body).finalize().into_bytes());
        message
            .properties
            .push((TAG_PROPERTY.to_string(), format!("{}:{tag}", self.signing_id)));
    }

    /// Checks that the saga state in `properties`, if any, carries a valid tag over it and
    /// `body`. The error says why, for the dead-letter description.
    pub fn verify(&self, properties: &[(String, String)], body: &[u8]) -> Result<(), String> {
        let Some(state) = State::of(properties) else {
            return Ok(());
        };
        let tag = properties
            .iter()
            .find(|(name, _)| name == TAG_PROPERTY)
            .map(|(_, value)| value.as_str())
            .ok_or_else(|| {
                format!("the message carries saga state but no `{TAG_PROPERTY}`: it was not written by a sagahost host")
            })?;
        let (id, encoded) = tag
            .split_once(':')
            .ok_or_else(|| format!("`{TAG_PROPERTY}` is not `KEY-ID:TAG`"))?;
        let key = self.keys.get(id).ok_or_else(|| {
            format!(
                "the saga state is signed with key `{id}`, which this host does not have; \
                 add it under [saga-state] keys while messages signed with it remain"
            )
        })?;
        let tag = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| format!("`{TAG_PROPERTY}` is not base64url"))?;
        // `verify_slice` compares in constant time.
        mac(key, &state, body)
            .verify_slice(&tag)
            .map_err(|_| "the saga state's tag does not match: the state or the body was altered".to_string())
    }
}

/// The host-owned properties a tag covers.
struct State<'a> {
    saga: Option<&'a str>,
    compensation: Option<&'a str>,
}

impl<'a> State<'a> {
    /// The saga state in `properties`, or `None` when there is none (a first-step message).
    fn of(properties: &'a [(String, String)]) -> Option<Self> {
        let find = |wanted: &str| {
            properties
                .iter()
                .find(|(name, _)| name == wanted)
                .map(|(_, value)| value.as_str())
        };
        let state = Self {
            saga: find(SAGA_PROPERTY),
            compensation: find(COMPENSATION_PROPERTY),
        };
        (state.saga.is_some() || state.compensation.is_some()).then_some(state)
    }
}

/// The MAC over the state and the body, each part length-prefixed so none can run into the next.
fn mac(key: &[u8], state: &State, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(DOMAIN);
    for part in [state.saga, state.compensation] {
        match part {
            Some(text) => {
                mac.update(&[1]);
                mac.update(&(text.len() as u64).to_le_bytes());
                mac.update(text.as_bytes());
            }
            None => mac.update(&[0]),
        }
    }
    mac.update(&Sha256::digest(body));
    mac
}

/// Writes `text` to a new file only its owner can read.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(signing: &str) -> StateKeys {
        StateKeys::new(
            signing,
            BTreeMap::from([("k1".to_string(), vec![1; 32]), ("k2".to_string(), vec![2; 32])]),
        )
        .unwrap()
    }

    fn message(saga: &str) -> OutgoingMessage {
        OutgoingMessage {
            properties: vec![("mdm-id".into(), "M-1".into()), (SAGA_PROPERTY.into(), saga.into())],
            body: b"{}".to_vec(),
            ..OutgoingMessage::default()
        }
    }

    #[test]
    fn sealed_state_verifies_and_any_change_fails() {
        let keys = keys("k1");
        let mut sealed = message(r#"{"id":"s","step":1,"attempt":1}"#);
        keys.seal(&mut sealed);
        assert!(keys.verify(&sealed.properties, &sealed.body).is_ok());

        let err = keys.verify(&sealed.properties, b"{\"other\":1}").unwrap_err();
        assert!(err.contains("does not match"), "{err}");

        let mut forged = sealed.clone();
        forged.properties[1].1 = r#"{"id":"s","step":7,"attempt":1}"#.into();
        assert!(keys.verify(&forged.properties, &forged.body).is_err());

        let mut added = sealed.clone();
        added.properties.push((
            COMPENSATION_PROPERTY.into(),
            r#"{"failed-partner":"erp","reason":"x"}"#.into(),
        ));
        assert!(keys.verify(&added.properties, &added.body).is_err());
    }

    #[test]
    fn state_without_a_tag_or_with_an_unknown_key_is_refused_and_no_state_needs_none() {
        let keys = keys("k1");
        let bare = message(r#"{"id":"s","step":1,"attempt":1}"#);
        let err = keys.verify(&bare.properties, &bare.body).unwrap_err();
        assert!(err.contains(TAG_PROPERTY), "{err}");

        let mut sealed = bare.clone();
        StateKeys::new("k9", BTreeMap::from([("k9".to_string(), vec![9; 32])]))
            .unwrap()
            .seal(&mut sealed);
        let err = keys.verify(&sealed.properties, &sealed.body).unwrap_err();
        assert!(err.contains("key `k9`"), "{err}");

        let first_step = [("x-ms-dynamics-entity-name".to_string(), "contact".to_string())];
        assert!(keys.verify(&first_step, b"{}").is_ok());
    }

    #[test]
    fn rotation_verifies_what_the_previous_signing_key_sealed() {
        let mut sealed = message(r#"{"id":"s","step":1,"attempt":1}"#);
        keys("k1").seal(&mut sealed);
        assert!(keys("k2").verify(&sealed.properties, &sealed.body).is_ok());
        keys("k2").seal(&mut sealed);
        let tags: Vec<_> = sealed.properties.iter().filter(|(n, _)| n == TAG_PROPERTY).collect();
        assert_eq!(tags.len(), 1, "resealing replaces the tag");
        assert!(tags[0].1.starts_with("k2:"));
    }

    #[test]
    fn short_keys_and_a_missing_signing_key_are_refused() {
        let short = StateKeys::new("k", BTreeMap::from([("k".to_string(), vec![0; 8])])).unwrap_err();
        assert!(short.to_string().contains("at least 32"), "{short}");
        let missing = StateKeys::new("k3", BTreeMap::from([("k1".to_string(), vec![0; 32])])).unwrap_err();
        assert!(missing.to_string().contains("`k3`"), "{missing}");
    }

    #[test]
    fn a_local_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut sealed = message(r#"{"id":"s","step":1,"attempt":1}"#);
        StateKeys::local(dir.path()).unwrap().seal(&mut sealed);
        let again = StateKeys::local(dir.path()).unwrap();
        assert!(again.verify(&sealed.properties, &sealed.body).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("saga-state.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the key file is private");
        }
    }
}
