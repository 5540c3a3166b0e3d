// signin.js: the session: asking the host whether we are signed in, signing in with the
// token form (form#signin) or automatically when no token is required, and signing out.

import { el, replace } from './dom.js';
import { api, setCsrf, ApiError } from './api.js';

const SESSION = '/console/api/session';

/// GET the session; remembers the CSRF token. Returns the session object.
export async function session() {
  const s = await api('GET', SESSION, { allow401: true });
  if (s && typeof s.csrf === 'string') setCsrf(s.csrf);
  else setCsrf(null);
  return s || {};
}

/// POST a token; resolves to true when signed in. Throws ApiError with the host's text.
export async function signIn(token) {
  const r = await api('POST', SESSION, { body: { token }, allow401: true });
  if (!r || !r['signed-in']) throw new ApiError('the host did not sign us in', 401);
  setCsrf(r.csrf);
  return true;
}

export async function signOut() {
  try {
    await api('DELETE', SESSION, { allow401: true });
  } finally {
    setCsrf(null);
  }
}

/// Renders the sign-in form into view; onSignedIn() runs after a successful sign-in.
/// tokenRequired false (after an explicit sign-out) lets the operator sign in with no token.
export function render(view, { onSignedIn, message, tokenRequired = true }) {
  const token = el('input', {
    id: 'token',
    name: 'token',
    type: 'password',
    autocomplete: 'current-password',
    spellcheck: 'false',
    required: tokenRequired,
    'aria-describedby': 'signin-error',
  });
  const submit = el('button', { id: 'signin-submit', type: 'submit', class: 'primary' }, 'Sign in');
  const error = el('p', { id: 'signin-error', class: 'error-text', role: 'alert' }, message || '');
  error.hidden = !message;
  const form = el(
    'form',
    { id: 'signin', class: 'card signin', autocomplete: 'off' },
    el('h1', null, 'Sign in to sagahost'),
    el('p', { class: 'muted' }, tokenRequired ? 'Paste the admin token of this host. It is sent once and kept in an HttpOnly cookie, never shown.' : 'This host needs no token.'),
    // For password managers only; the host has a single admin token and no user names.
    el('input', { type: 'text', name: 'username', autocomplete: 'username', value: 'sagahost', hidden: true, tabindex: -1, 'aria-hidden': 'true' }),
    el('label', { class: 'field wide', for: 'token' }, el('span', { class: 'field-label' }, 'Admin token'), token),
    error,
    el('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const value = token.value;
    token.value = '';
    submit.disabled = true;
    error.hidden = true;
    error.textContent = '';
    try {
      await signIn(value);
      onSignedIn();
    } catch (err) {
      error.textContent = err && err.message ? err.message : String(err);
      error.hidden = false;
      token.focus();
    } finally {
      submit.disabled = false;
    }
  });
  replace(view, form);
  token.focus();
}
