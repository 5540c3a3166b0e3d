import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { HttpError, HttpResult } from '../src/model.js';
import {
    bodyJson,
    bodyText,
    classify,
    classifyStatus,
    describe,
    excerpt,
    header,
    responseOf,
    resultById,
    retryAfterMs,
    statusCode,
} from '../src/result.js';
import { answered, response } from './support.js';

const failed = (error: HttpError): HttpResult => ({ id: 'r', response: { tag: 'err', val: error } });

test('status codes: 2xx succeed, 408, 429 and 5xx are transient, the rest fatal', () => {
    const cases: Array<[number, string]> = [
        [199, 'fatal'], [200, 'success'], [204, 'success'], [299, 'success'], [300, 'fatal'],
        [400, 'fatal'], [404, 'fatal'], [407, 'fatal'], [408, 'transient'], [409, 'fatal'],
        [429, 'transient'], [499, 'fatal'], [500, 'transient'], [503, 'transient'], [599, 'transient'], [600, 'fatal'],
    ];
    for (const [code, status] of cases) {
        assert.equal(classifyStatus(code), status, `HTTP ${code}`);
        assert.equal(classify(answered(response(code))), status, `HTTP ${code}`);
    }
});

test('no answer: blocked and invalid are fatal, timeout, connection and too-large transient', () => {
    assert.equal(classify(failed({ tag: 'blocked', val: 'evil.example' })), 'fatal');
    assert.equal(classify(failed({ tag: 'invalid', val: 'bad url' })), 'fatal');
    assert.equal(classify(failed({ tag: 'timeout' })), 'transient');
    assert.equal(classify(failed({ tag: 'connection', val: 'refused' })), 'transient');
    assert.equal(classify(failed({ tag: 'too-large', val: 10n })), 'transient');
});

test('describe gives one line per outcome', () => {
    assert.equal(describe(answered(response(204))), 'HTTP 204');
    assert.equal(describe(answered(response(503, 'Service\n  Unavailable '))), 'HTTP 503: Service Unavailable');
    assert.equal(describe(failed({ tag: 'timeout' })), 'timeout');
    assert.equal(describe(failed({ tag: 'blocked', val: 'evil.example' })), 'blocked: evil.example is not allowed');
    assert.equal(describe(failed({ tag: 'connection', val: 'connection refused' })), 'connection failed: connection refused');
    assert.equal(describe(failed({ tag: 'too-large', val: 2_000_000n })), 'response too large: 2000000 bytes');
    assert.equal(describe(failed({ tag: 'invalid', val: 'unknown secret `x`' })), 'invalid request: unknown secret `x`');
});

test('excerpt collapses Unicode whitespace as Rust does and cuts at code points', () => {
    // U+0085 is whitespace to Rust and not to JavaScript's \s; U+FEFF the other way round.
    assert.equal(excerpt(response(200, '\u0085a\t\u00a0b\u3000\u2028c\n'), 100), 'a b c');
    assert.equal(excerpt(response(200, 'a\ufeffb'), 100), 'a\ufeffb');
    assert.equal(excerpt(response(200, 'abcdef'), 3), 'abc…');
    assert.equal(excerpt(response(200, 'abc'), 3), 'abc');
    assert.equal(excerpt(response(200, '😀😀😀'), 2), '😀😀…');
    assert.equal(excerpt(response(200, 'x'.repeat(300)), 200), `${'x'.repeat(200)}…`);
    assert.equal(describe(answered(response(500, new Uint8Array([0x6f, 0x6b, 0xff])))), 'HTTP 500: ok\ufffd');
});

test('retryAfterMs reads whole seconds only, from a response or a result', () => {
    const after = (value: string) => response(429, '', [['retry-after', value]]);
    assert.equal(retryAfterMs(after('30')), 30_000);
    assert.equal(retryAfterMs(answered(after(' 7 '))), 7_000);
    assert.equal(retryAfterMs(after('+2')), 2_000);
    assert.equal(retryAfterMs(after('0')), 0);
    for (const ignored of ['', '-1', '1.5', '1e3', 'Wed, 21 Oct 2015 07:28:00 GMT', '18446744073709551616']) {
        assert.equal(retryAfterMs(after(ignored)), undefined, ignored);
    }
    assert.equal(retryAfterMs(after('18446744073709551615')), Number.MAX_SAFE_INTEGER);
    assert.equal(retryAfterMs(response(429)), undefined);
    assert.equal(retryAfterMs(failed({ tag: 'timeout' })), undefined);
});

test('header finds the first match in any case', () => {
    const res = response(200, '', [['x-id', 'first'], ['X-ID', 'second']]);
    assert.equal(header(res, 'X-Id'), 'first');
    assert.equal(header(res, 'missing'), undefined);
});

test('bodyJson parses JSON bodies and gives undefined for anything else', () => {
    assert.deepEqual(bodyJson(response(201, '{"id":"MDM-1"}')), { id: 'MDM-1' });
    assert.equal(bodyJson(response(201, 'null')), null);
    assert.equal(bodyJson(response(201, 'not json')), undefined);
    assert.equal(bodyJson(response(201, '')), undefined);
    assert.equal(bodyJson(response(201, new Uint8Array([0x22, 0xff, 0x22]))), undefined);
    assert.equal(bodyText(response(200, 'héllo')), 'héllo');
});

test('responseOf, statusCode and resultById', () => {
    const ok = answered(response(201), 'create');
    const timedOut = failed({ tag: 'timeout' });
    assert.equal(responseOf(ok)?.status, 201);
    assert.equal(responseOf(timedOut), undefined);
    assert.equal(statusCode(ok), 201);
    assert.equal(statusCode(timedOut), undefined);
    const responses = {
        inbound: { messageId: 'm', queue: 'q', properties: [], body: new Uint8Array(), saga: { id: 's', step: 0, attempt: 1, history: [] } },
        state: 'create',
        results: [timedOut, ok],
        round: 1,
    };
    assert.equal(resultById(responses, 'create'), ok);
    assert.equal(resultById(responses, 'other'), undefined);
});
