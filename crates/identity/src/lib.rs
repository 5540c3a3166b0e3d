//! Identity for sagahost: Microsoft Entra ID access tokens, their cache, and Azure Key Vault
//! secrets. It owns credentials and the values they unlock; it knows nothing of sagas,
//! partners or the config file, which the host maps onto these types.
//!
//! - [`TokenSource`]: where tokens come from: the client-credentials grant with a client
//!   secret, a certificate ([`ClientCertificate`]) or a federated token (AKS workload
//!   identity), all in [`ClientCredentials`]; or the platform's [`ManagedIdentity`] (IMDS, or
//!   App Service / Container Apps / Functions).
//! - [`CachedToken`]: one scope's token, refreshed shortly before it expires by one caller
//!   at a time, and invalidated after a 401.
//! - [`KeyVaultClient`] and [`KeyVaultSecret`]: a secret read with the bearer challenge and
//!   kept fresh on an interval.
//! - [`Secret`] and [`AccessToken`] print `[redacted]`; [`Error`] never holds a value and tells
//!   transient failures from those an operator must fix.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use sagahost_identity::{
//!     CachedToken, ClientCredentials, KeyVaultClient, KeyVaultSecret, ManagedIdentity, Secret, SecretRef,
//!     TokenSource,
//! };
//!
//! # async fn example() -> Result<(), sagahost_identity::Error> {
//! // `secrets.dataverse = { oauth2 = { token-url, client-id, client-secret, scope } }`
//! let source = ClientCredentials::with_secret(
//!     "https://login.microsoftonline.com/TENANT/oauth2/v2.0/token",
//!     "CLIENT-ID",
//!     Secret::new("read from the configured env or file"),
//! );
//! let dataverse = CachedToken::new(Arc::new(TokenSource::from(source)), "https://org.crm.dynamics.com/.default");
//! let token = dataverse.token().await?; // send `Bearer {token.secret.expose()}`
//! // On a 401: forget that token, take a new one, repeat the request once.
//! dataverse.invalidate(&token);
//! let _fresh = dataverse.token().await?;
//!
//! // `{ key-vault = { vault, name } }`, read with the host's managed identity.
//! let identity = Arc::new(TokenSource::from(ManagedIdentity::from_env(None)));
//! let vault = Arc::new(KeyVaultClient::new(identity));
//! let reference = SecretRef::new("https://NAME.vault.azure.net", "erp-token", None)?;
//! let erp_token = KeyVaultSecret::load(vault, reference, Duration::from_secs(300)).await?;
//! let _value = erp_token.value();
//! # Ok(())
//! # }
//! ```
//!
//! # Why not the official Azure SDK crates
//!
//! `azure_identity` and `azure_security_keyvault_secrets` (1.x) were evaluated first and not
//! used:
//! - their HTTP stack is `azure_core` over reqwest 0.13, while the workspace uses reqwest 0.12:
//!   the host would compile and ship two HTTP clients, plus `azure_core`, `typespec`, `time`,
//!   `url` and `async-lock` for four small HTTP exchanges;
//! - their certificate credential needs OpenSSL (`client_certificate = ["openssl"]`), which the
//!   host avoids everywhere (TLS is rustls);
//! - the IMDS address is a constant (`http://169.254.169.254`) and the environment they read
//!   is not injectable outside their own tests, so the managed identity protocols cannot be
//!   tested here against loopback servers;
//! - the host needs guarantees stated in its own terms: one refresh for many waiters, one
//!   repeat after a 401, and failures of the token endpoint marked transient so a step is
//!   retried rather than dead-lettered.
//!
//! So this crate implements the documented protocols over the workspace's reqwest (rustls)
//! and signs client assertions with `ring`, which rustls already brings in.

mod cache;
mod certificate;
mod client_credentials;
mod error;
mod http;
mod keyvault;
mod managed_identity;
mod secret;
mod source;

pub use cache::CachedToken;
pub use certificate::ClientCertificate;
pub use client_credentials::{ClientCredentials, entra_token_url};
pub use error::Error;
pub use http::{DEFAULT_TIMEOUT, default_client};
pub use keyvault::{API_VERSION, FailureHook, KeyVaultClient, KeyVaultSecret, SecretRef};
pub use managed_identity::{DEFAULT_IMDS_BASE, ManagedIdentity};
pub use secret::{AccessToken, Secret};
pub use source::TokenSource;
