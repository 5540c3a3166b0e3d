/** `node --import` this to load SDK modules that import from the host (see hooks.ts). */

import { register } from 'node:module';

register('./hooks.js', import.meta.url);
