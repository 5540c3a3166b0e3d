//! Who may manage which entity: the `Authorization: SharedAccessSignature sr=…&sig=…&se=…&skn=…`
//! header every SDK sends, checked against the broker's key as `$cbs` checks AMQP tokens
//! (`auth.rs`): the signature, the key name and the expiry, then whether the token's `sr` covers
//! the request's path. The Python SDK signs for the namespace's address, which covers every path;
//! the JavaScript SDK signs each request's own URL (query included, which does not count), which
//! covers that entity or list. Entra ID (`Bearer`) tokens cannot be validated here: only those of
//! [`BrokerConfig::bearer_tokens`](crate::BrokerConfig::bearer_tokens) are accepted, for every
//! entity (the stand-in the crate doc describes); any other is refused.

use axum::http::{HeaderMap, header};
use sagahost_transport::sas;

use super::errors::EntityError;
use crate::BrokerConfig;
use crate::auth::{accepts_bearer, token_covers};

/// Checks the request's token against `config`'s key (or bearer tokens) for `entity` (the
/// request's path below the namespace, as [`super::target::Target::path`] gives it) at Unix time
/// `now`.
pub fn authorize(headers: &HeaderMap, config: &BrokerConfig, entity: &str, now: u64) -> Result<(), EntityError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(EntityError::unauthorized(
            "MissingToken: the request has no Authorization header; send `SharedAccessSignature sr=…&sig=…&se=…&skn=…` signed with the namespace's key",
        ));
    };
    let token = value
        .to_str()
        .map_err(|_| EntityError::unauthorized("MalformedToken: the Authorization header is not text"))?;
    if let Some(bearer) = token.strip_prefix("Bearer ") {
        if accepts_bearer(&config.bearer_tokens, bearer.trim()) {
            return Ok(());
        }
        return Err(EntityError::unauthorized(
            "InvalidToken: the bearer token is not one this broker accepts; it cannot validate Entra ID tokens and \
             accepts only those configured as bearer tokens",
        ));
    }
    let key = &config.key;
    let verified = sas::verify(token, &key.name, &key.key, now)
        .map_err(|error| EntityError::unauthorized(format!("InvalidSignature: {error}")))?;
    if !token_covers(&verified.resource, entity) {
        return Err(EntityError::unauthorized(format!(
            "Unauthorized: the token is for `{}`, which does not cover `{entity}`; sign the token for the namespace's address",
            verified.resource
        )));
    }
    Ok(())
}
