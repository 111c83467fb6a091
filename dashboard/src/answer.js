// Approving or rejecting a planned failover from the page: a dialog asks
// for the gateway's token (the API requires it), the operator's name and,
// for a rejection, why; it posts to /api/failovers/<id>/approve|reject and
// says what came of it. The token is kept for this tab only
// (sessionStorage), never in the URL or the page.

const $ = (id) => document.getElementById(id);

const TOKEN_KEY = 'regionguard.token';
const NAME_KEY = 'regionguard.approver';

let pending = null; // { id, verb, route }

function remembered(key) {
  try {
    return sessionStorage.getItem(key) || '';
  } catch {
    return '';
  }
}

function remember(key, value) {
  try {
    sessionStorage.setItem(key, value);
  } catch {
    // Storage off: the operator types it again next time.
  }
}

function showError(text) {
  const el = $('answer-error');
  el.textContent = text;
  el.hidden = !text;
}

/** Opens the dialog to `verb` ('approve' or 'reject') failover `id`. */
export function ask(verb, id, route) {
  pending = { id, verb, route };
  const approve = verb === 'approve';
  $('answer-title').textContent = approve ? 'Approve failover' : 'Reject failover';
  $('answer-what').textContent = approve
    ? `Failover ${id} (${route}) will run now: every step of its plan, verified, rolled back on failure.`
    : `Failover ${id} (${route}) will not run; an approval of it is ignored from then on.`;
  $('answer-confirm').textContent = approve ? 'Approve and run' : 'Reject';
  $('answer-confirm').className = approve ? 'approve' : 'reject';
  $('answer-reason-label').hidden = approve;
  $('answer-token').value = remembered(TOKEN_KEY);
  $('answer-name').value = remembered(NAME_KEY);
  $('answer-reason').value = '';
  showError('');
  $('answer').showModal();
  ($('answer-token').value ? $('answer-name') : $('answer-token')).focus();
}

function outcome(text, ok) {
  const el = $('answer-outcome');
  el.textContent = text;
  el.className = `answer-outcome ${ok ? 'ok' : 'failed'}`;
  el.hidden = false;
}

async function submit(e) {
  e.preventDefault();
  if (!pending) return;
  const { id, verb } = pending;
  const token = $('answer-token').value.trim();
  const approver = $('answer-name').value.trim();
  const body = { approver };
  if (verb === 'reject') body.reason = $('answer-reason').value.trim();
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  $('answer-confirm').disabled = true;
  showError('');
  let reply;
  let said;
  try {
    reply = await fetch(`api/failovers/${encodeURIComponent(id)}/${verb}`, {
      method: 'POST',
      headers,
      body: JSON.stringify(body),
    });
    said = await reply.json().catch(() => ({}));
  } catch (err) {
    showError(`The gateway did not answer (${err.message}); nothing was sent. Try again.`);
    $('answer-confirm').disabled = false;
    return;
  }
  $('answer-confirm').disabled = false;
  if (!reply.ok) {
    // 401: the token; 403: actions off; 409: not planned any more.
    const why = said.error || `HTTP ${reply.status}`;
    showError(reply.status === 401 ? `${why}: check the gateway's token (gateway.token).` : why);
    return;
  }
  if (token) remember(TOKEN_KEY, token);
  if (approver) remember(NAME_KEY, approver);
  const d = said.decision || {};
  $('answer').close();
  pending = null;
  outcome(
    verb === 'approve'
      ? `Failover ${id} approved by ${d.actor}: the failover manager runs it now; its steps follow below.`
      : `Failover ${id} ${d.error || 'rejected'}: it will not run.`,
    true,
  );
}

$('answer-form').addEventListener('submit', submit);
$('answer-cancel').addEventListener('click', () => {
  pending = null;
  $('answer').close();
});
