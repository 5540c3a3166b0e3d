//! sagahost: runs Dataverse saga steps as sandboxed WebAssembly partner components.
//!
//! Data flows one way through the modules:
//! [`dataverse`] decodes a message body into a model, [`component`] runs a
//! partner's component on it, [`saga`] drives the plan → act loop of one step,
//! and [`harness`] runs recorded fixtures through that loop for partner teams.
//! [`cli`] is the `sagahost` command line on top.

pub mod cli;
pub mod component;
pub mod dataverse;
pub mod harness;
pub mod saga;
pub mod telemetry;
