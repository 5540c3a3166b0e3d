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
//! serde_json's map keeps members sorted by name. DataContractJsonSerializer
//! already writes data members in ordinal name order, so for Dataverse bodies that
//! is the body order.

use serde_json::{Map, Number, Value as Json};

use super::budget::{Budget, Exhausted, JSON_OBJECT_COST, JSON_VALUE_COST};
use super::contract::{self, EMPTY_GUID, Member, at};
use super::model::{AliasedValue, Context, DateTime, Entity, EntityCollection, EntityReference, Record, Value};
use super::{DecodeError, Format, Limits, UTF8_BOM};

type Result<T> = std::result::Result<T, DecodeError>;

/// Decodes a JSON `RemoteExecutionContext`; the body is already within the size limit.
pub(super) fn decode(body: &[u8], limits: &Limits) -> Result<Context> {
    let body = body.strip_prefix(UTF8_BOM).unwrap_or(body);
    check_structure(body, limits)?;
    match serde_json::from_slice(body).map_err(syntax_error)? {
        Json::Object(members) => Decoder { limits }.context(members),
        other => Err(DecodeError::NotAContext {
            format: Format::Json,
            found: kind(&other),
        }),
    }
}

/// Refuses bodies nested deeper than `max_depth`, or whose values would take more than
/// the decoded-size budget, before serde_json parses them.
///
/// The depth check bounds every recursion that follows, `ParentContext` chains
/// included, and fires before serde_json's own limit (127 levels), whose message is
/// less clear. Only brackets outside strings count.
///
/// The budget is charged for every value (each follows a `[`, `,` or `:`, or is the
/// root), for every object (serde_json's map allocates room for eleven members at
/// once) and for every byte of the body twice (strings, names and number text are
/// copied into serde_json's tree, then into the model). Counting is a single pass that
/// allocates nothing, so a body over budget costs no more than reading it.
fn check_structure(body: &[u8], limits: &Limits) -> Result<()> {
    let (mut depth, mut in_string, mut escaped) = (0_usize, false, false);
    let (mut values, mut objects) = (1_usize, 0_usize);
    for (offset, &byte) in body.iter().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
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

fn syntax_error(err: serde_json::Error) -> DecodeError {
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

/// Converts the parsed JSON tree into the model, checking shapes and string sizes.
struct Decoder<'a> {
    limits: &'a Limits,
}

impl Decoder<'_> {
    fn context(&self, members: Map<String, Json>) -> Result<Context> {
        let members = members
            .into_iter()
            .map(|(name, value)| {
                let value = self.context_member(&name, value).map_err(at(&name))?;
                Ok((name, value))
            })
            .collect::<Result<_>>()?;
        Ok(Context { members })
    }

    /// Context members whose declared type is not `object` carry no `__type`, so
    /// their type comes from the contract.
    fn context_member(&self, name: &str, value: Json) -> Result<Value> {
        match contract::context_member(name) {
            Member::Bag => Ok(Value::Bag(self.bag(value, Self::value)?)),
            Member::Images => {
                let image = |decoder: &Self, value| {
                    decoder.nullable(value, |m| Ok(Value::Entity(Box::new(decoder.entity(m)?))))
                };
                Ok(Value::Bag(self.bag(value, image)?))
            }
            Member::EntityReference => self.nullable(value, |m| Ok(Value::EntityReference(self.entity_reference(m)?))),
            Member::Context => self.nullable(value, |m| Ok(Value::Context(Box::new(self.context(m)?)))),
            // JSON types these members itself.
            _ => self.value(value),
        }
    }

    /// A value whose declared type is `object`: its JSON kind and `__type` say what it is.
    fn value(&self, value: Json) -> Result<Value> {
        Ok(match value {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(b),
            Json::Number(n) => number(&n),
            Json::String(s) => {
                let s = self.string(s)?;
                parse_date(&s).map_or(Value::String(s), Value::DateTime)
            }
            Json::Array(items) => self.list(items)?,
            Json::Object(members) => self.object(members)?,
        })
    }

    /// An array; a non-empty one made only of `OptionSetValue`s is a multi-select
    /// choice (`OptionSetValueCollection`), which has no other JSON form.
    fn list(&self, items: Vec<Json>) -> Result<Value> {
        let values = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| self.value(item).map_err(at(&format!("[{i}]"))))
            .collect::<Result<Vec<_>>>()?;
        let options: Option<Vec<i32>> = values
            .iter()
            .map(|v| match v {
                Value::OptionSet(n) => Some(*n),
                _ => None,
            })
            .collect();
        Ok(match options {
            Some(options) if !options.is_empty() => Value::OptionSetCollection(options),
            _ => Value::List(values),
        })
    }

    fn object(&self, mut members: Map<String, Json>) -> Result<Value> {
        let type_name = match members.remove("__type") {
            None => None,
            // `Name:Namespace`; the namespace adds nothing once the name is known.
            Some(Json::String(hint)) => Some(hint.split(':').next().unwrap_or_default().to_owned()),
            Some(other) => return Err(shape("a string", &other)).map_err(at("__type")),
        };
        Ok(match type_name.as_deref() {
            Some("Entity") => Value::Entity(Box::new(self.entity(members)?)),
            Some("EntityReference") => Value::EntityReference(self.entity_reference(members)?),
            Some("EntityCollection") => Value::EntityCollection(self.entity_collection(members)?),
            Some("AliasedValue") => Value::Aliased(Box::new(self.aliased(members)?)),
            Some("OptionSetValue") => Value::OptionSet(option_set(members)?),
            Some("Money") => Value::Money(money(members)?),
            _ => Value::Record(Record {
                type_name,
                members: self.members(members)?,
            }),
        })
    }

    /// The members of a contract the model does not type, each decoded as `object`.
    fn members(&self, members: Map<String, Json>) -> Result<Vec<(String, Value)>> {
        members
            .into_iter()
            .map(|(name, value)| {
                let value = self.value(value).map_err(at(&name))?;
                Ok((name, value))
            })
            .collect()
    }

    fn entity(&self, members: Map<String, Json>) -> Result<Entity> {
        let mut entity = Entity::default();
        for (name, value) in members {
            match name.as_str() {
                "LogicalName" => entity.logical_name = self.text(value).map_err(at(&name))?,
                "Id" => entity.id = self.entity_id(value).map_err(at(&name))?,
                "Attributes" => entity.attributes = self.bag(value, Self::value).map_err(at(&name))?,
                "FormattedValues" => {
                    entity.formatted_values = self.bag(value, Self::string_value).map_err(at(&name))?
                }
                // The hint, when a schema-typed position repeats it, says nothing new.
                "__type" => {}
                _ => {
                    let value = self.other_member(&name, value).map_err(at(&name))?;
                    entity.other.push((name, value));
                }
            }
        }
        Ok(entity)
    }

    fn entity_reference(&self, members: Map<String, Json>) -> Result<EntityReference> {
        let mut reference = EntityReference::default();
        for (name, value) in members {
            match name.as_str() {
                "LogicalName" => reference.logical_name = self.text(value).map_err(at(&name))?,
                "Id" => reference.id = self.text(value).map_err(at(&name))?.to_ascii_lowercase(),
                "Name" => reference.name = self.optional_string(value).map_err(at(&name))?,
                "__type" => {}
                _ => {
                    let value = self.other_member(&name, value).map_err(at(&name))?;
                    reference.other.push((name, value));
                }
            }
        }
        Ok(reference)
    }

    /// Members of `Entity` and `EntityReference` the model keeps untyped but whose
    /// contract type is known.
    fn other_member(&self, name: &str, value: Json) -> Result<Value> {
        match name {
            "KeyAttributes" => Ok(Value::Bag(self.bag(value, Self::value)?)),
            "RelatedEntities" => self.related_entities(value),
            _ => self.value(value),
        }
    }

    /// `RelatedEntityCollection`: pairs keyed by a `Relationship` object rather than
    /// a string. The key becomes the relationship's schema name, with the entity role
    /// appended when set (only self-referencing relationships set it).
    fn related_entities(&self, value: Json) -> Result<Value> {
        let related = pairs(value)?
            .into_iter()
            .enumerate()
            .map(|(i, (key, value))| {
                let key = self
                    .relationship(key)
                    .map_err(at("key"))
                    .map_err(at(&format!("[{i}]")))?;
                let value = self.nullable(value, |m| Ok(Value::EntityCollection(self.entity_collection(m)?)));
                let value = value.map_err(at(&key))?;
                Ok((key, value))
            })
            .collect::<Result<_>>()?;
        Ok(Value::Bag(related))
    }

    fn relationship(&self, key: Json) -> Result<String> {
        let Json::Object(mut members) = key else {
            return Err(shape("a Relationship object", &key));
        };
        let schema_name = members.remove("SchemaName").unwrap_or(Json::Null);
        let schema_name = self.text(schema_name).map_err(at("SchemaName"))?;
        // `EntityRole`: 0 Referencing, 1 Referenced.
        let role = members.remove("PrimaryEntityRole").and_then(|role| role.as_i64());
        Ok(match role {
            Some(0) => format!("{schema_name}.Referencing"),
            Some(1) => format!("{schema_name}.Referenced"),
            _ => schema_name,
        })
    }

    fn entity_collection(&self, members: Map<String, Json>) -> Result<EntityCollection> {
        let mut collection = EntityCollection::default();
        for (name, value) in members {
            match name.as_str() {
                "Entities" => collection.entities = self.entities(value).map_err(at(&name))?,
                "__type" => {}
                _ => {
                    let value = self.value(value).map_err(at(&name))?;
                    collection.other.push((name, value));
                }
            }
        }
        Ok(collection)
    }

    /// `EntityCollection.Entities`: entities by contract, so without `__type`.
    fn entities(&self, value: Json) -> Result<Vec<Entity>> {
        let items = match value {
            Json::Null => Vec::new(),
            Json::Array(items) => items,
            other => return Err(shape("a list of entities", &other)),
        };
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                match item {
                    Json::Object(members) => self.entity(members),
                    other => Err(shape("an entity object", &other)),
                }
                .map_err(at(&format!("[{i}]")))
            })
            .collect()
    }

    fn aliased(&self, mut members: Map<String, Json>) -> Result<AliasedValue> {
        let mut member = |name: &str| members.remove(name).unwrap_or(Json::Null);
        let entity_logical_name = self
            .text(member("EntityLogicalName"))
            .map_err(at("EntityLogicalName"))?;
        let attribute_logical_name = self
            .text(member("AttributeLogicalName"))
            .map_err(at("AttributeLogicalName"))?;
        let value = self.value(member("Value")).map_err(at("Value"))?;
        Ok(AliasedValue {
            entity_logical_name,
            attribute_logical_name,
            value,
        })
    }

    /// A key/value collection. Missing (handled by the caller), `null` and `[]` all
    /// mean empty: Dataverse uses each when it drops a member.
    fn bag<T>(&self, value: Json, item: impl Fn(&Self, Json) -> Result<T>) -> Result<Vec<(String, T)>> {
        pairs(value)?
            .into_iter()
            .enumerate()
            .map(|(i, (key, value))| {
                let key = match key {
                    Json::String(key) => self.string(key),
                    other => Err(shape("a string", &other)),
                };
                let key = key.map_err(at("key")).map_err(at(&format!("[{i}]")))?;
                let value = item(self, value).map_err(at(&key))?;
                Ok((key, value))
            })
            .collect()
    }

    /// A `FormattedValues` entry, which is always text.
    fn string_value(&self, value: Json) -> Result<String> {
        match value {
            Json::String(s) => self.string(s),
            other => Err(shape("a string", &other)),
        }
    }

    /// A string member where `null` means empty (`LogicalName`, `Id`…).
    fn text(&self, value: Json) -> Result<String> {
        self.optional_string(value).map(Option::unwrap_or_default)
    }

    /// A string member that may be `null`.
    fn optional_string(&self, value: Json) -> Result<Option<String>> {
        match value {
            Json::Null => Ok(None),
            other => self.string_value(other).map(Some),
        }
    }

    /// `Entity.Id`: lowercase, and `None` for the empty GUID a new entity carries.
    fn entity_id(&self, value: Json) -> Result<Option<String>> {
        let id = self.optional_string(value)?.map(|id| id.to_ascii_lowercase());
        Ok(id.filter(|id| id != EMPTY_GUID))
    }

    /// A member whose contract type is an object: `null`, or decoded by `decode`.
    fn nullable(&self, value: Json, decode: impl FnOnce(Map<String, Json>) -> Result<Value>) -> Result<Value> {
        match value {
            Json::Null => Ok(Value::Null),
            Json::Object(members) => decode(members),
            other => Err(shape("an object", &other)),
        }
    }

    fn string(&self, s: String) -> Result<String> {
        let limit = self.limits.max_string_bytes;
        if s.len() > limit {
            return Err(DecodeError::StringTooLong {
                format: Format::Json,
                path: String::new(),
                size: s.len(),
                limit,
            });
        }
        Ok(s)
    }
}

/// The `(key, value)` pairs of a dictionary; `null` is an empty one.
fn pairs(value: Json) -> Result<Vec<(Json, Json)>> {
    let items = match value {
        Json::Null => return Ok(Vec::new()),
        Json::Array(items) => items,
        other => return Err(shape("a list of {key, value} pairs", &other)),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Json::Object(mut pair) => {
                let key = pair.remove("key").unwrap_or(Json::Null);
                Ok((key, pair.remove("value").unwrap_or(Json::Null)))
            }
            other => Err(shape("a {key, value} pair", &other)).map_err(at(&format!("[{i}]"))),
        })
        .collect()
}

/// `OptionSetValue.Value`.
fn option_set(mut members: Map<String, Json>) -> Result<i32> {
    let value = members.remove("Value").unwrap_or(Json::Null);
    let number = value.as_i64().and_then(|n| i32::try_from(n).ok());
    number
        .ok_or_else(|| shape("a 32-bit whole number", &value))
        .map_err(at("Value"))
}

/// `Money.Value`, as its exact decimal text.
fn money(mut members: Map<String, Json>) -> Result<String> {
    match members.remove("Value").unwrap_or(Json::Null) {
        Json::Number(n) => Ok(n.to_string()),
        other => Err(shape("a number", &other)).map_err(at("Value")),
    }
}

/// A whole number that fits `i64` is an `Int`; anything else keeps its exact text
/// (serde_json's `arbitrary_precision` preserves it), since JSON cannot say
/// whether `1.0000000000` was a decimal or a double.
fn number(n: &Number) -> Value {
    n.as_i64().map_or_else(|| Value::Decimal(n.to_string()), Value::Int)
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

fn shape(expected: &'static str, found: &Json) -> DecodeError {
    DecodeError::Shape {
        path: String::new(),
        expected,
        found: kind(found),
    }
}

fn kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
