//! Failures as Service Bus answers them: a status code and an `<Error><Code>…</Code><Detail>…
//! </Detail></Error>` body, which the SDKs turn into their usual exceptions (404 →
//! `ResourceNotFoundError`, 409 → `ResourceExistsError`, 401 → `ClientAuthenticationError`, the
//! detail as the message).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sagahost_transport::embedded::TopicError;
use serde::Serialize;

/// A refused or failed request: what the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityError {
    /// The HTTP status, also the body's `Code`.
    pub status: StatusCode,
    /// What went wrong and, where there is one, what to do instead.
    pub detail: String,
}

impl EntityError {
    fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
        }
    }

    /// 400: the request cannot be carried out as written.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 401: no valid token covers the entity.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }

    /// 404: the entity does not exist.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 405: the path exists but not with this method.
    pub fn method_not_allowed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, detail)
    }

    /// 409: the entity exists already.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }

    /// 413: the body is larger than the endpoint reads.
    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, detail)
    }

    /// 500: the queue failed (its database, most likely).
    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the broker's queue failed: {error}"),
        )
    }
}

/// Topic, subscription and rule failures of the embedded queue, as Service Bus answers them.
impl From<TopicError> for EntityError {
    fn from(error: TopicError) -> Self {
        let detail = error.to_string();
        match error {
            TopicError::UnknownTopic(_) | TopicError::UnknownSubscription { .. } | TopicError::UnknownRule { .. } => {
                Self::not_found(detail)
            }
            TopicError::RuleExists { .. } | TopicError::NameTaken(_) => Self::conflict(detail),
            TopicError::Invalid(_) | TopicError::Filter { .. } => Self::bad_request(detail),
            TopicError::Transport(error) => Self::internal(error),
        }
    }
}

/// The body Service Bus sends with a failure.
#[derive(Serialize)]
#[serde(rename = "Error")]
struct ErrorBody<'a> {
    #[serde(rename = "Code")]
    code: u16,
    #[serde(rename = "Detail")]
    detail: &'a str,
}

impl IntoResponse for EntityError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.status.as_u16(),
            detail: &self.detail,
        };
        let xml = quick_xml::se::to_string(&body)
            .unwrap_or_else(|_| format!("<Error><Code>{}</Code></Error>", self.status.as_u16()));
        let mut response = (self.status, xml).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml; charset=utf-8"),
        );
        response
    }
}
