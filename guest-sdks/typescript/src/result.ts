/**
 * Reading the answers to a component's requests: classify them, honour
 * `Retry-After`, describe them in one line, read headers and bodies.
 *
 * @module
 */

import { parseJson } from './json.js';
import type { HttpResponse, HttpResult, Responses } from './model.js';
import { asciiLowercase, collapseWhitespace, decodeLossy, decodeStrict, trimWhitespace, truncateChars } from './text.js';

/**
 * How to treat the outcome of a request.
 *
 * - `success`: a 2xx answer.
 * - `transient`: worth retrying: 408, 429, 5xx, a timeout, a connection
 *   failure or a body over the size cap.
 * - `fatal`: retrying will not help: any other status (mostly 4xx), a host that
 *   is not on the allow-list, or an invalid request.
 */
export type Status = 'success' | 'transient' | 'fatal';

/** The largest `Retry-After` in seconds that converts to ms exactly (`u64`). */
const MAX_U64 = 0xffff_ffff_ffff_ffffn;

/** Classifies an HTTP status code (see {@link Status}). */
export function classifyStatus(code: number): Status {
    if (code >= 200 && code <= 299) {
        return 'success';
    }
    if (code === 408 || code === 429 || (code >= 500 && code <= 599)) {
        return 'transient';
    }
    return 'fatal';
}

/** Success, transient or fatal (see {@link Status}). */
export function classify(result: HttpResult): Status {
    const { response } = result;
    if (response.tag === 'ok') {
        return classifyStatus(response.val.status);
    }
    switch (response.val.tag) {
        case 'blocked':
        case 'invalid':
            return 'fatal';
        case 'timeout':
        case 'connection':
        case 'too-large':
            return 'transient';
    }
}

/** The response, when the request got one. */
export function responseOf(result: HttpResult): HttpResponse | undefined {
    return result.response.tag === 'ok' ? result.response.val : undefined;
}

/** The status code, when the request got a response. */
export function statusCode(result: HttpResult): number | undefined {
    return responseOf(result)?.status;
}

/**
 * The `Retry-After` delay in milliseconds, when the response has one that is a
 * number of seconds (`Retry-After: 30`). HTTP-date values are ignored: the
 * host's backoff, which also reads the header, applies then. Delays beyond
 * `Number.MAX_SAFE_INTEGER` ms (285,000 years) are capped there.
 */
export function retryAfterMs(answer: HttpResult | HttpResponse): number | undefined {
    const response = 'status' in answer ? answer : responseOf(answer);
    const value = response && header(response, 'retry-after');
    if (value === undefined) {
        return undefined;
    }
    // Rust's `u64::from_str`: an optional `+`, then decimal digits only.
    const seconds = trimWhitespace(value);
    if (!/^\+?[0-9]+$/.test(seconds) || BigInt(seconds) > MAX_U64) {
        return undefined;
    }
    const ms = BigInt(seconds) * 1000n;
    return ms > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(ms);
}

/**
 * One line for logs and decisions: `HTTP 503: <body excerpt>`, `HTTP 204`,
 * `timeout`, `connection failed: …`.
 */
export function describe(result: HttpResult): string {
    const { response } = result;
    if (response.tag === 'ok') {
        const text = excerpt(response.val, 200);
        return text === '' ? `HTTP ${response.val.status}` : `HTTP ${response.val.status}: ${text}`;
    }
    const error = response.val;
    switch (error.tag) {
        case 'timeout':
            return 'timeout';
        case 'blocked':
            return `blocked: ${error.val} is not allowed`;
        case 'connection':
            return `connection failed: ${error.val}`;
        case 'too-large':
            return `response too large: ${error.val} bytes`;
        case 'invalid':
            return `invalid request: ${error.val}`;
    }
}

/** The first header named `name` (compared case-insensitively). */
export function header(response: HttpResponse, name: string): string | undefined {
    const wanted = asciiLowercase(name);
    return response.headers.find(([n]) => asciiLowercase(n) === wanted)?.[1];
}

/** The body as text, invalid UTF-8 replaced by U+FFFD. */
export function bodyText(response: HttpResponse): string {
    return decodeLossy(response.body);
}

/**
 * The body parsed as JSON, or `undefined` when it is not JSON (or not UTF-8).
 * Numbers beyond 2^53 lose precision, as `JSON.parse` rounds them.
 */
export function bodyJson(response: HttpResponse): unknown {
    return parseJson(decodeStrict(response.body));
}

/**
 * The body as text with whitespace runs collapsed to one space, cut to at most
 * `maxChars` characters with `…` appended when cut.
 */
export function excerpt(response: HttpResponse, maxChars: number): string {
    return truncateChars(collapseWhitespace(bodyText(response)), maxChars);
}

/** The result of the request named `id`. */
export function resultById(responses: Responses, id: string): HttpResult | undefined {
    return responses.results.find((r) => r.id === id);
}
