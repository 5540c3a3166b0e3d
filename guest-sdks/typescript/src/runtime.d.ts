/**
 * The globals a component can use besides the ECMAScript built-ins: the web
 * APIs of StarlingMonkey, the engine ComponentizeJS embeds, that the sagahost
 * sandbox backs (stdio and the clocks). Only what is declared here is checked
 * to exist; there is no `fetch` (the host makes every request), no `process`,
 * no filesystem and no environment.
 *
 * Unit tests run under Node instead and take these from `@types/node`.
 */

/**
 * Writes to stdout (`log`) and stderr (`error`), which the host forwards to its
 * logs untagged by level: prefer `log` from the SDK, which writes tagged lines.
 */
declare var console: {
    log(...data: unknown[]): void;
    error(...data: unknown[]): void;
};

/** UTF-8 encoding. */
declare class TextEncoder {
    encode(input?: string): Uint8Array;
}

/** UTF-8 decoding; `fatal` makes invalid bytes throw instead of becoming U+FFFD. */
declare class TextDecoder {
    constructor(label?: 'utf-8', options?: { fatal?: boolean });
    decode(input?: Uint8Array): string;
}

/** Runs `handler` after `delay` ms, while `handle` awaits (the call's deadline still applies). */
declare function setTimeout(handler: () => void, delay?: number): number;
/** Cancels a {@link setTimeout}. */
declare function clearTimeout(id?: number): void;
