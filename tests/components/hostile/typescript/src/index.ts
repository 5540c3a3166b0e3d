/**
 * # hostile: a partner component that misbehaves on purpose (TypeScript)
 *
 * **For host tests only.** Never deploy it. The TypeScript twin of
 * `tests/components/hostile/src/lib.rs`, so the host tests can check that the
 * sandbox holds for a JavaScript engine too: CPU deadlines, memory caps, traps,
 * result size limits, request limits, the allow-list, secret handling and
 * routing errors.
 *
 * The config key `attack` chooses what it does with a `message` event, with
 * the same names and outcomes as the Rust component:
 *
 * | `attack` | behaviour |
 * |---|---|
 * | `loop` | spins forever |
 * | `memory` | allocates and touches 1 MiB blocks forever |
 * | `trap` | throws an `Error` ("hostile component panicked on purpose"), which traps |
 * | `recursion` | recurses without bound (SpiderMonkey's recursion limit, a trap) |
 * | `huge-return` | dead-letters with a 64 MiB description |
 * | `many-requests` | asks for 10 000 GET requests |
 * | `forbidden-host` | GETs config `forbidden-url` (default `https://forbidden.example.net/`), then dead-letters `ForbiddenHost` with what the host answered |
 * | `echo-secret` | sends `x-token: secret(mdm-api-key)` to config `echo-url`, then forwards the response body to `next` |
 * | `unknown-route` | forwards to route `nowhere` |
 * | `compensate-first` | asks to compensate on the saga's first step, when no step has run |
 * | `forge-saga` | forwards to `next` with forged `sagahost-saga` / `sagahost-compensation` properties |
 * | `stdout` | prints one line to stdout and one to stderr, then completes |
 * | `long-stdout` | prints one 1 MiB line to stdout, then completes |
 * | `sleep` | awaits a one-hour timer (StarlingMonkey blocks in `wasi:io/poll` on a `wasi:clocks` pollable) |
 * | `clock-loop` | spins forever, reading the clock between spins (a loop of host calls) |
 * | `many-forwards` | forwards 100 000 messages to `next` |
 * | `big-property` | forwards to `next` with an 8 MiB application property |
 * | `big-compensation` | forwards to `next`, recording 32 MiB of compensation data |
 * | `big-body` | forwards to `next` with a 1 MiB body |
 * | anything else | completes |
 *
 * `read-env`, `read-file` and `stdin` are not ported: no JavaScript API of
 * ComponentizeJS reaches the environment, the filesystem or stdin, so a
 * JavaScript partner cannot attempt them (they complete, as unknown attacks do).
 *
 * A `responses` event completes, except for `echo-secret` and `forbidden-host`;
 * a `compensate` event completes.
 *
 * @module
 */

import {
    call,
    compensate,
    complete,
    configOr,
    deadLetter,
    definePartner,
    describe,
    forward,
    log,
    recording,
    Request,
    requireConfig,
    responseOf,
    type Event,
    type Plan,
} from '@sagahost/partner';

async function handle(event: Event): Promise<Plan> {
    const attack = configOr('attack', '');
    switch (event.tag) {
        case 'message':
            return attackWith(attack);
        case 'responses': {
            const first = event.val.results[0];
            if (attack === 'echo-secret') {
                const body = (first && responseOf(first)?.body) ?? new Uint8Array();
                log.info(`echo-secret: forwarding ${body.length} bytes`);
                return forward('next', { body });
            }
            if (attack === 'forbidden-host') {
                return deadLetter('ForbiddenHost', first ? describe(first) : '');
            }
            return complete();
        }
        case 'compensate':
            return complete();
    }
}

export const handler = definePartner(handle);

async function attackWith(attack: string): Promise<Plan> {
    log.info(`hostile attack: ${JSON.stringify(attack)}`);
    switch (attack) {
        case 'loop':
            return spin();
        case 'memory':
            return hoard();
        case 'trap':
            throw new Error('hostile component panicked on purpose');
        case 'recursion':
            return recording(complete(), String(recurse(1)));
        case 'huge-return':
            return deadLetter('HugeReturn', 'x'.repeat(64 << 20));
        case 'many-requests':
            return call(
                Array.from({ length: 10_000 }, (_, i) => Request.get(`https://example.com/${i}`).id(`r${i}`)),
                'many-requests',
            );
        case 'forbidden-host':
            return call(
                [Request.get(configOr('forbidden-url', 'https://forbidden.example.net/')).id('forbidden')],
                'forbidden-host',
            );
        case 'echo-secret': {
            const request = Request.get(requireConfig('echo-url')).id('echo').secretHeader('x-token', 'mdm-api-key');
            return call([request], 'echo-secret');
        }
        case 'unknown-route':
            return forward('nowhere');
        case 'compensate-first':
            return compensate('HostileCompensation', 'undo the step that never ran');
        case 'forge-saga':
            return forward('next', {
                properties: [
                    ['sagahost-saga', '{"id":"forged","step":7,"attempt":1,"history":[]}'],
                    ['sagahost-compensation', '{"failed-partner":"erp","reason":"forged"}'],
                ],
            });
        case 'stdout':
            console.log('hostile component writes to stdout');
            console.error('hostile component writes to stderr');
            return complete();
        case 'long-stdout':
            console.log('o'.repeat(1 << 20));
            return complete();
        case 'sleep':
            await new Promise<void>((resolve) => setTimeout(resolve, 3_600_000));
            return complete();
        case 'clock-loop':
            for (;;) {
                Date.now();
            }
        case 'many-forwards':
            return {
                tag: 'done',
                val: {
                    decision: {
                        tag: 'forward',
                        val: Array.from({ length: 100_000 }, () => ({ route: 'next', properties: [] })),
                    },
                },
            };
        case 'big-property':
            return forward('next', { properties: { big: 'p'.repeat(8 << 20) } });
        case 'big-compensation':
            return recording(forward('next'), 'c'.repeat(32 << 20));
        case 'big-body':
            return forward('next', { body: new Uint8Array(1 << 20).fill(0x62) });
        default:
            return complete();
    }
}

/** Spins forever; the counter keeps the loop doing work. */
function spin(): never {
    let counter = 0;
    for (;;) {
        counter = (counter + 1) | 0;
    }
}

/** Allocates 1 MiB blocks, touching every page, and keeps them all until the host stops it. */
function hoard(): never {
    const blocks: Uint8Array[] = [];
    for (;;) {
        const block = new Uint8Array(1 << 20);
        for (let i = 0; i < block.length; i += 4096) {
            block[i] = 1;
        }
        blocks.push(block);
    }
}

/** Recurses without bound; the work after the call keeps it from becoming a loop. */
function recurse(depth: number): number {
    if (depth === Number.MAX_SAFE_INTEGER) {
        return 0;
    }
    const frame = Array.from({ length: 16 }, () => depth);
    const below = recurse(depth + 1);
    return below + (frame[depth % 16] ?? 0);
}
