//! The canonical JSON form of the model: what components receive as
//! `context.json` (see `wit/types.wit`).
//!
//! It is the same whatever format the body came in. Object keys are sorted and
//! members keep their Dataverse names; key/value bags become objects; values JSON
//! cannot type become objects with a `$type` member, e.g.
//! `{"$type":"Money","Value":1500.50}`. Numbers keep their exact digits.

use std::collections::BTreeMap;

use serde_json::{Map, Number, Value as Json};

use super::model::{AliasedValue, Context, Entity, EntityCollection, EntityReference, Record, Value};

impl Context {
    /// The whole context as canonical JSON: an object of its members.
    pub fn to_canonical_json(&self) -> Json {
        object(members(&self.members))
    }
}

impl Value {
    /// This value as canonical JSON.
    pub fn to_canonical_json(&self) -> Json {
        match self {
            Self::Null => Json::Null,
            Self::String(s) => Json::from(s.as_str()),
            Self::Bool(b) => Json::Bool(*b),
            Self::Int(i) => Json::from(*i),
            Self::Decimal(text) => decimal(text),
            Self::Double(d) => double(*d),
            Self::DateTime(instant) => typed("DateTime", [("Value", Json::from(instant.to_string()))], &[]),
            Self::Guid(guid) => typed("Guid", [("Value", Json::from(guid.as_str()))], &[]),
            Self::Money(text) => typed("Money", [("Value", decimal(text))], &[]),
            Self::OptionSet(n) => typed("OptionSetValue", [("Value", Json::from(*n))], &[]),
            Self::OptionSetCollection(ns) => {
                typed("OptionSetValueCollection", [("Value", Json::from(ns.clone()))], &[])
            }
            Self::EntityReference(reference) => entity_reference(reference),
            Self::Entity(e) => entity(e),
            Self::EntityCollection(collection) => entity_collection(collection),
            Self::Aliased(aliased) => aliased_value(aliased),
            Self::Context(context) => context.to_canonical_json(),
            Self::Bag(items) => object(members(items)),
            Self::List(items) => items.iter().map(Self::to_canonical_json).collect(),
            Self::Record(record) => self::record(record),
        }
    }
}

fn entity_reference(reference: &EntityReference) -> Json {
    let fields = [
        ("LogicalName", Json::from(reference.logical_name.as_str())),
        ("Id", Json::from(reference.id.as_str())),
        ("Name", reference.name.as_deref().map_or(Json::Null, Json::from)),
    ];
    typed("EntityReference", fields, &reference.other)
}

fn entity(entity: &Entity) -> Json {
    let formatted = entity
        .formatted_values
        .iter()
        .map(|(name, text)| (name.clone(), Json::from(text.as_str())));
    let fields = [
        ("LogicalName", Json::from(entity.logical_name.as_str())),
        ("Id", entity.id.as_deref().map_or(Json::Null, Json::from)),
        ("Attributes", object(members(&entity.attributes))),
        ("FormattedValues", object(formatted)),
    ];
    typed("Entity", fields, &entity.other)
}

fn entity_collection(collection: &EntityCollection) -> Json {
    let entities = collection.entities.iter().map(entity).collect();
    typed("EntityCollection", [("Entities", entities)], &collection.other)
}

fn aliased_value(aliased: &AliasedValue) -> Json {
    let fields = [
        ("EntityLogicalName", Json::from(aliased.entity_logical_name.as_str())),
        (
            "AttributeLogicalName",
            Json::from(aliased.attribute_logical_name.as_str()),
        ),
        ("Value", aliased.value.to_canonical_json()),
    ];
    typed("AliasedValue", fields, &[])
}

fn record(record: &Record) -> Json {
    match &record.type_name {
        Some(type_name) => typed(type_name, [], &record.members),
        None => object(members(&record.members)),
    }
}

/// Exact decimal text as a JSON number: with serde_json's `arbitrary_precision`
/// the digits stay as written (`1.0000000000`). Text that is not a JSON number
/// stays a string rather than be lost.
fn decimal(text: &str) -> Json {
    serde_json::from_str::<Number>(text).map_or_else(|_| Json::from(text), Json::Number)
}

/// A double as the shortest number text that round-trips (`47.6062`). JSON has no
/// NaN or infinity, so those become `$type` objects with .NET's spelling.
fn double(d: f64) -> Json {
    Number::from_f64(d).map_or_else(
        || {
            let text = if d.is_nan() {
                "NaN"
            } else if d > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            };
            typed("Double", [("Value", Json::from(text))], &[])
        },
        Json::Number,
    )
}

fn members(members: &[(String, Value)]) -> impl Iterator<Item = (String, Json)> + '_ {
    members
        .iter()
        .map(|(name, value)| (name.clone(), value.to_canonical_json()))
}

/// A `$type` object: `other` (the members the model keeps untyped) plus the typed
/// `fields`, which win if a name repeats.
fn typed<'a>(type_name: &str, fields: impl IntoIterator<Item = (&'a str, Json)>, other: &[(String, Value)]) -> Json {
    let fields = fields.into_iter().map(|(name, value)| (name.to_owned(), value));
    let tag = ("$type".to_owned(), Json::from(type_name));
    object(members(other).chain(fields).chain([tag]))
}

/// An object with sorted keys; a repeated key keeps its last value.
///
/// Sorting here rather than relying on `serde_json::Map` being a `BTreeMap` keeps
/// the order even if some crate turns on serde_json's `preserve_order`.
fn object(entries: impl IntoIterator<Item = (String, Json)>) -> Json {
    let sorted: BTreeMap<String, Json> = entries.into_iter().collect();
    Json::Object(sorted.into_iter().collect::<Map<_, _>>())
}

#[cfg(test)]
mod tests {
    use super::super::model::DateTime;
    use super::*;

    fn text(value: &Value) -> String {
        value.to_canonical_json().to_string()
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
