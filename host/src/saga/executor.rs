//! The saga executor: per-partner consumers that receive messages, run the
//! partner's step, and settle each message with its outputs.
//!
//! Each partner has two consumers, one on its queue and one on its
//! compensation queue, each with bounded concurrency. A message's lock is
//! renewed while its step runs. Every failure the host can name ends in a
//! dead-letter with a readable reason; a failure it cannot (the transport is
//! down) leaves the message locked, to be redelivered when the lock expires.
//! Nothing is settled before its outputs are durably sent with it.
//!
//! A `per-record` partner's queue is session-enabled and read one session at a time
//! (`executor/sessions.rs`); there a retry waits in place, holding the message and its
//! session, so the record's later messages wait behind it.

mod sessions;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sagahost_transport::sessions::Sessions;
use sagahost_transport::{ReceivedMessage, Settlement, TransportError};
use tokio::sync::{Semaphore, broadcast};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::component::{Arm, Registry, wit};
use crate::config::{PartnerConfig, ordered_queues};

use crate::outbound::{HttpOutbound, RequestContext};
use crate::telemetry::metrics::{LimitLabels, OutcomeLabels, PartnerLabels, VersionLabels, metrics};
use crate::telemetry::otel;
use crate::telemetry::traceparent::TraceParent;

use super::envelope::{self, COMPONENT_VERSION_PROPERTY, Envelope, PARTNER_PROPERTY};
use super::inbound::{MessageParts, build_inbound};
use super::ordering::SessionIds;
use super::rounds::{StepLimits, StepRun, run_step};
use super::routing::{self, PartnerRoutes, Routed, StepInput, Verdict};
use super::seal::StateKeys;
use super::state::SagaState;

/// How long a receive waits for messages before checking for shutdown.
const RECEIVE_WAIT: Duration = Duration::from_millis(500);
/// Bodies up to this size are decoded on the step's own task. Even a hostile one costs at most
/// about 0.3 ms there (the decoders' worst case is about 20 ms per MiB), less than the hand-off
/// to the blocking pool costs a typical 5 KB context on a busy machine.
const INLINE_DECODE_BYTES: usize = 16 * 1024;
/// Pause after a transport error before receiving again.
const TRANSPORT_BACKOFF: Duration = Duration::from_secs(1);
/// First and longest pause between tries of a failed lock renewal.
const RENEW_RETRY_MIN: Duration = Duration::from_millis(100);
const RENEW_RETRY_MAX: Duration = Duration::from_secs(5);

/// One partner's settings; its component lives in the [`Registry`].
pub struct Partner {
    pub name: String,
    pub config: PartnerConfig,
}

/// What happened to one message, published for observers (the quickstart's
/// summary and tests; metrics are recorded directly).
#[derive(Debug, Clone, PartialEq)]
pub struct SagaEvent {
    pub saga_id: String,
    pub partner: String,
    pub queue: String,
    pub message_id: String,
    pub step: u32,
    pub attempt: u32,
    /// True when the message was a compensation request.
    pub compensation: bool,
    /// Content hash of the component version that handled it (empty if none ran).
    pub version: String,
    pub verdict: Verdict,
    /// When the message was settled.
    pub at: SystemTime,
    /// What an operator may search the saga by.
    pub keys: SearchKeys,
    /// The sandbox limit the component hit (deadline, memory, fuel, stack), if any.
    pub limit: Option<&'static str>,
    /// Where the step's time went.
    pub timing: StepTiming,
}

/// Where one step's time went, from the moment its consumer took the message to the moment
/// the transport confirmed the settle. What is neither the partners' nor the settle's is the
/// host's own work: decode, the component, routing, sealing state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepTiming {
    /// From taking the message to the settle's confirmation.
    pub handled: Duration,
    /// Waiting for the partners' HTTP answers, over every round.
    pub partners: Duration,
    /// The settle with its outputs (zero for a retry held in place on an ordered queue).
    pub settling: Duration,
}

/// What identifies a message's saga to an operator looking for it; each is known only once
/// the body decoded (the trace, once a component ran).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchKeys {
    /// The Dataverse table of the primary row, e.g. `contact`.
    pub entity: Option<String>,
    /// The id of the primary row.
    pub record_id: Option<String>,
    /// The Dataverse `CorrelationId`.
    pub correlation_id: Option<String>,
    /// The step's trace context (its hex id is written by whoever stores it, off the
    /// message path).
    pub trace: Option<TraceParent>,
}

impl SearchKeys {
    fn of(inbound: &wit::Inbound, trace: &TraceParent) -> Self {
        let context = inbound.context.as_ref();
        Self {
            entity: context.map(|c| c.primary_entity_name.clone()).filter(|e| !e.is_empty()),
            record_id: context.and_then(|c| c.primary_entity_id.clone()),
            correlation_id: context.and_then(|c| c.correlation_id.clone()),
            trace: Some(*trace),
        }
    }
}

/// Runs every partner's consumers on one transport.
pub struct Executor<T: Sessions> {
    transport: Arc<T>,
    partners: BTreeMap<String, Arc<Partner>>,
    registry: Arc<Registry>,
    compensation_queues: BTreeMap<String, String>,
    http: HttpOutbound,
    events: broadcast::Sender<SagaEvent>,
    decode_limits: sagahost_dataverse::Limits,
    state_keys: StateKeys,
    /// The session-enabled queues, whose messages carry a session id.
    session_ids: SessionIds,
}

impl<T: Sessions> Executor<T> {
    /// An executor for `partners` (whose components are in `registry`) on
    /// `transport`, making requests with `http` and sealing saga state with `state_keys`.
    pub fn new(
        transport: Arc<T>,
        registry: Arc<Registry>,
        partners: Vec<Partner>,
        http: HttpOutbound,
        state_keys: StateKeys,
    ) -> Arc<Self> {
        let compensation_queues = partners
            .iter()
            .map(|p| (p.name.clone(), p.config.compensation_queue()))
            .collect();
        let session_ids = SessionIds::new(ordered_queues(partners.iter().map(|p| &p.config)));
        let partners = partners.into_iter().map(|p| (p.name.clone(), Arc::new(p))).collect();
        let (events, _) = broadcast::channel(4096);
        Arc::new(Self {
            transport,
            partners,
            registry,
            compensation_queues,
            http,
            events,
            decode_limits: sagahost_dataverse::Limits::default(),
            state_keys,
            session_ids,
        })
    }

    /// Subscribes to what happens to each message.
    pub fn subscribe(&self) -> broadcast::Receiver<SagaEvent> {
        self.events.subscribe()
    }

    /// Consumes every partner's queues until `shutdown` is cancelled, then lets
    /// in-flight messages finish.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut consumers = JoinSet::new();
        for partner in self.partners.values() {
            for (queue, compensation) in [
                (partner.config.queue.clone(), false),
                (partner.config.compensation_queue(), true),
            ] {
                let this = self.clone();
                let partner = partner.clone();
                let shutdown = shutdown.clone();
                if this.session_ids.is_ordered(&queue) {
                    consumers.spawn(async move { this.consume_sessions(partner, queue, shutdown).await });
                } else {
                    consumers.spawn(async move { this.consume(partner, queue, compensation, shutdown).await });
                }
            }
        }
        while consumers.join_next().await.is_some() {}
    }

    async fn consume(
        self: Arc<Self>,
        partner: Arc<Partner>,
        queue: String,
        compensation: bool,
        shutdown: CancellationToken,
    ) {
        let slots = Arc::new(Semaphore::new(partner.config.concurrency));
        let mut in_flight = JoinSet::new();
        loop {
            let first = tokio::select! {
                permit = slots.clone().acquire_owned() => permit.expect("semaphore never closed"),
                () = shutdown.cancelled() => break,
            };
            let max = (slots.available_permits() + 1).min(partner.config.prefetch.max(1));
            let received = tokio::select! {
                received = self.transport.receive(&queue, max, RECEIVE_WAIT) => received,
                () = shutdown.cancelled() => break,
            };
            let batch = match received {
                Ok(batch) => batch,
                Err(err) => {
                    tracing::warn!(partner = %partner.name, %queue, "receive failed, retrying in {TRANSPORT_BACKOFF:?}: {err}");
                    tokio::time::sleep(TRANSPORT_BACKOFF).await;
                    continue;
                }
            };
            let mut first = Some(first);
            for message in batch {
                // Only this loop takes permits, and it asked for no more than were free.
                let permit = first
                    .take()
                    .unwrap_or_else(|| slots.clone().try_acquire_owned().expect("permit reserved"));
                let (this, partner, shutdown) = (self.clone(), partner.clone(), shutdown.clone());
                in_flight.spawn(async move {
                    this.handle(&partner, message, compensation, &shutdown).await;
                    drop(permit);
                });
            }
            while in_flight.try_join_next().is_some() {}
        }
        // In-flight steps finish and settle; nothing new is received.
        while in_flight.join_next().await.is_some() {}
    }

    /// Handles one message from receipt to settlement.
    async fn handle(
        &self,
        partner: &Partner,
        message: ReceivedMessage,
        compensation: bool,
        shutdown: &CancellationToken,
    ) {
        let span = tracing::info_span!(
            "message",
            partner = %partner.name,
            queue = %message.queue,
            message_id = %message.message_id,
            saga_id = tracing::field::Empty,
            correlation_id = tracing::field::Empty,
            step = tracing::field::Empty,
            attempt = tracing::field::Empty,
            version = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        if let Some(parent) = envelope::traceparent(&message.properties) {
            otel::continue_trace(&span, &parent);
        }
        async {
            // A delivery that waited in the prefetch buffer past its lock belongs to whoever
            // receives it next: running its step now would only call the partners twice.
            if message.locked_until <= SystemTime::now() {
                tracing::warn!("the lock expired before the step could start; leaving the message for redelivery");
                return;
            }
            let started = std::time::Instant::now();
            let in_flight = metrics()
                .in_flight
                .get_or_create(&PartnerLabels {
                    partner: partner.name.clone(),
                })
                .clone();
            in_flight.inc();
            let work = async {
                let processed = if self.session_ids.is_ordered(&message.queue) {
                    self.process_in_order(partner, &message, compensation, started, shutdown)
                        .await
                } else {
                    Some(self.process(partner, &message, compensation).await)
                };
                in_flight.dec();
                let Some(processed) = processed else {
                    tracing::info!("shutting down during a retry; the message stays for its session's next holder");
                    return None;
                };
                let (routed, step) = processed.split(compensation, started);
                let settling = std::time::Instant::now();
                let settled = self.transport.settle(&message, routed.settlement, routed.outputs).await;
                Some((settled, step, settling.elapsed()))
            };
            // The lock is renewed until the settle has finished: on Service Bus a settle with
            // outputs may take up to the operation timeout, longer than a lock. The renewal runs
            // in this task, not a task of its own: one spawn per message fewer.
            let done = tokio::select! {
                biased;
                done = work => done,
                never = self.keep_locked(&message) => match never {},
            };
            let Some((settled, step, settling)) = done else { return };
            match settled {
                Ok(()) => {}
                Err(TransportError::LockLost { .. }) => {
                    tracing::warn!("lock lost before settling; the message will be redelivered and handled again");
                    return;
                }
                Err(err) => {
                    tracing::error!("settling failed; the message will be redelivered when its lock expires: {err}");
                    return;
                }
            }
            self.report(partner, &message, step, settling);
        }
        .instrument(span)
        .await
    }

    /// Logs, counts and publishes how a step ended; `settling` is how long its settle took.
    fn report(&self, partner: &Partner, message: &ReceivedMessage, step: StepReport, settling: Duration) {
        let StepReport {
            compensation,
            started,
            verdict,
            saga,
            version,
            keys,
            limit,
            waited,
        } = step;
        let handled = started.elapsed();
        log_verdict(&verdict);
        tracing::Span::current().record("outcome", verdict.metric_name());
        let labels = OutcomeLabels {
            partner: partner.name.clone(),
            version: version.clone(),
            outcome: verdict.metric_name().to_string(),
        };
        metrics().messages.get_or_create(&labels).inc();
        metrics()
            .handle_seconds
            .get_or_create(&VersionLabels {
                partner: partner.name.clone(),
                version: version.clone(),
            })
            .observe(handled.as_secs_f64());
        let _ = self.events.send(SagaEvent {
            saga_id: saga.id,
            partner: partner.name.clone(),
            queue: message.queue.clone(),
            message_id: message.message_id.clone(),
            step: saga.step,
            attempt: saga.attempt,
            compensation,
            version,
            verdict,
            at: SystemTime::now(),
            keys,
            limit,
            timing: StepTiming {
                handled,
                partners: waited,
                settling,
            },
        });
    }

    /// Renews the message's lock at half its remaining time, for as long as it is polled. A
    /// failed renewal is tried again with backoff while the lock lasts; after a lost lock it
    /// only waits, and the settle reports the loss.
    fn keep_locked(
        &self,
        message: &ReceivedMessage,
    ) -> impl Future<Output = std::convert::Infallible> + Send + 'static {
        let transport = self.transport.clone();
        let mut message = message.without_body();
        async move {
            'renewing: loop {
                let remaining = message
                    .locked_until
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                tokio::time::sleep(remaining / 2).await;
                let mut backoff = RENEW_RETRY_MIN;
                loop {
                    match transport.renew_lock(&message).await {
                        Ok(until) => {
                            message.locked_until = until;
                            break;
                        }
                        Err(err @ TransportError::LockLost { .. }) => {
                            tracing::warn!("the lock is gone; the message will be redelivered: {err}");
                            break 'renewing;
                        }
                        Err(err) if SystemTime::now() + backoff >= message.locked_until => {
                            tracing::warn!("could not renew the lock before it expires: {err}");
                            break 'renewing;
                        }
                        Err(err) => {
                            tracing::warn!("could not renew the lock, trying again in {backoff:?}: {err}");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(RENEW_RETRY_MAX);
                        }
                    }
                }
            }
            std::future::pending().await
        }
    }

    /// Prepares the message, runs its step and routes the outcome; outputs carry sealed
    /// saga state.
    async fn process(&self, partner: &Partner, message: &ReceivedMessage, compensation: bool) -> Processed {
        let mut result = match self.prepare(partner, message, compensation).await {
            Ok(prepared) => self.run_component(partner, message, compensation, prepared).await,
            Err(rejected) => rejected,
        };
        if let Some(arm) = result.arm {
            let failed = matches!(result.routed.verdict, Verdict::DeadLettered { .. });
            self.registry.record(&partner.name, arm, failed);
        }
        for output in &mut result.routed.outputs {
            self.state_keys.seal(&mut output.message);
        }
        // Said on the dead letter itself, so operators can find a partner's or a version's
        // dead letters on any transport.
        if let Settlement::DeadLetter { properties, .. } = &mut result.routed.settlement {
            properties.push((PARTNER_PROPERTY.to_string(), partner.name.clone()));
            if !result.version.is_empty() {
                properties.push((COMPONENT_VERSION_PROPERTY.to_string(), result.version.clone()));
            }
        }
        result
    }

    /// Reads and checks the message's saga state and decodes its body: everything before a
    /// component runs. A message that fails here is dead-lettered with the reason.
    async fn prepare(
        &self,
        partner: &Partner,
        message: &ReceivedMessage,
        compensation: bool,
    ) -> Result<Prepared, Processed> {
        let reject = |reason: &str, detail: &str, saga: SagaState| Processed {
            routed: Routed::dead_letter(reason, describe(partner, message, detail)),
            saga,
            version: String::new(),
            arm: None,
            keys: SearchKeys::default(),
            limit: None,
            waited: Duration::ZERO,
        };
        // The saga a message is reported under before its own state is trusted.
        let unverified = || {
            SagaState::start(
                message
                    .correlation_id
                    .clone()
                    .unwrap_or_else(|| message.message_id.clone()),
            )
        };
        let envelope = Envelope::read(&message.properties)
            .and_then(|envelope| {
                self.state_keys.verify(&message.properties, &message.body)?;
                Ok(envelope)
            })
            .map_err(|reason| reject("InvalidSagaState", &reason, unverified()))?;
        let saga = envelope
            .saga
            .clone()
            .unwrap_or_else(|| SagaState::first(&message.message_id, &message.body));
        if compensation != envelope.compensation.is_some() {
            let reason = if compensation {
                "a message on a compensation queue has no compensation details"
            } else {
                "a compensation request arrived on a step queue"
            };
            return Err(reject("MisroutedMessage", reason, saga));
        }
        let inbound = self
            .decode(message, &envelope, saga.clone())
            .await
            .map_err(|err| reject("DecodeFailed", &err, saga.clone()))?;
        let first = self
            .first_event(partner, &envelope, &saga, inbound)
            .map_err(|reason| reject("CompensationMismatch", &reason, saga.clone()))?;
        Ok(Prepared { envelope, saga, first })
    }

    /// Decodes the body: a small one right here, a large one on tokio's blocking pool, since
    /// it takes milliseconds of CPU, which must not stall lock renewal, the webhook or the admin
    /// API on the async workers.
    async fn decode(
        &self,
        message: &ReceivedMessage,
        envelope: &Envelope,
        saga: SagaState,
    ) -> Result<wit::Inbound, String> {
        let parts = MessageParts::of(message, envelope);
        let limits = self.decode_limits.clone();
        let span = tracing::info_span!(
            "decode",
            content_type = message.content_type.as_deref(),
            bytes = message.body.len()
        );
        let decode = move || span.in_scope(|| build_inbound(parts, Some(saga), &limits));
        let decoded = if message.body.len() <= INLINE_DECODE_BYTES {
            decode()
        } else {
            tokio::task::spawn_blocking(decode)
                .await
                .map_err(|err| format!("the decoder stopped: {err}"))?
        };
        let inbound = decoded.map_err(|err| err.to_string())?;
        if let Some(correlation_id) = inbound.context.as_ref().and_then(|c| c.correlation_id.as_deref()) {
            tracing::Span::current().record("correlation_id", correlation_id);
        }
        Ok(inbound)
    }

    /// Runs the partner's component through the step and routes its outcome.
    async fn run_component(
        &self,
        partner: &Partner,
        message: &ReceivedMessage,
        compensation: bool,
        prepared: Prepared,
    ) -> Processed {
        let Prepared { envelope, saga, first } = prepared;
        let current = tracing::Span::current();
        current.record("saga_id", saga.id.as_str());
        current.record("step", saga.step);
        current.record("attempt", saga.attempt);
        // What this step sends on names this message's span, so the next step continues the trace.
        let trace = otel::traceparent_of(&current)
            .unwrap_or_else(|| envelope.traceparent.map_or_else(TraceParent::new_root, |t| t.child()));
        // Undoing a step must not reuse the keys of the step it undoes.
        let key_scope = if compensation {
            format!("{}#compensate", saga.id)
        } else {
            saga.id.clone()
        };
        let outbound = self.http.for_message(RequestContext {
            saga_id: key_scope,
            step: saga.step,
            partner: partner.name.clone(),
            message_id: Some(message.message_id.clone()),
            round: 1,
            traceparent: Some(trace),
        });
        let limits = StepLimits::with_max_rounds(partner.config.max_rounds);
        // The version picked now (current, or the canary candidate for its share)
        // handles the whole step, even if a reload lands meanwhile.
        let picked = self
            .registry
            .pick(&partner.name)
            .expect("every executor partner is in the registry");
        let component = picked.component.clone();
        let version = component.info().version.clone();
        current.record("version", version.as_str());
        let run = run_step(&component, first, &outbound, limits).await;

        let routes = PartnerRoutes {
            partner: &partner.name,
            version: &version,
            routes: &partner.config.routes,
            retry: &partner.config.retry,
            outputs: &partner.config.outputs,
            transport_max_message_bytes: self.transport.max_message_bytes(),
            compensation_queues: &self.compensation_queues,
        };
        let input = StepInput {
            message,
            envelope: &envelope,
            saga: &saga,
            traceparent: &trace,
            retry_after: retry_after(&run),
        };
        let _route = tracing::info_span!("route").entered();
        let limit = run.outcome.as_ref().err().and_then(|err| err.limit());
        let routed = match &run.outcome {
            Ok(outcome) => routing::route(&routes, &input, outcome, SystemTime::now()),
            Err(err) if err.is_transient() => {
                routing::retry_or_give_up(&routes, &input, None, &err.to_string(), SystemTime::now())
            }
            Err(err) => {
                if let Some(limit) = err.limit() {
                    let labels = LimitLabels {
                        partner: partner.name.clone(),
                        version: version.clone(),
                        limit: limit.to_string(),
                    };
                    metrics().limit_hits.get_or_create(&labels).inc();
                }
                let detail = format!("{err} [component version {version}]");
                Routed::dead_letter(err.reason(), describe(partner, message, &detail))
            }
        };
        let mut routed = routing::continue_past_failed_undo(&routes, &input, routed);
        self.session_ids
            .assign(&mut routed.outputs, run.inbound.context.as_ref(), &saga.id);
        Processed {
            routed,
            saga,
            version,
            arm: Some(picked.arm),
            keys: SearchKeys::of(&run.inbound, &trace),
            limit,
            waited: run.waited(),
        }
    }

    /// The event the component gets first: a new message, or a request to undo
    /// its own recorded step.
    fn first_event(
        &self,
        partner: &Partner,
        envelope: &Envelope,
        saga: &SagaState,
        inbound: wit::Inbound,
    ) -> Result<wit::Event, String> {
        let Some(info) = &envelope.compensation else {
            return Ok(wit::Event::Message(inbound));
        };
        match saga.history.last() {
            Some(record) if record.partner == partner.name => Ok(wit::Event::Compensate(wit::Compensation {
                inbound,
                compensation_data: record.compensation_data.clone(),
                failed_partner: info.failed_partner.clone(),
                reason: info.reason.clone(),
                details: info.details.clone(),
            })),
            Some(record) => Err(format!(
                "compensation request for a step of partner `{}` arrived at partner `{}`",
                record.partner, partner.name
            )),
            None => Err("compensation request for a saga with no completed steps".into()),
        }
    }
}

/// What processing a message decided, with the saga it belongs to.
struct Processed {
    routed: Routed,
    saga: SagaState,
    /// Content hash of the component version that ran (empty when none did).
    version: String,
    /// The canary arm whose version ran (`None` when no component ran).
    arm: Option<Arm>,
    keys: SearchKeys,
    limit: Option<&'static str>,
    /// How long the step waited for partners' answers.
    waited: Duration,
}

impl Processed {
    /// Splits into what settles the message and what reports how its step ended.
    fn split(self, compensation: bool, started: std::time::Instant) -> (Routed, StepReport) {
        let step = StepReport {
            compensation,
            started,
            verdict: self.routed.verdict.clone(),
            saga: self.saga,
            version: self.version,
            keys: self.keys,
            limit: self.limit,
            waited: self.waited,
        };
        (self.routed, step)
    }
}

/// How one step ended, for [`Executor::report`].
struct StepReport {
    compensation: bool,
    started: std::time::Instant,
    verdict: Verdict,
    saga: SagaState,
    version: String,
    keys: SearchKeys,
    limit: Option<&'static str>,
    waited: Duration,
}

/// A message ready for its component: trusted saga state and the first event, which holds
/// the decoded body.
struct Prepared {
    envelope: Envelope,
    saga: SagaState,
    first: wit::Event,
}

/// A dead-letter description naming the partner and the message.
fn describe(partner: &Partner, message: &ReceivedMessage, detail: &str) -> String {
    format!(
        "partner `{}`, message `{}` on queue `{}`: {detail}",
        partner.name, message.message_id, message.queue
    )
}

/// The largest `Retry-After` (delta-seconds) among the step's HTTP answers.
fn retry_after(run: &StepRun) -> Option<Duration> {
    run.rounds
        .iter()
        .flat_map(|round| &round.results)
        .filter_map(|result| result.response.as_ref().ok())
        .filter_map(|response| {
            let (_, value) = response.headers.iter().find(|(name, _)| name == "retry-after")?;
            value.trim().parse::<u64>().ok().map(Duration::from_secs)
        })
        .max()
}

fn log_verdict(verdict: &Verdict) {
    match verdict {
        Verdict::DeadLettered { reason, description } => tracing::warn!(%reason, "dead-lettered: {description}"),
        other => tracing::info!("{other:?}"),
    }
}
