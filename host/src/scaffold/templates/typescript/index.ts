/**
 * # {{name}}: a sagahost partner component
 *
 * - **Message**: `POST {api-url}/records` with the Dataverse row's table, id and name. The
 *   host puts the bearer token from the secret `api-token` into `Authorization`.
 * - **Answer**: 2xx → complete. 408/429/5xx and network failures → retry (after
 *   `Retry-After` when the API sends one). Any other answer → dead-letter with `Rejected`.
 * - **Compensate**: nothing to undo, so it completes.
 *
 * Config: `api-url`. Secret: `api-token`.
 *
 * @module
 */

import {
    call,
    classify,
    complete,
    deadLetter,
    definePartner,
    describe,
    log,
    PartnerError,
    Request,
    requireConfig,
    retry,
    retryAfterMs,
    target,
    textAttr,
    type Event,
    type HttpResult,
    type Inbound,
    type Plan,
} from '@sagahost/partner';

/** `calls.state` of the only round. */
const CREATE = 'create';

function handle(event: Event): Plan {
    switch (event.tag) {
        case 'message':
            return create(event.val);
        case 'responses': {
            const { results, state } = event.val;
            if (state !== CREATE) {
                throw new PartnerError(`unknown state \`${state}\``);
            }
            const result = results[0];
            if (result === undefined) {
                throw new PartnerError('no response');
            }
            return created(result);
        }
        case 'compensate':
            return complete();
    }
}

export const handler = definePartner(handle);

/** Asks the host to POST the row to the API. */
function create(inbound: Inbound): Plan {
    const base = requireConfig('api-url');
    const { context } = inbound;
    if (!context) {
        throw new PartnerError('the message has no Dataverse context');
    }
    const row = target(context);
    const name = (row && (textAttr(row, 'fullname') ?? textAttr(row, 'name'))) ?? null;
    const body = { table: context.primaryEntityName, id: context.primaryEntityId ?? null, name };
    log.info(`creating the record of ${context.primaryEntityName} ${context.primaryEntityId ?? '-'}`);
    const request = Request.post(`${base.replace(/\/+$/, '')}/records`)
        .id(CREATE)
        .json(body)
        .bearerSecret('api-token');
    return call([request], CREATE);
}

/** Decides on the API's answer. */
function created(result: HttpResult): Plan {
    switch (classify(result)) {
        case 'success':
            return complete();
        case 'transient':
            return retry(`create: ${describe(result)}`, retryAfterMs(result));
        case 'fatal':
            return deadLetter('Rejected', `create: ${describe(result)}`);
    }
}
