/**
 * Text helpers shared by the other modules, written to behave like the Rust
 * SDK's so a TypeScript and a Rust component produce the same bytes.
 *
 * @module
 */

const encoder = new TextEncoder();
const lossy = new TextDecoder('utf-8');
const strict = new TextDecoder('utf-8', { fatal: true });

/**
 * Unicode `White_Space`, the set Rust's `str::split_whitespace` and `trim` use
 * (JavaScript's `\s` differs: it adds U+FEFF and lacks U+0085).
 */
const WHITESPACE = '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const WHITESPACE_RUN = new RegExp(`[${WHITESPACE}]+`, 'g');
const EDGE_WHITESPACE = new RegExp(`^[${WHITESPACE}]+|[${WHITESPACE}]+$`, 'g');

/** `text` as UTF-8 bytes. */
export function utf8(text: string): Uint8Array {
    return encoder.encode(text);
}

/** `bytes` as text, invalid UTF-8 replaced by U+FFFD (Rust's `String::from_utf8_lossy`). */
export function decodeLossy(bytes: Uint8Array): string {
    return lossy.decode(bytes);
}

/** `bytes` as text, or `undefined` when they are not valid UTF-8. */
export function decodeStrict(bytes: Uint8Array): string | undefined {
    try {
        return strict.decode(bytes);
    } catch {
        return undefined;
    }
}

/** Lowercases ASCII letters only, the way HTTP names compare. */
export function asciiLowercase(text: string): string {
    return text.replace(/[A-Z]+/g, (upper) => upper.toLowerCase());
}

/** `text` without leading and trailing Unicode whitespace (Rust's `str::trim`). */
export function trimWhitespace(text: string): string {
    return text.replace(EDGE_WHITESPACE, '');
}

/** The words of `text` joined by single spaces (Rust's `split_whitespace` joined by `' '`). */
export function collapseWhitespace(text: string): string {
    return trimWhitespace(text).replace(WHITESPACE_RUN, ' ');
}

/**
 * `text` cut to at most `maxChars` characters (code points, not UTF-16 units),
 * with `…` appended when it was cut.
 */
export function truncateChars(text: string, maxChars: number): string {
    let count = 0;
    let end = 0;
    for (const char of text) {
        if (count === maxChars) {
            return `${text.slice(0, end)}…`;
        }
        count += 1;
        end += char.length;
    }
    return text;
}
