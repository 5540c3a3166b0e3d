//! How a partner component can fail, as a type the saga layer can route on.

use std::time::Duration;

/// A failure of one `handle` call, attributed to the partner whose component ran.
///
/// Every variant names the partner and says what to do; [`ComponentError::reason`]
/// gives the short code that goes into dead-letter records.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// The call ran past the partner's wall-clock deadline.
    #[error(
        "partner `{partner}`: component ran past its {deadline:?} deadline and was stopped; \
         raise `limits.deadline-ms` if the work is legitimate"
    )]
    DeadlineExceeded { partner: String, deadline: Duration },

    /// The guest tried to grow its memory past the cap.
    #[error(
        "partner `{partner}`: component tried to use more than {limit_bytes} bytes of memory and \
         was stopped; raise `limits.memory-bytes` if the work is legitimate"
    )]
    MemoryLimit { partner: String, limit_bytes: usize },

    /// The guest used up its fuel (instruction budget).
    #[error(
        "partner `{partner}`: component used up its fuel budget of {fuel} and was stopped; \
         raise `limits.fuel` if the work is legitimate"
    )]
    FuelExhausted { partner: String, fuel: u64 },

    /// The guest overflowed its stack (usually runaway recursion).
    #[error(
        "partner `{partner}`: component overflowed its stack (runaway recursion?); a Rust component \
         that needs a deeper stack sets it when built, e.g. `-C link-arg=-zstack-size=262144` in \
         `.cargo/config.toml`"
    )]
    StackOverflow { partner: String },

    /// The guest trapped: a panic, `unreachable`, an out-of-bounds access…
    #[error("partner `{partner}`: component trapped: {detail}")]
    Trap { partner: String, detail: String },

    /// The guest returned `err(text)` from `handle`.
    #[error("partner `{partner}`: component returned an error: {message}")]
    Returned { partner: String, message: String },

    /// A fresh instance could not be created (pool exhausted, start function failed…).
    #[error("partner `{partner}`: could not instantiate the component: {detail}")]
    Instantiate { partner: String, detail: String },
}

impl ComponentError {
    /// The dead-letter reason code for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::DeadlineExceeded { .. } => "ComponentDeadlineExceeded",
            Self::MemoryLimit { .. } => "ComponentMemoryLimit",
            Self::FuelExhausted { .. } => "ComponentFuelExhausted",
            Self::StackOverflow { .. } => "ComponentStackOverflow",
            Self::Trap { .. } => "ComponentTrap",
            Self::Returned { .. } => "ComponentError",
            Self::Instantiate { .. } => "ComponentInstantiateFailed",
        }
    }

    /// The partner whose component failed.
    pub fn partner(&self) -> &str {
        match self {
            Self::DeadlineExceeded { partner, .. }
            | Self::MemoryLimit { partner, .. }
            | Self::FuelExhausted { partner, .. }
            | Self::StackOverflow { partner }
            | Self::Trap { partner, .. }
            | Self::Returned { partner, .. }
            | Self::Instantiate { partner, .. } => partner,
        }
    }

    /// Whether the failure may go away on its own, so a retry makes sense.
    ///
    /// Only a failed instantiation is: the pool may have been full. A guest that
    /// loops, traps or blows a limit will do it again on the same input.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Instantiate { .. })
    }
}
