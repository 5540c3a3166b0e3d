// main.js: start-up, the hash router (#/partners, #/queues, #/dead-letters[/Q[/SEQ]],
// #/sagas?by=&q=), the session life cycle (sign-in, 401, sign-out) and the live stream.

import { el, replace } from './dom.js';
import { setUnauthorizedHandler, setCsrf, Unauthorized } from './api.js';
import { noticeError, notice, busy, setLive } from './ui.js';
import * as overview from './overview.js';
import * as signin from './signin.js';
import * as partners from './partners.js';
import * as queues from './queues.js';
import * as deadLetters from './dead-letters.js';
import * as deadLetter from './dead-letter.js';
import * as sagas from './sagas.js';

const view = document.getElementById('view');
const signoutButton = document.getElementById('signout');

const VIEWS = {
  partners: { render: partners.render, title: 'Partners', nav: 'partners' },
  queues: { render: queues.render, title: 'Queues', nav: 'queues' },
  'dead-letters': { render: deadLetters.render, title: 'Dead letters', nav: 'dead-letters' },
  'dead-letter': { render: deadLetter.render, title: 'Dead letter', nav: 'dead-letters' },
  sagas: { render: sagas.render, title: 'Sagas', nav: 'sagas' },
};

let signedIn = false;
let navigation = 0; // bumped on every route change; stale renders are dropped
let active = null; // what the current view returned (destroy())
let autoSignIns = []; // when we signed in with no token lately (a guard against a loop)

function decode(part) {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/// The route in the hash: {name, queue?, sequence?, by?, q?}, or null when unknown.
function parseRoute() {
  const raw = location.hash.replace(/^#\/?/, '');
  const mark = raw.indexOf('?');
  const path = mark >= 0 ? raw.slice(0, mark) : raw;
  const query = new URLSearchParams(mark >= 0 ? raw.slice(mark + 1) : '');
  const parts = path.split('/').filter(Boolean).map(decode);
  switch (parts[0]) {
    case undefined:
      return null;
    case 'partners':
      return { name: 'partners' };
    case 'queues':
      return { name: 'queues' };
    case 'dead-letters':
      if (parts.length >= 3) return { name: 'dead-letter', queue: parts[1], sequence: parts[2] };
      return { name: 'dead-letters', queue: parts[1] };
    case 'sagas':
      return { name: 'sagas', by: query.get('by') || undefined, q: query.get('q') || '' };
    default:
      return null;
  }
}

function teardown() {
  if (active && typeof active.destroy === 'function') active.destroy();
  active = null;
}

function markNav(name) {
  for (const link of document.querySelectorAll('nav a[href^="#/"]')) {
    if (link.getAttribute('href') === `#/${name}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

async function route() {
  if (!signedIn) return;
  let r = parseRoute();
  if (!r) {
    history.replaceState(null, '', '#/partners');
    r = { name: 'partners' };
  }
  const token = ++navigation;
  const spec = VIEWS[r.name];
  teardown();
  markNav(spec.nav);
  document.title = `${spec.title} · sagahost`;
  view.removeAttribute('data-view');
  view.setAttribute('aria-busy', 'true');
  replace(view, el('p', { class: 'loading' }, `Loading ${spec.title.toLowerCase()}…`));
  const current = () => token === navigation;
  const ctx = {
    isCurrent: current,
    loading() {
      if (current()) {
        view.removeAttribute('data-view');
        view.setAttribute('aria-busy', 'true');
      }
    },
    loaded() {
      if (current()) {
        view.removeAttribute('aria-busy');
        view.setAttribute('data-view', r.name);
      }
    },
  };
  // Views render into a detached root, attached only if the route is still current.
  const root = el('div', { class: `view-root view-${r.name}` });
  try {
    const handle = (await spec.render(root, r, ctx)) || {};
    if (!current()) {
      if (typeof handle.destroy === 'function') handle.destroy();
      return;
    }
    active = handle;
    replace(view, root);
    if (handle.focus) handle.focus.focus({ preventScroll: true });
  } catch (err) {
    if (!current() || err instanceof Unauthorized) return;
    const retry = el('button', { type: 'button' }, 'Retry');
    retry.addEventListener('click', () => route());
    replace(
      view,
      el('div', { class: 'view-root' }, el('h1', null, spec.title), el('p', { class: 'error-text load-error' }, `Could not load: ${err && err.message ? err.message : err}`), retry),
    );
    noticeError(err);
  }
  ctx.loaded();
}

function setSignedIn(value) {
  signedIn = value;
  document.body.classList.toggle('signed-out', !value);
  signoutButton.hidden = !value;
}

function afterSignIn() {
  setSignedIn(true);
  overview.start();
  route();
}

/// Shows form#signin (data-view=signin).
function showForm(message, tokenRequired = true) {
  navigation++;
  teardown();
  setSignedIn(false);
  markNav('');
  document.title = 'Sign in · sagahost';
  view.removeAttribute('aria-busy');
  signin.render(view, { onSignedIn: afterSignIn, message, tokenRequired });
  view.setAttribute('data-view', 'signin');
}

/// Works out the session: signed in, sign in with no token, or the form.
async function enter(message) {
  let s;
  try {
    s = await signin.session();
  } catch (err) {
    showForm(`Cannot reach the host: ${err.message}`);
    return;
  }
  if (s['signed-in']) {
    afterSignIn();
    return;
  }
  autoSignIns = autoSignIns.filter((t) => Date.now() - t < 60_000);
  if (s['token-required'] === false && autoSignIns.length < 3) {
    autoSignIns.push(Date.now());
    try {
      await signin.signIn('');
      afterSignIn();
      return;
    } catch (err) {
      showForm(err.message, false);
      return;
    }
  }
  showForm(message, s['token-required'] !== false);
}

/// Any 401: stop everything and go back to sign-in.
function onUnauthorized(message) {
  if (!signedIn) return;
  setSignedIn(false);
  setCsrf(null);
  overview.stop();
  enter(message ? `Signed out: ${message}` : 'Your session ended; sign in again.');
}

async function signOut() {
  await busy(signoutButton, async () => {
    overview.stop();
    try {
      await signin.signOut();
    } catch (err) {
      noticeError(err);
    }
    let tokenRequired = true;
    try {
      tokenRequired = (await signin.session())['token-required'] !== false;
    } catch {
      // keep the form
    }
    notice('Signed out');
    showForm('', tokenRequired);
  });
}

function boot() {
  setUnauthorizedHandler(onUnauthorized);
  overview.setSignedOutHandler(() => onUnauthorized(''));
  setLive('off');
  setSignedIn(false);
  signoutButton.addEventListener('click', signOut);
  window.addEventListener('hashchange', () => route());
  enter();
}

boot();
