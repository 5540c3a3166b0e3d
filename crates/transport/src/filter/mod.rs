//! Subscription rule filters, as Azure Service Bus topics apply them: which messages sent to a
//! topic a subscription gets a copy of.
//!
//! # What it owns
//! The filter kinds a rule may have ([`RuleFilter`]: true, false, correlation, SQL), their
//! compiled form ([`Filter`]) and its evaluation against a message's fields ([`MessageFields`]).
//! Storage of rules and the fan-out to subscriptions are the embedded queue's.
//!
//! # The SQL subset
//! The part of the Service Bus SQL filter grammar Dataverse integrations use (`sql.rs`):
//! comparisons (`=`, `<>`, `!=`, `<`, `>`, `<=`, `>=`), string, number, boolean and `NULL`
//! literals, `AND` / `OR` / `NOT` with parentheses, `EXISTS(p)`, `p IS [NOT] NULL`,
//! `[NOT] LIKE 'pattern' [ESCAPE 'c']` with `%` and `_`, and `[NOT] IN (literal, …)`.
//! Properties are application properties (`name`, `user.name`, `[name with spaces]`) or system
//! properties (`sys.MessageId`, `sys.CorrelationId`, `sys.ContentType`, `sys.Label` /
//! `sys.Subject`, `sys.To`, `sys.ReplyTo`, `sys.SessionId`, `sys.ReplyToSessionId`). Keywords and property names are
//! case-insensitive; string comparisons are ordinal (case-sensitive). Arithmetic, functions and
//! SQL rule actions (`SET …`) are refused with an error saying so.
//!
//! Evaluation uses SQL's three-valued logic, as Service Bus does: a missing application property
//! is unknown, every comparison with unknown is unknown, `NOT unknown` is unknown, and a message
//! matches only when the whole filter is true. Application properties are stored as text, so a
//! comparison with a number or boolean literal reads the property's text as one (`'7' > 5` is
//! true) and is unknown when it does not parse. A system property the message does not carry is
//! unknown too: the embedded queue keeps subject, to, reply-to, session id and reply-to session id
//! only for messages that came through the broker ([`MessageFields::stored`]); the saga's own messages have none.
//!
//! # Why the parser is hand-written
//! No maintained crate parses the Service Bus SQL filter grammar (general SQL parsers such as
//! `sqlparser` accept statements, not this predicate dialect with `sys.` scopes and `[...]`
//! names, and would let through much that Service Bus refuses). The grammar is small, so a
//! recursive-descent parser of a few hundred lines gives exact control over what is accepted,
//! errors that name the character where parsing stopped, and hard bounds on the input
//! ([`MAX_SQL_LENGTH`], [`MAX_DEPTH`]) so that a hostile filter cannot exhaust the stack.

mod eval;
mod sql;

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest SQL filter or rule text accepted, in characters (Service Bus allows 1024; this
/// leaves room and still bounds the work of parsing and evaluating).
pub const MAX_SQL_LENGTH: usize = 4096;
/// The deepest nesting of parentheses and `NOT` accepted: the parser and the evaluator recurse
/// once per level, so this bounds their stack use.
pub const MAX_DEPTH: usize = 32;

/// A rule's filter, as configured or as a client asks for it. Stored as given and compiled
/// ([`Filter::compile`]) when the rule is added and whenever the database is opened.
///
/// In TOML: `filter = "true"`, `filter = { sql = "priority > 5" }` or
/// `filter = { correlation = { correlation-id = "x", properties = { region = "eu" } } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleFilter {
    /// Every message matches (`1=1`; the filter of a new subscription's `$Default` rule).
    True,
    /// No message matches (`1=0`).
    False,
    /// A SQL filter expression.
    Sql(String),
    /// Every field given must equal the message's.
    Correlation(CorrelationFilter),
}

/// A correlation filter: each field that is set must equal the message's (ordinal comparison),
/// and each listed application property must be present with that value (names
/// case-insensitive). A filter with nothing set matches every message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CorrelationFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The message's subject (label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The session a reply should go to (AMQP `reply-to-group-id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to_session_id: Option<String>,
    /// Application properties, by name, with their values as text.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "pairs")]
    pub properties: Vec<(String, String)>,
}

/// `properties` as a map in TOML and JSON, kept in order as pairs in Rust.
mod pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(pairs: &[(String, String)], serializer: S) -> Result<S::Ok, S::Error> {
        let map: BTreeMap<&str, &str> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        map.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<(String, String)>, D::Error> {
        Ok(BTreeMap::<String, String>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

/// The application property a stored message keeps its subject (label) in, for filters: the
/// embedded queue has no column for it, and the broker sets it from the AMQP `subject`. Its
/// prefix is the broker's reserved one, so it is never delivered to a client.
pub const SUBJECT_PROPERTY: &str = "x-sagahost-amqp-subject";
/// As [`SUBJECT_PROPERTY`], for the AMQP `to`.
pub const TO_PROPERTY: &str = "x-sagahost-amqp-to";
/// As [`SUBJECT_PROPERTY`], for the AMQP `reply-to`.
pub const REPLY_TO_PROPERTY: &str = "x-sagahost-amqp-reply-to";
/// As [`SUBJECT_PROPERTY`], for the AMQP `group-id` (Service Bus's session id).
pub const SESSION_ID_PROPERTY: &str = "x-sagahost-amqp-session-id";
/// As [`SUBJECT_PROPERTY`], for the AMQP `reply-to-group-id` (Service Bus's reply-to session id).
pub const REPLY_TO_SESSION_ID_PROPERTY: &str = "x-sagahost-amqp-reply-to-session-id";

/// The fields of a message a filter can look at. Fields the transport does not carry are `None`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MessageFields<'a> {
    pub message_id: Option<&'a str>,
    pub correlation_id: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub to: Option<&'a str>,
    pub reply_to: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub reply_to_session_id: Option<&'a str>,
    /// Application properties as text, in the order sent.
    pub properties: &'a [(String, String)],
}

impl<'a> MessageFields<'a> {
    /// The fields of a message as the embedded queue stores it: the native ones, and the subject,
    /// to, reply-to, session id and reply-to session id from the application properties that keep them
    /// ([`SUBJECT_PROPERTY`] and its siblings), when the sender had them.
    pub fn stored(
        message_id: &'a str,
        correlation_id: Option<&'a str>,
        content_type: Option<&'a str>,
        properties: &'a [(String, String)],
    ) -> Self {
        let fields = Self {
            message_id: Some(message_id),
            correlation_id,
            content_type,
            properties,
            ..Self::default()
        };
        Self {
            subject: fields.property(SUBJECT_PROPERTY),
            to: fields.property(TO_PROPERTY),
            reply_to: fields.property(REPLY_TO_PROPERTY),
            session_id: fields.property(SESSION_ID_PROPERTY),
            reply_to_session_id: fields.property(REPLY_TO_SESSION_ID_PROPERTY),
            ..fields
        }
    }

    /// The value of the application property `name` (case-insensitive), if the message has it.
    fn property(&self, name: &str) -> Option<&'a str> {
        self.properties
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// A filter refused when a rule is added: what is wrong and, for SQL, where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FilterError {
    /// The 1-based character position in the SQL text where the problem is, if it has one.
    pub position: Option<usize>,
    /// What is wrong, and what is accepted instead.
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(position) => write!(f, "SQL filter error at character {position}: {}", self.message),
            None => write!(f, "filter error: {}", self.message),
        }
    }
}

impl FilterError {
    fn at(position: usize, message: impl Into<String>) -> Self {
        Self {
            position: Some(position),
            message: message.into(),
        }
    }

    fn general(message: impl Into<String>) -> Self {
        Self {
            position: None,
            message: message.into(),
        }
    }
}

/// A rule filter ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter(Compiled);

#[derive(Debug, Clone, PartialEq)]
enum Compiled {
    Constant(bool),
    Correlation(CorrelationFilter),
    Sql(sql::Expr),
}

impl Filter {
    /// Checks and compiles `filter`: parses SQL, refusing what the subset does not support.
    pub fn compile(filter: &RuleFilter) -> Result<Self, FilterError> {
        Ok(Self(match filter {
            RuleFilter::True => Compiled::Constant(true),
            RuleFilter::False => Compiled::Constant(false),
            RuleFilter::Correlation(correlation) => Compiled::Correlation(correlation.clone()),
            RuleFilter::Sql(text) => Compiled::Sql(sql::parse(text)?),
        }))
    }

    /// Whether `message` passes the filter (for SQL: the expression is true, not false or unknown).
    pub fn matches(&self, message: &MessageFields<'_>) -> bool {
        match &self.0 {
            Compiled::Constant(value) => *value,
            Compiled::Correlation(filter) => correlation_matches(filter, message),
            Compiled::Sql(expr) => eval::evaluate(expr, message) == Some(true),
        }
    }
}

/// Refuses a SQL rule action: the broker and the embedded queue apply filters only.
pub fn check_action(action: Option<&str>) -> Result<(), FilterError> {
    match action.map(str::trim) {
        None | Some("") => Ok(()),
        Some(action) => Err(FilterError::general(format!(
            "rule actions are not supported (got `{action}`): add the rule with a filter only, and set \
             the properties on the messages when sending them"
        ))),
    }
}

fn correlation_matches(filter: &CorrelationFilter, message: &MessageFields<'_>) -> bool {
    let field = |wanted: &Option<String>, actual: Option<&str>| wanted.as_deref().is_none_or(|w| Some(w) == actual);
    field(&filter.correlation_id, message.correlation_id)
        && field(&filter.message_id, message.message_id)
        && field(&filter.subject, message.subject)
        && field(&filter.content_type, message.content_type)
        && field(&filter.to, message.to)
        && field(&filter.reply_to, message.reply_to)
        && field(&filter.session_id, message.session_id)
        && field(&filter.reply_to_session_id, message.reply_to_session_id)
        && filter
            .properties
            .iter()
            .all(|(name, value)| message.property(name) == Some(value.as_str()))
}

#[cfg(test)]
mod tests;
