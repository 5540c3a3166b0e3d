import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Request } from '../src/request.js';

const decode = (bytes: Uint8Array | undefined) => new TextDecoder().decode(bytes);

test('a new request is named after its method in lowercase, with no headers or body', () => {
    assert.deepEqual(Request.patch('https://x.example/a').toHttpRequest(), {
        id: 'patch',
        method: 'PATCH',
        url: 'https://x.example/a',
        headers: [],
    });
    assert.equal(new Request('M-SEARCH', 'https://x.example').toHttpRequest().id, 'm-search');
    for (const [build, method] of [
        [Request.get, 'GET'],
        [Request.post, 'POST'],
        [Request.put, 'PUT'],
        [Request.delete, 'DELETE'],
    ] as const) {
        assert.equal(build('https://x.example').toHttpRequest().method, method);
    }
});

test('headers keep their order; secrets are named, never valued', () => {
    const request = Request.get('https://x.example')
        .id('lookup')
        .header('Accept', 'application/json')
        .secretHeader('x-api-key', 'mdm-api-key')
        .bearerSecret('erp-token')
        .headerValue('X-Tenant', { tag: 'secret-template', val: { template: 'tenant={}', secret: 't' } })
        .toHttpRequest();
    assert.equal(request.id, 'lookup');
    assert.deepEqual(request.headers, [
        { name: 'Accept', value: { tag: 'literal', val: 'application/json' } },
        { name: 'x-api-key', value: { tag: 'secret', val: 'mdm-api-key' } },
        { name: 'Authorization', value: { tag: 'secret-template', val: { template: 'Bearer {}', secret: 'erp-token' } } },
        { name: 'X-Tenant', value: { tag: 'secret-template', val: { template: 'tenant={}', secret: 't' } } },
    ]);
});

test('json sets the body and a JSON content type, unless one is set in any case', () => {
    const plain = Request.post('https://x.example').json({ name: 'Ana', email: null }).toHttpRequest();
    assert.equal(decode(plain.body), '{"name":"Ana","email":null}');
    assert.deepEqual(plain.headers, [{ name: 'Content-Type', value: { tag: 'literal', val: 'application/json' } }]);

    const typed = Request.post('https://x.example')
        .header('content-TYPE', 'application/merge-patch+json')
        .json([1])
        .toHttpRequest();
    assert.equal(decode(typed.body), '[1]');
    assert.equal(typed.headers.length, 1);
});

test('json refuses values with no JSON form, naming the request', () => {
    assert.throws(() => Request.post('https://x.example').id('create').json(undefined), /request create: a undefined has no JSON form/);
    assert.throws(() => Request.post('https://x.example').json({ n: 1n }), TypeError);
});

test('body takes bytes as they are and text as UTF-8', () => {
    const bytes = new Uint8Array([0, 255]);
    assert.equal(Request.put('https://x.example').body(bytes).toHttpRequest().body, bytes);
    assert.deepEqual(Request.put('https://x.example').body('é').toHttpRequest().body, new Uint8Array([0xc3, 0xa9]));
});

test('timeoutMs takes whole milliseconds that fit a u32', () => {
    assert.equal(Request.get('https://x.example').timeoutMs(0).toHttpRequest().timeoutMs, 0);
    assert.equal(Request.get('https://x.example').timeoutMs(4_294_967_295).toHttpRequest().timeoutMs, 4_294_967_295);
    for (const bad of [-1, 1.5, 4_294_967_296, Number.NaN]) {
        assert.throws(() => Request.get('https://x.example').timeoutMs(bad), RangeError);
    }
});

test('toHttpRequest returns a copy that later builder calls leave alone', () => {
    const builder = Request.get('https://x.example');
    const first = builder.toHttpRequest();
    builder.id('changed').header('A', 'b');
    assert.equal(first.id, 'get');
    assert.deepEqual(first.headers, []);
});
