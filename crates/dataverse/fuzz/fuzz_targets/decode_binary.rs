//! Fuzzes the .NET binary XML decoder: any input must give a context or an error, never a
//! panic, and a decoded context must render as canonical JSON, the same as text and as a `Value`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sagahost_dataverse::{Limits, decode};

fuzz_target!(|data: &[u8]| {
    if let Ok(context) = decode(data, Some("application/msbin1"), &Limits::default()) {
        // The text the host hands components and the CLI's `Value` must be one form.
        assert_eq!(context.to_canonical_string(), context.to_canonical_json().to_string());
    }
});
