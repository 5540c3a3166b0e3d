"""dataverse-writeback: step 2 of the contact saga (Python version of `../src/lib.rs`).

`mdm` registered the new contact and forwarded the message with its MDM id in
the `mdm-id` property. This component writes that id back onto the Dataverse
contact, so users see it in Dynamics 365, then forwards the message to `erp`.

- Message: `PATCH {dataverse-url}/api/data/v9.2/contacts({contactid})` with
  `{"<mdm-id-column>": "MDM-…"}`. The host puts the bearer token from the
  secret `dataverse-token` into `Authorization`; `If-Match: *` makes sure the
  PATCH updates the row and never creates one.
- Answer: 2xx (Dataverse sends 204) → forward to `next`, recording
  `{"contactId": …}`. 408/429/5xx and network failures → retry (after
  `Retry-After`: Dataverse sends it when it throttles). Any other answer →
  compensate with `WritebackRejected`, which makes `mdm` delete its contact.
- Compensate (`erp` failed): PATCH the column back to `null`. 2xx or 404 (the
  contact is gone) → complete; transient → retry; otherwise dead-letter
  `WritebackCompensationFailed`.

Config: `dataverse-url`, `mdm-id-column` (default `new_mdmid`).
Secret: `dataverse-token`, an Entra ID access token: configure it as an
`oauth2` secret and the host keeps it fresh; the component only names it.
"""

import json

from sagahost_partner import (
    Compensation,
    Event,
    Event_Compensate,
    Event_Message,
    Event_Responses,
    HttpRequest,
    HttpResult,
    Inbound,
    PartnerError,
    Plan,
    Request,
    Status,
    call,
    compensate,
    complete,
    config_or,
    dead_letter,
    export,
    forward,
    info,
    require_config,
    retry,
)

WRITE = "write"
"""`calls.state` of the write round."""
CLEAR = "clear"
"""`calls.state` of the undo round."""


def handle(event: Event) -> Plan:
    match event:
        case Event_Message(inbound):
            return write(inbound)
        case Event_Responses(responses):
            if not responses.results:
                raise PartnerError("no response")
            result = responses.results[0]
            if responses.state == WRITE:
                return written(responses.inbound, result)
            if responses.state == CLEAR:
                return cleared(result)
            raise PartnerError(f"unknown state `{responses.state}`")
        case Event_Compensate(compensation):
            return clear(compensation)


def contact_id(inbound: Inbound) -> str | None:
    """The contact's id: the Target's `contactid`, else the primary entity id."""
    context = inbound.context
    if context is None:
        return None
    contact = context.target_entity
    found = contact.text_attr("contactid") if contact else None
    return found if found is not None else context.primary_entity_id


def patch(contact: str, value: str | None) -> HttpRequest:
    """`PATCH …/contacts(<id>)` setting the MDM id column to `value`."""
    base = require_config("dataverse-url")
    column = config_or("mdm-id-column", "new_mdmid")
    url = f"{base.rstrip('/')}/api/data/v9.2/contacts({contact})"
    return (
        Request.patch(url)
        .with_id("patch")
        .bearer_secret("dataverse-token")
        .header("If-Match", "*")
        .json({column: value})
    )


def write(inbound: Inbound) -> Plan:
    """Asks the host to write the MDM id onto the contact."""
    mdm_id = inbound.property("mdm-id")
    if mdm_id is None:
        info("dead-letter: no mdm-id property")
        return dead_letter(
            "MissingMdmId",
            f"message {inbound.message_id} has no `mdm-id` property: did it come from the mdm step?",
        )
    contact = contact_id(inbound)
    if contact is None:
        info("dead-letter: no contact id")
        return dead_letter("MissingContactId", f"message {inbound.message_id} has no Dataverse contact id")
    info(f"writing MDM id {mdm_id} to contact {contact}")
    return call([patch(contact, mdm_id)], WRITE)


def written(inbound: Inbound, result: HttpResult) -> Plan:
    """Decides on Dataverse's answer to the write."""
    match result.status:
        case Status.SUCCESS:
            contact = contact_id(inbound) or ""
            info(f"forward: MDM id written to contact {contact}")
            return forward("next").recording({"contactId": contact})
        case Status.TRANSIENT:
            info(f"retry: Dataverse unavailable ({result.describe()})")
            return retry(f"Dataverse write: {result.describe()}", delay_ms=result.retry_after_ms)
        case Status.FATAL:
            info(f"compensate: Dataverse rejected the write ({result.describe()})")
            return compensate("WritebackRejected", result.describe())


def recorded_contact_id(compensation: Compensation) -> str | None:
    """The `contactId` this step recorded when it wrote the column, if readable."""
    try:
        data = json.loads(compensation.compensation_data or "")
    except ValueError:
        return None
    recorded = data.get("contactId") if isinstance(data, dict) else None
    return recorded if isinstance(recorded, str) else None


def clear(compensation: Compensation) -> Plan:
    """Asks the host to clear the MDM id column again."""
    contact = recorded_contact_id(compensation)
    if contact is None:
        contact = contact_id(compensation.inbound)
    if contact is None:
        info("dead-letter: no contact id to compensate")
        return dead_letter("WritebackCompensationFailed", "no contact id in the compensation data or the message")
    info(f"clearing MDM id of contact {contact}: {compensation.failed_partner} failed with {compensation.reason}")
    return call([patch(contact, None)], CLEAR)


def cleared(result: HttpResult) -> Plan:
    """Decides on Dataverse's answer to the undo."""
    if result.status is Status.SUCCESS or result.code == 404:
        info("complete: MDM id cleared")
        return complete()
    if result.status is Status.TRANSIENT:
        info(f"retry: Dataverse unavailable ({result.describe()})")
        return retry(f"Dataverse clear: {result.describe()}", delay_ms=result.retry_after_ms)
    info(f"dead-letter: Dataverse refused the undo ({result.describe()})")
    return dead_letter(
        "WritebackCompensationFailed", f"Dataverse refused to clear the MDM id: {result.describe()}"
    )


Handler = export(handle)
