import assert from 'node:assert/strict';
import { test } from 'node:test';

import { attr, inboundOf, property, target, textAttr } from '../src/context.js';
import { context, entity, inbound } from './support.js';

const contact = entity('contact', {
    firstname: { tag: 'text', val: 'Ana' },
    contactid: { tag: 'guid', val: '0c7f3a5e-6b8e-ef11-8ee9-000d3a4f5b21' },
    numberofchildren: { tag: 'integer', val: 2n },
    description: { tag: 'null' },
});

test('target is the entity the context points at, if any', () => {
    const account = entity('account', {});
    assert.equal(target(context([account, contact], 1)), contact);
    assert.equal(target(context([account, contact])), undefined);
    assert.equal(target(context([], 3)), undefined);
});

test('attr finds a typed value; textAttr only text and GUIDs', () => {
    assert.deepEqual(attr(contact, 'numberofchildren'), { tag: 'integer', val: 2n });
    assert.deepEqual(attr(contact, 'description'), { tag: 'null' });
    assert.equal(attr(contact, 'missing'), undefined);
    assert.equal(textAttr(contact, 'firstname'), 'Ana');
    assert.equal(textAttr(contact, 'contactid'), '0c7f3a5e-6b8e-ef11-8ee9-000d3a4f5b21');
    assert.equal(textAttr(contact, 'numberofchildren'), undefined);
    assert.equal(textAttr(contact, 'description'), undefined);
    assert.equal(textAttr(contact, 'missing'), undefined);
});

test('property finds an application property by exact name', () => {
    const message = inbound([['mdm-id', 'MDM-1'], ['mdm-id', 'MDM-2']]);
    assert.equal(property(message, 'mdm-id'), 'MDM-1');
    assert.equal(property(message, 'MDM-ID'), undefined);
});

test('inboundOf finds the message in every kind of event', () => {
    const message = inbound();
    assert.equal(inboundOf({ tag: 'message', val: message }), message);
    assert.equal(inboundOf({ tag: 'responses', val: { inbound: message, state: 's', results: [], round: 1 } }), message);
    assert.equal(
        inboundOf({ tag: 'compensate', val: { inbound: message, failedPartner: 'erp', reason: 'ErpRejected' } }),
        message,
    );
});
