// format.js: how values look: local times (ISO in the title), short hashes, counts, rates.

import { el } from './dom.js';

const pad = (n) => String(n).padStart(2, '0');

/// "2026-12-06 20:00:00" in local time, or the input when it is not a date.
export function localTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/// "20:00:00" in local time.
export function localClock(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso ?? '–');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/// A <time> element: local time as text, the ISO value in datetime and title.
export function timeEl(iso, props = {}) {
  if (!iso) return el('span', { class: 'muted' }, '–');
  return el('time', { ...props, datetime: iso, title: iso }, localTime(iso));
}

/// Updates an existing <time> element in place.
export function updateTime(node, iso) {
  const text = iso ? localTime(iso) : '–';
  if (node.textContent !== text) node.textContent = text;
  if (iso) {
    node.setAttribute('datetime', iso);
    node.setAttribute('title', iso);
  } else {
    node.removeAttribute('datetime');
    node.removeAttribute('title');
  }
}

/// The first 12 characters of a content hash.
export function shortHash(hash) {
  if (!hash) return '–';
  return String(hash).slice(0, 12);
}

/// A monospace short hash with the full value in the title.
export function hashEl(hash, props = {}) {
  const cls = ['mono', props.class].filter(Boolean).join(' ');
  if (!hash) return el('span', { ...props, class: cls + ' muted' }, '–');
  return el('span', { ...props, class: cls, title: String(hash) }, shortHash(hash));
}

/// "sha256:0123456789ab…" for an OCI digest.
export function shortDigest(digest) {
  if (!digest) return '–';
  const s = String(digest);
  const colon = s.indexOf(':');
  const head = colon >= 0 ? s.slice(0, colon + 1) : '';
  const rest = colon >= 0 ? s.slice(colon + 1) : s;
  return rest.length > 12 ? `${head}${rest.slice(0, 12)}…` : s;
}

/// A count, or "–" when unknown.
export function count(n) {
  if (n === null || n === undefined) return '–';
  return String(n);
}

/// "2.0 %" of failed over processed, "–" when nothing was processed.
export function failureRate(failed, processed) {
  if (!processed) return '–';
  return `${((100 * (failed || 0)) / processed).toFixed(1)} %`;
}

/// A fraction (0.05) as a percentage ("5 %").
export function fractionPercent(fraction) {
  if (fraction === null || fraction === undefined) return '–';
  return `${+(Number(fraction) * 100).toFixed(2)} %`;
}

/// "12.1 KiB".
export function bytes(n) {
  if (n === null || n === undefined) return '–';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/// Cuts text to max characters with an ellipsis.
export function shorten(text, max = 80) {
  const s = String(text ?? '');
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}
