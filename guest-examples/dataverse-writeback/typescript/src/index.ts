/**
 * # dataverse-writeback: step 2 of the contact saga (TypeScript)
 *
 * The TypeScript twin of `guest-examples/dataverse-writeback/src/lib.rs`: same
 * requests, same decisions, same fixtures
 * (`guest-examples/dataverse-writeback/fixtures`).
 *
 * `mdm` registered the new contact and forwarded the message with its MDM id in
 * the `mdm-id` property. This component writes that id back onto the Dataverse
 * contact, so users see it in Dynamics 365, then forwards the message to `erp`.
 *
 * - **Message**: `PATCH {dataverse-url}/api/data/v9.2/contacts({contactid})`
 *   with `{"<mdm-id-column>": "MDM-…"}`. The host puts the bearer token from
 *   the secret `dataverse-token` into `Authorization`; `If-Match: *` makes sure
 *   the PATCH updates the row and never creates one.
 * - **Answer**: 2xx (Dataverse sends 204) → forward to `next`, recording
 *   `{"contactId": …}`. 408/429/5xx and network failures → retry (after
 *   `Retry-After`: Dataverse sends it when it throttles). Any other answer →
 *   compensate with `WritebackRejected`, which makes `mdm` delete its contact.
 * - **Compensate** (`erp` failed): PATCH the column back to `null`. 2xx or 404
 *   (the contact is gone) → complete; transient → retry; otherwise dead-letter
 *   `WritebackCompensationFailed`.
 *
 * Config: `dataverse-url`, `mdm-id-column` (default `new_mdmid`).
 * Secret: `dataverse-token`, an Entra ID access token the host keeps fresh (an
 * `oauth2` secret); the component only names it.
 *
 * @module
 */

import {
    call,
    classify,
    compensate,
    complete,
    configOr,
    deadLetter,
    definePartner,
    describe,
    forward,
    jsonString,
    log,
    parseJson,
    PartnerError,
    property,
    recording,
    Request,
    requireConfig,
    retry,
    retryAfterMs,
    statusCode,
    target,
    textAttr,
    type Compensation,
    type Event,
    type HttpResult,
    type Inbound,
    type Plan,
} from '@sagahost/partner';

/** `calls.state` of the write round; the undo round is `clear`. */
const WRITE = 'write';
const CLEAR = 'clear';

function handle(event: Event): Plan {
    switch (event.tag) {
        case 'message':
            return write(event.val);
        case 'responses': {
            const { inbound, results, state } = event.val;
            const result = results[0];
            if (result === undefined) {
                throw new PartnerError('no response');
            }
            switch (state) {
                case WRITE:
                    return written(inbound, result);
                case CLEAR:
                    return cleared(result);
                default:
                    throw new PartnerError(`unknown state \`${state}\``);
            }
        }
        case 'compensate':
            return clear(event.val);
    }
}

export const handler = definePartner(handle);

/** The contact's id: the Target's `contactid`, else the primary entity id. */
function contactId(inbound: Inbound): string | undefined {
    const { context } = inbound;
    if (context === undefined) {
        return undefined;
    }
    const contact = target(context);
    return (contact && textAttr(contact, 'contactid')) ?? context.primaryEntityId;
}

/** `PATCH …/contacts(<id>)` setting the MDM id column to `value`. */
function patch(id: string, value: string | null): Request {
    const base = requireConfig('dataverse-url');
    const column = configOr('mdm-id-column', 'new_mdmid');
    return Request.patch(`${base.replace(/\/+$/, '')}/api/data/v9.2/contacts(${id})`)
        .id('patch')
        .bearerSecret('dataverse-token')
        .header('If-Match', '*')
        .json({ [column]: value });
}

/** Asks the host to write the MDM id onto the contact. */
function write(inbound: Inbound): Plan {
    const mdmId = property(inbound, 'mdm-id');
    if (mdmId === undefined) {
        log.info('dead-letter: no mdm-id property');
        return deadLetter(
            'MissingMdmId',
            `message ${inbound.messageId} has no \`mdm-id\` property: did it come from the mdm step?`,
        );
    }
    const id = contactId(inbound);
    if (id === undefined) {
        log.info('dead-letter: no contact id');
        return deadLetter('MissingContactId', `message ${inbound.messageId} has no Dataverse contact id`);
    }
    log.info(`writing MDM id ${mdmId} to contact ${id}`);
    return call([patch(id, mdmId)], WRITE);
}

/** Decides on Dataverse's answer to the write. */
function written(inbound: Inbound, result: HttpResult): Plan {
    switch (classify(result)) {
        case 'success': {
            const id = contactId(inbound) ?? '';
            log.info(`forward: MDM id written to contact ${id}`);
            return recording(forward('next'), JSON.stringify({ contactId: id }));
        }
        case 'transient':
            log.info(`retry: Dataverse unavailable (${describe(result)})`);
            return retry(`Dataverse write: ${describe(result)}`, retryAfterMs(result));
        case 'fatal':
            log.info(`compensate: Dataverse rejected the write (${describe(result)})`);
            return compensate('WritebackRejected', describe(result));
    }
}

/** Asks the host to clear the MDM id column again. */
function clear(compensation: Compensation): Plan {
    const recorded = jsonString(parseJson(compensation.compensationData), 'contactId');
    const id = recorded ?? contactId(compensation.inbound);
    if (id === undefined) {
        log.info('dead-letter: no contact id to compensate');
        return deadLetter('WritebackCompensationFailed', 'no contact id in the compensation data or the message');
    }
    log.info(`clearing MDM id of contact ${id}: ${compensation.failedPartner} failed with ${compensation.reason}`);
    return call([patch(id, null)], CLEAR);
}

/** Decides on Dataverse's answer to the undo. */
function cleared(result: HttpResult): Plan {
    const status = classify(result);
    // A contact that is gone has no MDM id left to clear.
    if (status === 'success' || statusCode(result) === 404) {
        log.info('complete: MDM id cleared');
        return complete();
    }
    if (status === 'transient') {
        log.info(`retry: Dataverse unavailable (${describe(result)})`);
        return retry(`Dataverse clear: ${describe(result)}`, retryAfterMs(result));
    }
    log.info(`dead-letter: Dataverse refused the undo (${describe(result)})`);
    return deadLetter('WritebackCompensationFailed', `Dataverse refused to clear the MDM id: ${describe(result)}`);
}
