import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { HttpRequest } from '../src/model.js';
import { call, compensate, complete, deadLetter, forward, recording, retry } from '../src/plan.js';
import { Request } from '../src/request.js';

test('call takes builders and records, in order, with the state', () => {
    const raw: HttpRequest = { id: 'raw', method: 'GET', url: 'https://b.example', headers: [] };
    assert.deepEqual(call([Request.get('https://a.example').id('a'), raw], 'phase-1'), {
        tag: 'call',
        val: {
            requests: [{ id: 'a', method: 'GET', url: 'https://a.example', headers: [] }, raw],
            state: 'phase-1',
        },
    });
});

test('complete, compensate and deadLetter end the step with their decision', () => {
    assert.deepEqual(complete(), { tag: 'done', val: { decision: { tag: 'complete' } } });
    assert.deepEqual(compensate('ErpRejected', '400: bad email'), {
        tag: 'done',
        val: { decision: { tag: 'compensate', val: { reason: 'ErpRejected', details: '400: bad email' } } },
    });
    assert.deepEqual(compensate('Undo'), {
        tag: 'done',
        val: { decision: { tag: 'compensate', val: { reason: 'Undo', details: undefined } } },
    });
    assert.deepEqual(deadLetter('NotAContact', 'message m holds an account'), {
        tag: 'done',
        val: { decision: { tag: 'dead-letter', val: { reason: 'NotAContact', description: 'message m holds an account' } } },
    });
});

test('forward sends the message on unchanged, or with properties and a new body', () => {
    assert.deepEqual(forward('next'), {
        tag: 'done',
        val: { decision: { tag: 'forward', val: [{ route: 'next', body: undefined, contentType: undefined, properties: [] }] } },
    });
    const fromObject = forward('next', { properties: { 'mdm-id': 'MDM-1', b: '2' } });
    const fromPairs = forward('next', { properties: new Map([['mdm-id', 'MDM-1'], ['b', '2']]) });
    for (const plan of [fromObject, fromPairs]) {
        assert.ok(plan.tag === 'done' && plan.val.decision.tag === 'forward');
        assert.deepEqual(plan.val.decision.val[0]?.properties, [['mdm-id', 'MDM-1'], ['b', '2']]);
    }
    const rewritten = forward('audit', { body: '{"a":1}', contentType: 'application/json' });
    assert.ok(rewritten.tag === 'done' && rewritten.val.decision.tag === 'forward');
    assert.deepEqual(rewritten.val.decision.val[0]?.body, new TextEncoder().encode('{"a":1}'));
    assert.equal(rewritten.val.decision.val[0]?.contentType, 'application/json');
});

test('retry carries the reason and a whole u64 delay, or none for the backoff', () => {
    assert.deepEqual(retry('MDM create: timeout'), {
        tag: 'done',
        val: { decision: { tag: 'retry', val: { reason: 'MDM create: timeout', delayMs: undefined } } },
    });
    const later = retry('throttled', 30_000);
    assert.ok(later.tag === 'done' && later.val.decision.tag === 'retry');
    assert.equal(later.val.decision.val.delayMs, 30_000n);
    const max = retry('far', 0xffff_ffff_ffff_ffffn);
    assert.ok(max.tag === 'done' && max.val.decision.tag === 'retry');
    assert.equal(max.val.decision.val.delayMs, 0xffff_ffff_ffff_ffffn);
    for (const bad of [-1, 0.5, -1n, 0x1_0000_0000_0000_0000n, Number.POSITIVE_INFINITY]) {
        assert.throws(() => retry('bad', bad), /retry delay must be a whole number of ms/);
    }
});

test('recording stores compensation data on a finished step and leaves a call alone', () => {
    assert.deepEqual(recording(forward('next'), '{"mdmId":"MDM-1"}'), {
        tag: 'done',
        val: {
            decision: { tag: 'forward', val: [{ route: 'next', body: undefined, contentType: undefined, properties: [] }] },
            compensationData: '{"mdmId":"MDM-1"}',
        },
    });
    const asked = call([], 'create');
    assert.equal(recording(asked, 'ignored'), asked);
});
