import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';

import { PartnerError } from '../src/errors.js';
import { config, configOr, log, requireConfig } from '../src/host.js';
import { values } from './fake-host/config.js';
import { lines } from './fake-host/log.js';

beforeEach(() => {
    values.clear();
    lines.length = 0;
});

test('config reads the partner config, with or without a fallback', () => {
    values.set('mdm-url', 'https://mdm.example.com');
    assert.equal(config('mdm-url'), 'https://mdm.example.com');
    assert.equal(config('missing'), undefined);
    assert.equal(configOr('mdm-url', 'unused'), 'https://mdm.example.com');
    assert.equal(configOr('mdm-id-column', 'new_mdmid'), 'new_mdmid');
    values.set('empty', '');
    assert.equal(configOr('empty', 'fallback'), '', 'an empty value is set');
});

test('requireConfig names the missing key in a PartnerError that ComponentizeJS turns into err', () => {
    values.set('erp-url', 'https://erp.example.com');
    assert.equal(requireConfig('erp-url'), 'https://erp.example.com');
    assert.throws(
        () => requireConfig('mdm-url'),
        (error: unknown) =>
            error instanceof PartnerError &&
            error.message === 'config key `mdm-url` is not set: add it to [partners.<name>.config]' &&
            Object.hasOwn(error, 'payload') &&
            error.payload === error.message,
    );
});

test('log writes one line per call at its level', () => {
    log.trace('t');
    log.debug('d');
    log.info('i');
    log.warn('w');
    log.error('e');
    assert.deepEqual(lines, [['trace', 't'], ['debug', 'd'], ['info', 'i'], ['warn', 'w'], ['error', 'e']]);
});
