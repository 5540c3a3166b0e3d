//! A client certificate and the client assertion it signs.
//!
//! Entra ID accepts, in place of a client secret, a short-lived JWT signed with the private
//! key of a certificate uploaded to the app registration (RFC 7523; "Microsoft identity
//! platform certificate credentials"). This module owns loading the certificate and key
//! from PEM and signing that JWT with RS256. Signing uses `ring`, which rustls already
//! brings in, so the workspace gains neither OpenSSL nor a second RSA implementation.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::pem::{PemObject as _, SectionKind};

use crate::Error;

/// How long an assertion is valid. Entra ID takes it once, right away; ten minutes covers
/// clock skew between the host and the identity platform.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(600);

/// A certificate and its RSA private key, ready to sign client assertions.
///
/// `Debug` shows the certificate's SHA-1 thumbprint (the one the Azure portal lists), never
/// the key.
pub struct ClientCertificate {
    key: RsaKeyPair,
    /// Base64url SHA-1 of the certificate's DER (`x5t`).
    x5t: String,
    /// Base64url SHA-256 of the certificate's DER (`x5t#S256`).
    x5t_s256: String,
    /// Hex SHA-1, as the portal shows it, for messages.
    thumbprint: String,
}

impl ClientCertificate {
    /// Reads PEM text holding the certificate (the first `CERTIFICATE` block) and its RSA
    /// private key (`PRIVATE KEY` or `RSA PRIVATE KEY`), in either order: the file the Azure
    /// CLI writes, or a certificate file and a key file concatenated.
    pub fn from_pem(pem: &[u8]) -> Result<Self, Error> {
        let invalid = |detail: &str| {
            Error::config(
                "client certificate",
                detail,
                "give one PEM with the certificate and its unencrypted RSA private key",
            )
        };
        let mut certificate = None;
        let mut key = None;
        for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
            let (kind, der) = section.map_err(|err| invalid(&format!("the PEM does not parse ({err})")))?;
            match kind {
                SectionKind::Certificate if certificate.is_none() => certificate = Some(der),
                SectionKind::PrivateKey | SectionKind::RsaPrivateKey => key = Some((kind, der)),
                _ => {}
            }
        }
        let certificate = certificate.ok_or_else(|| invalid("no CERTIFICATE block"))?;
        let (kind, der) = key.ok_or_else(|| invalid("no PRIVATE KEY or RSA PRIVATE KEY block"))?;
        let key = if kind == SectionKind::PrivateKey {
            RsaKeyPair::from_pkcs8(&der)
        } else {
            RsaKeyPair::from_der(&der)
        }
        .map_err(|err| invalid(&format!("the private key is not a usable RSA key ({err})")))?;
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &certificate);
        let sha256 = ring::digest::digest(&ring::digest::SHA256, &certificate);
        Ok(Self {
            key,
            x5t: URL_SAFE_NO_PAD.encode(sha1),
            x5t_s256: URL_SAFE_NO_PAD.encode(sha256),
            thumbprint: sha1.as_ref().iter().map(|byte| format!("{byte:02X}")).collect(),
        })
    }

    /// Reads [`from_pem`](Self::from_pem) text from a file.
    pub fn from_pem_file(path: &Path) -> Result<Self, Error> {
        let pem = std::fs::read(path).map_err(|err| {
            Error::config(
                format!("client certificate file `{}`", path.display()),
                err.to_string(),
                "check the path and that the host may read it",
            )
        })?;
        Self::from_pem(&pem).map_err(|err| match err {
            Error::Config { detail, fix, .. } => Error::Config {
                what: format!("client certificate file `{}`", path.display()),
                detail,
                fix,
            },
            other => other,
        })
    }

    /// The certificate's SHA-1 thumbprint in hex, as the Azure portal lists it.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A signed client assertion for `client_id` at `token_url` (its audience).
    pub(crate) fn assertion(&self, client_id: &str, token_url: &str) -> Result<String, Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let header = serde_json::json!({
            "alg": "RS256",
            "typ": "JWT",
            "x5t": self.x5t,
            "x5t#S256": self.x5t_s256,
        });
        let claims = serde_json::json!({
            "aud": token_url,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": now,
            "nbf": now,
            "exp": now + ASSERTION_LIFETIME.as_secs(),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| {
                Error::config(
                    format!("client certificate {}", self.thumbprint),
                    "signing the client assertion failed",
                    "use an RSA key of 2048 bits or more",
                )
            })?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}
