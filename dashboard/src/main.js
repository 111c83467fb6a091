// The regionguard dashboard: summary tiles, the health-trends chart,
// region cards with a card per service, the alerts feed and the failover
// timeline, redrawn from each snapshot the gateway pushes.

import './style.css';

import { h } from './dom.js';
import { ICON, clock, ms, num, percent, phase, severity, source, status } from './format.js';
import { ask } from './answer.js';
import { historyState, showHistory } from './history.js';
import { connect } from './live.js';
import { trendChart } from './trend.js';

const $ = (id) => document.getElementById(id);
const trend = trendChart($('trend-chart'), $('trend-tooltip'));
let current = null;

// For tests and the curious: the latest snapshot and the chart.
window.regionguard = { get snapshot() { return current; }, chart: trend.chart, history: historyState };

function renderSummary(s) {
  const m = s.summary || {};
  $('total').textContent = num(m.total_endpoints);
  $('healthy').textContent = num(m.healthy);
  $('warning').textContent = num(m.warning);
  $('critical').textContent = num(m.critical);
  $('uptime').textContent = percent(m.uptime_percent);
  $('avg').textContent = ms(m.avg_response_time_us);
  $('updated').textContent = `snapshot ${num(s.sequence)} at ${clock(s.generated_at_unix_ms)}`;
}

// Service cards opened by a tap or a click (their whole name and why):
// kept across redraws, by region and service.
const opened = new Set();

function serviceCard(region, svc, compact) {
  const st = status(svc.status);
  const n = num(svc.endpoints);
  // Why a card is not healthy ("empty answer at 2/3 vantages"): a failed
  // lookup is fast, so the time alone would look fine.
  const why = svc.reason || '';
  const title = `${svc.service} in ${region}: ${st}${why ? ` (${why})` : ''}, ${ms(svc.avg_response_time_us)} average over ${n} endpoint${n === 1 ? '' : 's'}`;
  return h(
    'li',
    {
      class: `service ${st}`,
      'data-region': region,
      'data-service': svc.service,
      'data-status': st,
      title,
      tabIndex: 0,
      'aria-expanded': opened.has(`${region}|${svc.service}`) ? 'true' : 'false',
    },
    h('span', { class: 'icon', 'aria-hidden': 'true' }, ICON[st]),
    h('span', { class: 'name' }, svc.service),
    compact ? null : h('span', { class: 'rt' }, ms(svc.avg_response_time_us)),
    compact || !why ? null : h('span', { class: 'why' }, why),
  );
}

// The failover manager's view of a region: its regional health score
// (DNS x its declared resources) with what pulls it down, and whether a
// failover away from it would work now (its last readiness check).
function failoverLines(r) {
  const lines = [];
  const checks = r.checks || [];
  // -1: no readiness check scored it yet; absent: 0 (JSON leaves zeros out).
  const score = r.health_score ?? 0;
  if (score >= 0 && (r.health_score !== undefined || checks.length)) {
    const low = checks.filter((c) => (c.factor || 0) < 1);
    const why = low.map((c) => `${c.resource}: ${c.detail}`).join('; ');
    lines.push(h(
      'p',
      { class: `deep${low.length ? ' low' : ''}`, 'data-score': score.toFixed(2), title: checks.map((c) => `${c.resource}: ${c.detail}`).join('\n') },
      `Health ${score.toFixed(2)}${why ? ` \u2014 ${why}` : ''}`,
    ));
  }
  const ready = r.readiness;
  if (ready) {
    const problems = ready.problems || [];
    let state = 'ready';
    let text = `Failover away: ready \u2192 ${ready.target}`;
    if (!ready.ready) {
      state = 'not-ready';
      text = `Failover away: NOT READY \u2014 ${problems.map((p) => p.replace(/^a failover would fail: /, '')).join('; ')}`;
    } else if (problems.length) {
      state = 'drift';
      text = `${text}, but ${problems.join('; ')}`;
    }
    lines.push(h(
      'p',
      { class: `readiness ${state}`, 'data-readiness': state, title: `checked at ${clock(ready.checked_at_unix_ms)}` },
      text,
    ));
  }
  return lines;
}

// The cascade service's view of a region: the risk of its open cascade
// alert, what fails and what it is expected to hurt (its summary says
// both); "none" without one.
function cascadeLine(r) {
  const risk = Number(r.cascade_risk || 0);
  if (!(risk > 0)) {
    return h('p', { class: 'cascade none', 'data-risk': '0.00' }, 'Cascade risk: none open');
  }
  // The summary starts with the region and its score: the rest says why.
  const why = (r.cascade_summary || '').replace(/^[^:]+: cascade risk [\d.]+ /, '');
  return h(
    'p',
    { class: `cascade ${risk >= 0.7 ? 'high' : 'elevated'}`, 'data-risk': risk.toFixed(2), title: r.cascade_summary || '' },
    `Cascade risk ${risk.toFixed(2)} ${why}`,
  );
}

// "40 s", "3 min", "2 h".
function age(msAgo) {
  const s = Math.max(0, Math.round(msAgo / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
}

function regionCard(r, at) {
  const services = r.services || [];
  const healthy = num(r.healthy);
  const total = num(r.total);
  const stale = Boolean(r.stale);
  const worst = stale
    ? 'stale'
    : services.some((s) => status(s.status) === 'critical')
      ? 'critical'
      : services.some((s) => status(s.status) === 'warning')
        ? 'warning'
        : 'healthy';
  // Many services: smaller cards without the time (it is in the tooltip).
  const compact = services.length > 12;
  const last = num(r.last_event_unix_ms);
  const silentFor = last ? age(at - last) : null;
  const count = stale
    ? h('span', { class: 'count', 'data-count': 'stale', title: last ? `last health event at ${clock(last)}` : '' }, `no data for ${silentFor || 'a while'}`)
    : h('span', { class: 'count', 'data-count': `${healthy}/${total}` }, `${healthy}/${total} Healthy`);
  const partly = !stale && num(r.stale_endpoints) > 0
    ? h('p', { class: 'partly-stale' }, `${num(r.stale_endpoints)} more endpoint(s) without fresh data`)
    : null;
  return h(
    'article',
    { class: `region ${worst}`, 'data-region': r.region, 'data-stale': stale ? 'yes' : 'no' },
    h(
      'header',
      {},
      h('h3', {}, r.region),
      count,
    ),
    cascadeLine(r),
    stale ? h('p', { class: 'silent' }, `No vantage has reported for ${silentFor || 'a while'}: its probers stopped, cannot reach NATS, or the region hosting them is down.`) : null,
    partly,
    ...failoverLines(r),
    h('ul', { class: `services${compact ? ' compact' : ''}` }, services.map((s) => serviceCard(r.region, s, compact))),
  );
}

// A tap, a click or Enter on a service card opens it (the whole name,
// wrapped) or closes it: a phone has no hover for the title; opening it
// also shows the service's history.
function toggleCard(li) {
  const key = `${li.dataset.region}|${li.dataset.service}`;
  const open = !opened.has(key);
  if (open) opened.add(key);
  else opened.delete(key);
  li.setAttribute('aria-expanded', open ? 'true' : 'false');
  // Opening a card shows its history below the regions.
  if (open) showHistory(li.dataset.region, li.dataset.service);
}
$('regions').addEventListener('click', (e) => {
  const li = e.target.closest('li.service');
  if (li) toggleCard(li);
});
$('regions').addEventListener('keydown', (e) => {
  const li = e.target.closest('li.service');
  if (li && (e.key === 'Enter' || e.key === ' ')) {
    e.preventDefault();
    toggleCard(li);
  }
});

function renderRegions(s) {
  const regions = s.regions || [];
  const box = $('regions');
  if (!regions.length) {
    box.replaceChildren(h('p', { class: 'empty' }, 'No endpoint has reported yet.'));
    return;
  }
  const at = num(s.generated_at_unix_ms);
  box.replaceChildren(...regions.map((r) => regionCard(r, at)));
}

// Alerts, critical and open first: open alerts by severity (then newest),
// resolved ones collapsed below; counts per severity above. Each alert
// opens (a click, Enter, or the URL #alert=<id>) to show its evidence per
// vantage, predicted impact and recommended actions.
const SEVERITY_RANK = { critical: 0, high: 1, medium: 2, low: 3, info: 4, unknown: 5 };
const openedAlerts = new Set();
let alertFromUrl = decodeURIComponent((location.hash.match(/^#alert=(.+)$/) || [])[1] || '');

const errorKind = (k) => (k || 'ERROR_KIND_NONE').replace('ERROR_KIND_', '').toLowerCase().replace('_', ' ');

function alertDetail(a) {
  const parts = [];
  const evidence = a.evidence || [];
  if (evidence.length) {
    parts.push(h('h4', {}, 'Evidence'));
    // One line per distinct observation (several rounds or resolvers often
    // say the same), with how many said it.
    const lines = new Map();
    for (const e of evidence) {
      const line = [
        `${e.vantage || 'a vantage'}: ${e.endpoint} ${status(e.status)}`,
        e.error_kind && e.error_kind !== 'ERROR_KIND_NONE' ? ` (${errorKind(e.error_kind)})` : ` (${ms(e.response_time_us)})`,
        num(e.reporting) ? `, ${num(e.agreeing)} of ${num(e.reporting)} vantages agree` : '',
        num(e.consecutive_rounds) > 1 ? `, ${num(e.consecutive_rounds)} rounds in a row` : '',
      ].join('');
      lines.set(line, (lines.get(line) || 0) + 1);
    }
    parts.push(h('ul', { class: 'evidence' }, [...lines].map(([line, n]) => h('li', {}, n > 1 ? `${line} (×${n})` : line))));
  }
  const impact = a.predicted_impact || [];
  if (impact.length) {
    parts.push(h('h4', {}, 'Predicted impact'));
    parts.push(h('ul', { class: 'impact' }, impact.map((i) => h(
      'li',
      {},
      `${i.service}: ${Math.round(num(i.degradation) * 100)} % degraded`,
      (i.path || []).length ? ` (via ${i.path.join(' → ')})` : '',
    ))));
  }
  const actions = a.recommended_actions || [];
  if (actions.length) {
    parts.push(h('h4', {}, 'Recommended actions'));
    parts.push(h('ol', { class: 'actions' }, actions.map((x) => h('li', {}, x))));
  }
  const started = num(a.started_at_unix_ms);
  const ended = num(a.ended_at_unix_ms);
  parts.push(h(
    'p',
    { class: 'history' },
    started ? `Started ${clock(started)}` : '',
    ended ? `, resolved ${clock(ended)}` : '',
    num(a.renotify_count) ? `, re-sent ${num(a.renotify_count)} time(s)` : '',
    `; id ${a.id}`,
  ));
  return h('div', { class: 'detail' }, parts);
}

function alertItem(a) {
  const sev = severity(a.severity);
  const resolved = a.state === 'ALERT_STATE_RESOLVED';
  const item = h(
    'li',
    { class: `alert ${sev}${resolved ? ' resolved' : ''}`, 'data-severity': sev, 'data-id': a.id },
    h(
      'details',
      { open: openedAlerts.has(a.id) || a.id === alertFromUrl },
      h(
        'summary',
        {},
        h('span', { class: 'badge' }, resolved ? 'resolved' : sev),
        h('span', { class: 'when' }, clock(a.emitted_at_unix_ms)),
        h('span', { class: 'what' }, a.summary),
        h('span', { class: 'src' }, source(a.source)),
      ),
      alertDetail(a),
    ),
  );
  item.firstChild.addEventListener('toggle', (e) => {
    if (e.target.open) openedAlerts.add(a.id);
    else openedAlerts.delete(a.id);
  });
  return item;
}

// The alert filter: by region, service and source, from what the alerts
// name; a choice is kept while its value is still listed.
const FILTERS = ['region', 'service', 'source'];
const alertValue = (a, field) => (field === 'source' ? source(a.source) : a[field] || '');

function fillFilters(alerts) {
  for (const field of FILTERS) {
    const select = $(`filter-${field}`);
    const values = [...new Set(alerts.map((a) => alertValue(a, field)).filter(Boolean))].sort();
    const listed = [...select.options].slice(1).map((o) => o.value);
    if (listed.join('|') === values.join('|')) continue; // unchanged: leave an open list alone
    const chosen = select.value;
    select.replaceChildren(h('option', { value: '' }, 'all'), ...values.map((v) => h('option', { value: v }, v)));
    select.value = values.includes(chosen) ? chosen : '';
  }
}

function filtered(alerts) {
  const wanted = FILTERS.map((f) => [f, $(`filter-${f}`).value]).filter(([, v]) => v);
  return alerts.filter((a) => wanted.every(([f, v]) => alertValue(a, f) === v));
}
for (const field of FILTERS) {
  $(`filter-${field}`).addEventListener('change', () => current && renderAlerts(current));
}

function renderAlerts(s) {
  const all = s.recent_alerts || [];
  const list = $('alerts');
  const counts = $('alert-counts');
  fillFilters(all);
  const alerts = filtered(all);
  if (!alerts.length) {
    counts.textContent = '';
    list.replaceChildren(h('li', { class: 'empty' }, all.length ? 'No alert matches the filter.' : 'No alerts.'));
    return;
  }
  const isOpen = (a) => a.state !== 'ALERT_STATE_RESOLVED';
  const open = alerts.filter(isOpen).sort((a, b) => (
    SEVERITY_RANK[severity(a.severity)] - SEVERITY_RANK[severity(b.severity)]
    || num(b.emitted_at_unix_ms) - num(a.emitted_at_unix_ms)
  ));
  const resolved = alerts.filter((a) => !isOpen(a));
  const perSeverity = {};
  for (const a of open) perSeverity[severity(a.severity)] = (perSeverity[severity(a.severity)] || 0) + 1;
  counts.replaceChildren(...(open.length
    ? Object.keys(SEVERITY_RANK).filter((k) => perSeverity[k]).map((k) => h('span', { class: `count ${k}`, 'data-severity': k }, `${perSeverity[k]} ${k}`))
    : [h('span', { class: 'count none' }, 'nothing open')]));
  const items = open.map(alertItem);
  if (resolved.length) {
    const box = h(
      'li',
      { class: 'resolved-group' },
      h(
        'details',
        { open: resolvedOpen },
        h('summary', {}, `${resolved.length} resolved`),
        h('ol', { class: 'feed resolved' }, resolved.map(alertItem)),
      ),
    );
    box.firstChild.addEventListener('toggle', (e) => { resolvedOpen = e.target.open; });
    items.push(box);
  }
  list.replaceChildren(...items);
  if (alertFromUrl) {
    const wanted = list.querySelector(`li.alert[data-id="${CSS.escape(alertFromUrl)}"]`);
    if (wanted) {
      openedAlerts.add(alertFromUrl);
      if (wanted.closest('.resolved-group')) {
        wanted.closest('.resolved-group').firstChild.open = true;
        resolvedOpen = true;
      }
      wanted.scrollIntoView({ block: 'nearest' });
      alertFromUrl = '';
    }
  }
}
let resolvedOpen = false;
window.addEventListener('hashchange', () => {
  alertFromUrl = decodeURIComponent((location.hash.match(/^#alert=(.+)$/) || [])[1] || '');
  if (current) renderAlerts(current);
});

// Each failover phase opens to what an operator acts on: the failover id
// (for `regionguard failover approve <id>`), the mode, the candidates and
// why the target, the steps with before -> after, and the warnings.
const MODE = {
  FAILOVER_MODE_OBSERVE: 'observe mode: nothing is planned',
  FAILOVER_MODE_PLAN: 'plan mode: nothing will change',
  FAILOVER_MODE_APPROVE: 'approve mode: runs once approved',
  FAILOVER_MODE_AUTO: 'auto mode: runs without approval',
};
const openedPhases = new Set();
const stepStatus = (k) => (k || '').replace('STEP_STATUS_', '').toLowerCase().replaceAll('_', ' ');

// What a step changes, leaf by leaf ("records[secondary].failover
// SECONDARY → PRIMARY"), as `regionguard failover request` prints it;
// records are named by their set identifier. The raw JSON when it does
// not parse.
function changes(before, after) {
  let b;
  let a;
  try {
    b = JSON.parse(before || 'null');
    a = JSON.parse(after || 'null');
  } catch {
    return `${before || '?'} → ${after || '?'}`;
  }
  const out = [];
  const show = (v) => (v === null || v === undefined ? 'none' : typeof v === 'string' ? v : JSON.stringify(v));
  const walk = (path, x, y) => {
    const obj = (v) => v && typeof v === 'object' && !Array.isArray(v);
    if (obj(x) && obj(y)) {
      for (const k of new Set([...Object.keys(x), ...Object.keys(y)])) walk(path ? `${path}.${k}` : k, x[k], y[k]);
    } else if (Array.isArray(x) && Array.isArray(y) && x.length === y.length) {
      y.forEach((v, i) => walk(`${path}[${(v && v.set_identifier) || i}]`, x[i], v));
    } else if (JSON.stringify(x) !== JSON.stringify(y)) {
      out.push(`${path} ${show(x)} → ${show(y)}`);
    }
  };
  walk('', b, a);
  return out.length ? out.join(', ') : 'no change (a check)';
}

function phaseDetail(d) {
  const parts = [h('p', { class: 'ids' }, `Failover ${d.id}`, MODE[d.mode] ? ` · ${MODE[d.mode]}` : '', d.failback ? ' · failback' : '')];
  const plan = d.plan;
  if (plan) {
    const candidates = plan.candidates || [];
    if (candidates.length) {
      parts.push(h('h4', {}, 'Candidates'));
      parts.push(h('ul', { class: 'candidates' }, candidates.map((c) => h(
        'li',
        {},
        `${c.region}${c.eligible ? '' : ' (not eligible)'}`,
        c.verdict || c.note ? `: ${c.verdict || c.note}` : '',
      ))));
    }
    const steps = plan.steps || [];
    if (['planned', 'approved', 'step'].includes(phase(d.phase)) || steps.length) {
      parts.push(h('h4', {}, 'Steps'));
      parts.push(steps.length
        ? h('ol', { class: 'steps' }, steps.map((st) => h(
          'li',
          {},
          `${st.resource}: ${changes(st.before, st.after)}`,
          st.status && st.status !== 'STEP_STATUS_UNSPECIFIED' ? ` [${stepStatus(st.status)}]` : '',
          st.irreversible ? ' (irreversible)' : '',
          st.error ? ` — ${st.error}` : '',
        )))
        : h('p', { class: 'warning' }, 'The plan has no steps: nothing would move.'));
    }
    const warnings = plan.warnings || [];
    if (warnings.length) {
      parts.push(h('h4', {}, 'Warnings'));
      parts.push(h('ul', { class: 'warnings' }, warnings.map((w) => h('li', {}, w))));
    }
  }
  return h('div', { class: 'detail' }, parts);
}

// What an operator can answer: the failover's newest phase is planned.
// In approve or auto mode (a held plan) it runs once approved; in plan
// mode an approval would change nothing, and the page says so.
function answerBar(d, route) {
  if (d.mode === 'FAILOVER_MODE_PLAN' || d.mode === 'FAILOVER_MODE_OBSERVE') {
    return h('p', { class: 'answer-note' }, 'Plan mode: this plan will not run (start the failover manager in approve mode to act on plans).');
  }
  return h(
    'div',
    { class: 'answer-bar' },
    h('button', { type: 'button', class: 'approve', 'data-answer': 'approve', 'data-id': d.id, 'data-route': route }, 'Approve…'),
    h('button', { type: 'button', class: 'reject', 'data-answer': 'reject', 'data-id': d.id, 'data-route': route }, 'Reject…'),
  );
}
$('timeline').addEventListener('click', (e) => {
  const b = e.target.closest('button[data-answer]');
  if (b) ask(b.dataset.answer, b.dataset.id, b.dataset.route);
});

function renderTimeline(s) {
  const phases = s.failover_timeline || [];
  const list = $('timeline');
  if (!phases.length) {
    list.replaceChildren(h('li', { class: 'empty' }, 'No failovers.'));
    return;
  }
  // Newest first: the first phase seen of a failover is its latest.
  const seen = new Set();
  list.replaceChildren(
    ...phases.map((d) => {
      const latest = !seen.has(d.id);
      seen.add(d.id);
      const p = phase(d.phase);
      const route = d.to_region ? `${d.from_region} → ${d.to_region}` : `away from ${d.from_region}`;
      const steps = (d.plan && d.plan.steps) || [];
      const step = p === 'step' ? steps[num(d.step_index)] : null;
      // A step says which and how it went; a plan why it chose its
      // target; the request only which regions could take the traffic.
      const why = step
        ? `step ${num(d.step_index) + 1}/${steps.length} ${step.resource} ${stepStatus(step.status)}${step.error ? `: ${step.error}` : ''}`
        : d.error || (d.plan && d.plan.rationale) || d.reason;
      const key = `${d.id}|${p}|${num(d.step_index)}`;
      const item = h(
        'li',
        { class: `phase ${p.replace(' ', '-')}`, 'data-phase': p, 'data-id': d.id },
        h(
          'details',
          { open: openedPhases.has(key) },
          h(
            'summary',
            {},
            h('span', { class: 'badge' }, p),
            h('span', { class: 'when' }, clock(d.at_unix_ms)),
            h('span', { class: 'what' }, `${route}${why ? ` — ${why}` : ''}`),
            h('span', { class: 'src' }, d.actor),
          ),
          phaseDetail(d),
        ),
        latest && p === 'planned' ? answerBar(d, route) : null,
      );
      item.firstChild.addEventListener('toggle', (e) => {
        if (e.target.open) openedPhases.add(key);
        else openedPhases.delete(key);
      });
      return item;
    }),
  );
}

// When the last snapshot arrived (this browser's clock), and the
// connection's state: the page says "stale" when snapshots stop while the
// socket stays open (a frozen gateway).
let receivedAt = 0;
let connection = 'connecting';

// The gateway's interval, from the trend's spacing (10 s when unknown).
function intervalMs(s) {
  const t = (s && s.trend) || [];
  if (t.length >= 2) {
    const d = num(t[t.length - 1].at_unix_ms) - num(t[t.length - 2].at_unix_ms);
    if (d > 0) return d;
  }
  return 10000;
}

function showConnection() {
  const el = $('connection');
  let state = connection;
  let text = LABEL[state] || state;
  const quiet = receivedAt ? Date.now() - receivedAt : 0;
  if (state === 'connected' && current && quiet > Math.max(3 * intervalMs(current), 5000)) {
    state = 'stale';
    text = `Stale — no snapshot for ${age(quiet)}`;
  }
  el.className = `connection ${state}`;
  el.textContent = text;
  el.dataset.state = state;
  document.body.classList.toggle('stale', state === 'stale');
}

function render(s) {
  // A snapshot older than the one shown (a late fetch) is ignored; a
  // restarted gateway starts its sequence again, so order by time.
  if (current && num(s.generated_at_unix_ms) < num(current.generated_at_unix_ms)) return;
  current = s;
  receivedAt = Date.now();
  showConnection();
  renderSummary(s);
  trend.update(s.trend || []);
  renderRegions(s);
  renderAlerts(s);
  renderTimeline(s);
  document.body.dataset.sequence = num(s.sequence);
  document.body.dataset.generatedAt = num(s.generated_at_unix_ms);
}

const LABEL = { connected: 'Connected', connecting: 'Connecting…', reconnecting: 'Reconnecting…' };

connect({
  onSnapshot: render,
  onState: (state) => {
    connection = state;
    showConnection();
  },
});
setInterval(showConnection, 1000);
