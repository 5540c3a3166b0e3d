//! Builds the model straight from the JSON text, with no tree in between.
//!
//! serde_json reads the body and drives the visitors here, one per position of the
//! contract ([`Position`]: a context member, a bag, an entity, a value whose declared type
//! is `object`…), each building its part of the model as the text goes by. Strings are
//! copied once, from the body into the model; member names the contract knows are matched
//! where they lie in the body and never copied.
//!
//! Two things a tree gave for free need care in one pass:
//! - a typed object says what it is with `__type`, and the object's other members can only
//!   be read once that is known;
//! - the model keeps an object's members sorted by name, the last of duplicates winning
//!   (what serde_json's map did).
//!
//! DataContractJsonSerializer writes `__type` first and the other members in ordinal
//! order, so a Dataverse body already has both. Members are checked to arrive that way,
//! and a body whose members do not (hand-written, or rewritten by a tool that sorts
//! `__type` among the others) stops the pass with [`Failure::Unordered`]; the caller then
//! decodes a rewrite of it in that order (`super::reordered`).
//!
//! Errors travel up through serde_json as its own error type, so the [`DecodeError`]
//! behind one waits in [`Decoder::failure`] and gathers its member path on the way up.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{exact_number, number, parse_date};
use crate::contract::{self, EMPTY_GUID, Member, at};
use crate::model::{AliasedValue, Context, Entity, EntityCollection, EntityReference, Record, Value};
use crate::{DecodeError, Format, Limits};

/// With serde_json's `arbitrary_precision` (which keeps a number's exact text), a number
/// reaches a visitor as a one-member map whose key is this and whose value is the text.
/// serde_json's own `Value` recognises numbers the same way.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Why a pass stopped.
#[derive(Debug)]
pub(super) enum Failure {
    /// The body is not a context the contract accepts.
    Decode(DecodeError),
    /// An object's members are not in DataContractJsonSerializer's order: `__type`, if
    /// any, first, then the rest by name without duplicates.
    Unordered,
}

/// Whether [`context`] checks the order of members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Order {
    /// Stop with [`Failure::Unordered`] at the first member out of order.
    Checked,
    /// The body was rewritten in order (`super::reordered`): take members as they come.
    Trusted,
}

/// Decodes a whole JSON body (without its byte order mark) into a context.
pub(super) fn context(body: &[u8], limits: &Limits, order: Order) -> Result<Context, Failure> {
    let decoder = Decoder {
        limits,
        order,
        failure: RefCell::new(None),
    };
    let mut json = serde_json::Deserializer::from_slice(body);
    let decoded = Seed(&decoder, Root).deserialize(&mut json).and_then(|context| {
        json.end()?;
        Ok(context)
    });
    decoded.map_err(|err| {
        decoder
            .failure
            .into_inner()
            .unwrap_or_else(|| Failure::Decode(super::syntax_error(err)))
    })
}

/// What every position shares: the limits, and the failure on its way up.
struct Decoder<'l> {
    limits: &'l Limits,
    order: Order,
    /// The failure behind the serde_json error travelling up, if the failure is ours.
    failure: RefCell<Option<Failure>>,
}

impl Decoder<'_> {
    /// Records `error` and returns the serde_json error that carries it up.
    fn fail<E: de::Error>(&self, error: DecodeError) -> E {
        self.stop(Failure::Decode(error))
    }

    fn stop<E: de::Error>(&self, failure: Failure) -> E {
        *self.failure.borrow_mut() = Some(failure);
        E::custom("see the recorded failure")
    }

    /// Prefixes the path of the recorded error, if any, with `segment`.
    fn at<'a, E>(&'a self, segment: &'a str) -> impl FnOnce(E) -> E + 'a {
        move |err| {
            if let Some(Failure::Decode(error)) = &mut *self.failure.borrow_mut() {
                let unprefixed = std::mem::replace(error, DecodeError::Empty);
                *error = at(segment)(unprefixed);
            }
            err
        }
    }

    fn string(&self, text: Cow<'_, str>) -> Result<String, DecodeError> {
        let limit = self.limits.max_string_bytes;
        if text.len() > limit {
            return Err(DecodeError::StringTooLong {
                format: Format::Json,
                path: String::new(),
                size: text.len(),
                limit,
            });
        }
        Ok(text.into_owned())
    }
}

/// A member name, borrowed from the body unless it had escapes.
struct Name<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Name<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E>(self, text: String) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

type Result<T, E = DecodeError> = std::result::Result<T, E>;

/// A JSON number: serde_json hands over whole numbers that fit 64 bits as such, and
/// the others as their exact text.
#[derive(Clone, Copy)]
enum Numeral<'a> {
    Int(i64),
    Text(&'a str),
}

/// A place in the contract, and what a JSON value found there becomes. A kind of value the
/// position has no use for is a shape error naming what the contract expects.
trait Position<'de>: Sized {
    /// What the value becomes.
    type Out;
    /// What the contract expects here, for the error when the body holds something else.
    const EXPECTED: &'static str;

    fn null(self, _: &Decoder) -> Result<Self::Out> {
        Err(self.mismatch("null"))
    }
    fn bool(self, _: &Decoder, _: bool) -> Result<Self::Out> {
        Err(self.mismatch("a boolean"))
    }
    fn number(self, _: &Decoder, _: Numeral) -> Result<Self::Out> {
        Err(self.mismatch("a number"))
    }
    fn string(self, _: &Decoder, _: Cow<'de, str>) -> Result<Self::Out> {
        Err(self.mismatch("a string"))
    }
    fn list<A: SeqAccess<'de>>(self, d: &Decoder, _: A) -> Result<Self::Out, A::Error> {
        Err(d.fail(self.mismatch("a list")))
    }
    fn object<A: MapAccess<'de>>(self, d: &Decoder, _: Members<'de, A>) -> Result<Self::Out, A::Error> {
        Err(d.fail(self.mismatch("an object")))
    }
    fn mismatch(&self, found: &'static str) -> DecodeError {
        shape(Self::EXPECTED, found)
    }
}

/// A position with the decoder, which serde_json drives.
struct Seed<'d, 'l, P>(&'d Decoder<'l>, P);

impl<'de, P: Position<'de>> DeserializeSeed<'de> for Seed<'_, '_, P> {
    type Value = P::Out;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<P::Out, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, P: Position<'de>> Visitor<'de> for Seed<'_, '_, P> {
    type Value = P::Out;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(P::EXPECTED)
    }
    fn visit_unit<E: de::Error>(self) -> Result<P::Out, E> {
        self.1.null(self.0).map_err(|e| self.0.fail(e))
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<P::Out, E> {
        self.1.bool(self.0, b).map_err(|e| self.0.fail(e))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<P::Out, E> {
        self.1.number(self.0, Numeral::Int(n)).map_err(|e| self.0.fail(e))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<P::Out, E> {
        let decoded = match i64::try_from(n) {
            Ok(n) => self.1.number(self.0, Numeral::Int(n)),
            Err(_) => self.1.number(self.0, Numeral::Text(&n.to_string())),
        };
        decoded.map_err(|e| self.0.fail(e))
    }
    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<P::Out, E> {
        self.1.string(self.0, Cow::Borrowed(text)).map_err(|e| self.0.fail(e))
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<P::Out, E> {
        self.1
            .string(self.0, Cow::Owned(text.to_owned()))
            .map_err(|e| self.0.fail(e))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<P::Out, A::Error> {
        self.1.list(self.0, seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<P::Out, A::Error> {
        let first: Option<Name> = map.next_key()?;
        if let Some(Name(key)) = &first
            && key == NUMBER_TOKEN
        {
            let Name(number) = map.next_value()?;
            return self
                .1
                .number(self.0, Numeral::Text(&number))
                .map_err(|e| self.0.fail(e));
        }
        let members = Members {
            map,
            ahead: Some(first.map(|Name(key)| key)),
            seen: 0,
            previous: String::new(),
            order: self.0.order,
        };
        self.1.object(self.0, members)
    }
}

/// The members of an object, in body order, checked to be in contract order.
struct Members<'de, A> {
    map: A,
    /// The name read ahead of its turn (the first, read to tell numbers from objects).
    ahead: Option<Option<Cow<'de, str>>>,
    seen: usize,
    /// The previous member's name, a leading `__type` aside; empty before the first.
    previous: String,
    order: Order,
}

impl<'de, A: MapAccess<'de>> Members<'de, A> {
    /// The next member's name, or `None` after the last.
    fn next_name(&mut self, d: &Decoder) -> Result<Option<Cow<'de, str>>, A::Error> {
        let name = match self.ahead.take() {
            Some(name) => name,
            None => self.map.next_key::<Name>()?.map(|Name(name)| name),
        };
        let Some(name) = name else { return Ok(None) };
        self.seen += 1;
        if self.order == Order::Checked {
            let leading_hint = self.seen == 1 && name == "__type";
            if !leading_hint {
                if name == "__type" || (!self.previous.is_empty() && *name <= *self.previous) {
                    return Err(d.stop(Failure::Unordered));
                }
                self.previous.clear();
                self.previous.push_str(&name);
            }
        }
        Ok(Some(name))
    }

    /// The type a leading `__type` names, consuming it; `None` when the object has none.
    fn type_hint(&mut self, d: &Decoder) -> Result<Option<String>, A::Error> {
        if !matches!(&self.ahead, Some(Some(name)) if name == "__type") {
            return Ok(None);
        }
        self.next_name(d)?;
        self.value(d, TypeName).map_err(d.at("__type")).map(Some)
    }

    /// The current member's value, read at `position`.
    fn value<P: Position<'de>>(&mut self, d: &Decoder, position: P) -> Result<P::Out, A::Error> {
        self.map.next_value_seed(Seed(d, position))
    }

    /// Reads past the current member's value.
    fn skip(&mut self) -> Result<(), A::Error> {
        self.map.next_value::<IgnoredAny>().map(drop)
    }
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
            Member::Bag => members.value(d, Bag(AnyValue)).map(Value::Bag),
            Member::Images => members.value(d, Bag(Nullable(Contract::Entity))).map(Value::Bag),
            Member::EntityReference => members.value(d, Nullable(Contract::EntityReference)),
            Member::Context => members.value(d, Nullable(Contract::Context)),
            // JSON types these members itself.
            _ => members.value(d, AnyValue),
        };
        let value = value.map_err(d.at(&name))?;
        context.members.push((name.into_owned(), value));
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
        let text = d.string(text)?;
        Ok(parse_date(&text).map_or(Value::String(text), Value::DateTime))
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
                type_name,
                members: record_members(d, members)?,
            }),
        })
    }
}

/// The members of a contract the model does not type, each decoded as `object`.
fn record_members<'de, A: MapAccess<'de>>(
    d: &Decoder,
    mut members: Members<'de, A>,
) -> Result<Vec<(String, Value)>, A::Error> {
    let mut record = Vec::new();
    while let Some(name) = members.next_name(d)? {
        let value = members.value(d, AnyValue).map_err(d.at(&name))?;
        record.push((name.into_owned(), value));
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
                entity.id = id.map(|id| id.to_ascii_lowercase()).filter(|id| id != EMPTY_GUID);
            }
            "Attributes" => entity.attributes = members.value(d, Bag(AnyValue)).map_err(d.at(&name))?,
            "FormattedValues" => entity.formatted_values = members.value(d, Bag(StringValue)).map_err(d.at(&name))?,
            // The hint, when a schema-typed position repeats it, says nothing new.
            "__type" => members.skip()?,
            _ => {
                let value = other_member(d, &mut members, &name).map_err(d.at(&name))?;
                entity.other.push((name.into_owned(), value));
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
                reference.id = id.unwrap_or_default().to_ascii_lowercase();
            }
            "Name" => reference.name = members.value(d, Text).map_err(d.at(&name))?,
            "__type" => members.skip()?,
            _ => {
                let value = other_member(d, &mut members, &name).map_err(d.at(&name))?;
                reference.other.push((name.into_owned(), value));
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
        "KeyAttributes" => members.value(d, Bag(AnyValue)).map(Value::Bag),
        "RelatedEntities" => members.value(d, RelatedEntities).map(Value::Bag),
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
            "__type" => members.skip()?,
            _ => {
                let value = members.value(d, AnyValue).map_err(d.at(&name))?;
                collection.other.push((name.into_owned(), value));
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
            _ => members.skip()?,
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
            _ => members.skip()?,
        }
    }
    option.ok_or_else(|| d.fail(at("Value")(WholeNumber.mismatch("null"))))
}

/// `Money.Value`, as its exact decimal text.
fn money<'de, A: MapAccess<'de>>(d: &Decoder, mut members: Members<'de, A>) -> Result<String, A::Error> {
    let mut amount = None;
    while let Some(name) = members.next_name(d)? {
        match &*name {
            "Value" => amount = Some(members.value(d, ExactNumber).map_err(d.at("Value"))?),
            _ => members.skip()?,
        }
    }
    amount.ok_or_else(|| d.fail(at("Value")(ExactNumber.mismatch("null"))))
}

/// A key/value collection: `{"key": …, "value": …}` pairs, the value read at `V`.
/// `null` and `[]` both mean empty: Dataverse uses each when it drops a member.
#[derive(Clone, Copy)]
struct Bag<V>(V);

impl<'de, V: Position<'de> + Copy> Position<'de> for Bag<V> {
    type Out = Vec<(String, V::Out)>;
    const EXPECTED: &'static str = "a list of {key, value} pairs";

    fn null(self, _: &Decoder) -> Result<Self::Out> {
        Ok(Vec::new())
    }
    fn list<A: SeqAccess<'de>>(self, d: &Decoder, items: A) -> Result<Self::Out, A::Error> {
        pairs(d, items, StringValue, self.0)
    }
}

/// `RelatedEntityCollection`: pairs keyed by a `Relationship` object rather than a string.
#[derive(Clone, Copy)]
struct RelatedEntities;

impl<'de> Position<'de> for RelatedEntities {
    type Out = Vec<(String, Value)>;
    const EXPECTED: &'static str = "a list of {key, value} pairs";

    fn null(self, _: &Decoder) -> Result<Self::Out> {
        Ok(Vec::new())
    }
    fn list<A: SeqAccess<'de>>(self, d: &Decoder, items: A) -> Result<Self::Out, A::Error> {
        pairs(d, items, Relationship, Nullable(Contract::EntityCollection))
    }
}

/// The pairs of a dictionary, keys read at `K` and values at `V`.
fn pairs<'de, A, K, V>(d: &Decoder, mut items: A, key: K, value: V) -> Result<Vec<(String, V::Out)>, A::Error>
where
    A: SeqAccess<'de>,
    K: Position<'de, Out = String> + Copy,
    V: Position<'de> + Copy,
{
    let mut pairs = Vec::new();
    while let Some(pair) = items.next_element_seed(Seed(
        d,
        Pair {
            index: pairs.len(),
            key,
            value,
        },
    ))? {
        pairs.push(pair);
    }
    Ok(pairs)
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
    K: Position<'de, Out = String> + Copy,
    V: Position<'de> + Copy,
{
    type Out = (String, V::Out);
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
                _ => members.skip()?,
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
    type Out = String;
    const EXPECTED: &'static str = "a Relationship object";

    fn object<A: MapAccess<'de>>(self, d: &Decoder, mut members: Members<'de, A>) -> Result<String, A::Error> {
        let (mut schema_name, mut role) = (None, Value::Null);
        while let Some(name) = members.next_name(d)? {
            match &*name {
                "SchemaName" => schema_name = members.value(d, Text).map_err(d.at("SchemaName"))?,
                "PrimaryEntityRole" => role = members.value(d, AnyValue)?,
                _ => members.skip()?,
            }
        }
        let schema_name = schema_name.unwrap_or_default();
        // `EntityRole`: 0 Referencing, 1 Referenced.
        Ok(match role {
            Value::Int(0) => format!("{schema_name}.Referencing"),
            Value::Int(1) => format!("{schema_name}.Referenced"),
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
    type Out = String;
    const EXPECTED: &'static str = "a string";

    fn string(self, d: &Decoder, text: Cow<'de, str>) -> Result<String> {
        d.string(text)
    }
}

/// The `Name` of a `__type` hint's `Name:Namespace`: the namespace adds nothing once the
/// name is known.
struct TypeName;

impl<'de> Position<'de> for TypeName {
    type Out = String;
    const EXPECTED: &'static str = "a string";

    fn string(self, _: &Decoder, hint: Cow<'de, str>) -> Result<String> {
        Ok(hint.split(':').next().unwrap_or_default().to_owned())
    }
}

/// A string member that may be `null` (`LogicalName`, `Id`, `Name`…).
#[derive(Clone, Copy)]
struct Text;

impl<'de> Position<'de> for Text {
    type Out = Option<String>;
    const EXPECTED: &'static str = "a string";

    fn null(self, _: &Decoder) -> Result<Option<String>> {
        Ok(None)
    }
    fn string(self, d: &Decoder, text: Cow<'de, str>) -> Result<Option<String>> {
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
    type Out = String;
    const EXPECTED: &'static str = "a number";

    fn number(self, _: &Decoder, n: Numeral) -> Result<String> {
        match n {
            Numeral::Int(n) => Ok(n.to_string()),
            Numeral::Text(text) => exact_number(text),
        }
    }
}

fn index(i: usize) -> String {
    format!("[{i}]")
}

fn shape(expected: &'static str, found: &'static str) -> DecodeError {
    DecodeError::Shape {
        path: String::new(),
        expected,
        found,
    }
}
