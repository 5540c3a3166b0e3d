//! End-to-end tests of sagahost with real components.
//!
//! The guest components are built once per test run by `scripts/build-guests`
//! (the README's test command runs it first); [`support::component`] finds them.

mod cli;
mod crash;
mod doors;
mod faults;
mod harness;
mod hostile;
mod interop;
mod operate;
mod partners;
mod quickstart;
mod renewal;
mod runtime;
mod saga;
mod secrets;
mod support;
mod trace;
