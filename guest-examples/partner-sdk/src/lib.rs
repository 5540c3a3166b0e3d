//! Guest SDK for [sagahost](https://github.com/) partner components.
//!
//! A partner component is a WebAssembly component that implements the WIT world
//! `sagahost:partner/partner` (see `wit/` at the root of the repository). The host
//! calls [`Guest::handle`] with an [`Event`] and the component answers with a
//! [`Plan`]: either "make these HTTP requests, then call me again with the
//! answers" ([`call`]) or "the step is over, here is what to do with the message"
//! ([`complete`], [`forward`], [`retry`], [`compensate`], [`dead_letter`]).
//! The component never does I/O itself and never sees a secret: it names secrets
//! in request headers and the host injects them.
//!
//! This crate holds the generated bindings ([`bindings`]) and a few helpers that
//! keep components short. Import everything with the [`prelude`].
//!
//! # A complete component
//!
//! ```ignore
//! use sagahost_partner::prelude::*;
//! use serde_json::json;
//!
//! struct Crm;
//!
//! impl Guest for Crm {
//!     fn handle(event: Event) -> Result<Plan, String> {
//!         match event {
//!             // 1. A new message: ask the host to POST it to the CRM.
//!             Event::Message(inbound) => {
//!                 let url = require_config("crm-url")?;
//!                 let name = inbound
//!                     .context
//!                     .as_ref()
//!                     .and_then(target)
//!                     .and_then(|contact| text_attr(contact, "fullname"))
//!                     .unwrap_or_default();
//!                 let request = Request::post(format!("{url}/people"))
//!                     .json(&json!({ "name": name }))
//!                     .bearer_secret("crm-token");
//!                 Ok(call([request], "create"))
//!             }
//!             // 2. The host made the request: decide what happens next.
//!             Event::Responses(responses) => {
//!                 let result = &responses.results[0];
//!                 Ok(match result.status() {
//!                     Status::Success => {
//!                         info("created in the CRM");
//!                         forward("next")
//!                     }
//!                     Status::Transient => retry(result.retry_after_ms(), result.describe()),
//!                     Status::Fatal => dead_letter("CrmRejected", result.describe()),
//!                 })
//!             }
//!             // 3. A later step failed: nothing to undo here.
//!             Event::Compensate(_) => Ok(complete()),
//!         }
//!     }
//! }
//!
//! sagahost_partner::export!(Crm);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` (crate type
//! `cdylib`); the `.wasm` in `target/wasm32-wasip2/release/` is the component.
//!
//! # What is where
//!
//! - Requests: [`Request`] (an alias of [`HttpRequest`]) with builder methods
//!   ([`HttpRequest::post`], [`HttpRequest::json`], [`HttpRequest::bearer_secret`]…).
//! - Plans: [`call`], [`complete`], [`forward`], [`forward_with`], [`retry`],
//!   [`compensate`], [`dead_letter`], and [`Plan::recording`] to store
//!   compensation data.
//! - Answers: [`HttpResult::status`] ([`Status`]), [`HttpResult::describe`],
//!   [`retry_after_ms`], [`HttpResponse::header`], [`HttpResponse::json`].
//! - The Dataverse context: [`target`], [`attr`], [`text_attr`], [`property`].
//! - Configuration: [`config_or`], [`require_config`].
//! - Logs: [`debug`], [`info`], [`warn`], [`error`].
//!
//! [`Guest::handle`]: prelude::Guest::handle

#![warn(missing_docs)]

// Lets the generated bindings name this crate as `sagahost_partner` from inside it.
extern crate self as sagahost_partner;

#[doc(hidden)]
pub use wit_bindgen;

/// The bindings generated from the WIT world `partner`.
///
/// Types live in [`bindings::sagahost::partner::types`], the imports in
/// [`bindings::sagahost::partner::log`] and [`bindings::sagahost::partner::config`],
/// and the trait to implement in
/// [`bindings::exports::sagahost::partner::handler::Guest`]. The [`prelude`]
/// re-exports all of them.
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "partner",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "sagahost_partner::bindings",
        runtime_path: "sagahost_partner::wit_bindgen::rt",
    });
}

/// Exports a type that implements [`Guest`] as the component's handler:
/// `sagahost_partner::export!(MyPartner);`
pub use bindings::export;
pub use bindings::exports::sagahost::partner::handler::Guest;
pub use bindings::sagahost::partner::types::*;
use bindings::sagahost::partner::{config, log};

/// Everything a component needs: the WIT types, [`Guest`] and the helpers.
pub mod prelude {
    pub use crate::bindings::exports::sagahost::partner::handler::Guest;
    pub use crate::bindings::sagahost::partner::log::Level;
    pub use crate::bindings::sagahost::partner::types::*;
    pub use crate::{
        Request, Status, attr, call, compensate, complete, config_or, dead_letter, debug, error, forward, forward_with,
        info, property, require_config, retry, retry_after_ms, target, text_attr, warn,
    };
}

// -------------------------------------------------------------------------------
// Requests
// -------------------------------------------------------------------------------

/// The request builder: `Request::post(url).json(&body).bearer_secret("token")`.
///
/// It is [`HttpRequest`] itself, so the result goes straight into [`call`].
pub type Request = HttpRequest;

impl HttpRequest {
    /// A request with this method and absolute URL, no headers and no body. Its
    /// `id` is the method in lowercase until [`HttpRequest::id`] sets one.
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        HttpRequest {
            id: method.to_ascii_lowercase(),
            method: method.to_string(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout_ms: None,
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
    }

    /// A `PUT` request.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new("PUT", url)
    }

    /// A `PATCH` request.
    pub fn patch(url: impl Into<String>) -> Self {
        Self::new("PATCH", url)
    }

    /// A `DELETE` request.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new("DELETE", url)
    }

    /// Names the request; the host echoes the name in [`HttpResult::id`].
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Adds a header with a literal value.
    pub fn header(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.header_value(name, HeaderValue::Literal(value.into()))
    }

    /// Adds a header whose value is the partner secret `secret`, injected by the host.
    pub fn secret_header(self, name: impl Into<String>, secret: impl Into<String>) -> Self {
        self.header_value(name, HeaderValue::Secret(secret.into()))
    }

    /// Adds `Authorization: Bearer <value of secret>`, injected by the host.
    pub fn bearer_secret(self, secret: impl Into<String>) -> Self {
        self.header_value(
            "Authorization",
            HeaderValue::SecretTemplate(SecretTemplate {
                template: "Bearer {}".to_string(),
                secret: secret.into(),
            }),
        )
    }

    /// Adds a header with any [`HeaderValue`].
    pub fn header_value(mut self, name: impl Into<String>, value: HeaderValue) -> Self {
        self.headers.push(Header {
            name: name.into(),
            value,
        });
        self
    }

    /// Sets the body to raw bytes.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sets the body to `value` as JSON, and `Content-Type: application/json`
    /// unless a content type is already set.
    pub fn json(mut self, value: &serde_json::Value) -> Self {
        self.body = Some(value.to_string().into_bytes());
        let has_content_type = self.headers.iter().any(|h| h.name.eq_ignore_ascii_case("content-type"));
        if has_content_type {
            self
        } else {
            self.header("Content-Type", "application/json")
        }
    }

    /// Caps the request's timeout (the partner's configured timeout still applies
    /// when it is shorter).
    pub fn timeout_ms(mut self, timeout_ms: u32) -> Self {
        self.timeout_ms = Some(timeout_ms);
        self
    }
}

// -------------------------------------------------------------------------------
// Plans and decisions
// -------------------------------------------------------------------------------

/// Asks the host to make `requests`, then call `handle` again with
/// [`Event::Responses`] carrying `state` back unchanged.
///
/// Each call to `handle` runs in a fresh instance, so `state` is the only memory
/// between rounds: use it to say which phase the answers belong to (`"create"`,
/// `"delete:MDM-42"`…).
pub fn call(requests: impl IntoIterator<Item = HttpRequest>, state: impl Into<String>) -> Plan {
    Plan::Call(Calls {
        requests: requests.into_iter().collect(),
        state: state.into(),
    })
}

fn done(decision: Decision) -> Plan {
    Plan::Done(Outcome {
        decision,
        compensation_data: None,
    })
}

/// Ends the saga successfully.
pub fn complete() -> Plan {
    done(Decision::Complete)
}

/// Sends the inbound message, unchanged, to the route `route` (config maps routes
/// to queues).
pub fn forward(route: impl Into<String>) -> Plan {
    forward_with(route, Vec::<(String, String)>::new())
}

/// Sends the inbound message to `route`, adding or replacing application
/// properties, e.g. `forward_with("next", [("mdm-id", id)])`.
pub fn forward_with<K: Into<String>, V: Into<String>>(
    route: impl Into<String>,
    properties: impl IntoIterator<Item = (K, V)>,
) -> Plan {
    done(Decision::Forward(vec![ForwardMessage {
        route: route.into(),
        body: None,
        content_type: None,
        properties: properties.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
    }]))
}

/// Tries the step again after `delay_ms`, or after the partner's backoff when
/// `None`. Pass [`HttpResult::retry_after_ms`] to honour `Retry-After`.
pub fn retry(delay_ms: Option<u64>, reason: impl Into<String>) -> Plan {
    done(Decision::Retry(Retry {
        delay_ms,
        reason: reason.into(),
    }))
}

/// Undoes the saga: every earlier step gets [`Event::Compensate`], newest first.
pub fn compensate(reason: impl Into<String>, details: impl Into<String>) -> Plan {
    done(Decision::Compensate(Compensate {
        reason: reason.into(),
        details: Some(details.into()),
    }))
}

/// Gives up: the message goes to the dead-letter queue with a short
/// machine-readable `reason` and a `description` for the operator.
pub fn dead_letter(reason: impl Into<String>, description: impl Into<String>) -> Plan {
    done(Decision::DeadLetter(DeadLetter {
        reason: reason.into(),
        description: description.into(),
    }))
}

impl Plan {
    /// Records `data` as this step's compensation data: the host keeps it in the
    /// saga history and hands it back in [`Compensation::compensation_data`] if a
    /// later step fails. Has no effect on [`Plan::Call`].
    pub fn recording(mut self, data: impl Into<String>) -> Plan {
        if let Plan::Done(outcome) = &mut self {
            outcome.compensation_data = Some(data.into());
        }
        self
    }
}

// -------------------------------------------------------------------------------
// Answers
// -------------------------------------------------------------------------------

/// How to treat the outcome of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A 2xx answer.
    Success,
    /// Worth retrying: 408, 429, 5xx, a timeout, a connection failure or a body
    /// over the size cap.
    Transient,
    /// Retrying will not help: any other status (mostly 4xx), a host that is not
    /// on the allow-list, or an invalid request.
    Fatal,
}

impl Status {
    /// Classifies an HTTP status code.
    pub fn of_code(code: u16) -> Status {
        match code {
            200..=299 => Status::Success,
            408 | 429 | 500..=599 => Status::Transient,
            _ => Status::Fatal,
        }
    }
}

impl HttpResult {
    /// The response, when the request got one (the `response` field as an
    /// `Option`, for chaining).
    pub fn response(&self) -> Option<&HttpResponse> {
        self.response.as_ref().ok()
    }

    /// The status code, when the request got a response.
    pub fn code(&self) -> Option<u16> {
        self.response().map(|r| r.status)
    }

    /// Success, transient or fatal (see [`Status`]).
    pub fn status(&self) -> Status {
        match &self.response {
            Ok(response) => Status::of_code(response.status),
            Err(HttpError::Blocked(_) | HttpError::Invalid(_)) => Status::Fatal,
            Err(HttpError::Timeout | HttpError::Connection(_) | HttpError::TooLarge(_)) => Status::Transient,
        }
    }

    /// The `Retry-After` delay of the response, if any (see [`retry_after_ms`]).
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.response().and_then(retry_after_ms)
    }

    /// One line for logs and decisions: `503: <body excerpt>`, `timeout`,
    /// `connection failed: …`.
    pub fn describe(&self) -> String {
        match &self.response {
            Ok(response) => {
                let excerpt = response.excerpt(200);
                if excerpt.is_empty() {
                    format!("HTTP {}", response.status)
                } else {
                    format!("HTTP {}: {excerpt}", response.status)
                }
            }
            Err(HttpError::Timeout) => "timeout".to_string(),
            Err(HttpError::Blocked(host)) => format!("blocked: {host} is not allowed"),
            Err(HttpError::Connection(why)) => format!("connection failed: {why}"),
            Err(HttpError::TooLarge(size)) => format!("response too large: {size} bytes"),
            Err(HttpError::Invalid(why)) => format!("invalid request: {why}"),
        }
    }
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as text (invalid UTF-8 replaced), cut to at most `max_chars`
    /// characters with `…` appended when cut, whitespace runs collapsed.
    pub fn excerpt(&self, max_chars: usize) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let mut out = String::new();
        for (i, word) in text.split_whitespace().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(word);
        }
        match out.char_indices().nth(max_chars) {
            Some((cut, _)) => {
                out.truncate(cut);
                out.push('…');
                out
            }
            None => out,
        }
    }
}

/// The `Retry-After` header of `response` in milliseconds, when it is a number of
/// seconds (`Retry-After: 30`). HTTP-date values are ignored: the host's backoff,
/// which also reads the header, applies then.
pub fn retry_after_ms(response: &HttpResponse) -> Option<u64> {
    let seconds: u64 = response.header("retry-after")?.trim().parse().ok()?;
    Some(seconds.saturating_mul(1000))
}

impl Event {
    /// The message this event is about.
    pub fn inbound(&self) -> &Inbound {
        match self {
            Event::Message(inbound) => inbound,
            Event::Responses(responses) => &responses.inbound,
            Event::Compensate(compensation) => &compensation.inbound,
        }
    }
}

impl Responses {
    /// The result of the request named `id`.
    pub fn result(&self, id: &str) -> Option<&HttpResult> {
        self.results.iter().find(|r| r.id == id)
    }
}

// -------------------------------------------------------------------------------
// The Dataverse context and the message
// -------------------------------------------------------------------------------

/// The `Target` entity of the context (e.g. the created contact), if it is one.
pub fn target(context: &Context) -> Option<&Entity> {
    context.entities.get(context.target? as usize)
}

/// The value of attribute `name` of `entity`.
pub fn attr<'a>(entity: &'a Entity, name: &str) -> Option<&'a Value> {
    entity.attributes.iter().find(|a| a.name == name).map(|a| &a.value)
}

/// The value of attribute `name` when it is text (a string column, or a GUID).
pub fn text_attr<'a>(entity: &'a Entity, name: &str) -> Option<&'a str> {
    match attr(entity, name)? {
        Value::Text(text) | Value::Guid(text) => Some(text),
        _ => None,
    }
}

/// The application property `name` of the message (earlier steps add some with
/// [`forward_with`]).
pub fn property<'a>(inbound: &'a Inbound, name: &str) -> Option<&'a str> {
    inbound
        .properties
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

// -------------------------------------------------------------------------------
// Configuration
// -------------------------------------------------------------------------------

/// The config value `key`, or `default` when it is not set.
pub fn config_or(key: &str, default: &str) -> String {
    config::get(key).unwrap_or_else(|| default.to_string())
}

/// The config value `key`, or an error naming the key. Returned from `handle`
/// with `?`, the error dead-letters the message with reason `ComponentError`.
pub fn require_config(key: &str) -> Result<String, String> {
    config::get(key).ok_or_else(|| format!("config key `{key}` is not set: add it to [partners.<name>.config]"))
}

// -------------------------------------------------------------------------------
// Logging
// -------------------------------------------------------------------------------

/// Logs at debug level. The host tags the line with partner, message and saga.
pub fn debug(message: impl AsRef<str>) {
    log::write(log::Level::Debug, message.as_ref());
}

/// Logs at info level.
pub fn info(message: impl AsRef<str>) {
    log::write(log::Level::Info, message.as_ref());
}

/// Logs at warn level.
pub fn warn(message: impl AsRef<str>) {
    log::write(log::Level::Warn, message.as_ref());
}

/// Logs at error level.
pub fn error(message: impl AsRef<str>) {
    log::write(log::Level::Error, message.as_ref());
}
