//! The small element tree the XML and .NET binary XML readers both produce, and
//! the namespace resolution they share.
//!
//! A reader reports raw events (an element's prefix and local name, its `xmlns`
//! declarations, its other attributes, text, the end of an element) to a
//! [`Builder`], which resolves every prefix against the declarations in scope and
//! keeps only what the data-contract mapper needs: each element's namespace and
//! local name, its `i:type` resolved to a [`QName`] (namespace, local name), its
//! `i:nil`, its children and its text. Because both readers go through the same
//! builder, the two formats yield the same tree for the same document, and the
//! [`Limits`] on depth, text length and decoded size are enforced in one place.
//!
//! The builder charges every element, declaration and byte of text against the body's
//! [`Budget`] before it keeps it, and resolves a prefix in constant time however many
//! declarations are in scope.

use std::borrow::Cow;
use std::collections::HashMap;
use std::rc::Rc;

use super::Limits;
use super::budget::{ATTRIBUTE_COST, Budget, DECLARATION_COST, ELEMENT_COST, Exhausted};

/// What a namespace declaration costs, in the reader and then in scope.
pub(super) fn declaration_cost(prefix: &str, ns: &str) -> usize {
    DECLARATION_COST + 2 * (prefix.len() + ns.len())
}

/// What an attribute a reader passes to [`Builder::start`] costs while its element is read.
pub(super) fn attribute_cost(value: &str) -> usize {
    ATTRIBUTE_COST + 2 * value.len()
}
use super::contract::XSI_NS;

/// The deepest tree built whatever [`Limits::max_depth`] says: the mapper recurses
/// once or twice per level, and dropping the tree recurses once per level, so an
/// unbounded setting could overflow the stack. JSON has serde_json's 127 instead.
pub(super) const MAX_DEPTH: usize = 256;

/// The namespace the `xml` prefix is bound to without a declaration.
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// A namespace-resolved name: an `i:type` value such as `b:string` becomes
/// `("http://www.w3.org/2001/XMLSchema", "string")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct QName {
    pub ns: Rc<str>,
    pub local: String,
}

/// One element of the document.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Element {
    /// The element's namespace (empty when it has none) and local name. Shared with the
    /// declaration it resolved to: a document names a handful of namespaces thousands of times.
    pub ns: Rc<str>,
    pub local: String,
    /// `i:type`, resolved against the namespaces in scope on this element.
    pub xsi_type: Option<QName>,
    /// `i:nil="true"`.
    pub nil: bool,
    pub children: Vec<Element>,
    /// The element's character data, concatenated. Only meaningful for elements
    /// without children (whitespace between child elements lands here too).
    pub text: String,
}

impl Element {
    pub fn is(&self, ns: &str, local: &str) -> bool {
        *self.ns == *ns && self.local == local
    }

    /// The first child with this namespace and local name.
    pub fn child(&self, ns: &str, local: &str) -> Option<&Element> {
        self.children.iter().find(|child| child.is(ns, local))
    }
}

/// A namespace declaration, `(prefix, namespace)`, the prefix being `""` for a
/// default-namespace declaration.
pub(super) type Declaration<'a> = (&'a str, Cow<'a, str>);

/// An attribute as a reader sees it, before namespace resolution. `xmlns`
/// declarations are passed separately.
pub(super) struct RawAttribute<'a> {
    pub prefix: &'a str,
    pub local: &'a str,
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

/// An element being built, with the namespace declarations it made.
struct Open {
    element: Element,
    declared: usize,
}

/// Assembles the tree from reader events.
pub(super) struct Builder<'l> {
    limits: &'l Limits,
    budget: Budget,
    /// Open elements, outermost first.
    open: Vec<Open>,
    /// The namespace each prefix is bound to; `""` is the default namespace. A map, so
    /// resolving does not scan every declaration in scope.
    scope: HashMap<Rc<str>, Rc<str>>,
    /// The prefixes declared by the open elements, in order, each with the binding it
    /// hides, to restore at the element's end.
    declared: Vec<(Rc<str>, Option<Rc<str>>)>,
    root: Option<Element>,
}

impl<'l> Builder<'l> {
    /// A builder for a body of `body_len` bytes.
    pub fn new(limits: &'l Limits, body_len: usize) -> Self {
        Self {
            limits,
            budget: Budget::new(body_len, limits),
            open: Vec::new(),
            scope: HashMap::new(),
            declared: Vec::new(),
            root: None,
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
        local: &str,
        xmlns: &[Declaration<'_>],
        attributes: &[RawAttribute<'_>],
    ) -> Result<(), BuildError> {
        if self.root.is_some() {
            return Err(BuildError::Invalid("content after the root element".into()));
        }
        let limit = self.limits.max_depth.min(MAX_DEPTH);
        if self.open.len() >= limit {
            return Err(BuildError::TooDeep { limit });
        }
        if local.is_empty() {
            return Err(BuildError::Invalid("an element has an empty name".into()));
        }
        self.budget.charge(Self::element_cost(local))?;
        let declared = xmlns.len();
        for (prefix, ns) in xmlns {
            let prefix = Rc::<str>::from(*prefix);
            let hidden = self.scope.insert(prefix.clone(), Rc::from(ns.as_ref()));
            self.declared.push((prefix, hidden));
        }
        let mut element = Element {
            ns: self.resolve(prefix)?,
            local: local.to_owned(),
            ..Element::default()
        };
        for attribute in attributes {
            if attribute.prefix.is_empty() || *self.resolve(attribute.prefix)? != *XSI_NS {
                continue;
            }
            self.check_length(&attribute.value, local)?;
            match attribute.local {
                "type" => element.xsi_type = Some(self.resolve_qname(&attribute.value)?),
                "nil" => element.nil = matches!(attribute.value.trim(), "true" | "1"),
                _ => {}
            }
        }
        self.open.push(Open { element, declared });
        Ok(())
    }

    /// Adds character data to the innermost open element.
    pub fn text(&mut self, text: &str) -> Result<(), BuildError> {
        let Some(open) = self.open.last() else {
            if text.trim().is_empty() {
                return Ok(());
            }
            return Err(BuildError::Invalid("text outside the root element".into()));
        };
        let size = open.element.text.len() + text.len();
        if size > self.limits.max_string_bytes {
            return Err(BuildError::TooLong {
                path: self.path(),
                size,
            });
        }
        // Once in the tree, once in the model.
        self.budget.charge(2 * text.len())?;
        if let Some(open) = self.open.last_mut() {
            open.element.text.push_str(text);
        }
        Ok(())
    }

    /// Closes the innermost open element.
    pub fn end(&mut self) -> Result<(), BuildError> {
        let Some(Open { element, declared }) = self.open.pop() else {
            return Err(BuildError::Invalid("an end element with no open element".into()));
        };
        // Latest first, in case an element declared a prefix twice.
        for (prefix, hidden) in self.declared.drain(self.declared.len() - declared..).rev() {
            match hidden {
                Some(ns) => self.scope.insert(prefix, ns),
                None => self.scope.remove(&prefix),
            };
        }
        match self.open.last_mut() {
            Some(parent) => parent.element.children.push(element),
            None => self.root = Some(element),
        }
        Ok(())
    }

    /// The root element, once the document is complete.
    pub fn finish(self) -> Result<Element, BuildError> {
        if !self.open.is_empty() {
            return Err(BuildError::Invalid(format!(
                "the body ends inside element {}",
                self.path()
            )));
        }
        self.root
            .ok_or_else(|| BuildError::Invalid("the body has no root element".into()))
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
    fn resolve_qname(&self, value: &str) -> Result<QName, BuildError> {
        let value = value.trim();
        let (prefix, local) = value.split_once(':').unwrap_or(("", value));
        if local.is_empty() || local.contains(':') {
            return Err(BuildError::Invalid(format!("`{value}` is not a qualified name")));
        }
        Ok(QName {
            ns: self.resolve(prefix)?,
            local: local.to_owned(),
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
        let names: Vec<&str> = self.open.iter().map(|open| open.element.local.as_str()).collect();
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
            .start("", "Root", &xmlns(&[("", "urn:d"), ("i", XSI_NS)]), &[])
            .unwrap();
        let attribute = |prefix, local, value: &str| RawAttribute {
            prefix,
            local,
            value: value.to_owned().into(),
        };
        // `x` here is bound to the instance namespace, so `x:type` is `i:type`.
        builder
            .start(
                "",
                "A",
                &xmlns(&[("x", XSI_NS), ("b", "urn:b")]),
                &[attribute("x", "type", "b:T")],
            )
            .unwrap();
        builder.end().unwrap();
        // `b` is out of scope again.
        let err = builder.start("", "B", &[], &[attribute("i", "type", "b:T")]);
        assert_eq!(err, Err(BuildError::Invalid("prefix `b` is not declared".into())));
        builder.start("", "C", &[], &[attribute("i", "type", "T")]).unwrap();
        builder.end().unwrap();
        builder.end().unwrap();
        let root = builder.finish().unwrap();
        assert_eq!(&*root.ns, "urn:d");
        let qname = |ns: &str, local: &str| {
            Some(QName {
                ns: ns.into(),
                local: local.into(),
            })
        };
        assert_eq!(root.children[0].xsi_type, qname("urn:b", "T"));
        assert_eq!(root.children[1].xsi_type, qname("urn:d", "T"));
    }
}
