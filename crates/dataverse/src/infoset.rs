//! The flat tape of events the XML and .NET binary XML readers both produce, and
//! the namespace resolution they share.
//!
//! A reader reports raw events (an element's prefix and local name, its `xmlns`
//! declarations, its other attributes, text, the end of an element) to a
//! [`Builder`], which resolves every prefix against the declarations in scope and
//! keeps only what the data-contract mapper needs, as a [`Tape`] of [`Event`]s: each
//! element's namespace and local name, its `i:type` resolved to a [`QName`]
//! (namespace, local name), its `i:nil`, its text and its end. Names and text borrow
//! from the body wherever it spells them out, so recording an element allocates
//! nothing; there is no tree, and the mapper builds the model in one pass over the
//! tape. Because both readers go through the same builder, the two formats yield the
//! same tape for the same document, and the [`Limits`] on depth, text length and
//! decoded size are enforced in one place.
//!
//! The builder charges every element, declaration and byte of text against the body's
//! [`Budget`] before it keeps it, and resolves a prefix in constant time however many
//! declarations are in scope.

use std::borrow::Cow;
use std::rc::Rc;

use super::Limits;
use super::budget::{ATTRIBUTE_COST, Budget, DECLARATION_COST, ELEMENT_COST, Exhausted};
use super::contract::XSI_NS;
use super::namespaces::Scope;

/// What a namespace declaration costs, in the reader and then in scope.
pub(super) fn declaration_cost(prefix: &str, ns: &str) -> usize {
    DECLARATION_COST + 2 * (prefix.len() + ns.len())
}

/// What an attribute a reader passes to [`Builder::start`] costs while its element is read.
pub(super) fn attribute_cost(value: &str) -> usize {
    ATTRIBUTE_COST + 2 * value.len()
}

/// The deepest document recorded whatever [`Limits::max_depth`] says: the mapper
/// recurses once or twice per level, so an unbounded setting could overflow the stack.
/// JSON has serde_json's 127 instead.
pub(super) const MAX_DEPTH: usize = 256;

/// The namespace the `xml` prefix is bound to without a declaration.
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// A namespace-resolved name: an `i:type` value such as `b:string` becomes
/// `("http://www.w3.org/2001/XMLSchema", "string")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct QName<'a> {
    pub ns: Rc<str>,
    pub local: Cow<'a, str>,
}

/// The start of an element.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Start<'a> {
    /// The element's namespace (empty when it has none), shared with the declaration it
    /// resolved to: a document names a handful of namespaces thousands of times.
    pub ns: Rc<str>,
    pub local: Cow<'a, str>,
    /// `i:type`, resolved against the namespaces in scope on this element. Boxed, as
    /// most elements have none: every event is the size of the largest.
    pub xsi_type: Option<Box<QName<'a>>>,
    /// `i:nil="true"`.
    pub nil: bool,
}

impl Start<'_> {
    pub fn is(&self, ns: &str, local: &str) -> bool {
        *self.ns == *ns && self.local == local
    }
}

/// What the mapper reads, in document order. Each element is its [`Event::Start`], any
/// text and child elements, and its [`Event::End`]; an element's character data is one
/// [`Event::Text`] between two element events (whitespace between child elements too).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Event<'a> {
    Start(Start<'a>),
    Text(Cow<'a, str>),
    End,
}

/// A well-formed document's events, the root element's first.
pub(super) type Tape<'a> = Vec<Event<'a>>;

/// A namespace declaration, `(prefix, namespace)`, the prefix being `""` for a
/// default-namespace declaration.
pub(super) type Declaration<'a> = (&'a str, Cow<'a, str>);

/// An attribute as a reader sees it, before namespace resolution. `xmlns`
/// declarations are passed separately. Only the value (an `i:type`'s name) may be kept.
pub(super) struct RawAttribute<'r, 'a> {
    pub prefix: &'r str,
    pub local: &'r str,
    pub value: Cow<'a, str>,
}

/// Why the builder refused an event; the reader adds the position.
#[derive(Debug, PartialEq)]
pub(super) enum BuildError {
    /// The document is not well-formed or a prefix is not declared.
    Invalid(String),
    /// Elements nest deeper than the limit (see [`MAX_DEPTH`]).
    TooDeep { limit: usize },
    /// An element's text or an attribute value is longer than
    /// [`Limits::max_string_bytes`]; `path` names the element.
    TooLong { path: String, size: usize },
    /// The decoded document would take more than its budget, `limit` bytes.
    Expansion { limit: usize },
}

impl From<Exhausted> for BuildError {
    fn from(Exhausted { limit }: Exhausted) -> Self {
        Self::Expansion { limit }
    }
}

/// An element being recorded.
struct Open {
    /// Where its [`Event::Start`] is on the tape.
    start: usize,
    /// How many namespace declarations it made.
    declared: usize,
    /// The bytes of character data it has had so far.
    text: usize,
}

/// Records the tape from reader events.
pub(super) struct Builder<'a, 'l> {
    limits: &'l Limits,
    budget: Budget,
    tape: Tape<'a>,
    /// Open elements, outermost first.
    open: Vec<Open>,
    /// The namespace each prefix is bound to; `""` is the default namespace.
    scope: Scope,
    /// Whether the root element has ended.
    ended: bool,
}

impl<'a, 'l> Builder<'a, 'l> {
    /// A builder for a body of `body_len` bytes.
    pub fn new(limits: &'l Limits, body_len: usize) -> Self {
        Self {
            limits,
            budget: Budget::new(body_len, limits),
            tape: Vec::new(),
            open: Vec::new(),
            scope: Scope::default(),
            ended: false,
        }
    }

    /// The budget, for readers that check a repetition before reporting it.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Charges what a reader holds on to while it reads an element: each namespace
    /// declaration ([`declaration_cost`]) and each attribute ([`attribute_cost`]), as
    /// it reads them.
    pub fn charge(&mut self, bytes: usize) -> Result<(), BuildError> {
        Ok(self.budget.charge(bytes)?)
    }

    /// What [`start`](Self::start) charges for an element named `local`; its text is
    /// charged as it comes, its declarations and attributes by the reader.
    pub fn element_cost(local: &str) -> usize {
        ELEMENT_COST + 2 * local.len()
    }

    /// Opens an element with its namespace declarations and its other attributes.
    pub fn start(
        &mut self,
        prefix: &str,
        local: Cow<'a, str>,
        xmlns: &[Declaration<'_>],
        attributes: &[RawAttribute<'_, 'a>],
    ) -> Result<(), BuildError> {
        if self.ended {
            return Err(BuildError::Invalid("content after the root element".into()));
        }
        let limit = self.limits.max_depth.min(MAX_DEPTH);
        if self.open.len() >= limit {
            return Err(BuildError::TooDeep { limit });
        }
        if local.is_empty() {
            return Err(BuildError::Invalid("an element has an empty name".into()));
        }
        self.budget.charge(Self::element_cost(&local))?;
        for (prefix, ns) in xmlns {
            self.scope.declare(prefix, ns);
        }
        let mut start = Start {
            ns: self.resolve(prefix)?,
            local,
            xsi_type: None,
            nil: false,
        };
        for attribute in attributes {
            if attribute.prefix.is_empty() || *self.resolve(attribute.prefix)? != *XSI_NS {
                continue;
            }
            self.check_length(&attribute.value, &start.local)?;
            match attribute.local {
                "type" => start.xsi_type = Some(Box::new(self.resolve_qname(&attribute.value)?)),
                "nil" => start.nil = matches!(attribute.value.trim(), "true" | "1"),
                _ => {}
            }
        }
        self.open.push(Open {
            start: self.tape.len(),
            declared: xmlns.len(),
            text: 0,
        });
        self.tape.push(Event::Start(start));
        Ok(())
    }

    /// Adds character data to the innermost open element.
    pub fn text(&mut self, text: Cow<'a, str>) -> Result<(), BuildError> {
        let Some(open) = self.open.last() else {
            if text.trim().is_empty() {
                return Ok(());
            }
            return Err(BuildError::Invalid("text outside the root element".into()));
        };
        let size = open.text + text.len();
        if size > self.limits.max_string_bytes {
            return Err(BuildError::TooLong {
                path: self.path(),
                size,
            });
        }
        if let Some(open) = self.open.last_mut() {
            open.text = size;
        }
        // Once on the tape, once in the model.
        self.budget.charge(2 * text.len())?;
        // Text split by references or records is one text, as the mapper reads it.
        match self.tape.last_mut() {
            Some(Event::Text(before)) => before.to_mut().push_str(&text),
            _ => self.tape.push(Event::Text(text)),
        }
        Ok(())
    }

    /// Closes the innermost open element.
    pub fn end(&mut self) -> Result<(), BuildError> {
        let Some(Open { declared, .. }) = self.open.pop() else {
            return Err(BuildError::Invalid("an end element with no open element".into()));
        };
        self.scope.undeclare(declared);
        self.tape.push(Event::End);
        self.ended = self.open.is_empty();
        Ok(())
    }

    /// The tape, once the document is complete.
    pub fn finish(self) -> Result<Tape<'a>, BuildError> {
        if !self.open.is_empty() {
            return Err(BuildError::Invalid(format!(
                "the body ends inside element {}",
                self.path()
            )));
        }
        if !self.ended {
            return Err(BuildError::Invalid("the body has no root element".into()));
        }
        Ok(self.tape)
    }

    /// The namespace a prefix is bound to; `""` is the default namespace, which is
    /// empty until declared.
    fn resolve(&self, prefix: &str) -> Result<Rc<str>, BuildError> {
        if prefix == "xml" {
            return Ok(XML_NS.into());
        }
        match self.scope.get(prefix) {
            Some(ns) => Ok(ns.clone()),
            None if prefix.is_empty() => Ok(Rc::default()),
            None => Err(BuildError::Invalid(format!("prefix `{prefix}` is not declared"))),
        }
    }

    /// An `xs:QName` value (`b:string`, `Entity`): an unprefixed name is in the
    /// default namespace, as XML Schema resolves QName values.
    fn resolve_qname(&self, value: &Cow<'a, str>) -> Result<QName<'a>, BuildError> {
        let text = value.trim();
        let (prefix, local) = text.split_once(':').unwrap_or(("", text));
        if local.is_empty() || local.contains(':') {
            return Err(BuildError::Invalid(format!("`{text}` is not a qualified name")));
        }
        let local = match value {
            Cow::Borrowed(value) => {
                let start = value.len() - value.trim_start().len() + (text.len() - local.len());
                Cow::Borrowed(&value[start..start + local.len()])
            }
            Cow::Owned(_) => Cow::Owned(local.to_owned()),
        };
        Ok(QName {
            ns: self.resolve(prefix)?,
            local,
        })
    }

    fn check_length(&self, value: &str, element: &str) -> Result<(), BuildError> {
        if value.len() > self.limits.max_string_bytes {
            let path = format!("{}/{element}", self.path());
            return Err(BuildError::TooLong {
                path,
                size: value.len(),
            });
        }
        Ok(())
    }

    /// The local names of the open elements, `/`-separated.
    fn path(&self) -> String {
        let names: Vec<&str> = self
            .open
            .iter()
            .map(|open| match &self.tape[open.start] {
                Event::Start(start) => &*start.local,
                _ => unreachable!("an open element points at its start"),
            })
            .collect();
        format!("/{}", names.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_resolve_by_scope_not_by_spelling() {
        let limits = Limits::default();
        let mut builder = Builder::new(&limits, 1000);
        let xmlns = |pairs: &[(&'static str, &'static str)]| -> Vec<Declaration<'static>> {
            pairs.iter().map(|&(p, n)| (p, n.into())).collect()
        };
        builder
            .start("", "Root".into(), &xmlns(&[("", "urn:d"), ("i", XSI_NS)]), &[])
            .unwrap();
        let attribute = |prefix, local, value: &'static str| RawAttribute {
            prefix,
            local,
            value: value.into(),
        };
        // `x` here is bound to the instance namespace, so `x:type` is `i:type`.
        builder
            .start(
                "",
                "A".into(),
                &xmlns(&[("x", XSI_NS), ("b", "urn:b")]),
                &[attribute("x", "type", " b:T ")],
            )
            .unwrap();
        builder.end().unwrap();
        // `b` is out of scope again.
        let err = builder.start("", "B".into(), &[], &[attribute("i", "type", "b:T")]);
        assert_eq!(err, Err(BuildError::Invalid("prefix `b` is not declared".into())));
        builder
            .start("", "C".into(), &[], &[attribute("i", "type", "T")])
            .unwrap();
        builder.end().unwrap();
        builder.end().unwrap();
        let tape = builder.finish().unwrap();
        let starts: Vec<&Start> = tape
            .iter()
            .filter_map(|event| match event {
                Event::Start(start) => Some(start),
                _ => None,
            })
            .collect();
        assert_eq!(&*starts[0].ns, "urn:d");
        let qname = |ns: &str, local: &'static str| {
            Some(Box::new(QName {
                ns: ns.into(),
                local: local.into(),
            }))
        };
        assert_eq!(starts[1].xsi_type, qname("urn:b", "T"));
        assert_eq!(starts[2].xsi_type, qname("urn:d", "T"));
    }

    #[test]
    fn text_split_by_references_is_one_event() {
        let limits = Limits::default();
        let mut builder = Builder::new(&limits, 1000);
        builder.start("", "Root".into(), &[], &[]).unwrap();
        for part in ["a ", "&", " b"] {
            builder.text(part.into()).unwrap();
        }
        builder.end().unwrap();
        let tape = builder.finish().unwrap();
        assert_eq!(tape[1], Event::Text("a & b".into()));
        assert_eq!(tape.len(), 3);
    }
}
