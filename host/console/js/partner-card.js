// partner-card.js: one partner's card (section.partner) and its in-place update from each
// overview snapshot. Forms are created once and kept, so live updates never wipe typing.

import { el, setText, setAttr, replace, definitions } from './dom.js';
import { chart, drawBars } from './charts.js';
import { timeEl, updateTime, shortHash, shortDigest, count, failureRate, fractionPercent, bytes } from './format.js';

const STATES = ['serving', 'canary', 'degraded'];

function stat(field, label) {
  const value = el('span', { class: 'stat-value', data: { field } }, '–');
  return { node: el('div', { class: 'stat' }, value, el('span', { class: 'stat-label' }, label)), value };
}

function numberInput(name, value, attrs) {
  return el('input', { name, type: 'number', value, required: true, ...attrs });
}

/// The start-canary form; onSubmit(form) is called with validated input.
function canaryForm(onSubmit) {
  const form = el(
    'form',
    { class: 'start-canary', novalidate: false },
    el('h3', null, 'Start a canary'),
    el(
      'label',
      { class: 'field wide' },
      el('span', { class: 'field-label' }, 'Component'),
      el('input', { name: 'component', type: 'text', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'components/x.wasm, oci://… or https://…' }),
    ),
    el(
      'label',
      { class: 'field wide' },
      el('span', { class: 'field-label' }, 'SHA-256 (https only)'),
      el('input', { name: 'component-sha256', type: 'text', autocomplete: 'off', spellcheck: 'false', pattern: '[0-9a-fA-F]{64}', placeholder: 'optional' }),
    ),
    el(
      'div',
      { class: 'field-row' },
      el('label', { class: 'field' }, el('span', { class: 'field-label' }, 'Percent'), numberInput('percent', 10, { min: 1, max: 100, step: 1 })),
      el('label', { class: 'field' }, el('span', { class: 'field-label' }, 'Margin'), numberInput('margin', 0.05, { min: 0, max: 1, step: 'any' })),
      el('label', { class: 'field' }, el('span', { class: 'field-label' }, 'Window'), numberInput('window', 50, { min: 1, step: 1 })),
      el('button', { type: 'submit', class: 'primary' }, 'Start canary'),
    ),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!form.reportValidity()) return;
    onSubmit(form);
  });
  return form;
}

/// The canary block shown while a canary runs.
function canaryBlock(actions) {
  const f = (field) => el('dd', { data: { field } });
  const fields = {
    version: el('span', { class: 'mono', data: { field: 'canary-version' } }),
    percent: f('canary-percent'),
    counts: f('canary-counts'),
    margin: f('canary-margin'),
  };
  const meter = el('meter', { min: 0, max: 1, value: 0, title: 'candidate results in the window' });
  const promote = el('button', { type: 'button', class: 'promote primary' }, 'Promote');
  const abort = el('button', { type: 'button', class: 'abort danger' }, 'Abort');
  promote.addEventListener('click', () => actions.promote(promote));
  abort.addEventListener('click', () => actions.abort(abort));
  const node = el(
    'div',
    { class: 'canary', role: 'group', 'aria-label': 'Canary' },
    el('h3', null, 'Canary ', fields.version),
    el('dl', { class: 'compact' }, el('dt', null, 'Traffic'), fields.percent, el('dt', null, 'Results'), fields.counts, el('dt', null, 'Margin'), fields.margin),
    el('div', { class: 'canary-progress' }, el('span', { class: 'muted' }, 'window'), meter),
    el('div', { class: 'actions' }, promote, abort),
  );
  return {
    node,
    update(c) {
      setText(fields.version, shortHash(c.version));
      setAttr(fields.version, 'title', c.version);
      setText(fields.percent, `${c.percent} %`);
      const cr = c['candidate-results'] ?? 0;
      const cf = c['candidate-failures'] ?? 0;
      const sr = c['stable-results'] ?? 0;
      const sf = c['stable-failures'] ?? 0;
      setText(fields.counts, `candidate ${cf}/${cr} failed, stable ${sf}/${sr} failed`);
      setAttr(fields.counts, 'title', `candidate failure rate ${failureRate(cf, cr)}, stable ${failureRate(sf, sr)}`);
      setText(fields.margin, `${fractionPercent(c.margin)} over a window of ${c.window}`);
      const window = Math.max(Number(c.window) || 1, 1);
      meter.max = window;
      meter.value = Math.min(cr, window);
      setAttr(meter, 'title', `${Math.min(cr, window)} of ${window} candidate results`);
    },
  };
}

function historyItem(h) {
  const arrow = h.from || h.to ? el('span', { class: 'mono hashes' }, h.from ? el('span', { title: h.from }, shortHash(h.from)) : '∅', ' → ', h.to ? el('span', { title: h.to }, shortHash(h.to)) : '∅') : null;
  return el(
    'li',
    null,
    timeEl(h.at, { class: 'history-at' }),
    el('span', { class: `event event-${String(h.event).replace(/[^a-z-]/g, '')}` }, h.event),
    arrow,
    h.detail ? el('span', { class: 'detail' }, h.detail) : null,
  );
}

/// A card for partner name; actions: {reload(button), promote(button), abort(button), canary(form)}.
export function partnerCard(name, actions) {
  const version = el('span', { class: 'version mono' });
  const digest = el('span', { class: 'digest mono' });
  const source = el('span', { class: 'source mono' });
  const size = el('span');
  const loaded = el('time');
  const pulled = el('time');
  const reloads = el('span');
  const state = el('span', { class: 'state badge' });
  const stats = {
    'in-flight': stat('in-flight', 'in flight'),
    processed: stat('processed', 'processed'),
    failed: stat('failed', 'failed'),
    'failure-rate': stat('failure-rate', 'failure rate'),
    retried: stat('retried', 'retried'),
    'limit-hits': stat('limit-hits', 'limit hits'),
  };
  const throughput = chart('chart-throughput');
  const failures = chart('chart-failures');
  const throughputCaption = el('figcaption', null, el('span', { class: 'key key-processed' }, 'processed'), el('span', { class: 'span' }));
  const failuresCaption = el(
    'figcaption',
    null,
    el('span', { class: 'key key-failed' }, 'failed'),
    el('span', { class: 'key key-retried' }, 'retried'),
    el('span', { class: 'key key-limit' }, 'limit hits'),
  );
  const pullError = el('p', { class: 'error-text' }, el('strong', null, 'Last pull error: '), el('span', { data: { field: 'last-pull-error' } }));
  const lastError = el('p', { class: 'error-text' }, el('strong', null, 'Last error: '), el('span', { data: { field: 'last-error' } }));
  const lastCanary = el('p', { class: 'last-canary' }, el('strong', null, 'Last canary: '), el('span', { data: { field: 'last-canary' } }));
  const errorSlot = el('div', { class: 'error-slot' });
  const canarySlot = el('div', { class: 'canary-slot' });
  const history = el('ul', { class: 'reload-history' });
  const reload = el('button', { type: 'button', class: 'reload' }, 'Reload');
  reload.addEventListener('click', () => actions.reload(reload));
  const form = canaryForm((f) => actions.canary(f));
  const block = canaryBlock(actions);
  let historyKey = '';

  const section = el(
    'section',
    { class: 'partner card', data: { partner: name }, 'aria-label': `Partner ${name}` },
    el('header', { class: 'card-head' }, el('h2', null, name), state, el('div', { class: 'spacer' }), reload),
    definitions(
      [
        ['Version', version],
        ['Digest', digest],
        ['Source', source],
        ['Size', size],
        ['Loaded', loaded],
        ['Last pulled', pulled],
        ['Reloads', reloads],
      ],
      { class: 'meta' },
    ),
    el('div', { class: 'stats' }, Object.values(stats).map((s) => s.node)),
    el(
      'div',
      { class: 'charts' },
      el('figure', null, throughput, throughputCaption),
      el('figure', null, failures, failuresCaption),
    ),
    errorSlot,
    canarySlot,
    el('div', { class: 'history-box' }, el('h3', null, 'History'), history),
  );

  function update(p, bucketSeconds) {
    setText(version, shortHash(p.version));
    setAttr(version, 'title', p.version);
    setText(digest, p.digest ? shortDigest(p.digest) : 'none');
    setAttr(digest, 'title', p.digest || 'not pulled from a registry');
    digest.classList.toggle('muted', !p.digest);
    setText(source, p.source ?? '–');
    setAttr(source, 'title', p.source);
    setText(size, bytes(p.size));
    setAttr(size, 'title', p.size == null ? null : `${p.size} bytes`);
    updateTime(loaded, p['loaded-at']);
    updateTime(pulled, p['last-pulled-at']);
    setText(reloads, `${count(p.reloads)} (${count(p['failed-reloads'])} failed)`);

    const st = STATES.includes(p.state) ? p.state : 'unknown';
    setText(state, p.state ?? 'unknown');
    setAttr(state, 'class', `state badge state-${st}`);
    setAttr(section, 'data-state', st);

    const a = p.activity || {};
    setText(stats['in-flight'].value, count(a['in-flight'] ?? 0));
    setText(stats.processed.value, count(a.processed ?? 0));
    setText(stats.failed.value, count(a.failed ?? 0));
    setText(stats['failure-rate'].value, failureRate(a.failed, a.processed));
    setText(stats.retried.value, count(a.retried ?? 0));
    setText(stats['limit-hits'].value, count(a['limit-hits'] ?? 0));
    stats.failed.node.classList.toggle('bad', (a.failed ?? 0) > 0);
    stats['limit-hits'].node.classList.toggle('warn', (a['limit-hits'] ?? 0) > 0);

    const buckets = a.buckets || [];
    const span = buckets.length * (bucketSeconds || 0);
    const over = span ? ` over ${span >= 120 ? `${Math.round(span / 60)} min` : `${span} s`}` : '';
    drawBars(throughput, buckets, [{ key: 'processed', cls: 'bar-processed', label: 'processed' }], `${p.partner}: processed per bucket${over}`, bucketSeconds);
    drawBars(
      failures,
      buckets,
      [
        { key: 'failed', cls: 'bar-failed', label: 'failed' },
        { key: 'retried', cls: 'bar-retried', label: 'retried' },
        { key: 'limit-hits', cls: 'bar-limit', label: 'limit hits' },
      ],
      `${p.partner}: failed, retried and limit hits per bucket${over}`,
      bucketSeconds,
    );
    setText(throughputCaption.lastChild, over ? `per ${bucketSeconds} s,${over}` : '');

    const errors = [];
    if (p['last-error']) {
      setText(lastError.lastChild, p['last-error']);
      errors.push(lastError);
    }
    if (p['last-pull-error']) {
      setText(pullError.lastChild, p['last-pull-error']);
      errors.push(pullError);
    }
    if (p['last-canary']) {
      setText(lastCanary.lastChild, p['last-canary']);
      errors.push(lastCanary);
    }
    if (errorSlot.childElementCount !== errors.length || errors.some((n, i) => errorSlot.children[i] !== n)) {
      replace(errorSlot, errors);
    }

    if (p.canary) {
      block.update(p.canary);
      if (form.isConnected) form.remove();
      if (!block.node.isConnected) canarySlot.append(block.node);
    } else {
      if (block.node.isConnected) block.node.remove();
      if (!form.isConnected) canarySlot.append(form);
    }

    const items = p.history || [];
    const key = JSON.stringify(items);
    if (key !== historyKey) {
      historyKey = key;
      replace(history, items.map(historyItem)); // empty: the CSS says "No reloads yet"
    }
  }

  return { section, update, form };
}
