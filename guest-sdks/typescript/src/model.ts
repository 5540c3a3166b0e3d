/**
 * The values a partner component receives and returns: the WIT interface
 * `sagahost:partner/types` (`wit/types.wit`) as TypeScript types.
 *
 * These are the exact shapes ComponentizeJS hands to `handle` and reads back
 * from it (WIT `option<T>` is an optional member, `list<u8>` a `Uint8Array`,
 * `s64`/`u64` a `bigint`, a variant `{ tag, val }`). The build checks them
 * against the bindings `jco guest-types` generates from `wit/`
 * (`test/bindings.conformance.ts`), so a WIT change that this file does not
 * follow fails the type check.
 *
 * The host calls `handle` with an {@link Event} and gets back a {@link Plan}. A
 * plan either asks the host to make HTTP requests ({@link PlanCall}), after
 * which `handle` is called again with the answers, or ends the step with a
 * {@link Decision} ({@link PlanDone}). Each call to `handle` runs in a fresh
 * instance, so nothing survives in memory between calls: carry what you need in
 * {@link Calls.state}.
 *
 * @module
 */

// -----------------------------------------------------------------------------
// The Dataverse context
// -----------------------------------------------------------------------------

/** A reference to a Dataverse row (`EntityReference`). */
export interface EntityReference {
    /** Table logical name, e.g. `contact`. */
    logicalName: string;
    /** Row id, a GUID in lowercase `8-4-4-4-12` form. */
    id: string;
    /** The primary name when Dataverse sent one. */
    name?: string;
}

/** An attribute value whose alias came from a FetchXML link-entity (`AliasedValue`). */
export interface AliasedValue {
    /** Table the value was read from. */
    entityLogicalName: string;
    /** Column the value was read from. */
    attributeLogicalName: string;
    /** The value itself, in the canonical JSON described on {@link Context.json}. */
    valueJson: string;
}

/**
 * A typed Dataverse attribute or parameter value.
 *
 * Nested entities are not inlined (WIT has no recursive types): they are
 * indexes into {@link Context.entities}.
 */
export type Value =
    /** The attribute is present with no value. */
    | { tag: 'null' }
    /** `string` and memo columns. */
    | { tag: 'text'; val: string }
    /** Two-option (`bool`) columns. */
    | { tag: 'boolean'; val: boolean }
    /** Whole numbers (`int`, `long`, `bigint`). */
    | { tag: 'integer'; val: bigint }
    /** Decimal numbers, as exact decimal text (e.g. `"10.01"`), never rounded. */
    | { tag: 'decimal'; val: string }
    /** Floating point numbers. */
    | { tag: 'double'; val: number }
    /** Currency (`Money`), as exact decimal text. */
    | { tag: 'money'; val: string }
    /** A date and time in UTC, ISO 8601 with a `Z` suffix. */
    | { tag: 'datetime'; val: string }
    /**
     * A GUID (only when the message format says so: XML and .NET binary do,
     * JSON does not, so a GUID in a JSON body arrives as `text`).
     */
    | { tag: 'guid'; val: string }
    /** A choice (`OptionSetValue`). */
    | { tag: 'option-set'; val: number }
    /** A multi-select choice (`OptionSetValueCollection`). */
    | { tag: 'option-set-collection'; val: Int32Array }
    /** A lookup (`EntityReference`). */
    | { tag: 'reference'; val: EntityReference }
    /** A nested entity: index into {@link Context.entities}. */
    | { tag: 'entity'; val: number }
    /** An `EntityCollection`: indexes into {@link Context.entities}. */
    | { tag: 'entity-collection'; val: Uint32Array }
    /** A value read through a link-entity alias. */
    | { tag: 'aliased'; val: AliasedValue }
    /** Any other type, as canonical JSON (see {@link Context.json}). */
    | { tag: 'other'; val: string };

/** One attribute of an entity: its logical name and typed value. */
export interface Attribute {
    /** Column logical name, e.g. `firstname`. */
    name: string;
    /** The typed value. */
    value: Value;
}

/** A Dataverse row (`Entity`) with its attributes. */
export interface Entity {
    /** Table logical name, e.g. `contact`. */
    logicalName: string;
    /** Row id, when the entity has one. */
    id?: string;
    /** Attributes, in the order Dataverse sent them. */
    attributes: Array<Attribute>;
    /** Display strings Dataverse computed (`FormattedValues`), by attribute name. */
    formattedValues: Array<[string, string]>;
}

/** A named entity image (`PreEntityImages` / `PostEntityImages`). */
export interface Image {
    /** The image alias registered on the step, e.g. `PreImage`. */
    name: string;
    /** Index into {@link Context.entities}. */
    entity: number;
}

/**
 * The decoded Dataverse `RemoteExecutionContext`.
 *
 * The typed fields cover what every partner uses. Everything else, including
 * `ParentContext`, `SharedVariables` and `OutputParameters`, is in {@link Context.json}.
 */
export interface Context {
    /** The SDK message, e.g. `Create`, `Update`, `Delete`. */
    messageName: string;
    /** Table logical name of the primary entity, e.g. `contact`. */
    primaryEntityName: string;
    /** Id of the primary row. */
    primaryEntityId?: string;
    /** Pipeline stage: 10 pre-validation, 20 pre-operation, 40 post-operation. */
    stage: number;
    /** 0 synchronous, 1 asynchronous. */
    mode: number;
    /** Plug-in depth. */
    depth: number;
    /** Dataverse `CorrelationId`; also the default saga id. */
    correlationId?: string;
    /** The user the operation runs as (`UserId`). */
    userId?: string;
    /** The user who started the operation (`InitiatingUserId`). */
    initiatingUserId?: string;
    /** Environment (organization) id. */
    organizationId?: string;
    /** Environment (organization) unique name. */
    organizationName?: string;
    /** Id of this operation (`OperationId`). */
    operationId?: string;
    /** When Dataverse created the operation, ISO 8601 UTC. */
    operationCreatedOn?: string;
    /** `InputParameters["Target"]` when it is an entity: index into {@link Context.entities}. */
    target?: number;
    /** `InputParameters["Target"]` when it is a reference (e.g. on `Delete`). */
    targetReference?: EntityReference;
    /** Pre-operation images. */
    preImages: Array<Image>;
    /** Post-operation images. */
    postImages: Array<Image>;
    /**
     * Every entity in the context: the target, the images, and nested entities
     * referenced by `entity` and `entity-collection` values.
     */
    entities: Array<Entity>;
    /**
     * True when Dataverse dropped `ParentContext`, `InputParameters` and the
     * images to fit the message under the size limit. Re-read the row through
     * the Web API when you need its data.
     */
    messageSizeExceeded: boolean;
    /**
     * The whole context as canonical JSON, losslessly.
     *
     * Members keep their Dataverse names (`MessageName`, `InputParameters`…).
     * Key/value bags become JSON objects. Typed values that JSON cannot express
     * become objects with a `$type` member, for example
     * `{"$type":"EntityReference","LogicalName":"account","Id":"…","Name":null}`,
     * `{"$type":"Money","Value":1500.50}` or
     * `{"$type":"DateTime","Value":"2017-09-26T00:04:07Z"}`. Numbers keep their
     * exact digits (so parse with care: `JSON.parse` rounds beyond 2^53).
     */
    json: string;
}

// -----------------------------------------------------------------------------
// The inbound message and the saga
// -----------------------------------------------------------------------------

/** One step a saga has completed, with the data it recorded for compensation. */
export interface StepRecord {
    /** Partner that handled the step. */
    partner: string;
    /** Content hash of the component version that handled it. */
    componentVersion: string;
    /** What the step recorded in {@link Outcome.compensationData}, if anything. */
    compensationData?: string;
}

/** The saga this message belongs to. It travels with the message. */
export interface Saga {
    /** Saga id: the Dataverse `CorrelationId` unless a step set another. */
    id: string;
    /** Zero-based index of this step in the saga. */
    step: number;
    /** Attempt number of this step, starting at 1; grows on each retry. */
    attempt: number;
    /** Steps completed so far, oldest first. */
    history: Array<StepRecord>;
}

/** The message being handled. */
export interface Inbound {
    /** Broker message id. */
    messageId: string;
    /** Queue it was received from. */
    queue: string;
    /** Body content type, e.g. `application/json`. */
    contentType?: string;
    /**
     * Application properties, as text (Service Bus properties, webhook
     * `x-ms-dynamics-*` headers, and those earlier steps added).
     */
    properties: Array<[string, string]>;
    /** The raw body bytes. */
    body: Uint8Array;
    /** The decoded Dataverse context, when the body is one. */
    context?: Context;
    /** Saga state. */
    saga: Saga;
}

// -----------------------------------------------------------------------------
// Outbound HTTP
// -----------------------------------------------------------------------------

/** Header text with `{}` replaced by a secret's value. */
export interface SecretTemplate {
    /** Text containing `{}` exactly once. */
    template: string;
    /** Name of the partner secret that replaces `{}`. */
    secret: string;
}

/**
 * A header value: literal text, or the name of a secret the host injects.
 *
 * The component never sees a secret's value: `{ tag: 'secret', val: 'erp-token' }`
 * sends the value of the partner's secret `erp-token`; `secret-template` lets it
 * sit inside text, e.g. `Bearer {}`.
 */
export type HeaderValue =
    /** Literal text. */
    | { tag: 'literal'; val: string }
    /** The value of the named partner secret. */
    | { tag: 'secret'; val: string }
    /** Text with `{}` replaced by the value of a partner secret. */
    | { tag: 'secret-template'; val: SecretTemplate };

/** One request header. */
export interface Header {
    /** Header name, e.g. `Authorization`. */
    name: string;
    /** Its value, literal or a secret. */
    value: HeaderValue;
}

/**
 * An HTTP request for the host to make.
 *
 * The host only reaches hosts on the partner's allow-list, adds a stable
 * `Idempotency-Key` (the same on every retry of this message) and W3C
 * `traceparent`, and applies the partner's timeout unless `timeoutMs` is
 * shorter. Build one with {@link "request".Request}.
 */
export interface HttpRequest {
    /** A name for this request, echoed in the matching {@link HttpResult.id}. */
    id: string;
    /** `GET`, `POST`, `PATCH`, `PUT`, `DELETE`… */
    method: string;
    /** Absolute URL, `https://` unless the partner allows plain HTTP for the host. */
    url: string;
    /** Request headers, in order. */
    headers: Array<Header>;
    /** Request body. */
    body?: Uint8Array;
    /** A timeout shorter than the partner's, in milliseconds. */
    timeoutMs?: number;
}

/** The answer to an {@link HttpRequest}. */
export interface HttpResponse {
    /** Status code. */
    status: number;
    /** Response headers, names in lowercase. */
    headers: Array<[string, string]>;
    /** Response body, cut at the partner's size cap. */
    body: Uint8Array;
}

/** Why a request got no HTTP answer. */
export type HttpError =
    /** No answer within the timeout. */
    | { tag: 'timeout' }
    /** The host is not on the partner's allow-list. */
    | { tag: 'blocked'; val: string }
    /** Connecting, TLS or the transfer failed. */
    | { tag: 'connection'; val: string }
    /** The response body was larger than the partner's cap (its size in bytes). */
    | { tag: 'too-large'; val: bigint }
    /** The request itself was invalid (bad URL, method, header or secret name). */
    | { tag: 'invalid'; val: string };

/** WIT `result<T, E>`: `ok` with a value, or `err` with an error. */
export type Result<T, E> = { tag: 'ok'; val: T } | { tag: 'err'; val: E };

/** The outcome of one request: a response, or why there was none. */
export interface HttpResult {
    /** The {@link HttpRequest.id} this answers. */
    id: string;
    /** The response, or why there was none. */
    response: Result<HttpResponse, HttpError>;
}

/** Requests to make before calling `handle` again. */
export interface Calls {
    /** The requests, made concurrently; answers come back in this order. */
    requests: Array<HttpRequest>;
    /** Opaque state handed back in {@link Responses.state}. */
    state: string;
}

// -----------------------------------------------------------------------------
// Routing
// -----------------------------------------------------------------------------

/** A message to send to a named route. Config maps route names to queues. */
export interface ForwardMessage {
    /** Route name, e.g. `next`. An unknown route dead-letters the input. */
    route: string;
    /** New body; absent forwards the inbound body unchanged. */
    body?: Uint8Array;
    /** Content type of `body`; defaults to the inbound content type. */
    contentType?: string;
    /** Application properties to add or replace. */
    properties: Array<[string, string]>;
}

/** Try this step again later. */
export interface Retry {
    /**
     * Delay before the next attempt. Absent uses the partner's backoff policy
     * (exponential with jitter, honouring `Retry-After`).
     */
    delayMs?: bigint;
    /** Why, for logs and the dead-letter record once attempts run out. */
    reason: string;
}

/** Undo the saga: every earlier step gets a `compensate` event, newest first. */
export interface Compensate {
    /** Short machine-readable reason, e.g. `ErpRejected`. */
    reason: string;
    /** Details passed to each compensating step. */
    details?: string;
}

/** Give up on this message: it goes to the dead-letter queue. */
export interface DeadLetter {
    /** Short machine-readable reason, e.g. `InvalidContact`. */
    reason: string;
    /** Human-readable description for the operator. */
    description: string;
}

/** What the host does with the message once the step is over. */
export type Decision =
    /** The saga ends here successfully. */
    | { tag: 'complete' }
    /** Send messages on to the next steps. */
    | { tag: 'forward'; val: Array<ForwardMessage> }
    /** Try this step again later. */
    | { tag: 'retry'; val: Retry }
    /** Undo the earlier steps. */
    | { tag: 'compensate'; val: Compensate }
    /** Give up on the message. */
    | { tag: 'dead-letter'; val: DeadLetter };

/** The end of a step. */
export interface Outcome {
    /** What happens to the message. */
    decision: Decision;
    /**
     * Data this step needs to undo itself later (e.g. the id it created). The
     * host keeps it in the saga history and hands it back in a `compensate`
     * event ({@link Compensation.compensationData}).
     */
    compensationData?: string;
}

/** Make these requests, then call `handle` with a `responses` event. */
export interface PlanCall {
    tag: 'call';
    val: Calls;
}

/** The step is over. */
export interface PlanDone {
    tag: 'done';
    val: Outcome;
}

/** What the component wants next. */
export type Plan = PlanCall | PlanDone;

// -----------------------------------------------------------------------------
// Events
// -----------------------------------------------------------------------------

/** Answers to the requests of a {@link PlanCall}. */
export interface Responses {
    /** The message being handled. */
    inbound: Inbound;
    /** {@link Calls.state} as the component returned it. */
    state: string;
    /** One result per request, in request order. */
    results: Array<HttpResult>;
    /** Which round of calls this answers, starting at 1. */
    round: number;
}

/** A request to undo this partner's step of a saga that failed later. */
export interface Compensation {
    /** The compensation message. */
    inbound: Inbound;
    /** What this partner recorded when its step succeeded. */
    compensationData?: string;
    /** The partner whose failure started compensation. */
    failedPartner: string;
    /** Its reason. */
    reason: string;
    /** Its details, if any. */
    details?: string;
}

/** Why `handle` is called. */
export type Event =
    /** A new message for this step. */
    | { tag: 'message'; val: Inbound }
    /** The answers to requests this component asked for. */
    | { tag: 'responses'; val: Responses }
    /** Undo this step. */
    | { tag: 'compensate'; val: Compensation };
