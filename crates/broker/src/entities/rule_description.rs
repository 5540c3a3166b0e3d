//! `RuleDescription`, both ways: what a `PUT` asks of a subscription rule
//! ([`RuleDescriptionUpdate`], read into the embedded queue's [`Rule`] with its [`RuleFilter`])
//! and what the endpoint answers about one ([`RuleDescription`]).
//!
//! # Filters and actions
//! A filter's kind is its `type` attribute in the XML Schema instance namespace (`i:type`,
//! `xsi:type` or `p4:type`: the SDKs differ in the prefix, never in the local name):
//! - `SqlFilter`: `SqlExpression` in the Service Bus SQL subset `sagahost_transport::filter`
//!   evaluates; `Parameters` are refused (write the values into the expression).
//! - `CorrelationFilter`: `CorrelationId`, `MessageId`, `To`, `ReplyTo`, `Label` (the subject),
//!   `SessionId`, `ReplyToSessionId`, `ContentType` and `Properties` (each value kept as its
//!   text, as the AMQP side keeps application properties).
//! - `TrueFilter` and `FalseFilter`. A rule without a filter is a `TrueFilter`, as in Service Bus.
//!
//! An `EmptyRuleAction` (or none) is accepted; a `SqlRuleAction` is refused with 400
//! ([`check_action`]): the broker applies filters only. A filter that does not parse is refused
//! with 400 when the rule is added, naming the rule and the character where parsing stopped.
//!
//! # Answers
//! Written as Service Bus writes them, with `i:type` on the filter and the action, and each
//! correlation property as `<Value i:type="d6p1:string">` (the JavaScript SDK reads the type
//! after a five-character prefix). The embedded queue keeps no creation time for rules: it is
//! written as unknown.

use sagahost_transport::embedded::{DEFAULT_RULE, Rule};
use sagahost_transport::filter::{CorrelationFilter, RuleFilter, check_action};
use serde::{Deserialize, Serialize};

use super::errors::EntityError;
use super::queue_description::{SERVICE_BUS_NAMESPACE, XML_SCHEMA_INSTANCE};
use super::settings::{given, invalid};
use super::xsd;

/// The description's name in errors.
const RULE: &str = "RuleDescription";
/// The XML Schema namespace, which the type of a property's value is named in.
const XML_SCHEMA: &str = "http://www.w3.org/2001/XMLSchema";

/// A rule's description as a `PUT` (or a subscription's `DefaultRuleDescription`) carries it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuleDescriptionUpdate {
    filter: Option<FilterIn>,
    action: Option<ActionIn>,
    name: Option<String>,
}

/// A filter of any kind: the elements of all of them, each optional.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FilterIn {
    /// `i:type`, by its local name.
    #[serde(rename = "@type")]
    kind: Option<String>,
    sql_expression: Option<String>,
    parameters: Option<KeyValues>,
    correlation_id: Option<String>,
    message_id: Option<String>,
    to: Option<String>,
    reply_to: Option<String>,
    label: Option<String>,
    session_id: Option<String>,
    reply_to_session_id: Option<String>,
    content_type: Option<String>,
    properties: Option<KeyValues>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ActionIn {
    #[serde(rename = "@type")]
    kind: Option<String>,
    sql_expression: Option<String>,
}

/// `Properties` or `Parameters`: a list of `KeyValueOfstringanyType`.
#[derive(Debug, Default, Deserialize)]
struct KeyValues {
    #[serde(rename = "KeyValueOfstringanyType", default)]
    pairs: Vec<KeyValueIn>,
}

#[derive(Debug, Deserialize)]
struct KeyValueIn {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value")]
    value: ValueIn,
}

/// A property's value: its text (its `i:type` is not needed, values are kept as text).
#[derive(Debug, Deserialize)]
struct ValueIn {
    #[serde(rename = "$text", default)]
    text: String,
}

impl RuleDescriptionUpdate {
    /// The rule this description asks for, named `name` (the path's) or else by its `Name`, or
    /// `$Default`.
    pub fn to_rule(&self, name: Option<&str>) -> Result<Rule, EntityError> {
        self.check_action()?;
        let name = name.or_else(|| given(&self.name)).unwrap_or(DEFAULT_RULE);
        let filter = match &self.filter {
            None => RuleFilter::True,
            Some(filter) => filter.to_filter()?,
        };
        Ok(Rule {
            name: name.to_owned(),
            filter,
        })
    }

    fn check_action(&self) -> Result<(), EntityError> {
        let Some(action) = &self.action else {
            return Ok(());
        };
        match (action.kind.as_deref(), given(&action.sql_expression)) {
            (None | Some("EmptyRuleAction"), None) => Ok(()),
            (None | Some("EmptyRuleAction" | "SqlRuleAction"), expression) => {
                check_action(Some(expression.unwrap_or("SqlRuleAction")))
                    .map_err(|error| invalid(RULE, "Action", error))
            }
            (Some(other), _) => Err(invalid(
                RULE,
                "Action",
                format!("`{other}` is not a rule action type; send EmptyRuleAction or leave the action out"),
            )),
        }
    }
}

impl FilterIn {
    fn to_filter(&self) -> Result<RuleFilter, EntityError> {
        let element = "Filter";
        match self.kind.as_deref() {
            Some("SqlFilter") => {
                if self
                    .parameters
                    .as_ref()
                    .is_some_and(|parameters| !parameters.pairs.is_empty())
                {
                    return Err(invalid(
                        RULE,
                        "Filter/Parameters",
                        "SQL filter parameters are not supported; write the values into the SqlExpression",
                    ));
                }
                let expression = given(&self.sql_expression)
                    .ok_or_else(|| invalid(RULE, element, "a SqlFilter needs a SqlExpression"))?;
                Ok(RuleFilter::Sql(expression.to_owned()))
            }
            Some("TrueFilter") => Ok(RuleFilter::True),
            Some("FalseFilter") => Ok(RuleFilter::False),
            Some("CorrelationFilter") => Ok(self.to_correlation()),
            Some(other) => Err(invalid(
                RULE,
                element,
                format!("`{other}` is not a filter type; use SqlFilter, CorrelationFilter, TrueFilter or FalseFilter"),
            )),
            None => Err(invalid(
                RULE,
                element,
                "the filter has no i:type; give SqlFilter, CorrelationFilter, TrueFilter or FalseFilter",
            )),
        }
    }

    fn to_correlation(&self) -> RuleFilter {
        let text = |value: &Option<String>| given(value).map(str::to_owned);
        let properties = self
            .properties
            .iter()
            .flat_map(|properties| &properties.pairs)
            .map(|pair| (pair.key.clone(), pair.value.text.clone()))
            .collect();
        RuleFilter::Correlation(CorrelationFilter {
            correlation_id: text(&self.correlation_id),
            message_id: text(&self.message_id),
            subject: text(&self.label),
            content_type: text(&self.content_type),
            to: text(&self.to),
            reply_to: text(&self.reply_to),
            session_id: text(&self.session_id),
            reply_to_session_id: text(&self.reply_to_session_id),
            properties,
        })
    }
}

/// A rule's description as the endpoint answers it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuleDescription {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    #[serde(rename = "@xmlns:i")]
    xmlns_i: &'static str,
    filter: FilterOut,
    action: ActionOut,
    created_at: String,
    name: String,
}

/// A filter as Service Bus writes it: the correlation elements that are set, or a SQL expression.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
struct FilterOut {
    #[serde(rename = "@i:type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to_session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    properties: Option<KeyValuesOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sql_expression: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compatibility_level: Option<u32>,
}

#[derive(Debug, Serialize)]
struct ActionOut {
    #[serde(rename = "@i:type")]
    kind: &'static str,
}

#[derive(Debug, Serialize)]
struct KeyValuesOut {
    #[serde(rename = "KeyValueOfstringanyType")]
    pairs: Vec<KeyValueOut>,
}

#[derive(Debug, Serialize)]
struct KeyValueOut {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value")]
    value: ValueOut,
}

#[derive(Debug, Serialize)]
struct ValueOut {
    #[serde(rename = "@i:type")]
    kind: &'static str,
    #[serde(rename = "@xmlns:d6p1")]
    xmlns: &'static str,
    #[serde(rename = "$text")]
    text: String,
}

/// The SQL compatibility level Service Bus writes on SQL filters.
const COMPATIBILITY_LEVEL: u32 = 20;

impl RuleDescription {
    /// The description of `rule`.
    pub fn new(rule: &Rule) -> Self {
        let sql = |kind, expression: &str| FilterOut {
            kind,
            sql_expression: Some(expression.to_owned()),
            compatibility_level: Some(COMPATIBILITY_LEVEL),
            ..FilterOut::default()
        };
        let filter = match &rule.filter {
            RuleFilter::True => sql("TrueFilter", "1=1"),
            RuleFilter::False => sql("FalseFilter", "1=0"),
            RuleFilter::Sql(expression) => sql("SqlFilter", expression),
            RuleFilter::Correlation(filter) => FilterOut {
                kind: "CorrelationFilter",
                correlation_id: filter.correlation_id.clone(),
                message_id: filter.message_id.clone(),
                to: filter.to.clone(),
                reply_to: filter.reply_to.clone(),
                label: filter.subject.clone(),
                session_id: filter.session_id.clone(),
                reply_to_session_id: filter.reply_to_session_id.clone(),
                content_type: filter.content_type.clone(),
                properties: (!filter.properties.is_empty()).then(|| KeyValuesOut {
                    pairs: filter
                        .properties
                        .iter()
                        .map(|(key, value)| KeyValueOut {
                            key: key.clone(),
                            value: ValueOut {
                                kind: "d6p1:string",
                                xmlns: XML_SCHEMA,
                                text: value.clone(),
                            },
                        })
                        .collect(),
                }),
                ..FilterOut::default()
            },
        };
        Self {
            xmlns: SERVICE_BUS_NAMESPACE,
            xmlns_i: XML_SCHEMA_INSTANCE,
            filter,
            action: ActionOut {
                kind: "EmptyRuleAction",
            },
            created_at: xsd::format_time(None),
            name: rule.name.clone(),
        }
    }
}
