//! Who may use the admin API, and from where: the bearer token for scripts, a signed-in
//! session for the console, and the checks that keep a browser from being turned against it.
//!
//! - **A script** sends `Authorization: Bearer <token>`. A browser never attaches that header
//!   to a request another site makes, so such a request needs no more checks.
//! - **The console** signs in once with the token (`POST /console/api/session`) and gets an
//!   `HttpOnly`, `SameSite=Strict` session cookie; the token is never stored in the browser.
//!   Every state-changing request must also carry the session's CSRF token in
//!   `X-CSRF-Token`, which only a page of the console's own origin can read.
//! - **Every browser request that changes state** is refused when it says it comes from
//!   another origin (`Sec-Fetch-Site`, or an `Origin` that is not the `Host`).
//! - **Without a configured token** (allowed on a loopback address only) the `Host` must be a
//!   loopback name or address: a page that re-points its own DNS name at 127.0.0.1 (DNS
//!   rebinding) sends its own name, and is refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq as _;

use super::{Admin, error};

/// The console's session cookie.
pub const COOKIE: &str = "sagahost-console";
/// The header that carries the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a console session lasts from sign-in.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Most sessions held at once; the oldest goes first.
const MAX_SESSIONS: usize = 1024;

/// What a request without the configured token is told.
pub const DENIED: &str = "missing or wrong admin token";

/// One signed-in console.
#[derive(Clone)]
struct Session {
    csrf: String,
    started: Instant,
}

/// The console's sessions, in memory: a restart signs every console out.
#[derive(Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
}

/// A new random identifier, hex, 256 bits.
fn random_id() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    /// Starts a session; returns its id (the cookie) and its CSRF token.
    pub fn start(&self) -> (String, String) {
        let (id, csrf) = (random_id(), random_id());
        let mut sessions = self.sessions.lock().expect("sessions lock");
        sessions.retain(|_, session| session.started.elapsed() < SESSION_LIFETIME);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.started).map(|(id, _)| id.clone())
        {
            sessions.remove(&oldest);
        }
        let session = Session {
            csrf: csrf.clone(),
            started: Instant::now(),
        };
        sessions.insert(id.clone(), session);
        (id, csrf)
    }

    /// The CSRF token of the live session `id`, if there is one.
    pub fn csrf(&self, id: &str) -> Option<String> {
        let sessions = self.sessions.lock().expect("sessions lock");
        sessions
            .get(id)
            .filter(|session| session.started.elapsed() < SESSION_LIFETIME)
            .map(|session| session.csrf.clone())
    }

    /// Ends the session `id`.
    pub fn end(&self, id: &str) {
        self.sessions.lock().expect("sessions lock").remove(id);
    }
}

/// The session id the request's cookie names, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// The bearer token the request presents, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Whether `method` may change state.
fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The host part of a `Host` header value (`name`, `name:port`, `[v6]:port`).
fn host_name(value: &str) -> &str {
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    value.rsplit_once(':').map_or(value, |(host, _)| host)
}

/// Whether `host` names this machine's loopback interface.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Why a browser request is refused before its credentials are looked at, if it is.
///
/// Run for every `/admin` and `/console/api` request that does not carry the bearer token.
pub fn browser_refusal(admin: &Admin, method: &Method, headers: &HeaderMap) -> Option<Response> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if admin.token.is_none() && !is_loopback(host_name(host)) {
        return Some(error(
            StatusCode::FORBIDDEN,
            format!(
                "the admin endpoint has no token, so it answers only to localhost names, not `{host}`; \
                 set [admin] token to reach it by another name"
            ),
        ));
    }
    if changes_state(method) && cross_origin(headers, host) {
        return Some(error(
            StatusCode::FORBIDDEN,
            "a request from another site may not change anything here",
        ));
    }
    None
}

/// Whether the browser says the request comes from a page of another origin.
fn cross_origin(headers: &HeaderMap, host: &str) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    match text("origin") {
        None => false,
        Some(origin) => origin
            .split_once("://")
            .is_none_or(|(_, authority)| !authority.eq_ignore_ascii_case(host)),
    }
}

/// Whether the request carries `csrf` in [`CSRF_HEADER`], compared in constant time.
pub fn csrf_presented(headers: &HeaderMap, csrf: &str) -> bool {
    let presented = headers.get(CSRF_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
    bool::from(presented.ct_eq(csrf.as_bytes()))
}

/// The answer to a session's state-changing request without its CSRF token.
pub fn csrf_refused() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "missing or wrong X-CSRF-Token: reload the console page",
    )
}

/// Admits or refuses an `/admin` request (see the module doc).
pub async fn guard(State(admin): State<Arc<Admin>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if let (Some(token), Some(presented)) = (&admin.token, bearer(headers)) {
        if token.admits(Some(presented)) {
            return next.run(request).await;
        }
        return (StatusCode::UNAUTHORIZED, format!("{DENIED}\n")).into_response();
    }
    if let Some(refused) = browser_refusal(&admin, request.method(), headers) {
        return refused;
    }
    let csrf = session_cookie(headers).and_then(|id| admin.sessions.csrf(id));
    match csrf {
        Some(csrf) if changes_state(request.method()) && !csrf_presented(headers, &csrf) => {
            return csrf_refused();
        }
        Some(_) => {}
        None if admin.token.is_some() => {
            return (StatusCode::UNAUTHORIZED, format!("{DENIED}\n")).into_response();
        }
        // No token configured and no session: a script on this machine.
        None => {}
    }
    next.run(request).await
}

#[cfg(test)]
mod tests;
