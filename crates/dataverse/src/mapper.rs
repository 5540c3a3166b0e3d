//! Maps the [`infoset`](super::infoset) tape of a DataContractSerializer document
//! (text XML or .NET binary XML) to the model, in one pass.
//!
//! The data-contract conventions this follows:
//! - members are child elements named after the data member, in the contract's
//!   namespace; a `null` member is `i:nil="true"`;
//! - a member whose declared type is `object` says what it holds with `i:type`, a
//!   QName resolved to (namespace, local name): XML Schema primitives, `guid` /
//!   `char` / `duration` from the serialization namespace, `ArrayOf…` from the
//!   arrays namespace, the Xrm contracts from theirs;
//! - other members carry no type: it comes from the contract (see
//!   [`contract::context_member`] and the per-type functions below);
//! - a dictionary (`ParameterCollection`, `AttributeCollection`…) is a list of
//!   `KeyValuePairOf…` elements, each with `key` and `value` in the
//!   `System.Collections.Generic` namespace.
//!
//! Unknown `i:type`s never fail: they become [`Value::Record`]s.
//!
//! Each function below is called with an element's [`Start`] just read and reads the
//! element's content up to and including its end, so the tape is read once, front to
//! back; children a contract does not use are read past. Text moves into the model
//! when the tape owns it and is copied once when it borrows from the body.

use std::borrow::Cow;
use std::iter::Peekable;
use std::vec::IntoIter;

use base64::Engine;
use compact_str::{ToCompactString, format_compact};

use super::contract::{
    self, ARRAYS_NS, CONTRACTS_NS, EMPTY_GUID, GENERIC_NS, Member, SERIALIZATION_NS, XSD_NS, at, at_index, lowercase,
    shape,
};
use super::infoset::{Event, QName, Start, Tape};
use super::model::{AliasedValue, CompactString, Context, Entity, EntityCollection, EntityReference, Record, Value};
use super::xsd::{parse_bool, parse_date_time, parse_decimal, parse_double, parse_guid, parse_int};
use super::{DecodeError, Format, Limits};

type Result<T> = std::result::Result<T, DecodeError>;

/// Maps the document, whose root must be a `RemoteExecutionContext`.
pub(super) fn context(tape: Tape<'_>, format: Format, limits: &Limits) -> Result<Context> {
    let mut mapper = Mapper {
        limits,
        format,
        events: tape.into_iter().peekable(),
    };
    let root = match mapper.events.next() {
        Some(Event::Start(root)) => root,
        _ => {
            return Err(DecodeError::NotAContext {
                format,
                found: "no root element",
            });
        }
    };
    if !root.is(CONTRACTS_NS, "RemoteExecutionContext") {
        return Err(DecodeError::NotAContext {
            format,
            found: "another root element",
        });
    }
    if root.nil {
        return Err(DecodeError::NotAContext { format, found: "nil" });
    }
    mapper.context()
}

/// What an element holds, as far as its first child.
enum Content<'a> {
    /// Only text (perhaps none), read up to the element's end.
    Text(Cow<'a, str>),
    /// Child elements, the first not yet read.
    Children,
}

struct Mapper<'a, 'l> {
    limits: &'l Limits,
    format: Format,
    events: Peekable<IntoIter<Event<'a>>>,
}

impl<'a> Mapper<'a, '_> {
    /// The next child of the current element, or `None` at its end (which is read).
    /// Text between children is whitespace or mixed content, which no contract has.
    fn next_child(&mut self) -> Option<Start<'a>> {
        loop {
            match self.events.next()? {
                Event::Start(start) => return Some(start),
                Event::End => return None,
                Event::Text(_) => {}
            }
        }
    }

    /// Reads the rest of the current element, children and all.
    fn skip_rest(&mut self) {
        let mut depth = 0_usize;
        for event in self.events.by_ref() {
            match event {
                Event::Start(_) => depth += 1,
                Event::End if depth == 0 => return,
                Event::End => depth -= 1,
                Event::Text(_) => {}
            }
        }
    }

    fn content(&mut self) -> Content<'a> {
        let text = match self.events.next_if(|event| matches!(event, Event::Text(_))) {
            Some(Event::Text(text)) => text,
            _ => Cow::Borrowed(""),
        };
        match self.events.next_if_eq(&Event::End) {
            Some(_) => Content::Text(text),
            None => Content::Children,
        }
    }

    /// The text of an element that must have no children, within the string limit;
    /// `expected` says what the text is, for the error when there are children.
    fn text_content(&mut self, expected: &'static str) -> Result<Cow<'a, str>> {
        match self.content() {
            Content::Text(text) => self.checked(text),
            Content::Children => Err(shape(expected, "an element with children")),
        }
    }

    fn leaf(&mut self) -> Result<Cow<'a, str>> {
        self.text_content("text")
    }

    fn context(&mut self) -> Result<Context> {
        let mut context = Context::default();
        while let Some(child) = self.next_child() {
            let value = self.context_member(&child).map_err(at(&child.local))?;
            context.members.push((child.local.into(), value));
        }
        Ok(context)
    }

    fn context_member(&mut self, element: &Start<'a>) -> Result<Value> {
        let member = contract::context_member(&element.local);
        if element.nil {
            self.skip_rest();
            // A dropped bag is `null` in JSON, `i:nil` here: both are empty.
            return Ok(match member {
                Member::Bag | Member::Images => Value::Bag(Vec::new()),
                _ => Value::Null,
            });
        }
        match member {
            Member::Bag => Ok(Value::Bag(self.bag(element, Self::bag_value)?)),
            Member::Images => Ok(Value::Bag(self.bag(element, |m, e| {
                m.nullable(e, |m, _| Ok(Value::Entity(Box::new(m.entity()?))))
            })?)),
            Member::EntityReference => Ok(Value::EntityReference(self.entity_reference()?)),
            Member::Context => Ok(Value::Context(Box::new(self.context()?))),
            // JSON has no GUID type: a GUID member stays text in every format.
            Member::Guid | Member::String => Ok(Value::String(self.leaf()?.into())),
            Member::Int => Ok(Value::Int(parse_int(&self.leaf()?)?)),
            Member::Bool => Ok(Value::Bool(parse_bool(&self.leaf()?)?)),
            Member::DateTime => Ok(Value::DateTime(parse_date_time(&self.leaf()?)?)),
            Member::Unknown => self.value(element),
        }
    }

    /// A value whose declared type is `object` (or unknown): `i:type` says what it is.
    fn value(&mut self, element: &Start<'a>) -> Result<Value> {
        if element.nil {
            self.skip_rest();
            return Ok(Value::Null);
        }
        match &element.xsi_type {
            Some(qname) => self.typed(qname),
            None => self.untyped(),
        }
    }

    /// A bag entry's value; a pair without one holds nil.
    fn bag_value(&mut self, element: Option<&Start<'a>>) -> Result<Value> {
        element.map_or(Ok(Value::Null), |element| self.value(element))
    }

    /// A value with no `i:type`: text, or a record of its children.
    fn untyped(&mut self) -> Result<Value> {
        match self.content() {
            Content::Text(text) => Ok(Value::String(self.checked(text)?.into())),
            Content::Children => Ok(Value::Record(Record {
                type_name: None,
                members: self.members()?,
            })),
        }
    }

    fn typed(&mut self, qname: &QName<'a>) -> Result<Value> {
        let ns = &*qname.ns;
        let local = &*qname.local;
        if (ns == XSD_NS || ns == SERIALIZATION_NS) && local != "anyType" {
            let text = self.text_content(primitive_description(local))?;
            if let Some(value) = primitive(local, &text)? {
                return Ok(value);
            }
            return Ok(unknown_type(qname, vec![("Value".into(), Value::String(text.into()))]));
        }
        if ns == ARRAYS_NS
            && let Some(item) = local.strip_prefix("ArrayOf")
        {
            return self.array(item);
        }
        if ns == CONTRACTS_NS {
            match local {
                "Entity" => return Ok(Value::Entity(Box::new(self.entity()?))),
                "EntityReference" => return Ok(Value::EntityReference(self.entity_reference()?)),
                "EntityCollection" => return Ok(Value::EntityCollection(self.entity_collection()?)),
                "AliasedValue" => return Ok(Value::Aliased(Box::new(self.aliased()?))),
                "OptionSetValue" => return Ok(Value::OptionSet(self.option_set_members()?)),
                "Money" => return Ok(Value::Money(self.money_members()?)),
                "OptionSetValueCollection" => {
                    let mut options = Vec::new();
                    while let Some(child) = self.next_child() {
                        options.push(self.option_set(&child).map_err(at_index(options.len()))?);
                    }
                    return Ok(Value::OptionSetCollection(options));
                }
                "EntityReferenceCollection" => {
                    let mut references = Vec::new();
                    while let Some(child) = self.next_child() {
                        let reference =
                            self.nullable(Some(&child), |m, _| Ok(Value::EntityReference(m.entity_reference()?)));
                        references.push(reference.map_err(at_index(references.len()))?);
                    }
                    return Ok(Value::List(references));
                }
                _ => {}
            }
        }
        if ns == XSD_NS {
            // `anyType`: the element says nothing more than an untyped one.
            return self.untyped();
        }
        // A type this decoder does not know: keep it member by member, or its text.
        let members = match self.content() {
            Content::Text(text) => vec![("Value".into(), Value::String(self.checked(text)?.into()))],
            Content::Children => self.members()?,
        };
        Ok(unknown_type(qname, members))
    }

    /// `ArrayOf<item>`: each child is an item, typed by its own `i:type` or else by
    /// the array's item type.
    fn array(&mut self, item: &str) -> Result<Value> {
        let mut items = Vec::new();
        while let Some(child) = self.next_child() {
            let value = if child.nil || child.xsi_type.is_some() {
                self.value(&child)
            } else if item == "anyType" {
                self.untyped()
            } else {
                self.text_content(primitive_description(item)).and_then(|text| {
                    Ok(match primitive(item, &text)? {
                        Some(value) => value,
                        None => Value::String(text.into()),
                    })
                })
            };
            items.push(value.map_err(at_index(items.len()))?);
        }
        Ok(Value::List(items))
    }

    /// The children of a contract the model does not type, each decoded as `object`.
    fn members(&mut self) -> Result<Vec<(CompactString, Value)>> {
        let mut members = Vec::new();
        while let Some(child) = self.next_child() {
            let value = self.value(&child).map_err(at(&child.local))?;
            members.push((child.local.into(), value));
        }
        Ok(members)
    }

    fn entity(&mut self) -> Result<Entity> {
        let mut entity = Entity::default();
        while let Some(child) = self.next_child() {
            let result = match &*child.local {
                "LogicalName" => self.text(&child).map(|text| entity.logical_name = text),
                "Id" => self.entity_id(&child).map(|id| entity.id = id),
                "Attributes" => self.bag(&child, Self::bag_value).map(|bag| entity.attributes = bag),
                "FormattedValues" => {
                    let formatted = self.bag(&child, |m, e| match e {
                        Some(e) if !e.nil => m.leaf().map(CompactString::from),
                        Some(_) => {
                            m.skip_rest();
                            Err(shape("a string", "nil"))
                        }
                        None => Err(shape("a string", "nil")),
                    });
                    formatted.map(|bag| entity.formatted_values = bag)
                }
                name => self
                    .other_member(&child)
                    .map(|value| entity.other.push((name.into(), value))),
            };
            result.map_err(at(&child.local))?;
        }
        Ok(entity)
    }

    fn entity_reference(&mut self) -> Result<EntityReference> {
        let mut reference = EntityReference::default();
        while let Some(child) = self.next_child() {
            let result = match &*child.local {
                "LogicalName" => self.text(&child).map(|text| reference.logical_name = text),
                "Id" => self.text(&child).map(|id| reference.id = lowercase(id)),
                "Name" => self.optional_text(&child).map(|text| reference.name = text),
                name => self
                    .other_member(&child)
                    .map(|value| reference.other.push((name.into(), value))),
            };
            result.map_err(at(&child.local))?;
        }
        Ok(reference)
    }

    /// Members of `Entity` and `EntityReference` the model keeps untyped but whose
    /// contract type is known. Enums are written by name in XML and by number in
    /// JSON; the model takes the number.
    fn other_member(&mut self, element: &Start<'a>) -> Result<Value> {
        if element.nil {
            self.skip_rest();
            return Ok(match &*element.local {
                "KeyAttributes" | "RelatedEntities" => Value::Bag(Vec::new()),
                _ => Value::Null,
            });
        }
        match &*element.local {
            "KeyAttributes" => Ok(Value::Bag(self.bag(element, Self::bag_value)?)),
            "RelatedEntities" => self.related_entities(element),
            "RowVersion" => Ok(Value::String(self.leaf()?.into())),
            "EntityState" => {
                let state = self.leaf()?;
                let number = match state.trim() {
                    "Unchanged" => 0,
                    "Created" => 1,
                    "Changed" => 2,
                    other => other.parse().map_err(|_| shape("an EntityState", "other text"))?,
                };
                Ok(Value::Int(number))
            }
            _ => self.value(element),
        }
    }

    /// `RelatedEntityCollection`: pairs keyed by a `Relationship` rather than a
    /// string. The key becomes the relationship's schema name, with the entity role
    /// appended when set (only self-referencing relationships set it).
    fn related_entities(&mut self, element: &Start<'a>) -> Result<Value> {
        let related = self.pairs(element, Self::relationship, |m, value| match value {
            None => Ok(Value::Null),
            Some(value) => m.nullable(Some(value), |m, _| Ok(Value::EntityCollection(m.entity_collection()?))),
        })?;
        Ok(Value::Bag(related))
    }

    fn relationship(&mut self, key: &Start<'a>) -> Result<CompactString> {
        if key.nil {
            self.skip_rest();
            return Err(shape("a Relationship", "nil"));
        }
        if let Content::Text(_) = self.content() {
            return Err(shape("a Relationship", "text"));
        }
        let (mut schema_name, mut role) = (None, None);
        while let Some(child) = self.next_child() {
            match &*child.local {
                "SchemaName" if schema_name.is_none() => {
                    schema_name = Some(self.text(&child).map_err(at("SchemaName"))?);
                }
                "PrimaryEntityRole" if role.is_none() && !child.nil => {
                    role = Some(match self.content() {
                        Content::Text(text) => text,
                        Content::Children => {
                            self.skip_rest();
                            Cow::Borrowed("")
                        }
                    });
                }
                _ => self.skip_rest(),
            }
        }
        let schema_name = schema_name.unwrap_or_default();
        Ok(match role.as_deref().map(str::trim) {
            Some("Referencing" | "0") => format_compact!("{schema_name}.Referencing"),
            Some("Referenced" | "1") => format_compact!("{schema_name}.Referenced"),
            _ => schema_name,
        })
    }

    fn entity_collection(&mut self) -> Result<EntityCollection> {
        let mut collection = EntityCollection::default();
        while let Some(child) = self.next_child() {
            let result = match &*child.local {
                "Entities" => self.entities().map(|entities| collection.entities = entities),
                name => self
                    .collection_member(&child)
                    .map(|value| collection.other.push((name.into(), value))),
            };
            result.map_err(at(&child.local))?;
        }
        Ok(collection)
    }

    /// `EntityCollection` members other than `Entities`, by their contract types.
    fn collection_member(&mut self, element: &Start<'a>) -> Result<Value> {
        if element.nil {
            self.skip_rest();
            return Ok(Value::Null);
        }
        match &*element.local {
            "MoreRecords" | "TotalRecordCountLimitExceeded" => Ok(Value::Bool(parse_bool(&self.leaf()?)?)),
            "TotalRecordCount" => Ok(Value::Int(parse_int(&self.leaf()?)?)),
            "EntityName" | "MinActiveRowVersion" | "PagingCookie" => Ok(Value::String(self.leaf()?.into())),
            _ => self.value(element),
        }
    }

    fn entities(&mut self) -> Result<Vec<Entity>> {
        let mut entities = Vec::new();
        while let Some(child) = self.next_child() {
            let entity = if child.nil {
                self.skip_rest();
                Err(shape("an entity", "nil"))
            } else {
                self.entity()
            };
            entities.push(entity.map_err(at_index(entities.len()))?);
        }
        Ok(entities)
    }

    fn aliased(&mut self) -> Result<AliasedValue> {
        let mut aliased = AliasedValue {
            entity_logical_name: CompactString::default(),
            attribute_logical_name: CompactString::default(),
            value: Value::Null,
        };
        while let Some(child) = self.next_child() {
            let result = match &*child.local {
                "EntityLogicalName" => self.text(&child).map(|text| aliased.entity_logical_name = text),
                "AttributeLogicalName" => self.text(&child).map(|text| aliased.attribute_logical_name = text),
                "Value" => self.value(&child).map(|value| aliased.value = value),
                _ => {
                    self.skip_rest();
                    Ok(())
                }
            };
            result.map_err(at(&child.local))?;
        }
        Ok(aliased)
    }

    /// An `OptionSetValue` element.
    fn option_set(&mut self, element: &Start<'a>) -> Result<i32> {
        if element.nil {
            self.skip_rest();
            return Err(shape("an object", "nil"));
        }
        self.option_set_members()
    }

    /// `OptionSetValue.Value`.
    fn option_set_members(&mut self) -> Result<i32> {
        let number = parse_int(&self.value_member()?).map_err(at("Value"))?;
        i32::try_from(number)
            .map_err(|_| shape("a 32-bit whole number", "a larger number"))
            .map_err(at("Value"))
    }

    /// `Money.Value`, as its exact decimal text.
    fn money_members(&mut self) -> Result<CompactString> {
        parse_decimal(&self.value_member()?).map_err(at("Value"))
    }

    /// The text of the first `Value` child, reading past the others.
    fn value_member(&mut self) -> Result<Cow<'a, str>> {
        let mut value = None;
        while let Some(child) = self.next_child() {
            if child.local != "Value" || value.is_some() {
                self.skip_rest();
                continue;
            }
            if child.nil {
                return Err(shape("a number", "nil")).map_err(at("Value"));
            }
            value = Some(self.leaf().map_err(at("Value"))?);
        }
        value.ok_or_else(|| at("Value")(shape("a number", "nothing")))
    }

    /// A key/value collection; `i:nil` and an empty element both mean empty. `item`
    /// reads each value, `None` standing for a pair without one.
    fn bag<T>(
        &mut self,
        element: &Start<'a>,
        item: impl Fn(&mut Self, Option<&Start<'a>>) -> Result<T>,
    ) -> Result<Vec<(CompactString, T)>> {
        let key = |m: &mut Self, key: &Start<'a>| {
            if key.nil {
                m.skip_rest();
                return Err(shape("a string", "nil"));
            }
            m.leaf().map(CompactString::from)
        };
        self.pairs(element, key, item)
    }

    /// The `KeyValuePairOf…` children of a dictionary, each with its `key` read by `key`
    /// and its `value` by `value` (with `None` when there is no value, which is nil).
    /// A pair's first `key` and `value` count; its other children are read past.
    fn pairs<T>(
        &mut self,
        element: &Start<'a>,
        key: impl Fn(&mut Self, &Start<'a>) -> Result<CompactString>,
        value: impl Fn(&mut Self, Option<&Start<'a>>) -> Result<T>,
    ) -> Result<Vec<(CompactString, T)>> {
        let mut pairs = Vec::new();
        if element.nil {
            self.skip_rest();
            return Ok(pairs);
        }
        while let Some(pair) = self.next_child() {
            let i = pairs.len();
            if pair.nil {
                self.skip_rest();
                return Err(shape("a {key, value} pair", "nil")).map_err(at_index(i));
            }
            let (mut read_key, mut read_value) = (None, None);
            while let Some(child) = self.next_child() {
                if *child.ns != *GENERIC_NS {
                    self.skip_rest();
                } else if child.local == "key" && read_key.is_none() {
                    read_key = Some(key(self, &child).map_err(at("key")).map_err(at_index(i))?);
                } else if child.local == "value" && read_value.is_none() {
                    // DataContractSerializer writes the key first, so errors can name it.
                    let read = value(self, Some(&child));
                    read_value = Some(match &read_key {
                        Some(key) => read.map_err(at(key))?,
                        None => read.map_err(at("value")).map_err(at_index(i))?,
                    });
                } else {
                    self.skip_rest();
                }
            }
            let Some(read_key) = read_key else {
                return Err(shape("a {key, value} pair", "another element")).map_err(at_index(i));
            };
            let read_value = match read_value {
                Some(read_value) => read_value,
                None => value(self, None).map_err(at(&read_key))?,
            };
            pairs.push((read_key, read_value));
        }
        Ok(pairs)
    }

    /// A member of an object contract: nil (or missing), or read by `read`.
    fn nullable(
        &mut self,
        element: Option<&Start<'a>>,
        read: impl FnOnce(&mut Self, &Start<'a>) -> Result<Value>,
    ) -> Result<Value> {
        match element {
            Some(element) if !element.nil => read(self, element),
            Some(_) => {
                self.skip_rest();
                Ok(Value::Null)
            }
            None => Ok(Value::Null),
        }
    }

    /// A string member where nil means empty (`LogicalName`, `Id`…).
    fn text(&mut self, element: &Start<'a>) -> Result<CompactString> {
        self.optional_text(element).map(Option::unwrap_or_default)
    }

    fn optional_text(&mut self, element: &Start<'a>) -> Result<Option<CompactString>> {
        if element.nil {
            self.skip_rest();
            return Ok(None);
        }
        self.leaf().map(|text| Some(text.into()))
    }

    /// `Entity.Id`: lowercase, and `None` for the empty GUID a new entity carries.
    fn entity_id(&mut self, element: &Start<'a>) -> Result<Option<CompactString>> {
        let id = self.optional_text(element)?.map(|id| lowercase(id.trim().into()));
        Ok(id.filter(|id| id != EMPTY_GUID))
    }

    /// Text read by [`content`](Self::content), within the string limit.
    fn checked(&self, text: Cow<'a, str>) -> Result<Cow<'a, str>> {
        let limit = self.limits.max_string_bytes;
        if text.len() > limit {
            return Err(DecodeError::StringTooLong {
                format: self.format,
                path: String::new(),
                size: text.len(),
                limit,
            });
        }
        Ok(text)
    }
}

/// A value of a type this decoder does not know, kept as a record.
fn unknown_type(qname: &QName<'_>, members: Vec<(CompactString, Value)>) -> Value {
    Value::Record(Record {
        type_name: Some(qname.local.clone().into()),
        members,
    })
}

/// A primitive by its XML Schema (or serialization namespace) name, from its text;
/// `None` for names that are not primitives.
fn primitive(name: &str, text: &str) -> Result<Option<Value>> {
    Ok(Some(match name {
        "string" | "anyURI" | "QName" | "normalizedString" | "token" => Value::String(text.into()),
        "int" | "long" | "short" | "byte" | "unsignedByte" | "unsignedShort" | "unsignedInt" | "integer" => {
            Value::Int(parse_int(text)?)
        }
        // Beyond `i64` it keeps its exact text, like a JSON number would.
        "unsignedLong" => match text.trim().parse::<i64>() {
            Ok(n) => Value::Int(n),
            Err(_) => Value::Decimal(parse_decimal(text)?),
        },
        "boolean" => Value::Bool(parse_bool(text)?),
        "decimal" => Value::Decimal(parse_decimal(text)?),
        "double" | "float" => Value::Double(parse_double(text)?),
        "dateTime" => Value::DateTime(parse_date_time(text)?),
        "guid" => Value::Guid(parse_guid(text)?),
        // A `char` is its UTF-16 code unit as a number; JSON writes it as a string.
        "char" => {
            let code = u32::try_from(parse_int(text)?).ok().and_then(char::from_u32);
            Value::String(
                code.ok_or_else(|| shape("a character code", "other text"))?
                    .to_compact_string(),
            )
        }
        // A `TimeSpan`, e.g. `PT1H`; the model has no duration, and JSON writes the same text.
        "duration" => Value::String(text.into()),
        // JSON writes a `byte[]` as an array of numbers; so does the model.
        "base64Binary" => {
            let compact: String = text.split_ascii_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|_| shape("base64 text", "other text"))?;
            Value::List(bytes.into_iter().map(|b| Value::Int(b.into())).collect())
        }
        _ => return Ok(None),
    }))
}

fn primitive_description(name: &str) -> &'static str {
    match name {
        "string" => "a string",
        "boolean" => "a boolean",
        "dateTime" => "a date and time",
        "guid" => "a GUID",
        _ => "a primitive value",
    }
}
