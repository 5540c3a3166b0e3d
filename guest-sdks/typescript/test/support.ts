/** Builders of the host's values for the unit tests. */

import type { Context, Entity, HttpResponse, HttpResult, Inbound, Value } from '../src/model.js';

const encoder = new TextEncoder();

/** A response with `status`, a text or byte body, and headers. */
export function response(status: number, body: string | Uint8Array = '', headers: Array<[string, string]> = []): HttpResponse {
    return { status, headers, body: typeof body === 'string' ? encoder.encode(body) : body };
}

/** A result holding `response`. */
export function answered(res: HttpResponse, id = 'r'): HttpResult {
    return { id, response: { tag: 'ok', val: res } };
}

/** An entity with these attributes. */
export function entity(logicalName: string, attributes: Record<string, Value>): Entity {
    return {
        logicalName,
        attributes: Object.entries(attributes).map(([name, value]) => ({ name, value })),
        formattedValues: [],
    };
}

/** A `Create` context over `entities`, targeting the entity at `target`. */
export function context(entities: Entity[], target?: number): Context {
    return {
        messageName: 'Create',
        primaryEntityName: 'contact',
        stage: 40,
        mode: 1,
        depth: 1,
        target,
        preImages: [],
        postImages: [],
        entities,
        messageSizeExceeded: false,
        json: '{}',
    };
}

/** A message with these properties and context. */
export function inbound(properties: Array<[string, string]> = [], ctx?: Context): Inbound {
    return {
        messageId: 'm-1',
        queue: 'in',
        properties,
        body: new Uint8Array(),
        context: ctx,
        saga: { id: 's-1', step: 0, attempt: 1, history: [] },
    };
}
