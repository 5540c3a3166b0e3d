//! sagahost: runs Dataverse saga steps as sandboxed WebAssembly partner components.
//!
//! Data flows one way through the modules: a [`transport`] (or the webhook
//! [`ingress`]) delivers a message; [`dataverse`] decodes its body; [`saga`]
//! drives the partner's [`component`] through the plan → act loop, with
//! [`outbound`] making the HTTP requests, and routes the message on through the
//! transport. [`config`] describes all of it, [`service`] assembles it, and
//! [`cli`] is the `sagahost` command line on top, and [`admin`] the operator
//! endpoint (health, metrics, reload, dead letters). [`harness`] runs recorded
//! fixtures through the same step loop for partner teams, and [`quickstart`]
//! runs the whole saga locally.

pub mod admin;
pub mod component;
pub mod config;
pub mod harness;
pub mod ingress;
pub mod outbound;
pub mod quickstart;
pub mod saga;
pub mod service;
pub mod telemetry;
