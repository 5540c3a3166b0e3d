/** Stands in for the host's `sagahost:partner/log` import in unit tests. */

export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/** Every line written, oldest first; tests read and clear it. */
export const lines: Array<[Level, string]> = [];

export function write(level: Level, message: string): void {
    lines.push([level, message]);
}
