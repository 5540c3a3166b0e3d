import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';

import { PartnerError } from '../src/errors.js';
import { definePartner } from '../src/handler.js';
import type { Event } from '../src/model.js';
import { complete } from '../src/plan.js';
import { lines } from './fake-host/log.js';
import { inbound } from './support.js';

const event: Event = { tag: 'message', val: inbound() };

beforeEach(() => {
    lines.length = 0;
});

/** What ComponentizeJS does with an exception leaving the export: read its own `payload`. */
function componentizeJsPayload(thrown: unknown): unknown {
    assert.ok(typeof thrown === 'object' && thrown !== null && Object.hasOwn(thrown, 'payload'));
    return (thrown as { payload: unknown }).payload;
}

test('plans returned or resolved go to the host', async () => {
    assert.deepEqual(await definePartner(() => complete()).handle(event), complete());
    assert.deepEqual(await definePartner(async () => complete()).handle(event), complete());
});

test('the handler sees the event it is given', async () => {
    let seen: Event | undefined;
    await definePartner((e) => {
        seen = e;
        return complete();
    }).handle(event);
    assert.equal(seen, event);
});

test('a PartnerError leaves as itself, so its payload becomes err(message)', async () => {
    const refusal = new PartnerError('config key `x` is not set');
    const thrown = await definePartner(() => {
        throw refusal;
    })
        .handle(event)
        .then(
            () => assert.fail('resolved'),
            (e: unknown) => e,
        );
    assert.equal(thrown, refusal);
    assert.equal(componentizeJsPayload(thrown), 'config key `x` is not set');
    assert.deepEqual(lines, []);
});

test('any other exception is logged with its stack and leaves as a trap carrying its message', async () => {
    const thrown = await definePartner(async () => {
        await Promise.resolve();
        throw new TypeError('contact is undefined');
    })
        .handle(event)
        .then(
            () => assert.fail('resolved'),
            (e: unknown) => e,
        );
    // Reading the payload throws the text instead, which is what makes the component trap.
    assert.throws(() => componentizeJsPayload(thrown), (text: unknown) => text === 'uncaught TypeError: contact is undefined');
    assert.equal(lines.length, 1);
    const [level, message] = lines[0] ?? [];
    assert.equal(level, 'error');
    assert.match(message ?? '', /^uncaught TypeError: contact is undefined\n.*handler\.test/s);
});

test('thrown values that are not errors are described too', async () => {
    for (const [value, text] of [
        ['a string', 'uncaught a string'],
        [42, 'uncaught number 42'],
        [undefined, 'uncaught undefined undefined'],
    ] as const) {
        const thrown = await definePartner(() => {
            throw value;
        })
            .handle(event)
            .then(
                () => assert.fail('resolved'),
                (e: unknown) => e,
            );
        assert.throws(() => componentizeJsPayload(thrown), (t: unknown) => t === text);
    }
});
