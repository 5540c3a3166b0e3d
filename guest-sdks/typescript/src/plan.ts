/**
 * Building the {@link Plan} `handle` returns: make requests, or end the step
 * with a decision.
 *
 * @module
 */

import type { Decision, HttpRequest, Plan } from './model.js';
import { Request } from './request.js';
import { utf8 } from './text.js';

/** The largest delay the host takes (WIT `u64`). */
const MAX_U64 = 0xffff_ffff_ffff_ffffn;

/**
 * Application properties: an object (`{ 'mdm-id': id }`) or name/value pairs,
 * kept in order.
 */
export type Properties = Readonly<Record<string, string>> | Iterable<readonly [string, string]>;

/** What {@link forward} may change on the forwarded message. */
export interface ForwardOptions {
    /** Application properties to add or replace, e.g. `{ 'mdm-id': id }`. */
    properties?: Properties;
    /** A new body (text as UTF-8); absent forwards the inbound body unchanged. */
    body?: Uint8Array | string;
    /** Content type of `body`; defaults to the inbound content type. */
    contentType?: string;
}

/**
 * Asks the host to make `requests`, then call `handle` again with a
 * `responses` event carrying `state` back unchanged.
 *
 * Each call to `handle` runs in a fresh instance, so `state` is the only
 * memory between rounds: use it to say which phase the answers belong to
 * (`"create"`, `"delete:MDM-42"`…).
 */
export function call(requests: Iterable<Request | HttpRequest>, state: string): Plan {
    return {
        tag: 'call',
        val: {
            requests: Array.from(requests, (r) => (r instanceof Request ? r.toHttpRequest() : r)),
            state,
        },
    };
}

function done(decision: Decision): Plan {
    return { tag: 'done', val: { decision } };
}

/** Ends the saga successfully. */
export function complete(): Plan {
    return done({ tag: 'complete' });
}

/**
 * Sends the inbound message to the route `route` (config maps routes to
 * queues), unchanged unless `options` adds properties or replaces the body:
 * `forward('next', { properties: { 'mdm-id': id } })`.
 */
export function forward(route: string, options: ForwardOptions = {}): Plan {
    const { properties = [], body, contentType } = options;
    return done({
        tag: 'forward',
        val: [
            {
                route,
                body: typeof body === 'string' ? utf8(body) : body,
                contentType,
                properties: propertyPairs(properties),
            },
        ],
    });
}

/**
 * Tries the step again after `delayMs`, or after the partner's backoff when it
 * is absent. Pass {@link "result".retryAfterMs} to honour `Retry-After`.
 *
 * @throws RangeError unless `delayMs` is a whole number from 0 to 2^64 - 1.
 */
export function retry(reason: string, delayMs?: number | bigint): Plan {
    return done({ tag: 'retry', val: { reason, delayMs: delayMs === undefined ? undefined : u64(delayMs) } });
}

/** Undoes the saga: every earlier step gets a `compensate` event, newest first. */
export function compensate(reason: string, details?: string): Plan {
    return done({ tag: 'compensate', val: { reason, details } });
}

/**
 * Gives up: the message goes to the dead-letter queue with a short
 * machine-readable `reason` and a `description` for the operator.
 */
export function deadLetter(reason: string, description: string): Plan {
    return done({ tag: 'dead-letter', val: { reason, description } });
}

/**
 * `plan` with `data` recorded as this step's compensation data: the host keeps
 * it in the saga history and hands it back in `Compensation.compensationData`
 * if a later step fails. A `call` plan ends no step, so it comes back unchanged.
 */
export function recording(plan: Plan, data: string): Plan {
    return plan.tag === 'done' ? { tag: 'done', val: { ...plan.val, compensationData: data } } : plan;
}

function propertyPairs(properties: Properties): Array<[string, string]> {
    const pairs = isIterable(properties) ? Array.from(properties) : Object.entries(properties);
    return pairs.map(([name, value]) => [name, value]);
}

function isIterable(value: Properties): value is Iterable<readonly [string, string]> {
    return typeof (value as Partial<Iterable<unknown>>)[Symbol.iterator] === 'function';
}

function u64(ms: number | bigint): bigint {
    const whole = typeof ms === 'bigint' || Number.isInteger(ms);
    if (!whole || ms < 0 || BigInt(ms) > MAX_U64) {
        throw new RangeError(`retry delay must be a whole number of ms from 0 to ${MAX_U64}, not ${ms}`);
    }
    return BigInt(ms);
}
