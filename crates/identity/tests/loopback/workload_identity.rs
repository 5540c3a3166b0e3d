//! AKS workload identity: the federated token file exchanged at the authority host.

use sagahost_identity::{ClientCredentials, Error};

use crate::server::{Reply, Server};

#[tokio::test]
async fn the_federated_token_is_read_again_for_each_exchange() {
    let server =
        Server::start(|request, _| Reply::token(&format!("for-{}", request.form["client_assertion"]), 3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    std::fs::write(&file, "federated-jwt-1\n").unwrap();
    let base = server.base.clone();
    let path = file.to_str().unwrap().to_string();
    let vars = move |name: &str| match name {
        "AZURE_CLIENT_ID" => Some("workload-client".to_string()),
        "AZURE_TENANT_ID" => Some("tenant-t".to_string()),
        "AZURE_FEDERATED_TOKEN_FILE" => Some(path.clone()),
        "AZURE_AUTHORITY_HOST" => Some(format!("{base}/")),
        _ => None,
    };
    let credentials = ClientCredentials::workload_identity_from_vars(vars).unwrap();
    assert_eq!(credentials.client_id(), "workload-client");

    let token = credentials
        .token("https://servicebus.azure.net/.default")
        .await
        .unwrap();
    assert_eq!(token.secret.expose(), "for-federated-jwt-1");
    // The kubelet rotates the file.
    std::fs::write(&file, "federated-jwt-2").unwrap();
    let token = credentials
        .token("https://servicebus.azure.net/.default")
        .await
        .unwrap();
    assert_eq!(token.secret.expose(), "for-federated-jwt-2");

    let request = &server.requests()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/tenant-t/oauth2/v2.0/token");
    assert_eq!(request.form["grant_type"], "client_credentials");
    assert_eq!(request.form["client_id"], "workload-client");
    assert_eq!(request.form["scope"], "https://servicebus.azure.net/.default");
    assert_eq!(
        request.form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert!(!request.form.contains_key("client_secret"));

    // A missing file is a configuration error naming the file.
    std::fs::remove_file(&file).unwrap();
    let error = credentials
        .token("https://servicebus.azure.net/.default")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Config { .. }), "{error:?}");
    assert!(error.to_string().contains("azure-identity-token"), "{error}");
}

#[test]
fn missing_variables_name_the_variable_and_the_fix() {
    let error = ClientCredentials::workload_identity_from_vars(|name| {
        (name == "AZURE_CLIENT_ID").then(|| "client".to_string())
    })
    .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("`AZURE_TENANT_ID`") && text.contains("azure.workload.identity/use"),
        "{text}"
    );
}

#[tokio::test]
async fn the_default_authority_is_the_public_cloud() {
    let credentials = ClientCredentials::workload_identity_from_vars(|name| match name {
        "AZURE_CLIENT_ID" | "AZURE_TENANT_ID" | "AZURE_FEDERATED_TOKEN_FILE" => Some(format!("{name}-value")),
        _ => None,
    })
    .unwrap();
    let debug = format!("{credentials:?}");
    assert!(
        debug.contains("https://login.microsoftonline.com/AZURE_TENANT_ID-value/oauth2/v2.0/token"),
        "{debug}"
    );
}
