//! The saga layer: the state that travels with a message, the inbound record a
//! component sees, and the plan → act loop of one step.
//!
//! Data comes in as raw message parts ([`MessageParts`]), is decoded into the
//! WIT [`Inbound`](crate::component::wit::Inbound) ([`inbound`]), and is driven
//! through the partner's component by [`step::run_step`] until the component
//! decides how the step ends.

pub mod envelope;
pub mod executor;
pub mod inbound;
pub mod routing;
pub mod state;
pub mod step;

pub use executor::{Executor, Partner, SagaEvent};
pub use inbound::{MessageParts, build_inbound};
pub use routing::Verdict;
pub use state::{SagaState, StepRecord};
pub use step::{Outbound, Round, StepError, StepLimits, StepRun, run_step};
