//! [`KeyVaultSecret`]: a secret's value kept in memory and refreshed on an interval.
//!
//! A rotated secret takes effect at the next refresh with no restart. A vault that cannot be
//! reached at startup is an error naming the secret; one that cannot be reached later leaves
//! the last value in place, logs a warning, counts the failure and tells the host's hook, so
//! messages keep flowing through an outage of the vault.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::MissedTickBehavior;

use super::{KeyVaultClient, SecretRef};
use crate::{Error, Secret};

/// Called after each failed refresh with the secret and the error; the host turns it into a
/// metric.
pub type FailureHook = Arc<dyn Fn(&SecretRef, &Error) + Send + Sync>;

/// A Key Vault secret's current value. Refreshing stops when this is dropped.
pub struct KeyVaultSecret {
    shared: Arc<Shared>,
    refresher: AbortHandle,
}

struct Shared {
    secret: SecretRef,
    value: RwLock<Secret>,
    failures: AtomicU64,
}

impl KeyVaultSecret {
    /// Reads `secret` now and then every `interval`, on the current tokio runtime.
    ///
    /// Fails, naming the secret and the vault, when the first read does.
    pub async fn load(client: Arc<KeyVaultClient>, secret: SecretRef, interval: Duration) -> Result<Self, Error> {
        Self::load_with_hook(client, secret, interval, Arc::new(|_: &SecretRef, _: &Error| {})).await
    }

    /// [`load`](Self::load), calling `on_failure` after each failed refresh.
    pub async fn load_with_hook(
        client: Arc<KeyVaultClient>,
        secret: SecretRef,
        interval: Duration,
        on_failure: FailureHook,
    ) -> Result<Self, Error> {
        let value = client.get(&secret).await?;
        let shared = Arc::new(Shared {
            secret,
            value: RwLock::new(value),
            failures: AtomicU64::new(0),
        });
        let refresher = tokio::spawn(refresh(client, shared.clone(), interval, on_failure)).abort_handle();
        Ok(Self { shared, refresher })
    }

    /// The value as of the last successful read.
    pub fn value(&self) -> Secret {
        self.shared
            .value
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Which secret this is.
    pub fn reference(&self) -> &SecretRef {
        &self.shared.secret
    }

    /// How many refreshes have failed since loading.
    pub fn refresh_failures(&self) -> u64 {
        self.shared.failures.load(Ordering::Relaxed)
    }
}

impl Drop for KeyVaultSecret {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

impl std::fmt::Debug for KeyVaultSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVaultSecret")
            .field("secret", &self.shared.secret)
            .field("value", &self.value())
            .field("refresh_failures", &self.refresh_failures())
            .finish()
    }
}

/// Reads the secret every `interval` until aborted.
async fn refresh(client: Arc<KeyVaultClient>, shared: Arc<Shared>, interval: Duration, on_failure: FailureHook) {
    let mut ticks = tokio::time::interval(interval);
    // After a slow read, wait a whole interval again rather than reading twice in a row.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick is immediate, and `load` has just read the value.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        match client.get(&shared.secret).await {
            Ok(value) => {
                let mut current = shared.value.write().unwrap_or_else(|poisoned| poisoned.into_inner());
                if *current != value {
                    tracing::info!(secret = %shared.secret, "Key Vault secret rotated; using the new value");
                    *current = value;
                }
            }
            Err(error) => {
                shared.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(secret = %shared.secret, %error, "cannot refresh Key Vault secret; keeping the last value");
                on_failure(&shared.secret, &error);
            }
        }
    }
}
