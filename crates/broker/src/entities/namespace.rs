//! `GET /$namespaceinfo`: the namespace's own description, which the SDKs'
//! `get_namespace_properties` / `getNamespaceProperties` read. The broker is one namespace named
//! after the host the client addressed, of the Standard tier (queues and topics).

use serde::Serialize;

use super::Site;
use super::atom::{Description, Entry};
use super::queue_description::{SERVICE_BUS_NAMESPACE, XML_SCHEMA_INSTANCE};
use super::xsd;

/// `NamespaceInfo`, elements in Service Bus's order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NamespaceInfo {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    #[serde(rename = "@xmlns:i")]
    xmlns_i: &'static str,
    created_time: String,
    #[serde(rename = "MessagingSKU")]
    messaging_sku: &'static str,
    modified_time: String,
    name: String,
    namespace_type: &'static str,
}

/// The namespace's entry; `started` (when the endpoint started) stands for its creation time.
pub fn entry(site: &Site, started: &str) -> Entry {
    let info = NamespaceInfo {
        xmlns: SERVICE_BUS_NAMESPACE,
        xmlns_i: XML_SCHEMA_INSTANCE,
        created_time: started.to_owned(),
        messaging_sku: "Standard",
        modified_time: started.to_owned(),
        name: site.namespace.clone(),
        namespace_type: "Messaging",
    };
    let now = xsd::format_time(Some(std::time::SystemTime::now()));
    Entry::new(
        &site.namespace,
        site.href("$namespaceinfo"),
        &site.namespace,
        (started.to_owned(), now),
        Description::NamespaceInfo(info),
    )
}
