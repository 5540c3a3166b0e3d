//! W3C Trace Context `traceparent` header values (version `00`).
//!
//! `00-<trace-id: 32 hex>-<parent-id: 16 hex>-<flags: 2 hex>`, lowercase. The
//! host continues a trace it received (same trace id, new span id) or starts a
//! new one when it has none.

use std::fmt;
use std::str::FromStr;

/// A parsed `traceparent` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The trace id; never all zeros.
    pub trace_id: [u8; 16],
    /// The id of the span this header names (the caller's span); never all zeros.
    pub span_id: [u8; 8],
    /// Trace flags; bit 0 is `sampled`.
    pub flags: u8,
}

/// Why a `traceparent` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid traceparent: {0}")]
pub struct TraceParentError(&'static str);

/// The `sampled` trace flag.
pub const SAMPLED: u8 = 0x01;

impl TraceParent {
    /// Starts a new trace: random trace id and span id, sampled.
    pub fn new_root() -> Self {
        Self {
            trace_id: random_nonzero(),
            span_id: random_nonzero(),
            flags: SAMPLED,
        }
    }

    /// A child of this span: the same trace id, a new random span id, sampled.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: random_nonzero(),
            flags: SAMPLED,
        }
    }

    /// Parses a header value.
    ///
    /// Accepts version `00` exactly, and, as the spec asks, higher versions
    /// (except `ff`) by reading their `00` prefix. Hex must be lowercase; all-zero
    /// trace or span ids are rejected.
    pub fn parse(value: &str) -> Result<Self, TraceParentError> {
        let value = value.trim();
        let bytes = value.as_bytes();
        if bytes.len() < 55 {
            return Err(TraceParentError("too short"));
        }
        let version = decode_hex::<1>(&value[0..2]).ok_or(TraceParentError("bad version"))?[0];
        if version == 0xff {
            return Err(TraceParentError("version ff is invalid"));
        }
        if version == 0 && bytes.len() != 55 {
            return Err(TraceParentError("version 00 must be 55 characters"));
        }
        if version != 0 && bytes.len() > 55 && bytes[55] != b'-' {
            return Err(TraceParentError("bad separator after flags"));
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return Err(TraceParentError("bad separator"));
        }
        let trace_id = decode_hex::<16>(&value[3..35]).ok_or(TraceParentError("bad trace id"))?;
        let span_id = decode_hex::<8>(&value[36..52]).ok_or(TraceParentError("bad parent id"))?;
        let flags = decode_hex::<1>(&value[53..55]).ok_or(TraceParentError("bad flags"))?[0];
        if trace_id == [0; 16] {
            return Err(TraceParentError("all-zero trace id"));
        }
        if span_id == [0; 8] {
            return Err(TraceParentError("all-zero parent id"));
        }
        Ok(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        hex::encode(self.span_id)
    }

    /// Whether the `sampled` flag is set.
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.span_id),
            self.flags
        )
    }
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Decodes exactly `N` bytes from lowercase hex.
fn decode_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// Random bytes from the thread-local CSPRNG, never all zeros.
fn random_nonzero<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    while out.iter().all(|b| *b == 0) {
        rand::fill(&mut out[..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_round_trip() {
        let tp = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.span_id_hex(), "00f067aa0ba902b7");
        assert!(tp.sampled());
        assert_eq!(tp.to_string(), EXAMPLE);
        assert_eq!(EXAMPLE.parse::<TraceParent>().unwrap(), tp);
    }

    #[test]
    fn child_keeps_trace_and_changes_span() {
        let parent = TraceParent::parse(EXAMPLE).unwrap();
        let child = parent.child();
        assert_eq!(child.trace_id, parent.trace_id);
        assert_ne!(child.span_id, parent.span_id);
        assert_eq!(child.flags, SAMPLED);
        assert_eq!(TraceParent::parse(&child.to_string()).unwrap(), child);
    }

    #[test]
    fn new_roots_differ() {
        let a = TraceParent::new_root();
        let b = TraceParent::new_root();
        assert_ne!(a.trace_id, b.trace_id);
        assert_eq!(TraceParent::parse(&a.to_string()).unwrap(), a);
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01",
        ] {
            assert!(TraceParent::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn accepts_future_versions_by_prefix() {
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-whatever";
        let tp = TraceParent::parse(future).unwrap();
        assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
