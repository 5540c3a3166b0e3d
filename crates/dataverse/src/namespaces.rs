//! The namespace bindings in scope while a document is read: which namespace each
//! prefix stands for, as elements declare and undeclare them.
//!
//! Serializers write one-letter prefixes (`a:`, `b:`, `i:`) and re-declare the same
//! few namespaces on element after element, so those cases cost no hashing and no
//! allocation: one-character prefixes (and the default namespace) live in a table
//! indexed by their byte, and each distinct namespace is kept once and shared.
//! Longer prefixes go in a map, so resolving stays constant-time however many a
//! hostile document declares.

use std::collections::HashMap;
use std::rc::Rc;

/// How many distinct namespaces are kept for sharing; a document beyond that (only a
/// hostile one) gets a fresh copy per declaration.
const SHARED_NAMESPACES: usize = 32;

/// The bindings in scope, with what each declaration hid so it can be undone.
#[derive(Default)]
pub(super) struct Scope {
    /// The binding of `""` (at 0) and of each one-character ASCII prefix (at its byte).
    short: Vec<Option<Rc<str>>>,
    long: HashMap<Rc<str>, Rc<str>>,
    /// The declarations of the open elements, in order, each with the binding it hid.
    declared: Vec<(Prefix, Option<Rc<str>>)>,
    namespaces: Vec<Rc<str>>,
}

/// Where a prefix's binding lives.
enum Prefix {
    Short(usize),
    Long(Rc<str>),
}

fn short_slot(prefix: &str) -> Option<usize> {
    match prefix.as_bytes() {
        [] => Some(0),
        [byte] if byte.is_ascii() => Some(usize::from(*byte)),
        _ => None,
    }
}

impl Scope {
    /// The namespace `prefix` is bound to.
    pub fn get(&self, prefix: &str) -> Option<&Rc<str>> {
        match short_slot(prefix) {
            Some(slot) => self.short.get(slot)?.as_ref(),
            None => self.long.get(prefix),
        }
    }

    /// Binds `prefix` to `ns` until [`undeclare`](Self::undeclare) undoes it.
    pub fn declare(&mut self, prefix: &str, ns: &str) {
        let ns = self.shared(ns);
        let (prefix, hidden) = match short_slot(prefix) {
            Some(slot) => {
                if self.short.len() <= slot {
                    self.short.resize(128, None);
                }
                (Prefix::Short(slot), self.short[slot].replace(ns))
            }
            None => {
                let prefix = match self.long.get_key_value(prefix) {
                    Some((bound, _)) => bound.clone(),
                    None => Rc::from(prefix),
                };
                let hidden = self.long.insert(prefix.clone(), ns);
                (Prefix::Long(prefix), hidden)
            }
        };
        self.declared.push((prefix, hidden));
    }

    /// Undoes the latest `count` declarations, latest first (an element may declare
    /// a prefix twice).
    pub fn undeclare(&mut self, count: usize) {
        for (prefix, hidden) in self.declared.drain(self.declared.len() - count..).rev() {
            match (prefix, hidden) {
                (Prefix::Short(slot), hidden) => self.short[slot] = hidden,
                (Prefix::Long(prefix), Some(ns)) => {
                    self.long.insert(prefix, ns);
                }
                (Prefix::Long(prefix), None) => {
                    self.long.remove(&prefix);
                }
            }
        }
    }

    /// `ns`, shared with an earlier declaration of the same namespace when there is one.
    fn shared(&mut self, ns: &str) -> Rc<str> {
        if let Some(known) = self.namespaces.iter().find(|known| ***known == *ns) {
            return known.clone();
        }
        let ns = Rc::<str>::from(ns);
        if self.namespaces.len() < SHARED_NAMESPACES {
            self.namespaces.push(ns.clone());
        }
        ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_nest_and_undo_in_order() {
        let mut scope = Scope::default();
        scope.declare("b", "urn:one");
        scope.declare("long", "urn:one");
        scope.declare("", "urn:default");
        scope.declare("b", "urn:two");
        scope.declare("long", "urn:two");
        assert_eq!(scope.get("b").map(|ns| &**ns), Some("urn:two"));
        assert_eq!(scope.get("long").map(|ns| &**ns), Some("urn:two"));
        scope.undeclare(2);
        assert_eq!(scope.get("b").map(|ns| &**ns), Some("urn:one"));
        assert_eq!(scope.get("long").map(|ns| &**ns), Some("urn:one"));
        assert_eq!(scope.get("").map(|ns| &**ns), Some("urn:default"));
        // The same namespace declared twice is one string.
        assert!(Rc::ptr_eq(scope.get("b").unwrap(), scope.get("long").unwrap()));
        scope.undeclare(3);
        assert!(scope.get("b").is_none() && scope.get("long").is_none() && scope.get("").is_none());
        assert!(scope.get("é").is_none());
    }
}
