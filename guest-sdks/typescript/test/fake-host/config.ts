/** Stands in for the host's `sagahost:partner/config` import in unit tests. */

/** The partner's config; tests set and clear it. */
export const values = new Map<string, string>();

export function get(key: string): string | undefined {
    return values.get(key);
}

export function all(): Array<[string, string]> {
    return [...values].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}
