//! Rust types generated from the `sagahost:partner` WIT package.
//!
//! These are the contract: the host builds [`Event`]s from them and reads
//! [`Plan`]s back. Everything else in the host converts to or from them here
//! rather than re-declaring the shapes.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "partner",
    // `handle` runs as a future so a deadline can cancel it wherever the guest
    // is, in wasm or blocked in a WASI call (see `runtime.rs`).
    exports: { default: async },
});

pub use self::exports::sagahost::partner::handler::{Event, Plan};
pub use self::sagahost::partner::types::*;

/// The fully qualified name of the exported handler interface.
pub const HANDLER_INTERFACE: &str = "sagahost:partner/handler@0.1.0";

impl Event {
    /// The message this event is about.
    pub fn inbound(&self) -> &Inbound {
        match self {
            Event::Message(inbound) => inbound,
            Event::Responses(responses) => &responses.inbound,
            Event::Compensate(compensation) => &compensation.inbound,
        }
    }

    /// The message this event is about, moved out of the event.
    pub fn into_inbound(self) -> Inbound {
        match self {
            Event::Message(inbound) => inbound,
            Event::Responses(responses) => responses.inbound,
            Event::Compensate(compensation) => compensation.inbound,
        }
    }
}
