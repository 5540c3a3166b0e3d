use std::collections::HashMap;

use super::*;

fn oauth2(text: &str) -> OAuth2Source {
    let table: HashMap<String, SecretSource> = toml::from_str(&format!("t = {{ oauth2 = {{ {text} }} }}")).unwrap();
    match table.into_values().next().unwrap() {
        SecretSource::Oauth2(source) => source,
        other => panic!("{other:?}"),
    }
}

fn refused(source: &OAuth2Source) -> String {
    source.token("dataverse").map(drop).unwrap_err().to_string()
}

#[test]
fn an_oauth2_secret_needs_exactly_one_way_to_sign_in_and_says_which() {
    let scope = "scope = \"https://org.crm.dynamics.com/.default\"";
    let none = oauth2(&format!("{scope}, token-url = \"https://login/t\", client-id = \"c\""));
    assert!(refused(&none).contains("exactly one of client-secret, client-certificate or managed-identity"));
    let two = oauth2(&format!(
        "{scope}, token-url = \"https://login/t\", client-id = \"c\", client-secret = {{ env = \"X\" }}, managed-identity = true"
    ));
    assert!(refused(&two).contains("exactly one"), "{}", refused(&two));
    let no_url = oauth2(&format!(
        "{scope}, client-id = \"c\", client-secret = {{ env = \"X\" }}"
    ));
    assert!(refused(&no_url).contains("needs token-url and client-id"));

    let missing = format!("SAGAHOST_CREDENTIALS_TEST_MISSING_{}", std::process::id());
    let unreadable = oauth2(&format!(
        "{scope}, token-url = \"https://login/t\", client-id = \"c\", client-secret = {{ env = \"{missing}\" }}"
    ));
    let error = refused(&unreadable);
    assert!(
        error.contains("secret `dataverse`: client-secret") && error.contains(&missing),
        "{error}"
    );

    let certificate = oauth2(&format!(
        "{scope}, token-url = \"https://login/t\", client-id = \"c\", client-certificate = \"/nonexistent/app.pem\""
    ));
    assert!(
        refused(&certificate).contains("client-certificate"),
        "{}",
        refused(&certificate)
    );

    let managed = oauth2(&format!("{scope}, managed-identity = true"));
    assert_eq!(
        managed.token("dataverse").unwrap().scope(),
        "https://org.crm.dynamics.com/.default"
    );
}

#[test]
fn the_host_identity_names_what_its_credential_lacks() {
    let identity: IdentityConfig = toml::from_str("credential = \"client-secret\"\nclient-id = \"c\"").unwrap();
    let error = identity.token_source().map(drop).unwrap_err().to_string();
    assert!(error.contains("needs tenant-id and client-id"), "{error}");
    let identity: IdentityConfig =
        toml::from_str("credential = \"client-secret\"\nclient-id = \"c\"\ntenant-id = \"t\"").unwrap();
    let error = identity.token_source().map(drop).unwrap_err().to_string();
    assert!(error.contains("needs client-secret"), "{error}");
    assert!(toml::from_str::<IdentityConfig>("credential = \"password\"").is_err());
    assert_eq!(IdentityConfig::default().credential, CredentialKind::ManagedIdentity);
    IdentityConfig::default()
        .token_source()
        .expect("managed identity needs nothing configured");
}
