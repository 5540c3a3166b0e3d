//! Maps the [`infoset`](super::infoset) tree of a DataContractSerializer document
//! (text XML or .NET binary XML) to the model.
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

use base64::Engine;

use super::contract::{
    self, ARRAYS_NS, CONTRACTS_NS, EMPTY_GUID, GENERIC_NS, Member, SERIALIZATION_NS, XSD_NS, at, at_index,
};
use super::infoset::{Element, QName};
use super::model::{AliasedValue, Context, DateTime, Entity, EntityCollection, EntityReference, Record, Value};
use super::{DecodeError, Format, Limits};

type Result<T> = std::result::Result<T, DecodeError>;

/// Maps the root element, which must be a `RemoteExecutionContext`.
pub(super) fn context(root: &Element, format: Format, limits: &Limits) -> Result<Context> {
    if !root.is(CONTRACTS_NS, "RemoteExecutionContext") {
        return Err(DecodeError::NotAContext {
            format,
            found: "another root element",
        });
    }
    if root.nil {
        return Err(DecodeError::NotAContext { format, found: "nil" });
    }
    Mapper { limits, format }.context(root)
}

struct Mapper<'a> {
    limits: &'a Limits,
    format: Format,
}

impl Mapper<'_> {
    fn context(&self, element: &Element) -> Result<Context> {
        let members = element
            .children
            .iter()
            .map(|child| {
                let value = self.context_member(child).map_err(at(&child.local))?;
                Ok((child.local.clone(), value))
            })
            .collect::<Result<_>>()?;
        Ok(Context { members })
    }

    fn context_member(&self, element: &Element) -> Result<Value> {
        let member = contract::context_member(&element.local);
        if element.nil {
            // A dropped bag is `null` in JSON, `i:nil` here: both are empty.
            return Ok(match member {
                Member::Bag | Member::Images => Value::Bag(Vec::new()),
                _ => Value::Null,
            });
        }
        match member {
            Member::Bag => Ok(Value::Bag(self.bag(element, Self::value)?)),
            Member::Images => Ok(Value::Bag(self.bag(element, |m, e| m.nullable(e, Self::entity_value))?)),
            Member::EntityReference => Ok(Value::EntityReference(self.entity_reference(element)?)),
            Member::Context => Ok(Value::Context(Box::new(self.context(element)?))),
            // JSON has no GUID type: a GUID member stays text in every format.
            Member::Guid | Member::String => Ok(Value::String(self.leaf(element)?.to_owned())),
            Member::Int => Ok(Value::Int(parse_int(self.leaf(element)?)?)),
            Member::Bool => Ok(Value::Bool(parse_bool(self.leaf(element)?)?)),
            Member::DateTime => Ok(Value::DateTime(parse_date_time(self.leaf(element)?)?)),
            Member::Unknown => self.value(element),
        }
    }

    /// A value whose declared type is `object` (or unknown): `i:type` says what it is.
    fn value(&self, element: &Element) -> Result<Value> {
        if element.nil {
            return Ok(Value::Null);
        }
        match &element.xsi_type {
            Some(qname) => self.typed(element, qname),
            None => self.untyped(element),
        }
    }

    /// A value with no `i:type`: text, or a record of its children.
    fn untyped(&self, element: &Element) -> Result<Value> {
        if element.children.is_empty() {
            return Ok(Value::String(self.leaf(element)?.to_owned()));
        }
        Ok(Value::Record(Record {
            type_name: None,
            members: self.members(element)?,
        }))
    }

    fn typed(&self, element: &Element, qname: &QName) -> Result<Value> {
        let ns = &*qname.ns;
        if ns == XSD_NS || ns == SERIALIZATION_NS {
            if let Some(value) = self.primitive(element, &qname.local)? {
                return Ok(value);
            }
        } else if ns == ARRAYS_NS && qname.local.starts_with("ArrayOf") {
            return self.array(element, &qname.local["ArrayOf".len()..]);
        } else if ns == CONTRACTS_NS {
            match qname.local.as_str() {
                "Entity" => return self.entity_value(element),
                "EntityReference" => return Ok(Value::EntityReference(self.entity_reference(element)?)),
                "EntityCollection" => return Ok(Value::EntityCollection(self.entity_collection(element)?)),
                "AliasedValue" => return Ok(Value::Aliased(Box::new(self.aliased(element)?))),
                "OptionSetValue" => return Ok(Value::OptionSet(self.option_set(element)?)),
                "Money" => return Ok(Value::Money(self.money(element)?)),
                "OptionSetValueCollection" => {
                    let options = element
                        .children
                        .iter()
                        .enumerate()
                        .map(|(i, child)| self.option_set(child).map_err(at_index(i)))
                        .collect::<Result<_>>()?;
                    return Ok(Value::OptionSetCollection(options));
                }
                "EntityReferenceCollection" => {
                    let references = element
                        .children
                        .iter()
                        .enumerate()
                        .map(|(i, child)| {
                            self.nullable(child, |m, e| Ok(Value::EntityReference(m.entity_reference(e)?)))
                                .map_err(at_index(i))
                        })
                        .collect::<Result<_>>()?;
                    return Ok(Value::List(references));
                }
                _ => {}
            }
        }
        if ns == XSD_NS && qname.local == "anyType" {
            return self.untyped(element);
        }
        // A type this decoder does not know: keep it member by member, or its text.
        let members = if element.children.is_empty() {
            vec![("Value".to_owned(), Value::String(self.leaf(element)?.to_owned()))]
        } else {
            self.members(element)?
        };
        Ok(Value::Record(Record {
            type_name: Some(qname.local.clone()),
            members,
        }))
    }

    /// A primitive by its XML Schema (or serialization namespace) name; `None` for
    /// names that are not primitives.
    fn primitive(&self, element: &Element, name: &str) -> Result<Option<Value>> {
        if !element.children.is_empty() && name != "anyType" {
            return Err(shape(primitive_description(name), "an element with children"));
        }
        let text = || self.leaf(element);
        Ok(Some(match name {
            "string" | "anyURI" | "QName" | "normalizedString" | "token" => Value::String(text()?.to_owned()),
            "int" | "long" | "short" | "byte" | "unsignedByte" | "unsignedShort" | "unsignedInt" | "integer" => {
                Value::Int(parse_int(text()?)?)
            }
            // Beyond `i64` it keeps its exact text, like a JSON number would.
            "unsignedLong" => {
                let text = text()?;
                match text.trim().parse::<i64>() {
                    Ok(n) => Value::Int(n),
                    Err(_) => Value::Decimal(parse_decimal(text)?),
                }
            }
            "boolean" => Value::Bool(parse_bool(text()?)?),
            "decimal" => Value::Decimal(parse_decimal(text()?)?),
            "double" | "float" => Value::Double(parse_double(text()?)?),
            "dateTime" => Value::DateTime(parse_date_time(text()?)?),
            "guid" => Value::Guid(parse_guid(text()?)?),
            // A `char` is its UTF-16 code unit as a number; JSON writes it as a string.
            "char" => {
                let code = u32::try_from(parse_int(text()?)?).ok().and_then(char::from_u32);
                Value::String(code.ok_or_else(|| shape("a character code", "other text"))?.to_string())
            }
            // A `TimeSpan`, e.g. `PT1H`; the model has no duration, and JSON writes the same text.
            "duration" => Value::String(text()?.to_owned()),
            // JSON writes a `byte[]` as an array of numbers; so does the model.
            "base64Binary" => {
                let text = text()?;
                let compact: String = text.split_ascii_whitespace().collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .map_err(|_| shape("base64 text", "other text"))?;
                Value::List(bytes.into_iter().map(|b| Value::Int(b.into())).collect())
            }
            _ => return Ok(None),
        }))
    }

    /// `ArrayOf<item>`: each child is an item, typed by its own `i:type` or else by
    /// the array's item type.
    fn array(&self, element: &Element, item: &str) -> Result<Value> {
        let items = element
            .children
            .iter()
            .enumerate()
            .map(|(i, child)| {
                let value = if child.nil {
                    Ok(Value::Null)
                } else if child.xsi_type.is_some() {
                    self.value(child)
                } else {
                    match self.primitive(child, item)? {
                        Some(value) => Ok(value),
                        None => self.untyped(child),
                    }
                };
                value.map_err(at_index(i))
            })
            .collect::<Result<_>>()?;
        Ok(Value::List(items))
    }

    /// The children of a contract the model does not type, each decoded as `object`.
    fn members(&self, element: &Element) -> Result<Vec<(String, Value)>> {
        element
            .children
            .iter()
            .map(|child| {
                let value = self.value(child).map_err(at(&child.local))?;
                Ok((child.local.clone(), value))
            })
            .collect()
    }

    fn entity_value(&self, element: &Element) -> Result<Value> {
        Ok(Value::Entity(Box::new(self.entity(element)?)))
    }

    fn entity(&self, element: &Element) -> Result<Entity> {
        let mut entity = Entity::default();
        for child in &element.children {
            let name = child.local.as_str();
            let result = match name {
                "LogicalName" => self.text(child).map(|text| entity.logical_name = text),
                "Id" => self.entity_id(child).map(|id| entity.id = id),
                "Attributes" => self.bag(child, Self::value).map(|bag| entity.attributes = bag),
                "FormattedValues" => {
                    let formatted = self.bag(child, |m, e| {
                        if e.nil {
                            return Err(shape("a string", "nil"));
                        }
                        m.leaf(e).map(str::to_owned)
                    });
                    formatted.map(|bag| entity.formatted_values = bag)
                }
                _ => self
                    .other_member(child)
                    .map(|value| entity.other.push((name.to_owned(), value))),
            };
            result.map_err(at(name))?;
        }
        Ok(entity)
    }

    fn entity_reference(&self, element: &Element) -> Result<EntityReference> {
        let mut reference = EntityReference::default();
        for child in &element.children {
            let name = child.local.as_str();
            let result = match name {
                "LogicalName" => self.text(child).map(|text| reference.logical_name = text),
                "Id" => self.text(child).map(|id| reference.id = id.to_ascii_lowercase()),
                "Name" => self.optional_text(child).map(|text| reference.name = text),
                _ => self
                    .other_member(child)
                    .map(|value| reference.other.push((name.to_owned(), value))),
            };
            result.map_err(at(name))?;
        }
        Ok(reference)
    }

    /// Members of `Entity` and `EntityReference` the model keeps untyped but whose
    /// contract type is known. Enums are written by name in XML and by number in
    /// JSON; the model takes the number.
    fn other_member(&self, element: &Element) -> Result<Value> {
        if element.nil {
            return Ok(match element.local.as_str() {
                "KeyAttributes" | "RelatedEntities" => Value::Bag(Vec::new()),
                _ => Value::Null,
            });
        }
        match element.local.as_str() {
            "KeyAttributes" => Ok(Value::Bag(self.bag(element, Self::value)?)),
            "RelatedEntities" => self.related_entities(element),
            "RowVersion" => Ok(Value::String(self.leaf(element)?.to_owned())),
            "EntityState" => {
                let state = self.leaf(element)?;
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
    fn related_entities(&self, element: &Element) -> Result<Value> {
        let related = element
            .children
            .iter()
            .enumerate()
            .map(|(i, pair)| {
                let (key, value) = self.pair(pair).map_err(at_index(i))?;
                let key = self.relationship(key).map_err(at("key")).map_err(at_index(i))?;
                let value = match value {
                    None => Value::Null,
                    Some(value) => self
                        .nullable(value, |m, e| Ok(Value::EntityCollection(m.entity_collection(e)?)))
                        .map_err(at(&key))?,
                };
                Ok((key, value))
            })
            .collect::<Result<_>>()?;
        Ok(Value::Bag(related))
    }

    fn relationship(&self, key: &Element) -> Result<String> {
        if key.nil || key.children.is_empty() {
            return Err(shape("a Relationship", if key.nil { "nil" } else { "text" }));
        }
        let schema_name = match key.children.iter().find(|c| c.local == "SchemaName") {
            Some(name) => self.text(name).map_err(at("SchemaName"))?,
            None => String::new(),
        };
        let role = key
            .children
            .iter()
            .find(|c| c.local == "PrimaryEntityRole" && !c.nil)
            .map(|role| role.text.trim());
        Ok(match role {
            Some("Referencing" | "0") => format!("{schema_name}.Referencing"),
            Some("Referenced" | "1") => format!("{schema_name}.Referenced"),
            _ => schema_name,
        })
    }

    fn entity_collection(&self, element: &Element) -> Result<EntityCollection> {
        let mut collection = EntityCollection::default();
        for child in &element.children {
            let name = child.local.as_str();
            let result = match name {
                "Entities" => self.entities(child).map(|entities| collection.entities = entities),
                _ => self
                    .collection_member(child)
                    .map(|value| collection.other.push((name.to_owned(), value))),
            };
            result.map_err(at(name))?;
        }
        Ok(collection)
    }

    /// `EntityCollection` members other than `Entities`, by their contract types.
    fn collection_member(&self, element: &Element) -> Result<Value> {
        if element.nil {
            return Ok(Value::Null);
        }
        match element.local.as_str() {
            "MoreRecords" | "TotalRecordCountLimitExceeded" => Ok(Value::Bool(parse_bool(self.leaf(element)?)?)),
            "TotalRecordCount" => Ok(Value::Int(parse_int(self.leaf(element)?)?)),
            "EntityName" | "MinActiveRowVersion" | "PagingCookie" => Ok(Value::String(self.leaf(element)?.to_owned())),
            _ => self.value(element),
        }
    }

    fn entities(&self, element: &Element) -> Result<Vec<Entity>> {
        element
            .children
            .iter()
            .enumerate()
            .map(|(i, child)| {
                if child.nil {
                    return Err(shape("an entity", "nil")).map_err(at_index(i));
                }
                self.entity(child).map_err(at_index(i))
            })
            .collect()
    }

    fn aliased(&self, element: &Element) -> Result<AliasedValue> {
        let mut aliased = AliasedValue {
            entity_logical_name: String::new(),
            attribute_logical_name: String::new(),
            value: Value::Null,
        };
        for child in &element.children {
            let name = child.local.as_str();
            let result = match name {
                "EntityLogicalName" => self.text(child).map(|text| aliased.entity_logical_name = text),
                "AttributeLogicalName" => self.text(child).map(|text| aliased.attribute_logical_name = text),
                "Value" => self.value(child).map(|value| aliased.value = value),
                _ => Ok(()),
            };
            result.map_err(at(name))?;
        }
        Ok(aliased)
    }

    /// `OptionSetValue.Value`.
    fn option_set(&self, element: &Element) -> Result<i32> {
        let value = self.value_member(element)?;
        let number = parse_int(self.leaf(value).map_err(at("Value"))?).map_err(at("Value"))?;
        i32::try_from(number)
            .map_err(|_| shape("a 32-bit whole number", "a larger number"))
            .map_err(at("Value"))
    }

    /// `Money.Value`, as its exact decimal text.
    fn money(&self, element: &Element) -> Result<String> {
        let value = self.value_member(element)?;
        parse_decimal(self.leaf(value).map_err(at("Value"))?).map_err(at("Value"))
    }

    fn value_member<'e>(&self, element: &'e Element) -> Result<&'e Element> {
        if element.nil {
            return Err(shape("an object", "nil"));
        }
        match element.children.iter().find(|c| c.local == "Value") {
            Some(value) if !value.nil => Ok(value),
            Some(_) => Err(shape("a number", "nil")).map_err(at("Value")),
            None => Err(shape("a number", "nothing")).map_err(at("Value")),
        }
    }

    /// A key/value collection; `i:nil` and an empty element both mean empty.
    fn bag<T>(&self, element: &Element, item: impl Fn(&Self, &Element) -> Result<T>) -> Result<Vec<(String, T)>> {
        if element.nil {
            return Ok(Vec::new());
        }
        element
            .children
            .iter()
            .enumerate()
            .map(|(i, pair)| {
                let (key, value) = self.pair(pair).map_err(at_index(i))?;
                let key = if key.nil {
                    Err(shape("a string", "nil"))
                } else {
                    self.leaf(key).map(str::to_owned)
                };
                let key = key.map_err(at("key")).map_err(at_index(i))?;
                let value = match value {
                    Some(value) => item(self, value),
                    None => item(
                        self,
                        &Element {
                            nil: true,
                            ..Element::default()
                        },
                    ),
                };
                Ok((key.clone(), value.map_err(at(&key))?))
            })
            .collect()
    }

    /// The `key` and `value` of a `KeyValuePairOf…` element; a missing value is nil.
    fn pair<'e>(&self, pair: &'e Element) -> Result<(&'e Element, Option<&'e Element>)> {
        let key = pair.child(GENERIC_NS, "key");
        match key {
            Some(key) if !pair.nil => Ok((key, pair.child(GENERIC_NS, "value"))),
            _ => Err(shape(
                "a {key, value} pair",
                if pair.nil { "nil" } else { "another element" },
            )),
        }
    }

    /// A member of an object contract: nil, or decoded by `decode`.
    fn nullable(&self, element: &Element, decode: impl FnOnce(&Self, &Element) -> Result<Value>) -> Result<Value> {
        if element.nil {
            Ok(Value::Null)
        } else {
            decode(self, element)
        }
    }

    /// A string member where nil means empty (`LogicalName`, `Id`…).
    fn text(&self, element: &Element) -> Result<String> {
        self.optional_text(element).map(Option::unwrap_or_default)
    }

    fn optional_text(&self, element: &Element) -> Result<Option<String>> {
        if element.nil {
            return Ok(None);
        }
        self.leaf(element).map(|text| Some(text.to_owned()))
    }

    /// `Entity.Id`: lowercase, and `None` for the empty GUID a new entity carries.
    fn entity_id(&self, element: &Element) -> Result<Option<String>> {
        let id = self.optional_text(element)?.map(|id| id.trim().to_ascii_lowercase());
        Ok(id.filter(|id| id != EMPTY_GUID))
    }

    /// The text of an element that must have no child elements, within the limit.
    /// The text of an element without children, within the string limit.
    fn leaf<'e>(&self, element: &'e Element) -> Result<&'e str> {
        if !element.children.is_empty() {
            return Err(shape("text", "an element with children"));
        }
        let limit = self.limits.max_string_bytes;
        if element.text.len() > limit {
            return Err(DecodeError::StringTooLong {
                format: self.format,
                path: String::new(),
                size: element.text.len(),
                limit,
            });
        }
        Ok(&element.text)
    }
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

/// XML Schema whitespace rules collapse the edges of every non-string value.
fn parse_int(text: &str) -> Result<i64> {
    let text = text.trim();
    text.strip_prefix('+')
        .unwrap_or(text)
        .parse()
        .map_err(|_| shape("a whole number", "other text"))
}

fn parse_bool(text: &str) -> Result<bool> {
    match text.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(shape("a boolean", "other text")),
    }
}

/// `xs:decimal`: kept as its exact text once checked (`1.0000000000` stays so).
fn parse_decimal(text: &str) -> Result<String> {
    let text = text.trim();
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return Err(shape("a decimal number", "other text"));
    }
    // A JSON number has no leading `+` and needs a digit before the point.
    let sign = if text.starts_with('-') { "-" } else { "" };
    let whole = if whole.is_empty() { "0" } else { whole };
    Ok(match fraction {
        "" => format!("{sign}{whole}"),
        _ => format!("{sign}{whole}.{fraction}"),
    })
}

/// `xs:double` / `xs:float`, with XML Schema's spelling of the special values.
fn parse_double(text: &str) -> Result<f64> {
    match text.trim() {
        "INF" => Ok(f64::INFINITY),
        "-INF" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        other if other.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) => other
            .parse()
            .map_err(|_| shape("a floating-point number", "other text")),
        _ => Err(shape("a floating-point number", "other text")),
    }
}

/// A GUID in its 36-character form, lowercase.
fn parse_guid(text: &str) -> Result<String> {
    let text = text.trim();
    let valid = text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    if !valid {
        return Err(shape("a GUID", "other text"));
    }
    Ok(text.to_ascii_lowercase())
}

/// `xs:dateTime` as DataContractSerializer writes it: `2017-09-26T00:04:07Z`, with
/// an optional fraction of up to 7 digits and a `Z`, an offset or no zone. An
/// offset is subtracted to give UTC; no zone (`DateTimeKind.Unspecified`) is taken
/// as UTC, since the instant cannot be known otherwise.
pub(super) fn parse_date_time(text: &str) -> Result<DateTime> {
    parse_date_time_text(text.trim()).ok_or_else(|| shape("a date and time", "other text"))
}

fn parse_date_time_text(text: &str) -> Option<DateTime> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') || bytes.get(10) != Some(&b'T') {
        return None;
    }
    if bytes.get(13) != Some(&b':') || bytes.get(16) != Some(&b':') {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 59 {
        return None;
    }
    let mut rest = &text[19..];
    let mut fraction_ticks = 0;
    if let Some(after_point) = rest.strip_prefix('.') {
        let digits = after_point.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        // Ticks are 100 ns: seven digits; further digits cannot be represented.
        let kept = &after_point[..digits.min(7)];
        fraction_ticks = kept.parse::<i64>().ok()? * 10_i64.pow(7 - kept.len() as u32);
        rest = &after_point[digits..];
    }
    let offset_minutes = match rest {
        "" | "Z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let zone = &rest[1..];
            if zone.len() != 5 || zone.as_bytes()[2] != b':' {
                return None;
            }
            let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse::<i64>().ok())?;
            let (h, m) = (digits(&zone[..2])?, digits(&zone[3..])?);
            if h > 14 || m > 59 {
                return None;
            }
            sign * (h * 60 + m)
        }
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(DateTime {
        unix_ticks: seconds * 10_000_000 + fraction_ticks,
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's `days_from_civil`: days since 1970-01-01 of a proleptic
/// Gregorian date (the inverse of `model::civil_from_days`).
pub(super) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn shape(expected: &'static str, found: &'static str) -> DecodeError {
    DecodeError::Shape {
        path: String::new(),
        expected,
        found,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instant(text: &str) -> Option<String> {
        parse_date_time_text(text).map(|dt| dt.to_string())
    }

    #[test]
    fn date_times_become_utc_instants() {
        assert_eq!(instant("2017-09-26T00:04:07Z").as_deref(), Some("2017-09-26T00:04:07Z"));
        assert_eq!(instant("2017-09-26T00:04:07").as_deref(), Some("2017-09-26T00:04:07Z"));
        assert_eq!(
            instant("2017-09-26T00:04:07.1234567-07:00").as_deref(),
            Some("2017-09-26T07:04:07.1234567Z")
        );
        assert_eq!(
            instant("2000-02-29T23:59:59.5+01:00").as_deref(),
            Some("2000-02-29T22:59:59.5Z")
        );
        assert_eq!(instant("0001-01-01T00:00:00").as_deref(), Some("0001-01-01T00:00:00Z"));
        for bad in [
            "2017-09-26",
            "2017-09-26T00:04",
            "2017-13-01T00:00:00Z",
            "2001-02-29T00:00:00Z",
            "2017-09-26T24:00:00Z",
            "2017-09-26T00:04:07.Z",
            "2017-09-26T00:04:07+7:00",
            "2017-09-26T00:04:07Zjunk",
            "+017-09-26T00:04:07Z",
            "２017-09-26T00:04:07Z",
        ] {
            assert_eq!(instant(bad), None, "{bad}");
        }
    }

    #[test]
    fn decimals_keep_their_digits() {
        assert_eq!(parse_decimal("1.0000000000").unwrap(), "1.0000000000");
        assert_eq!(parse_decimal(" -.5 ").unwrap(), "-0.5");
        assert_eq!(parse_decimal("+10").unwrap(), "10");
        for bad in ["", ".", "1e5", "1.2.3", "--1", "NaN"] {
            assert!(parse_decimal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn civil_days_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1, 1, 1), -719_162);
    }
}
