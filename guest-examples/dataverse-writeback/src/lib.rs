//! # dataverse-writeback: step 2 of the contact saga
//!
//! `mdm` registered the new contact and forwarded the message with its MDM id in
//! the `mdm-id` property. This component writes that id back onto the Dataverse
//! contact, so users see it in Dynamics 365, then forwards the message to `erp`.
//!
//! - **Message**: `PATCH {dataverse-url}/api/data/v9.2/contacts({contactid})`
//!   with `{"<mdm-id-column>": "MDM-…"}`. The host puts the bearer token from the
//!   secret `dataverse-token` into `Authorization`; `If-Match: *` makes sure the
//!   PATCH updates the row and never creates one.
//! - **Answer**: 2xx (Dataverse sends 204) → forward to `next`, recording
//!   `{"contactId": …}`. 408/429/5xx and network failures → retry (after
//!   `Retry-After`: Dataverse sends it when it throttles). Any other answer →
//!   compensate with `WritebackRejected`, which makes `mdm` delete its contact.
//! - **Compensate** (`erp` failed): PATCH the column back to `null`. 2xx or 404
//!   (the contact is gone) → complete; transient → retry; otherwise dead-letter
//!   `WritebackCompensationFailed`.
//!
//! Config: `dataverse-url`, `mdm-id-column` (default `new_mdmid`).
//! Secret: `dataverse-token`, an Entra ID access token: configure it as an `oauth2` secret
//! (client credentials, a certificate or the host's managed identity, scope
//! `https://ORG.crm.dynamics.com/.default`) and the host keeps it fresh; the component only
//! names it. The quickstart does this against its demo Dataverse's token endpoint.

use sagahost_partner::prelude::*;
use serde_json::{Value as Json, json};

struct Writeback;

/// `calls.state` of the write round; the undo round is `clear`.
const WRITE: &str = "write";
const CLEAR: &str = "clear";

impl Guest for Writeback {
    fn handle(event: Event) -> Result<Plan, String> {
        match event {
            Event::Message(inbound) => write(&inbound),
            Event::Responses(responses) => {
                let result = responses.results.first().ok_or("no response")?;
                match responses.state.as_str() {
                    WRITE => Ok(written(&responses.inbound, result)),
                    CLEAR => Ok(cleared(result)),
                    other => Err(format!("unknown state `{other}`")),
                }
            }
            Event::Compensate(compensation) => clear(&compensation),
        }
    }
}

/// The contact's id: the Target's `contactid`, else the primary entity id.
fn contact_id(inbound: &Inbound) -> Option<&str> {
    let context = inbound.context.as_ref()?;
    target(context)
        .and_then(|contact| text_attr(contact, "contactid"))
        .or(context.primary_entity_id.as_deref())
}

/// `PATCH …/contacts(<id>)` setting the MDM id column to `value`.
fn patch(contact_id: &str, value: Json) -> Result<HttpRequest, String> {
    let base = require_config("dataverse-url")?;
    let column = config_or("mdm-id-column", "new_mdmid");
    let url = format!("{}/api/data/v9.2/contacts({contact_id})", base.trim_end_matches('/'));
    Ok(Request::patch(url)
        .id("patch")
        .bearer_secret("dataverse-token")
        .header("If-Match", "*")
        .json(&json!({ column: value })))
}

/// Asks the host to write the MDM id onto the contact.
fn write(inbound: &Inbound) -> Result<Plan, String> {
    let Some(mdm_id) = property(inbound, "mdm-id") else {
        info("dead-letter: no mdm-id property");
        return Ok(dead_letter(
            "MissingMdmId",
            format!(
                "message {} has no `mdm-id` property: did it come from the mdm step?",
                inbound.message_id
            ),
        ));
    };
    let Some(contact_id) = contact_id(inbound) else {
        info("dead-letter: no contact id");
        return Ok(dead_letter(
            "MissingContactId",
            format!("message {} has no Dataverse contact id", inbound.message_id),
        ));
    };
    info(format!("writing MDM id {mdm_id} to contact {contact_id}"));
    Ok(call([patch(contact_id, json!(mdm_id))?], WRITE))
}

/// Decides on Dataverse's answer to the write.
fn written(inbound: &Inbound, result: &HttpResult) -> Plan {
    match result.status() {
        Status::Success => {
            let contact_id = contact_id(inbound).unwrap_or_default();
            info(format!("forward: MDM id written to contact {contact_id}"));
            forward("next").recording(json!({ "contactId": contact_id }).to_string())
        }
        Status::Transient => {
            info(format!("retry: Dataverse unavailable ({})", result.describe()));
            retry(
                result.retry_after_ms(),
                format!("Dataverse write: {}", result.describe()),
            )
        }
        Status::Fatal => {
            info(format!(
                "compensate: Dataverse rejected the write ({})",
                result.describe()
            ));
            compensate("WritebackRejected", result.describe())
        }
    }
}

/// Asks the host to clear the MDM id column again.
fn clear(compensation: &Compensation) -> Result<Plan, String> {
    let recorded = compensation
        .compensation_data
        .as_deref()
        .and_then(|data| serde_json::from_str::<Json>(data).ok())
        .and_then(|data| data.get("contactId")?.as_str().map(str::to_string));
    let Some(contact_id) = recorded.or_else(|| contact_id(&compensation.inbound).map(Into::into)) else {
        info("dead-letter: no contact id to compensate");
        return Ok(dead_letter(
            "WritebackCompensationFailed",
            "no contact id in the compensation data or the message",
        ));
    };
    info(format!(
        "clearing MDM id of contact {contact_id}: {} failed with {}",
        compensation.failed_partner, compensation.reason
    ));
    Ok(call([patch(&contact_id, Json::Null)?], CLEAR))
}

/// Decides on Dataverse's answer to the undo.
fn cleared(result: &HttpResult) -> Plan {
    match (result.status(), result.code()) {
        (Status::Success, _) | (_, Some(404)) => {
            info("complete: MDM id cleared");
            complete()
        }
        (Status::Transient, _) => {
            info(format!("retry: Dataverse unavailable ({})", result.describe()));
            retry(
                result.retry_after_ms(),
                format!("Dataverse clear: {}", result.describe()),
            )
        }
        (Status::Fatal, _) => {
            info(format!(
                "dead-letter: Dataverse refused the undo ({})",
                result.describe()
            ));
            dead_letter(
                "WritebackCompensationFailed",
                format!("Dataverse refused to clear the MDM id: {}", result.describe()),
            )
        }
    }
}

sagahost_partner::export!(Writeback);
