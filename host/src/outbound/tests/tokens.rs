//! `oauth2` secrets end to end over loopback: a token endpoint that issues numbered tokens and an
//! API that checks them. One token request serves many waiting requests, a 401 makes one refresh
//! and one repeat, and a token endpoint that fails is a connection failure naming the secret,
//! never a value.

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get as get_route, post};

use super::*;

/// Token requests answered so far; each token is `token-<n>`.
#[derive(Clone, Default)]
struct Issuer {
    issued: Arc<AtomicUsize>,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

async fn issue(State(issuer): State<Issuer>, body: String) -> (StatusCode, String) {
    assert!(body.contains("grant_type=client_credentials"), "{body}");
    assert!(body.contains("client_secret=the-client-secret"), "{body}");
    if issuer.failing.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"error\":\"temporarily_unavailable\"}".into(),
        );
    }
    // Slow enough that concurrent callers all wait on this one request.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let n = issuer.issued.fetch_add(1, Ordering::SeqCst) + 1;
    (
        StatusCode::OK,
        format!("{{\"access_token\":\"token-{n}\",\"token_type\":\"Bearer\",\"expires_in\":3600}}"),
    )
}

/// An API that accepts tokens numbered `accepted_from` and later, and records what it saw.
#[derive(Clone)]
struct Api {
    accepted_from: usize,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn answer(State(api): State<Api>, headers: HeaderMap) -> StatusCode {
    let bearer = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    api.seen.lock().unwrap().push(bearer.clone());
    let number: usize = bearer
        .strip_prefix("Bearer token-")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if number >= api.accepted_from {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    }
}

async fn serve(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    origin
}

struct Setup {
    issuer: Issuer,
    api: Api,
    api_origin: String,
    http: HttpOutbound,
}

async fn setup(accepted_from: usize) -> Setup {
    let issuer = Issuer::default();
    let token_origin = serve(Router::new().route("/token", post(issue)).with_state(issuer.clone())).await;
    let api = Api {
        accepted_from,
        seen: Arc::default(),
    };
    let api_origin = serve(Router::new().route("/api", get_route(answer)).with_state(api.clone())).await;
    let var = unique_env_var("CLIENT_SECRET");
    // SAFETY: the variable name is unique to this test.
    unsafe { std::env::set_var(&var, "the-client-secret") };
    let source = SecretSource::Oauth2(OAuth2Source {
        scope: "https://org.crm.dynamics.com/.default".into(),
        token_url: Some(format!("{token_origin}/token")),
        client_id: Some("client-1".into()),
        client_secret: Some(Box::new(SecretSource::Env(var))),
        client_certificate: None,
        managed_identity: false,
    });
    let secrets = ConfigSecrets::load(
        HashMap::from([(PARTNER.to_string(), HashMap::from([("dataverse".to_string(), source)]))]),
        &IdentityConfig::default(),
    )
    .await
    .unwrap();
    let http = outbound(vec![(PARTNER, policy(std::slice::from_ref(&api_origin)))], secrets);
    Setup {
        issuer,
        api,
        api_origin,
        http,
    }
}

fn with_token(id: &str, url: &str) -> wit::HttpRequest {
    wit::HttpRequest {
        headers: vec![header(
            "Authorization",
            wit::HeaderValue::SecretTemplate(wit::SecretTemplate {
                template: "Bearer {}".into(),
                secret: "dataverse".into(),
            }),
        )],
        ..get(id, url)
    }
}

#[tokio::test]
async fn a_hundred_requests_waiting_on_a_token_make_one_token_request() {
    let setup = setup(1).await;
    let url = format!("{}/api", setup.api_origin);
    let requests: Vec<wit::HttpRequest> = (0..100).map(|n| with_token(&format!("r{n}"), &url)).collect();
    let results = setup.http.for_message(ctx()).execute(PARTNER, &requests).await;
    assert!(results.iter().all(|result| response(result).status == 200));
    assert_eq!(setup.issuer.issued.load(Ordering::SeqCst), 1);
    assert!(
        setup
            .api
            .seen
            .lock()
            .unwrap()
            .iter()
            .all(|seen| seen == "Bearer token-1")
    );

    // Cached: the next round asks for no token.
    let again = setup
        .http
        .for_message(ctx())
        .execute(PARTNER, &[with_token("r", &url)])
        .await;
    assert_eq!(response(&again[0]).status, 200);
    assert_eq!(setup.issuer.issued.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_repeats_the_request_once() {
    // The first token was revoked: the API takes the second.
    let setup = setup(2).await;
    let url = format!("{}/api", setup.api_origin);
    let requests: Vec<wit::HttpRequest> = (0..20).map(|n| with_token(&format!("r{n}"), &url)).collect();
    let results = setup.http.for_message(ctx()).execute(PARTNER, &requests).await;
    assert!(results.iter().all(|result| response(result).status == 200));
    assert_eq!(
        setup.issuer.issued.load(Ordering::SeqCst),
        2,
        "twenty 401s to one token make one refresh"
    );

    // An API that never accepts: one repeat, then its 401 goes back to the component.
    let setup = setup_never().await;
    let url = format!("{}/api", setup.api_origin);
    let results = setup
        .http
        .for_message(ctx())
        .execute(PARTNER, &[with_token("r", &url)])
        .await;
    assert_eq!(response(&results[0]).status, 401);
    assert_eq!(
        setup.api.seen.lock().unwrap().len(),
        2,
        "one request and one repeat, no loop"
    );
    assert_eq!(setup.issuer.issued.load(Ordering::SeqCst), 2);
}

async fn setup_never() -> Setup {
    setup(usize::MAX).await
}

#[tokio::test]
async fn a_failing_token_endpoint_is_a_connection_failure_that_names_the_secret_and_no_value() {
    let (logs, _guard) = CapturedLogs::install();
    let setup = setup(1).await;
    setup.issuer.failing.store(true, Ordering::SeqCst);
    let url = format!("{}/api", setup.api_origin);
    let results = setup
        .http
        .for_message(ctx())
        .execute(PARTNER, &[with_token("r", &url)])
        .await;
    let wit::HttpError::Connection(reason) = error(&results[0]) else {
        panic!("expected a connection failure, got {:?}", results[0].response);
    };
    assert!(reason.contains("secret `dataverse`"), "{reason}");
    assert!(!reason.contains("the-client-secret"), "{reason}");
    assert!(setup.api.seen.lock().unwrap().is_empty(), "no request without a token");

    // Once the endpoint is back, the next try works.
    setup.issuer.failing.store(false, Ordering::SeqCst);
    let results = setup
        .http
        .for_message(ctx())
        .execute(PARTNER, &[with_token("r", &url)])
        .await;
    assert_eq!(response(&results[0]).status, 200);
    let logged = logs.text();
    assert!(
        !logged.contains("the-client-secret") && !logged.contains("token-1"),
        "{logged}"
    );
}
