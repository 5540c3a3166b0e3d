//! The broker's entity-management endpoint over real HTTP on loopback, against a real queue
//! database in a temporary folder: with `reqwest` (`http.rs`), and with the official Python
//! SDK's `ServiceBusAdministrationClient` (`interop.rs`).

mod http;
mod interop;
mod support;
