/**
 * What the host lends a component: its configuration and its logs (the WIT
 * imports `sagahost:partner/config` and `sagahost:partner/log`).
 *
 * This is the only SDK module that imports from the host, so the rest loads
 * anywhere, Node included.
 *
 * @module
 */

import { get } from 'sagahost:partner/config@0.1.0';
import { write, type Level } from 'sagahost:partner/log@0.1.0';

import { PartnerError } from './errors.js';

/**
 * The config value `key` (from `[partners.NAME.config]` in the host's config
 * file), if set. Secrets are never readable: name them in request headers
 * instead (`Request.secretHeader`, `Request.bearerSecret`).
 */
export function config(key: string): string | undefined {
    return get(key);
}

/** The config value `key`, or `fallback` when it is not set. */
export function configOr(key: string, fallback: string): string {
    return get(key) ?? fallback;
}

/**
 * The config value `key`.
 *
 * @throws PartnerError naming the key when it is not set: thrown out of
 *   `handle`, it dead-letters the message with reason `ComponentError`.
 */
export function requireConfig(key: string): string {
    const value = get(key);
    if (value === undefined) {
        throw new PartnerError(`config key \`${key}\` is not set: add it to [partners.<name>.config]`);
    }
    return value;
}

function logger(level: Level): (message: string) => void {
    return (message) => write(level, message);
}

/**
 * Logging into the host's tracing pipeline. Lines are tagged with the partner
 * name, the message id and the saga id. Never log secrets or personal data you
 * would not want an operator to read.
 */
export const log = {
    /** Logs at trace level. */
    trace: logger('trace'),
    /** Logs at debug level. */
    debug: logger('debug'),
    /** Logs at info level. */
    info: logger('info'),
    /** Logs at warn level. */
    warn: logger('warn'),
    /** Logs at error level. */
    error: logger('error'),
} as const;
