"""mdm: step 1 of the contact saga (Python version of `../src/lib.rs`).

When a contact is created in Dynamics 365, Dataverse posts the
`RemoteExecutionContext` to the `mdm` queue. This component registers the
contact in the master-data-management system and forwards the message to the
next step (`dataverse-writeback`) with the MDM id in the `mdm-id` property.

- Message: `POST {mdm-url}/contacts` with the contact's names and email,
  authenticated by the `x-api-key` header, which the host fills from the secret
  `mdm-api-key`.
- Answer: 2xx with `{"id": "MDM-…"}` → forward to `next`, recording
  `{"mdmId": "MDM-…"}` so the step can be undone. 408/429/5xx, timeouts and
  connection failures → retry (after `Retry-After` when the MDM sends one).
  Any other answer → dead-letter `MdmRejected`; mdm is the first step, so there
  is nothing to compensate.
- Compensate (a later step failed): `DELETE {mdm-url}/contacts/{mdmId}`.
  2xx or 404 → complete; transient → retry; otherwise dead-letter
  `MdmCompensationFailed` for an operator.

Config: `mdm-url`. Secret: `mdm-api-key`.
"""

import json

from sagahost_partner import (
    Compensation,
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
    complete,
    dead_letter,
    export,
    forward,
    info,
    require_config,
    retry,
)

CREATE = "create"
"""`calls.state` of the create round; the delete round is `delete:<mdm id>`."""
DELETE_PREFIX = "delete:"


def handle(event: Event) -> Plan:
    match event:
        case Event_Message(inbound):
            return create(inbound)
        case Event_Responses(responses):
            if not responses.results:
                raise PartnerError("no response")
            result = responses.results[0]
            if responses.state.startswith(DELETE_PREFIX):
                return deleted(responses.state.removeprefix(DELETE_PREFIX), result)
            if responses.state == CREATE:
                return created(result)
            raise PartnerError(f"unknown state `{responses.state}`")
        case Event_Compensate(compensation):
            return delete(compensation)


def create(inbound: Inbound) -> Plan:
    """Asks the host to POST the new contact to the MDM."""
    base = require_config("mdm-url")
    context = inbound.context
    contact = context.target_entity if context else None
    if context is None or contact is None or contact.logical_name != "contact":
        if context is not None:
            what = f"{context.message_name} of {context.primary_entity_name}"
        else:
            what = "a body that is not a Dataverse context"
        info(f"dead-letter: message {inbound.message_id} is not a contact")
        return dead_letter("NotAContact", f"message {inbound.message_id} holds {what}, not a contact")

    dataverse_id = contact.text_attr("contactid")
    if dataverse_id is None:
        dataverse_id = context.primary_entity_id or ""
    body = {
        "dataverseId": dataverse_id,
        "firstName": contact.text_attr("firstname"),
        "lastName": contact.text_attr("lastname"),
        "email": contact.text_attr("emailaddress1"),
    }
    info(f"creating contact {dataverse_id} in MDM")
    request = (
        Request.post(f"{base.rstrip('/')}/contacts")
        .with_id(CREATE)
        .json(body)
        .secret_header("x-api-key", "mdm-api-key")
    )
    return call([request], CREATE)


def created(result: HttpResult) -> Plan:
    """Decides on the MDM's answer to the create."""
    match result.status:
        case Status.SUCCESS:
            body = result.response.json() if result.response else None
            mdm_id = body.get("id") if isinstance(body, dict) else None
            if not isinstance(mdm_id, str):
                info("dead-letter: MDM answered without an id")
                return dead_letter(
                    "MdmBadResponse",
                    f"MDM created the contact but sent no `id`: {result.describe()}",
                )
            info(f"forward: created MDM contact {mdm_id}")
            return forward("next", {"mdm-id": mdm_id}).recording({"mdmId": mdm_id})
        case Status.TRANSIENT:
            info(f"retry: MDM unavailable ({result.describe()})")
            return retry(f"MDM create: {result.describe()}", delay_ms=result.retry_after_ms)
        case Status.FATAL:
            info(f"dead-letter: MDM rejected the contact ({result.describe()})")
            return dead_letter("MdmRejected", f"MDM rejected the contact: {result.describe()}")


def recorded_mdm_id(compensation: Compensation) -> str | None:
    """The `mdmId` this step recorded when it created the contact, if readable."""
    try:
        data = json.loads(compensation.compensation_data or "")
    except ValueError:
        return None
    mdm_id = data.get("mdmId") if isinstance(data, dict) else None
    return mdm_id if isinstance(mdm_id, str) else None


def delete(compensation: Compensation) -> Plan:
    """Asks the host to DELETE the MDM contact this step created."""
    base = require_config("mdm-url")
    mdm_id = recorded_mdm_id(compensation)
    if mdm_id is None:
        info("dead-letter: no MDM id to compensate")
        data = compensation.compensation_data
        # Written as the Rust version's `{:?}` of the option writes it, so both
        # dead-letter the same description.
        shown = "None" if data is None else f"Some({json.dumps(data, ensure_ascii=False)})"
        return dead_letter(
            "MdmCompensationFailed",
            f"cannot undo the MDM step after {compensation.failed_partner} failed ({compensation.reason}): "
            f"compensation data {shown} has no `mdmId`",
        )
    info(f"deleting MDM contact {mdm_id}: {compensation.failed_partner} failed with {compensation.reason}")
    request = (
        Request.delete(f"{base.rstrip('/')}/contacts/{mdm_id}")
        .with_id("delete")
        .secret_header("x-api-key", "mdm-api-key")
    )
    return call([request], f"{DELETE_PREFIX}{mdm_id}")


def deleted(mdm_id: str, result: HttpResult) -> Plan:
    """Decides on the MDM's answer to the delete."""
    if result.status is Status.SUCCESS or result.code == 404:
        info(f"complete: MDM contact {mdm_id} removed")
        return complete()
    if result.status is Status.TRANSIENT:
        info(f"retry: MDM delete of {mdm_id} ({result.describe()})")
        return retry(f"MDM delete: {result.describe()}", delay_ms=result.retry_after_ms)
    info(f"dead-letter: MDM refused to delete {mdm_id}")
    return dead_letter("MdmCompensationFailed", f"MDM refused to delete contact {mdm_id}: {result.describe()}")


Handler = export(handle)
