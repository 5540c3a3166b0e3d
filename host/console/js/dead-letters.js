// dead-letters.js: the dead-letter list (#/dead-letters/QUEUE): queue picker, filters,
// paging (a stack of previous "from" values), and bulk redrive / purge behind #confirm.

import { el, replace, routeLink } from './dom.js';
import { get, post, seg } from './api.js';
import { notice, noticeError, busy, confirmDialog } from './ui.js';
import { timeEl, hashEl, shorten } from './format.js';
import * as overview from './overview.js';

const PAGE = 25;
const FILTERS = ['reason', 'partner', 'version', 'since', 'until'];

/// Per queue: the applied filters and the paging position, kept while the console is open
/// so coming back from a letter lands on the same page.
const memory = new Map();
let lastQueue = null;

function stateFor(queue) {
  if (!memory.has(queue)) memory.set(queue, { filters: {}, from: null, stack: [] });
  return memory.get(queue);
}

const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

function describeFilters(filters) {
  const parts = FILTERS.filter((k) => filters[k]).map((k) => `${k} ${filters[k]}`);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

function letterRow(queue, l) {
  const seq = l.sequence;
  return el(
    'tr',
    { data: { sequence: seq } },
    el('td', { class: 'mono num', data: { field: 'sequence' } }, String(seq)),
    el('td', { data: { field: 'reason' } }, l.reason ?? '–'),
    el('td', { class: 'mono', data: { field: 'partner' } }, l.partner ?? '–'),
    el('td', { data: { field: 'version' } }, hashEl(l.version)),
    el('td', { class: 'nowrap', data: { field: 'dead-lettered-at' } }, timeEl(l['dead-lettered-at'] || l['enqueued-time'])),
    el('td', { class: 'description', data: { field: 'description' }, title: l.description ?? '' }, shorten(l.description, 90)),
    el('td', null, routeLink(['dead-letters', queue, seq], 'Open', { class: 'open', 'aria-label': `Open dead letter ${seq}` })),
  );
}

export async function render(view, params, ctx) {
  const data = await overview.ensure();
  const queues = (data.queues || []).map((q) => String(q.queue));
  const queue = params.queue || (queues.includes(lastQueue) ? lastQueue : queues[0]);
  if (!queue) {
    replace(view, el('div', { class: 'view-head' }, el('h1', null, 'Dead letters')), el('p', { class: 'empty-state', id: 'dl-empty' }, 'This host has no queues, so no dead letters.'));
    return {};
  }
  lastQueue = queue;
  const state = stateFor(queue);

  const select = el('select', { id: 'dl-queue', 'aria-label': 'Queue' });
  for (const name of queues.includes(queue) ? queues : [queue, ...queues]) select.append(el('option', { value: name }, name));
  select.value = queue;
  select.addEventListener('change', () => {
    location.hash = `#/dead-letters/${seg(select.value)}`;
  });

  const partners = el('datalist', { id: 'dl-partners' }, (data.partners || []).map((p) => el('option', { value: p.partner })));
  const reasons = el('datalist', { id: 'dl-reasons' });
  const inputs = {
    reason: el('input', { id: 'dl-reason', type: 'text', list: 'dl-reasons', autocomplete: 'off', placeholder: 'any' }),
    partner: el('input', { id: 'dl-partner', type: 'text', list: 'dl-partners', autocomplete: 'off', placeholder: 'any' }),
    version: el('input', { id: 'dl-version', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'hash prefix' }),
    since: el('input', { id: 'dl-since', type: 'text', autocomplete: 'off', placeholder: '2h or RFC 3339' }),
    until: el('input', { id: 'dl-until', type: 'text', autocomplete: 'off', placeholder: '10m or RFC 3339' }),
  };
  for (const k of FILTERS) inputs[k].value = state.filters[k] || '';
  const label = (text, input) => el('label', { class: 'field', for: input.id }, el('span', { class: 'field-label' }, text), input);
  const apply = el('button', { id: 'dl-apply', type: 'submit', class: 'primary' }, 'Apply');
  const clear = el('button', { type: 'button' }, 'Clear');
  const filterForm = el(
    'form',
    { id: 'dl-filters', class: 'filters', role: 'search' },
    label('Reason', inputs.reason),
    label('Partner', inputs.partner),
    label('Version', inputs.version),
    label('Since', inputs.since),
    label('Until', inputs.until),
    el('div', { class: 'filter-buttons' }, apply, clear),
    partners,
    reasons,
  );

  const resetAll = el('input', { id: 'dl-reset-attempts-all', type: 'checkbox' });
  const redriveAll = el('button', { id: 'dl-redrive-all', type: 'button' }, 'Redrive all matching');
  const purgeAll = el('button', { id: 'dl-purge-all', type: 'button', class: 'danger' }, 'Purge all matching');
  const bulk = el(
    'div',
    { class: 'bulk', role: 'group', 'aria-label': 'Bulk actions on every matching dead letter' },
    el('label', { class: 'check', for: 'dl-reset-attempts-all' }, resetAll, ' reset attempts'),
    redriveAll,
    purgeAll,
  );

  const tbody = el('tbody');
  const table = el(
    'table',
    { id: 'dl-list', class: 'grid' },
    el(
      'thead',
      null,
      el('tr', null, ['Seq', 'Reason', 'Partner', 'Version', 'Dead-lettered', 'Description', ''].map((h, i) => el('th', { scope: 'col', class: i === 0 ? 'num' : null }, h))),
    ),
    tbody,
  );
  const emptySlot = el('div');
  const position = el('span', { class: 'muted' });
  const prev = el('button', { id: 'dl-prev', type: 'button' }, '← Previous');
  const next = el('button', { id: 'dl-next', type: 'button' }, 'Next →');
  const pager = el('div', { class: 'pager' }, prev, position, next);

  replace(
    view,
    el('div', { class: 'view-head' }, el('h1', null, 'Dead letters'), el('label', { class: 'inline', for: 'dl-queue' }, 'on ', select)),
    filterForm,
    el('div', { class: 'toolbar' }, bulk),
    el('div', { class: 'table-wrap' }, table),
    emptySlot,
    pager,
  );

  let nextFrom = null;

  function updatePager() {
    prev.disabled = state.stack.length === 0;
    next.disabled = nextFrom === null;
  }

  /// Like busy(), but the pager buttons end up enabled only where there is a page to go to.
  async function run(button, action) {
    await busy(button, action);
    updatePager();
  }

  function readFilters() {
    const f = {};
    for (const k of FILTERS) {
      const v = inputs[k].value.trim();
      if (v) f[k] = v;
    }
    return f;
  }

  async function load() {
    const letters = await get(`/admin/dead-letters/${seg(queue)}`, { ...state.filters, from: state.from ?? undefined, limit: PAGE });
    const list = (letters && letters.letters) || [];
    nextFrom = letters ? letters.next ?? null : null;
    replace(tbody, list.map((l) => letterRow(queue, l)));
    const filtered = describeFilters(state.filters);
    if (list.length) {
      replace(emptySlot);
    } else {
      const text = filtered ? `No dead letters on ${queue} match the filters${filtered}` : `No dead letters on ${queue}`;
      replace(emptySlot, el('p', { id: 'dl-empty', class: 'empty-state' }, state.stack.length ? `${text} on this page` : text));
    }
    table.hidden = list.length === 0;
    const page = state.stack.length + 1;
    position.textContent = list.length ? `page ${page} · ${list.length} shown${filtered}` : `page ${page}`;
    updatePager();
    const seen = [...new Set(list.map((l) => l.reason).filter(Boolean))];
    replace(reasons, seen.map((r) => el('option', { value: r })));
  }

  /// Reloads inside the view: data-view is dropped while loading so tests can wait on it.
  async function reload() {
    ctx.loading();
    try {
      await load();
    } catch (err) {
      noticeError(err);
    } finally {
      ctx.loaded();
    }
  }

  filterForm.addEventListener('submit', (event) => {
    event.preventDefault();
    state.filters = readFilters();
    state.from = null;
    state.stack = [];
    run(apply, reload);
  });
  clear.addEventListener('click', () => {
    for (const k of FILTERS) inputs[k].value = '';
    state.filters = {};
    state.from = null;
    state.stack = [];
    run(clear, reload);
  });
  prev.addEventListener('click', () => {
    if (!state.stack.length) return;
    state.from = state.stack.pop();
    run(prev, reload);
  });
  next.addEventListener('click', () => {
    if (nextFrom === null) return;
    state.stack.push(state.from);
    state.from = nextFrom;
    run(next, reload);
  });

  async function bulkAction(button, kind) {
    await run(button, async () => {
      state.filters = readFilters();
      const filters = state.filters;
      const where = `${queue}${describeFilters(filters)}`;
      const dry = await post(`/admin/dead-letters/${seg(queue)}/${kind}`, { ...filters, 'dry-run': true });
      const matched = Number(dry && dry.matched) || 0;
      if (!matched) {
        notice(`No dead letters on ${where} to ${kind}`);
        return;
      }
      const question = kind === 'redrive' ? `Redrive ${plural(matched, 'dead letter', 'dead letters')} from ${where}?` : `Purge ${plural(matched, 'dead letter', 'dead letters')} from ${where} for good?`;
      const ok = await confirmDialog(question, kind === 'redrive' ? 'Redrive' : 'Purge', kind !== 'redrive');
      if (!ok) {
        notice(`Nothing ${kind === 'redrive' ? 'redriven' : 'purged'}`);
        return;
      }
      if (kind === 'redrive') {
        const r = await post(`/admin/dead-letters/${seg(queue)}/redrive`, { ...filters, 'reset-attempts': resetAll.checked });
        const skipped = (r && r.skipped) || [];
        const skippedText = skipped.length ? `; skipped ${skipped.map((s) => `${s.sequence} (${s.reason})`).join(', ')}` : '';
        notice(`Redrove ${plural(Number(r && r.redriven) || 0, 'dead letter', 'dead letters')} from ${queue}${skippedText}`);
      } else {
        const r = await post(`/admin/dead-letters/${seg(queue)}/purge`, { ...filters, confirm: true });
        notice(`Purged ${plural(Number(r && r.purged) || 0, 'dead letter', 'dead letters')} from ${queue}`);
      }
      state.from = null;
      state.stack = [];
      await reload();
      overview.refresh().catch(() => {});
    });
  }
  redriveAll.addEventListener('click', () => bulkAction(redriveAll, 'redrive'));
  purgeAll.addEventListener('click', () => bulkAction(purgeAll, 'purge'));

  try {
    await load();
  } catch (err) {
    if (state.from !== null || state.stack.length) {
      // A remembered page that no longer exists: start over.
      state.from = null;
      state.stack = [];
      await load();
    } else {
      throw err;
    }
  }
  return {};
}
