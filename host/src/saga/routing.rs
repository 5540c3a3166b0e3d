//! Turns a step's outcome into a settlement of the input and the messages to
//! send: forward, retry, compensate, complete or dead-letter.
//!
//! This is pure: it reads the input, the outcome and the partner's settings and
//! returns what to do, so every routing rule is unit-testable without a queue.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use sagahost_transport::{OutgoingMessage, Output, ReceivedMessage, Settlement};

use crate::component::wit;
use crate::config::{Exhausted, OutputLimits, RetryPolicy};
use crate::telemetry::traceparent::TraceParent;

use super::envelope::{self, CompensationInfo, Envelope, FailedUndo, UNDO_CONTINUED_PROPERTY};
use super::state::{SagaState, StepRecord};

/// What the routing needs to know about the partner that handled the step.
pub struct PartnerRoutes<'a> {
    pub partner: &'a str,
    /// Content hash of the component version that ran.
    pub version: &'a str,
    pub routes: &'a BTreeMap<String, String>,
    pub retry: &'a RetryPolicy,
    /// How much one step may send.
    pub outputs: &'a OutputLimits,
    /// The transport's largest message, in bytes.
    pub transport_max_message_bytes: usize,
    /// Compensation queue of every partner, by partner name.
    pub compensation_queues: &'a BTreeMap<String, String>,
}

impl PartnerRoutes<'_> {
    /// The largest message this partner's step may send: its own limit or the transport's,
    /// whichever is smaller.
    fn max_message_bytes(&self) -> usize {
        self.outputs.max_message_bytes.min(self.transport_max_message_bytes)
    }
}

/// The step's input as the executor read it.
pub struct StepInput<'a> {
    pub message: &'a ReceivedMessage,
    pub envelope: &'a Envelope,
    pub saga: &'a SagaState,
    /// Trace context for the messages this step sends.
    pub traceparent: &'a TraceParent,
    /// The largest `Retry-After` among the step's HTTP answers, if any.
    pub retry_after: Option<Duration>,
}

/// How a step ends for the saga, for logs, metrics and the quickstart summary.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Completed,
    Forwarded {
        queues: Vec<String>,
    },
    Retried {
        attempt: u32,
        delay: Duration,
    },
    /// Compensation started (or, on a compensation message, moved one step back).
    Compensating {
        next_partner: String,
    },
    /// The last compensation step finished: the saga is undone.
    Compensated,
    DeadLettered {
        reason: String,
        description: String,
    },
}

impl Verdict {
    /// The `outcome` label of the messages metric.
    pub fn metric_name(&self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Forwarded { .. } => "forwarded",
            Self::Retried { .. } => "retried",
            Self::Compensating { .. } => "compensating",
            Self::Compensated => "compensated",
            Self::DeadLettered { .. } => "dead_lettered",
        }
    }
}

/// The settlement, the messages to send with it, and the verdict.
pub struct Routed {
    pub settlement: Settlement,
    pub outputs: Vec<Output>,
    pub verdict: Verdict,
}

/// Longest dead-letter reason kept, in bytes.
pub const MAX_REASON_BYTES: usize = 128;
/// Longest dead-letter description kept, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;

/// `text` cut at a character boundary to at most `max` bytes, saying how long it was.
fn bounded(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let original = text.len();
    let marker = format!("… [cut from {original} bytes]");
    let mut end = max.saturating_sub(marker.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&marker);
    text
}

impl Routed {
    /// Dead-letter the input with `reason`; nothing is sent. Both are cut to
    /// [`MAX_REASON_BYTES`] and [`MAX_DESCRIPTION_BYTES`]: they may come from a
    /// component, and a dead-letter record must stay small enough for any broker
    /// (Service Bus keeps them in the message's header) and for an operator to read.
    pub fn dead_letter(reason: impl Into<String>, description: impl Into<String>) -> Self {
        let reason = bounded(reason.into(), MAX_REASON_BYTES);
        let description = bounded(description.into(), MAX_DESCRIPTION_BYTES);
        Self {
            settlement: Settlement::DeadLetter {
                reason: reason.clone(),
                description: description.clone(),
                properties: Vec::new(),
            },
            outputs: Vec::new(),
            verdict: Verdict::DeadLettered { reason, description },
        }
    }

    fn complete(outputs: Vec<Output>, verdict: Verdict) -> Self {
        Self {
            settlement: Settlement::Complete,
            outputs,
            verdict,
        }
    }
}

/// Bytes each output keeps free for what the executor adds after routing (the saga state's
/// integrity tag).
const HOST_ALLOWANCE_BYTES: usize = 256;

/// Routes a step that ended with `outcome`.
pub fn route(partner: &PartnerRoutes, input: &StepInput, outcome: &wit::Outcome, now: SystemTime) -> Routed {
    within_limits(partner, decide(partner, input, outcome, now))
}

fn decide(partner: &PartnerRoutes, input: &StepInput, outcome: &wit::Outcome, now: SystemTime) -> Routed {
    let compensating = input.envelope.compensation.is_some();
    match (&outcome.decision, compensating) {
        (wit::Decision::Complete, false) => Routed::complete(Vec::new(), Verdict::Completed),
        (wit::Decision::Complete, true) => {
            next_compensation(partner, input, input.saga.history.len().saturating_sub(1))
        }
        (wit::Decision::Forward(messages), false) => {
            forward(partner, input, messages, outcome.compensation_data.clone())
        }
        (wit::Decision::Retry(retry), _) => {
            // A component's delay obeys the partner's cap like the host's own backoff.
            let delay = retry
                .delay_ms
                .map(|ms| Duration::from_millis(ms.min(partner.retry.max_delay_ms)));
            retry_or_give_up_unchecked(partner, input, delay, &retry.reason, now)
        }
        (wit::Decision::Compensate(c), false) => start_compensation(partner, input, &c.reason, c.details.clone()),
        (wit::Decision::DeadLetter(d), _) => Routed::dead_letter(d.reason.clone(), d.description.clone()),
        (wit::Decision::Forward(_) | wit::Decision::Compensate(_), true) => Routed::dead_letter(
            "InvalidCompensationDecision",
            format!(
                "partner `{}` answered a compensation request with forward or compensate; \
                 a compensation step may only complete, retry or dead-letter",
                partner.partner
            ),
        ),
    }
}

/// Retries the step later, or applies the partner's exhausted-policy.
///
/// Used for a component's `retry` decision and for transient host-side failures.
pub fn retry_or_give_up(
    partner: &PartnerRoutes,
    input: &StepInput,
    requested: Option<Duration>,
    reason: &str,
    now: SystemTime,
) -> Routed {
    within_limits(
        partner,
        retry_or_give_up_unchecked(partner, input, requested, reason, now),
    )
}

fn retry_or_give_up_unchecked(
    partner: &PartnerRoutes,
    input: &StepInput,
    requested: Option<Duration>,
    reason: &str,
    now: SystemTime,
) -> Routed {
    let attempt = input.saga.attempt;
    if attempt >= partner.retry.max_attempts {
        let description = format!(
            "partner `{}` gave up after {attempt} attempts; last reason: {reason}",
            partner.partner
        );
        return match partner.retry.exhausted {
            Exhausted::Compensate if input.envelope.compensation.is_none() => {
                start_compensation(partner, input, "RetriesExhausted", Some(description))
            }
            _ => Routed::dead_letter("RetriesExhausted", description),
        };
    }
    let delay = requested.unwrap_or_else(|| backoff(partner.retry, attempt, input.retry_after, rand::random()));
    let saga = SagaState {
        attempt: attempt + 1,
        ..input.saga.clone()
    };
    let compensation = input.envelope.compensation.as_ref();
    let suffix = format!(
        "{}attempt-{}",
        if compensation.is_some() { "compensate-" } else { "" },
        attempt + 1
    );
    let message = resend(
        input,
        input.message.queue.clone(),
        &saga,
        compensation,
        Some(now + delay),
        suffix,
    );
    Routed::complete(
        vec![message],
        Verdict::Retried {
            attempt: attempt + 1,
            delay,
        },
    )
}

/// The partner's backoff for the retry after `attempt`: exponential, capped, with
/// `jitter` in `[0, 1)` spreading it, and never shorter than `Retry-After`
/// (itself capped at the maximum delay).
pub fn backoff(policy: &RetryPolicy, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(64) as i32;
    let base = (policy.initial_delay_ms as f64 * policy.multiplier.powi(exponent)).min(policy.max_delay_ms as f64);
    let spread = 1.0 + policy.jitter * (2.0 * jitter - 1.0);
    let delay = Duration::from_millis((base * spread).clamp(0.0, policy.max_delay_ms as f64) as u64);
    let floor = retry_after
        .unwrap_or_default()
        .min(Duration::from_millis(policy.max_delay_ms));
    delay.max(floor)
}

fn forward(
    partner: &PartnerRoutes,
    input: &StepInput,
    messages: &[wit::ForwardMessage],
    compensation_data: Option<String>,
) -> Routed {
    let limits = partner.outputs;
    // Checked before anything is built: 100,000 forwards would be 100,000 copies of the body.
    if messages.len() > limits.max_forwards {
        return Routed::dead_letter(
            "TooManyOutputs",
            format!(
                "partner `{}` forwarded {} messages in one step; the limit is {} \
                 (partners.{}.outputs.max-forwards)",
                partner.partner,
                messages.len(),
                limits.max_forwards,
                partner.partner
            ),
        );
    }
    let recorded = compensation_data.as_ref().map_or(0, String::len);
    if recorded > limits.max_compensation_data_bytes {
        return Routed::dead_letter(
            "OutputTooLarge",
            format!(
                "partner `{}` recorded {recorded} bytes of compensation data; the limit is {} \
                 (partners.{}.outputs.max-compensation-data-bytes), because it rides in every later message of the saga",
                partner.partner, limits.max_compensation_data_bytes, partner.partner
            ),
        );
    }
    if let Some(unknown) = messages.iter().find(|m| !partner.routes.contains_key(&m.route)) {
        let known: Vec<&str> = partner.routes.keys().map(String::as_str).collect();
        return Routed::dead_letter(
            "UnknownRoute",
            format!(
                "partner `{}` forwarded to route `{}`, which is not configured; known routes: [{}]. \
                 Add it under [partners.{}.routes] or fix the component",
                partner.partner,
                unknown.route,
                known.join(", "),
                partner.partner
            ),
        );
    }
    let mut history = input.saga.history.clone();
    history.push(StepRecord {
        partner: partner.partner.to_string(),
        component_version: partner.version.to_string(),
        compensation_data,
    });
    let saga = SagaState {
        id: input.saga.id.clone(),
        step: input.saga.step + 1,
        attempt: 1,
        history,
    };
    let outputs: Vec<Output> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let queue = partner.routes[&m.route].clone();
            let properties = envelope::overlay(&input.envelope.user_properties, &m.properties);
            Output {
                queue,
                message: OutgoingMessage {
                    message_id: format!("{}:{}:{}", saga.id, saga.step, i),
                    correlation_id: Some(saga.id.clone()),
                    content_type: m.content_type.clone().or_else(|| input.message.content_type.clone()),
                    properties: envelope::write(&properties, &saga, None, input.traceparent),
                    body: m.body.clone().unwrap_or_else(|| input.message.body.clone()),
                    ..OutgoingMessage::default()
                },
            }
        })
        .collect();
    let queues = outputs.iter().map(|o| o.queue.clone()).collect();
    Routed::complete(outputs, Verdict::Forwarded { queues })
}

fn start_compensation(partner: &PartnerRoutes, input: &StepInput, reason: &str, details: Option<String>) -> Routed {
    let info = CompensationInfo {
        failed_partner: partner.partner.to_string(),
        reason: reason.to_string(),
        details,
        failed_undos: Vec::new(),
    };
    compensate_from(partner, input, input.saga.history.len(), info)
}

/// On a compensation message that completed: undo the step before this one, unless this
/// undo was dead-lettered before and the compensation already went on without it.
fn next_compensation(partner: &PartnerRoutes, input: &StepInput, this_step: usize) -> Routed {
    if input.envelope.undo_continued {
        return Routed::complete(Vec::new(), Verdict::Completed);
    }
    let info = input
        .envelope
        .compensation
        .clone()
        .expect("only called on compensation messages");
    compensate_from(partner, input, this_step, info)
}

/// On a compensation message that is being dead-lettered: the compensation goes on to the
/// older steps anyway, with the failed undo recorded in the saga's compensation details, and
/// the dead letter is marked so that redriving it undoes its own step only. Any other
/// routing is returned as it is.
///
/// Without this, one partner's failed undo would leave every older step done.
pub fn continue_past_failed_undo(partner: &PartnerRoutes, input: &StepInput, routed: Routed) -> Routed {
    let (Some(info), Verdict::DeadLettered { reason, description }) = (&input.envelope.compensation, &routed.verdict)
    else {
        return routed;
    };
    if input.envelope.undo_continued {
        return routed;
    }
    let this_step = input.saga.history.len().saturating_sub(1);
    let mut info = info.clone();
    info.failed_undos.push(FailedUndo {
        step: this_step as u32,
        partner: partner.partner.to_string(),
        reason: reason.clone(),
    });
    let next = compensate_from(partner, input, this_step, info);
    if let Verdict::DeadLettered { .. } = next.verdict {
        // The older steps cannot be reached (an unknown partner): keep this dead letter as is.
        return routed;
    }
    // Said first, so that bounding the description cannot cut it.
    let description = format!(
        "This undo failed and the compensation went on to the older steps without it; redriving \
         this message undoes step {this_step} only. {description}"
    );
    let mut dead_letter = Routed::dead_letter(reason.clone(), description);
    if let Settlement::DeadLetter { properties, .. } = &mut dead_letter.settlement {
        properties.push((UNDO_CONTINUED_PROPERTY.to_string(), "true".to_string()));
    }
    dead_letter.outputs = next.outputs;
    dead_letter
}

/// Sends the compensation request for the newest history entry before `end`,
/// or ends the saga as compensated when there is none.
fn compensate_from(partner: &PartnerRoutes, input: &StepInput, end: usize, info: CompensationInfo) -> Routed {
    let Some(index) = end.checked_sub(1) else {
        return Routed::complete(Vec::new(), Verdict::Compensated);
    };
    let target = &input.saga.history[index].partner;
    let Some(queue) = partner.compensation_queues.get(target) else {
        return Routed::dead_letter(
            "CompensationUnroutable",
            format!("saga history names partner `{target}`, which is not configured; cannot compensate its step"),
        );
    };
    let saga = SagaState {
        id: input.saga.id.clone(),
        step: index as u32,
        attempt: 1,
        history: input.saga.history[..=index].to_vec(),
    };
    let message = resend(
        input,
        queue.clone(),
        &saga,
        Some(&info),
        None,
        format!("compensate-{index}"),
    );
    Routed::complete(
        vec![message],
        Verdict::Compensating {
            next_partner: target.clone(),
        },
    )
}

/// `routed`, or a dead letter naming the first output over the partner's or the transport's
/// bounds: sending it would fail on every redelivery.
fn within_limits(partner: &PartnerRoutes, routed: Routed) -> Routed {
    let max_message = partner.max_message_bytes();
    let max_properties = partner.outputs.max_properties_bytes;
    for output in &routed.outputs {
        let properties = properties_bytes(&output.message);
        let size = message_bytes(&output.message) + HOST_ALLOWANCE_BYTES;
        let too_large = if properties > max_properties {
            Some(format!(
                "its application properties are {properties} bytes; the limit is {max_properties} \
                 (partners.{}.outputs.max-properties-bytes)",
                partner.partner
            ))
        } else if size > max_message {
            Some(format!(
                "it is {size} bytes with the saga state; the limit is {max_message} (the smaller of \
                 partners.{}.outputs.max-message-bytes and the transport's maximum message size)",
                partner.partner
            ))
        } else {
            None
        };
        if let Some(detail) = too_large {
            return Routed::dead_letter(
                "OutputTooLarge",
                format!(
                    "partner `{}`: the message for queue `{}` is too large to send: {detail}",
                    partner.partner, output.queue
                ),
            );
        }
    }
    routed
}

/// Bytes of a message's application properties, names and values.
fn properties_bytes(message: &OutgoingMessage) -> usize {
    message
        .properties
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum()
}

/// Bytes of a message as a broker counts it, near enough: body, properties and ids.
fn message_bytes(message: &OutgoingMessage) -> usize {
    message.body.len()
        + properties_bytes(message)
        + message.message_id.len()
        + message.correlation_id.as_ref().map_or(0, String::len)
        + message.content_type.as_ref().map_or(0, String::len)
}

/// A copy of the input for `queue` with new saga state.
fn resend(
    input: &StepInput,
    queue: String,
    saga: &SagaState,
    compensation: Option<&CompensationInfo>,
    scheduled: Option<SystemTime>,
    suffix: String,
) -> Output {
    Output {
        queue,
        message: OutgoingMessage {
            message_id: format!("{}:{}:{suffix}", saga.id, saga.step),
            correlation_id: Some(saga.id.clone()),
            content_type: input.message.content_type.clone(),
            properties: envelope::write(&input.envelope.user_properties, saga, compensation, input.traceparent),
            body: input.message.body.clone(),
            scheduled_enqueue_time: scheduled,
            ..OutgoingMessage::default()
        },
    }
}

#[cfg(test)]
mod tests;
