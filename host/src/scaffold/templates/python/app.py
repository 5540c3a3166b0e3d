"""{{name}}: a sagahost partner component.

- Message: `POST {api-url}/records` with the Dataverse row's table, id and name. The host
  puts the bearer token from the secret `api-token` into `Authorization`.
- Answer: 2xx → complete. 408/429/5xx and network failures → retry (after `Retry-After`
  when the API sends one). Any other answer → dead-letter with `Rejected`.
- Compensate: nothing to undo, so it completes.

Config: `api-url`. Secret: `api-token`.
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
            return complete()


def create(inbound: Inbound) -> Plan:
    """Asks the host to POST the row to the API."""
    base = require_config("api-url")
    context = inbound.context
    if context is None:
        raise PartnerError("the message has no Dataverse context")
    row = context.target_entity
    name = row.text_attr("fullname") if row else None
    if name is None and row:
        name = row.text_attr("name")
    body = {"table": context.primary_entity_name, "id": context.primary_entity_id, "name": name}
    info(f"creating the record of {context.primary_entity_name} {context.primary_entity_id or '-'}")
    request = Request.post(f"{base.rstrip('/')}/records").with_id(CREATE).json(body).bearer_secret("api-token")
    return call([request], CREATE)


def created(result: HttpResult) -> Plan:
    """Decides on the API's answer."""
    match result.status:
        case Status.SUCCESS:
            return complete()
        case Status.TRANSIENT:
            return retry(f"create: {result.describe()}", delay_ms=result.retry_after_ms)
        case Status.FATAL:
            return dead_letter("Rejected", f"create: {result.describe()}")


Handler = export(handle)
