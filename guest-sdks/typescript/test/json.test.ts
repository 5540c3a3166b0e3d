import assert from 'node:assert/strict';
import { test } from 'node:test';

import { jsonString, parseJson } from '../src/json.js';

test('parseJson parses JSON and gives undefined for absent or invalid text', () => {
    assert.deepEqual(parseJson('{"mdmId":"MDM-1"}'), { mdmId: 'MDM-1' });
    assert.equal(parseJson(' 1 '), 1);
    assert.equal(parseJson('null'), null);
    assert.equal(parseJson(undefined), undefined);
    for (const bad of ['', '{', "{'a':1}", '[1,]', 'undefined']) {
        assert.equal(parseJson(bad), undefined, bad);
    }
});

test('jsonString reads string members of objects only', () => {
    assert.equal(jsonString({ id: 'MDM-1' }, 'id'), 'MDM-1');
    assert.equal(jsonString({ id: 42 }, 'id'), undefined);
    assert.equal(jsonString({ id: null }, 'id'), undefined);
    assert.equal(jsonString({}, 'id'), undefined);
    assert.equal(jsonString(['MDM-1'], '0'), undefined);
    assert.equal(jsonString('id', 'length'), undefined);
    assert.equal(jsonString(null, 'id'), undefined);
    assert.equal(jsonString(undefined, 'id'), undefined);
});
