// A service's history, shown when its card is opened: response time over
// the last hour (p50 and p95 per interval, per vantage on demand), the
// status of its last rounds as a bar, and uptime over 1 h and 24 h, from
// the gateway's /api/history (read from the RG_HEALTH stream). Refreshed
// while it is shown.

import { Chart } from 'chart.js';

import { h } from './dom.js';
import { clock, ms } from './format.js';

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 10000;
const VANTAGE_COLORS = ['#805ad5', '#dd6b20', '#319795', '#d53f8c', '#718096', '#2c7a7b'];

let shown = null; // { region, service }
let chart = null;
let timer = null;
let latest = null;

const uptime = (u) => (u && u.percent !== null && u.percent !== undefined
  ? `${u.percent.toFixed(u.percent >= 99.95 || u.percent === 0 ? 0 : 2)} % (${u.healthy_rounds}/${u.rounds} rounds)`
  : 'no rounds observed');

function draw(data) {
  latest = data;
  $('history-title').textContent = `${data.endpoint || data.service} in ${data.region}: the last hour`;
  // The endpoint picker: every endpoint of the service seen in the window
  // (only rebuilt when they change, so an open list stays open).
  const picker = $('history-endpoint');
  const seen = data.endpoint ? [...new Set([...(data.endpoints || []), ...[...picker.options].slice(1).map((o) => o.value)])].sort() : (data.endpoints || []);
  if ([...picker.options].slice(1).map((o) => o.value).join('|') !== seen.join('|')) {
    const chosen = picker.value;
    picker.replaceChildren(h('option', { value: '' }, 'all of the service'), ...seen.map((e) => h('option', { value: e }, e)));
    picker.value = seen.includes(chosen) ? chosen : '';
  }
  $('history-endpoints').textContent = data.endpoint
    ? ''
    : `${(data.endpoints || []).length} endpoint(s) observed in the hour`;
  $('history-uptime-1h').textContent = uptime(data.uptime_1h);
  $('history-uptime-24h').textContent = data.uptime_24h ? uptime(data.uptime_24h) : `not known (${data.uptime_24h_error || 'not read'})`;
  $('history-definition').textContent = `How these are counted: ${data.definition}.`;
  const rounds = data.rounds || [];
  $('history-rounds').replaceChildren(...rounds.map((r) => h('span', {
    class: `round ${r.status}`,
    'data-round': r.round_id,
    'data-status': r.status,
    title: `${clock(r.at_unix_ms)}: ${r.status}`,
  })));
  $('history-rounds').setAttribute('aria-label', `the last ${rounds.length} rounds: ${rounds.filter((r) => r.status !== 'healthy').length} not healthy`);
  const buckets = data.buckets || [];
  const labels = buckets.map((b) => clock(b.at_unix_ms));
  const toMs = (v) => (v === null || v === undefined ? null : v / 1000);
  const datasets = [
    { label: 'p50', data: buckets.map((b) => toMs(b.p50_us)), borderColor: '#2b6cb0', backgroundColor: '#2b6cb0', borderWidth: 2, pointRadius: 2, spanGaps: false },
    { label: 'p95', data: buckets.map((b) => toMs(b.p95_us)), borderColor: '#c05621', backgroundColor: '#c05621', borderWidth: 2, pointRadius: 2, pointStyle: 'rectRot', borderDash: [4, 3], spanGaps: false },
  ];
  if ($('history-vantages').checked) {
    const vantages = [...new Set(buckets.flatMap((b) => Object.keys(b.vantages || {})))].sort();
    vantages.forEach((v, i) => datasets.push({
      label: `p50 ${v}`,
      data: buckets.map((b) => toMs((b.vantages || {})[v])),
      borderColor: VANTAGE_COLORS[i % VANTAGE_COLORS.length],
      backgroundColor: VANTAGE_COLORS[i % VANTAGE_COLORS.length],
      borderWidth: 1,
      pointRadius: 1.5,
      spanGaps: false,
    }));
  }
  if (!chart) {
    chart = new Chart($('history-chart'), {
      type: 'line',
      data: { labels, datasets },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: 'index', intersect: false },
        scales: {
          x: { ticks: { maxTicksLimit: 7, color: getComputedStyle(document.body).color } },
          y: { beginAtZero: true, title: { display: true, text: 'ms' }, ticks: { color: getComputedStyle(document.body).color } },
        },
        plugins: { legend: { labels: { boxHeight: 2 } } },
      },
    });
  } else {
    chart.data.labels = labels;
    chart.data.datasets = datasets;
    chart.update('none');
  }
  const answered = buckets.reduce((n, b) => n + b.answered, 0);
  const failed = buckets.reduce((n, b) => n + b.failed, 0);
  $('history-counts').textContent = `In the hour: ${answered} answered lookups, ${failed} failed; the worst interval's p95 ${ms(Math.max(0, ...buckets.map((b) => b.p95_us || 0)))}.`;
  $('history').dataset.state = 'shown';
}

async function load() {
  if (!shown) return;
  const { region, service } = shown;
  const vantages = $('history-vantages').checked ? '&vantages=1' : '';
  const endpoint = $('history-endpoint').value;
  const one = endpoint ? `&endpoint=${encodeURIComponent(endpoint)}` : '';
  const url = `api/history?region=${encodeURIComponent(region)}&service=${encodeURIComponent(service)}${vantages}${one}`;
  try {
    const r = await fetch(url);
    const body = await r.json();
    if (!shown || shown.region !== region || shown.service !== service) return;
    if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
    $('history-error').hidden = true;
    draw(body);
  } catch (e) {
    $('history-error').textContent = `The history could not be read: ${e.message}`;
    $('history-error').hidden = false;
  }
}

/** Shows the history of `service` in `region` (and keeps it fresh). */
export function showHistory(region, service) {
  if (!shown || shown.region !== region || shown.service !== service) {
    $('history-endpoint').replaceChildren(h('option', { value: '' }, 'all of the service'));
  }
  shown = { region, service };
  $('history').hidden = false;
  $('history').dataset.region = region;
  $('history').dataset.service = service;
  $('history').dataset.state = 'loading';
  $('history-title').textContent = `${service} in ${region}: loading…`;
  clearInterval(timer);
  timer = setInterval(load, REFRESH_MS);
  return load();
}

export function hideHistory() {
  shown = null;
  clearInterval(timer);
  $('history').hidden = true;
}

$('history-close').addEventListener('click', hideHistory);
$('history-vantages').addEventListener('change', load);
$('history-endpoint').addEventListener('change', load);

// For tests: the data drawn and the chart.
export const historyState = { get data() { return latest; }, get chart() { return chart; } };
