//! The queue handlers: create, create-or-update, get (with runtime counts), list a page, delete,
//! over the embedded queue's queue definitions (`EmbeddedQueue::create_queue` and its neighbours).

use axum::http::StatusCode;
use sagahost_transport::embedded::{EmbeddedQueue, QueueInfo};

use super::atom::{Description, Entry};
use super::errors::EntityError;
use super::queue_description::{QueueDescription, QueueDescriptionUpdate};
use super::target::Page;
use super::{Entities, PutMode, Site, page_feed, xsd};

/// Also the answer to a `GET` or `DELETE /{name}` that no queue or topic has.
fn missing(name: &str) -> EntityError {
    EntityError::not_found(format!(
        "no queue or topic named `{name}` exists; create it with PUT /{name} first"
    ))
}

async fn describe(queue: &EmbeddedQueue, name: &str) -> Result<Option<QueueInfo>, EntityError> {
    queue.describe_queue(name).await.map_err(EntityError::internal)
}

fn entry(entities: &Entities, site: &Site, info: &QueueInfo) -> Entry {
    let name = &info.settings.name;
    let published = xsd::format_time(info.created_at);
    let updated = xsd::format_time(info.updated_at);
    Entry::new(
        name,
        site.href(name),
        &site.namespace,
        (published, updated),
        Description::Queue(Box::new(QueueDescription::new(info, &entities.config))),
    )
}

/// `GET /{queue}`: the queue's description with its counts.
pub async fn get(entities: &Entities, site: &Site, name: &str) -> Result<String, EntityError> {
    let info = describe(&entities.queue, name).await?.ok_or_else(|| missing(name))?;
    entry(entities, site, &info).to_xml()
}

/// `PUT /{queue}`: creates the queue or updates it, as `mode` says; answers its description.
pub async fn put(
    entities: &Entities,
    site: &Site,
    name: &str,
    description: &QueueDescriptionUpdate,
    mode: PutMode,
) -> Result<(StatusCode, String), EntityError> {
    let queue = &entities.queue;
    if name.contains('/') {
        // Valid in Service Bus, but the AMQP side serves single-segment queue addresses only, so
        // such a queue could be created here and never used.
        return Err(EntityError::bad_request(format!(
            "queue `{name}`: this broker serves queue names without '/' only; use '.', '-' or '_' instead"
        )));
    }
    let status = match mode {
        PutMode::Create => {
            let settings = description.apply(entities.config.queue_settings(name))?;
            if !queue.create_queue(settings).await.map_err(EntityError::internal)? {
                if queue.has_topic(name) {
                    return Err(EntityError::conflict(format!(
                        "`{name}` is a topic; a queue needs a name no topic uses"
                    )));
                }
                return Err(EntityError::conflict(format!(
                    "queue `{name}` already exists; send If-Match: * to update it"
                )));
            }
            StatusCode::CREATED
        }
        PutMode::Update => {
            let current = queue.queue_settings(name).ok_or_else(|| missing(name))?;
            let settings = description.apply_update(current)?;
            if !queue.update_queue(settings).await.map_err(EntityError::internal)? {
                return Err(missing(name));
            }
            StatusCode::OK
        }
    };
    let info = describe(queue, name).await?.ok_or_else(|| missing(name))?;
    Ok((status, entry(entities, site, &info).to_xml()?))
}

/// `DELETE /{queue}`: removes the queue and its messages.
pub async fn delete(entities: &Entities, name: &str) -> Result<(), EntityError> {
    if entities.queue.delete_queue(name).await.map_err(EntityError::internal)? {
        Ok(())
    } else {
        Err(missing(name))
    }
}

/// `GET /$Resources/queues?$skip=…&$top=…`: one page of the queues, in name order.
pub async fn list(entities: &Entities, site: &Site, page: Page) -> Result<String, EntityError> {
    let names = entities.queue.queue_names();
    let mut entries = Vec::new();
    for name in names.iter().skip(page.skip).take(page.top) {
        // A queue deleted since the names were taken is left out, as if listed a moment later.
        if let Some(info) = describe(&entities.queue, name).await? {
            entries.push(entry(entities, site, &info));
        }
    }
    page_feed(site, "Queues", "$Resources/queues", page, names.len(), entries)
}
