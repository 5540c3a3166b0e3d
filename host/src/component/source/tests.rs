use super::oci::{Pulled, check_digest, wasm_layer};
use super::*;

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn oci_references_name_a_registry_and_a_tag_or_a_digest() {
    let tag = ComponentSource::parse("oci://127.0.0.1:5000/sagahost/mdm:1.4").unwrap();
    let ComponentSource::Oci(reference) = &tag else {
        panic!("{tag:?}")
    };
    assert_eq!(reference.registry(), "127.0.0.1:5000");
    assert_eq!(reference.tag(), Some("1.4"));
    assert!(tag.is_polled());
    assert_eq!(tag.to_string(), "oci://127.0.0.1:5000/sagahost/mdm:1.4");

    let pinned = ComponentSource::parse(&format!("oci://ghcr.io/contoso/mdm@{DIGEST}")).unwrap();
    assert!(!pinned.is_polled());
    assert_eq!(pinned.to_string(), format!("oci://ghcr.io/contoso/mdm@{DIGEST}"));
    let ComponentSource::Oci(reference) = &pinned else {
        panic!()
    };
    assert_eq!(reference.digest(), Some(DIGEST));
    assert_eq!(
        reference.at_digest(DIGEST).to_string(),
        format!("oci://ghcr.io/contoso/mdm@{DIGEST}")
    );
    assert!(
        !ComponentSource::parse(&format!("oci://localhost:5000/mdm:1.4@{DIGEST}"))
            .unwrap()
            .is_polled(),
        "a digest pins even with a tag"
    );

    let sha512 = format!("oci://ghcr.io/contoso/mdm@sha512:{}", "ab".repeat(64));
    let cases = [
        ("oci://mdm:1.4", "names no registry"),
        ("oci://ghcr.io/contoso/mdm", "neither a tag nor a digest"),
        ("oci://ghcr.io/contoso/mdm@sha256:abc", "invalid reference"),
        (sha512.as_str(), "must be sha256"),
        ("ftp://example.com/mdm.wasm", "unknown scheme"),
    ];
    for (text, expected) in cases {
        let err = format!("{:#}", ComponentSource::parse(text).unwrap_err());
        assert!(err.contains(expected) && err.contains(text), "{text}: {err}");
    }
}

#[test]
fn https_needs_a_sha256_and_plain_http_is_loopback_only() {
    let sha = "ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789";
    let source = ComponentSource::parse("https://downloads.example.com/mdm.wasm").unwrap();
    let missing = format!("{:#}", source.check().unwrap_err());
    assert!(missing.contains("component-sha256"), "{missing}");
    let pinned = source.clone().pinned(Some(sha)).unwrap();
    pinned.check().unwrap();
    let ComponentSource::Https(https) = &pinned else {
        panic!()
    };
    assert_eq!(https.sha256().unwrap(), sha.to_ascii_lowercase(), "kept lowercase");
    assert!(source.clone().pinned(Some("abc")).is_err());

    let refused = format!(
        "{:#}",
        ComponentSource::parse("http://downloads.example.com/mdm.wasm").unwrap_err()
    );
    assert!(refused.contains("plain http:// is refused"), "{refused}");
    for loopback in [
        "http://127.0.0.1:8080/mdm.wasm",
        "http://localhost/mdm.wasm",
        "http://[::1]:80/m.wasm",
    ] {
        ComponentSource::parse(loopback).unwrap();
    }

    let oci = ComponentSource::parse("oci://ghcr.io/contoso/mdm:1").unwrap();
    assert!(format!("{:#}", oci.pinned(Some(sha)).unwrap_err()).contains("@sha256"));
    let file = ComponentSource::parse("mdm.wasm").unwrap();
    assert!(file.clone().pinned(Some(sha)).is_err());
    let mut resolved = file;
    resolved.resolve(Path::new("/etc/sagahost"));
    assert_eq!(resolved.file(), Some(Path::new("/etc/sagahost/mdm.wasm")));
}

#[test]
fn a_source_is_written_as_the_text_it_is_read_from() {
    for text in [
        "oci://ghcr.io/contoso/mdm:1.4".to_string(),
        format!("oci://ghcr.io/contoso/mdm@{DIGEST}"),
        "https://downloads.example.com/mdm.wasm".to_string(),
        "/etc/sagahost/mdm.wasm".to_string(),
    ] {
        let source = ComponentSource::parse(&text).unwrap();
        let json = serde_json::to_string(&source).unwrap();
        assert_eq!(json, serde_json::to_string(&text).unwrap());
        assert_eq!(serde_json::from_str::<ComponentSource>(&json).unwrap(), source);
    }
}

#[test]
fn loopback_is_this_machine_only() {
    for host in ["localhost", "127.0.0.1", "127.1.2.3", "[::1]", "::1"] {
        assert!(is_loopback(host), "{host}");
    }
    for host in ["ghcr.io", "10.0.0.1", "localhost.example.com", "0.0.0.0"] {
        assert!(!is_loopback(host), "{host}");
    }
}

fn manifest(config_type: &str, layers: &[(&str, i64)]) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|(media_type, size)| serde_json::json!({ "mediaType": media_type, "digest": DIGEST, "size": size }))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": config_type, "digest": DIGEST, "size": 2 },
        "layers": layers,
    }))
    .unwrap()
}

#[test]
fn only_a_wasm_artifact_with_one_wasm_layer_is_accepted() {
    let config = oci::WASM_CONFIG_MEDIA_TYPE;
    let layer = wasm_layer(&manifest(config, &[("application/wasm", 10)])).unwrap();
    assert_eq!(layer.digest, DIGEST);

    let cases = [
        (
            manifest("application/vnd.oci.image.config.v1+json", &[("application/wasm", 10)]),
            "not a wasm component artifact",
        ),
        (manifest(config, &[]), "has 0"),
        (
            manifest(config, &[("application/wasm", 10), ("application/wasm", 10)]),
            "has 2",
        ),
        (
            manifest(config, &[("application/vnd.oci.image.layer.v1.tar+gzip", 10)]),
            "media type",
        ),
        (
            manifest(config, &[("application/wasm", MAX_COMPONENT_BYTES as i64 + 1)]),
            "more than",
        ),
    ];
    for (body, expected) in cases {
        let err = format!("{:#}", wasm_layer(&body).unwrap_err());
        assert!(err.contains(expected), "{expected}: {err}");
    }
    let mismatch = check_digest("the manifest", DIGEST, "sha256:00")
        .unwrap_err()
        .to_string();
    assert!(
        mismatch.contains(DIGEST) && mismatch.contains("sha256:00"),
        "{mismatch}"
    );
}

#[test]
fn the_store_keeps_blobs_by_digest_and_what_references_resolved_to() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().to_path_buf());
    let wasm = b"\0asm component".to_vec();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&wasm));
    assert!(store.blob(&sha).is_none());
    store.put_blob(&sha, &wasm).unwrap();
    assert_eq!(store.blob(&sha).unwrap(), wasm);

    let tag = OciReference::parse("127.0.0.1:5000/mdm:v1").unwrap();
    let pulled = Pulled {
        manifest_digest: DIGEST.into(),
        layer_digest: format!("sha256:{sha}"),
        wasm: wasm.clone(),
    };
    store.record(&tag, &pulled, SystemTime::now()).unwrap();
    for reference in [&tag, &tag.at_digest(DIGEST)] {
        let (record, cached) = store.resolved(reference).expect("recorded");
        assert_eq!(
            (record.manifest_digest.as_str(), cached.as_slice()),
            (DIGEST, wasm.as_slice())
        );
    }
    assert!(
        store
            .resolved(&OciReference::parse("127.0.0.1:5000/mdm:v2").unwrap())
            .is_none()
    );

    // A damaged copy is not used.
    std::fs::write(dir.path().join("blobs").join(format!("{sha}.wasm")), b"tampered").unwrap();
    assert!(store.blob(&sha).is_none());
    assert!(store.resolved(&tag).is_none());
}

#[test]
fn registry_credentials_are_a_token_or_a_user_and_password() {
    let parse = |text: &str| toml::from_str::<RegistryConfig>(text).unwrap().check("ghcr.io");
    parse("username = \"bot\"\npassword = { env = \"P\" }").unwrap();
    parse("token = { file = \"/run/secrets/t\" }").unwrap();
    parse("").unwrap();
    let half = parse("username = \"bot\"").unwrap_err().to_string();
    assert!(
        half.contains("registries.\"ghcr.io\"") && half.contains("go together"),
        "{half}"
    );
    assert!(parse("username = \"bot\"\npassword = { env = \"P\" }\ntoken = { env = \"T\" }").is_err());
}

#[tokio::test]
async fn credentials_are_read_on_every_pull_as_basic_or_bearer() {
    let var = format!("SAGAHOST_SOURCE_TEST_REGISTRY_{}", std::process::id());
    // SAFETY: the variable's name is unique to this test and this process.
    unsafe { std::env::set_var(&var, "first") };
    let registries: BTreeMap<String, RegistryConfig> = toml::from_str(&format!(
        "\"basic.example:5000\" = {{ username = \"bot\", password = {{ env = \"{var}\" }} }}\n\
         \"bearer.example\" = {{ token = {{ env = \"{var}\" }} }}\n"
    ))
    .unwrap();
    let credentials = Credentials::load(&registries, &IdentityConfig::default())
        .await
        .unwrap();
    assert_eq!(
        credentials.auth("basic.example:5000").await.unwrap(),
        RegistryAuth::Basic("bot".into(), "first".into())
    );
    unsafe { std::env::set_var(&var, "rotated") };
    assert_eq!(
        credentials.auth("bearer.example").await.unwrap(),
        RegistryAuth::Bearer("rotated".into())
    );
    assert_eq!(credentials.auth("ghcr.io").await.unwrap(), RegistryAuth::Anonymous);

    unsafe { std::env::remove_var(&var) };
    let err = credentials.auth("bearer.example").await.unwrap_err().to_string();
    assert!(
        err.contains("registries.\"bearer.example\".token") && err.contains(&var),
        "{err}"
    );
    let missing = Credentials::load(&registries, &IdentityConfig::default())
        .await
        .err()
        .unwrap();
    assert!(
        missing
            .to_string()
            .contains("registries.\"basic.example:5000\".password"),
        "{missing}"
    );
}
