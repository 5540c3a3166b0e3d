/**
 * Reading JSON without exceptions: what serde_json's `from_str(…).ok()` and
 * `value.get(key)?.as_str()` do for a Rust component.
 *
 * @module
 */

/**
 * `text` parsed as JSON, or `undefined` when it is absent or not JSON (where
 * `JSON.parse` would throw). Numbers beyond 2^53 lose precision.
 */
export function parseJson(text: string | undefined): unknown {
    if (text === undefined) {
        return undefined;
    }
    try {
        return JSON.parse(text) as unknown;
    } catch {
        return undefined;
    }
}

/** The member `key` of `json` when `json` is an object and the member a string. */
export function jsonString(json: unknown, key: string): string | undefined {
    if (typeof json !== 'object' || json === null || Array.isArray(json)) {
        return undefined;
    }
    const member: unknown = (json as Record<string, unknown>)[key];
    return typeof member === 'string' ? member : undefined;
}
