//! The topic handlers: create, update, get (with runtime counts), list a page, delete, over the
//! embedded queue's topics (`EmbeddedQueue::ensure_topic`, `describe_topic`, `delete_topic`).
//! Deleting a topic deletes its subscriptions, their rules and their messages.

use axum::http::StatusCode;
use sagahost_transport::embedded::{TopicInfo, TopicSettings};

use super::atom::{Description, Entry};
use super::errors::EntityError;
use super::target::Page;
use super::topic_description::{TopicDescription, TopicDescriptionUpdate};
use super::{Entities, PutMode, Site, page_feed, xsd};

fn missing(name: &str) -> EntityError {
    EntityError::not_found(format!(
        "topic `{name}` does not exist; create it with PUT /{name} and a TopicDescription first"
    ))
}

async fn describe(entities: &Entities, name: &str) -> Result<Option<TopicInfo>, EntityError> {
    entities.queue.describe_topic(name).await.map_err(EntityError::internal)
}

fn entry(entities: &Entities, site: &Site, info: &TopicInfo) -> Entry {
    let name = &info.settings.name;
    let unknown = xsd::format_time(None);
    Entry::new(
        name,
        site.href(name),
        &site.namespace,
        (unknown.clone(), unknown),
        Description::Topic(Box::new(TopicDescription::new(info, &entities.config))),
    )
}

/// `GET /{topic}`: the topic's description with its subscription count and sizes.
pub async fn get(entities: &Entities, site: &Site, name: &str) -> Result<String, EntityError> {
    let info = describe(entities, name).await?.ok_or_else(|| missing(name))?;
    entry(entities, site, &info).to_xml()
}

/// `PUT /{topic}` with a `TopicDescription`: creates the topic or updates it, as `mode` says;
/// answers its description.
pub async fn put(
    entities: &Entities,
    site: &Site,
    name: &str,
    description: &TopicDescriptionUpdate,
    mode: PutMode,
) -> Result<(StatusCode, String), EntityError> {
    let queue = &entities.queue;
    if name.contains('/') {
        // As for queues: the AMQP side serves single-segment addresses only.
        return Err(EntityError::bad_request(format!(
            "topic `{name}`: this broker serves topic names without '/' only; use '.', '-' or '_' instead"
        )));
    }
    description.check()?;
    let status = match mode {
        PutMode::Create => {
            if !queue.ensure_topic(TopicSettings::new(name)).await? {
                return Err(EntityError::conflict(format!(
                    "topic `{name}` already exists; send If-Match: * to update it"
                )));
            }
            StatusCode::CREATED
        }
        PutMode::Update if queue.has_topic(name) => StatusCode::OK,
        PutMode::Update => return Err(missing(name)),
    };
    let info = describe(entities, name).await?.ok_or_else(|| missing(name))?;
    Ok((status, entry(entities, site, &info).to_xml()?))
}

/// `DELETE /{topic}`: removes the topic with its subscriptions, their rules and their messages.
pub async fn delete(entities: &Entities, name: &str) -> Result<(), EntityError> {
    if entities.queue.delete_topic(name).await? {
        Ok(())
    } else {
        Err(missing(name))
    }
}

/// `GET /$Resources/topics?$skip=…&$top=…`: one page of the topics, in name order.
pub async fn list(entities: &Entities, site: &Site, page: Page) -> Result<String, EntityError> {
    let topics = entities.queue.topics();
    let mut entries = Vec::new();
    for topic in topics.iter().skip(page.skip).take(page.top) {
        // A topic deleted since the list was taken is left out, as if listed a moment later.
        if let Some(info) = describe(entities, &topic.name).await? {
            entries.push(entry(entities, site, &info));
        }
    }
    page_feed(site, "Topics", "$Resources/topics", page, topics.len(), entries)
}
