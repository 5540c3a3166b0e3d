//! The operator console: a page served from the admin listener, its assets (compiled into the
//! binary, so it works with no CDN or network), and the sign-in that gives it a session.
//!
//! - `GET /console/`: the page; `GET /console/{file}`: its scripts, style and icon.
//! - `GET /console/api/session`: `{"signed-in", "token-required", "csrf"}`.
//! - `POST /console/api/session` with `{"token": …}` (JSON only, so another site's form cannot
//!   send it): signs in and sets the session cookie (`guard.rs`).
//! - `DELETE /console/api/session`: signs out.
//!
//! Every answer of the admin listener carries a strict Content-Security-Policy (no inline
//! script or style, nothing from another origin) and refuses to be framed.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::guard::{COOKIE, DENIED, SESSION_LIFETIME, browser_refusal, csrf_presented, csrf_refused, session_cookie};
use super::{Admin, Shared, error};

/// The page's policy: its own scripts, styles and images, and requests to its own origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// How long a wrong sign-in waits before it is answered, to slow guessing.
const WRONG_TOKEN_PAUSE: Duration = Duration::from_millis(300);

/// A file of the console: its name under `/console/`, content type and content.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    content: &'static str,
}

macro_rules! assets {
    ($($name:literal => $content_type:expr),* $(,)?) => {
        &[$(Asset {
            name: $name,
            content_type: $content_type,
            content: include_str!(concat!("../../console/", $name)),
        }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console (a unit test checks this lists the whole folder).
const ASSETS: &[Asset] = assets! {
    "index.html" => "text/html; charset=utf-8",
    "console.css" => "text/css; charset=utf-8",
    "favicon.svg" => "image/svg+xml",
    "js/api.js" => JS,
    "js/charts.js" => JS,
    "js/dead-letter.js" => JS,
    "js/dead-letters.js" => JS,
    "js/dom.js" => JS,
    "js/format.js" => JS,
    "js/main.js" => JS,
    "js/overview.js" => JS,
    "js/partner-card.js" => JS,
    "js/partners.js" => JS,
    "js/queues.js" => JS,
    "js/sagas.js" => JS,
    "js/signin.js" => JS,
    "js/ui.js" => JS,
};

/// The console's routes (the guard does not apply: signing in is how a browser gets past it).
pub fn routes() -> Router<Arc<Admin>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(|| async { asset("index.html") }))
        .route("/console/api/session", get(session).post(sign_in).delete(sign_out))
        .route(
            "/console/{*file}",
            get(|Path(file): Path<String>| async move { asset(&file) }),
        )
}

fn asset(name: &str) -> Response {
    match ASSETS.iter().find(|asset| asset.name == name) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            asset.content,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such console file\n").into_response(),
    }
}

/// Adds the security headers to every answer of the admin listener.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn session(State(admin): Shared, headers: HeaderMap) -> Response {
    if let Some(refused) = browser_refusal(&admin, &Method::GET, &headers) {
        return refused;
    }
    let csrf = session_cookie(&headers).and_then(|id| admin.sessions.csrf(id));
    Json(json!({
        "signed-in": csrf.is_some(),
        "token-required": admin.token.is_some(),
        "csrf": csrf,
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: String,
}

async fn sign_in(State(admin): Shared, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refused) = browser_refusal(&admin, &Method::POST, &headers) {
        return refused;
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "sign in with a JSON body: {\"token\": \"…\"}",
        );
    }
    let Ok(SignIn { token }) = serde_json::from_slice(&body) else {
        return error(StatusCode::BAD_REQUEST, "sign in with a JSON body: {\"token\": \"…\"}");
    };
    if let Some(expected) = &admin.token
        && !expected.admits(Some(&token))
    {
        tracing::warn!("console sign-in refused: wrong admin token");
        tokio::time::sleep(WRONG_TOKEN_PAUSE).await;
        return error(
            StatusCode::UNAUTHORIZED,
            format!("{DENIED}: use the value of [admin] token"),
        );
    }
    let (id, csrf) = admin.sessions.start();
    // Behind a proxy that ends TLS the cookie must stay on HTTPS.
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    (
        [(header::SET_COOKIE, cookie)],
        Json(json!({ "signed-in": true, "csrf": csrf })),
    )
        .into_response()
}

async fn sign_out(State(admin): Shared, headers: HeaderMap) -> Response {
    if let Some(refused) = browser_refusal(&admin, &Method::DELETE, &headers) {
        return refused;
    }
    if let Some(id) = session_cookie(&headers) {
        let Some(csrf) = admin.sessions.csrf(id) else {
            return error(StatusCode::UNAUTHORIZED, "not signed in");
        };
        if !csrf_presented(&headers, &csrf) {
            return csrf_refused();
        }
        admin.sessions.end(id);
    }
    let expired = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, expired)], Json(json!({ "signed-in": false }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::ASSETS;

    #[test]
    fn every_file_of_the_console_is_served() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        let mut files = Vec::new();
        let mut folders = vec![root.clone()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else {
                    files.push(path.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/"));
                }
            }
        }
        files.sort();
        let mut served: Vec<String> = ASSETS.iter().map(|a| a.name.to_string()).collect();
        served.sort();
        assert_eq!(
            files, served,
            "console/ and ASSETS in console.rs must list the same files"
        );
    }
}
