//! Fuzzes the JSON decoder: any input must give a context or an error, never a
//! panic, and a decoded context must render as canonical JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sagahost_dataverse::{Limits, decode};

fuzz_target!(|data: &[u8]| {
    if let Ok(context) = decode(data, Some("application/json"), &Limits::default()) {
        let _ = context.to_canonical_json().to_string();
    }
});
