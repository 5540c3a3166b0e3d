//! # erp: step 3, the last step of the contact saga
//!
//! The contact now exists in the MDM (`mdm`) and carries its MDM id in Dataverse
//! (`dataverse-writeback`). This component creates the matching customer in the
//! ERP; when that works, the saga is complete.
//!
//! - **Message**: `POST {erp-url}/customers` with the MDM id (property `mdm-id`),
//!   the Dataverse id, names and email. The host puts the bearer token from the
//!   secret `erp-token` into `Authorization`.
//! - **Answer**: 2xx → complete. 408/429/5xx and network failures → retry (after
//!   `Retry-After` when the ERP sends one). Any other answer (say, a 400 for an
//!   invalid email) → compensate with `ErpRejected`: the host sends a compensate
//!   event to `dataverse-writeback`, then to `mdm`, newest first, and the saga
//!   is rolled back.
//! - **Compensate**: erp is the last step, so no later step can fail; there is
//!   nothing to undo, so it completes.
//!
//! Config: `erp-url`. Secret: `erp-token`.

use sagahost_partner::prelude::*;
use serde_json::json;

struct Erp;

/// `calls.state` of the only round.
const CREATE: &str = "create";

impl Guest for Erp {
    fn handle(event: Event) -> Result<Plan, String> {
        match event {
            Event::Message(inbound) => create(&inbound),
            Event::Responses(responses) if responses.state == CREATE => {
                let result = responses.results.first().ok_or("no response")?;
                Ok(created(result))
            }
            Event::Responses(responses) => Err(format!("unknown state `{}`", responses.state)),
            Event::Compensate(_) => {
                info("complete: nothing to undo in the ERP");
                Ok(complete())
            }
        }
    }
}

/// Asks the host to POST the customer to the ERP.
fn create(inbound: &Inbound) -> Result<Plan, String> {
    let base = require_config("erp-url")?;
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
    let context = inbound.context.as_ref();
    let contact = context.and_then(target);
    let text = |name| contact.and_then(|c| text_attr(c, name));
    let dataverse_id = text("contactid").or(context.and_then(|c| c.primary_entity_id.as_deref()));
    let body = json!({
        "mdmId": mdm_id,
        "dataverseId": dataverse_id,
        "firstName": text("firstname"),
        "lastName": text("lastname"),
        "email": text("emailaddress1"),
    });
    info(format!("creating ERP customer for {mdm_id}"));
    let request = Request::post(format!("{}/customers", base.trim_end_matches('/')))
        .id(CREATE)
        .json(&body)
        .bearer_secret("erp-token");
    Ok(call([request], CREATE))
}

/// Decides on the ERP's answer.
fn created(result: &HttpResult) -> Plan {
    match result.status() {
        Status::Success => {
            info("complete: ERP customer created");
            complete()
        }
        Status::Transient => {
            info(format!("retry: ERP unavailable ({})", result.describe()));
            retry(result.retry_after_ms(), format!("ERP create: {}", result.describe()))
        }
        Status::Fatal => {
            info(format!("compensate: ERP rejected the customer ({})", result.describe()));
            let details = match result.response() {
                Some(response) => format!("{}: {}", response.status, response.excerpt(200)),
                None => result.describe(),
            };
            compensate("ErpRejected", details)
        }
    }
}

sagahost_partner::export!(Erp);
