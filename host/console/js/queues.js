// queues.js: the queues view (#/queues): the depth of every queue from the overview
// stream, with the dead-letter count linking to that queue's dead letters.

import { el, replace, setText, routeLink, keyedChildren } from './dom.js';
import { count, localClock } from './format.js';
import * as overview from './overview.js';

function row(q) {
  const cells = {
    active: el('td', { class: 'num', data: { field: 'active' } }),
    scheduled: el('td', { class: 'num', data: { field: 'scheduled' } }),
    deadLink: routeLink(['dead-letters', q.queue], ''),
    error: el('td', { class: 'error-text', data: { field: 'error' } }),
    partner: el('td', { class: 'mono', data: { field: 'partner' } }),
  };
  const dead = el('td', { class: 'num', data: { field: 'dead-lettered' } }, cells.deadLink);
  const tr = el('tr', { data: { queue: q.queue } }, el('th', { scope: 'row', class: 'mono' }, q.queue), cells.partner, cells.active, cells.scheduled, dead, cells.error);
  return {
    tr,
    update(next) {
      setText(cells.partner, next.partner ?? '–');
      setText(cells.active, count(next.active));
      setText(cells.scheduled, count(next.scheduled));
      const n = next['dead-lettered'];
      setText(cells.deadLink, n === null || n === undefined ? '?' : count(n));
      cells.deadLink.setAttribute('title', `Dead letters on ${next.queue}`);
      dead.classList.toggle('bad', Number(n) > 0);
      setText(cells.error, next.error ?? '');
      tr.classList.toggle('has-error', Boolean(next.error));
    },
  };
}

export async function render(view) {
  const data = await overview.refresh();
  const subtitle = el('p', { class: 'subtitle muted' });
  const tbody = el('tbody');
  const table = el(
    'table',
    { id: 'queues', class: 'grid' },
    el(
      'thead',
      null,
      el('tr', null, el('th', { scope: 'col' }, 'Queue'), el('th', { scope: 'col' }, 'Partner'), el('th', { scope: 'col', class: 'num' }, 'Active'), el('th', { scope: 'col', class: 'num' }, 'Scheduled'), el('th', { scope: 'col', class: 'num' }, 'Dead-lettered'), el('th', { scope: 'col' }, 'Error')),
    ),
    tbody,
  );
  const empty = el('p', { class: 'empty-state', id: 'queues-empty' }, 'This host uses no queues.');
  replace(view, el('div', { class: 'view-head' }, el('h1', null, 'Queues'), subtitle), el('div', { class: 'table-wrap' }, table));
  const rows = new Map();

  function update(d) {
    if (!d) return;
    setText(subtitle, d.at ? `as of ${localClock(d.at)}` : '');
    subtitle.setAttribute('title', d.at || '');
    const queues = Array.isArray(d.queues) ? d.queues : [];
    keyedChildren(tbody, rows, queues, (q) => String(q.queue), (name, q) => {
      const r = row({ ...q, queue: name });
      return { node: r.tr, update: (q) => r.update({ ...q, queue: name }) };
    });
    if (!queues.length && !empty.isConnected) table.after(empty);
    if (queues.length && empty.isConnected) empty.remove();
  }

  update(data);
  return { destroy: overview.subscribe(update) };
}
