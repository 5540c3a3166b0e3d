"""Plan constructors: what `handle` returns.

This module owns the short ways to say what happens next: `call` asks the host
for HTTP requests and a second `handle` with the answers; `complete`,
`forward`, `retry`, `compensate` and `dead_letter` end the step. Chain
`.recording(data)` on a plan that ends the step to store compensation data.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional, Tuple, Union

from .models import (
    Calls,
    Compensate,
    DeadLetter,
    Decision,
    Decision_Compensate,
    Decision_Complete,
    Decision_DeadLetter,
    Decision_Forward,
    Decision_Retry,
    ForwardMessage,
    HttpRequest,
    Outcome,
    Plan_Call,
    Plan_Done,
    Retry,
)

Properties = Union[Mapping[str, str], Iterable[Tuple[str, str]]]
"""Application properties: a mapping, or (name, value) pairs."""


def call(requests: Iterable[HttpRequest], state: str) -> Plan_Call:
    """Asks the host to make `requests`, then call `handle` again with
    `Event_Responses` carrying `state` back unchanged.

    Each call to `handle` runs in a fresh instance, so `state` is the only
    memory between rounds: use it to say which phase the answers belong to
    (`"create"`, `"delete:MDM-42"`…).
    """
    return Plan_Call(Calls(requests=list(requests), state=state))


def _done(decision: Decision) -> Plan_Done:
    return Plan_Done(Outcome(decision=decision))


def complete() -> Plan_Done:
    """Ends the saga successfully."""
    return _done(Decision_Complete())


def forward(
    route: str,
    properties: Optional[Properties] = None,
    *,
    body: Optional[Union[bytes, str]] = None,
    content_type: Optional[str] = None,
) -> Plan_Done:
    """Sends the message to the route `route` (config maps routes to queues).

    `properties` adds or replaces application properties, e.g.
    `forward("next", {"mdm-id": mdm_id})`. The inbound body goes on unchanged
    unless `body` replaces it (text is encoded as UTF-8), with `content_type`
    (default: the inbound one).
    """
    pairs = properties.items() if isinstance(properties, Mapping) else (properties or ())
    if isinstance(body, str):
        body = body.encode("utf-8")
    message = ForwardMessage(
        route=route,
        body=body,
        content_type=content_type,
        properties=[(str(name), str(value)) for name, value in pairs],
    )
    return _done(Decision_Forward([message]))


def retry(reason: str, *, delay_ms: Optional[int] = None) -> Plan_Done:
    """Tries the step again after `delay_ms`, or after the partner's backoff when
    `None`. Pass `result.retry_after_ms` to honour `Retry-After`."""
    return _done(Decision_Retry(Retry(delay_ms=delay_ms, reason=reason)))


def compensate(reason: str, details: Optional[str] = None) -> Plan_Done:
    """Undoes the saga: every earlier step gets `Event_Compensate`, newest first."""
    return _done(Decision_Compensate(Compensate(reason=reason, details=details)))


def dead_letter(reason: str, description: str) -> Plan_Done:
    """Gives up: the message goes to the dead-letter queue with a short
    machine-readable `reason` and a `description` for the operator."""
    return _done(Decision_DeadLetter(DeadLetter(reason=reason, description=description)))
