"""Guest SDK for sagahost partner components written in Python.

A partner component implements the WIT world `sagahost:partner/partner` (see
`wit/` at the root of the repository). The host calls `handle(event)` and the
component answers with a plan: either "make these HTTP requests, then call me
again with the answers" (`call`) or "the step is over, here is what to do with
the message" (`complete`, `forward`, `retry`, `compensate`, `dead_letter`).
The component never does I/O itself and never sees a secret: it names secrets
in request headers and the host injects them.

    from sagahost_partner import *

    def handle(event: Event) -> Plan:
        match event:
            case Event_Message(inbound):
                url = require_config("crm-url")
                contact = inbound.context.target_entity if inbound.context else None
                name = (contact.text_attr("fullname") if contact else None) or ""
                request = Request.post(f"{url}/people").json({"name": name}).bearer_secret("crm-token")
                return call([request], "create")
            case Event_Responses(responses):
                result = responses.results[0]
                if result.status is Status.SUCCESS:
                    info("created in the CRM")
                    return forward("next")
                if result.status is Status.TRANSIENT:
                    return retry(result.describe(), delay_ms=result.retry_after_ms)
                return dead_letter("CrmRejected", result.describe())
            case Event_Compensate():
                return complete()

    Handler = export(handle)

What is where: the models and their helpers in `sagahost_partner.models`, the
plan constructors in `sagahost_partner.plans`, config, logs and `PartnerError`
in `sagahost_partner.host`, and `export` in `sagahost_partner.boundary`. This
package re-exports all of them.
"""

from .boundary import export
from .host import (
    Level,
    LocalHost,
    PartnerError,
    all_config,
    config_or,
    debug,
    error,
    get_config,
    info,
    local_host,
    log,
    require_config,
    trace,
    warn,
)
from .models import (
    AliasedValue,
    Attribute,
    Calls,
    Compensate,
    Compensation,
    Context,
    DeadLetter,
    Decision,
    Decision_Compensate,
    Decision_Complete,
    Decision_DeadLetter,
    Decision_Forward,
    Decision_Retry,
    Entity,
    EntityReference,
    Event,
    Event_Compensate,
    Event_Message,
    Event_Responses,
    ForwardMessage,
    Header,
    HeaderValue,
    HeaderValue_Literal,
    HeaderValue_Secret,
    HeaderValue_SecretTemplate,
    HttpError,
    HttpError_Blocked,
    HttpError_Connection,
    HttpError_Invalid,
    HttpError_Timeout,
    HttpError_TooLarge,
    HttpRequest,
    HttpResponse,
    HttpResult,
    Image,
    Inbound,
    Outcome,
    Plan,
    Plan_Call,
    Plan_Done,
    Request,
    Responses,
    Retry,
    Saga,
    SecretTemplate,
    Status,
    StepRecord,
    Value,
    Value_Aliased,
    Value_Boolean,
    Value_Datetime,
    Value_Decimal,
    Value_Double,
    Value_Entity,
    Value_EntityCollection,
    Value_Guid,
    Value_Integer,
    Value_Money,
    Value_Null,
    Value_OptionSet,
    Value_OptionSetCollection,
    Value_Other,
    Value_Reference,
    Value_Text,
)
from .plans import call, compensate, complete, dead_letter, forward, retry

__all__ = [
    # boundary
    "export",
    # host
    "Level",
    "LocalHost",
    "PartnerError",
    "all_config",
    "config_or",
    "debug",
    "error",
    "get_config",
    "info",
    "local_host",
    "log",
    "require_config",
    "trace",
    "warn",
    # plans
    "call",
    "compensate",
    "complete",
    "dead_letter",
    "forward",
    "retry",
    # models
    "AliasedValue",
    "Attribute",
    "Calls",
    "Compensate",
    "Compensation",
    "Context",
    "DeadLetter",
    "Decision",
    "Decision_Compensate",
    "Decision_Complete",
    "Decision_DeadLetter",
    "Decision_Forward",
    "Decision_Retry",
    "Entity",
    "EntityReference",
    "Event",
    "Event_Compensate",
    "Event_Message",
    "Event_Responses",
    "ForwardMessage",
    "Header",
    "HeaderValue",
    "HeaderValue_Literal",
    "HeaderValue_Secret",
    "HeaderValue_SecretTemplate",
    "HttpError",
    "HttpError_Blocked",
    "HttpError_Connection",
    "HttpError_Invalid",
    "HttpError_Timeout",
    "HttpError_TooLarge",
    "HttpRequest",
    "HttpResponse",
    "HttpResult",
    "Image",
    "Inbound",
    "Outcome",
    "Plan",
    "Plan_Call",
    "Plan_Done",
    "Request",
    "Responses",
    "Retry",
    "Saga",
    "SecretTemplate",
    "Status",
    "StepRecord",
    "Value",
    "Value_Aliased",
    "Value_Boolean",
    "Value_Datetime",
    "Value_Decimal",
    "Value_Double",
    "Value_Entity",
    "Value_EntityCollection",
    "Value_Guid",
    "Value_Integer",
    "Value_Money",
    "Value_Null",
    "Value_OptionSet",
    "Value_OptionSetCollection",
    "Value_Other",
    "Value_Reference",
    "Value_Text",
]
