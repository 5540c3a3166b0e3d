//! `GET /admin/sagas?by=saga|record|correlation&q=…&limit=N`: sagas from the host's index of
//! recent steps (`activity::SagaIndex`); with no `q`, the most recent. Each step links to its
//! trace when `[admin] trace-url` is set.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::redact::redact_urls;
use super::{Shared, error};
use crate::activity::{IndexedSaga, SagaQuery};
use crate::dead_letters::format_instant;

/// Sagas an answer holds when the query does not say, and at most.
const DEFAULT_SAGAS: usize = 20;
const MAX_SAGAS: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SagaParams {
    by: Option<String>,
    q: Option<String>,
    limit: Option<usize>,
}

impl SagaParams {
    fn query(&self) -> Result<SagaQuery, String> {
        let text = self.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
        let Some(text) = text else {
            return Ok(SagaQuery::Recent);
        };
        match self.by.as_deref().unwrap_or("saga") {
            "saga" => Ok(SagaQuery::Saga(text.into())),
            "record" => Ok(SagaQuery::Record(text.into())),
            "correlation" => Ok(SagaQuery::Correlation(text.into())),
            other => Err(format!("by=`{other}`: search by saga, record or correlation")),
        }
    }
}

/// The trace link of a step: `template` with `{trace-id}` and `{saga-id}` filled in.
pub fn trace_link(template: &str, trace_id: &str, saga_id: &str) -> String {
    template.replace("{trace-id}", trace_id).replace("{saga-id}", saga_id)
}

fn saga_json(saga: IndexedSaga, trace_url: Option<&str>) -> serde_json::Value {
    let last = saga.steps.last();
    let outcome = last.map(|s| s.outcome.clone());
    let started = saga.steps.first().map(|s| format_instant(s.at));
    let last_at = last.map(|s| format_instant(s.at));
    let steps: Vec<_> = saga
        .steps
        .iter()
        .map(|step| {
            let link = trace_url
                .zip(step.trace_id.as_deref())
                .map(|(t, id)| trace_link(t, id, &saga.saga_id));
            json!({
                "at": format_instant(step.at),
                "partner": step.partner,
                "version": step.version,
                "step": step.step,
                "attempt": step.attempt,
                "compensation": step.compensation,
                "outcome": step.outcome,
                "reason": step.detail.as_deref().map(redact_urls),
                "queue": step.queue,
                "message-id": step.message_id,
                "trace-id": step.trace_id,
                "trace-url": link,
            })
        })
        .collect();
    json!({
        "saga-id": saga.saga_id,
        "record-id": saga.record_id,
        "entity": saga.entity,
        "correlation-id": saga.correlation_id,
        "started-at": started,
        "last-at": last_at,
        "outcome": outcome,
        "steps": steps,
    })
}

pub async fn find(State(admin): Shared, Query(params): Query<SagaParams>) -> Response {
    let query = match params.query() {
        Ok(query) => query,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let limit = params.limit.unwrap_or(DEFAULT_SAGAS).clamp(1, MAX_SAGAS);
    let index = admin.sagas.clone();
    let found = tokio::task::spawn_blocking(move || index.find(&query, limit)).await;
    let sagas = match found {
        Ok(Ok(sagas)) => sagas,
        Ok(Err(err)) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the saga index failed: {err:#}"),
            );
        }
        Err(err) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the saga index failed: {err}"),
            );
        }
    };
    let trace_url = admin.trace_url.as_deref();
    Json(json!({
        "keep": admin.sagas.keep(),
        "sagas": sagas.into_iter().map(|saga| saga_json(saga, trace_url)).collect::<Vec<_>>(),
    }))
    .into_response()
}
