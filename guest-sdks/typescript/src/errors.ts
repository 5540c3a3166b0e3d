/**
 * The error a component throws to refuse a message on purpose.
 *
 * @module
 */

/**
 * Thrown from `handle` (directly or by a helper such as
 * {@link "host".requireConfig}), it becomes the WIT `err(text)` of `handle`:
 * the host dead-letters the message with reason `ComponentError` and this
 * message as the description. It is the TypeScript form of returning `Err` from
 * a Rust component.
 *
 * Any other exception is a bug, like a Rust panic: {@link "handler".definePartner}
 * logs it and the component traps (reason `ComponentTrap`).
 */
export class PartnerError extends Error {
    /**
     * The `err` value. ComponentizeJS turns an exception with an own `payload`
     * property into `err(payload)` of a `result`-returning export.
     */
    readonly payload: string;

    constructor(message: string) {
        super(message);
        this.name = 'PartnerError';
        this.payload = message;
    }
}
