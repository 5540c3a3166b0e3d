//! Recorded HTTP answers standing in for partner APIs.

use std::sync::Mutex;

use crate::component::wit;
use crate::outbound::Outbound;

use super::fixture::MockResponse;

/// Answers requests from a fixture's `[[http]]` entries, each used once, in order.
///
/// A request with no matching entry gets a `connection` error that says so,
/// and is flagged in the recorded outcome.
pub struct MockOutbound {
    remaining: Mutex<Vec<MockResponse>>,
}

/// The error text for a request no recorded answer matched.
pub const UNMATCHED: &str = "harness: no recorded answer for this request";

impl MockOutbound {
    pub fn new(responses: Vec<MockResponse>) -> Self {
        Self {
            remaining: Mutex::new(responses),
        }
    }

    /// Recorded answers no request used.
    pub fn unused(&self) -> Vec<MockResponse> {
        self.remaining.lock().expect("mock lock").clone()
    }

    fn answer(&self, request: &wit::HttpRequest) -> Result<wit::HttpResponse, wit::HttpError> {
        let mut remaining = self.remaining.lock().expect("mock lock");
        let position = remaining
            .iter()
            .position(|m| m.method.eq_ignore_ascii_case(&request.method) && m.url == request.url);
        let Some(mock) = position.map(|i| remaining.remove(i)) else {
            return Err(wit::HttpError::Connection(UNMATCHED.into()));
        };
        match mock.error.as_deref() {
            None => Ok(wit::HttpResponse {
                status: mock.status.unwrap_or(200),
                headers: mock
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect(),
                body: mock.body.into_bytes(),
            }),
            Some("timeout") => Err(wit::HttpError::Timeout),
            Some("blocked") => Err(wit::HttpError::Blocked(format!(
                "{} is not on the allow-list",
                request.url
            ))),
            Some("too-large") => Err(wit::HttpError::TooLarge(mock.body.len() as u64)),
            Some("invalid") => Err(wit::HttpError::Invalid(mock.body)),
            Some(_) => Err(wit::HttpError::Connection(if mock.body.is_empty() {
                "connection reset".into()
            } else {
                mock.body
            })),
        }
    }
}

impl Outbound for MockOutbound {
    async fn execute(&self, _partner: &str, requests: &[wit::HttpRequest]) -> Vec<wit::HttpResult> {
        requests
            .iter()
            .map(|r| wit::HttpResult {
                id: r.id.clone(),
                response: self.answer(r),
            })
            .collect()
    }
}
