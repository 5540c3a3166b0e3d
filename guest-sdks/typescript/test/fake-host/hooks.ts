/**
 * Node module hooks that resolve the component's host imports
 * (`sagahost:partner/config@0.1.0`, `sagahost:partner/log@0.1.0`) to the fakes
 * beside this file, so SDK modules that import from the host load under Node.
 */

import type { ResolveHook } from 'node:module';

const FAKES: Record<string, string> = {
    'sagahost:partner/config@0.1.0': './config.js',
    'sagahost:partner/log@0.1.0': './log.js',
};

export const resolve: ResolveHook = (specifier, context, nextResolve) => {
    const fake = FAKES[specifier];
    if (fake !== undefined) {
        return { url: new URL(fake, import.meta.url).href, shortCircuit: true };
    }
    if (specifier.startsWith('sagahost:')) {
        throw new Error(`no fake for the host import ${specifier}: add one to test/fake-host/`);
    }
    return nextResolve(specifier, context);
};
