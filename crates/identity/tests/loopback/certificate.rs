//! The client-credentials grant with a certificate: the client assertion is checked with
//! the public key and thumbprints that OpenSSL derived from the test-only key pair in
//! `tests/material/` (never used anywhere else).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use sagahost_identity::{ClientCertificate, ClientCredentials, Error};
use serde_json::Value;

use crate::server::{Reply, Server};

const KEY: &str = include_str!("../material/test-only-client.key.pem");
const CERT: &str = include_str!("../material/test-only-client.cert.pem");
/// `openssl rsa -RSAPublicKey_out` of the key.
const PUBLIC_KEY: &str = include_str!("../material/test-only-client.rsa-public.pem");
/// `openssl x509 -fingerprint -sha1` and `-sha256` of the certificate.
const SHA1: &str = "36ACF5CE8D574E4A5D7B3EA28E6B3841E511C7B7";
const SHA256: &str = "642F64835FCEA23D8EBD1AC75A2566AE69D6153B2D12B0FF1E6DE43C489893EB";

fn certificate() -> ClientCertificate {
    // The certificate and the key may come in either order in one PEM.
    ClientCertificate::from_pem(format!("{KEY}{CERT}").as_bytes()).unwrap()
}

fn hex_to_base64url(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn json_part(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test]
async fn the_assertion_is_an_rs256_jwt_for_the_token_url_signed_by_the_key() {
    let server = Server::start(|_, _| Reply::token("certificate-token", 3600)).await;
    let url = format!("{}/tenant/oauth2/v2.0/token", server.base);
    let credentials = ClientCredentials::with_certificate(&url, "cert-client", certificate());
    let token = credentials
        .token("https://org.crm.dynamics.com/.default")
        .await
        .unwrap();
    assert_eq!(token.secret.expose(), "certificate-token");
    credentials
        .token("https://org.crm.dynamics.com/.default")
        .await
        .unwrap();

    let requests = server.requests();
    let form = &requests[0].form;
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], "cert-client");
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert!(!form.contains_key("client_secret"));

    let assertion = &form["client_assertion"];
    let parts: Vec<&str> = assertion.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header = json_part(parts[0]);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["x5t"], hex_to_base64url(SHA1));
    assert_eq!(header["x5t#S256"], hex_to_base64url(SHA256));

    let claims = json_part(parts[1]);
    assert_eq!(claims["aud"], url.as_str());
    assert_eq!(claims["iss"], "cert-client");
    assert_eq!(claims["sub"], "cert-client");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let nbf = claims["nbf"].as_u64().unwrap();
    let exp = claims["exp"].as_u64().unwrap();
    assert!(nbf <= now && now - nbf < 60, "nbf {nbf}, now {now}");
    assert_eq!(exp - nbf, 600);
    let second = json_part(requests[1].form["client_assertion"].split('.').nth(1).unwrap());
    assert_ne!(claims["jti"], second["jti"], "each assertion has its own id");

    let public_key: String = PUBLIC_KEY.lines().filter(|line| !line.starts_with("-----")).collect();
    let public_key = STANDARD.decode(public_key).unwrap();
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key)
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .expect("the signature verifies with the certificate's public key");
}

#[test]
fn the_thumbprint_is_the_portals_and_debug_shows_nothing_else() {
    let certificate = certificate();
    assert_eq!(certificate.thumbprint(), SHA1);
    let debug = format!("{certificate:?}");
    assert!(debug.contains(SHA1) && !debug.contains("MII"), "{debug}");
}

#[test]
fn unusable_pem_is_a_configuration_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let only_cert = dir.path().join("only-cert.pem");
    std::fs::write(&only_cert, CERT).unwrap();
    let error = ClientCertificate::from_pem_file(&only_cert).unwrap_err();
    assert!(matches!(error, Error::Config { .. }));
    let text = error.to_string();
    assert!(
        text.contains("only-cert.pem") && text.contains("no PRIVATE KEY"),
        "{text}"
    );

    let error = ClientCertificate::from_pem(KEY.as_bytes()).unwrap_err();
    assert!(error.to_string().contains("no CERTIFICATE"), "{error}");
    let error = ClientCertificate::from_pem_file(&dir.path().join("absent.pem")).unwrap_err();
    assert!(error.to_string().contains("absent.pem"), "{error}");
}
