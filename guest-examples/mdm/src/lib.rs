//! # mdm: step 1 of the contact saga
//!
//! When a contact is created in Dynamics 365, Dataverse posts the
//! `RemoteExecutionContext` to the `mdm` queue. This component registers the
//! contact in the master-data-management system and forwards the message to the
//! next step (`dataverse-writeback`) with the MDM id in the `mdm-id` property.
//!
//! - **Message**: `POST {mdm-url}/contacts` with the contact's names and email,
//!   authenticated by the `x-api-key` header, which the host fills from the secret
//!   `mdm-api-key`.
//! - **Answer**: 2xx with `{"id": "MDM-…"}` → forward to `next`, recording
//!   `{"mdmId": "MDM-…"}` so the step can be undone. 408/429/5xx, timeouts and
//!   connection failures → retry (after `Retry-After` when the MDM sends one).
//!   Any other answer → dead-letter `MdmRejected`; mdm is the first step, so there
//!   is nothing to compensate.
//! - **Compensate** (a later step failed): `DELETE {mdm-url}/contacts/{mdmId}`.
//!   2xx or 404 → complete; transient → retry; otherwise dead-letter
//!   `MdmCompensationFailed` for an operator.
//!
//! Config: `mdm-url`. Secret: `mdm-api-key`.

use sagahost_partner::prelude::*;
use serde_json::json;

struct Mdm;

/// `calls.state` of the create round; the delete round is `delete:<mdm id>`.
const CREATE: &str = "create";

impl Guest for Mdm {
    fn handle(event: Event) -> Result<Plan, String> {
        match event {
            Event::Message(inbound) => create(&inbound),
            Event::Responses(responses) => {
                let result = responses.results.first().ok_or("no response")?;
                match responses.state.strip_prefix("delete:") {
                    Some(mdm_id) => Ok(deleted(mdm_id, result)),
                    None if responses.state == CREATE => Ok(created(result)),
                    None => Err(format!("unknown state `{}`", responses.state)),
                }
            }
            Event::Compensate(compensation) => delete(&compensation),
        }
    }
}

/// Asks the host to POST the new contact to the MDM.
fn create(inbound: &Inbound) -> Result<Plan, String> {
    let base = require_config("mdm-url")?;
    let context = inbound.context.as_ref();
    let contact = context.and_then(target).filter(|t| t.logical_name == "contact");
    let (Some(context), Some(contact)) = (context, contact) else {
        let what = match &inbound.context {
            Some(c) => format!("{} of {}", c.message_name, c.primary_entity_name),
            None => "a body that is not a Dataverse context".to_string(),
        };
        info(format!("dead-letter: message {} is not a contact", inbound.message_id));
        return Ok(dead_letter(
            "NotAContact",
            format!("message {} holds {what}, not a contact", inbound.message_id),
        ));
    };

    let dataverse_id = text_attr(contact, "contactid")
        .or(context.primary_entity_id.as_deref())
        .unwrap_or_default();
    let body = json!({
        "dataverseId": dataverse_id,
        "firstName": text_attr(contact, "firstname"),
        "lastName": text_attr(contact, "lastname"),
        "email": text_attr(contact, "emailaddress1"),
    });
    info(format!("creating contact {dataverse_id} in MDM"));
    let request = Request::post(format!("{}/contacts", base.trim_end_matches('/')))
        .id(CREATE)
        .json(&body)
        .secret_header("x-api-key", "mdm-api-key");
    Ok(call([request], CREATE))
}

/// Decides on the MDM's answer to the create.
fn created(result: &HttpResult) -> Plan {
    match result.status() {
        Status::Success => {
            let id = result
                .response()
                .and_then(|r| r.json())
                .and_then(|body| body.get("id")?.as_str().map(str::to_string));
            match id {
                Some(mdm_id) => {
                    info(format!("forward: created MDM contact {mdm_id}"));
                    forward_with("next", [("mdm-id", mdm_id.as_str())])
                        .recording(json!({ "mdmId": mdm_id }).to_string())
                }
                None => {
                    info("dead-letter: MDM answered without an id");
                    dead_letter(
                        "MdmBadResponse",
                        format!("MDM created the contact but sent no `id`: {}", result.describe()),
                    )
                }
            }
        }
        Status::Transient => {
            info(format!("retry: MDM unavailable ({})", result.describe()));
            retry(result.retry_after_ms(), format!("MDM create: {}", result.describe()))
        }
        Status::Fatal => {
            info(format!("dead-letter: MDM rejected the contact ({})", result.describe()));
            dead_letter(
                "MdmRejected",
                format!("MDM rejected the contact: {}", result.describe()),
            )
        }
    }
}

/// Asks the host to DELETE the MDM contact this step created.
fn delete(compensation: &Compensation) -> Result<Plan, String> {
    let base = require_config("mdm-url")?;
    let mdm_id = compensation
        .compensation_data
        .as_deref()
        .and_then(|data| serde_json::from_str::<serde_json::Value>(data).ok())
        .and_then(|data| data.get("mdmId")?.as_str().map(str::to_string));
    let Some(mdm_id) = mdm_id else {
        info("dead-letter: no MDM id to compensate");
        return Ok(dead_letter(
            "MdmCompensationFailed",
            format!(
                "cannot undo the MDM step after {} failed ({}): compensation data {:?} has no `mdmId`",
                compensation.failed_partner, compensation.reason, compensation.compensation_data
            ),
        ));
    };
    info(format!(
        "deleting MDM contact {mdm_id}: {} failed with {}",
        compensation.failed_partner, compensation.reason
    ));
    let request = Request::delete(format!("{}/contacts/{mdm_id}", base.trim_end_matches('/')))
        .id("delete")
        .secret_header("x-api-key", "mdm-api-key");
    Ok(call([request], format!("delete:{mdm_id}")))
}

/// Decides on the MDM's answer to the delete.
fn deleted(mdm_id: &str, result: &HttpResult) -> Plan {
    match (result.status(), result.code()) {
        (Status::Success, _) | (_, Some(404)) => {
            info(format!("complete: MDM contact {mdm_id} removed"));
            complete()
        }
        (Status::Transient, _) => {
            info(format!("retry: MDM delete of {mdm_id} ({})", result.describe()));
            retry(result.retry_after_ms(), format!("MDM delete: {}", result.describe()))
        }
        (Status::Fatal, _) => {
            info(format!("dead-letter: MDM refused to delete {mdm_id}"));
            dead_letter(
                "MdmCompensationFailed",
                format!("MDM refused to delete contact {mdm_id}: {}", result.describe()),
            )
        }
    }
}

sagahost_partner::export!(Mdm);
