//! The JSON message format: DataContractJsonSerializer output of the
//! `Microsoft.Xrm.Sdk` data contracts.
//!
//! The contract conventions this follows:
//! - a dictionary (`ParameterCollection`, `AttributeCollection`…) is an array of
//!   `{"key": …, "value": …}` pairs;
//! - a value whose declared type is `object` carries its contract as
//!   `"__type": "Name:Namespace"`; a member whose declared type is the contract
//!   itself (an image entity, `OwningExtension`) does not;
//! - collections (`OptionSetValueCollection`, `EntityReferenceCollection`) are bare
//!   arrays, since an array cannot carry `__type`;
//! - `DateTime` is the string `\/Date(ms)\/` or `\/Date(ms±hhmm)\/`.
//!
//! `positions.rs` builds the model from the text in one pass, driven by serde_json
//! through `stream.rs`. An object's members land in the model sorted by name, the last
//! of duplicates winning, whatever order the body has them in; DataContractJsonSerializer
//! writes them in that order already.

mod positions;
mod stream;

use serde_json::{Number, Value as Json};

use super::budget::{Budget, Exhausted, JSON_OBJECT_COST, JSON_VALUE_COST};
use super::model::{CompactString, Context, DateTime, Value};
use super::{DecodeError, Format, Limits, UTF8_BOM};
use stream::{Failure, Order};

type Result<T> = std::result::Result<T, DecodeError>;

/// Decodes a JSON `RemoteExecutionContext`; the body is already within the size limit.
///
/// The pass checks the depth and charges the budget as it goes, counting what
/// [`check_structure`] counts, so a body it decodes is one that check accepts. Only a pass
/// that stops runs the check, before anything else: errors come in the order they did
/// when it ran first, and the tree [`reordered`] builds is paid for before it is built.
pub(super) fn decode(body: &[u8], limits: &Limits) -> Result<Context> {
    let body = body.strip_prefix(UTF8_BOM).unwrap_or(body);
    match positions::context(body, body.len(), limits, Order::Checked) {
        Ok(context) => Ok(context),
        Err(Failure::Decode(error)) => {
            check_structure(body, limits)?;
            // A body that is broken further on says so first, as when it was parsed whole.
            match serde_json::from_slice::<Json>(body) {
                Ok(_) => Err(error),
                Err(syntax) => Err(syntax_error(syntax)),
            }
        }
        Err(Failure::Unordered) => {
            check_structure(body, limits)?;
            match positions::context(&reordered(body)?, body.len(), limits, Order::Trusted) {
                Ok(context) => Ok(context),
                Err(Failure::Decode(error)) => Err(error),
                Err(Failure::Unordered) => unreachable!("a trusted pass does not check the order"),
            }
        }
    }
}

/// The body rewritten in DataContractJsonSerializer's member order: in every object
/// `__type` first, then the other members by name, the last of duplicates kept. For
/// bodies not written by Dataverse; the pre-pass has charged the tree it goes through.
fn reordered(body: &[u8]) -> Result<Vec<u8>> {
    let tree: Json = serde_json::from_slice(body).map_err(syntax_error)?;
    let mut text = Vec::with_capacity(body.len());
    write_in_order(&tree, &mut text);
    Ok(text)
}

fn write_in_order(value: &Json, text: &mut Vec<u8>) {
    match value {
        Json::Array(items) => {
            text.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    text.push(b',');
                }
                write_in_order(item, text);
            }
            text.push(b']');
        }
        Json::Object(members) => {
            // serde_json's map iterates by name; only `__type` moves.
            let hint = members.get_key_value("__type");
            let others = members.iter().filter(|(name, _)| *name != "__type");
            text.push(b'{');
            for (i, (name, member)) in hint.into_iter().chain(others).enumerate() {
                if i > 0 {
                    text.push(b',');
                }
                write_json(text, name);
                text.push(b':');
                write_in_order(member, text);
            }
            text.push(b'}');
        }
        scalar => write_json(text, scalar),
    }
}

fn write_json<T: serde::Serialize + ?Sized>(text: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(text, value).expect("writing JSON to memory does not fail");
}

/// Refuses bodies nested deeper than `max_depth`, or whose values would take more than
/// the decoded-size budget, by a scan of the whole body: before a tree is built for
/// [`reordered`], and before the error of a pass that stopped is reported (the pass
/// counts the same as it goes, see `stream::Decoder`).
///
/// The depth check bounds every recursion that follows, `ParentContext` chains
/// included, and fires before serde_json's own limit (127 levels), whose message is
/// less clear. Only brackets outside strings count.
///
/// The budget is charged for every value (each follows a `[`, `,` or `:`, or is the
/// root), for every object (serde_json's map allocates room for eleven members at
/// once) and for every byte of the body twice (strings, names and number text are
/// copied into the model, and into serde_json's tree for a body whose members must be
/// put in order first). Counting is a single pass that
/// allocates nothing, so a body over budget costs no more than reading it.
fn check_structure(body: &[u8], limits: &Limits) -> Result<()> {
    let (mut depth, mut values, mut objects) = (0_usize, 1_usize, 0_usize);
    let mut offset = 0;
    while let Some(&byte) = body.get(offset) {
        match byte {
            b'"' => offset = string_end(body, offset + 1),
            b'{' | b'[' => {
                depth += 1;
                if depth > limits.max_depth {
                    let (line, column) = position(body, offset);
                    return Err(DecodeError::TooDeep {
                        format: Format::Json,
                        limit: limits.max_depth,
                        line,
                        column,
                    });
                }
                if byte == b'{' {
                    objects += 1;
                } else {
                    values += 1;
                }
            }
            b',' | b':' => values += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        offset += 1;
    }
    let mut budget = Budget::new(body.len(), limits);
    budget
        .charge_each(values, JSON_VALUE_COST)
        .and_then(|()| budget.charge_each(objects, JSON_OBJECT_COST))
        .and_then(|()| budget.charge_each(body.len(), 2))
        .map_err(|Exhausted { limit }| DecodeError::Expansion {
            format: Format::Json,
            size: body.len(),
            limit,
        })
}

/// The offset of the quote that closes the string whose text starts at `start`, or the
/// body's length if it is not closed. Strings are most of a body, so they are skipped a
/// quote or backslash at a time.
fn string_end(body: &[u8], mut start: usize) -> usize {
    while let Some(found) = memchr::memchr2(b'"', b'\\', &body[start..]) {
        let at = start + found;
        if body[at] == b'"' {
            return at;
        }
        // A backslash escapes the byte after it, whatever it is.
        start = at + 2;
        if start >= body.len() {
            break;
        }
    }
    body.len()
}

/// One-based line and column of a byte offset, counted the way serde_json does.
fn position(body: &[u8], offset: usize) -> (usize, usize) {
    let before = &body[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |newline| newline + 1);
    (line, offset - line_start + 1)
}

pub(super) fn syntax_error(err: serde_json::Error) -> DecodeError {
    let (line, column) = (err.line(), err.column());
    // serde_json's message ends with " at line L column C"; the variant says it its own way.
    let message = err.to_string();
    let reason = message
        .strip_suffix(&format!(" at line {line} column {column}"))
        .unwrap_or(&message);
    DecodeError::Syntax {
        format: Format::Json,
        line,
        column,
        reason: reason.to_owned(),
    }
}

/// A whole number that fits `i64` is an `Int`; anything else keeps its exact text
/// (serde_json's `arbitrary_precision` preserves it), since JSON cannot say
/// whether `1.0000000000` was a decimal or a double.
fn number(text: &str) -> Result<Value> {
    match text.parse() {
        Ok(n) => Ok(Value::Int(n)),
        Err(_) => exact_number(text).map(Value::Decimal),
    }
}

/// A number's exact text, checked to be a JSON number: serde_json hands numbers over as
/// text, and a hostile object can pose as one (see `stream::NUMBER_TOKEN`).
fn exact_number(text: &str) -> Result<CompactString> {
    match text.parse::<Number>() {
        Ok(_) => Ok(text.into()),
        Err(_) => Err(DecodeError::Shape {
            path: String::new(),
            expected: "a number",
            found: "other text",
        }),
    }
}

/// `/Date(ms)/` or `/Date(ms±hhmm)/`: milliseconds since the Unix epoch, in UTC.
///
/// DataContractJsonSerializer writes `"\/Date(…)\/"`; serde_json has already
/// unescaped `\/` to `/`, so the escaped and unescaped forms are accepted alike.
/// The `±hhmm` suffix is only the server's local offset (written for local-kind
/// dates): the milliseconds are UTC either way, so it does not move the instant.
fn parse_date(text: &str) -> Option<DateTime> {
    let inner = text.strip_prefix("/Date(")?.strip_suffix(")/")?;
    // Search from the second byte so a leading minus stays with the milliseconds.
    let (millis, offset) = match inner.get(1..)?.find(['+', '-']) {
        Some(i) => inner.split_at(i + 1),
        None => (inner, ""),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let offset_ok = offset.is_empty() || (offset.len() == 5 && digits(&offset[1..]));
    if !offset_ok || !digits(millis.strip_prefix('-').unwrap_or(millis)) {
        return None;
    }
    millis.parse().ok().map(DateTime::from_unix_millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Record;

    #[test]
    fn dates_are_utc_milliseconds_whatever_the_offset() {
        let instant = Some(DateTime::from_unix_millis(1_506_409_448_000));
        assert_eq!(parse_date("/Date(1506409448000)/"), instant);
        assert_eq!(parse_date("/Date(1506409448000-0700)/"), instant);
        assert_eq!(parse_date("/Date(1506409448000+0530)/"), instant);
        assert_eq!(
            parse_date("/Date(-62135596800000)/"),
            Some(DateTime::from_unix_millis(-62_135_596_800_000))
        );
        assert_eq!(parse_date("/Date(-1+0000)/"), Some(DateTime::from_unix_millis(-1)));
    }

    #[test]
    fn near_dates_stay_strings() {
        for text in [
            "/Date()/",
            "/Date(12a)/",
            "/Date(1+07)/",
            "/Date(1+07000)/",
            "Date(1)",
            "/Date(1)",
            "/Date(+1)/",
            "/Date(--1)/",
        ] {
            assert_eq!(parse_date(text), None, "{text}");
        }
    }

    #[test]
    fn escaped_and_plain_slashes_decode_alike() {
        let limits = Limits::default();
        let context = decode(br#"{"A":"\/Date(0)\/","B":"/Date(0)/"}"#, &limits).unwrap();
        assert_eq!(context.member("A"), context.member("B"));
        assert_eq!(
            context.member("A"),
            Some(&Value::DateTime(DateTime::from_unix_millis(0)))
        );
    }

    #[test]
    fn numbers_are_ints_when_they_fit_else_exact_text() {
        let context = decode(
            br#"{"A":9223372036854775807,"B":9223372036854775808,"C":-1,"D":1.50,"E":2}"#,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(context.member("A"), Some(&Value::Int(i64::MAX)));
        assert_eq!(context.member("B"), Some(&Value::Decimal("9223372036854775808".into())));
        assert_eq!(context.member("C"), Some(&Value::Int(-1)));
        assert_eq!(context.member("D"), Some(&Value::Decimal("1.50".into())));
    }

    #[test]
    fn entity_ids_are_lowercase_and_the_empty_guid_is_none() {
        let body = br#"{"A":{"__type":"Entity:x","Id":"00000000-0000-0000-0000-000000000000","LogicalName":"contact"},
                        "B":{"__type":"EntityReference:x","Id":"6D81597F-0F9F-E711-8122-000D3AA2331C","LogicalName":"contact","Name":"J"}}"#;
        let context = decode(body, &Limits::default()).unwrap();
        let Some(Value::Entity(entity)) = context.member("A") else {
            panic!()
        };
        assert_eq!((entity.logical_name.as_str(), entity.id.as_deref()), ("contact", None));
        let Some(Value::EntityReference(reference)) = context.member("B") else {
            panic!()
        };
        assert_eq!(reference.id, "6d81597f-0f9f-e711-8122-000d3aa2331c");
        assert_eq!(reference.name.as_deref(), Some("J"));
    }

    #[test]
    fn dropped_bags_are_empty_in_every_form() {
        let body = br#"{"InputParameters":null,"OutputParameters":[],"A":{"__type":"Entity:x","Attributes":null}}"#;
        let context = decode(body, &Limits::default()).unwrap();
        assert_eq!(context.member("InputParameters"), Some(&Value::Bag(vec![])));
        assert_eq!(context.member("OutputParameters"), Some(&Value::Bag(vec![])));
        assert!(context.bag("PreEntityImages").is_empty());
        let Some(Value::Entity(entity)) = context.member("A") else {
            panic!()
        };
        assert!(entity.attributes.is_empty() && entity.formatted_values.is_empty());
    }

    #[test]
    fn unknown_types_and_untyped_objects_become_records() {
        let body = br#"{"InputParameters":[
            {"key":"Relationship","value":{"__type":"Relationship:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts","PrimaryEntityRole":null,"SchemaName":"account_primary_contact"}},
            {"key":"Plain","value":{"a":1}},
            {"key":"Mixed","value":[{"__type":"OptionSetValue:x","Value":1},2]},
            {"key":"Empty","value":[]}]}"#;
        let context = decode(body, &Limits::default()).unwrap();
        let bag = context.bag("InputParameters");
        assert_eq!(
            bag[0].1,
            Value::Record(Record {
                type_name: Some("Relationship".into()),
                members: vec![
                    ("PrimaryEntityRole".into(), Value::Null),
                    ("SchemaName".into(), Value::String("account_primary_contact".into())),
                ],
            })
        );
        assert_eq!(
            bag[1].1,
            Value::Record(Record {
                type_name: None,
                members: vec![("a".into(), Value::Int(1))]
            })
        );
        assert_eq!(bag[2].1, Value::List(vec![Value::OptionSet(1), Value::Int(2)]));
        assert_eq!(bag[3].1, Value::List(vec![]));
    }

    #[test]
    fn related_entities_are_keyed_by_relationship() {
        let body = br#"{"A":{"__type":"Entity:x","LogicalName":"account","RelatedEntities":[
            {"key":{"PrimaryEntityRole":null,"SchemaName":"contact_customer_accounts"},
             "value":{"Entities":[{"LogicalName":"contact","Id":"6d81597f-0f9f-e711-8122-000d3aa2331c"}],"EntityName":"contact"}},
            {"key":{"PrimaryEntityRole":1,"SchemaName":"account_parent_account"},"value":null}]}}"#;
        let context = decode(body, &Limits::default()).unwrap();
        let Some(Value::Entity(account)) = context.member("A") else {
            panic!()
        };
        let Value::Bag(related) = &account.other[0].1 else {
            panic!("{:?}", account.other)
        };
        assert_eq!(related[0].0, "contact_customer_accounts");
        let Value::EntityCollection(contacts) = &related[0].1 else {
            panic!()
        };
        assert_eq!(contacts.entities[0].logical_name, "contact");
        assert_eq!(related[1], ("account_parent_account.Referenced".into(), Value::Null));
    }

    /// The pass counts depth and budget as `check_structure` does, so it refuses a body
    /// at exactly the limits the scan does: the scan runs only when the pass stops.
    #[test]
    fn the_pass_refuses_a_body_at_the_limits_the_scan_does() {
        let samples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/samples/dataverse");
        // Members in order and out (the second goes through the rewrite), skipped members
        // nested deep, empty and one-item lists and objects, and numbers of every kind.
        let mut bodies = vec![
            br#"{"A":[],"B":[1],"C":{},"D":[[[],[{}]]],"E":{"__type":"Entity:x","Zz":{"q":[[1,{"r":[2]}]]}},"F":1.5e3}"#.to_vec(),
            br#"{"B":[{"y":1,"x":[2,3]}],"A":{"LogicalName":"c","__type":"Entity:x","Q":[[[]]]},"C":-1}"#.to_vec(),
        ];
        for entry in std::fs::read_dir(samples).unwrap() {
            let path = entry.unwrap().path();
            if path.to_string_lossy().ends_with(".dcjs.json") {
                bodies.push(std::fs::read(&path).unwrap());
            }
        }
        for body in &bodies {
            let (mut accepted, mut refused) = (0, 0);
            let body = body.strip_prefix(UTF8_BOM).unwrap_or(body);
            let depths = (1..24).map(|depth| (depth, 400));
            let budgets = (2..40).chain([100]).map(|expansion| (64, expansion));
            for (max_depth, max_expansion) in depths.chain(budgets) {
                let limits = Limits {
                    max_depth,
                    max_expansion,
                    expansion_allowance: 0,
                    ..Limits::default()
                };
                let scanned = check_structure(body, &limits);
                let decoded = decode(body, &limits);
                match (&scanned, &decoded) {
                    (Ok(()), Ok(_)) => accepted += 1,
                    (Err(scan), Err(pass)) if scan.to_string() == pass.to_string() => refused += 1,
                    _ => panic!("depth {max_depth}, expansion {max_expansion}: scan {scanned:?}, pass {decoded:?}"),
                }
            }
            // Both sides of both limits were tried.
            assert!(accepted > 0 && refused > 0, "{accepted} accepted, {refused} refused");
        }
    }

    /// Dataverse writes members in the order the single pass takes, so its bodies never go
    /// through the rewrite.
    #[test]
    fn dataverse_bodies_decode_in_one_pass() {
        let samples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/samples/dataverse");
        let mut decoded = 0;
        for entry in std::fs::read_dir(samples).unwrap() {
            let path = entry.unwrap().path();
            if !path.to_string_lossy().ends_with(".dcjs.json") {
                continue;
            }
            let body = std::fs::read(&path).unwrap();
            let body = body.strip_prefix(UTF8_BOM).unwrap_or(&body);
            let pass = positions::context(body, body.len(), &Limits::default(), Order::Checked);
            assert!(pass.is_ok(), "{}: {:?}", path.display(), pass.err());
            decoded += 1;
        }
        assert!(decoded >= 3, "only {decoded} JSON samples");
    }

    #[test]
    fn members_in_any_order_decode_as_in_contract_order() {
        let in_order = br#"{"InputParameters":[{"key":"Target","value":{"__type":"Entity:x",
            "Attributes":[{"key":"a","value":{"__type":"OptionSetValue:x","Value":1}},{"key":"b","value":{"x":1,"y":2}}],
            "Id":"6D81597F-0F9F-E711-8122-000D3AA2331C","LogicalName":"contact"}}],"MessageName":"Create"}"#;
        // `__type` last, as a tool that sorts names writes it, and everything else shuffled.
        let shuffled = br#"{"MessageName":"Create","InputParameters":[{"value":{"LogicalName":"contact",
            "Id":"6D81597F-0F9F-E711-8122-000D3AA2331C",
            "Attributes":[{"value":{"Value":1,"__type":"OptionSetValue:x"},"key":"a"},{"key":"b","value":{"y":2,"x":1}}],
            "__type":"Entity:x"},"key":"Target"}]}"#;
        assert!(matches!(
            positions::context(shuffled, shuffled.len(), &Limits::default(), Order::Checked),
            Err(Failure::Unordered)
        ));
        let expected = decode(in_order, &Limits::default()).unwrap();
        assert_eq!(decode(shuffled, &Limits::default()).unwrap(), expected);
        let Some(Value::Bag(parameters)) = expected.member("InputParameters") else {
            panic!("{expected:?}")
        };
        let Value::Entity(target) = &parameters[0].1 else {
            panic!("{parameters:?}")
        };
        assert_eq!(target.attributes[0].1, Value::OptionSet(1));
    }

    #[test]
    fn the_last_of_duplicate_members_wins() {
        let context = decode(br#"{"A":1,"B":2,"A":3}"#, &Limits::default()).unwrap();
        let names: Vec<&str> = context.members.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["A", "B"]);
        assert_eq!(context.member("A"), Some(&Value::Int(3)));
    }

    /// The single pass meets a misshapen member before a syntax error further on; the
    /// syntax error is what the sender has to fix first, so it is the one reported.
    #[test]
    fn a_broken_body_reports_its_syntax_before_its_shapes() {
        let err = decode(
            br#"{"InputParameters":[1],"MessageName":"Create",}"#,
            &Limits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, DecodeError::Syntax { column: 47, .. }), "{err}");
    }

    /// serde_json hands a number with `arbitrary_precision` over as an object with one
    /// private member; an object a body spells that way is not taken for a number. (The
    /// body is refused as serde_json refuses it when it reads it whole.)
    #[test]
    fn objects_posing_as_numbers_are_refused() {
        let err = decode(br#"{"A":{"$serde_json::private::Number":"1x"}}"#, &Limits::default()).unwrap_err();
        assert!(
            matches!(&err, DecodeError::Syntax { reason, .. } if reason == "invalid number"),
            "{err}"
        );
        let number = decode(br#"{"A":{"$serde_json::private::Number":"12"}}"#, &Limits::default()).unwrap();
        assert_eq!(number.member("A"), Some(&Value::Int(12)));
    }

    #[test]
    fn bags_reject_bad_items() {
        let err = |body: &[u8]| decode(body, &Limits::default()).unwrap_err().to_string();
        assert_eq!(
            err(br#"{"InputParameters":[1]}"#),
            "InputParameters[0]: expected a {key, value} pair, found a number"
        );
        assert_eq!(
            err(br#"{"A":{"__type":"Entity:x","FormattedValues":[{"key":"a","value":1}]}}"#),
            "A.FormattedValues.a: expected a string, found a number"
        );
        assert_eq!(
            err(br#"{"OwningExtension":"x"}"#),
            "OwningExtension: expected an object, found a string"
        );
        assert_eq!(
            err(br#"{"A":{"__type":"EntityCollection:x","Entities":[{},2]}}"#),
            "A.Entities[1]: expected an entity object, found a number"
        );
    }
}
