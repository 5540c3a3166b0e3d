// partners.js: the partners view (#/partners): a card per partner, kept up to date by the
// overview stream, and the reload / canary actions.

import { el, replace, keyedChildren } from './dom.js';
import { post, seg } from './api.js';
import { notice, busy } from './ui.js';
import { shortHash, localClock } from './format.js';
import * as overview from './overview.js';
import { partnerCard } from './partner-card.js';

function actionsFor(name) {
  const base = `/admin/partners/${seg(name)}`;
  return {
    async reload(button) {
      await busy(button, async () => {
        const r = await post(`${base}/reload`);
        if (r && r.result === 'replaced') {
          notice(`${name}: replaced ${shortHash(r.from)} → ${shortHash(r.to)}`);
        } else if (r && r.result === 'unchanged') {
          notice(`${name}: unchanged (version ${shortHash(r.version)})`);
        } else {
          notice(`${name}: reloaded`);
        }
        await overview.refresh();
      });
    },
    async canary(form) {
      const submit = form.querySelector('button[type="submit"]');
      await busy(submit, async () => {
        const data = new FormData(form);
        const body = {
          component: String(data.get('component')).trim(),
          percent: Number(data.get('percent')),
          margin: Number(data.get('margin')),
          window: Number(data.get('window')),
        };
        const sha = String(data.get('component-sha256') || '').trim();
        if (sha) body['component-sha256'] = sha;
        const r = await post(`${base}/canary`, body);
        notice(`${name}: canary ${shortHash(r && r.canary)} started on ${body.percent} % of messages`);
        form.reset();
        await overview.refresh();
      });
    },
    async promote(button) {
      await busy(button, async () => {
        const r = await post(`${base}/canary/promote`);
        notice(`${name}: promoted ${shortHash(r && r.promote)}`);
        await overview.refresh();
      });
    },
    async abort(button) {
      await busy(button, async () => {
        const r = await post(`${base}/canary/abort`);
        notice(`${name}: aborted canary ${shortHash(r && r.abort)}`);
        await overview.refresh();
      });
    },
  };
}

export async function render(view) {
  const data = await overview.refresh();
  const asOf = el('time');
  const subtitle = el('p', { class: 'subtitle muted' });
  const grid = el('div', { class: 'partner-grid' });
  const empty = el('p', { class: 'empty-state', id: 'partners-empty' }, 'No partners are configured on this host.');
  replace(view, el('div', { class: 'view-head' }, el('h1', null, 'Partners'), subtitle), grid);
  const cards = new Map();
  let bucket = null;

  function update(d) {
    if (!d) return;
    bucket = d['bucket-seconds'];
    const at = d.at;
    asOf.textContent = at ? localClock(at) : '–';
    if (at) asOf.setAttribute('datetime', at);
    if (at) asOf.setAttribute('title', at);
    replace(subtitle, 'as of ', asOf, bucket ? ` · activity in ${bucket} s buckets` : '');
    const partners = Array.isArray(d.partners) ? d.partners : [];
    keyedChildren(grid, cards, partners, (p) => String(p.partner), (name) => {
      const card = partnerCard(name, actionsFor(name));
      return { node: card.section, update: (p) => card.update(p, bucket) };
    });
    if (!partners.length && !empty.isConnected) grid.append(empty);
    if (partners.length && empty.isConnected) empty.remove();
  }

  update(data);
  const unsubscribe = overview.subscribe(update);
  return { destroy: unsubscribe };
}
