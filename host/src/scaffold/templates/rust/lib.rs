//! # {{name}}: a sagahost partner component
//!
//! - **Message**: `POST {api-url}/records` with the Dataverse row's table, id and name. The
//!   host puts the bearer token from the secret `api-token` into `Authorization`.
//! - **Answer**: 2xx → complete. 408/429/5xx and network failures → retry (after
//!   `Retry-After` when the API sends one). Any other answer → dead-letter with `Rejected`.
//! - **Compensate**: nothing to undo, so it completes.
//!
//! Config: `api-url`. Secret: `api-token`.

use sagahost_partner::prelude::*;
use serde_json::json;

struct Component;

/// `calls.state` of the only round.
const CREATE: &str = "create";

impl Guest for Component {
    fn handle(event: Event) -> Result<Plan, String> {
        match event {
            Event::Message(inbound) => create(&inbound),
            Event::Responses(responses) if responses.state == CREATE => {
                let result = responses.results.first().ok_or("no response")?;
                Ok(created(result))
            }
            Event::Responses(responses) => Err(format!("unknown state `{}`", responses.state)),
            Event::Compensate(_) => Ok(complete()),
        }
    }
}

/// Asks the host to POST the row to the API.
fn create(inbound: &Inbound) -> Result<Plan, String> {
    let base = require_config("api-url")?;
    let context = inbound.context.as_ref().ok_or("the message has no Dataverse context")?;
    let row = target(context);
    let body = json!({
        "table": context.primary_entity_name,
        "id": context.primary_entity_id,
        "name": row.and_then(|row| text_attr(row, "fullname").or_else(|| text_attr(row, "name"))),
    });
    info(format!("creating the record of {} {}", context.primary_entity_name, context.primary_entity_id.as_deref().unwrap_or("-")));
    let request = Request::post(format!("{}/records", base.trim_end_matches('/')))
        .id(CREATE)
        .json(&body)
        .bearer_secret("api-token");
    Ok(call([request], CREATE))
}

/// Decides on the API's answer.
fn created(result: &HttpResult) -> Plan {
    match result.status() {
        Status::Success => complete(),
        Status::Transient => retry(result.retry_after_ms(), format!("create: {}", result.describe())),
        Status::Fatal => dead_letter("Rejected", format!("create: {}", result.describe())),
    }
}

sagahost_partner::export!(Component);
