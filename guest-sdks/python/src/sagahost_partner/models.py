"""Typed models of everything a partner component receives and returns.

This module owns the Python side of `wit/types.wit`: one dataclass per WIT
record and one per variant case, with the field names and the class names that
componentize-py generates (`value::text` is `Value_Text`, `plan::call` is
`Plan_Call`), so that code and documentation written against the generated
bindings read the same. `sagahost_partner.boundary` converts between these
models and the generated classes by those names, and the SDK's tests check that
the two stay in step with `wit/`.

One shape differs on purpose: WIT's `result<http-response, http-error>` in
`http-result` becomes two optional fields, `HttpResult.response` and
`HttpResult.error`, exactly one of which is set.

The models also carry the helpers that belong to a value: the request builder
methods on `HttpRequest`, the classification of answers on `HttpResult` and
`HttpResponse`, the context accessors on `Context`, `Entity` and `Inbound`, and
`recording` on plans. The models import nothing from the component runtime, so
they work under plain CPython (tests, IDEs) as well as inside a component.
"""

from __future__ import annotations

import enum
import json as _json
import re
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple, Union

# ---------------------------------------------------------------------------
# The Dataverse context
# ---------------------------------------------------------------------------


@dataclass(kw_only=True)
class EntityReference:
    """A reference to a Dataverse row (`EntityReference`)."""

    logical_name: str
    """Table logical name, e.g. `contact`."""
    id: str
    """Row id, a GUID in lowercase `8-4-4-4-12` form."""
    name: Optional[str] = None
    """The primary name when Dataverse sent one."""


@dataclass(kw_only=True)
class AliasedValue:
    """An attribute value whose alias came from a FetchXML link-entity (`AliasedValue`)."""

    entity_logical_name: str
    """Table the value was read from."""
    attribute_logical_name: str
    """Column the value was read from."""
    value_json: str
    """The value itself, in the canonical JSON described on `Context.json`."""


@dataclass
class Value_Null:
    """The attribute is present with no value."""


@dataclass
class Value_Text:
    """`string` and memo columns."""

    value: str


@dataclass
class Value_Boolean:
    """Two-option (`bool`) columns."""

    value: bool


@dataclass
class Value_Integer:
    """Whole numbers (`int`, `long`, `bigint`)."""

    value: int


@dataclass
class Value_Decimal:
    """Decimal numbers, as exact decimal text (e.g. `"10.01"`), never rounded.

    `decimal.Decimal(value)` reads it without loss.
    """

    value: str


@dataclass
class Value_Double:
    """Floating point numbers."""

    value: float


@dataclass
class Value_Money:
    """Currency (`Money`), as exact decimal text."""

    value: str


@dataclass
class Value_Datetime:
    """A date and time in UTC, ISO 8601 with a `Z` suffix."""

    value: str


@dataclass
class Value_Guid:
    """A GUID.

    Only when the message format says so: XML and .NET binary do, JSON does
    not, so a GUID in a JSON body arrives as `Value_Text`.
    """

    value: str


@dataclass
class Value_OptionSet:
    """A choice (`OptionSetValue`)."""

    value: int


@dataclass
class Value_OptionSetCollection:
    """A multi-select choice (`OptionSetValueCollection`)."""

    value: List[int]


@dataclass
class Value_Reference:
    """A lookup (`EntityReference`)."""

    value: EntityReference


@dataclass
class Value_Entity:
    """A nested entity: index into `Context.entities`."""

    value: int


@dataclass
class Value_EntityCollection:
    """An `EntityCollection`: indexes into `Context.entities`."""

    value: List[int]


@dataclass
class Value_Aliased:
    """A value read through a link-entity alias."""

    value: AliasedValue


@dataclass
class Value_Other:
    """Any other type, as canonical JSON (see `Context.json`)."""

    value: str


Value = Union[
    Value_Null,
    Value_Text,
    Value_Boolean,
    Value_Integer,
    Value_Decimal,
    Value_Double,
    Value_Money,
    Value_Datetime,
    Value_Guid,
    Value_OptionSet,
    Value_OptionSetCollection,
    Value_Reference,
    Value_Entity,
    Value_EntityCollection,
    Value_Aliased,
    Value_Other,
]
"""A typed Dataverse attribute or parameter value.

Nested entities are not inlined (WIT has no recursive types): they are indexes
into `Context.entities`. Match on the case classes:
`match entity.attr("birthdate"): case Value_Datetime(iso): ...`.
"""


@dataclass(kw_only=True)
class Attribute:
    """One attribute of an entity: its logical name and typed value."""

    name: str
    """Column logical name, e.g. `firstname`."""
    value: Value
    """Its typed value."""


@dataclass(kw_only=True)
class Entity:
    """A Dataverse row (`Entity`) with its attributes."""

    logical_name: str
    """Table logical name, e.g. `contact`."""
    id: Optional[str] = None
    """Row id, when the entity has one."""
    attributes: List[Attribute] = field(default_factory=list)
    """Attributes, in the order Dataverse sent them."""
    formatted_values: List[Tuple[str, str]] = field(default_factory=list)
    """Display strings Dataverse computed (`FormattedValues`), by attribute name."""

    def attr(self, name: str) -> Optional[Value]:
        """The value of attribute `name`, or `None` when the entity has no such attribute."""
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute.value
        return None

    def text_attr(self, name: str) -> Optional[str]:
        """The value of attribute `name` when it is text (a string column, or a GUID)."""
        value = self.attr(name)
        if isinstance(value, (Value_Text, Value_Guid)):
            return value.value
        return None


@dataclass(kw_only=True)
class Image:
    """A named entity image (`PreEntityImages` / `PostEntityImages`)."""

    name: str
    """The image alias registered on the step, e.g. `PreImage`."""
    entity: int
    """Index into `Context.entities`."""


@dataclass(kw_only=True)
class Context:
    """The decoded Dataverse `RemoteExecutionContext`.

    The typed fields cover what every partner uses. Everything else, including
    `ParentContext`, `SharedVariables` and `OutputParameters`, is in `json`.
    """

    message_name: str
    """The SDK message, e.g. `Create`, `Update`, `Delete`."""
    primary_entity_name: str
    """Table logical name of the primary entity, e.g. `contact`."""
    primary_entity_id: Optional[str] = None
    """Id of the primary row."""
    stage: int
    """Pipeline stage: 10 pre-validation, 20 pre-operation, 40 post-operation."""
    mode: int
    """0 synchronous, 1 asynchronous."""
    depth: int
    """Plug-in depth."""
    correlation_id: Optional[str] = None
    """Dataverse `CorrelationId`; also the default saga id."""
    user_id: Optional[str] = None
    """The user the operation runs as (`UserId`)."""
    initiating_user_id: Optional[str] = None
    """The user who started the operation (`InitiatingUserId`)."""
    organization_id: Optional[str] = None
    """Environment (organization) id."""
    organization_name: Optional[str] = None
    """Environment (organization) unique name."""
    operation_id: Optional[str] = None
    """Id of this operation (`OperationId`)."""
    operation_created_on: Optional[str] = None
    """When Dataverse created the operation, ISO 8601 UTC."""
    target: Optional[int] = None
    """`InputParameters["Target"]` when it is an entity: index into `entities`
    (`target_entity` resolves it)."""
    target_reference: Optional[EntityReference] = None
    """`InputParameters["Target"]` when it is a reference (e.g. on `Delete`)."""
    pre_images: List[Image] = field(default_factory=list)
    """Pre-operation images."""
    post_images: List[Image] = field(default_factory=list)
    """Post-operation images."""
    entities: List[Entity] = field(default_factory=list)
    """Every entity in the context: the target, the images, and nested entities
    referenced by `Value_Entity` and `Value_EntityCollection`."""
    message_size_exceeded: bool = False
    """True when Dataverse dropped `ParentContext`, `InputParameters` and the
    images to fit the message under the size limit. Re-read the row through the
    Web API when you need its data."""
    json: str = "{}"
    """The whole context as canonical JSON, losslessly.

    Members keep their Dataverse names (`MessageName`, `InputParameters`…).
    Key/value bags become JSON objects. Typed values that JSON cannot express
    become objects with a `$type` member, for example
    `{"$type":"EntityReference","LogicalName":"account","Id":"…","Name":null}`,
    `{"$type":"Money","Value":1500.50}` or
    `{"$type":"DateTime","Value":"2017-09-26T00:04:07Z"}`. Numbers keep their
    exact digits (parse with `json.loads(text, parse_float=decimal.Decimal)` to
    keep them)."""

    @property
    def target_entity(self) -> Optional[Entity]:
        """The `Target` entity (e.g. the created contact), when the target is an entity."""
        if self.target is None or not 0 <= self.target < len(self.entities):
            return None
        return self.entities[self.target]


# ---------------------------------------------------------------------------
# The inbound message and the saga
# ---------------------------------------------------------------------------


@dataclass(kw_only=True)
class StepRecord:
    """One step a saga has completed, with the data it recorded for compensation."""

    partner: str
    """Partner that handled the step."""
    component_version: str
    """Content hash of the component version that handled it."""
    compensation_data: Optional[str] = None
    """What the step recorded with `Plan_Done.recording`, if anything."""


@dataclass(kw_only=True)
class Saga:
    """The saga this message belongs to. It travels with the message."""

    id: str
    """Saga id: the Dataverse `CorrelationId` unless a step set another."""
    step: int
    """Zero-based index of this step in the saga."""
    attempt: int
    """Attempt number of this step, starting at 1; grows on each retry."""
    history: List[StepRecord] = field(default_factory=list)
    """Steps completed so far, oldest first."""


@dataclass(kw_only=True)
class Inbound:
    """The message being handled."""

    message_id: str
    """Broker message id."""
    queue: str
    """Queue it was received from."""
    content_type: Optional[str] = None
    """Body content type, e.g. `application/json`."""
    properties: List[Tuple[str, str]] = field(default_factory=list)
    """Application properties, as text (Service Bus properties, webhook
    `x-ms-dynamics-*` headers, and those earlier steps added)."""
    body: bytes = b""
    """The raw body bytes."""
    context: Optional[Context] = None
    """The decoded Dataverse context, when the body is one."""
    saga: Saga
    """Saga state."""

    # Defined last: inside a class body, a method named `property` hides the
    # builtin decorator for every definition after it.
    def property(self, name: str) -> Optional[str]:
        """The application property `name` of the message, or `None`.

        Earlier steps add properties with `forward(route, {name: value})`.
        """
        for key, value in self.properties:
            if key == name:
                return value
        return None


# ---------------------------------------------------------------------------
# Outbound HTTP
# ---------------------------------------------------------------------------


@dataclass(kw_only=True)
class SecretTemplate:
    """Header text with `{}` replaced by a secret's value."""

    template: str
    """Text containing `{}` exactly once."""
    secret: str
    """Name of the partner secret that replaces `{}`."""


@dataclass
class HeaderValue_Literal:
    """A literal header value."""

    value: str


@dataclass
class HeaderValue_Secret:
    """The value of the partner secret of this name, injected by the host."""

    value: str


@dataclass
class HeaderValue_SecretTemplate:
    """Text with a partner secret's value inside, injected by the host."""

    value: SecretTemplate


HeaderValue = Union[HeaderValue_Literal, HeaderValue_Secret, HeaderValue_SecretTemplate]
"""A header value: literal text, or the name of a secret the host injects.

The component never sees a secret's value. `HeaderValue_Secret("erp-token")`
sends the value of the partner's secret `erp-token`; `HeaderValue_SecretTemplate`
lets it sit inside text, e.g. `template = "Bearer {}"`.
"""


@dataclass(kw_only=True)
class Header:
    """One request header."""

    name: str
    """Header name, e.g. `Content-Type`."""
    value: HeaderValue
    """Literal text or a secret reference."""


def _json_bytes(value: Any) -> bytes:
    # Compact and UTF-8, as serde_json's `to_string` writes it in the Rust SDK.
    return _json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(kw_only=True)
class HttpRequest:
    """An HTTP request for the host to make.

    The host only reaches hosts on the partner's allow-list, adds a stable
    `Idempotency-Key` (the same on every retry of this message) and W3C
    `traceparent`, and applies the partner's timeout unless `timeout_ms` is
    shorter.

    Build one with the class methods and chain the builder methods, each of
    which changes the request and returns it:
    `HttpRequest.post(url).with_id("create").json(body).bearer_secret("erp-token")`.
    """

    id: str
    """A name for this request, echoed in the matching `HttpResult.id`."""
    method: str
    """`GET`, `POST`, `PATCH`, `PUT`, `DELETE`…"""
    url: str
    """Absolute URL, `https://` unless the partner allows plain HTTP for the host."""
    headers: List[Header] = field(default_factory=list)
    """Request headers, in order."""
    body: Optional[bytes] = None
    """Request body, if any."""
    timeout_ms: Optional[int] = None
    """A timeout shorter than the partner's, in milliseconds."""

    @classmethod
    def new(cls, method: str, url: str) -> HttpRequest:
        """A request with this method and absolute URL, no headers and no body.

        Its `id` is the method in lowercase until `with_id` sets one.
        """
        return cls(id=method.lower(), method=method, url=url)

    @classmethod
    def get(cls, url: str) -> HttpRequest:
        """A `GET` request."""
        return cls.new("GET", url)

    @classmethod
    def post(cls, url: str) -> HttpRequest:
        """A `POST` request."""
        return cls.new("POST", url)

    @classmethod
    def put(cls, url: str) -> HttpRequest:
        """A `PUT` request."""
        return cls.new("PUT", url)

    @classmethod
    def patch(cls, url: str) -> HttpRequest:
        """A `PATCH` request."""
        return cls.new("PATCH", url)

    @classmethod
    def delete(cls, url: str) -> HttpRequest:
        """A `DELETE` request."""
        return cls.new("DELETE", url)

    def with_id(self, id: str) -> HttpRequest:
        """Names the request; the host echoes the name in `HttpResult.id`."""
        self.id = id
        return self

    def header(self, name: str, value: str) -> HttpRequest:
        """Adds a header with a literal value."""
        return self.header_value(name, HeaderValue_Literal(value))

    def secret_header(self, name: str, secret: str) -> HttpRequest:
        """Adds a header whose value is the partner secret `secret`, injected by the host."""
        return self.header_value(name, HeaderValue_Secret(secret))

    def bearer_secret(self, secret: str) -> HttpRequest:
        """Adds `Authorization: Bearer <value of secret>`, injected by the host."""
        template = SecretTemplate(template="Bearer {}", secret=secret)
        return self.header_value("Authorization", HeaderValue_SecretTemplate(template))

    def header_value(self, name: str, value: HeaderValue) -> HttpRequest:
        """Adds a header with any `HeaderValue`."""
        self.headers.append(Header(name=name, value=value))
        return self

    def with_body(self, body: Union[bytes, str]) -> HttpRequest:
        """Sets the body to raw bytes (text is encoded as UTF-8)."""
        self.body = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        return self

    def json(self, value: Any) -> HttpRequest:
        """Sets the body to `value` as compact JSON, and `Content-Type: application/json`
        unless a content type is already set.

        `value` is anything `json.dumps` accepts; `None` fields become `null`.
        """
        self.body = _json_bytes(value)
        if not any(h.name.lower() == "content-type" for h in self.headers):
            self.header("Content-Type", "application/json")
        return self

    def with_timeout(self, timeout_ms: int) -> HttpRequest:
        """Caps the request's timeout, in milliseconds (the partner's configured
        timeout still applies when it is shorter)."""
        self.timeout_ms = timeout_ms
        return self


Request = HttpRequest
"""The request builder: `Request.post(url).json(body).bearer_secret("token")`."""


_U64_MAX = (1 << 64) - 1
# What Rust's `u64::from_str` accepts, so Python and Rust components read
# `Retry-After` alike: an optional `+` and ASCII digits only.
_SECONDS = re.compile(r"\+?[0-9]+")


@dataclass(kw_only=True)
class HttpResponse:
    """The answer to an `HttpRequest`."""

    status: int
    """Status code."""
    headers: List[Tuple[str, str]] = field(default_factory=list)
    """Response headers, names in lowercase."""
    body: bytes = b""
    """Response body, cut at the partner's size cap."""

    def header(self, name: str) -> Optional[str]:
        """The first header named `name` (case-insensitive), or `None`."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def json(self) -> Any:
        """The body parsed as JSON, or `None` when it is not JSON."""
        try:
            return _json.loads(self.body)
        except ValueError:
            return None

    @property
    def text(self) -> str:
        """The body as text, invalid UTF-8 replaced by U+FFFD."""
        return self.body.decode("utf-8", errors="replace")

    def excerpt(self, max_chars: int = 200) -> str:
        """The body as text with whitespace runs collapsed to one space, cut to at
        most `max_chars` characters with `…` appended when cut."""
        out = " ".join(self.text.split())
        if len(out) > max_chars:
            return out[:max_chars] + "…"
        return out

    @property
    def retry_after_ms(self) -> Optional[int]:
        """The `Retry-After` delay in milliseconds, when the header is a number of
        seconds (`Retry-After: 30`).

        HTTP-date values give `None`: the host's backoff, which also reads the
        header, applies then.
        """
        value = self.header("retry-after")
        if value is None:
            return None
        seconds = value.strip()
        if not _SECONDS.fullmatch(seconds):
            return None
        parsed = int(seconds)
        if parsed > _U64_MAX:
            return None
        return min(parsed * 1000, _U64_MAX)


@dataclass
class HttpError_Timeout:
    """No answer within the timeout."""


@dataclass
class HttpError_Blocked:
    """The host (named in `value`) is not on the partner's allow-list."""

    value: str


@dataclass
class HttpError_Connection:
    """Connecting, TLS or the transfer failed (why, in `value`)."""

    value: str


@dataclass
class HttpError_TooLarge:
    """The response body was larger than the partner's cap (its size, in `value`)."""

    value: int


@dataclass
class HttpError_Invalid:
    """The request itself was invalid: bad URL, method, header or secret name (why, in `value`)."""

    value: str


HttpError = Union[HttpError_Timeout, HttpError_Blocked, HttpError_Connection, HttpError_TooLarge, HttpError_Invalid]
"""Why a request got no HTTP answer."""


class Status(enum.Enum):
    """How to treat the outcome of a request."""

    SUCCESS = "success"
    """A 2xx answer."""
    TRANSIENT = "transient"
    """Worth retrying: 408, 429, 5xx, a timeout, a connection failure or a body
    over the size cap."""
    FATAL = "fatal"
    """Retrying will not help: any other status (mostly 4xx), a host that is
    not on the allow-list, or an invalid request."""

    @classmethod
    def of_code(cls, code: int) -> Status:
        """Classifies an HTTP status code."""
        if 200 <= code <= 299:
            return cls.SUCCESS
        if code in (408, 429) or 500 <= code <= 599:
            return cls.TRANSIENT
        return cls.FATAL


@dataclass(kw_only=True)
class HttpResult:
    """The outcome of one request: a response, or why there was none.

    WIT's `result<http-response, http-error>`: exactly one of `response` and
    `error` is set.
    """

    id: str
    """The `HttpRequest.id` this answers."""
    response: Optional[HttpResponse] = None
    """The response, when the request got one (any status, 2xx or not)."""
    error: Optional[HttpError] = None
    """Why the request got no response, when it did not."""

    def __post_init__(self) -> None:
        if (self.response is None) == (self.error is None):
            raise ValueError(f"HttpResult `{self.id}` needs exactly one of `response` and `error`")

    @property
    def code(self) -> Optional[int]:
        """The status code, when the request got a response."""
        return self.response.status if self.response is not None else None

    @property
    def status(self) -> Status:
        """Success, transient or fatal (see `Status`)."""
        if self.response is not None:
            return Status.of_code(self.response.status)
        if isinstance(self.error, (HttpError_Blocked, HttpError_Invalid)):
            return Status.FATAL
        return Status.TRANSIENT

    @property
    def retry_after_ms(self) -> Optional[int]:
        """The `Retry-After` delay of the response, if any (see `HttpResponse.retry_after_ms`)."""
        return self.response.retry_after_ms if self.response is not None else None

    def describe(self) -> str:
        """One line for logs and decisions: `HTTP 503: <body excerpt>`, `timeout`,
        `connection failed: …`."""
        if self.response is not None:
            excerpt = self.response.excerpt(200)
            return f"HTTP {self.response.status}: {excerpt}" if excerpt else f"HTTP {self.response.status}"
        error = self.error
        if isinstance(error, HttpError_Timeout):
            return "timeout"
        if isinstance(error, HttpError_Blocked):
            return f"blocked: {error.value} is not allowed"
        if isinstance(error, HttpError_Connection):
            return f"connection failed: {error.value}"
        if isinstance(error, HttpError_TooLarge):
            return f"response too large: {error.value} bytes"
        return f"invalid request: {error.value}"


@dataclass(kw_only=True)
class Calls:
    """Requests to make before calling `handle` again."""

    requests: List[HttpRequest] = field(default_factory=list)
    """The requests, answered in this order in `Responses.results`."""
    state: str = ""
    """Opaque state handed back in `Responses.state`."""


# ---------------------------------------------------------------------------
# Routing
# ---------------------------------------------------------------------------


@dataclass(kw_only=True)
class ForwardMessage:
    """A message to send to a named route. Config maps route names to queues."""

    route: str
    """Route name, e.g. `next`. An unknown route dead-letters the input."""
    body: Optional[bytes] = None
    """New body; `None` forwards the inbound body unchanged."""
    content_type: Optional[str] = None
    """Content type of `body`; defaults to the inbound content type."""
    properties: List[Tuple[str, str]] = field(default_factory=list)
    """Application properties to add or replace."""


@dataclass(kw_only=True)
class Retry:
    """Try this step again later."""

    delay_ms: Optional[int] = None
    """Delay before the next attempt. `None` uses the partner's backoff policy
    (exponential with jitter, honouring `Retry-After`)."""
    reason: str
    """Why, for logs and the dead-letter record once attempts run out."""


@dataclass(kw_only=True)
class Compensate:
    """Undo the saga: every earlier step gets a compensate event, newest first."""

    reason: str
    """Short machine-readable reason, e.g. `ErpRejected`."""
    details: Optional[str] = None
    """Details passed to each compensating step."""


@dataclass(kw_only=True)
class DeadLetter:
    """Give up on this message: it goes to the dead-letter queue."""

    reason: str
    """Short machine-readable reason, e.g. `InvalidContact`."""
    description: str
    """Human-readable description for the operator."""


@dataclass
class Decision_Complete:
    """The saga ends here successfully."""


@dataclass
class Decision_Forward:
    """Send messages on to the next steps."""

    value: List[ForwardMessage]


@dataclass
class Decision_Retry:
    """Try this step again later."""

    value: Retry


@dataclass
class Decision_Compensate:
    """Undo the earlier steps."""

    value: Compensate


@dataclass
class Decision_DeadLetter:
    """Give up on the message."""

    value: DeadLetter


Decision = Union[Decision_Complete, Decision_Forward, Decision_Retry, Decision_Compensate, Decision_DeadLetter]
"""What the host does with the message once the step is over."""


@dataclass(kw_only=True)
class Outcome:
    """The end of a step."""

    decision: Decision
    """What happens to the message."""
    compensation_data: Optional[str] = None
    """Data this step needs to undo itself later (e.g. the id it created). The
    host keeps it in the saga history and hands it back in
    `Compensation.compensation_data`."""


@dataclass
class Plan_Call:
    """Make these requests, then call `handle` with `Event_Responses`."""

    value: Calls

    def recording(self, data: Any) -> Plan_Call:
        """Refused: only a plan that ends the step records compensation data.

        Record it on the `Plan_Done` that follows the answers.
        """
        raise TypeError(
            "recording() applies to a plan that ends the step (complete, forward, retry, "
            "compensate, dead_letter), not to call(): record the data once the answers are in"
        )


@dataclass
class Plan_Done:
    """The step is over."""

    value: Outcome

    def recording(self, data: Any) -> Plan_Done:
        """Records `data` as this step's compensation data and returns the plan.

        The host keeps it in the saga history and hands it back in
        `Compensation.compensation_data` if a later step fails. Text is kept as
        is; any other value is stored as compact JSON
        (`forward("next").recording({"mdmId": mdm_id})`).
        """
        self.value.compensation_data = data if isinstance(data, str) else _json_bytes(data).decode("utf-8")
        return self


Plan = Union[Plan_Call, Plan_Done]
"""What the component wants next: requests to make, or the end of the step."""


# ---------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------


@dataclass(kw_only=True)
class Responses:
    """Answers to the requests of a `Plan_Call`."""

    inbound: Inbound
    """The message being handled."""
    state: str
    """`Calls.state` as the component returned it."""
    results: List[HttpResult] = field(default_factory=list)
    """One result per request, in request order."""
    round: int = 1
    """Which round of calls this answers, starting at 1."""

    def result(self, id: str) -> Optional[HttpResult]:
        """The result of the request named `id`, or `None`."""
        for result in self.results:
            if result.id == id:
                return result
        return None


@dataclass(kw_only=True)
class Compensation:
    """A request to undo this partner's step of a saga that failed later."""

    inbound: Inbound
    """The compensation message."""
    compensation_data: Optional[str] = None
    """What this partner recorded when its step succeeded."""
    failed_partner: str
    """The partner whose failure started compensation."""
    reason: str
    """Its reason."""
    details: Optional[str] = None
    """Its details, if any."""


@dataclass
class Event_Message:
    """A new message for this step."""

    value: Inbound

    @property
    def inbound(self) -> Inbound:
        """The message this event is about."""
        return self.value


@dataclass
class Event_Responses:
    """The answers to requests this component asked for."""

    value: Responses

    @property
    def inbound(self) -> Inbound:
        """The message this event is about."""
        return self.value.inbound


@dataclass
class Event_Compensate:
    """Undo this step."""

    value: Compensation

    @property
    def inbound(self) -> Inbound:
        """The message this event is about."""
        return self.value.inbound


Event = Union[Event_Message, Event_Responses, Event_Compensate]
"""Why `handle` is called. Every case has `.inbound`."""
