/**
 * Building the HTTP requests a component asks the host to make.
 *
 * @module
 */

import type { HeaderValue, HttpRequest } from './model.js';
import { asciiLowercase, utf8 } from './text.js';

/** The largest `timeoutMs` (WIT `u32`). */
const MAX_U32 = 0xffff_ffff;

/**
 * A request builder: `Request.post(url).json(body).bearerSecret('erp-token')`.
 *
 * Pass builders straight to {@link "plan".call}; {@link Request.toHttpRequest}
 * gives the WIT record they stand for.
 */
export class Request {
    readonly #request: HttpRequest;

    /**
     * A request with this method and absolute URL, no headers and no body. Its
     * id is the method in lowercase until {@link Request.id} sets one.
     */
    constructor(method: string, url: string) {
        this.#request = { id: asciiLowercase(method), method, url, headers: [] };
    }

    /** A `GET` request. */
    static get(url: string): Request {
        return new Request('GET', url);
    }

    /** A `POST` request. */
    static post(url: string): Request {
        return new Request('POST', url);
    }

    /** A `PUT` request. */
    static put(url: string): Request {
        return new Request('PUT', url);
    }

    /** A `PATCH` request. */
    static patch(url: string): Request {
        return new Request('PATCH', url);
    }

    /** A `DELETE` request. */
    static delete(url: string): Request {
        return new Request('DELETE', url);
    }

    /** Names the request; the host echoes the name in `HttpResult.id`. */
    id(id: string): this {
        this.#request.id = id;
        return this;
    }

    /** Adds a header with a literal value. */
    header(name: string, value: string): this {
        return this.headerValue(name, { tag: 'literal', val: value });
    }

    /** Adds a header whose value is the partner secret `secret`, injected by the host. */
    secretHeader(name: string, secret: string): this {
        return this.headerValue(name, { tag: 'secret', val: secret });
    }

    /** Adds `Authorization: Bearer <value of secret>`, injected by the host. */
    bearerSecret(secret: string): this {
        return this.headerValue('Authorization', {
            tag: 'secret-template',
            val: { template: 'Bearer {}', secret },
        });
    }

    /** Adds a header with any {@link HeaderValue}. */
    headerValue(name: string, value: HeaderValue): this {
        this.#request.headers.push({ name, value });
        return this;
    }

    /** Sets the body: bytes as they are, text as UTF-8. */
    body(body: Uint8Array | string): this {
        this.#request.body = typeof body === 'string' ? utf8(body) : body;
        return this;
    }

    /**
     * Sets the body to `value` as JSON, and `Content-Type: application/json`
     * unless a content type is already set.
     *
     * @throws TypeError when `value` has no JSON form (`undefined`, a function)
     *   or cannot be serialised (a `bigint`, a cycle).
     */
    json(value: unknown): this {
        const text: string | undefined = JSON.stringify(value);
        if (text === undefined) {
            throw new TypeError(`request ${this.#request.id}: a ${typeof value} has no JSON form`);
        }
        this.body(text);
        const hasContentType = this.#request.headers.some((h) => asciiLowercase(h.name) === 'content-type');
        return hasContentType ? this : this.header('Content-Type', 'application/json');
    }

    /**
     * Caps the request's timeout, in milliseconds (the partner's configured
     * timeout still applies when it is shorter).
     *
     * @throws RangeError unless `ms` is a whole number from 0 to 2^32 - 1.
     */
    timeoutMs(ms: number): this {
        if (!Number.isInteger(ms) || ms < 0 || ms > MAX_U32) {
            throw new RangeError(`request ${this.#request.id}: timeoutMs must be a whole number of ms from 0 to ${MAX_U32}, not ${ms}`);
        }
        this.#request.timeoutMs = ms;
        return this;
    }

    /** The WIT record this builder stands for (a copy: later calls do not change it). */
    toHttpRequest(): HttpRequest {
        return { ...this.#request, headers: [...this.#request.headers] };
    }
}
