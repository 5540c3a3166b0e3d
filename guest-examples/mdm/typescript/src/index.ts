/**
 * # mdm: step 1 of the contact saga (TypeScript)
 *
 * The TypeScript twin of `guest-examples/mdm/src/lib.rs`: same requests, same
 * decisions, same fixtures (`guest-examples/mdm/fixtures`).
 *
 * When a contact is created in Dynamics 365, Dataverse posts the
 * `RemoteExecutionContext` to the `mdm` queue. This component registers the
 * contact in the master-data-management system and forwards the message to the
 * next step (`dataverse-writeback`) with the MDM id in the `mdm-id` property.
 *
 * - **Message**: `POST {mdm-url}/contacts` with the contact's names and email,
 *   authenticated by the `x-api-key` header, which the host fills from the
 *   secret `mdm-api-key`.
 * - **Answer**: 2xx with `{"id": "MDM-…"}` → forward to `next`, recording
 *   `{"mdmId": "MDM-…"}` so the step can be undone. 408/429/5xx, timeouts and
 *   connection failures → retry (after `Retry-After` when the MDM sends one).
 *   Any other answer → dead-letter `MdmRejected`; mdm is the first step, so
 *   there is nothing to compensate.
 * - **Compensate** (a later step failed): `DELETE {mdm-url}/contacts/{mdmId}`.
 *   2xx or 404 → complete; transient → retry; otherwise dead-letter
 *   `MdmCompensationFailed` for an operator.
 *
 * Config: `mdm-url`. Secret: `mdm-api-key`.
 *
 * @module
 */

import {
    bodyJson,
    call,
    classify,
    complete,
    deadLetter,
    definePartner,
    describe,
    forward,
    jsonString,
    log,
    parseJson,
    PartnerError,
    recording,
    Request,
    requireConfig,
    responseOf,
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

/** `calls.state` of the create round; the delete round is `delete:<mdm id>`. */
const CREATE = 'create';
const DELETE_PREFIX = 'delete:';

function handle(event: Event): Plan {
    switch (event.tag) {
        case 'message':
            return create(event.val);
        case 'responses': {
            const { results, state } = event.val;
            const result = results[0];
            if (result === undefined) {
                throw new PartnerError('no response');
            }
            if (state.startsWith(DELETE_PREFIX)) {
                return deleted(state.slice(DELETE_PREFIX.length), result);
            }
            if (state === CREATE) {
                return created(result);
            }
            throw new PartnerError(`unknown state \`${state}\``);
        }
        case 'compensate':
            return remove(event.val);
    }
}

export const handler = definePartner(handle);

/** Asks the host to POST the new contact to the MDM. */
function create(inbound: Inbound): Plan {
    const base = requireConfig('mdm-url');
    const { context } = inbound;
    const contact = context && target(context);
    if (context === undefined || contact === undefined || contact.logicalName !== 'contact') {
        const what = context
            ? `${context.messageName} of ${context.primaryEntityName}`
            : 'a body that is not a Dataverse context';
        log.info(`dead-letter: message ${inbound.messageId} is not a contact`);
        return deadLetter('NotAContact', `message ${inbound.messageId} holds ${what}, not a contact`);
    }

    const dataverseId = textAttr(contact, 'contactid') ?? context.primaryEntityId ?? '';
    // Absent columns are sent as null, never left out.
    const body = {
        dataverseId,
        firstName: textAttr(contact, 'firstname') ?? null,
        lastName: textAttr(contact, 'lastname') ?? null,
        email: textAttr(contact, 'emailaddress1') ?? null,
    };
    log.info(`creating contact ${dataverseId} in MDM`);
    const request = Request.post(`${withoutTrailingSlashes(base)}/contacts`)
        .id(CREATE)
        .json(body)
        .secretHeader('x-api-key', 'mdm-api-key');
    return call([request], CREATE);
}

/** Decides on the MDM's answer to the create. */
function created(result: HttpResult): Plan {
    switch (classify(result)) {
        case 'success': {
            const response = responseOf(result);
            const mdmId = response && jsonString(bodyJson(response), 'id');
            if (mdmId === undefined) {
                log.info('dead-letter: MDM answered without an id');
                return deadLetter('MdmBadResponse', `MDM created the contact but sent no \`id\`: ${describe(result)}`);
            }
            log.info(`forward: created MDM contact ${mdmId}`);
            return recording(forward('next', { properties: { 'mdm-id': mdmId } }), JSON.stringify({ mdmId }));
        }
        case 'transient':
            log.info(`retry: MDM unavailable (${describe(result)})`);
            return retry(`MDM create: ${describe(result)}`, retryAfterMs(result));
        case 'fatal':
            log.info(`dead-letter: MDM rejected the contact (${describe(result)})`);
            return deadLetter('MdmRejected', `MDM rejected the contact: ${describe(result)}`);
    }
}

/** Asks the host to DELETE the MDM contact this step created. */
function remove(compensation: Compensation): Plan {
    const base = requireConfig('mdm-url');
    const { compensationData, failedPartner, reason } = compensation;
    const mdmId = jsonString(parseJson(compensationData), 'mdmId');
    if (mdmId === undefined) {
        log.info('dead-letter: no MDM id to compensate');
        return deadLetter(
            'MdmCompensationFailed',
            `cannot undo the MDM step after ${failedPartner} failed (${reason}): compensation data ${rustDebug(compensationData)} has no \`mdmId\``,
        );
    }
    log.info(`deleting MDM contact ${mdmId}: ${failedPartner} failed with ${reason}`);
    const request = Request.delete(`${withoutTrailingSlashes(base)}/contacts/${mdmId}`)
        .id('delete')
        .secretHeader('x-api-key', 'mdm-api-key');
    return call([request], `${DELETE_PREFIX}${mdmId}`);
}

/** Decides on the MDM's answer to the delete. */
function deleted(mdmId: string, result: HttpResult): Plan {
    const status = classify(result);
    // A contact that is already gone is as good as deleted.
    if (status === 'success' || statusCode(result) === 404) {
        log.info(`complete: MDM contact ${mdmId} removed`);
        return complete();
    }
    if (status === 'transient') {
        log.info(`retry: MDM delete of ${mdmId} (${describe(result)})`);
        return retry(`MDM delete: ${describe(result)}`, retryAfterMs(result));
    }
    log.info(`dead-letter: MDM refused to delete ${mdmId}`);
    return deadLetter('MdmCompensationFailed', `MDM refused to delete contact ${mdmId}: ${describe(result)}`);
}

function withoutTrailingSlashes(url: string): string {
    return url.replace(/\/+$/, '');
}

/**
 * An optional string as Rust's `{:?}` prints it (`None`, `Some("…")`), so the
 * description reads as the Rust component's does.
 */
function rustDebug(text: string | undefined): string {
    if (text === undefined) {
        return 'None';
    }
    const escaped = text.replace(/[\\"\u0000-\u001f\u007f-\u009f]/g, (char) => {
        switch (char) {
            case '\\':
            case '"':
                return `\\${char}`;
            case '\0':
                return '\\0';
            case '\t':
                return '\\t';
            case '\r':
                return '\\r';
            case '\n':
                return '\\n';
            default:
                return `\\u{${char.charCodeAt(0).toString(16)}}`;
        }
    });
    return `Some("${escaped}")`;
}
