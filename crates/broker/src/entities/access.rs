//! Who may manage which entity: the `Authorization: SharedAccessSignature sr=…&sig=…&se=…&skn=…`
//! header every SDK sends, checked against the broker's key as `$cbs` checks AMQP tokens
//! (`auth.rs`): the signature, the key name and the expiry, then whether the token's `sr` covers
//! the request's path. The Python SDK signs for the namespace's address, which covers every path;
//! the JavaScript SDK signs each request's own URL (query included, which does not count), which
//! covers that entity or list. Entra ID (`Bearer`) tokens are refused: the broker has no identity
//! provider.

use axum::http::{HeaderMap, header};
use sagahost_transport::sas;

use super::errors::EntityError;
use crate::SharedAccessKey;
use crate::auth::token_covers;

/// Checks the request's token against `key` for `entity` (the request's path below the
/// namespace, as [`super::target::Target::path`] gives it) at Unix time `now`.
pub fn authorize(headers: &HeaderMap, key: &SharedAccessKey, entity: &str, now: u64) -> Result<(), EntityError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(EntityError::unauthorized(
            "MissingToken: the request has no Authorization header; send `SharedAccessSignature sr=…&sig=…&se=…&skn=…` signed with the namespace's key",
        ));
    };
    let token = value
        .to_str()
        .map_err(|_| EntityError::unauthorized("MalformedToken: the Authorization header is not text"))?;
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
