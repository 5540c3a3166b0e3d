//! Managed identity against loopback IMDS and App Service endpoints.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sagahost_identity::{Error, ManagedIdentity, Secret};

use crate::server::{Reply, Server};

const SCOPE: &str = "https://vault.azure.net/.default";

#[tokio::test]
async fn imds_gets_a_token_for_the_resource_with_the_metadata_header() {
    // IMDS sends every number as a string.
    let server = Server::start(|_, _| {
        Reply::json(
            200,
            serde_json::json!({
                "access_token": "imds-token", "expires_in": "86399", "expires_on": "1700000000",
                "resource": "https://vault.azure.net", "token_type": "Bearer",
            }),
        )
    })
    .await;
    let system = ManagedIdentity::imds(&server.base, None);
    let token = system.token(SCOPE).await.unwrap();
    assert_eq!(token.secret.expose(), "imds-token");
    assert!(
        token.remaining() > Duration::from_secs(86000),
        "expires_in wins over expires_on"
    );

    let user = ManagedIdentity::imds(format!("{}/", server.base), Some("user-assigned-id".into()));
    user.token("https://storage.azure.com").await.unwrap();

    let requests = server.requests();
    let first = &requests[0];
    assert_eq!(first.method, "GET");
    assert_eq!(first.path, "/metadata/identity/oauth2/token");
    assert_eq!(first.headers["metadata"], "true");
    assert_eq!(first.query["api-version"], "2018-02-01");
    assert_eq!(first.query["resource"], "https://vault.azure.net");
    assert!(!first.query.contains_key("client_id"));
    assert_eq!(requests[1].query["client_id"], "user-assigned-id");
    assert_eq!(requests[1].query["resource"], "https://storage.azure.com");
}

#[tokio::test]
async fn imds_errors_name_the_identity_and_updates_are_transient() {
    let server = Server::start(|_, n| match n {
        0 => Reply::json(
            400,
            serde_json::json!({"error": "invalid_request", "error_description": "Identity not found"}),
        ),
        _ => Reply::status(410),
    })
    .await;
    let identity = ManagedIdentity::imds(&server.base, Some("missing-id".into()));
    let error = identity.token(SCOPE).await.unwrap_err();
    assert!(matches!(error, Error::Rejected { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("Identity not found") && text.contains("`missing-id`"),
        "{text}"
    );
    assert!(text.contains("IMDS") && text.contains(&server.base), "{text}");

    let error = identity.token(SCOPE).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
}

#[tokio::test]
async fn app_service_sends_the_identity_header_and_reads_expires_on() {
    let expires_on = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3600;
    let server = Server::start(move |_, _| {
        Reply::json(
            200,
            serde_json::json!({
                "access_token": "app-service-token", "expires_on": expires_on.to_string(),
                "resource": "https://vault.azure.net", "token_type": "Bearer",
            }),
        )
    })
    .await;
    let endpoint = format!("{}/msi/token", server.base);
    let vars = |name: &str| match name {
        "IDENTITY_ENDPOINT" => Some(endpoint.clone()),
        "IDENTITY_HEADER" => Some("identity-header-value".to_string()),
        _ => None,
    };
    let identity = ManagedIdentity::from_vars(vars, Some("client-a".into()));
    assert!(!format!("{identity:?}").contains("identity-header-value"));
    let token = identity.token(SCOPE).await.unwrap();
    assert_eq!(token.secret.expose(), "app-service-token");
    let remaining = token.remaining().as_secs();
    assert!((3590..=3600).contains(&remaining), "{remaining}");

    let request = &server.requests()[0];
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/msi/token");
    assert_eq!(request.headers["x-identity-header"], "identity-header-value");
    assert!(!request.headers.contains_key("metadata"));
    assert_eq!(request.query["api-version"], "2019-08-01");
    assert_eq!(request.query["resource"], "https://vault.azure.net");
    assert_eq!(request.query["client_id"], "client-a");

    // A wrong header is refused, and the message does not repeat it.
    let rejecting = Server::start(|_, _| Reply::status(401)).await;
    let identity = ManagedIdentity::app_service(&rejecting.base, Secret::new("wrong-header"), None);
    let error = identity.token(SCOPE).await.unwrap_err();
    assert!(matches!(error, Error::Rejected { .. }) && !format!("{error}{error:?}").contains("wrong-header"));
}

#[tokio::test]
async fn without_app_service_variables_the_environment_means_imds() {
    let server = Server::start(|_, _| Reply::token("via-pod-identity-host", 3600)).await;
    let base = server.base.clone();
    let vars = move |name: &str| (name == "AZURE_POD_IDENTITY_AUTHORITY_HOST").then(|| base.clone());
    let identity = ManagedIdentity::from_vars(vars, None);
    assert_eq!(
        identity.token(SCOPE).await.unwrap().secret.expose(),
        "via-pod-identity-host"
    );
    assert_eq!(server.requests()[0].headers["metadata"], "true");

    let default = ManagedIdentity::from_vars(|_| None, None);
    assert!(
        format!("{default:?}").contains("IMDS http://169.254.169.254"),
        "{default:?}"
    );
}
