//! The HTTP exchange every token source and the Key Vault client share: the default
//! client, one request bounded by a timeout, and the reading of a token response
//! (OAuth 2.0, managed identity and App Service flavours alike).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::Value;

use crate::{AccessToken, Error, Secret};

/// How long a token or secret request may take, connection and body included, unless a
/// source is given another timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest OAuth `error_description` quoted in an error; Entra ID appends trace ids and
/// timestamps that make a log line long without helping.
const MAX_DESCRIPTION: usize = 300;

/// The client the sources use unless the host passes its own: rustls, and no redirects,
/// because a token endpoint that redirects is misconfigured and following it would post the
/// client's credentials to another address.
pub fn default_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client with rustls and no redirects always builds")
}

/// Sends `request` and reads its whole body within `timeout`.
///
/// `endpoint` names the call in errors (URL and client id, never a secret). reqwest's own
/// error text is shortened to its cause without the URL, which `endpoint` already names.
pub(crate) async fn send(
    endpoint: &str,
    request: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<(StatusCode, reqwest::header::HeaderMap, Vec<u8>), Error> {
    let failed = |err: reqwest::Error| {
        if err.is_timeout() {
            Error::Timeout {
                endpoint: endpoint.to_string(),
                after: timeout,
            }
        } else {
            Error::Transient {
                endpoint: endpoint.to_string(),
                detail: error_chain(&err.without_url()),
            }
        }
    };
    let response = request.timeout(timeout).send().await.map_err(failed)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(failed)?;
    Ok((status, headers, body.to_vec()))
}

/// An error and its causes on one line (`a: b: c`).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether a status means "try again later" for any endpoint this crate calls.
pub(crate) fn is_retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT
}

/// Reads a token endpoint's answer.
///
/// Success is a JSON object with `access_token` and either `expires_in` (seconds from now,
/// as a number or a string: Entra ID sends numbers, IMDS strings) or `expires_on` (seconds
/// since the epoch, App Service). A refusal quotes OAuth's `error` and `error_description`
/// and adds `fix`.
pub(crate) fn read_token(endpoint: &str, status: StatusCode, body: &[u8], fix: &str) -> Result<AccessToken, Error> {
    let invalid = |detail: &str| Error::Transient {
        endpoint: endpoint.to_string(),
        detail: detail.to_string(),
    };
    if is_retryable(status) {
        return Err(invalid(&format!("HTTP {status}")));
    }
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if !status.is_success() {
        return Err(Error::Rejected {
            endpoint: endpoint.to_string(),
            reason: oauth_error(status, json.as_ref()),
            fix: fix.to_string(),
        });
    }
    let Some(Value::Object(fields)) = json else {
        return Err(invalid("the answer is not a JSON object"));
    };
    if let Some(kind) = fields.get("token_type").and_then(Value::as_str)
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(Error::Rejected {
            endpoint: endpoint.to_string(),
            reason: format!("it issued a `{kind}` token where a bearer token was expected"),
            fix: "request a plain bearer token (no proof-of-possession)".to_string(),
        });
    }
    let Some(token) = fields.get("access_token").and_then(Value::as_str) else {
        return Err(invalid("the answer has no `access_token`"));
    };
    let now = SystemTime::now();
    let expires_on = if let Some(seconds) = fields.get("expires_in").and_then(seconds) {
        now + Duration::from_secs(seconds)
    } else if let Some(seconds) = fields.get("expires_on").and_then(seconds) {
        UNIX_EPOCH + Duration::from_secs(seconds)
    } else {
        return Err(invalid(
            "the answer has neither `expires_in` nor `expires_on` in seconds",
        ));
    };
    Ok(AccessToken {
        secret: Secret::new(token),
        expires_on,
    })
}

/// A whole number of seconds sent as a JSON number or a string.
fn seconds(value: &Value) -> Option<u64> {
    match value {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// `error: error_description` from an OAuth error answer, or the bare status.
pub(crate) fn oauth_error(status: StatusCode, json: Option<&Value>) -> String {
    let field = |name: &str| json.and_then(|json| json.get(name)).and_then(Value::as_str);
    match (field("error"), field("error_description")) {
        (Some(error), Some(description)) => {
            let first_line = description.lines().next().unwrap_or_default();
            let short: String = first_line.chars().take(MAX_DESCRIPTION).collect();
            format!("HTTP {status}, {error}: {short}")
        }
        (Some(error), None) => format!("HTTP {status}, {error}"),
        _ => format!("HTTP {status}"),
    }
}
