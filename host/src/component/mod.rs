//! The component runtime: runs partner components in the wasmtime sandbox.
//!
//! This module owns everything between a `.wasm` file and a `plan`:
//!
//! - [`Runtime`] holds the one wasmtime [`Engine`](wasmtime::Engine) with the
//!   pooling allocator, the epoch ticker that enforces deadlines, and the on-disk
//!   cache of compiled artifacts ([`cache`]).
//! - [`PartnerComponent`] is one partner's compiled, linked component. Each
//!   [`PartnerComponent::handle`] call gets a fresh instance from the pool, so no
//!   message can see another's memory, and runs it under the partner's
//!   [`Limits`].
//! - [`Registry`] holds each partner's current version and swaps in a new one
//!   on reload without touching messages in flight.
//! - [`source`] fetches components from files, OCI registries and HTTPS URLs,
//!   verifies their digests and caches them by digest.
//! - [`ComponentError`] says, in a type, how a guest misbehaved (deadline,
//!   memory cap, fuel, trap, bad return) so the saga layer can retry or
//!   dead-letter. Nothing a guest does can panic the host.
//! - [`wit`] holds the types generated from `wit/`, the contract itself, and
//!   [`context`] fills them from a decoded Dataverse message.
//!
//! Guests get no filesystem, no sockets and no environment: only the imports of
//! the `partner` world, the WASI clocks and random, and stdout/stderr captured
//! into `tracing`.

pub mod cache;
pub mod context;
mod error;
mod host;
mod limits;
mod needs;
pub mod registry;
mod runtime;
pub mod source;
pub mod wit;

pub use error::ComponentError;
pub use limits::Limits;
pub use needs::PoolNeeds;
pub use registry::{
    Arm, CanaryPlan, CanaryStatus, ComponentSpec, Picked, Registry, Reloaded, SlotStatus, VersionEvent,
    VersionEventKind,
};
pub use runtime::{ComponentInfo, PartnerComponent, Runtime, RuntimeOptions};
pub use source::{ComponentSource, RegistryConfig, Sources};
