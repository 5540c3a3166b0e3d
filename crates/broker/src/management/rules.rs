//! The subscription rule operations of `<topic>/Subscriptions/<subscription>/$management`, as the
//! SDKs' AMQP rule managers send them (the JavaScript SDK's `createRuleManager`, .NET's
//! `ServiceBusRuleManager`; Python's `ServiceBusAdministrationClient` uses HTTP instead):
//!
//! - `com.microsoft:add-rule`: body `rule-name` and `rule-description`, a map with `sql-filter`
//!   (`expression`) or `correlation-filter` (`correlation-id`, `message-id`, `to`, `reply-to`,
//!   `label`, `session-id`, `reply-to-session-id`, `content-type`, `properties`), and optionally
//!   `sql-rule-action`, which is refused (rule actions are not supported);
//! - `com.microsoft:remove-rule`: body `rule-name`;
//! - `com.microsoft:enumerate-rules`: body `top` and `skip`; answered with `rules`, a list of maps
//!   whose `rule-description` is the described rule (filter, action, name, creation time), or
//!   `204` when there are none.

use fe2o3_amqp_types::primitives::{OrderedMap, Timestamp, Value};
use sagahost_transport::embedded::{EmbeddedQueue, Rule, TopicError};
use sagahost_transport::filter::{CorrelationFilter, RuleFilter, check_action};
use sagahost_transport::servicebus::dialect::parse_subscription_path;
use sagahost_transport::servicebus::dialect::value_text;
use serde_amqp::described::Described;
use serde_amqp::descriptor::Descriptor;

use super::{Answer, BAD_REQUEST, Failure, NOT_FOUND, as_i64, as_text, bad_request, field, map_of};

/// Descriptor codes of the rule types in `enumerate-rules` answers (Service Bus's AMQP encoding).
const RULE_DESCRIPTION: u64 = 0x0000_0137_0000_0004;
const EMPTY_RULE_ACTION: u64 = 0x0000_0137_0000_0005;
const SQL_FILTER: u64 = 0x0000_0013_7000_0006;
const TRUE_FILTER: u64 = 0x0000_0013_7000_0007;
const FALSE_FILTER: u64 = 0x0000_0013_7000_0008;
const CORRELATION_FILTER: u64 = 0x0000_0013_7000_0009;

const ALREADY_EXISTS: &str = "com.microsoft:entity-already-exists";

impl From<TopicError> for Failure {
    fn from(error: TopicError) -> Self {
        let description = error.to_string();
        match error {
            TopicError::UnknownTopic(_) | TopicError::UnknownSubscription { .. } | TopicError::UnknownRule { .. } => {
                Failure(404, NOT_FOUND, description)
            }
            TopicError::RuleExists { .. } | TopicError::NameTaken(_) => Failure(409, ALREADY_EXISTS, description),
            TopicError::Invalid(_) | TopicError::Filter { .. } => Failure(400, BAD_REQUEST, description),
            TopicError::Transport(error) => error.into(),
        }
    }
}

/// The topic and subscription whose management node `entity` is.
fn subscription(entity: &str) -> Result<(&str, &str), Failure> {
    parse_subscription_path(entity).ok_or_else(|| {
        bad_request(format!(
            "`{entity}` is not a subscription: rules are managed on `<topic>/Subscriptions/<subscription>/$management`"
        ))
    })
}

fn rule_name(body: &OrderedMap<Value, Value>) -> Result<String, Failure> {
    as_text(field(body, "rule-name"))
        .filter(|name| !name.is_empty())
        .ok_or_else(|| bad_request("the request needs a `rule-name` string"))
}

fn map(value: Option<&Value>) -> Option<&OrderedMap<Value, Value>> {
    match value {
        Some(Value::Map(map)) => Some(map),
        _ => None,
    }
}

fn described(code: u64, fields: Vec<Value>) -> Value {
    Value::Described(Box::new(Described {
        descriptor: Descriptor::Code(code),
        value: Value::List(fields),
    }))
}

fn text_or_null(text: Option<&str>) -> Value {
    text.map_or(Value::Null, |text| Value::String(text.to_owned()))
}

/// The filter an `add-rule` request's `rule-description` asks for.
fn filter_of(description: &OrderedMap<Value, Value>) -> Result<RuleFilter, Failure> {
    if let Some(sql) = map(field(description, "sql-filter")) {
        let expression = as_text(field(sql, "expression"))
            .ok_or_else(|| bad_request("`sql-filter` needs an `expression` string"))?;
        return Ok(RuleFilter::Sql(expression));
    }
    if let Some(correlation) = map(field(description, "correlation-filter")) {
        let text = |name: &str| as_text(field(correlation, name));
        let properties = map(field(correlation, "properties"))
            .map(|properties| {
                properties
                    .iter()
                    .filter_map(|(name, value)| Some((as_text(Some(name))?, value_text(value)?)))
                    .collect()
            })
            .unwrap_or_default();
        return Ok(RuleFilter::Correlation(CorrelationFilter {
            correlation_id: text("correlation-id"),
            message_id: text("message-id"),
            subject: text("label"),
            content_type: text("content-type"),
            to: text("to"),
            reply_to: text("reply-to"),
            session_id: text("session-id"),
            reply_to_session_id: text("reply-to-session-id"),
            properties,
        }));
    }
    if field(description, "true-filter").is_some() {
        return Ok(RuleFilter::True);
    }
    if field(description, "false-filter").is_some() {
        return Ok(RuleFilter::False);
    }
    Err(bad_request(
        "the `rule-description` needs a `sql-filter` or a `correlation-filter`",
    ))
}

pub(super) async fn add(queue: &EmbeddedQueue, entity: &str, body: &OrderedMap<Value, Value>) -> Answer {
    let (topic, name) = subscription(entity)?;
    let rule = rule_name(body)?;
    let description = map(field(body, "rule-description"))
        .ok_or_else(|| bad_request("the request needs a `rule-description` map"))?;
    let action = map(field(description, "sql-rule-action")).and_then(|action| as_text(field(action, "expression")));
    check_action(action.as_deref()).map_err(|error| bad_request(error.to_string()))?;
    let filter = filter_of(description)?;
    queue.add_rule(topic, name, Rule { name: rule, filter }).await?;
    Ok((200, map_of(vec![])))
}

pub(super) async fn remove(queue: &EmbeddedQueue, entity: &str, body: &OrderedMap<Value, Value>) -> Answer {
    let (topic, name) = subscription(entity)?;
    queue.remove_rule(topic, name, &rule_name(body)?).await?;
    Ok((200, map_of(vec![])))
}

pub(super) fn enumerate(queue: &EmbeddedQueue, entity: &str, body: &OrderedMap<Value, Value>) -> Answer {
    let (topic, name) = subscription(entity)?;
    let count = |name: &str, default: i64| {
        let n = field(body, name).and_then(as_i64).unwrap_or(default).max(0);
        usize::try_from(n).unwrap_or(usize::MAX)
    };
    let rules: Vec<Value> = queue
        .rules(topic, name)?
        .iter()
        .skip(count("skip", 0))
        .take(count("top", i64::from(i32::MAX)))
        .map(|rule| map_of(vec![("rule-description", describe(rule))]))
        .collect();
    if rules.is_empty() {
        return Ok((204, map_of(vec![])));
    }
    Ok((200, map_of(vec![("rules", Value::List(rules))])))
}

/// A rule as Service Bus describes it: its filter, an empty action, its name, a creation time
/// (not kept: the epoch).
fn describe(rule: &Rule) -> Value {
    let filter = match &rule.filter {
        RuleFilter::True => described(TRUE_FILTER, vec![Value::String("1=1".into())]),
        RuleFilter::False => described(FALSE_FILTER, vec![Value::String("1=0".into())]),
        RuleFilter::Sql(expression) => described(SQL_FILTER, vec![Value::String(expression.clone())]),
        RuleFilter::Correlation(filter) => {
            let mut properties = OrderedMap::new();
            for (name, value) in &filter.properties {
                properties.insert(Value::String(name.clone()), Value::String(value.clone()));
            }
            described(
                CORRELATION_FILTER,
                vec![
                    text_or_null(filter.correlation_id.as_deref()),
                    text_or_null(filter.message_id.as_deref()),
                    text_or_null(filter.to.as_deref()),
                    text_or_null(filter.reply_to.as_deref()),
                    text_or_null(filter.subject.as_deref()),
                    text_or_null(filter.session_id.as_deref()),
                    text_or_null(filter.reply_to_session_id.as_deref()),
                    text_or_null(filter.content_type.as_deref()),
                    Value::Map(properties),
                ],
            )
        }
    };
    described(
        RULE_DESCRIPTION,
        vec![
            filter,
            described(EMPTY_RULE_ACTION, vec![]),
            Value::String(rule.name.clone()),
            Value::Timestamp(Timestamp::from_milliseconds(0)),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &str) -> Value {
        Value::String(value.to_owned())
    }

    fn body(entries: Vec<(&str, Value)>) -> OrderedMap<Value, Value> {
        match map_of(entries) {
            Value::Map(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn add_rule_descriptions_become_filters() {
        let sql = body(vec![("sql-filter", map_of(vec![("expression", text("a = 1"))]))]);
        assert_eq!(filter_of(&sql).ok(), Some(RuleFilter::Sql("a = 1".into())));
        let correlation = body(vec![(
            "correlation-filter",
            map_of(vec![
                ("correlation-id", text("c")),
                ("label", text("Create")),
                ("message-id", Value::Null),
                ("properties", map_of(vec![("n", Value::Int(7))])),
            ]),
        )]);
        assert_eq!(
            filter_of(&correlation).ok(),
            Some(RuleFilter::Correlation(CorrelationFilter {
                correlation_id: Some("c".into()),
                subject: Some("Create".into()),
                properties: vec![("n".into(), "7".into())],
                ..CorrelationFilter::default()
            }))
        );
        assert!(filter_of(&body(vec![])).is_err());
    }

    #[test]
    fn rules_are_described_with_service_bus_descriptors() {
        let Value::Described(rule) = describe(&Rule::default_rule()) else {
            panic!("not described");
        };
        assert_eq!(rule.descriptor, Descriptor::Code(RULE_DESCRIPTION));
        let Value::List(fields) = &rule.value else {
            panic!("not a list");
        };
        assert_eq!(fields[2], text("$Default"));
        assert!(matches!(&fields[0], Value::Described(filter) if filter.descriptor == Descriptor::Code(TRUE_FILTER)));
    }

    #[test]
    fn a_failure_names_the_status_service_bus_gives() {
        let Failure(status, condition, _) = Failure::from(TopicError::UnknownTopic("t".into()));
        assert_eq!((status, condition), (404, NOT_FOUND));
        let exists = TopicError::RuleExists {
            topic: "t".into(),
            subscription: "s".into(),
            rule: "r".into(),
        };
        assert_eq!(Failure::from(exists).0, 409);
        let Failure(status, _, _) = Failure::from(TopicError::Invalid("x".into()));
        assert_eq!(status, 400);
    }
}
