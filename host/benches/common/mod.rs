//! Fixtures both benches use: where the guest components and samples are, the message bodies,
//! and the forwarder's logic as a native function (the baseline of every component figure).

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use sagahost::component::{Limits, PartnerComponent, Runtime, RuntimeOptions, wit};
use sagahost::saga::{MessageParts, build_inbound};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The built Rust guest component `name` (made by `scripts/build-guests`).
pub fn component_path(name: &str) -> PathBuf {
    component_in("rust", name)
}

/// The built guest component `name` written in `language` (`rust`, `typescript`, `python`).
pub fn component_in(language: &str, name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace().join("target"), PathBuf::from);
    let guests = target.join("wasm32-wasip2/guest");
    let path = sagahost::quickstart::built_guest(&guests, language, name);
    assert!(path.is_file(), "{} is missing: run scripts/bench", path.display());
    path
}

/// The sample body decoded for each format: (format, file in the samples, content type).
/// The contact Create is about the size of the shared synthetic sample the figures used
/// before (4.2, 8.7 and 6.0 KB against 4.1, 7.8 and 5.4).
pub const DECODE_SAMPLES: [(&str, &str, &str); 3] = [
    ("json", "contact-create.dcjs.json", "application/json"),
    ("xml", "contact-create.dcs.xml", "application/xml"),
    ("binary", "contact-create.dcs-binary.msbin1", "application/msbin1"),
];

/// The repository's Dataverse samples (tests/samples/dataverse).
pub fn samples() -> PathBuf {
    workspace().join("tests/samples/dataverse")
}

/// A file of the Dataverse samples.
pub fn sample(name: &str) -> Vec<u8> {
    std::fs::read(samples().join(name)).expect("the Dataverse samples")
}

/// The example contact-create context, padded to about `kb` KiB with shared variables of
/// up to 1,000 bytes of text each. The padding is spliced into the text, so the body keeps
/// the member order Dataverse writes (`__type` first): going through a `serde_json::Value`
/// would sort `__type` among the other members, which sends the decoder down the path for
/// bodies not written by Dataverse.
pub fn contact_body(kb: usize) -> Vec<u8> {
    let text = std::fs::read_to_string(workspace().join("guest-examples/messages/contact-create.json")).unwrap();
    let marker = "\"SharedVariables\":[";
    let (head, tail) = text.split_once(marker).expect("the template has shared variables");
    let mut pads = String::new();
    for n in 0.. {
        let size = head.len() + marker.len() + pads.len() + tail.len();
        if size >= kb * 1024 {
            break;
        }
        let text = "x".repeat((kb * 1024 - size).min(1000));
        pads.push_str(&format!("{{\"key\":\"pad{n}\",\"value\":\"{text}\"}},"));
    }
    format!("{head}{marker}{pads}{tail}").into_bytes()
}

/// The forwarder component, loaded in a runtime of its own (which must outlive it).
pub fn forwarder() -> (Runtime, PartnerComponent) {
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    let wasm = std::fs::read(component_path("forwarder")).unwrap();
    let component = runtime
        .load("forwarder", &wasm, Limits::default(), BTreeMap::new())
        .unwrap();
    (runtime, component)
}

/// A current-thread tokio runtime to drive one component call at a time: the call is a
/// future (its deadline is a tokio timer), and this is the cheapest way to await it.
pub fn call_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// The forwarder's logic as a native function: the baseline of the component call.
pub fn native_forward(event: &wit::Event) -> wit::Plan {
    let decision = match event {
        wit::Event::Message(_) => wit::Decision::Forward(vec![wit::ForwardMessage {
            route: "next".into(),
            body: None,
            content_type: None,
            properties: Vec::new(),
        }]),
        _ => wit::Decision::Complete,
    };
    wit::Plan::Done(wit::Outcome {
        decision,
        compensation_data: None,
    })
}

/// A new-message event carrying `body` (a JSON context), as the host builds it.
pub fn message_event(body: Vec<u8>) -> wit::Event {
    let parts = MessageParts {
        message_id: "m-1".into(),
        queue: "in".into(),
        content_type: Some("application/json".into()),
        properties: Vec::new(),
        body,
    };
    wit::Event::Message(build_inbound(parts, None, &Default::default()).unwrap())
}
