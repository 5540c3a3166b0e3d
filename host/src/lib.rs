//! sagahost: runs Dataverse saga steps as sandboxed WebAssembly partner components.
//!
//! Data flows one way: a transport (`sagahost-transport`, or the webhook
//! [`ingress`]) delivers a message; `sagahost-dataverse` decodes its body;
//! [`saga`] runs the partner's [`component`] through the plan → act rounds of a
//! step, with [`outbound`] making the HTTP requests; routing turns the outcome into
//! a settlement and the messages to send, and the transport carries them out.
//! Nothing calls back up that chain: the modules import in the order
//! [`telemetry`] → [`component`] → [`outbound`] → [`config`] → [`saga`] → [`fleet`] →
//! [`ingress`], [`admin`], [`harness`] → [`service`] → [`quickstart`].
//!
//! [`config`] describes a host, [`service`] assembles one, [`admin`] is the
//! operator endpoint (health, metrics, reload, dead letters), [`dead_letters`] the
//! dead-letter tools it and the CLI share, [`fleet`] the canaries every replica shares
//! through the transport, [`harness`] runs
//! recorded fixtures through the same step loop and limits for partner teams,
//! [`quickstart`] runs the whole saga locally, and [`deploy`] writes the Kubernetes
//! autoscaling manifests a config implies. The `sagahost` binary's command
//! line sits on top; `ARCHITECTURE.md` draws the whole house.

pub mod activity;
pub mod admin;
pub mod component;
pub mod config;
pub mod dead_letters;
pub mod deploy;
pub mod fleet;
pub mod harness;
pub mod ingress;
pub mod outbound;
pub mod quickstart;
pub mod saga;
pub mod scaffold;
pub mod service;
pub mod telemetry;
