//! The client-credentials grant with a client secret against a loopback token endpoint.

use std::time::{Duration, SystemTime};

use sagahost_identity::{ClientCredentials, Error, Secret};

use crate::server::{Reply, Server};

const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const CLIENT_SECRET: &str = "client-secret-value-xyz";
const SCOPE: &str = "https://org.crm.dynamics.com/.default";

fn client(server: &Server) -> (ClientCredentials, String) {
    let url = format!("{}/tenant/oauth2/v2.0/token", server.base);
    (
        ClientCredentials::with_secret(&url, CLIENT_ID, Secret::new(CLIENT_SECRET)),
        url,
    )
}

#[tokio::test]
async fn posts_the_form_and_reads_expires_in_as_a_number_or_a_string() {
    let server = Server::start(|_, n| match n {
        0 => Reply::token("token-0", 3599),
        _ => Reply::json(
            200,
            serde_json::json!({"token_type": "bearer", "access_token": "token-1", "expires_in": "60"}),
        ),
    })
    .await;
    let (credentials, _) = client(&server);

    let token = credentials.token(SCOPE).await.unwrap();
    assert_eq!(token.secret.expose(), "token-0");
    let remaining = token.expires_on.duration_since(SystemTime::now()).unwrap();
    assert!(remaining > Duration::from_secs(3590) && remaining <= Duration::from_secs(3599));

    let token = credentials.token(SCOPE).await.unwrap();
    assert_eq!(token.secret.expose(), "token-1");
    assert!(token.remaining() <= Duration::from_secs(60) && token.remaining() > Duration::from_secs(50));

    let request = &server.requests()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/tenant/oauth2/v2.0/token");
    assert_eq!(request.headers["content-type"], "application/x-www-form-urlencoded");
    assert_eq!(request.form["grant_type"], "client_credentials");
    assert_eq!(request.form["client_id"], CLIENT_ID);
    assert_eq!(request.form["client_secret"], CLIENT_SECRET);
    assert_eq!(request.form["scope"], SCOPE);
    assert_eq!(request.form.len(), 4);
}

#[tokio::test]
async fn an_oauth_error_names_the_endpoint_and_client_but_not_the_secret() {
    let server = Server::start(|_, _| {
        Reply::json(
            401,
            serde_json::json!({
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: abc",
            }),
        )
    })
    .await;
    let (credentials, url) = client(&server);
    let error = credentials.token(SCOPE).await.unwrap_err();
    assert!(!error.is_transient(), "{error:?}");
    let text = error.to_string();
    assert!(text.contains(&url), "{text}");
    assert!(text.contains(CLIENT_ID), "{text}");
    assert!(
        text.contains("invalid_client: AADSTS7000215: Invalid client secret provided."),
        "{text}"
    );
    assert!(!text.contains("Trace ID"), "only the first line is quoted: {text}");
    assert!(text.contains("client secret"), "names the fix: {text}");
    assert!(!text.contains(CLIENT_SECRET) && !format!("{error:?}").contains(CLIENT_SECRET));
}

#[tokio::test]
async fn a_slow_endpoint_is_a_transient_timeout() {
    let server = Server::start(|_, _| Reply::token("late", 3600).after(Duration::from_secs(3))).await;
    let (credentials, url) = client(&server);
    let credentials = credentials.with_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let error = credentials.token(SCOPE).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert!(error.is_transient());
    assert!(error.to_string().contains(&url) && error.to_string().contains("will be retried"));
}

#[tokio::test]
async fn server_errors_throttling_and_garbage_are_transient_and_unreachable_too() {
    let server = Server::start(|_, n| match n {
        0 => Reply::status(503),
        1 => Reply::status(429),
        2 => Reply::json(200, serde_json::json!({"access_token": "no-expiry"})),
        _ => Reply::status(200),
    })
    .await;
    let (credentials, _) = client(&server);
    for expected in ["503", "429", "neither `expires_in`", "not a JSON object"] {
        let error = credentials.token(SCOPE).await.unwrap_err();
        assert!(error.is_transient(), "{error:?}");
        assert!(error.to_string().contains(expected), "{error}");
        assert!(
            !error.to_string().contains("no-expiry"),
            "bodies are never quoted: {error}"
        );
    }

    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let credentials = ClientCredentials::with_secret(format!("http://{closed}/token"), CLIENT_ID, Secret::new("s"));
    let error = credentials.token(SCOPE).await.unwrap_err();
    assert!(matches!(error, Error::Transient { .. }), "{error:?}");
    assert!(error.to_string().contains(&format!("http://{closed}/token")), "{error}");
}

#[tokio::test]
async fn a_proof_of_possession_token_is_refused() {
    let server = Server::start(|_, _| {
        Reply::json(
            200,
            serde_json::json!({"token_type": "pop", "access_token": "t", "expires_in": 60}),
        )
    })
    .await;
    let (credentials, _) = client(&server);
    let error = credentials.token(SCOPE).await.unwrap_err();
    assert!(matches!(error, Error::Rejected { .. }), "{error:?}");
    assert!(error.to_string().contains("`pop`"), "{error}");
}
