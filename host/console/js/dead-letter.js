// dead-letter.js: one dead letter (#/dead-letters/QUEUE/SEQ): its reason, properties, saga
// state, decoded Dataverse context and raw body, with redrive and purge.

import { el, replace, routeLink, definitions } from './dom.js';
import { get, post, del, seg } from './api.js';
import { notice, busy, confirmDialog } from './ui.js';
import { timeEl, hashEl } from './format.js';
import * as overview from './overview.js';

function propertiesTable(properties) {
  const rows = (Array.isArray(properties) ? properties : []).map((pair) => {
    const [name, value] = Array.isArray(pair) ? pair : [String(pair), ''];
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    return el('tr', null, el('th', { scope: 'row', class: 'mono' }, String(name)), el('td', { class: 'mono wrap' }, text ?? ''));
  });
  const table = el(
    'table',
    { id: 'dl-properties', class: 'grid' },
    el('thead', null, el('tr', null, el('th', { scope: 'col' }, 'Property'), el('th', { scope: 'col' }, 'Value'))),
    el('tbody', null, rows.length ? rows : el('tr', null, el('td', { colspan: 2, class: 'muted' }, 'No application properties'))),
  );
  return table;
}

function sagaBlock(saga) {
  const box = el('section', { id: 'dl-saga', class: 'card', 'aria-label': 'Saga state' }, el('h2', null, 'Saga'));
  if (!saga) {
    box.append(el('p', { class: 'muted' }, 'This message carries no saga state.'));
    return box;
  }
  box.append(
    definitions(
      [
        ['Saga id', el('a', { class: 'saga-link', href: `#/sagas?${new URLSearchParams({ by: 'saga', q: String(saga.id ?? '') })}`, title: 'Find this saga' }, String(saga.id ?? '–')), { class: 'mono', data: { field: 'saga-id' } }],
        ['Step', String(saga.step ?? '–'), { data: { field: 'saga-step' } }],
        ['Attempt', String(saga.attempt ?? '–'), { data: { field: 'saga-attempt' } }],
      ],
      { class: 'meta' },
    ),
  );
  const history = Array.isArray(saga.history) ? saga.history : [];
  const list = el('ol', { class: 'saga-history' });
  for (const h of history) {
    const comp = h['compensation-data'];
    list.append(
      el(
        'li',
        null,
        el('span', { class: 'mono' }, h.partner ?? '–'),
        ' ',
        hashEl(h['component-version']),
        comp !== null && comp !== undefined ? el('pre', { class: 'compensation' }, typeof comp === 'string' ? comp : JSON.stringify(comp, null, 2)) : null,
      ),
    );
  }
  box.append(el('h3', null, 'Completed steps'), history.length ? list : el('p', { class: 'muted' }, 'No completed steps'));
  return box;
}

export async function render(view, params) {
  const queue = params.queue;
  const sequence = params.sequence;
  const base = `/admin/dead-letters/${seg(queue)}/${seg(sequence)}`;
  const l = await get(base);
  const back = routeLink(['dead-letters', queue], `← Dead letters on ${queue}`, { class: 'back' });

  const reset = el('input', { id: 'dl-reset-attempts', type: 'checkbox' });
  const redrive = el('button', { id: 'dl-redrive', type: 'button', class: 'primary' }, 'Redrive');
  const purge = el('button', { id: 'dl-purge', type: 'button', class: 'danger' }, 'Purge');
  const backToList = () => {
    location.hash = `#/dead-letters/${seg(queue)}`;
  };
  redrive.addEventListener('click', () =>
    busy(redrive, async () => {
      const r = await post(`${base}/redrive`, undefined, reset.checked ? { 'reset-attempts': 'true' } : undefined);
      notice(`Redrove dead letter ${r && r.redriven !== undefined ? r.redriven : sequence} to ${(r && r.queue) || queue}${reset.checked ? ' with its attempts reset' : ''}`);
      overview.refresh().catch(() => {});
      backToList();
    }),
  );
  purge.addEventListener('click', () =>
    busy(purge, async () => {
      if (!(await confirmDialog(`Purge dead letter ${sequence} from ${queue} for good?`, 'Purge'))) return;
      const r = await del(base);
      notice(`Purged dead letter ${r && r.purged !== undefined ? r.purged : sequence} from ${queue}`);
      overview.refresh().catch(() => {});
      backToList();
    }),
  );

  const decoded = l.decoded === null || l.decoded === undefined ? 'Not decoded' : JSON.stringify(l.decoded, null, 2);
  const decodeError = l['decode-error'] ? el('p', { id: 'dl-decode-error', class: 'error-text' }, l['decode-error']) : null;

  replace(
    view,
    el('p', null, back),
    el(
      'div',
      { class: 'view-head' },
      el('h1', null, 'Dead letter ', el('span', { class: 'mono' }, String(l.sequence ?? sequence))),
      el('span', { class: 'muted' }, 'on ', el('span', { class: 'mono' }, queue)),
    ),
    el(
      'section',
      { class: 'card letter-summary' },
      definitions(
        [
          ['Reason', l.reason ?? '–', { data: { field: 'reason' }, class: 'strong' }],
          ['Description', l.description ?? '–', { data: { field: 'description' }, class: 'wrap' }],
          ['Partner', l.partner ?? '–', { data: { field: 'partner' }, class: 'mono' }],
          ['Version', hashEl(l.version), { data: { field: 'version' } }],
          ['Message id', l['message-id'] ?? '–', { data: { field: 'message-id' }, class: 'mono' }],
          ['Correlation id', l['correlation-id'] ?? '–', { data: { field: 'correlation-id' }, class: 'mono' }],
          ['Content type', l['content-type'] ?? '–', { data: { field: 'content-type' }, class: 'mono' }],
          ['Enqueued', timeEl(l['enqueued-time']), { data: { field: 'enqueued-time' } }],
          ['Dead-lettered', timeEl(l['dead-lettered-at']), { data: { field: 'dead-lettered-at' } }],
          ['Deliveries', String(l['delivery-count'] ?? '–'), { data: { field: 'delivery-count' } }],
        ],
        { class: 'meta wide' },
      ),
      el(
        'div',
        { class: 'actions' },
        el('label', { class: 'check', for: 'dl-reset-attempts' }, reset, ' reset attempts'),
        redrive,
        purge,
      ),
    ),
    sagaBlock(l.saga),
    el('section', { class: 'card' }, el('h2', null, 'Properties'), el('div', { class: 'table-wrap' }, propertiesTable(l.properties))),
    el('section', { class: 'card' }, el('h2', null, 'Decoded context'), decodeError, el('pre', { id: 'dl-decoded', class: 'code', tabindex: 0 }, decoded)),
    el('section', { class: 'card' }, el('h2', null, 'Body'), el('pre', { id: 'dl-body', class: 'code', tabindex: 0 }, l.body ?? '')),
  );
  return {};
}
