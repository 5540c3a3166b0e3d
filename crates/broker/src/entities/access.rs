//! Who may manage which entity: the `Authorization: SharedAccessSignature sr=…&sig=…&se=…&skn=…`
//! header every SDK sends, checked against the broker's key as `$cbs` checks AMQP tokens
//! (`auth.rs`): the signature, the key name and the expiry, then whether the token's `sr` covers
//! the entity. Lists and the namespace's description need a token for the whole namespace, as
//! the SDKs sign (`sr` is the namespace's address). Entra ID (`Bearer`) tokens are refused: the
//! broker has no identity provider.

use axum::http::{HeaderMap, header};
use sagahost_transport::sas;

use super::errors::EntityError;
use crate::SharedAccessKey;
use crate::auth::token_covers;

/// Checks the request's token against `key` for `entity` (a path below the namespace; empty for
/// the namespace itself) at Unix time `now`.
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
        let what = if entity.is_empty() {
            "the namespace".to_owned()
        } else {
            format!("`{entity}`")
        };
        return Err(EntityError::unauthorized(format!(
            "Unauthorized: the token is for `{}`, which does not cover {what}; sign the token for the namespace's address",
            verified.resource
        )));
    }
    Ok(())
}
