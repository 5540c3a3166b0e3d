//! The saga layer: everything between a received message and its settlement.
//!
//! - [`envelope`]: the saga state and compensation details that travel in each
//!   message's properties;
//! - [`inbound`]: decodes a message into the WIT `inbound` record;
//! - [`rounds`]: the plan → act loop of one step (what one partner's component
//!   does with one message) between the component and an
//!   [`Outbound`](crate::outbound::Outbound);
//! - [`routing`]: turns the step's outcome into a settlement and the messages to
//!   send (forward, retry, compensate, complete, dead-letter), as a pure function;
//! - [`seal`]: the integrity tag over the saga state, so that only a host
//!   holding the key can write a saga's history;
//! - [`ordering`]: the session ids that keep one record's messages in order on a
//!   `per-record` partner's queue;
//! - [`executor`]: per-partner consumers that receive, run the step, renew locks
//!   and settle through a [`Transport`](sagahost_transport::Transport).

pub mod envelope;
pub mod executor;
pub mod inbound;
pub mod ordering;
pub mod rounds;
pub mod routing;
pub mod seal;
pub mod state;

pub use executor::{Executor, Partner, SagaEvent, StepTiming};
pub use inbound::{MessageParts, build_inbound};
pub use rounds::{Round, StepError, StepLimits, StepRun, run_step};
pub use routing::Verdict;
pub use state::{SagaState, StepRecord};
