//! The rule handlers: create, replace (`If-Match: *`), get, list a page, delete, over the
//! embedded queue's subscription rules (`EmbeddedQueue::add_rule` and its neighbours).

use axum::http::StatusCode;
use sagahost_transport::embedded::{Rule, TopicError};
use sagahost_transport::servicebus::dialect::{rule_path, subscription_path};

use super::atom::{Description, Entry};
use super::errors::EntityError;
use super::rule_description::{RuleDescription, RuleDescriptionUpdate};
use super::target::Page;
use super::{Entities, PutMode, Site, page_feed, xsd};

/// A subscription of a topic: the two names a rule lives under.
pub type Owner<'a> = (&'a str, &'a str);

fn entry(site: &Site, (topic, subscription): Owner<'_>, rule: &Rule) -> Entry {
    let path = rule_path(topic, subscription, &rule.name);
    let unknown = xsd::format_time(None);
    Entry::new(
        &rule.name,
        site.href(&path),
        &site.namespace,
        (unknown.clone(), unknown),
        Description::Rule(Box::new(RuleDescription::new(rule))),
    )
}

fn find(entities: &Entities, (topic, subscription): Owner<'_>, name: &str) -> Result<Rule, EntityError> {
    entities
        .queue
        .rules(topic, subscription)?
        .into_iter()
        .find(|rule| rule.name == name)
        .ok_or_else(|| {
            TopicError::UnknownRule {
                topic: topic.to_owned(),
                subscription: subscription.to_owned(),
                rule: name.to_owned(),
            }
            .into()
        })
}

/// `GET /{topic}/Subscriptions/{subscription}/Rules/{rule}`: the rule's description.
pub fn get(entities: &Entities, site: &Site, owner: Owner<'_>, name: &str) -> Result<String, EntityError> {
    entry(site, owner, &find(entities, owner, name)?).to_xml()
}

/// `PUT /{topic}/Subscriptions/{subscription}/Rules/{rule}`: adds the rule, or replaces its
/// filter (`mode` says which); answers its description.
pub async fn put(
    entities: &Entities,
    site: &Site,
    owner: Owner<'_>,
    name: &str,
    description: &RuleDescriptionUpdate,
    mode: PutMode,
) -> Result<(StatusCode, String), EntityError> {
    let (topic, subscription) = owner;
    let rule = description.to_rule(Some(name))?;
    let status = match mode {
        PutMode::Create => {
            entities.queue.add_rule(topic, subscription, rule).await?;
            StatusCode::CREATED
        }
        PutMode::Update => {
            entities.queue.replace_rule(topic, subscription, rule).await?;
            StatusCode::OK
        }
    };
    Ok((status, get(entities, site, owner, name)?))
}

/// `DELETE /{topic}/Subscriptions/{subscription}/Rules/{rule}`: removes the rule. A subscription
/// left with no rules gets no messages, as in Service Bus.
pub async fn delete(entities: &Entities, (topic, subscription): Owner<'_>, name: &str) -> Result<(), EntityError> {
    Ok(entities.queue.remove_rule(topic, subscription, name).await?)
}

/// `GET /{topic}/Subscriptions/{subscription}/Rules?$skip=…&$top=…`: one page of its rules, in
/// the order they were added.
pub fn list(entities: &Entities, site: &Site, owner: Owner<'_>, page: Page) -> Result<String, EntityError> {
    let (topic, subscription) = owner;
    let rules = entities.queue.rules(topic, subscription)?;
    let entries = rules
        .iter()
        .skip(page.skip)
        .take(page.top)
        .map(|rule| entry(site, owner, rule))
        .collect();
    let path = format!("{}/Rules", subscription_path(topic, subscription));
    page_feed(site, "Rules", &path, page, rules.len(), entries)
}
