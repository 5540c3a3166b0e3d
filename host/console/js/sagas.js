// sagas.js: the sagas view (#/sagas?by=record&q=...): search by saga id, record id or
// correlation id, and each saga's steps with links to their traces.

import { el, replace, externalLink } from './dom.js';
import { get } from './api.js';
import { timeEl, hashEl } from './format.js';

const BY = [
  ['saga', 'Saga id'],
  ['record', 'Record id'],
  ['correlation', 'Correlation id'],
];

/// A badge class for an outcome: ok, warn, bad or neutral.
function tone(outcome) {
  const o = String(outcome || '').toLowerCase();
  if (o === 'completed' || o === 'succeeded' || o === 'forwarded') return 'ok';
  if (o.includes('dead') || o.includes('fail') || o.includes('reject')) return 'bad';
  if (o.includes('retr') || o.includes('compens') || o.includes('running') || o.includes('progress')) return 'warn';
  return 'neutral';
}

export const badge = (outcome) => el('span', { class: `badge tone-${tone(outcome)}` }, outcome ?? '–');

const searchHref = (by, q) => `#/sagas?${new URLSearchParams({ by, q })}`;

function stepRow(s) {
  const trace = s['trace-url'] ? externalLink(s['trace-url'], 'trace', { class: 'trace', title: s['trace-id'] || s['trace-url'] }) : null;
  const traceCell = trace || (s['trace-id'] ? el('span', { class: 'mono muted', title: s['trace-id'] }, String(s['trace-id']).slice(0, 12)) : '');
  return el(
    'tr',
    { class: s.compensation ? 'step compensation' : 'step' },
    el('td', { class: 'nowrap', data: { field: 'at' } }, timeEl(s.at)),
    el('td', { class: 'mono', data: { field: 'partner' } }, s.partner ?? '–'),
    el('td', { data: { field: 'version' } }, hashEl(s.version)),
    el('td', { class: 'num', data: { field: 'step' } }, String(s.step ?? '–')),
    el('td', { class: 'num', data: { field: 'attempt' } }, String(s.attempt ?? '–')),
    el('td', { data: { field: 'outcome' } }, badge(s.outcome)),
    el('td', { data: { field: 'compensation' } }, s.compensation ? 'yes' : 'no'),
    el('td', { class: 'wrap', data: { field: 'reason' } }, s.reason ?? ''),
    el('td', { class: 'mono small', data: { field: 'queue' } }, s.queue ?? '', s['message-id'] ? el('div', { class: 'muted', title: 'message id' }, s['message-id']) : null),
    el('td', { data: { field: 'trace' } }, traceCell),
  );
}

function sagaSection(s) {
  const id = String(s['saga-id']);
  const record = s['record-id']
    ? el('a', { class: 'mono', href: searchHref('record', String(s['record-id'])), title: 'All sagas of this record' }, String(s['record-id']))
    : el('span', { class: 'muted' }, '–');
  const correlation = s['correlation-id']
    ? el('a', { class: 'mono', href: searchHref('correlation', String(s['correlation-id'])), title: 'All sagas with this correlation id' }, String(s['correlation-id']))
    : el('span', { class: 'muted' }, '–');
  const steps = Array.isArray(s.steps) ? s.steps : [];
  const headings = ['At', 'Partner', 'Version', 'Step', 'Attempt', 'Outcome', 'Compensation', 'Reason', 'Queue / message', 'Trace'];
  return el(
    'section',
    { class: 'saga card', data: { saga: id }, 'aria-label': `Saga ${id}` },
    el('header', { class: 'card-head' }, el('h2', { class: 'mono', data: { field: 'saga-id' } }, id), el('span', { data: { field: 'saga-outcome' } }, badge(s.outcome))),
    el(
      'dl',
      { class: 'meta inline-meta' },
      el('dt', null, 'Record'),
      el('dd', { data: { field: 'record-id' } }, record, s.entity ? el('span', { class: 'muted', data: { field: 'entity' } }, ` (${s.entity})`) : null),
      el('dt', null, 'Correlation'),
      el('dd', { data: { field: 'correlation-id' } }, correlation),
      el('dt', null, 'Started'),
      el('dd', null, timeEl(s['started-at'])),
      el('dt', null, 'Last step'),
      el('dd', null, timeEl(s['last-at'])),
    ),
    el(
      'div',
      { class: 'table-wrap' },
      el('table', { class: 'steps grid' }, el('thead', null, el('tr', null, headings.map((h) => el('th', { scope: 'col' }, h)))), el('tbody', null, steps.map(stepRow))),
    ),
  );
}

export async function render(view, params) {
  const by = BY.some(([value]) => value === params.by) ? params.by : 'record';
  const q = (params.q || '').trim();

  const select = el('select', { id: 'saga-by', name: 'by', 'aria-label': 'Search by' }, BY.map(([value, label]) => el('option', { value }, label)));
  select.value = by;
  const input = el('input', { id: 'saga-query', name: 'q', type: 'search', autocomplete: 'off', spellcheck: 'false', placeholder: 'empty: the most recent sagas', 'aria-label': 'Search for' });
  input.value = q;
  const submit = el('button', { id: 'saga-search', type: 'submit', class: 'primary' }, 'Search');
  const form = el('form', { id: 'saga-form', class: 'filters', role: 'search' }, el('label', { class: 'field' }, el('span', { class: 'field-label' }, 'By'), select), el('label', { class: 'field grow' }, el('span', { class: 'field-label' }, 'Id'), input), el('div', { class: 'filter-buttons' }, submit));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const query = input.value.trim();
    const target = query ? searchHref(select.value, query) : `#/sagas?${new URLSearchParams({ by: select.value })}`;
    if (location.hash === target) window.dispatchEvent(new HashChangeEvent('hashchange'));
    else location.hash = target;
  });

  const result = await get('/admin/sagas', { by, q, limit: 20 });
  const sagas = (result && result.sagas) || [];
  const keep = (result && result.keep) || {};
  const keepNote = el('p', { id: 'saga-keep', class: 'muted' }, `The host keeps the last ${keep.days ?? '?'} days / ${keep.steps ?? '?'} steps of sagas.`);
  const label = BY.find(([value]) => value === by)[1].toLowerCase();
  const heading = q ? `${sagas.length} ${sagas.length === 1 ? 'saga' : 'sagas'} for ${label} ${q}` : `The ${sagas.length} most recent ${sagas.length === 1 ? 'saga' : 'sagas'}`;
  const results = el('div', { id: 'saga-results' });
  if (sagas.length) {
    results.append(el('p', { class: 'subtitle muted' }, heading), ...sagas.map(sagaSection));
  } else {
    results.append(el('p', { id: 'saga-empty', class: 'empty-state' }, q ? `No saga found for ${label} ${q}.` : 'No sagas recorded yet.'));
  }
  replace(view, el('div', { class: 'view-head' }, el('h1', null, 'Sagas')), form, keepNote, results);
  return { focus: q ? null : input };
}
