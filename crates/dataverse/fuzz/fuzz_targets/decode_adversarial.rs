//! Fuzzes every decoder from the hostile bodies of `sagahost_dataverse::adversarial`: the
//! first input byte picks a generator, the next two a size (up to 64 KiB), and the rest of
//! the input overwrites the body from a position the next two bytes pick. So every run starts
//! from a body aimed at a known weak spot and varies it. Any input must give a context or an
//! error, never a panic, and a decoded context must render as canonical JSON, the same as text and as a `Value`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sagahost_dataverse::adversarial::GENERATORS;
use sagahost_dataverse::{Limits, decode};

fuzz_target!(|data: &[u8]| {
    let [pick, size_high, size_low, at_high, at_low, patch @ ..] = data else {
        return;
    };
    let generator = &GENERATORS[usize::from(*pick) % GENERATORS.len()];
    let mut body = (generator.build)(usize::from(u16::from_be_bytes([*size_high, *size_low])));
    let at = usize::from(u16::from_be_bytes([*at_high, *at_low])) % body.len().max(1);
    let end = (at + patch.len()).min(body.len());
    body[at..end].copy_from_slice(&patch[..end - at]);
    if let Ok(context) = decode(&body, Some(generator.content_type), &Limits::default()) {
        // The text the host hands components and the CLI's `Value` must be one form.
        assert_eq!(context.to_canonical_string(), context.to_canonical_json().to_string());
    }
});
