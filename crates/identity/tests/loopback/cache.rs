//! `CachedToken` under concurrency: one request for many waiters, expiry, 401s, outages.

use std::sync::Arc;
use std::time::Duration;

use sagahost_identity::{AccessToken, CachedToken, ClientCredentials, Error, Secret, TokenSource};

use crate::server::{Reply, Server};

const SCOPE: &str = "https://org.crm.dynamics.com/.default";

/// A cache over a loopback token endpoint that answers `reply(n)` to the n-th request.
async fn cache(reply: impl Fn(usize) -> Reply + Send + Sync + 'static) -> (Arc<CachedToken>, Server) {
    let server = Server::start(move |_, n| reply(n)).await;
    let source = ClientCredentials::with_secret(format!("{}/token", server.base), "client", Secret::new("s"));
    let cache = CachedToken::new(Arc::new(TokenSource::from(source)), SCOPE);
    (Arc::new(cache), server)
}

/// Runs `callers` concurrent `work`s and collects their results.
async fn concurrently<T: Send + 'static, F: Future<Output = T> + Send + 'static>(
    callers: usize,
    work: impl Fn() -> F,
) -> Vec<T> {
    let tasks: Vec<_> = (0..callers).map(|_| tokio::spawn(work())).collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

#[tokio::test]
async fn a_hundred_waiters_on_an_empty_cache_cause_one_request() {
    let (cache, server) = cache(|n| Reply::token(&format!("token-{n}"), 3600).after(Duration::from_millis(200))).await;
    let tokens = concurrently(100, || {
        let cache = cache.clone();
        async move { cache.token().await }
    })
    .await;
    assert_eq!(server.count(), 1);
    assert!(
        tokens
            .iter()
            .all(|token| token.as_ref().unwrap().secret.expose() == "token-0")
    );
    // And the token is then served from the cache.
    assert_eq!(cache.token().await.unwrap().secret.expose(), "token-0");
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_for_a_hundred_waiters() {
    // A one-second token is refreshed 0.1 s early and still handed out until 0.05 s before it expires.
    let (cache, server) = cache(|n| Reply::token(&format!("token-{n}"), 1).after(Duration::from_millis(100))).await;
    assert_eq!(cache.token().await.unwrap().secret.expose(), "token-0");
    assert_eq!(cache.token().await.unwrap().secret.expose(), "token-0");
    assert_eq!(server.count(), 1);

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let tokens = concurrently(100, || {
        let cache = cache.clone();
        async move { cache.token().await }
    })
    .await;
    assert_eq!(server.count(), 2);
    assert!(
        tokens
            .iter()
            .all(|token| token.as_ref().unwrap().secret.expose() == "token-1")
    );
}

#[tokio::test]
async fn within_the_margin_callers_keep_the_current_token_while_one_refreshes() {
    // A 10 s token is refreshed from 9 s on and still handed out until 9.5 s.
    let (cache, server) = cache(|n| match n {
        0 => Reply::token("token-0", 10),
        _ => Reply::token("token-1", 3600).after(Duration::from_millis(300)),
    })
    .await;
    cache.token().await.unwrap();
    tokio::time::sleep(Duration::from_millis(9100)).await;
    let refresher = tokio::spawn({
        let cache = cache.clone();
        async move { cache.token().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let during = cache.token().await.unwrap();
    assert_eq!(
        during.secret.expose(),
        "token-0",
        "no wait while the current token is usable"
    );
    assert_eq!(refresher.await.unwrap().unwrap().secret.expose(), "token-1");
    assert_eq!(cache.token().await.unwrap().secret.expose(), "token-1");
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn a_hundred_401s_for_one_token_cause_one_refresh() {
    let (cache, server) = cache(|n| Reply::token(&format!("token-{n}"), 3600).after(Duration::from_millis(50))).await;
    let refused = cache.token().await.unwrap();
    let tokens = concurrently(100, || {
        let cache = cache.clone();
        let refused = refused.clone();
        async move {
            // What a caller does with a 401: invalidate what it sent, take a token, repeat once.
            cache.invalidate(&refused);
            cache.token().await
        }
    })
    .await;
    assert_eq!(server.count(), 2);
    assert!(
        tokens
            .iter()
            .all(|token| token.as_ref().unwrap().secret.expose() == "token-1")
    );

    // A late 401 for the old token does not throw away the new one.
    cache.invalidate(&refused);
    cache.invalidate(&AccessToken {
        secret: Secret::new("never-issued"),
        expires_on: std::time::SystemTime::now(),
    });
    assert_eq!(cache.token().await.unwrap().secret.expose(), "token-1");
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn a_failing_endpoint_is_asked_once_and_every_waiter_gets_the_transient_error() {
    let (cache, server) = cache(|n| match n {
        0 => Reply::status(503).after(Duration::from_millis(200)),
        _ => Reply::token("recovered", 3600),
    })
    .await;
    let results = concurrently(100, || {
        let cache = cache.clone();
        async move { cache.token().await }
    })
    .await;
    assert_eq!(server.count(), 1);
    for result in &results {
        let error = result.as_ref().unwrap_err();
        assert!(
            matches!(error, Error::Transient { .. }) && error.is_transient(),
            "{error:?}"
        );
    }
    // The next caller asks again.
    assert_eq!(cache.token().await.unwrap().secret.expose(), "recovered");
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn a_failed_refresh_keeps_serving_a_token_that_is_still_valid() {
    let (cache, server) = cache(|n| match n {
        0 => Reply::token("token-0", 10),
        _ => Reply::status(500),
    })
    .await;
    cache.token().await.unwrap();
    tokio::time::sleep(Duration::from_millis(9100)).await;
    assert_eq!(cache.token().await.unwrap().secret.expose(), "token-0");
    assert_eq!(server.count(), 2, "the refresh was tried");
}
