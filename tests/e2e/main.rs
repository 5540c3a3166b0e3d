//! End-to-end tests of sagahost with real components.
//!
//! The guest components are built once per test run by `scripts/build-guests`
//! (the README's test command runs it first); [`support::component`] finds them.

// Defined before the modules so that each of them can use it.
/// Declares each scenario (an `async fn(Kind)` of the calling module, which has `saga::Kind` in
/// scope) once per transport, in modules `embedded` and `servicebus`.
macro_rules! on_both_transports {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Kind::Embedded).await
                }
            )*
        }
        mod servicebus {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Kind::ServiceBus).await
                }
            )*
        }
    };
}

mod cli;
mod console;
mod crash;
mod dead_letters;
mod doors;
mod entities;
mod faults;
mod fleet;
mod harness;
mod hostile;
mod identity;
mod interop;
mod operate;
mod ordering;
mod partners;
mod quickstart;
mod registry;
mod renewal;
mod runtime;
mod saga;
mod scaffold;
mod secrets;
mod support;
mod trace;
