use super::*;

#[test]
fn bearer_challenges_parse_in_both_spellings() {
    let params = bearer_params(
        r#"Bearer authorization="https://login.microsoftonline.com/t", resource="https://vault.azure.net""#,
    )
    .unwrap();
    assert_eq!(params["authorization"], "https://login.microsoftonline.com/t");
    assert_eq!(params["resource"], "https://vault.azure.net");

    let params =
        bearer_params(r#"bearer Authorization_URI="https://x/t",Scope="https://vault.azure.net/.default""#).unwrap();
    assert_eq!(params["scope"], "https://vault.azure.net/.default");
    assert!(bearer_params(r#"Basic realm="vault""#).is_none());
    assert!(bearer_params("Bearer").is_none());
}

#[test]
fn a_challenge_resource_must_be_the_vaults_domain() {
    let vault = "https://contoso.vault.azure.net";
    assert!(resource_matches_vault("https://vault.azure.net/.default", vault));
    assert!(resource_matches_vault("https://VAULT.azure.net", vault));
    assert!(resource_matches_vault(
        "https://vault.usgovcloudapi.net/.default",
        "https://x.vault.usgovcloudapi.net"
    ));
    assert!(!resource_matches_vault("https://management.azure.com/.default", vault));
    assert!(!resource_matches_vault(
        "https://evilvault.azure.net/.default",
        "https://contoso.vault.azure.net"
    ));
    assert!(!resource_matches_vault(
        "https://ault.azure.net/.default",
        "https://contoso.vault.azure.net"
    ));
    assert!(!resource_matches_vault("not a url", vault));
}
