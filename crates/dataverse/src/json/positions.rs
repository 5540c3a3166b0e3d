//! What each position of the data contract becomes, as the JSON text goes by: the
//! context, its bags, entities, references, collections and the values whose declared
//! type is `object` (see [`stream`](super::stream) for how serde_json drives them).

use std::borrow::Cow;

use compact_str::{ToCompactString, format_compact};
use serde::de::{DeserializeSeed, MapAccess, SeqAccess};

use super::stream::{Decoder, Failure, Members, Numeral, Order, Position, Result, Seed};
use super::{exact_number, number, parse_date};
use crate::contract::{self, EMPTY_GUID, Member, at, lowercase, shape};
use crate::model::{AliasedValue, CompactString, Context, Entity, EntityCollection, EntityReference, Record, Value};
use crate::{DecodeError, Format, Limits};

/// Decodes a whole JSON text (a body without its byte order mark, or its rewrite in
/// order) into a context, within the limits of a body of `body_len` bytes.
///
/// A text that is all UTF-8 is checked once here rather than string by string; one that
/// is not is parsed from its bytes, so that serde_json says where it goes wrong.
pub(super) fn context(text: &[u8], body_len: usize, limits: &Limits, order: Order) -> Result<Context, Failure> {
    let decoder = Decoder::new(limits, order, body_len, text.len()).map_err(Failure::Decode)?;
    match std::str::from_utf8(text) {
        Ok(text) => context_from(serde_json::Deserializer::from_str(text), decoder),
        Err(_) => context_from(serde_json::Deserializer::from_slice(text), decoder),
    }
}

fn context_from<'de, R: serde_json::de::Read<'de>>(
    mut json: serde_json::Deserializer<R>,
    decoder: Decoder,
) -> Result<Context, Failure> {
    let decoded = Seed(&decoder, Root).deserialize(&mut json).and_then(|context| {
        json.end()?;
        Ok(context)
    });
    decoded.map_err(|err| match decoder.failure.into_inner() {
        // The pass knows how deep it is, serde_json where.
        Some(Failure::Decode(DecodeError::TooDeep { format, limit, .. })) => Failure::Decode(DecodeError::TooDeep {
            format,
            limit,
            line: err.line(),
            column: err.column(),
        }),
        Some(failure) => failure,
        None => Failure::Decode(super::syntax_error(err)),
    })
}

/// The body's root: a context object.
struct Root;

impl<'de> Position<'de> for Root {
    type Out = Context;
    const EXPECTED: &'static str = "a RemoteExecutionContext object";

    fn object<A: MapAccess<'de>>(self, d: &Decoder, members: Members<'de, A>) -> Result<Context, A::Error> {
        context_members(d, members)
    }
    fn mismatch(&self, found: &'static str) -> DecodeError {
        DecodeError::NotAContext {
            format: Format::Json,
            found,
        }
    }
}

/// Context members whose declared type is not `object` carry no `__type`, so their type
/// comes from the contract.
fn context_members<'de, A: MapAccess<'de>>(d: &Decoder, mut members: Members<'de, A>) -> Result<Context, A::Error> {
    let mut context = Context::default();
    while let Some(name) = members.next_name(d)? {
        let value = match contract::context_member(&name) {
            Member::Bag => members.value(d, bag(AnyValue)).map(Value::Bag),
            Member::Images => members.value(d, bag(Nullable(Contract::Entity))).map(Value::Bag),
            Member::EntityReference => members.value(d, Nullable(Contract::EntityReference)),
            Member::Context => members.value(d, Nullable(Contract::Context)),
            // JSON types these members itself.
            _ => members.value(d, AnyValue),
        };
        let value = value.map_err(d.at(&name))?;
        context.members.push((name.into(), value));
    }
    Ok(context)
}

/// A value whose declared type is `object`: its JSON kind and `__type` say what it is.
#[derive(Clone, Copy)]
struct AnyValue;

impl<'de> Position<'de> for AnyValue {
    type Out = Value;
    const EXPECTED: &'static str = "a value";

    fn null(self, _: &Decoder) -> Result<Value> {
        Ok(Value::Null)
    }
    fn bool(self, _: &Decoder, b: bool) -> Result<Value> {
        Ok(Value::Bool(b))
    }
    fn number(self, _: &Decoder, n: Numeral) -> Result<Value> {
        match n {
            Numeral::Int(n) => Ok(Value::Int(n)),
            Numeral::Text(text) => number(text),
        }
    }
    fn string(self, d: &Decoder, text: Cow<'de, str>) -> Result<Value> {
        match parse_date(&text) {
            Some(date) => Ok(Value::DateTime(date)),
            None => d.string(text).map(Value::String),
        }
    }

    /// A non-empty array made only of `OptionSetValue`s is a multi-select choice
    /// (`OptionSetValueCollection`), which has no other JSON form.
    fn list<A: SeqAccess<'de>>(self, d: &Decoder, mut items: A) -> Result<Value, A::Error> {
        let mut values = Vec::new();
        while let Some(value) = items
            .next_element_seed(Seed(d, AnyValue))
            .map_err(|e| d.at(&index(values.len()))(e))?
        {
            values.push(value);
        }
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

    fn object<A: MapAccess<'de>>(self, d: &Decoder, mut members: Members<'de, A>) -> Result<Value, A::Error> {
        let type_name = members.type_hint(d)?;
        Ok(match type_name.as_deref() {
            Some("Entity") => Value::Entity(Box::new(entity(d, members)?)),
            Some("EntityReference") => Value::EntityReference(entity_reference(d, members)?),
            Some("EntityCollection") => Value::EntityCollection(entity_collection(d, members)?),
            Some("AliasedValue") => Value::Aliased(Box::new(aliased(d, members)?)),
            Some("OptionSetValue") => Value::OptionSet(option_set(d, members)?),
            Some("Money") => Value::Money(money(d, members)?),
            _ => Value::Record(Record {
                type_name: type_name.map(CompactString::from),
                members: record_members(d, members)?,
            }),
        })
    }
}

/// The members of a contract the model does not type, each decoded as `object`.
fn record_members<'de, A: MapAccess<'de>>(
    d: &Decoder,
    mut members: Members<'de, A>,
) -> Result<Vec<(CompactString, Value)>, A::Error> {
    let mut record = Vec::new();
    while let Some(name) = members.next_name(d)? {
        let value = members.value(d, AnyValue).map_err(d.at(&name))?;
        record.push((name.into(), value));
    }
    Ok(record)
}

/// The contracts a member can be declared as, without `__type`, and `null`.
#[derive(Clone, Copy)]
enum Contract {
    Entity,
    EntityReference,
    EntityCollection,
    Context,
}

/// A member whose contract type is an object: `null`, or that contract.
#[derive(Clone, Copy)]
struct Nullable(Contract);

impl<'de> Position<'de> for Nullable {
    type Out = Value;
    const EXPECTED: &'static str = "an object";

    fn null(self, _: &Decoder) -> Result<Value> {
        Ok(Value::Null)
    }
    fn object<A: MapAccess<'de>>(self, d: &Decoder, members: Members<'de, A>) -> Result<Value, A::Error> {
        Ok(match self.0 {
            Contract::Entity => Value::Entity(Box::new(entity(d, members)?)),
            Contract::EntityReference => Value::EntityReference(entity_reference(d, members)?),
            Contract::EntityCollection => Value::EntityCollection(entity_collection(d, members)?),
            Contract::Context => Value::Context(Box::new(context_members(d, members)?)),
        })
    }
}

fn entity<'de, A: MapAccess<'de>>(d: &Decoder, mut members: Members<'de, A>) -> Result<Entity, A::Error> {
    let mut entity = Entity::default();
    while let Some(name) = members.next_name(d)? {
        match &*name {
            "LogicalName" => entity.logical_name = members.value(d, Text).map_err(d.at(&name))?.unwrap_or_default(),
            "Id" => {
                let id = members.value(d, Text).map_err(d.at(&name))?;
                // A new entity carries the empty GUID: no id yet.
                entity.id = id.map(lowercase).filter(|id| id != EMPTY_GUID);
            }
            "Attributes" => entity.attributes = members.value(d, bag(AnyValue)).map_err(d.at(&name))?,
            "FormattedValues" => entity.formatted_values = members.value(d, bag(StringValue)).map_err(d.at(&name))?,
            // The hint, when a schema-typed position repeats it, says nothing new.
            "__type" => members.skip(d)?,
            _ => {
                let value = other_member(d, &mut members, &name).map_err(d.at(&name))?;
                entity.other.push((name.into(), value));
            }
        }
    }
    Ok(entity)
}

fn entity_reference<'de, A: MapAccess<'de>>(
    d: &Decoder,
    mut members: Members<'de, A>,
) -> Result<EntityReference, A::Error> {
    let mut reference = EntityReference::default();
    while let Some(name) = members.next_name(d)? {
        match &*name {
            "LogicalName" => reference.logical_name = members.value(d, Text).map_err(d.at(&name))?.unwrap_or_default(),
            "Id" => {
                let id = members.value(d, Text).map_err(d.at(&name))?;
                reference.id = lowercase(id.unwrap_or_default());
            }
            "Name" => reference.name = members.value(d, Text).map_err(d.at(&name))?,
            "__type" => members.skip(d)?,
            _ => {
                let value = other_member(d, &mut members, &name).map_err(d.at(&name))?;
                reference.other.push((name.into(), value));
            }
        }
    }
    Ok(reference)
}

/// Members of `Entity` and `EntityReference` the model keeps untyped but whose contract
/// type is known.
fn other_member<'de, A: MapAccess<'de>>(
    d: &Decoder,
    members: &mut Members<'de, A>,
    name: &str,
) -> Result<Value, A::Error> {
    match name {
        "KeyAttributes" => members.value(d, bag(AnyValue)).map(Value::Bag),
        // `RelatedEntityCollection`: pairs keyed by a `Relationship` object.
        "RelatedEntities" => members
            .value(d, Bag(Relationship, Nullable(Contract::EntityCollection)))
            .map(Value::Bag),
        _ => members.value(d, AnyValue),
    }
}

fn entity_collection<'de, A: MapAccess<'de>>(
    d: &Decoder,
    mut members: Members<'de, A>,
) -> Result<EntityCollection, A::Error> {
    let mut collection = EntityCollection::default();
    while let Some(name) = members.next_name(d)? {
        match &*name {
            "Entities" => collection.entities = members.value(d, Entities).map_err(d.at(&name))?,
            "__type" => members.skip(d)?,
            _ => {
                let value = members.value(d, AnyValue).map_err(d.at(&name))?;
                collection.other.push((name.into(), value));
            }
        }
    }
    Ok(collection)
}

fn aliased<'de, A: MapAccess<'de>>(d: &Decoder, mut members: Members<'de, A>) -> Result<AliasedValue, A::Error> {
    let (mut entity_logical_name, mut attribute_logical_name, mut value) = (None, None, Value::Null);
    while let Some(name) = members.next_name(d)? {
        match &*name {
            "EntityLogicalName" => entity_logical_name = members.value(d, Text).map_err(d.at(&name))?,
            "AttributeLogicalName" => attribute_logical_name = members.value(d, Text).map_err(d.at(&name))?,
            "Value" => value = members.value(d, AnyValue).map_err(d.at(&name))?,
            _ => members.skip(d)?,
        }
    }
    Ok(AliasedValue {
        entity_logical_name: entity_logical_name.unwrap_or_default(),
        attribute_logical_name: attribute_logical_name.unwrap_or_default(),
        value,
    })
}

/// `OptionSetValue.Value`.
fn option_set<'de, A: MapAccess<'de>>(d: &Decoder, mut members: Members<'de, A>) -> Result<i32, A::Error> {
    let mut option = None;
    while let Some(name) = members.next_name(d)? {
        match &*name {
            "Value" => option = Some(members.value(d, WholeNumber).map_err(d.at("Value"))?),
            _ => members.skip(d)?,
        }
    }
    option.ok_or_else(|| d.fail(at("Value")(WholeNumber.mismatch("null"))))
}

/// `Money.Value`, as its exact decimal text.
fn money<'de, A: MapAccess<'de>>(d: &Decoder, mut members: Members<'de, A>) -> Result<CompactString, A::Error> {
    let mut amount = None;
    while let Some(name) = members.next_name(d)? {
        match &*name {
            "Value" => amount = Some(members.value(d, ExactNumber).map_err(d.at("Value"))?),
            _ => members.skip(d)?,
        }
    }
    amount.ok_or_else(|| d.fail(at("Value")(ExactNumber.mismatch("null"))))
}

/// A key/value collection: `{"key": …, "value": …}` pairs, keys read at `K` (text, or
/// a `Relationship` object in `RelatedEntityCollection`) and values at `V`. `null` and
/// `[]` both mean empty: Dataverse uses each when it drops a member.
#[derive(Clone, Copy)]
struct Bag<K, V>(K, V);

/// The bag of most contracts, keyed by text.
fn bag<V>(value: V) -> Bag<StringValue, V> {
    Bag(StringValue, value)
}

impl<'de, K, V> Position<'de> for Bag<K, V>
where
    K: Position<'de, Out = CompactString> + Copy,
    V: Position<'de> + Copy,
{
    type Out = Vec<(CompactString, V::Out)>;
    const EXPECTED: &'static str = "a list of {key, value} pairs";

    fn null(self, _: &Decoder) -> Result<Self::Out> {
        Ok(Vec::new())
    }
    fn list<A: SeqAccess<'de>>(self, d: &Decoder, mut items: A) -> Result<Self::Out, A::Error> {
        let mut pairs = Vec::new();
        while let Some(pair) = items.next_element_seed(Seed(
            d,
            Pair {
                index: pairs.len(),
                key: self.0,
                value: self.1,
            },
        ))? {
            pairs.push(pair);
        }
        Ok(pairs)
    }
}

/// One `{"key": …, "value": …}` pair; members other than those two are ignored, and a
/// missing one is `null`.
#[derive(Clone, Copy)]
struct Pair<K, V> {
    index: usize,
    key: K,
    value: V,
}

impl<'de, K, V> Position<'de> for Pair<K, V>
where
    K: Position<'de, Out = CompactString> + Copy,
    V: Position<'de> + Copy,
{
    type Out = (CompactString, V::Out);
    const EXPECTED: &'static str = "a {key, value} pair";

    fn object<A: MapAccess<'de>>(self, d: &Decoder, mut members: Members<'de, A>) -> Result<Self::Out, A::Error> {
        let item = || index(self.index);
        let (mut key, mut value) = (None, None);
        while let Some(name) = members.next_name(d)? {
            match &*name {
                "key" => {
                    let read = members.value(d, self.key).map_err(d.at("key"));
                    key = Some(read.map_err(|e| d.at(&item())(e))?);
                }
                // The key comes first in contract order, so errors name it.
                "value" => {
                    let path = key.as_deref().unwrap_or("value");
                    value = Some(members.value(d, self.value).map_err(d.at(path))?);
                }
                _ => members.skip(d)?,
            }
        }
        let key = match key {
            Some(key) => key,
            None => return Err(d.fail(at(&item())(at("key")(self.key.mismatch("null"))))),
        };
        let value = match value {
            Some(value) => value,
            None => self.value.null(d).map_err(|e| d.fail(at(&key)(e)))?,
        };
        Ok((key, value))
    }
    fn mismatch(&self, found: &'static str) -> DecodeError {
        at(&index(self.index))(shape(Self::EXPECTED, found))
    }
}

/// A `Relationship` key: its schema name, with the entity role appended when set (only
/// self-referencing relationships set it).
#[derive(Clone, Copy)]
struct Relationship;

impl<'de> Position<'de> for Relationship {
    type Out = CompactString;
    const EXPECTED: &'static str = "a Relationship object";

    fn object<A: MapAccess<'de>>(self, d: &Decoder, mut members: Members<'de, A>) -> Result<CompactString, A::Error> {
        let (mut schema_name, mut role) = (None, Value::Null);
        while let Some(name) = members.next_name(d)? {
            match &*name {
                "SchemaName" => schema_name = members.value(d, Text).map_err(d.at("SchemaName"))?,
                "PrimaryEntityRole" => role = members.value(d, AnyValue)?,
                _ => members.skip(d)?,
            }
        }
        let schema_name = schema_name.unwrap_or_default();
        // `EntityRole`: 0 Referencing, 1 Referenced.
        Ok(match role {
            Value::Int(0) => format_compact!("{schema_name}.Referencing"),
            Value::Int(1) => format_compact!("{schema_name}.Referenced"),
            _ => schema_name,
        })
    }
}

/// `EntityCollection.Entities`: entities by contract, so without `__type`.
struct Entities;

impl<'de> Position<'de> for Entities {
    type Out = Vec<Entity>;
    const EXPECTED: &'static str = "a list of entities";

    fn null(self, _: &Decoder) -> Result<Vec<Entity>> {
        Ok(Vec::new())
    }
    fn list<A: SeqAccess<'de>>(self, d: &Decoder, mut items: A) -> Result<Vec<Entity>, A::Error> {
        let mut entities = Vec::new();
        while let Some(item) = items
            .next_element_seed(Seed(d, EntityObject))
            .map_err(|e| d.at(&index(entities.len()))(e))?
        {
            entities.push(item);
        }
        Ok(entities)
    }
}

struct EntityObject;

impl<'de> Position<'de> for EntityObject {
    type Out = Entity;
    const EXPECTED: &'static str = "an entity object";

    fn object<A: MapAccess<'de>>(self, d: &Decoder, members: Members<'de, A>) -> Result<Entity, A::Error> {
        entity(d, members)
    }
}

/// Text that is always a string (a `FormattedValues` entry, a bag key).
#[derive(Clone, Copy)]
struct StringValue;

impl<'de> Position<'de> for StringValue {
    type Out = CompactString;
    const EXPECTED: &'static str = "a string";

    fn string(self, d: &Decoder, text: Cow<'de, str>) -> Result<CompactString> {
        d.string(text)
    }
}

/// A string member that may be `null` (`LogicalName`, `Id`, `Name`…).
#[derive(Clone, Copy)]
struct Text;

impl<'de> Position<'de> for Text {
    type Out = Option<CompactString>;
    const EXPECTED: &'static str = "a string";

    fn null(self, _: &Decoder) -> Result<Option<CompactString>> {
        Ok(None)
    }
    fn string(self, d: &Decoder, text: Cow<'de, str>) -> Result<Option<CompactString>> {
        d.string(text).map(Some)
    }
}

/// A number that fits 32 bits (`OptionSetValue.Value`).
#[derive(Clone, Copy)]
struct WholeNumber;

impl<'de> Position<'de> for WholeNumber {
    type Out = i32;
    const EXPECTED: &'static str = "a 32-bit whole number";

    fn number(self, _: &Decoder, n: Numeral) -> Result<i32> {
        match n {
            Numeral::Int(n) => i32::try_from(n).map_err(|_| self.mismatch("a number")),
            Numeral::Text(_) => Err(self.mismatch("a number")),
        }
    }
}

/// A number as its exact text (`Money.Value`).
#[derive(Clone, Copy)]
struct ExactNumber;

impl<'de> Position<'de> for ExactNumber {
    type Out = CompactString;
    const EXPECTED: &'static str = "a number";

    fn number(self, _: &Decoder, n: Numeral) -> Result<CompactString> {
        match n {
            Numeral::Int(n) => Ok(n.to_compact_string()),
            Numeral::Text(text) => exact_number(text),
        }
    }
}

fn index(i: usize) -> String {
    format!("[{i}]")
}
