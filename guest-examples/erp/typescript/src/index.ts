/**
 * # erp: step 3, the last step of the contact saga (TypeScript)
 *
 * The TypeScript twin of `guest-examples/erp/src/lib.rs`: same requests, same
 * decisions, same fixtures (`guest-examples/erp/fixtures`).
 *
 * The contact now exists in the MDM (`mdm`) and carries its MDM id in
 * Dataverse (`dataverse-writeback`). This component creates the matching
 * customer in the ERP; when that works, the saga is complete.
 *
 * - **Message**: `POST {erp-url}/customers` with the MDM id (property
 *   `mdm-id`), the Dataverse id, names and email. The host puts the bearer
 *   token from the secret `erp-token` into `Authorization`.
 * - **Answer**: 2xx → complete. 408/429/5xx and network failures → retry
 *   (after `Retry-After` when the ERP sends one). Any other answer (say, a 400
 *   for an invalid email) → compensate with `ErpRejected`: the host sends a
 *   compensate event to `dataverse-writeback`, then to `mdm`, newest first,
 *   and the saga is rolled back.
 * - **Compensate**: erp is the last step, so no later step can fail; there is
 *   nothing to undo, so it completes.
 *
 * Config: `erp-url`. Secret: `erp-token`.
 *
 * @module
 */

import {
    call,
    classify,
    compensate,
    complete,
    deadLetter,
    definePartner,
    describe,
    excerpt,
    log,
    PartnerError,
    property,
    Request,
    requireConfig,
    responseOf,
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
            log.info('complete: nothing to undo in the ERP');
            return complete();
    }
}

export const handler = definePartner(handle);

/** Asks the host to POST the customer to the ERP. */
function create(inbound: Inbound): Plan {
    const base = requireConfig('erp-url');
    const mdmId = property(inbound, 'mdm-id');
    if (mdmId === undefined) {
        log.info('dead-letter: no mdm-id property');
        return deadLetter(
            'MissingMdmId',
            `message ${inbound.messageId} has no \`mdm-id\` property: did it come from the mdm step?`,
        );
    }
    const { context } = inbound;
    const contact = context && target(context);
    // Absent columns are sent as null, never left out.
    const text = (name: string) => (contact && textAttr(contact, name)) ?? null;
    const body = {
        mdmId,
        dataverseId: text('contactid') ?? context?.primaryEntityId ?? null,
        firstName: text('firstname'),
        lastName: text('lastname'),
        email: text('emailaddress1'),
    };
    log.info(`creating ERP customer for ${mdmId}`);
    const request = Request.post(`${base.replace(/\/+$/, '')}/customers`)
        .id(CREATE)
        .json(body)
        .bearerSecret('erp-token');
    return call([request], CREATE);
}

/** Decides on the ERP's answer. */
function created(result: HttpResult): Plan {
    switch (classify(result)) {
        case 'success':
            log.info('complete: ERP customer created');
            return complete();
        case 'transient':
            log.info(`retry: ERP unavailable (${describe(result)})`);
            return retry(`ERP create: ${describe(result)}`, retryAfterMs(result));
        case 'fatal': {
            log.info(`compensate: ERP rejected the customer (${describe(result)})`);
            const response = responseOf(result);
            const details = response ? `${response.status}: ${excerpt(response, 200)}` : describe(result);
            return compensate('ErpRejected', details);
        }
    }
}
