//! The decoded-size budget: how many bytes a body may turn into once decoded.
//!
//! A body is small, but what it decodes to need not be: one `Array` record repeats an
//! element (name, attributes and all) as often as it has items, one byte of `TrueText`
//! becomes four of text, and every element or JSON value costs an event on the tape (or
//! a node in serde_json's tree) and another in the model, each far larger than the few
//! bytes that wrote it. So every decoder
//! charges what it is about to build against a [`Budget`] of
//! [`Limits::max_expansion`] bytes per body byte plus [`Limits::expansion_allowance`], and
//! stops with [`DecodeError::Expansion`](super::DecodeError::Expansion) *before* building
//! anything the budget cannot pay for. That bounds the decoder's memory, and its time, by
//! the body's size.
//!
//! The costs below are what a node takes in the reader's events and in the model together,
//! growth slack included; strings are charged twice, once per copy (events and model). They
//! were measured with the counting allocator of `crates/dataverse/tests/decode_memory.rs`.

use super::Limits;

/// An element of the XML or binary tape (its start, text and end events, in a list that
/// may have grown to twice what it holds) and the model value the mapper makes of it.
pub(super) const ELEMENT_COST: usize = 320;
/// A namespace declaration, as its reader lists it and then in scope.
pub(super) const DECLARATION_COST: usize = 256;
/// An attribute a reader passes on, while its element is being read.
pub(super) const ATTRIBUTE_COST: usize = 256;
/// A JSON value of any kind: its slot in the model, and in serde_json's tree when the
/// body's members must be put in order first, both lists that may have grown to twice
/// what they hold.
pub(super) const JSON_VALUE_COST: usize = 272;
/// The extra cost of a JSON object: serde_json's map (when members are put in order)
/// allocates a node of eleven entries however few it holds.
pub(super) const JSON_OBJECT_COST: usize = 640;

/// What is left of the decoded-size allowance of one body.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    limit: usize,
    spent: usize,
}

/// The budget cannot pay for what was asked; `limit` is the whole budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Exhausted {
    pub limit: usize,
}

impl Budget {
    /// The budget of a body of `body_len` bytes.
    pub fn new(body_len: usize, limits: &Limits) -> Self {
        let limit = body_len
            .saturating_mul(limits.max_expansion)
            .saturating_add(limits.expansion_allowance);
        Self { limit, spent: 0 }
    }

    /// Spends `bytes`, or fails without spending anything.
    pub fn charge(&mut self, bytes: usize) -> Result<(), Exhausted> {
        self.check(bytes)?;
        self.spent += bytes;
        Ok(())
    }

    /// Spends `count` times `each`, or fails without spending anything (the product is
    /// never computed past the limit, so a count read from the body cannot overflow it).
    pub fn charge_each(&mut self, count: usize, each: usize) -> Result<(), Exhausted> {
        self.charge(count.saturating_mul(each))
    }

    /// Fails if `bytes` more could not be paid for, spending nothing either way.
    pub fn check(&self, bytes: usize) -> Result<(), Exhausted> {
        match self.spent.checked_add(bytes) {
            Some(total) if total <= self.limit => Ok(()),
            _ => Err(Exhausted { limit: self.limit }),
        }
    }

    /// As [`check`](Self::check), for `count` times `each` bytes.
    pub fn check_each(&self, count: usize, each: usize) -> Result<(), Exhausted> {
        self.check(count.saturating_mul(each))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_stop_at_the_limit_without_overflowing() {
        let limits = Limits {
            max_expansion: 4,
            expansion_allowance: 10,
            ..Limits::default()
        };
        let mut budget = Budget::new(5, &limits);
        budget.charge(25).unwrap();
        assert_eq!(budget.charge(6), Err(Exhausted { limit: 30 }));
        // A failed charge spends nothing.
        budget.charge(5).unwrap();
        assert!(budget.check(1).is_err());
        assert!(Budget::new(1, &limits).charge_each(usize::MAX, 2).is_err());
        assert!(Budget::new(1, &limits).check_each(3, 5).is_err());
        assert!(Budget::new(1, &limits).check_each(2, 7).is_ok());
        assert_eq!(Budget::new(usize::MAX, &limits).limit, usize::MAX);
    }
}
