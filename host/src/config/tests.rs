use super::*;

/// Loads `text` as a config file; the error text on failure.
pub(super) fn load(text: &str) -> Result<Config, String> {
    load_in(tempfile::tempdir().unwrap().path(), text)
}

/// Loads `text` as `dir/sagahost.toml`; the error text on failure.
fn load_in(dir: &Path, text: &str) -> Result<Config, String> {
    let path = dir.join("sagahost.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path)
        .map(|loaded| loaded.config)
        .map_err(|err| format!("{err:#}"))
}

/// Sets a variable whose name is unique to this test process and `suffix`, and returns its name.
fn set_var(suffix: &str, value: &str) -> String {
    let name = format!("SAGAHOST_CONFIG_TEST_{suffix}_{}", std::process::id());
    // SAFETY: the name is unique to this test and this process.
    unsafe { std::env::set_var(&name, value) };
    name
}

const WEBHOOK: &str = "[webhook]\nlisten = \"127.0.0.1:0\"\nqueue = \"contacts\"\n";

const PARTNER: &str = "[partners.mdm]\ncomponent = \"mdm.wasm\"\nqueue = \"contacts\"\n";

#[test]
fn a_minimal_config_gets_the_defaults() {
    let config = load(PARTNER).unwrap();
    let mdm = &config.partners["mdm"];
    assert_eq!(mdm.compensation_queue(), "contacts-compensate");
    assert!(config.data_dir.ends_with(".sagahost") && config.data_dir.is_absolute());
    assert!(matches!(config.transport, TransportConfig::Embedded));
}

#[test]
fn bad_missing_and_unknown_values_are_errors_that_name_the_file_and_the_key() {
    let cases: &[(&str, &str)] = &[
        ("", "missing field `partners`"),
        ("[partners]\n", "no partners"),
        ("[partners.mdm]\nqueue = \"contacts\"\n", "missing field `component`"),
        (&format!("{PARTNER}colour = \"blue\"\n"), "unknown field `colour`"),
        (&format!("tranport = 1\n{PARTNER}"), "unknown field `tranport`"),
        (&format!("{PARTNER}concurrency = \"many\"\n"), "invalid type"),
        (
            &format!("{PARTNER}concurrency = 0\n"),
            "partners.mdm.concurrency must be at least 1",
        ),
        (&format!("{PARTNER}concurrency = -1\n"), "invalid value"),
        (
            &format!("{PARTNER}retry = {{ jitter = 2.0 }}\n"),
            "partners.mdm.retry.jitter",
        ),
        (
            &format!("{PARTNER}compensation-queue = \"contacts\"\n"),
            "compensation-queue must differ",
        ),
        (
            &format!("{PARTNER}outbound = {{ allow = [\"ftp://x\"], colour = 1 }}\n"),
            "unknown field `colour`",
        ),
        (
            &format!("{PARTNER}secrets = {{ key = \"plain text in the file\" }}\n"),
            "line 4",
        ),
        (
            &format!("[admin]\nlisten = \"0.0.0.0:9090\"\n{PARTNER}"),
            "set admin.token",
        ),
        (
            &format!("[transport]\nkind = \"servicebus\"\n{PARTNER}"),
            "say how to reach Service Bus",
        ),
        (
            &format!(
                "[transport]\nkind = \"servicebus\"\nnamespace = \"ns.servicebus.windows.net\"\n\
                 connection-string = {{ env = \"X\" }}\n{PARTNER}"
            ),
            "not both",
        ),
        (
            &format!(
                "[transport]\nkind = \"servicebus\"\ncredential = \"managed-identity\"\n\
                 connection-string = {{ env = \"X\" }}\n{PARTNER}"
            ),
            "transport.credential is for namespace",
        ),
        (
            &format!(
                "[transport]\nkind = \"servicebus\"\nnamespace = \"ns.servicebus.windows.net\"\n\
                 credential = \"password\"\n{PARTNER}"
            ),
            "unknown variant `password`",
        ),
        (
            &format!("[admin]\nlisten = \"nowhere\"\n{PARTNER}"),
            "admin.listen `nowhere`",
        ),
        (
            &format!("[transport]\nkind = \"carrier-pigeon\"\n{PARTNER}"),
            "unknown variant `carrier-pigeon`",
        ),
        (
            &format!(
                "[webhook]\nlisten = \"127.0.0.1:0\"\nqueue = \"contacts\"\nkey = {{ env = \"K\" }}\nrequest-timeout-ms = 0\n{PARTNER}"
            ),
            "webhook.max-body-bytes and webhook.request-timeout-ms",
        ),
        (
            &format!(
                "[transport]\nkind = \"servicebus\"\nnamespace = \"ns.servicebus.windows.net\"\n\
                 {PARTNER}outputs = {{ max-forwards = 100 }}\n"
            ),
            "partners.mdm.outputs.max-forwards is 100, but one Service Bus transaction takes at most 100 messages",
        ),
        ("partners = [", "config"),
    ];
    for (text, expected) in cases {
        let error = load(text).expect_err(text);
        assert!(error.contains(expected), "for {text:?}: `{expected}` not in: {error}");
        assert!(error.contains("sagahost.toml"), "the error names the file: {error}");
    }
    let missing = Config::load(Path::new("/nonexistent/sagahost.toml")).unwrap_err();
    assert!(format!("{missing:#}").contains("reading config /nonexistent/sagahost.toml"));
}

/// A step settles its input with its forwards in one Service Bus transaction, which takes at
/// most 100 messages; without transactions, or on the embedded queue, there is no such bound.
#[test]
fn max_forwards_fits_a_service_bus_transaction() {
    let servicebus = "[transport]\nkind = \"servicebus\"\nnamespace = \"ns.servicebus.windows.net\"\n";
    load(&format!("{servicebus}{PARTNER}outputs = {{ max-forwards = 99 }}\n")).unwrap();
    load(&format!(
        "{servicebus}transactions = false\n{PARTNER}outputs = {{ max-forwards = 500 }}\n"
    ))
    .unwrap();
    load(&format!("{PARTNER}outputs = {{ max-forwards = 500 }}\n")).unwrap();
}

#[test]
fn an_empty_blank_or_short_webhook_key_or_admin_token_is_refused_naming_the_file_and_the_key() {
    for (index, (value, says)) in [
        ("", "is empty"),
        (" \t\r\n\n", "is empty"),
        ("short-key-12345\n", "is only 15 characters long"),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let var = set_var(&format!("WEBHOOK_KEY_{index}"), value);
        let error = load_in(dir.path(), &format!("{WEBHOOK}key = {{ env = \"{var}\" }}\n{PARTNER}")).unwrap_err();
        let config = dir.path().join("sagahost.toml");
        assert_eq!(
            error,
            format!(
                "config {}: webhook.key read from environment variable `{var}` is {}; set it to a random \
                 value of at least 16 characters, e.g. `openssl rand -hex 32`",
                config.display(),
                says.trim_start_matches("is "),
            )
        );

        // A file named relative to the config file is read from beside it.
        std::fs::write(dir.path().join("admin-token"), value).unwrap();
        let error = load_in(
            dir.path(),
            &format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = {{ file = \"admin-token\" }}\n{PARTNER}"),
        )
        .unwrap_err();
        let token_file = dir.path().join("admin-token");
        assert!(error.starts_with(&format!("config {}: ", config.display())), "{error}");
        assert!(
            error.contains(&format!("admin.token read from file `{}` {says}", token_file.display())),
            "{error}"
        );
    }
}

#[test]
fn a_long_enough_key_passes_and_one_not_readable_yet_is_left_to_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("webhook-key"), "0123456789abcdef\n").unwrap();
    let config = load_in(
        dir.path(),
        &format!("{WEBHOOK}key = {{ file = \"webhook-key\" }}\n{PARTNER}"),
    )
    .unwrap();
    let webhook = config.webhook.unwrap();
    assert_eq!(webhook.key, SecretSource::File(dir.path().join("webhook-key")));
    assert!(webhook.access_key().unwrap().admits(Some("0123456789abcdef")));

    let unset = format!("SAGAHOST_CONFIG_TEST_UNSET_{}", std::process::id());
    let config = load(&format!("{WEBHOOK}key = {{ env = \"{unset}\" }}\n{PARTNER}")).unwrap();
    let error = anyhow::Error::from(config.webhook.unwrap().access_key().unwrap_err());
    // `{:#}`, as the command line prints errors: the reason is said once.
    assert_eq!(
        format!("{error:#}"),
        format!("webhook.key: environment variable `{unset}` is not set")
    );
}

#[test]
fn a_config_named_without_a_directory_is_in_the_working_directory() {
    assert_eq!(directory_of(Path::new("sagahost.toml")), Path::new("."));
    assert_eq!(directory_of(Path::new("./sagahost.toml")), Path::new("."));
    assert_eq!(directory_of(Path::new("conf/sagahost.toml")), Path::new("conf"));
    assert_eq!(directory_of(Path::new("/etc/sagahost.toml")), Path::new("/etc"));
}
