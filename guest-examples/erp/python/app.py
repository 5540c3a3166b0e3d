"""erp: step 3, the last step of the contact saga (Python version of `../src/lib.rs`).

The contact now exists in the MDM (`mdm`) and carries its MDM id in Dataverse
(`dataverse-writeback`). This component creates the matching customer in the
ERP; when that works, the saga is complete.

- Message: `POST {erp-url}/customers` with the MDM id (property `mdm-id`), the
  Dataverse id, names and email. The host puts the bearer token from the secret
  `erp-token` into `Authorization`.
- Answer: 2xx → complete. 408/429/5xx and network failures → retry (after
  `Retry-After` when the ERP sends one). Any other answer (say, a 400 for an
  invalid email) → compensate with `ErpRejected`: the host sends a compensate
  event to `dataverse-writeback`, then to `mdm`, newest first, and the saga is
  rolled back.
- Compensate: erp is the last step, so no later step can fail; there is
  nothing to undo, so it completes.

Config: `erp-url`. Secret: `erp-token`.
"""

from sagahost_partner import (
    Event,
    Event_Compensate,
    Event_Message,
    Event_Responses,
    HttpResult,
    Inbound,
    PartnerError,
    Plan,
    Request,
    Status,
    call,
    compensate,
    complete,
    dead_letter,
    export,
    info,
    require_config,
    retry,
)

CREATE = "create"
"""`calls.state` of the only round."""


def handle(event: Event) -> Plan:
    match event:
        case Event_Message(inbound):
            return create(inbound)
        case Event_Responses(responses) if responses.state == CREATE:
            if not responses.results:
                raise PartnerError("no response")
            return created(responses.results[0])
        case Event_Responses(responses):
            raise PartnerError(f"unknown state `{responses.state}`")
        case Event_Compensate():
            info("complete: nothing to undo in the ERP")
            return complete()


def create(inbound: Inbound) -> Plan:
    """Asks the host to POST the customer to the ERP."""
    base = require_config("erp-url")
    mdm_id = inbound.property("mdm-id")
    if mdm_id is None:
        info("dead-letter: no mdm-id property")
        return dead_letter(
            "MissingMdmId",
            f"message {inbound.message_id} has no `mdm-id` property: did it come from the mdm step?",
        )
    context = inbound.context
    contact = context.target_entity if context else None

    def text(name: str) -> str | None:
        return contact.text_attr(name) if contact else None

    dataverse_id = text("contactid")
    if dataverse_id is None and context:
        dataverse_id = context.primary_entity_id
    body = {
        "mdmId": mdm_id,
        "dataverseId": dataverse_id,
        "firstName": text("firstname"),
        "lastName": text("lastname"),
        "email": text("emailaddress1"),
    }
    info(f"creating ERP customer for {mdm_id}")
    request = Request.post(f"{base.rstrip('/')}/customers").with_id(CREATE).json(body).bearer_secret("erp-token")
    return call([request], CREATE)


def created(result: HttpResult) -> Plan:
    """Decides on the ERP's answer."""
    match result.status:
        case Status.SUCCESS:
            info("complete: ERP customer created")
            return complete()
        case Status.TRANSIENT:
            info(f"retry: ERP unavailable ({result.describe()})")
            return retry(f"ERP create: {result.describe()}", delay_ms=result.retry_after_ms)
        case Status.FATAL:
            info(f"compensate: ERP rejected the customer ({result.describe()})")
            response = result.response
            details = f"{response.status}: {response.excerpt(200)}" if response else result.describe()
            return compensate("ErpRejected", details)


Handler = export(handle)
