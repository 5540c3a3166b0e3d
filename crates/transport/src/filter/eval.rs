//! Evaluating a parsed SQL filter against a message, in SQL's three-valued logic: `Some(true)`,
//! `Some(false)` or `None` for unknown.

use std::cmp::Ordering;

use super::MessageFields;
use super::sql::{CompareOp, Expr, Literal, Operand, Property, SystemProperty};

/// A value during evaluation: a literal, or a property's text.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Text(&'a str),
    Number(f64),
    Bool(bool),
    Null,
}

pub(super) fn evaluate(expr: &Expr, message: &MessageFields<'_>) -> Option<bool> {
    match expr {
        Expr::Constant(value) => Some(*value),
        Expr::Not(inner) => evaluate(inner, message).map(|value| !value),
        Expr::And(terms) => {
            let mut result = Some(true);
            for term in terms {
                match evaluate(term, message) {
                    Some(false) => return Some(false),
                    None => result = None,
                    Some(true) => {}
                }
            }
            result
        }
        Expr::Or(terms) => {
            let mut result = Some(false);
            for term in terms {
                match evaluate(term, message) {
                    Some(true) => return Some(true),
                    None => result = None,
                    Some(false) => {}
                }
            }
            result
        }
        Expr::Compare { left, op, right } => {
            let ordering = compare(value(left, message), value(right, message))?;
            Some(match op {
                CompareOp::Eq => ordering == Ordering::Equal,
                CompareOp::Ne => ordering != Ordering::Equal,
                CompareOp::Lt => ordering == Ordering::Less,
                CompareOp::Gt => ordering == Ordering::Greater,
                CompareOp::Le => ordering != Ordering::Greater,
                CompareOp::Ge => ordering != Ordering::Less,
            })
        }
        Expr::IsNull { property, negated } => Some(lookup(property, message).is_none() != *negated),
        Expr::Exists(property) => Some(lookup(property, message).is_some()),
        Expr::Like {
            operand,
            pattern,
            escape,
            negated,
        } => match value(operand, message) {
            Value::Text(text) => Some(like(text, pattern, *escape) != *negated),
            _ => None,
        },
        Expr::In { operand, list, negated } => {
            let left = value(operand, message);
            if matches!(left, Value::Null) {
                return None;
            }
            let mut unknown = false;
            for item in list {
                match compare(left, literal(item)) {
                    Some(Ordering::Equal) => return Some(!*negated),
                    None => unknown = true,
                    Some(_) => {}
                }
            }
            if unknown { None } else { Some(*negated) }
        }
    }
}

fn literal(literal: &Literal) -> Value<'_> {
    match literal {
        Literal::Text(text) => Value::Text(text),
        Literal::Number(n) => Value::Number(*n),
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Null => Value::Null,
    }
}

fn value<'a>(operand: &'a Operand, message: &MessageFields<'a>) -> Value<'a> {
    match operand {
        Operand::Literal(value) => literal(value),
        Operand::Property(property) => lookup(property, message).map_or(Value::Null, Value::Text),
    }
}

fn lookup<'a>(property: &Property, message: &MessageFields<'a>) -> Option<&'a str> {
    match property {
        Property::User(name) => message.property(name),
        Property::System(system) => match system {
            SystemProperty::MessageId => message.message_id,
            SystemProperty::CorrelationId => message.correlation_id,
            SystemProperty::ContentType => message.content_type,
            SystemProperty::Subject => message.subject,
            SystemProperty::To => message.to,
            SystemProperty::ReplyTo => message.reply_to,
            SystemProperty::SessionId => message.session_id,
            SystemProperty::ReplyToSessionId => message.reply_to_session_id,
        },
    }
}

/// Orders two values, or `None` (unknown) when either is NULL or they cannot be compared. Text
/// meets a number or boolean by being read as one, since properties are stored as text.
fn compare(left: Value<'_>, right: Value<'_>) -> Option<Ordering> {
    match (left, right) {
        (Value::Null, _) | (_, Value::Null) => None,
        (Value::Text(a), Value::Text(b)) => Some(a.cmp(b)),
        (Value::Number(a), Value::Number(b)) => a.partial_cmp(&b),
        (Value::Text(text), Value::Number(n)) => text.trim().parse::<f64>().ok()?.partial_cmp(&n),
        (Value::Number(n), Value::Text(text)) => n.partial_cmp(&text.trim().parse::<f64>().ok()?),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(&b)),
        (Value::Text(text), Value::Bool(b)) => Some(as_bool(text)?.cmp(&b)),
        (Value::Bool(b), Value::Text(text)) => Some(b.cmp(&as_bool(text)?)),
        (Value::Number(_), Value::Bool(_)) | (Value::Bool(_), Value::Number(_)) => None,
    }
}

fn as_bool(text: &str) -> Option<bool> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// One element of a LIKE pattern.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Piece {
    Char(char),
    /// `_`: exactly one character.
    One,
    /// `%`: any run of characters.
    Any,
}

fn pieces(pattern: &str, escape: Option<char>) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        pieces.push(match c {
            c if Some(c) == escape => chars.next().map_or(Piece::Char(c), Piece::Char),
            '%' => Piece::Any,
            '_' => Piece::One,
            c => Piece::Char(c),
        });
    }
    pieces
}

/// Whether `text` matches the LIKE `pattern`. Dynamic programming over (text, pattern) positions:
/// time O(text × pattern) whatever the pattern, so no pattern can make matching blow up.
pub(super) fn like(text: &str, pattern: &str, escape: Option<char>) -> bool {
    let pieces = pieces(pattern, escape);
    let text: Vec<char> = text.chars().collect();
    // matched[j]: the text so far matches the first j pieces.
    let mut matched = vec![false; pieces.len() + 1];
    matched[0] = true;
    for j in 0..pieces.len() {
        matched[j + 1] = matched[j] && pieces[j] == Piece::Any;
    }
    for c in &text {
        let mut next = vec![false; pieces.len() + 1];
        for j in 0..pieces.len() {
            next[j + 1] = match pieces[j] {
                Piece::Any => next[j] || matched[j + 1],
                Piece::One => matched[j],
                Piece::Char(p) => matched[j] && p == *c,
            };
        }
        matched = next;
    }
    matched[pieces.len()]
}
