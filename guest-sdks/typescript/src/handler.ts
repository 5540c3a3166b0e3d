/**
 * Turning a partner's `handle` function into the component's export, with the
 * error semantics of a Rust component: a {@link PartnerError} is a refusal, any
 * other exception a crash.
 *
 * @module
 */

import { PartnerError } from './errors.js';
import { log } from './host.js';
import type { Event, Plan } from './model.js';

/** A partner's step handler: one event in, a plan out, now or once awaited. */
export type Handle = (event: Event) => Plan | Promise<Plan>;

/** The export of the WIT interface `sagahost:partner/handler`. */
export interface Handler {
    /** Handles one event. */
    handle(event: Event): Promise<Plan>;
}

/**
 * The component's handler: `export const handler = definePartner(handle);`
 * (the module must export it under the name `handler`).
 *
 * - A plan returned (or resolved) by `handle` goes to the host.
 * - A {@link PartnerError} thrown (or rejected), e.g. by `requireConfig`,
 *   becomes `err(message)`: the host dead-letters the message with reason
 *   `ComponentError` and the message as description.
 * - Any other exception is a bug, like a Rust panic: it is logged at error
 *   level with its stack, and the component traps. The host dead-letters the
 *   message with reason `ComponentTrap`, quoting `uncaught <name>: <message>`.
 */
export function definePartner(handle: Handle): Handler {
    return {
        async handle(event) {
            try {
                return await handle(event);
            } catch (thrown) {
                throw thrown instanceof PartnerError ? thrown : crash(thrown);
            }
        },
    };
}

/**
 * Logs an unexpected exception and returns what, thrown out of the export,
 * makes the component trap with `uncaught <name>: <message>` as the last line
 * of its stderr (which the host quotes in the trap's description).
 *
 * ComponentizeJS reads the `payload` of an exception leaving a
 * `result`-returning export to build its `err` value. Reading this one throws
 * the text instead, so the exception escapes the export: StarlingMonkey prints
 * it to stderr and aborts, a wasm trap. (Throwing the `Error` itself would
 * trap too, but with a ComponentizeJS encoding error as the last stderr line
 * instead of the partner's message.)
 */
function crash(thrown: unknown): { readonly payload: never } {
    const text = `uncaught ${describeThrown(thrown)}`;
    const stack = thrown instanceof Error && thrown.stack ? `\n${thrown.stack}` : '';
    log.error(`${text}${stack}`);
    return {
        get payload(): never {
            throw text;
        },
    };
}

function describeThrown(thrown: unknown): string {
    if (thrown instanceof Error) {
        return `${thrown.name}: ${thrown.message}`;
    }
    return typeof thrown === 'string' ? thrown : `${typeof thrown} ${String(thrown)}`;
}
