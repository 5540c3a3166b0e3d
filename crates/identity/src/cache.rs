//! [`CachedToken`]: one scope's token, reused until shortly before it expires.
//!
//! Many saga steps need the same token at once. The cache lets exactly one of them ask the
//! token endpoint when the token runs out, and hands its answer, token or error, to all who
//! waited. A 401 from the API invalidates the token only if it is still the cached one, so a
//! burst of 401s for one stale token causes one refresh, and a caller repeats its request
//! once with the new token, never in a loop.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::{AccessToken, Error, TokenSource};

/// The most a token is refreshed ahead of its expiry.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// A token for one scope from one source, refreshed on demand.
#[derive(Debug)]
pub struct CachedToken {
    source: Arc<TokenSource>,
    scope: String,
    state: Mutex<State>,
    /// Held by the one caller that asks the source; the others wait on it.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct State {
    token: Option<Cached>,
    /// Counts finished requests to the source, so a waiter can tell that someone else
    /// asked while it waited and take that answer instead of asking again.
    generation: u64,
    /// The last request's error, for those who waited on it.
    failure: Option<Error>,
}

/// What a caller does when the cached token is not fresh.
enum Next<'a> {
    /// Refresh now; nobody else is.
    Refresh(tokio::sync::MutexGuard<'a, ()>),
    /// Wait for the refresh lock; `generation` was current when the caller looked.
    Wait(u64),
}

#[derive(Debug)]
struct Cached {
    token: AccessToken,
    /// From here on the next caller fetches a new token.
    refresh_at: Instant,
    /// Until here the token is still handed out while a refresh runs or after one failed;
    /// a little before the real expiry, since the request that carries it takes time too.
    usable_until: Instant,
}

impl Cached {
    fn new(token: AccessToken) -> Self {
        let now = Instant::now();
        let lifetime = token.remaining();
        // 10% of the lifetime, at most 5 minutes: an hour-long Entra ID token is refreshed
        // 5 minutes early, a one-minute test token 6 seconds early.
        let margin = (lifetime / 10).min(MAX_REFRESH_MARGIN);
        Self {
            refresh_at: now + lifetime - margin,
            usable_until: now + lifetime - margin / 2,
            token,
        }
    }

    fn fresh(&self, now: Instant) -> bool {
        now < self.refresh_at
    }

    fn usable(&self, now: Instant) -> bool {
        now < self.usable_until
    }
}

impl CachedToken {
    /// A cache of `source`'s tokens for `scope` (e.g. `https://org.crm.dynamics.com/.default`).
    pub fn new(source: Arc<TokenSource>, scope: impl Into<String>) -> Self {
        Self {
            source,
            scope: scope.into(),
            state: Mutex::default(),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// The scope this cache holds tokens for.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// A valid token: the cached one, or a new one from the source.
    ///
    /// While one caller refreshes, the others wait for its answer, unless the current token
    /// is still usable, which they then get at once. A failed refresh still yields the current
    /// token while it is usable. The error (see [`Error::is_transient`]) is shared by every
    /// caller that waited on the failed request.
    pub async fn token(&self) -> Result<AccessToken, Error> {
        let next = {
            let state = self.state();
            let now = Instant::now();
            match &state.token {
                Some(cached) if cached.fresh(now) => return Ok(cached.token.clone()),
                Some(cached) if cached.usable(now) => match self.refreshing.try_lock() {
                    Ok(guard) => Next::Refresh(guard),
                    Err(_) => return Ok(cached.token.clone()),
                },
                _ => Next::Wait(state.generation),
            }
        };
        let guard = match next {
            Next::Refresh(guard) => guard,
            Next::Wait(seen) => {
                let guard = self.refreshing.lock().await;
                let state = self.state();
                if state.generation != seen {
                    if let Some(cached) = state.token.as_ref().filter(|cached| cached.usable(Instant::now())) {
                        return Ok(cached.token.clone());
                    }
                    if let Some(error) = &state.failure {
                        return Err(error.clone());
                    }
                }
                guard
            }
        };
        self.refresh(guard).await
    }

    /// Asks the source, holding `_guard` so nobody else does meanwhile.
    async fn refresh(&self, _guard: tokio::sync::MutexGuard<'_, ()>) -> Result<AccessToken, Error> {
        let result = self.source.token(&self.scope).await;
        let mut state = self.state();
        state.generation += 1;
        match result {
            Ok(token) => {
                state.failure = None;
                state.token = Some(Cached::new(token.clone()));
                Ok(token)
            }
            Err(error) => {
                state.failure = Some(error.clone());
                match state.token.as_ref().filter(|cached| cached.usable(Instant::now())) {
                    Some(cached) => {
                        tracing::warn!(scope = %self.scope, %error, "token refresh failed; the current token is still valid");
                        Ok(cached.token.clone())
                    }
                    None => Err(error),
                }
            }
        }
    }

    /// Forgets `token` after an API answered 401 to it, so the next [`token`](Self::token)
    /// fetches a new one. A token that is no longer the cached one is ignored: someone has
    /// already replaced it.
    pub fn invalidate(&self, token: &AccessToken) {
        let mut state = self.state();
        if state
            .token
            .as_ref()
            .is_some_and(|cached| cached.token.secret == token.secret)
        {
            state.token = None;
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is a few plain fields; a panic elsewhere cannot leave it inconsistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
