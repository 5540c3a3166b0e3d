//! The admin API's dead-letter routes, on either transport, over [`crate::dead_letters`].
//!
//! - `GET /admin/dead-letters/{queue}?reason=&partner=&version=&since=&until=&from=&limit=`:
//!   `{"letters": [...], "next": N|null}`; pass `next` as `from` for the next page. `since` and
//!   `until` take an RFC 3339 time or a duration ago (`2h`).
//! - `GET /admin/dead-letters/{queue}/{sequence}`: one dead letter in full, with its body
//!   decoded as `sagahost inspect` decodes it.
//! - `POST /admin/dead-letters/{queue}/{sequence}/redrive[?reset-attempts=true]`.
//! - `DELETE /admin/dead-letters/{queue}/{sequence}`: purge one.
//! - `POST /admin/dead-letters/{queue}/redrive` with a JSON body of filters and `limit`,
//!   `dry-run`, `reset-attempts`: `{"redriven": N, "skipped": [...]}` (or `{"matched": N}`).
//! - `POST /admin/dead-letters/{queue}/purge` with filters, `limit` and `"confirm": true`;
//!   without `confirm` it answers 400 with how many it would remove.
//!
//! Only the queues the host uses are served: a typo answers 404 instead of reaching (or, on a
//! broker that makes queues on first use, creating) another entity.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sagahost_transport::dead_letters::DeadLetter;
use sagahost_transport::{HostTransport, TransportError};
use serde::Deserialize;
use serde_json::{Value, json};

use super::redact::redact_urls;
use super::{Admin, Shared, error};
use crate::dead_letters::{
    DeadLetterQueue, Filter, RedriveOptions, Selection, decoded, format_instant, parse_instant, partner_of, version_of,
};
use crate::saga::envelope::Envelope;

/// Most dead letters one list answer holds.
const MAX_LIST: usize = 1000;
/// Dead letters a list answer holds when the query does not say.
const DEFAULT_LIST: usize = 50;

/// A request refused or failed: a status and a message, answered as `{"error": …}`.
pub struct Refused(StatusCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

/// What every route answers.
type Answer = Result<Response, Refused>;

/// The filters, as a query string or a JSON body. (Each request type lists them itself:
/// serde's `flatten` would read numbers in a query string as text.)
struct FilterParams {
    reason: Option<String>,
    partner: Option<String>,
    version: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

impl FilterParams {
    fn filter(self) -> Result<Filter, Refused> {
        let instant = |text: Option<String>, name: &str| {
            text.map(|text| parse_instant(&text))
                .transpose()
                .map_err(|why| Refused(StatusCode::BAD_REQUEST, format!("{name}: {why}")))
        };
        Ok(Filter {
            since: instant(self.since, "since")?,
            until: instant(self.until, "until")?,
            reason: self.reason,
            partner: self.partner,
            version: self.version,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ListParams {
    reason: Option<String>,
    partner: Option<String>,
    version: Option<String>,
    since: Option<String>,
    until: Option<String>,
    from: Option<i64>,
    limit: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RedriveOneParams {
    #[serde(default)]
    reset_attempts: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BulkParams {
    reason: Option<String>,
    partner: Option<String>,
    version: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    reset_attempts: bool,
    #[serde(default)]
    confirm: bool,
}

impl ListParams {
    fn filter(&mut self) -> Result<Filter, Refused> {
        FilterParams {
            reason: self.reason.take(),
            partner: self.partner.take(),
            version: self.version.take(),
            since: self.since.take(),
            until: self.until.take(),
        }
        .filter()
    }
}

impl BulkParams {
    fn selection(&mut self) -> Result<Selection, Refused> {
        FilterParams {
            reason: self.reason.take(),
            partner: self.partner.take(),
            version: self.version.take(),
            since: self.since.take(),
            until: self.until.take(),
        }
        .filter()
        .map(Selection::Matching)
    }
}

/// `queue`'s dead-letter queue, if it is one the host uses.
fn open<'a>(admin: &'a Admin, queue: &'a str) -> Result<DeadLetterQueue<'a, HostTransport>, Refused> {
    if !admin.queues.iter().any(|known| known == queue) {
        return Err(Refused(
            StatusCode::NOT_FOUND,
            format!(
                "queue `{queue}` is not one this host uses; its queues are: {}",
                admin.queues.join(", ")
            ),
        ));
    }
    Ok(DeadLetterQueue {
        transport: &admin.transport,
        queue,
        partner: admin.queue_partners.get(queue).map(String::as_str),
    })
}

impl From<TransportError> for Refused {
    fn from(err: TransportError) -> Self {
        Self(StatusCode::BAD_GATEWAY, format!("the transport failed: {err}"))
    }
}

fn not_found(queue: &str, sequence: i64) -> Refused {
    Refused(
        StatusCode::NOT_FOUND,
        format!("no dead-lettered message {sequence} on `{queue}`"),
    )
}

fn summary(letter: &DeadLetter) -> Value {
    let message = &letter.message;
    json!({
        "sequence": message.sequence_number,
        "message-id": message.message_id,
        "reason": letter.reason,
        "description": redact_urls(&letter.description),
        "partner": partner_of(letter),
        "version": version_of(letter),
        "enqueued-time": format_instant(message.enqueued_time),
        "dead-lettered-at": letter.dead_lettered_at.map(format_instant),
        "delivery-count": message.delivery_count,
    })
}

pub async fn list(State(admin): Shared, Path(name): Path<String>, Query(mut params): Query<ListParams>) -> Answer {
    let dlq = open(&admin, &name)?;
    let filter = params.filter()?;
    let limit = params.limit.unwrap_or(DEFAULT_LIST).clamp(1, MAX_LIST);
    let page = dlq.list(&filter, params.from.unwrap_or(0), limit).await?;
    Ok(Json(json!({
        "letters": page.letters.iter().map(summary).collect::<Vec<_>>(),
        "next": page.next,
    }))
    .into_response())
}

pub async fn show(State(admin): Shared, Path((name, sequence)): Path<(String, i64)>) -> Answer {
    let dlq = open(&admin, &name)?;
    let letter = dlq.show(sequence).await?.ok_or_else(|| not_found(&name, sequence))?;
    let mut detail = summary(&letter);
    let (decoded, decode_error) = match decoded(&letter) {
        Ok(context) => (Some(context), None),
        Err(why) => (None, Some(why)),
    };
    let message = &letter.message;
    detail["content-type"] = json!(message.content_type);
    detail["correlation-id"] = json!(message.correlation_id);
    detail["properties"] = json!(message.properties);
    detail["body"] = json!(String::from_utf8_lossy(&message.body));
    detail["decoded"] = json!(decoded);
    detail["decode-error"] = json!(decode_error);
    // The saga state as the message carries it; shown whether or not its seal still verifies.
    detail["saga"] = json!(
        Envelope::read(&message.properties)
            .ok()
            .and_then(|envelope| envelope.saga)
    );
    Ok(Json(detail).into_response())
}

pub async fn redrive_one(
    State(admin): Shared,
    Path((name, sequence)): Path<(String, i64)>,
    Query(params): Query<RedriveOneParams>,
) -> Answer {
    let dlq = open(&admin, &name)?;
    let options = RedriveOptions {
        limit: None,
        reset_attempts: params.reset_attempts.then_some(&admin.state_keys),
    };
    let done = dlq.redrive(&Selection::One(sequence), options, |_| {}).await?;
    if let Some((_, why)) = done.skipped.first() {
        return Err(Refused(StatusCode::CONFLICT, why.clone()));
    }
    if done.done == 0 {
        return Err(not_found(&name, sequence));
    }
    Ok(Json(json!({ "redriven": sequence, "queue": name })).into_response())
}

pub async fn purge_one(State(admin): Shared, Path((name, sequence)): Path<(String, i64)>) -> Answer {
    let dlq = open(&admin, &name)?;
    if dlq.purge(&Selection::One(sequence), None, |_| {}).await?.done == 0 {
        return Err(not_found(&name, sequence));
    }
    Ok(Json(json!({ "purged": sequence, "queue": name })).into_response())
}

pub async fn redrive_matching(
    State(admin): Shared,
    Path(name): Path<String>,
    Json(mut params): Json<BulkParams>,
) -> Answer {
    let dlq = open(&admin, &name)?;
    let selection = params.selection()?;
    if params.dry_run {
        let matched = dlq.count(&selection, params.limit).await?;
        return Ok(Json(json!({ "matched": matched, "dry-run": true })).into_response());
    }
    let options = RedriveOptions {
        limit: params.limit,
        reset_attempts: params.reset_attempts.then_some(&admin.state_keys),
    };
    let done = dlq.redrive(&selection, options, |_| {}).await?;
    Ok(Json(json!({
        "redriven": done.done,
        "skipped": done
            .skipped
            .iter()
            .map(|(sequence, why)| json!({ "sequence": sequence, "reason": why }))
            .collect::<Vec<_>>(),
    }))
    .into_response())
}

pub async fn purge_matching(
    State(admin): Shared,
    Path(name): Path<String>,
    Json(mut params): Json<BulkParams>,
) -> Answer {
    let dlq = open(&admin, &name)?;
    if params.reset_attempts {
        return Err(Refused(
            StatusCode::BAD_REQUEST,
            "reset-attempts applies to redrive, not purge".into(),
        ));
    }
    let selection = params.selection()?;
    if params.dry_run || !params.confirm {
        let matched = dlq.count(&selection, params.limit).await?;
        if params.dry_run {
            return Ok(Json(json!({ "matched": matched, "dry-run": true })).into_response());
        }
        return Err(Refused(
            StatusCode::BAD_REQUEST,
            format!("this would remove {matched} dead letters from `{name}` for good; send \"confirm\": true"),
        ));
    }
    let done = dlq.purge(&selection, params.limit, |_| {}).await?;
    Ok(Json(json!({ "purged": done.done })).into_response())
}
