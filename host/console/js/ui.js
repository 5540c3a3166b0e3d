// ui.js: the shared page furniture: the #notice line, the #confirm dialog, the #live
// indicator, and buttons that show they are busy while a request runs.

import { Unauthorized } from './api.js';

const $ = (id) => document.getElementById(id);

/// Shows the result of the last action.
export function notice(text) {
  const node = $('notice');
  node.classList.remove('error');
  node.textContent = String(text);
  node.hidden = false;
}

/// Shows an error in the notice area (not for 401: the sign-in view says it).
export function noticeError(err) {
  if (err instanceof Unauthorized) return;
  const node = $('notice');
  node.classList.add('error');
  node.textContent = String(err && err.message ? err.message : err);
  node.hidden = false;
}

export function clearNotice() {
  const node = $('notice');
  node.classList.remove('error');
  node.textContent = '';
  node.hidden = true;
}

/// Asks in the in-page dialog. Resolves true for #confirm-yes, false otherwise.
/// danger: style #confirm-yes as a destructive action.
export function confirmDialog(text, yesLabel = 'Confirm', danger = true) {
  const dialog = $('confirm');
  const yes = $('confirm-yes');
  const no = $('confirm-no');
  $('confirm-text').textContent = text;
  yes.textContent = yesLabel;
  yes.classList.toggle('danger', danger);
  yes.classList.toggle('primary', !danger);
  if (dialog.open) dialog.close('');
  return new Promise((resolve) => {
    const done = (answer) => {
      yes.removeEventListener('click', onYes);
      no.removeEventListener('click', onNo);
      dialog.removeEventListener('close', onClose);
      resolve(answer);
    };
    const onYes = () => {
      done(true);
      dialog.close('yes');
    };
    const onNo = () => {
      done(false);
      dialog.close('no');
    };
    const onClose = () => done(false);
    yes.addEventListener('click', onYes);
    no.addEventListener('click', onNo);
    dialog.addEventListener('close', onClose);
    dialog.returnValue = '';
    dialog.showModal();
    no.focus();
  });
}

/// Sets the #live indicator: 'live', 'reconnecting', 'connecting' or 'off'.
export function setLive(state) {
  const node = $('live');
  const labels = { live: 'live', reconnecting: 'reconnecting…', connecting: 'connecting…', off: '' };
  node.textContent = labels[state] ?? '';
  node.dataset.state = state;
  node.hidden = state === 'off';
}

/// Runs action while button is disabled and marked busy; errors go to the notice.
export async function busy(button, action) {
  if (button.disabled) return undefined;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await action();
  } catch (err) {
    noticeError(err);
    return undefined;
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}
