//! The rounds of one saga step: the plan → act loop between a component and the
//! partner APIs.
//!
//! A *step* is what one partner's component does with one message, from the
//! first event to an outcome ([`run_step`]). The component plans, the host acts:
//! each round the component either asks for HTTP requests (which an [`Outbound`]
//! executes) or ends the step with an outcome. The loop is bounded in rounds and
//! in requests per round so a component can never keep the host busy forever.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument as _;

use crate::component::wit::{self, Event, Plan};
use crate::component::{ComponentError, PartnerComponent};
use crate::config::DEFAULT_MAX_ROUNDS;
use crate::outbound::Outbound;

/// Bounds on one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepLimits {
    /// Rounds of requests a component may ask for before it must decide.
    pub max_rounds: u32,
    /// Requests one round may hold.
    pub max_requests_per_round: usize,
}

impl StepLimits {
    /// The limits of a partner whose config allows `max_rounds` rounds: the executor and
    /// the harness both build them here, so a fixture runs as production does.
    pub fn with_max_rounds(max_rounds: u32) -> Self {
        Self {
            max_rounds,
            ..Self::default()
        }
    }
}

impl Default for StepLimits {
    fn default() -> Self {
        Self {
            max_rounds: DEFAULT_MAX_ROUNDS,
            max_requests_per_round: 32,
        }
    }
}

/// One round of requests and their results.
#[derive(Debug, Clone)]
pub struct Round {
    pub requests: Vec<wit::HttpRequest>,
    pub results: Vec<wit::HttpResult>,
    /// How long the host waited for the round's answers (the partners' time, as seen from here).
    pub waited: Duration,
}

/// Why a step ended without an outcome.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The component failed (trap, limit, `err`…).
    #[error(transparent)]
    Component(#[from] ComponentError),
    /// The component kept asking for requests.
    #[error("partner `{partner}`: component asked for more than {max} rounds of requests without deciding")]
    TooManyRounds { partner: String, max: u32 },
    /// One round asked for too many requests.
    #[error("partner `{partner}`: component asked for {count} requests in one round; the limit is {max}")]
    TooManyRequests { partner: String, count: usize, max: usize },
    /// A request's secret (an access token, a Key Vault secret) could not be had just now.
    #[error("partner `{partner}`: {reason}")]
    CredentialUnavailable { partner: String, reason: String },
}

impl StepError {
    /// The sandbox limit this failure hit, if it was one: `deadline`, `memory`, `fuel` or `stack`.
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            Self::Component(ComponentError::DeadlineExceeded { .. }) => Some("deadline"),
            Self::Component(ComponentError::MemoryLimit { .. }) => Some("memory"),
            Self::Component(ComponentError::FuelExhausted { .. }) => Some("fuel"),
            Self::Component(ComponentError::StackOverflow { .. }) => Some("stack"),
            _ => None,
        }
    }

    /// Whether retrying the step later may succeed (the pool was full, a token endpoint or
    /// vault did not answer); a misbehaving component will misbehave again.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Component(err) => err.is_transient(),
            Self::CredentialUnavailable { .. } => true,
            Self::TooManyRounds { .. } | Self::TooManyRequests { .. } => false,
        }
    }

    /// The dead-letter reason code for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Component(err) => err.reason(),
            Self::TooManyRounds { .. } => "TooManyRounds",
            Self::TooManyRequests { .. } => "TooManyRequests",
            Self::CredentialUnavailable { .. } => "CredentialUnavailable",
        }
    }
}

/// Everything that happened in one step.
#[derive(Debug)]
pub struct StepRun {
    /// The message as the component saw it, handed back from the step's last event.
    pub inbound: wit::Inbound,
    /// The rounds of requests, in order.
    pub rounds: Vec<Round>,
    /// How the step ended.
    pub outcome: Result<wit::Outcome, StepError>,
}

impl StepRun {
    /// How long the step waited for partners' answers, over all its rounds.
    pub fn waited(&self) -> Duration {
        self.rounds.iter().map(|round| round.waited).sum()
    }
}

/// Drives `component` from `first` (a `message` or `compensate` event) to an outcome.
///
/// The component runs on the calling task, yielding every epoch tick and ending
/// by its deadline (see [`PartnerComponent::handle`]); requests run on `outbound`.
///
/// The message's `inbound` record moves from each event into the next one, never copied,
/// and comes back in [`StepRun::inbound`].
pub async fn run_step<O: Outbound>(
    component: &Arc<PartnerComponent>,
    first: Event,
    outbound: &O,
    limits: StepLimits,
) -> StepRun {
    let partner = component.partner().to_string();
    let mut rounds = Vec::new();
    let mut event = first;
    loop {
        let span = tracing::info_span!("component_round", round = rounds.len() + 1);
        let planned = call(component, &event).instrument(span).await;
        let inbound = take_back(event, &mut rounds);
        let plan = match planned {
            Ok(plan) => plan,
            Err(err) => {
                return StepRun {
                    inbound,
                    rounds,
                    outcome: Err(err),
                };
            }
        };
        let calls = match plan {
            Plan::Done(outcome) => {
                return StepRun {
                    inbound,
                    rounds,
                    outcome: Ok(outcome),
                };
            }
            Plan::Call(calls) => calls,
        };
        let error = if rounds.len() as u32 >= limits.max_rounds {
            Some(StepError::TooManyRounds {
                partner: partner.clone(),
                max: limits.max_rounds,
            })
        } else if calls.requests.len() > limits.max_requests_per_round {
            Some(StepError::TooManyRequests {
                partner: partner.clone(),
                count: calls.requests.len(),
                max: limits.max_requests_per_round,
            })
        } else {
            None
        };
        if let Some(err) = error {
            return StepRun {
                inbound,
                rounds,
                outcome: Err(err),
            };
        }
        let asked = Instant::now();
        let results = outbound.execute(&partner, &calls.requests).await;
        let mut round = Round {
            requests: calls.requests,
            results: Vec::new(),
            waited: asked.elapsed(),
        };
        if let Some(reason) = outbound.credential_unavailable() {
            round.results = results;
            rounds.push(round);
            return StepRun {
                inbound,
                rounds,
                outcome: Err(StepError::CredentialUnavailable { partner, reason }),
            };
        }
        // The answers go to the component in the event and come back to the round after the call.
        rounds.push(round);
        event = Event::Responses(wit::Responses {
            inbound,
            state: calls.state,
            results,
            round: rounds.len() as u32,
        });
    }
}

/// Takes an event apart once the component has read it: its answers go back to the round
/// they answer (not copied, since a response body may be large), its inbound record on to
/// the next event.
fn take_back(event: Event, rounds: &mut [Round]) -> wit::Inbound {
    match event {
        Event::Responses(responses) => {
            if let Some(round) = rounds.last_mut() {
                round.results = responses.results;
            }
            responses.inbound
        }
        other => other.into_inbound(),
    }
}

async fn call(component: &PartnerComponent, event: &Event) -> Result<Plan, StepError> {
    component
        .handle(&event.inbound().message_id, event)
        .await
        .map_err(StepError::from)
}
