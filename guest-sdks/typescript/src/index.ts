/**
 * The sagahost partner SDK for TypeScript.
 *
 * A partner component implements the WIT world `sagahost:partner/partner`
 * (`wit/` at the root of the repository): the host calls `handle` with an
 * {@link Event} and the component answers with a {@link Plan}, either "make
 * these HTTP requests, then call me again with the answers" ({@link call}) or
 * "the step is over, here is what to do with the message" ({@link complete},
 * {@link forward}, {@link retry}, {@link compensate}, {@link deadLetter}). The
 * component never does I/O itself and never sees a secret: it names secrets in
 * request headers and the host injects them.
 *
 * - Types of everything the host sends and takes: `model.ts`.
 * - Requests: {@link Request}.
 * - Plans: {@link call}, {@link complete}, {@link forward}, {@link retry},
 *   {@link compensate}, {@link deadLetter}, {@link recording}.
 * - Answers: {@link classify}, {@link describe}, {@link retryAfterMs},
 *   {@link responseOf}, {@link statusCode}, {@link header}, {@link bodyJson},
 *   {@link bodyText}, {@link excerpt}, {@link resultById}.
 * - The message: {@link inboundOf}, {@link target}, {@link attr},
 *   {@link textAttr}, {@link property}.
 * - JSON without exceptions: {@link parseJson}, {@link jsonString}.
 * - Configuration and logs: {@link config}, {@link configOr},
 *   {@link requireConfig}, {@link log}.
 * - The export: {@link definePartner}, {@link PartnerError}.
 *
 * @module
 */

export * from './model.js';
export { Request } from './request.js';
export { call, complete, forward, retry, compensate, deadLetter, recording } from './plan.js';
export type { ForwardOptions, Properties } from './plan.js';
export {
    classify,
    classifyStatus,
    responseOf,
    statusCode,
    retryAfterMs,
    describe,
    header,
    bodyText,
    bodyJson,
    excerpt,
    resultById,
} from './result.js';
export type { Status } from './result.js';
export { inboundOf, target, attr, textAttr, property } from './context.js';
export { parseJson, jsonString } from './json.js';
export { config, configOr, requireConfig, log } from './host.js';
export { definePartner } from './handler.js';
export type { Handle, Handler } from './handler.js';
export { PartnerError } from './errors.js';
