use std::path::{Path, PathBuf};

use super::*;

/// `deploy/kubernetes` in the repository.
fn kubernetes_dir() -> PathBuf {
    let host = Path::new(env!("CARGO_MANIFEST_DIR"));
    host.parent()
        .expect("host/ is in the workspace")
        .join("deploy/kubernetes")
}

fn load(text: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagahost.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap().config
}

const SERVICEBUS: &str = "[transport]\nkind = \"servicebus\"\nnamespace = \"contoso.servicebus.windows.net\"\n\
                          credential = \"workload-identity\"\n";

fn generate(text: &str) -> anyhow::Result<String> {
    keda_manifests(&load(text), &KedaOptions::default())
}

#[test]
fn the_checked_in_manifests_are_what_the_generator_writes() {
    let mut checked = 0;
    for dir in ["base", "overlays/dev"] {
        let dir = kubernetes_dir().join(dir);
        let config = Config::load(&dir.join("sagahost.toml")).unwrap().config;
        let generated = keda_manifests(&config, &KedaOptions::default()).unwrap();
        let checked_in = std::fs::read_to_string(dir.join(KEDA_FILE)).unwrap();
        assert!(
            checked_in == generated,
            "{}/{KEDA_FILE} is not what its sagahost.toml gives: regenerate it with\n  \
             sagahost deploy kubernetes --config {0}/sagahost.toml --out {0}\n--- generated:\n{generated}",
            dir.display()
        );
        checked += 1;
    }
    assert_eq!(checked, 2);
}

/// Reads one YAML document as JSON, to look into.
fn yaml(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

#[test]
fn the_grace_period_outlasts_the_longest_step_and_the_longest_lock() {
    let base = kubernetes_dir().join("base");
    let config = Config::load(&base.join("sagahost.toml")).unwrap().config;
    let deployment = yaml(&base.join("deployment.yaml"));
    let pod = &deployment["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap();
    let longest_lock = config
        .queue_settings()
        .iter()
        .map(|queue| queue.lock_duration)
        .chain(
            config
                .topics
                .iter()
                .flat_map(|topic| topic.subscriptions.iter().map(|s| s.lock_duration)),
        )
        .max()
        .unwrap();
    // A step: a component call per round and one to decide, the requests of each round (at once,
    // so one timeout per round), then the settle, bounded by the transport's operation timeout.
    let settle = sagahost_transport::servicebus::ServiceBusOptions::default().operation_timeout;
    let longest_step = config
        .partners
        .values()
        .map(|p| {
            p.limits.deadline() * (p.max_rounds + 1)
                + std::time::Duration::from_millis(u64::from(p.outbound.timeout_ms)) * p.max_rounds
        })
        .max()
        .unwrap()
        + settle;
    let needed = pre_stop + longest_lock.max(longest_step).as_secs();
    assert!(
        grace >= needed,
        "terminationGracePeriodSeconds {grace} < preStop {pre_stop} s + max(longest lock {longest_lock:?}, \
         longest step and settle {longest_step:?})"
    );
}

#[test]
fn every_entity_a_partner_reads_gets_a_trigger_sized_by_its_concurrency() {
    let out = generate(&format!(
        "{SERVICEBUS}[partners.mdm]\ncomponent = \"mdm.wasm\"\nsource = {{ topic = \"contacts\", subscription = \"mdm\" }}\n\
         concurrency = 4\n[partners.erp]\ncomponent = \"erp.wasm\"\nqueue = \"erp\"\nconcurrency = 3\n\
         [partners.audit]\ncomponent = \"audit.wasm\"\nqueue = \"erp\"\ncompensation-queue = \"audit-undo\"\n"
    ))
    .unwrap();
    assert!(out.starts_with(HEADER), "{out}");
    let docs: Vec<serde_json::Value> = out
        .split("\n---\n")
        .skip(1)
        .map(|doc| serde_norway::from_str(doc).unwrap())
        .collect();
    assert_eq!(docs[0]["kind"], "TriggerAuthentication");
    assert_eq!(docs[0]["spec"]["podIdentity"]["provider"], "azure-workload");
    assert_eq!(docs[1]["kind"], "ScaledObject");
    assert_eq!(docs[1]["spec"]["scaleTargetRef"]["name"], "sagahost");
    let triggers = docs[1]["spec"]["triggers"].as_array().unwrap();
    let summary: Vec<(String, String)> = triggers
        .iter()
        .map(|t| {
            assert_eq!(t["type"], "azure-servicebus");
            assert_eq!(t["metadata"]["namespace"], "contoso");
            assert_eq!(t["metadata"]["activationMessageCount"], "0");
            assert_eq!(t["authenticationRef"]["name"], "sagahost-servicebus");
            let entity = match t["metadata"]["queueName"].as_str() {
                Some(queue) => queue.to_owned(),
                None => format!(
                    "{}/{}",
                    t["metadata"]["topicName"].as_str().unwrap(),
                    t["metadata"]["subscriptionName"].as_str().unwrap()
                ),
            };
            (entity, t["metadata"]["messageCount"].as_str().unwrap().to_owned())
        })
        .collect();
    let expected = [
        ("audit-undo", "8"),
        ("contacts-mdm-compensate", "4"),
        ("contacts/mdm", "4"),
        ("erp", "11"), // two partners read it: 3 + the default 8
        ("erp-compensate", "3"),
    ];
    let expected: Vec<(String, String)> = expected.iter().map(|(e, n)| (e.to_string(), n.to_string())).collect();
    assert_eq!(summary, expected);
    assert_eq!(triggers[2]["name"], "contacts-subscriptions-mdm");
}

#[test]
fn namespaces_of_other_clouds_name_their_cloud() {
    let public = parse_namespace("contoso.servicebus.windows.net").unwrap();
    assert_eq!(public.name, "contoso");
    assert_eq!(public.cloud, None);
    assert_eq!(parse_namespace("sb://contoso.servicebus.windows.net/").unwrap(), public);
    let gov = parse_namespace("contoso.servicebus.usgovcloudapi.net").unwrap();
    assert_eq!(gov.cloud, Some(("AzureUSGovernmentCloud", None)));
    let private = parse_namespace("contoso.servicebus.airgap.example").unwrap();
    assert_eq!(
        private.cloud,
        Some(("Private", Some("servicebus.airgap.example".to_owned())))
    );
    for refused in ["amqp://127.0.0.1:5672", "contoso", "contoso.example.com"] {
        let err = parse_namespace(refused).unwrap_err().to_string();
        assert!(err.contains("NAME.servicebus.windows.net"), "{refused}: {err}");
    }
}

#[test]
fn what_keda_cannot_scale_on_is_refused_with_the_fix() {
    let partner = "[partners.erp]\ncomponent = \"erp.wasm\"\nqueue = \"erp\"\n";
    let embedded = generate(partner).unwrap_err().to_string();
    assert!(embedded.contains("embedded queue"), "{embedded}");
    let connection_string = generate(&format!(
        "[transport]\nkind = \"servicebus\"\nconnection-string = {{ env = \"SB\" }}\n{partner}"
    ))
    .unwrap_err()
    .to_string();
    assert!(connection_string.contains("namespace ="), "{connection_string}");
    let webhook = load(&format!(
        "{SERVICEBUS}[webhook]\nlisten = \"127.0.0.1:0\"\nqueue = \"erp\"\nkey = {{ env = \"SAGAHOST_NO_SUCH_VAR\" }}\n{partner}"
    ));
    let to_zero = KedaOptions {
        min_replicas: 0,
        ..KedaOptions::default()
    };
    let err = keda_manifests(&webhook, &to_zero).unwrap_err().to_string();
    assert!(err.contains("--min-replicas 1"), "{err}");
    let inverted = KedaOptions {
        min_replicas: 5,
        max_replicas: 2,
        ..KedaOptions::default()
    };
    assert!(keda_manifests(&load(&format!("{SERVICEBUS}{partner}")), &inverted).is_err());
}

#[test]
fn trigger_names_are_lower_case_words_joined_by_dashes() {
    assert_eq!(trigger_name("contacts/Subscriptions/mdm"), "contacts-subscriptions-mdm");
    assert_eq!(trigger_name("Erp__Orders."), "erp-orders");
}
