//! Decodes the `RemoteExecutionContext` bodies Dataverse posts (to Service Bus
//! queues and to webhooks) into the format-independent [`model`], and renders that
//! model as canonical JSON ([`model::Context::to_canonical_json`]).
//!
//! All three formats Dataverse posts decode into the same model, so nothing
//! downstream of [`decode`] depends on the body format:
//! - JSON (DataContractJsonSerializer output), read by `json/`;
//! - XML (DataContractSerializer text XML), read by `xml.rs` onto the shared
//!   event tape of `infoset.rs` (namespaces resolved by `namespaces.rs`);
//! - .NET binary XML ([MC-NBFX], `application/msbin1`), read by `nbfx.rs` onto the
//!   same tape.
//!
//! None of them builds a tree: JSON goes from serde_json's reader straight into the
//! model, and `mapper.rs` turns the flat tape, whose names and text borrow from the
//! body, into the model in one pass (`xsd.rs` parses the XML Schema text forms).
//! `contract.rs` holds what the JSON decoder and the mapper both know about the data
//! contracts. Every decoder charges what it builds against a budget (`budget.rs`, see
//! [`Limits`]).
//!
//! What Dataverse says outside the body (Service Bus properties, webhook
//! headers) is read by [`message_size_exceeded`] and [`claims`].
//! [`adversarial`] builds the hostile bodies the tests, benchmarks and fuzz
//! targets feed the decoders.
//!
//! [MC-NBFX]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/mc-nbfx/

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod adversarial;
mod budget;
mod canonical;
mod contract;
mod infoset;
mod json;
mod mapper;
pub mod model;
mod namespaces;
mod nbfx;
mod properties;
mod xml;
mod xsd;

use std::fmt;

use model::Context;
pub use properties::{Claims, claims, message_size_exceeded};

/// A UTF-8 byte order mark, which some senders put before a text body.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Bounds on what [`decode`] accepts, so a hostile or broken body cannot make the
/// host allocate or recurse without limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest body accepted, checked before anything is parsed.
    pub max_body_bytes: usize,
    /// Deepest nesting of objects and arrays (JSON) or elements (XML, binary), the
    /// root being level 1. It also bounds `ParentContext` chains. serde_json refuses
    /// more than 127 levels on its own, so for JSON larger values behave as 127; for
    /// XML and binary, values over 256 behave as 256.
    pub max_depth: usize,
    /// Longest string value or bag key, in bytes once unescaped (for XML and binary:
    /// the text of any element or attribute, base64 text included).
    pub max_string_bytes: usize,
    /// Bytes the decoded form of a body (the reader's events and the model) may take per body byte,
    /// on top of [`expansion_allowance`](Self::expansion_allowance). What a body would
    /// decode to is charged before it is built (see [`DecodeError::Expansion`]), so this
    /// bounds the decoder's memory, and its time, by the body's size.
    pub max_expansion: usize,
    /// Decoded bytes every body may take whatever its size, so small bodies are never
    /// refused for their structure.
    pub expansion_allowance: usize,
}

impl Default for Limits {
    /// 4 MiB bodies (Service Bus premium allows more than the 256 KiB standard
    /// tier, and Dataverse trims contexts well below this), 64 levels, 1 MiB strings,
    /// and a decoded form of at most 12 bytes per body byte plus 8 MiB: decoding then
    /// never holds more than 16 bytes per body byte plus 9 MiB (`crates/dataverse/tests/decode_memory.rs`
    /// checks it). Bodies made of bags of short pairs, the densest real shape, decode up
    /// to about 300 KB as JSON (whose charges are the largest; Service Bus standard
    /// takes 256 KiB) and to the whole 4 MiB as XML.
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            max_depth: 64,
            max_string_bytes: 1024 * 1024,
            max_expansion: 12,
            expansion_allowance: 8 * 1024 * 1024,
        }
    }
}

/// The message formats Dataverse can post a context in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// DataContractJsonSerializer output, `application/json`.
    Json,
    /// DataContractSerializer text XML, `application/xml`.
    Xml,
    /// [MC-NBFX] .NET binary XML, `application/msbin1`.
    Binary,
}

impl Format {
    /// The format a content type names, if it names one Dataverse uses. Case and
    /// parameters such as `; charset=utf-8` do not matter.
    ///
    /// ```
    /// use sagahost_dataverse::Format;
    ///
    /// assert_eq!(Format::from_content_type("application/json; charset=utf-8"), Some(Format::Json));
    /// assert_eq!(Format::from_content_type("text/XML"), Some(Format::Xml));
    /// assert_eq!(Format::from_content_type("application/msbin1"), Some(Format::Binary));
    /// assert_eq!(Format::from_content_type("text/plain"), None);
    /// ```
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        // Called for every message: compares without allocating a lower-case copy.
        let is = |name: &str| essence.eq_ignore_ascii_case(name);
        if is("application/json") || is("text/json") {
            Some(Format::Json)
        } else if is("application/xml") || is("text/xml") {
            Some(Format::Xml)
        } else if is("application/msbin1") {
            Some(Format::Binary)
        } else {
            None
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Json => "JSON",
            Self::Xml => "XML",
            Self::Binary => ".NET binary XML",
        })
    }
}

/// Why a body could not be decoded: which format, where, and what was wrong.
///
/// The `Display` text is written for the operator reading a dead letter: it names
/// the format, the position and the limit or contract that was broken.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The body has no bytes (or only whitespace and a byte order mark).
    #[error("body is empty")]
    Empty,
    /// The body is over [`Limits::max_body_bytes`]; nothing was parsed.
    #[error("body is {size} bytes, over the {limit}-byte limit")]
    BodyTooLarge {
        /// The body's size in bytes.
        size: usize,
        /// The limit it broke.
        limit: usize,
    },
    /// The body is not well-formed in its format.
    #[error("{format} body is not valid at line {line}, column {column}: {reason}")]
    Syntax {
        /// The format it was read as.
        format: Format,
        /// Where the error is, 1-based.
        line: usize,
        /// Where the error is on that line, 1-based.
        column: usize,
        /// What the parser found wrong.
        reason: String,
    },
    /// A text body nests deeper than [`Limits::max_depth`].
    #[error("{format} body has nesting deeper than {limit} levels, at line {line}, column {column}")]
    TooDeep {
        /// The format it was read as.
        format: Format,
        /// The depth limit.
        limit: usize,
        /// Where the limit was crossed, 1-based.
        line: usize,
        /// Where the limit was crossed on that line, 1-based.
        column: usize,
    },
    /// The body is well-formed but its root is not a `RemoteExecutionContext`.
    #[error("{format} body must be a RemoteExecutionContext object, found {found}")]
    NotAContext {
        /// The format it was read as.
        format: Format,
        /// What the root is instead, e.g. `an array`.
        found: &'static str,
    },
    /// A member does not have the shape its data contract gives it.
    #[error("{path}: expected {expected}, found {found}")]
    Shape {
        /// The member, e.g. `InputParameters.Target.Attributes.statecode.Value`.
        path: String,
        /// What the contract says it is.
        expected: &'static str,
        /// What the body holds.
        found: &'static str,
    },
    /// A string value or key is over [`Limits::max_string_bytes`].
    #[error("{format} body: {path}: string is {size} bytes, over the {limit}-byte limit")]
    StringTooLong {
        /// The format it was read as.
        format: Format,
        /// Where the string is.
        path: String,
        /// Its size in bytes.
        size: usize,
        /// The limit it broke.
        limit: usize,
    },
    /// A .NET binary XML body is not well-formed.
    #[error(".NET binary XML body is not valid at byte {offset}: {reason}")]
    Binary {
        /// The byte the offending record starts at.
        offset: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A .NET binary XML body nests deeper than [`Limits::max_depth`].
    #[error(".NET binary XML body has nesting deeper than {limit} levels, at byte {offset}")]
    BinaryTooDeep {
        /// The depth limit.
        limit: usize,
        /// The byte where the limit was crossed.
        offset: usize,
    },
    /// What the body decodes to would take more than the decoded-size budget for a body
    /// of this size ([`Limits::max_expansion`] per body byte plus
    /// [`Limits::expansion_allowance`]). Found before that much is built.
    #[error(
        "{format} body would take more than {limit} bytes once decoded, over the decoded-size limit \
         for a body of {size} bytes"
    )]
    Expansion {
        /// The format it was read as.
        format: Format,
        /// The body's size in bytes.
        size: usize,
        /// The decoded bytes allowed for it.
        limit: usize,
    },
    /// The body failed to decode in the format its content type names, and its first
    /// bytes look like another format: most likely the sender labels it wrongly.
    #[error(
        "{error} (the content type says {declared}, but the body looks like {looks_like}: \
         check the content type the sender sets)"
    )]
    WrongContentType {
        /// The format the content type names.
        declared: Format,
        /// The format the body looks like.
        looks_like: Format,
        /// Why it failed in the declared format.
        error: Box<DecodeError>,
    },
}

/// Decodes a `RemoteExecutionContext` body into the model.
///
/// The format comes from `content_type` when it names one (parameters such as
/// `; charset=utf-8` are ignored), else from the body's first byte after an
/// optional UTF-8 byte order mark and whitespace: `{` is JSON, `<` is XML and
/// anything else is .NET binary XML.
pub fn decode(body: &[u8], content_type: Option<&str>, limits: &Limits) -> Result<Context, DecodeError> {
    if body.len() > limits.max_body_bytes {
        return Err(DecodeError::BodyTooLarge {
            size: body.len(),
            limit: limits.max_body_bytes,
        });
    }
    let declared = content_type.and_then(Format::from_content_type);
    let format = match declared {
        Some(format) => format,
        None => sniff(body)?,
    };
    let decoded = match format {
        Format::Json => json::decode(body, limits),
        Format::Xml => xml::decode(body, limits),
        Format::Binary => nbfx::decode(body, limits),
    };
    match (decoded, declared) {
        (Err(error), Some(declared)) => match looks_like(body) {
            Some(looks_like) if looks_like != declared => Err(DecodeError::WrongContentType {
                declared,
                looks_like,
                error: Box::new(error),
            }),
            _ => Err(error),
        },
        (decoded, _) => decoded,
    }
}

/// The format a body unmistakably looks like, if any: text starting with `{` or `<`, or an
/// element or attribute record followed by a length byte below 0x20 (which no text has as its
/// second character). Only used to explain a failure, so it would rather say nothing.
fn looks_like(body: &[u8]) -> Option<Format> {
    match (sniff(body), body) {
        (Ok(Format::Binary), [record, length, ..]) if (0x40..=0x77).contains(record) && *length < 0x20 => {
            Some(Format::Binary)
        }
        (Ok(Format::Binary) | Err(_), _) => None,
        (Ok(text), _) => Some(text),
    }
}

/// Guesses the format from the first significant byte, for senders that set no
/// (or a generic) content type.
fn sniff(body: &[u8]) -> Result<Format, DecodeError> {
    let text = body.strip_prefix(UTF8_BOM).unwrap_or(body);
    match text.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Err(DecodeError::Empty),
        Some(b'{') => Ok(Format::Json),
        Some(b'<') => Ok(Format::Xml),
        // .NET binary XML starts with a record type byte, which can be anything.
        Some(_) => Ok(Format::Binary),
    }
}

#[cfg(test)]
mod tests;

/// Runs the README's example as a doctest, so the crate's front page stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
