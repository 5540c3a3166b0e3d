//! The canonical JSON form of the model: what components receive as
//! `context.json` (see `wit/types.wit`).
//!
//! It is the same whatever format the body came in. Object keys are sorted and
//! members keep their Dataverse names; key/value bags become objects; values JSON
//! cannot type become objects with a `$type` member, e.g.
//! `{"$type":"Money","Value":1500.50}`. Numbers keep their exact digits.
//!
//! One `serde::Serialize` walk over the model ([`Node`]) writes the form. The
//! host writes it straight to text for every message it hands to a component,
//! with no `serde_json::Value` in between: building a tree of sorted maps and
//! then printing it cost the host more per message than decoding the body. The
//! same walk builds a `Value` for the CLI.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Number, Value as Json};

use super::model::{
    AliasedValue, CompactString, Context, DateTime, Entity, EntityCollection, EntityReference, Record, Value,
};

impl Context {
    /// The whole context as canonical JSON: an object of its members.
    pub fn to_canonical_json(&self) -> Json {
        to_json(&Node::Members(&self.members))
    }

    /// The whole context as canonical JSON text, written without an intermediate `Value`.
    pub fn to_canonical_string(&self) -> String {
        to_text(&Node::Members(&self.members))
    }
}

impl Value {
    /// This value as canonical JSON.
    pub fn to_canonical_json(&self) -> Json {
        to_json(&Node::Value(self))
    }

    /// This value as canonical JSON text, written without an intermediate `Value`.
    pub fn to_canonical_string(&self) -> String {
        to_text(&Node::Value(self))
    }
}

fn to_json(node: &Node) -> Json {
    serde_json::to_value(node).expect("the canonical form has only string keys, so it always serializes")
}

fn to_text(node: &Node) -> String {
    serde_json::to_string(node).expect("the canonical form has only string keys, so it always serializes")
}

/// One position of the canonical form, borrowing from the model.
enum Node<'a> {
    Value(&'a Value),
    Null,
    Bool(bool),
    Int(i64),
    Ints(&'a [i32]),
    Number(Number),
    Str(&'a str),
    OptionalStr(Option<&'a str>),
    DateTime(&'a DateTime),
    /// The members of a context, bag, entity or record, as an object.
    Members(&'a [(CompactString, Value)]),
    FormattedValues(&'a [(CompactString, CompactString)]),
    List(&'a [Value]),
    Entities(&'a [Entity]),
    /// An object whose entries [`sorted`] has put in order.
    Object(Vec<(&'a str, Node<'a>)>),
}

impl Serialize for Node<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Value(value) => value_node(value).serialize(serializer),
            Self::Null => serializer.serialize_unit(),
            Self::Bool(b) => serializer.serialize_bool(*b),
            Self::Int(n) => serializer.serialize_i64(*n),
            Self::Ints(ns) => ns.serialize(serializer),
            Self::Number(number) => number.serialize(serializer),
            Self::Str(text) => serializer.serialize_str(text),
            Self::OptionalStr(text) => text.serialize(serializer),
            Self::DateTime(instant) => serializer.collect_str(instant),
            Self::Members(members) => Node::Object(sorted(members_of(members).collect())).serialize(serializer),
            Self::FormattedValues(values) => {
                let entries = values.iter().map(|(name, text)| (name.as_str(), Node::Str(text)));
                Node::Object(sorted(entries.collect())).serialize(serializer)
            }
            Self::List(items) => serializer.collect_seq(items.iter().map(Node::Value)),
            Self::Entities(entities) => serializer.collect_seq(entities.iter().map(entity)),
            Self::Object(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

fn value_node(value: &Value) -> Node<'_> {
    match value {
        Value::Null => Node::Null,
        Value::String(s) => Node::Str(s),
        Value::Bool(b) => Node::Bool(*b),
        Value::Int(i) => Node::Int(*i),
        Value::Decimal(text) => decimal(text),
        Value::Double(d) => double(*d),
        Value::DateTime(instant) => typed("DateTime", [("Value", Node::DateTime(instant))], &[]),
        Value::Guid(guid) => typed("Guid", [("Value", Node::Str(guid))], &[]),
        Value::Money(text) => typed("Money", [("Value", decimal(text))], &[]),
        Value::OptionSet(n) => typed("OptionSetValue", [("Value", Node::Int((*n).into()))], &[]),
        Value::OptionSetCollection(ns) => typed("OptionSetValueCollection", [("Value", Node::Ints(ns))], &[]),
        Value::EntityReference(reference) => entity_reference(reference),
        Value::Entity(e) => entity(e),
        Value::EntityCollection(collection) => entity_collection(collection),
        Value::Aliased(aliased) => aliased_value(aliased),
        Value::Context(context) => Node::Members(&context.members),
        Value::Bag(items) => Node::Members(items),
        Value::List(items) => Node::List(items),
        Value::Record(record) => self::record(record),
    }
}

fn entity_reference(reference: &EntityReference) -> Node<'_> {
    let fields = [
        ("LogicalName", Node::Str(&reference.logical_name)),
        ("Id", Node::Str(&reference.id)),
        ("Name", Node::OptionalStr(reference.name.as_deref())),
    ];
    typed("EntityReference", fields, &reference.other)
}

fn entity(entity: &Entity) -> Node<'_> {
    let fields = [
        ("LogicalName", Node::Str(&entity.logical_name)),
        ("Id", Node::OptionalStr(entity.id.as_deref())),
        ("Attributes", Node::Members(&entity.attributes)),
        ("FormattedValues", Node::FormattedValues(&entity.formatted_values)),
    ];
    typed("Entity", fields, &entity.other)
}

fn entity_collection(collection: &EntityCollection) -> Node<'_> {
    typed(
        "EntityCollection",
        [("Entities", Node::Entities(&collection.entities))],
        &collection.other,
    )
}

fn aliased_value(aliased: &AliasedValue) -> Node<'_> {
    let fields = [
        ("EntityLogicalName", Node::Str(&aliased.entity_logical_name)),
        ("AttributeLogicalName", Node::Str(&aliased.attribute_logical_name)),
        ("Value", Node::Value(&aliased.value)),
    ];
    typed("AliasedValue", fields, &[])
}

fn record(record: &Record) -> Node<'_> {
    match &record.type_name {
        Some(type_name) => typed(type_name, [], &record.members),
        None => Node::Members(&record.members),
    }
}

/// Exact decimal text as a JSON number: with serde_json's `arbitrary_precision`
/// the digits stay as written (`1.0000000000`). Text that is not a JSON number
/// stays a string rather than be lost.
fn decimal(text: &str) -> Node<'_> {
    serde_json::from_str::<Number>(text).map_or(Node::Str(text), Node::Number)
}

/// A double as the shortest number text that round-trips (`47.6062`). JSON has no
/// NaN or infinity, so those become `$type` objects with .NET's spelling.
fn double(d: f64) -> Node<'static> {
    Number::from_f64(d).map_or_else(
        || {
            let text = if d.is_nan() {
                "NaN"
            } else if d > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            };
            typed("Double", [("Value", Node::Str(text))], &[])
        },
        Node::Number,
    )
}

fn members_of(members: &[(CompactString, Value)]) -> impl Iterator<Item = (&str, Node<'_>)> {
    members.iter().map(|(name, value)| (name.as_str(), Node::Value(value)))
}

/// A `$type` object: `other` (the members the model keeps untyped) plus the typed
/// `fields`, which win if a name repeats.
fn typed<'a, const N: usize>(
    type_name: &'a str,
    fields: [(&'a str, Node<'a>); N],
    other: &'a [(CompactString, Value)],
) -> Node<'a> {
    let entries = members_of(other).chain(fields).chain([("$type", Node::Str(type_name))]);
    Node::Object(sorted(entries.collect()))
}

/// `entries` sorted by key in byte order (as a `BTreeMap` sorts), keeping the last entry given
/// of a repeated key. Sorting here rather than relying on `serde_json::Map` being a `BTreeMap`
/// keeps the order even if some crate turns on serde_json's `preserve_order`.
fn sorted<'a>(mut entries: Vec<(&'a str, Node<'a>)>) -> Vec<(&'a str, Node<'a>)> {
    // Stable, so that of entries with one key the last given comes last.
    entries.sort_by(|a, b| a.0.cmp(b.0));
    // `dedup_by` keeps the first entry of a run; swapping each later one into its place keeps the
    // last, in place, with no second vector.
    entries.dedup_by(|later, kept| {
        let repeated = later.0 == kept.0;
        if repeated {
            std::mem::swap(later, kept);
        }
        repeated
    });
    entries
}

#[cfg(test)]
mod tests {
    use super::super::model::DateTime;
    use super::*;

    /// The canonical text, checked to be what the `Value` form prints too.
    fn text(value: &Value) -> String {
        let text = value.to_canonical_string();
        assert_eq!(value.to_canonical_json().to_string(), text);
        text
    }

    #[test]
    fn plain_values_map_to_json() {
        assert_eq!(text(&Value::Null), "null");
        assert_eq!(text(&Value::String("a\"b".into())), r#""a\"b""#);
        assert_eq!(text(&Value::Bool(true)), "true");
        assert_eq!(text(&Value::Int(-42)), "-42");
        assert_eq!(text(&Value::Decimal("1.0000000000".into())), "1.0000000000");
        assert_eq!(text(&Value::Decimal("not a number".into())), r#""not a number""#);
        assert_eq!(text(&Value::Double(47.6062)), "47.6062");
        assert_eq!(text(&Value::Double(f64::NAN)), r#"{"$type":"Double","Value":"NaN"}"#);
        assert_eq!(text(&Value::List(vec![Value::Int(2), Value::Int(1)])), "[2,1]");
    }

    #[test]
    fn typed_values_carry_their_type() {
        assert_eq!(
            text(&Value::DateTime(DateTime::from_unix_millis(1_506_384_247_000))),
            r#"{"$type":"DateTime","Value":"2017-09-26T00:04:07Z"}"#
        );
        assert_eq!(
            text(&Value::Guid("6d81597f".into())),
            r#"{"$type":"Guid","Value":"6d81597f"}"#
        );
        assert_eq!(
            text(&Value::Money("1500.50".into())),
            r#"{"$type":"Money","Value":1500.50}"#
        );
        assert_eq!(text(&Value::OptionSet(0)), r#"{"$type":"OptionSetValue","Value":0}"#);
        assert_eq!(
            text(&Value::OptionSetCollection(vec![1, 2])),
            r#"{"$type":"OptionSetValueCollection","Value":[1,2]}"#
        );
        let aliased = AliasedValue {
            entity_logical_name: "account".into(),
            attribute_logical_name: "name".into(),
            value: Value::String("Contoso".into()),
        };
        assert_eq!(
            text(&Value::Aliased(Box::new(aliased))),
            r#"{"$type":"AliasedValue","AttributeLogicalName":"name","EntityLogicalName":"account","Value":"Contoso"}"#
        );
    }

    #[test]
    fn entities_and_references_sort_their_members() {
        let reference = EntityReference {
            logical_name: "systemuser".into(),
            id: "75c2dd85-e89e-e711-8122-000d3aa2331c".into(),
            name: None,
            other: vec![
                ("RowVersion".into(), Value::Null),
                ("KeyAttributes".into(), Value::Bag(vec![])),
            ],
        };
        assert_eq!(
            text(&Value::EntityReference(reference.clone())),
            r#"{"$type":"EntityReference","Id":"75c2dd85-e89e-e711-8122-000d3aa2331c","KeyAttributes":{},"LogicalName":"systemuser","Name":null,"RowVersion":null}"#
        );
        let contact = Entity {
            logical_name: "contact".into(),
            id: None,
            attributes: vec![
                ("modifiedby".into(), Value::EntityReference(reference)),
                ("firstname".into(), Value::String("James".into())),
            ],
            formatted_values: vec![("statecode".into(), "Active".into())],
            other: vec![("EntityState".into(), Value::Null)],
        };
        let collection = EntityCollection {
            entities: vec![contact],
            other: vec![("MoreRecords".into(), Value::Bool(false))],
        };
        assert_eq!(
            text(&Value::EntityCollection(collection)),
            concat!(
                r#"{"$type":"EntityCollection","Entities":[{"$type":"Entity","Attributes":{"firstname":"James","#,
                r#""modifiedby":{"$type":"EntityReference","Id":"75c2dd85-e89e-e711-8122-000d3aa2331c","KeyAttributes":{},"#,
                r#""LogicalName":"systemuser","Name":null,"RowVersion":null}},"EntityState":null,"#,
                r#""FormattedValues":{"statecode":"Active"},"Id":null,"LogicalName":"contact"}],"MoreRecords":false}"#
            )
        );
    }

    #[test]
    fn bags_become_objects_and_records_keep_their_type() {
        let bag = Value::Bag(vec![
            ("b".into(), Value::Int(1)),
            ("a".into(), Value::Int(2)),
            ("b".into(), Value::Int(3)),
        ]);
        assert_eq!(text(&bag), r#"{"a":2,"b":3}"#);
        let pair = Record {
            type_name: Some("KeyValuePairOfstringstring".into()),
            members: vec![
                ("value".into(), Value::String("Update".into())),
                ("key".into(), Value::String("contact".into())),
            ],
        };
        assert_eq!(
            text(&Value::Record(pair)),
            r#"{"$type":"KeyValuePairOfstringstring","key":"contact","value":"Update"}"#
        );
        let untyped = Record {
            type_name: None,
            members: vec![("z".into(), Value::Null), ("a".into(), Value::Null)],
        };
        assert_eq!(text(&Value::Record(untyped)), r#"{"a":null,"z":null}"#);
    }

    #[test]
    fn contexts_are_plain_objects_and_nest() {
        let parent = Context {
            members: vec![("Stage".into(), Value::Int(30))],
        };
        let context = Context {
            members: vec![
                ("Stage".into(), Value::Int(40)),
                (
                    "OperationCreatedOn".into(),
                    Value::DateTime(DateTime::from_unix_millis(0)),
                ),
                ("ParentContext".into(), Value::Context(Box::new(parent))),
                (
                    "InputParameters".into(),
                    Value::Bag(vec![("Amount".into(), Value::Money("10.00".into()))]),
                ),
            ],
        };
        assert_eq!(
            context.to_canonical_json().to_string(),
            concat!(
                r#"{"InputParameters":{"Amount":{"$type":"Money","Value":10.00}},"#,
                r#""OperationCreatedOn":{"$type":"DateTime","Value":"1970-01-01T00:00:00Z"},"#,
                r#""ParentContext":{"Stage":30},"Stage":40}"#
            )
        );
    }
}
