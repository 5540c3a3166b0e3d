//! The broker's entity-management endpoint over real HTTP on loopback, against a real queue
//! database in a temporary folder: with `reqwest` for queues (`http.rs`) and for topics,
//! subscriptions and rules (`topics.rs`), with sagahost's own `EntityClient` (`client.rs`), and
//! with the official Python and JavaScript SDKs' `ServiceBusAdministrationClient` (`interop.rs`);
//! and the Azure smoke test, which runs against the broker too (`smoke.rs`).

#[path = "../../../../tests/interop/runner.rs"]
mod runner;

mod client;
mod http;
mod interop;
mod smoke;
mod support;
mod topics;
