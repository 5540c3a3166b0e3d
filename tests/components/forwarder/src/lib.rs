//! # forwarder: the benchmarks' partner component
//!
//! Forwards every message, unchanged, to route `next`; completes anything else. It does as little
//! as a component can, so a benchmark of it measures the host: instantiation, the WIT call and
//! the routing. The benchmarks compare it with the same logic as a native Rust function.

use sagahost_partner::prelude::*;

struct Forwarder;

impl Guest for Forwarder {
    fn handle(event: Event) -> Result<Plan, String> {
        Ok(match event {
            Event::Message(_) => forward("next"),
            _ => complete(),
        })
    }
}

sagahost_partner::export!(Forwarder);
