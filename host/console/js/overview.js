// overview.js: the live overview (partners and queues): the last snapshot, a GET to fetch
// one now, and the EventSource on /admin/overview/stream that pushes a new one every ~2 s.

import { get, api } from './api.js';
import { setLive } from './ui.js';

let latest = null;
let source = null;
let retryTimer = null;
let onSignedOut = () => {};
const listeners = new Set();

function publish(data) {
  latest = data;
  for (const listener of [...listeners]) {
    try {
      listener(data);
    } catch (err) {
      console.error('overview listener failed', err);
    }
  }
}

/// The last snapshot, or null.
export const current = () => latest;

/// Calls listener with every new snapshot; returns the function that stops it.
export function subscribe(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/// Fetches a snapshot now (and tells every listener).
export async function refresh() {
  const data = await get('/admin/overview');
  publish(data);
  return data;
}

/// The last snapshot, fetched when there is none yet.
export async function ensure() {
  return latest ?? refresh();
}

export function setSignedOutHandler(handler) {
  onSignedOut = handler;
}

/// Opens the stream (idempotent).
export function start() {
  if (source) return;
  clearTimeout(retryTimer);
  setLive('connecting');
  const es = new EventSource('/admin/overview/stream', { withCredentials: true });
  source = es;
  es.addEventListener('open', () => {
    if (source === es) setLive('live');
  });
  es.addEventListener('overview', (event) => {
    if (source !== es) return;
    setLive('live');
    try {
      publish(JSON.parse(event.data));
    } catch (err) {
      console.error('bad overview event', err);
    }
  });
  es.addEventListener('error', () => {
    if (source !== es) return;
    setLive('reconnecting');
    checkSession(es);
  });
}

/// On a stream error: a 401 means signed out; a closed stream (an error status) is reopened.
async function checkSession(es) {
  let session;
  try {
    session = await api('GET', '/console/api/session', { allow401: true });
  } catch {
    session = null; // the host is away: EventSource keeps trying, or we retry below
  }
  if (source !== es) return;
  if (session && session['signed-in'] === false) {
    stop();
    onSignedOut();
    return;
  }
  if (es.readyState === EventSource.CLOSED) {
    source = null;
    clearTimeout(retryTimer);
    retryTimer = setTimeout(() => {
      if (!source) start();
    }, 3000);
    setLive('reconnecting');
  }
}

/// Closes the stream (signing out).
export function stop() {
  clearTimeout(retryTimer);
  if (source) source.close();
  source = null;
  latest = null;
  setLive('off');
}
