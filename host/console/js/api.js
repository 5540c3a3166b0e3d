// api.js: every call to the server: same-origin fetch, the CSRF header on writes, JSON
// bodies, error text from {"error": ...}, and the jump to sign-in on 401.

let csrf = null;
let onUnauthorized = () => {};

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

/// Thrown (after the sign-in view is shown) when the server answers 401.
export class Unauthorized extends ApiError {
  constructor(message) {
    super(message || 'signed out', 401);
    this.name = 'Unauthorized';
  }
}

export function setCsrf(token) {
  csrf = token || null;
}

export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

/// The error text of a failed response: {"error": text}, else the body, else the status.
async function errorText(response) {
  let text = '';
  try {
    text = await response.text();
  } catch {
    // keep the status line
  }
  if (text) {
    try {
      const parsed = JSON.parse(text);
      if (parsed && typeof parsed.error === 'string') return parsed.error;
    } catch {
      // not JSON
    }
    const trimmed = text.trim();
    if (trimmed && trimmed.length < 500 && !trimmed.startsWith('<')) return trimmed;
  }
  return `${response.status} ${response.statusText || 'error'}`.trim();
}

/// Calls the API. options: {body, query, allow401}. Resolves to the parsed JSON (or null).
export async function api(method, path, options = {}) {
  let url = path;
  if (options.query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(options.query)) {
      if (value !== undefined && value !== null && value !== '') params.set(key, String(value));
    }
    const qs = params.toString();
    if (qs) url += (url.includes('?') ? '&' : '?') + qs;
  }
  const headers = { Accept: 'application/json' };
  const init = { method, credentials: 'same-origin', headers, cache: 'no-store' };
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['X-CSRF-Token'] = csrf;
  if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(options.body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    throw new ApiError(`cannot reach the host (${err.message})`, 0);
  }
  if (response.status === 401 && !options.allow401) {
    const message = await errorText(response);
    onUnauthorized(message);
    throw new Unauthorized(message);
  }
  if (!response.ok) throw new ApiError(await errorText(response), response.status);
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(`the host answered ${method} ${path} with something that is not JSON`, response.status);
  }
}

export const get = (path, query) => api('GET', path, { query });
export const post = (path, body, query) => api('POST', path, { body, query });
export const del = (path) => api('DELETE', path);

/// One path segment, encoded.
export const seg = (value) => encodeURIComponent(String(value));
