//! How the model is built straight from the JSON text, with no tree in between.
//!
//! serde_json reads the body and drives one visitor per position of the contract: a
//! [`Position`] (a context member, a bag, an entity, a value whose declared type is
//! `object`…, all in `positions.rs`) says what each kind of JSON value found there
//! becomes, and [`Seed`] hands it to serde_json. Strings are copied once, from the body
//! into the model; member names the contract knows are matched where they lie in the
//! body and never copied.
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
use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use crate::budget::{Budget, Exhausted, JSON_OBJECT_COST, JSON_VALUE_COST};
use crate::contract::{at, shape};
use crate::model::CompactString;
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

/// What every position shares: the limits and what is left of them, and the failure on
/// its way up.
///
/// The nesting depth and the decoded-size budget are checked as the text goes by, and
/// counted the way `super::check_structure` counts them before a tree is built: a value
/// for the root, every `[`, `,` and `:`, and an object's extra cost for every `{`. So the
/// pass refuses exactly the bodies that check refuses, without a scan of its own.
pub(super) struct Decoder<'l> {
    pub(super) limits: &'l Limits,
    pub(super) order: Order,
    /// The failure behind the serde_json error travelling up, if the failure is ours.
    pub(super) failure: RefCell<Option<Failure>>,
    budget: Cell<Budget>,
    /// The length of the body the budget was made for, for its error.
    body_len: usize,
    depth: Cell<usize>,
}

impl<'l> Decoder<'l> {
    /// A decoder for `text_len` bytes of text, with the budget of a body of `body_len`
    /// (the text is the body, or its rewrite in order, which is never longer). The text
    /// itself is charged twice (each string is copied into the model, and into
    /// serde_json's tree when members are put in order), and the root value once.
    pub(super) fn new(limits: &'l Limits, order: Order, body_len: usize, text_len: usize) -> Result<Self> {
        let mut budget = Budget::new(body_len, limits);
        budget
            .charge_each(text_len, 2)
            .and_then(|()| budget.charge(JSON_VALUE_COST))
            .map_err(|exhausted| expansion(body_len, exhausted))?;
        Ok(Self {
            limits,
            order,
            failure: RefCell::new(None),
            budget: Cell::new(budget),
            body_len,
            depth: Cell::new(0),
        })
    }

    /// Charges for `values` more values (each `,` or `:` of the text, or a `[`).
    fn charge_values<E: de::Error>(&self, values: usize) -> Result<(), E> {
        self.charge(values * JSON_VALUE_COST)
    }

    fn charge<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        let mut budget = self.budget.get();
        budget
            .charge(bytes)
            .map_err(|exhausted| self.fail(expansion(self.body_len, exhausted)))?;
        self.budget.set(budget);
        Ok(())
    }

    /// Goes one level deeper (a `[` or `{`), or refuses to past `max_depth`.
    fn enter<E: de::Error>(&self) -> Result<(), E> {
        let depth = self.depth.get() + 1;
        if depth > self.limits.max_depth {
            // The line and column are serde_json's, filled in on the way out.
            return Err(self.fail(DecodeError::TooDeep {
                format: Format::Json,
                limit: self.limits.max_depth,
                line: 0,
                column: 0,
            }));
        }
        self.depth.set(depth);
        Ok(())
    }

    fn leave(&self) {
        self.depth.set(self.depth.get() - 1);
    }

    /// Records `error` and returns the serde_json error that carries it up.
    pub(super) fn fail<E: de::Error>(&self, error: DecodeError) -> E {
        self.stop(Failure::Decode(error))
    }

    fn stop<E: de::Error>(&self, failure: Failure) -> E {
        *self.failure.borrow_mut() = Some(failure);
        E::custom("see the recorded failure")
    }

    /// Prefixes the path of the recorded error, if any, with `segment`.
    pub(super) fn at<'a, E>(&'a self, segment: &'a str) -> impl FnOnce(E) -> E + 'a {
        move |err| {
            if let Some(Failure::Decode(error)) = &mut *self.failure.borrow_mut() {
                let unprefixed = std::mem::replace(error, DecodeError::Empty);
                *error = at(segment)(unprefixed);
            }
            err
        }
    }

    pub(super) fn string(&self, text: Cow<'_, str>) -> Result<CompactString, DecodeError> {
        let limit = self.limits.max_string_bytes;
        if text.len() > limit {
            return Err(DecodeError::StringTooLong {
                format: Format::Json,
                path: String::new(),
                size: text.len(),
                limit,
            });
        }
        Ok(text.into())
    }
}

fn expansion(size: usize, Exhausted { limit }: Exhausted) -> DecodeError {
    DecodeError::Expansion {
        format: Format::Json,
        size,
        limit,
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

pub(super) type Result<T, E = DecodeError> = std::result::Result<T, E>;

/// A JSON number: serde_json hands over whole numbers that fit 64 bits as such, and
/// the others as their exact text.
#[derive(Clone, Copy)]
pub(super) enum Numeral<'a> {
    Int(i64),
    Text(&'a str),
}

/// A place in the contract, and what a JSON value found there becomes. A kind of value the
/// position has no use for is a shape error naming what the contract expects.
pub(super) trait Position<'de>: Sized {
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
    /// A string serde_json cannot lend from the body (it had escapes) and lends only
    /// for this call: copied and passed to [`string`](Self::string), unless the position
    /// needs no copy.
    fn transient_string(self, d: &Decoder, text: &str) -> Result<Self::Out> {
        self.string(d, Cow::Owned(text.to_owned()))
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
pub(super) struct Seed<'d, 'l, P>(pub(super) &'d Decoder<'l>, pub(super) P);

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
        self.1.transient_string(self.0, text).map_err(|e| self.0.fail(e))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<P::Out, A::Error> {
        self.0.enter()?;
        let items = Items {
            decoder: self.0,
            seq,
            asked: 0,
        };
        let list = self.1.list(self.0, items)?;
        self.0.leave();
        Ok(list)
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
        self.0.enter()?;
        self.0.charge(JSON_OBJECT_COST)?;
        let members = Members {
            map,
            ahead: Some(first.map(|Name(key)| key)),
            seen: 0,
            previous: Cow::Borrowed(""),
            order: self.0.order,
        };
        let object = self.1.object(self.0, members)?;
        self.0.leave();
        Ok(object)
    }
}

/// The items of a list, charged for as the text counts them: the `[` and each `,`.
struct Items<'d, 'l, A> {
    decoder: &'d Decoder<'l>,
    seq: A,
    /// How many times the next item was asked for.
    asked: usize,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Items<'_, '_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, A::Error> {
        // Paid before the item is built. The text counts the `[` and each `,`: a list of n
        // items has n - 1 commas and is asked n + 1 times (the last finds the `]`), so
        // every ask but the second pays.
        if self.asked != 1 {
            self.decoder.charge_values(1)?;
        }
        self.asked += 1;
        self.seq.next_element_seed(seed)
    }
}

/// The members of an object, in body order, checked to be in contract order.
pub(super) struct Members<'de, A> {
    map: A,
    /// The name read ahead of its turn (the first, read to tell numbers from objects).
    ahead: Option<Option<Cow<'de, str>>>,
    seen: usize,
    /// The previous member's name, a leading `__type` aside; empty before the first.
    previous: Cow<'de, str>,
    order: Order,
}

impl<'de, A: MapAccess<'de>> Members<'de, A> {
    /// The next member's name, or `None` after the last.
    pub(super) fn next_name(&mut self, d: &Decoder) -> Result<Option<Cow<'de, str>>, A::Error> {
        let name = match self.ahead.take() {
            Some(name) => name,
            None => self.map.next_key::<Name>()?.map(|Name(name)| name),
        };
        let Some(name) = name else { return Ok(None) };
        // The `:` after the name, and the `,` before it unless it is the first.
        d.charge_values(if self.seen == 0 { 1 } else { 2 })?;
        self.seen += 1;
        if self.order == Order::Checked {
            let leading_hint = self.seen == 1 && name == "__type";
            if !leading_hint {
                if name == "__type" || (!self.previous.is_empty() && *name <= *self.previous) {
                    return Err(d.stop(Failure::Unordered));
                }
                // Borrowed from the body, so a copy only for a name with escapes.
                self.previous = name.clone();
            }
        }
        Ok(Some(name))
    }

    /// The type a leading `__type` names, consuming it; `None` when the object has none.
    pub(super) fn type_hint(&mut self, d: &Decoder) -> Result<Option<Cow<'de, str>>, A::Error> {
        if !matches!(&self.ahead, Some(Some(name)) if name == "__type") {
            return Ok(None);
        }
        self.next_name(d)?;
        self.value(d, TypeName).map_err(d.at("__type")).map(Some)
    }

    /// The current member's value, read at `position`.
    pub(super) fn value<P: Position<'de>>(&mut self, d: &Decoder, position: P) -> Result<P::Out, A::Error> {
        self.map.next_value_seed(Seed(d, position))
    }

    /// Reads past the current member's value, checking and charging it all the same.
    pub(super) fn skip(&mut self, d: &Decoder) -> Result<(), A::Error> {
        self.value(d, Skip)
    }
}

/// A value nothing is made of, whatever its kind: its members need no order.
struct Skip;

impl<'de> Position<'de> for Skip {
    type Out = ();
    const EXPECTED: &'static str = "any value";

    fn null(self, _: &Decoder) -> Result<()> {
        Ok(())
    }
    fn bool(self, _: &Decoder, _: bool) -> Result<()> {
        Ok(())
    }
    fn number(self, _: &Decoder, _: Numeral) -> Result<()> {
        Ok(())
    }
    fn string(self, _: &Decoder, _: Cow<'de, str>) -> Result<()> {
        Ok(())
    }
    fn transient_string(self, _: &Decoder, _: &str) -> Result<()> {
        Ok(())
    }
    fn list<A: SeqAccess<'de>>(self, d: &Decoder, mut items: A) -> Result<(), A::Error> {
        while items.next_element_seed(Seed(d, Skip))?.is_some() {}
        Ok(())
    }
    fn object<A: MapAccess<'de>>(self, d: &Decoder, mut members: Members<'de, A>) -> Result<(), A::Error> {
        members.order = Order::Trusted;
        while members.next_name(d)?.is_some() {
            members.skip(d)?;
        }
        Ok(())
    }
}

/// The `Name` of a `__type` hint's `Name:Namespace`: the namespace adds nothing once the
/// name is known.
struct TypeName;

/// The contracts a `__type` hint names that the model types (those `AnyValue::object` in
/// `positions.rs` matches): their names cost no copy even though hints always have escapes
/// (the namespace's `\/`). A name missing here is still decoded, at the cost of a copy.
const TYPED_CONTRACTS: [&str; 6] = [
    "Entity",
    "EntityReference",
    "EntityCollection",
    "AliasedValue",
    "OptionSetValue",
    "Money",
];

impl<'de> Position<'de> for TypeName {
    type Out = Cow<'de, str>;
    const EXPECTED: &'static str = "a string";

    fn string(self, _: &Decoder, hint: Cow<'de, str>) -> Result<Cow<'de, str>> {
        Ok(match hint {
            Cow::Borrowed(hint) => Cow::Borrowed(name_of(hint)),
            Cow::Owned(mut hint) => {
                hint.truncate(name_of(&hint).len());
                Cow::Owned(hint)
            }
        })
    }
    fn transient_string(self, _: &Decoder, hint: &str) -> Result<Cow<'de, str>> {
        let name = name_of(hint);
        Ok(match TYPED_CONTRACTS.iter().find(|known| **known == name) {
            Some(known) => Cow::Borrowed(*known),
            None => Cow::Owned(name.to_owned()),
        })
    }
}

/// `Name` of `Name:Namespace`.
fn name_of(hint: &str) -> &str {
    hint.split(':').next().unwrap_or_default()
}
