//! [`TokenSource`]: the one type the host holds for "a way to get Entra ID tokens".
//!
//! An enum rather than a trait object: the set of sources is closed (they are the protocols
//! Entra ID offers), and an enum keeps `token` an ordinary `async fn` with no boxing.

use crate::{AccessToken, ClientCredentials, Error, ManagedIdentity};

/// Where tokens come from.
#[derive(Debug)]
pub enum TokenSource {
    /// The client-credentials grant with a secret, a certificate or a federated token
    /// (workload identity).
    ClientCredentials(ClientCredentials),
    /// The platform's managed identity (IMDS or App Service).
    ManagedIdentity(ManagedIdentity),
}

impl TokenSource {
    /// Requests a new token for `scope`; callers normally go through a
    /// [`CachedToken`](crate::CachedToken) instead.
    pub async fn token(&self, scope: &str) -> Result<AccessToken, Error> {
        match self {
            Self::ClientCredentials(source) => source.token(scope).await,
            Self::ManagedIdentity(source) => source.token(scope).await,
        }
    }
}

impl From<ClientCredentials> for TokenSource {
    fn from(source: ClientCredentials) -> Self {
        Self::ClientCredentials(source)
    }
}

impl From<ManagedIdentity> for TokenSource {
    fn from(source: ManagedIdentity) -> Self {
        Self::ManagedIdentity(source)
    }
}
