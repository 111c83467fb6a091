// The dashboard in a real headless Chromium (Debian's, driven by
// playwright-core), against a running gateway. Started by the Rust e2e
// test `dashboard::*`, which runs the gateway, simulator and probers and
// answers this script's requests on stdin/stdout:
//
//   this script prints      the test does, then answers
//   "STOP-GATEWAY"          stops the gateway            "stopped"
//   "START-GATEWAY"         starts one on the same port  "started"
//   "STOP-PROBER"           stops eu-west-1's prober     "stopped"
//   "START-PROBER"          starts it again              "started"
//   "FREEZE-GATEWAY"        holds every byte between     "frozen"
//                           page and gateway, sockets
//                           left open (a hung gateway)
//   "THAW-GATEWAY"          lets them pass again         "thawed"
//   "REQUEST-FAILOVER-A"    requests failover ui-reject  "requested"
//   "REQUEST-FAILOVER-B"    requests failover ui-approve "requested"
//
// Modes:
//   --mode full    numbers equal /api/snapshot; a fault turns its card
//                  critical within two intervals; the trend tooltip shows
//                  counts; the page reconnects after a gateway restart;
//                  a region whose prober stops is greyed, not dropped;
//                  a hung gateway (socket open, no snapshots) makes the
//                  page say "Stale" and dim, until snapshots come again
//   --mode layout  many regions x services stay readable
//   --mode answer  a planned failover is rejected from the page (a wrong
//                  token is refused and said so), another approved; the
//                  timeline shows its steps and completion (the test
//                  checks the account in moto afterwards)
// Screenshots go to --artifacts DIR. Exit code 0 = every check passed.

import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

import { ms, num, percent, status } from '../src/format.js';

const { values: opt } = parseArgs({
  options: {
    url: { type: 'string' },
    mode: { type: 'string', default: 'full' },
    'interval-ms': { type: 'string', default: '1000' },
    token: { type: 'string', default: '' },
    artifacts: { type: 'string', default: 'test-artifacts' },
    regions: { type: 'string', default: '3' },
    services: { type: 'string', default: '7' },
  },
});
const base = opt.url.endsWith('/') ? opt.url : `${opt.url}/`;
const interval = Number(opt['interval-ms']);
mkdirSync(opt.artifacts, { recursive: true });

const lines = createInterface({ input: process.stdin });
const answers = lines[Symbol.asyncIterator]();
async function ask(request, expected) {
  console.log(request);
  const { value } = await answers.next();
  if (value?.trim() !== expected) throw new Error(`expected "${expected}" after ${request}, got ${value}`);
}

function check(ok, message) {
  if (!ok) throw new Error(message);
  console.error(`  ok: ${message}`);
}

async function api(path, init) {
  const r = await fetch(new URL(path, base), init);
  const body = await r.text();
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}: ${body}`);
  return JSON.parse(body);
}

async function postFault(body) {
  const headers = { 'content-type': 'application/json' };
  if (opt.token) headers.authorization = `Bearer ${opt.token}`;
  return api('api/faults', { method: 'POST', headers, body: JSON.stringify(body) });
}

/** What the page shows, read from the DOM. */
function readPage() {
  const text = (id) => document.getElementById(id).textContent;
  return {
    sequence: document.body.dataset.sequence,
    tiles: {
      total: text('total'),
      healthy: text('healthy'),
      warning: text('warning'),
      critical: text('critical'),
      uptime: text('uptime'),
      avg: text('avg'),
    },
    regions: [...document.querySelectorAll('article.region')].map((r) => ({
      region: r.dataset.region,
      count: r.dataset.stale === 'yes' ? 'stale' : r.querySelector('.count').textContent,
      services: [...r.querySelectorAll('li.service')].map((s) => ({
        service: s.dataset.service,
        status: s.dataset.status,
        rt: s.querySelector('.rt')?.textContent ?? null,
        why: s.querySelector('.why')?.textContent ?? null,
      })),
    })),
  };
}

/** The same figures computed from a snapshot the way a reader would. */
function expected(s) {
  const m = s.summary;
  return {
    sequence: String(num(s.sequence)),
    tiles: {
      total: String(num(m.total_endpoints)),
      healthy: String(num(m.healthy)),
      warning: String(num(m.warning)),
      critical: String(num(m.critical)),
      uptime: percent(m.uptime_percent),
      avg: ms(m.avg_response_time_us),
    },
    regions: s.regions.map((r) => ({
      region: r.region,
      count: r.stale ? 'stale' : `${num(r.healthy)}/${num(r.total)} Healthy`,
      services: (r.services || []).map((x) => ({
        service: x.service,
        status: status(x.status),
        rt: (r.services || []).length > 12 ? null : ms(x.avg_response_time_us),
        why: (r.services || []).length > 12 || !x.reason ? null : x.reason,
      })),
    })),
  };
}

async function pageEqualsApi(page) {
  // The page and the API must be compared on the same snapshot.
  for (let attempt = 0; attempt < 20; attempt++) {
    const shown = await page.evaluate(readPage);
    const api_ = await api('api/snapshot');
    if (shown.sequence !== String(num(api_.sequence))) {
      await page.waitForTimeout(100);
      continue;
    }
    const want = expected(api_);
    const same = JSON.stringify(shown) === JSON.stringify(want);
    if (!same) console.error(JSON.stringify({ shown, want }, null, 1));
    check(same, `the page shows snapshot ${shown.sequence} exactly as /api/snapshot has it (${want.tiles.total} endpoints, ${want.tiles.healthy} healthy, uptime ${want.tiles.uptime}, avg ${want.tiles.avg}, ${want.regions.length} region cards)`);
    return api_;
  }
  throw new Error('the page never showed the snapshot /api/snapshot had');
}

async function full(page) {
  await page.goto(base);
  await page.waitForSelector('#connection[data-state="connected"]', { timeout: 15000 });
  check((await page.textContent('#connection')) === 'Connected', 'the indicator says Connected');
  await page.waitForSelector('li.service', { timeout: 15000 });
  const snap = await pageEqualsApi(page);
  check(num(snap.summary.total_endpoints) === 21, 'all 21 endpoints (3 regions x 7 services) are on the page');
  await page.screenshot({ path: `${opt.artifacts}/dashboard.png`, fullPage: true });
  await phone(page);

  // The trend tooltip: hover the newest point of the "Warning" series. A
  // snapshot may redraw the chart between finding the point and the
  // hover, so the tooltip is checked against the chart's data for the
  // time it names, read in the same moment.
  let shown = null;
  for (let attempt = 0; attempt < 5 && !shown; attempt++) {
    const point = await page.evaluate(() => {
      const c = window.regionguard.chart;
      // A tap on a card (the phone check) scrolled the page down.
      c.canvas.scrollIntoView({ block: 'center' });
      const meta = c.getDatasetMeta(1);
      const p = meta.data[meta.data.length - 1];
      const box = c.canvas.getBoundingClientRect();
      return { x: box.left + p.x, y: box.top + p.y, points: meta.data.length };
    });
    check(point.points >= 2, `the trend has ${point.points} points`);
    await page.mouse.move(point.x, point.y);
    await page.waitForSelector('#trend-tooltip:not([hidden])', { timeout: 5000 });
    shown = await page.evaluate(() => {
      const c = window.regionguard.chart;
      const tip = document.getElementById('trend-tooltip');
      const title = tip.querySelector('.tt-title')?.textContent;
      const i = c.data.labels.indexOf(title);
      if (i < 0) return null;
      const want = c.data.datasets.map((d) => `${d.label}: ${d.data[i]}`);
      const lines = [...tip.querySelectorAll('.tt-line')].map((l) => l.textContent);
      return { title, want, lines };
    });
    if (!shown) await page.mouse.move(0, 0);
  }
  check(shown !== null, 'the tooltip names a time on the chart');
  check(
    JSON.stringify(shown.lines) === JSON.stringify(shown.want) && shown.want.some((l) => l.startsWith('Warning: ')),
    `hovering a trend point shows its time and counts: "${shown.title}: ${shown.lines.join(', ')}"`,
  );
  await page.screenshot({ path: `${opt.artifacts}/dashboard-tooltip.png` });
  await page.mouse.move(0, 0);

  // Equal Warning and Critical counts (0 and 0 here) must not look like
  // one line: Critical is drawn over Warning and thinner, so both colours
  // show. Checked in the chart's settings and in the drawn pixels of a
  // stretch where the two are equal.
  const lines = await page.evaluate(() => {
    const c = window.regionguard.chart;
    const d = c.data.datasets;
    const ds = (label) => d.find((x) => x.label === label);
    const [warning, critical] = [ds('Warning'), ds('Critical')];
    const wi = d.indexOf(warning);
    const ki = d.indexOf(critical);
    let i = -1;
    for (let j = warning.data.length - 1; j >= 1; j--) {
      if (warning.data[j] === critical.data[j] && warning.data[j - 1] === critical.data[j - 1]) { i = j; break; }
    }
    const out = {
      warning: { order: warning.order, width: warning.borderWidth },
      critical: { order: critical.order, width: critical.borderWidth },
      equal: i,
    };
    if (i < 0) return out;
    const w = c.getDatasetMeta(wi).data;
    const k = c.getDatasetMeta(ki).data;
    const x = (w[i].x + w[i - 1].x) / 2;
    const y = (k[i].y + k[i - 1].y) / 2;
    const r = window.devicePixelRatio || 1;
    const ctx = c.canvas.getContext('2d');
    // The pixel row holding y + dy (a 3 px line covers its row whole).
    const at = (dy) => Array.from(ctx.getImageData(Math.floor(x * r), Math.floor((y + dy) * r), 1, 1).data);
    return { ...out, value: warning.data[i], center: at(0), edge: at(-2.5) };
  });
  check(
    lines.critical.order < lines.warning.order && lines.critical.width < lines.warning.width,
    `Critical is drawn over Warning and thinner (order ${lines.critical.order} < ${lines.warning.order}, width ${lines.critical.width} < ${lines.warning.width})`,
  );
  const red = (p) => p[0] > 180 && p[1] < 110 && p[2] < 110;
  const amber = (p) => p[0] > 170 && p[1] > 120 && p[2] < 110;
  check(lines.equal >= 1, `the trend has a stretch where Warning and Critical are equal (${JSON.stringify(lines)})`);
  check(
    red(lines.center) && amber(lines.edge),
    `where Warning and Critical are both ${lines.value} the line is red with amber edges (pixels ${lines.center} and ${lines.edge})`,
  );

  // A fault turns the service card critical within two intervals.
  await postFault({ inject: { region: 'us-east-1', service: 'dynamodb', kind: 'FAULT_KIND_EMPTY_ANSWER' } });
  const t0 = Date.now();
  const card = 'li.service[data-region="us-east-1"][data-service="dynamodb"][data-status="critical"]';
  await page.waitForSelector(card, { timeout: 4 * interval + 5000 });
  const elapsed = Date.now() - t0;
  check(elapsed <= 2 * interval + 500, `the dynamodb card in us-east-1 turned critical ${elapsed} ms after the fault (two intervals: ${2 * interval} ms)`);
  const count = await page.textContent('article.region[data-region="us-east-1"] .count');
  check(count === '6/7 Healthy', `the us-east-1 card says ${count}`);
  const icon = await page.textContent(`${card} .icon`);
  check(icon === '✕', 'the critical card shows the critical icon');
  // It says why: a failed lookup is fast, the time alone looks fine.
  await page.waitForFunction(
    (sel) => /^empty answer at \d+\/\d+ vantages?$/.test(document.querySelector(`${sel} .why`)?.textContent ?? ''),
    card,
    { timeout: 4 * interval + 5000 },
  );
  const why = await page.textContent(`${card} .why`);
  check(/^empty answer at \d+\/\d+ vantages?$/.test(why), `the critical card says why: "${why}"`);
  // Opening the card shows the service's history: what /api/history
  // reads from the stream (the Rust test checks that against the stream).
  await page.waitForTimeout(2 * interval);
  await page.click(card);
  await page.waitForSelector('#history[data-state="shown"][data-region="us-east-1"][data-service="dynamodb"]', { timeout: 15000 });
  const shownHistory = await page.evaluate(() => {
    const d = window.regionguard.history.data;
    const c = window.regionguard.history.chart;
    return {
      rounds: d.rounds.map((r) => [r.round_id, r.status]),
      cells: [...document.querySelectorAll('#history-rounds .round')].map((el) => [Number(el.dataset.round), el.dataset.status]),
      p50: d.buckets.map((b) => (b.p50_us === null || b.p50_us === undefined ? null : b.p50_us / 1000)),
      drawn: c.data.datasets.find((x) => x.label === 'p50').data,
      uptime: document.getElementById('history-uptime-1h').textContent,
      day: document.getElementById('history-uptime-24h').textContent,
      hour: d.uptime_1h,
    };
  });
  check(JSON.stringify(shownHistory.cells) === JSON.stringify(shownHistory.rounds) && shownHistory.rounds.some(([, st]) => st === 'critical'), `the status bar draws every round of the history (${shownHistory.cells.length}, the latest critical ones included)`);
  check(JSON.stringify(shownHistory.drawn) === JSON.stringify(shownHistory.p50), 'the response-time chart draws the history\'s p50 per interval');
  check(shownHistory.uptime.startsWith(`${shownHistory.hour.percent.toFixed(2)} %`) || shownHistory.uptime.startsWith(`${shownHistory.hour.percent.toFixed(0)} %`), `uptime over the last hour is shown: "${shownHistory.uptime}", over 24 h: "${shownHistory.day}"`);
  const fresh = await api('api/history?region=us-east-1&service=dynamodb');
  const freshRounds = new Map(fresh.rounds.map((r) => [r.round_id, r.status]));
  check(shownHistory.rounds.every(([id, st]) => !freshRounds.has(id) || freshRounds.get(id) === st), 'the page\'s rounds agree with /api/history');
  const endpoints = await page.$$eval('#history-endpoint option', (els) => els.map((e) => e.value).filter(Boolean));
  check(endpoints.includes('dynamodb.us-east-1.amazonaws.com'), `the endpoint picker lists the service's endpoints (${endpoints.join(', ')})`);
  await page.selectOption('#history-endpoint', endpoints[0]);
  await page.waitForFunction((e) => window.regionguard.history.data?.endpoint === e, endpoints[0], { timeout: 10000 });
  check((await page.textContent('#history-title')).startsWith(endpoints[0]), 'choosing an endpoint shows its own history');
  await page.check('#history-vantages');
  await page.waitForFunction(() => window.regionguard.history.chart.data.datasets.some((x) => x.label.startsWith('p50 ')), null, { timeout: 10000 });
  check(true, 'ticking "per vantage" adds a line per vantage');
  await page.screenshot({ path: `${opt.artifacts}/dashboard-history.png`, fullPage: true });
  // The detector's and cascade service's reactions reach the feeds.
  await page.waitForSelector('#alerts li.alert[data-severity="critical"]', { timeout: 15000 });
  const alert = await page.textContent('#alerts li.alert[data-severity="critical"]');
  check(alert.includes('us-east-1'), `the alerts feed shows a critical alert: "${alert}"`);
  // Critical first, counted, and each alert opens to its evidence and
  // actions (by a click, and by the URL #alert=<id>).
  await page.waitForSelector('#alerts li.alert[data-severity="critical"][data-id] details', { timeout: 5000 });
  const order = await page.$$eval('#alerts > li.alert', (els) => els.map((e) => e.dataset.severity));
  check(order[0] === 'critical', `open alerts are listed critical first (${order.join(', ')})`);
  const counted = await page.textContent('#alert-counts [data-severity="critical"]');
  check(/^\d+ critical$/.test(counted), `the alerts panel counts them: "${counted}"`);
  const threshold = '#alerts li.alert[data-severity="critical"]:has(.src:text-is("threshold"))';
  await page.waitForSelector(threshold, { timeout: 15000 });
  await page.click(`${threshold} summary`);
  const detail = await page.textContent(`${threshold} .detail`);
  check(
    detail.includes('Evidence') && /empty answer/.test(detail) && /vantage/.test(detail),
    `clicking the threshold alert shows its evidence per vantage: "${detail.slice(0, 200)}"`,
  );
  const cascade = '#alerts li.alert:has(.src:text-is("cascade"))';
  await page.waitForSelector(cascade, { timeout: 15000 });
  const cascadeId = await page.getAttribute(cascade, 'data-id');
  await page.evaluate((id) => { location.hash = `alert=${encodeURIComponent(id)}`; }, cascadeId);
  await page.waitForSelector(`#alerts li.alert[data-id="${cascadeId}"] details[open]`, { timeout: 5000 });
  const cascadeDetail = await page.textContent(`#alerts li.alert[data-id="${cascadeId}"] .detail`);
  check(
    cascadeDetail.includes('Predicted impact') && cascadeDetail.includes('Recommended actions'),
    `#alert=${cascadeId} opens the cascade alert with its impact and actions: "${cascadeDetail.slice(0, 200)}"`,
  );
  // The region card carries the cascade risk and what it hurts, as the
  // open cascade alert says.
  const cascadeAlert = (await api('api/alerts')).alerts.find((a) => a.id === cascadeId);
  await page.waitForSelector('article.region[data-region="us-east-1"] p.cascade:not(.none)', { timeout: 5000 });
  const risk = await page.getAttribute('article.region[data-region="us-east-1"] p.cascade', 'data-risk');
  const riskText = await page.textContent('article.region[data-region="us-east-1"] p.cascade');
  check(
    risk === Number(cascadeAlert.risk_score).toFixed(2) && riskText.includes((cascadeAlert.predicted_impact || [])[0]?.service ?? '?'),
    `the us-east-1 card shows the cascade risk of the open cascade alert (${cascadeAlert.risk_score}): "${riskText}"`,
  );
  const calm = await page.getAttribute('article.region[data-region="us-west-2"] p.cascade', 'data-risk');
  check(calm === '0.00', `a region without a cascade alert says so (us-west-2: ${calm})`);
  // The filter: only cascade alerts, then only us-west-2 (none), then all.
  const every = await page.$$eval('#alerts li.alert', (els) => els.length);
  await page.selectOption('#filter-source', 'cascade');
  const sources = await page.$$eval('#alerts li.alert .src', (els) => els.map((e) => e.textContent));
  check(sources.length > 0 && sources.every((x) => x === 'cascade'), `filtering by source leaves only cascade alerts (${sources.length} of ${every})`);
  const regionsListed = await page.$$eval('#filter-region option', (els) => els.map((e) => e.value).filter(Boolean));
  check(regionsListed.includes('us-east-1'), `the region filter lists the alerts' regions (${regionsListed.join(', ')})`);
  await page.selectOption('#filter-source', '');
  check((await page.$$eval('#alerts li.alert', (els) => els.length)) >= every, 'clearing the filter shows every alert again');
  await page.screenshot({ path: `${opt.artifacts}/dashboard-alert-open.png`, fullPage: true });
  await accessible(page, 'with critical alerts, one opened');
  await dark(page);
  await page.waitForSelector('#timeline li.phase[data-phase="requested"]', { timeout: 15000 });
  const request = await page.textContent('#timeline li.phase[data-phase="requested"]');
  check(request.includes('us-east-1'), `the failover timeline shows the request: "${request}"`);
  await page.click('#timeline li.phase[data-phase="requested"] summary');
  const requestId = await page.getAttribute('#timeline li.phase[data-phase="requested"]', 'data-id');
  const ids = await page.textContent('#timeline li.phase[data-phase="requested"] .detail .ids');
  check(requestId && ids.startsWith(`Failover ${requestId}`), `opening the request shows its failover id: "${ids}"`);
  await pageEqualsApi(page);
  await page.screenshot({ path: `${opt.artifacts}/dashboard-fault.png`, fullPage: true });
  await postFault({ clear: {} });

  // The gateway restarts: the page reconnects by itself.
  const before = Number(await page.evaluate(() => document.body.dataset.generatedAt));
  await ask('STOP-GATEWAY', 'stopped');
  await page.waitForSelector('#connection[data-state="reconnecting"]', { timeout: 10000 });
  check(true, 'the indicator says Reconnecting… while the gateway is down');
  await ask('START-GATEWAY', 'started');
  await page.waitForSelector('#connection[data-state="connected"]', { timeout: 15000 });
  await page.waitForFunction((t) => Number(document.body.dataset.generatedAt) > t, before, { timeout: 15000 });
  check(true, 'after the restart the page is Connected again and shows new snapshots');
  await pageEqualsApi(page);

  // The gateway hangs with the socket open: no close, no error, just no
  // snapshots. Within 3 intervals (at least 5 s) and the page's 1 s check
  // the indicator says "Stale" with how long, and the page dims; when
  // snapshots come again it says Connected.
  await ask('FREEZE-GATEWAY', 'frozen');
  const frozenAt = Date.now();
  await page.waitForSelector('#connection[data-state="stale"]', { timeout: 20000 });
  const staleIn = Date.now() - frozenAt;
  // The last snapshot came up to an interval before the freeze; the page
  // checks every second; a busy machine adds the rest.
  const staleLimit = Math.max(3 * interval, 5000) + interval + 1500;
  check(staleIn <= staleLimit, `the page said stale ${staleIn} ms after the gateway hung (limit ${staleLimit} ms)`);
  await page.waitForTimeout(1500);
  const staleText = await page.textContent('#connection');
  check(/^Stale — no snapshot for \d+ s$/.test(staleText), `the indicator says "${staleText}"`);
  const dim = await page.$eval('main', (e) => Number(getComputedStyle(e).opacity));
  check(dim < 1, `the page is dimmed while stale (opacity ${dim})`);
  await page.screenshot({ path: `${opt.artifacts}/dashboard-stale-page.png`, fullPage: true });
  const heldAt = Number(await page.evaluate(() => document.body.dataset.generatedAt));
  await ask('THAW-GATEWAY', 'thawed');
  await page.waitForSelector('#connection[data-state="connected"]', { timeout: 10000 });
  await page.waitForFunction((t) => Number(document.body.dataset.generatedAt) > t, heldAt, { timeout: 10000 });
  check(true, 'once snapshots come again the page says Connected and shows them');
  await pageEqualsApi(page);

  // Every prober of eu-west-1 stops: its card is greyed with how long it
  // has been silent, within stale_after (3 intervals) + 1 interval, and
  // stays; it comes back when the prober does.
  await ask('STOP-PROBER', 'stopped');
  const stoppedAt = Date.now();
  const silent = 'article.region[data-region="eu-west-1"][data-stale="yes"]';
  await page.waitForSelector(silent, { timeout: 10 * interval + 5000 });
  const greyedIn = Date.now() - stoppedAt;
  check(greyedIn <= 4 * interval + 1000, `eu-west-1's card was greyed ${greyedIn} ms after its prober stopped (stale_after + 1 interval: ${4 * interval} ms)`);
  await page.waitForTimeout(2 * interval);
  const said = await page.textContent(`${silent} .count`);
  check(/^no data for \d+ s$/.test(said), `the greyed card says "${said}"`);
  const cards = await page.$$eval('article.region', (els) => els.map((e) => e.dataset.region));
  check(cards.length === 3 && cards.includes('eu-west-1'), `the silent region keeps its card (${cards.join(', ')})`);
  const grey = await page.$eval(silent, (e) => getComputedStyle(e).filter);
  check(grey.includes('grayscale'), `the card is drawn grey (${grey})`);
  check((await page.textContent('#total')) === '14', 'the endpoint tile counts the 14 endpoints with fresh data');
  await pageEqualsApi(page);
  await page.screenshot({ path: `${opt.artifacts}/dashboard-silent-region.png`, fullPage: true });
  await ask('START-PROBER', 'started');
  await page.waitForSelector('article.region[data-region="eu-west-1"][data-stale="no"]', { timeout: 15000 });
  check(true, 'when the prober is back, the card is live again');
}

// axe-core's rules on the page as it is now: no serious or critical
// violation (contrast, names, roles, keyboard access).
const axePath = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
async function accessible(page, when) {
  await page.addScriptTag({ path: axePath });
  const found = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join('; ')}${v.nodes.length > 3 ? ` and ${v.nodes.length - 3} more` : ''}`);
  });
  check(found.length === 0, `axe-core finds no serious or critical violation ${when}${found.length ? `: ${found.join(' | ')}` : ''}`);
}

// The system's dark setting: dark panels, light text, still accessible.
async function dark(page) {
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.waitForTimeout(200);
  const c = await page.evaluate(() => {
    const rgb = (s) => (s.match(/\d+/g) || []).slice(0, 3).map(Number);
    const lum = ([r, g, b]) => (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
    const panel = getComputedStyle(document.querySelector('.panel'));
    return { bg: lum(rgb(getComputedStyle(document.documentElement).backgroundColor)), panel: lum(rgb(panel.backgroundColor)), text: lum(rgb(panel.color)) };
  });
  check(c.bg < 0.2 && c.panel < 0.2 && c.text > 0.7, `with the system's dark setting the page is dark (background ${c.bg.toFixed(2)}, panels ${c.panel.toFixed(2)}, text ${c.text.toFixed(2)})`);
  await page.screenshot({ path: `${opt.artifacts}/dashboard-dark.png`, fullPage: true });
  await accessible(page, 'in the dark theme');
  await page.emulateMedia({ colorScheme: 'light' });
  await page.waitForTimeout(200);
}

// On a phone (390 x 844): nothing wider than the screen, and a service
// name cut short is shown whole by a tap (no hover on a phone).
/** Nothing wider than the screen at `width` px. */
async function fits(page, width, when = '') {
  await page.setViewportSize({ width, height: width < 800 ? 844 : 1200 });
  await page.waitForTimeout(300);
  const m = await page.evaluate(() => {
    const out = [...document.querySelectorAll('body *')]
      .filter((e) => e.getClientRects().length > 0)
      .filter((e) => {
        const r = e.getBoundingClientRect();
        return r.width > 0 && (r.right > window.innerWidth + 0.5 || r.left < -0.5);
      })
      .map((e) => `${e.tagName.toLowerCase()}.${[...e.classList].join('.')} ${Math.round(e.getBoundingClientRect().right)}`);
    return { overflowX: document.documentElement.scrollWidth - window.innerWidth, out: out.slice(0, 8), outCount: out.length };
  });
  check(m.overflowX <= 0 && m.outCount === 0, `at ${width} px nothing sticks out${when} (page overflow ${m.overflowX} px; ${m.outCount} elements past the edge: ${m.out.join(', ')})`);
}

async function phone(page) {
  await fits(page, 2560);
  await fits(page, 360);
  await fits(page, 390);
  await page.screenshot({ path: `${opt.artifacts}/dashboard-phone.png`, fullPage: true });
  const card = 'li.service[data-region="us-east-1"][data-service="elasticloadbalancing"]';
  await page.tap(card);
  const shown = await page.$eval(card, (li) => {
    const n = li.querySelector('.name');
    return { text: n.textContent, whole: n.scrollWidth <= n.clientWidth, expanded: li.getAttribute('aria-expanded') };
  });
  check(shown.text === 'elasticloadbalancing' && shown.whole && shown.expanded === 'true', `a tap shows the whole name "${shown.text}" (${JSON.stringify(shown)})`);
  await page.screenshot({ path: `${opt.artifacts}/dashboard-phone-tapped.png` });
  await page.waitForSelector('#history[data-state="shown"]', { timeout: 15000 });
  await fits(page, 360, ' with the history open');
  await page.screenshot({ path: `${opt.artifacts}/dashboard-phone-history.png`, fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.tap(card);
  await page.setViewportSize({ width: 1440, height: 1000 });
  await page.waitForTimeout(300);
}

async function layout(page) {
  const regions = Number(opt.regions);
  const services = Number(opt.services);
  await page.goto(base);
  await page.waitForFunction(
    ([r, s]) => document.querySelectorAll('article.region').length === r && document.querySelectorAll('li.service').length === r * s,
    [regions, services],
    { timeout: 30000 },
  );
  await pageEqualsApi(page);
  const m = await page.evaluate(() => {
    const chips = [...document.querySelectorAll('li.service')].map((el) => el.getBoundingClientRect());
    const names = [...document.querySelectorAll('li.service .name')];
    return {
      overflowX: document.documentElement.scrollWidth - window.innerWidth,
      minChipWidth: Math.min(...chips.map((r) => r.width)),
      minChipHeight: Math.min(...chips.map((r) => r.height)),
      titled: [...document.querySelectorAll('li.service')].every((el) => el.title.includes(el.dataset.service)),
      truncated: names.filter((n) => n.scrollWidth > n.clientWidth).length,
      names: names.length,
    };
  });
  check(m.overflowX <= 0, `no horizontal scrolling at ${regions} x ${services} (overflow ${m.overflowX}px)`);
  check(m.minChipWidth >= 80 && m.minChipHeight >= 16, `every service card is at least 80x16 px (smallest ${m.minChipWidth.toFixed(0)}x${m.minChipHeight.toFixed(0)})`);
  check(m.titled, 'every service card names its service and status in its tooltip');
  check(m.truncated <= m.names * 0.1, `${m.truncated} of ${m.names} service names are cut short (at most 10 %)`);
  await page.screenshot({ path: `${opt.artifacts}/dashboard-${regions}x${services}.png`, fullPage: true });
}

/** Waits for the answer dialog to close; fails with what it says if not. */
async function answered(page) {
  try {
    // A closed dialog is hidden: wait for the state, not visibility.
    await page.waitForSelector('dialog#answer:not([open])', { state: 'attached', timeout: 10000 });
  } catch {
    throw new Error(`the answer dialog stayed open: "${await page.textContent('#answer-error')}"`);
  }
}

async function answering(page) {
  await page.goto(base);
  const planned = (id) => `li.phase[data-id="${id}"][data-phase="planned"]`;
  const phasesOf = (id) => page.$$eval(`li.phase[data-id="${id}"]`, (els) => els.map((el) => el.dataset.phase));

  // A plan to turn down: a wrong token first.
  await ask('REQUEST-FAILOVER-A', 'requested');
  await page.waitForSelector(`${planned('ui-reject')} .answer-bar button.reject`, { timeout: 30000 });
  await page.click(`${planned('ui-reject')} summary`);
  const steps = await page.$$eval(`${planned('ui-reject')} ol.steps li`, (els) => els.map((el) => el.textContent));
  check(steps.length > 0 && steps.filter((t) => !t.startsWith('verify')).every((t) => t.includes('→')), `the plan shows its ${steps.length} steps, each change before → after`);
  const route53 = steps.find((t) => t.startsWith('route53:')) || '';
  check(route53.includes('records[secondary].failover SECONDARY → PRIMARY') && route53.includes('records[primary].failover PRIMARY → SECONDARY'), `a Route 53 step names each record's change: "${route53}"`);
  await page.click(`${planned('ui-reject')} .answer-bar button.reject`);
  await page.waitForSelector('dialog#answer[open]');
  await page.fill('#answer-token', 'not-the-gateway-token');
  await page.fill('#answer-name', 'alice');
  await page.fill('#answer-reason', 'the target has too little capacity');
  await page.click('#answer-confirm');
  await page.waitForSelector('#answer-error:not([hidden])', { timeout: 10000 });
  const refused = await page.textContent('#answer-error');
  check(/token/.test(refused), `a wrong token is refused and the dialog says so ("${refused}")`);
  check(await page.$('dialog#answer[open]') !== null, 'the dialog stays open to correct the token');
  await accessible(page, 'with the answer dialog open');
  await page.screenshot({ path: `${opt.artifacts}/dashboard-reject-dialog.png` });
  await page.fill('#answer-token', opt.token);
  await page.click('#answer-confirm');
  await answered(page);
  const rejected = await page.textContent('#answer-outcome');
  check(rejected.includes('rejected by http:alice: the target has too little capacity'), `the outcome is shown: "${rejected}"`);
  await page.waitForSelector('li.phase[data-id="ui-reject"][data-phase="rejected"]', { timeout: 30000 });
  check(await page.$('li.phase[data-id="ui-reject"] .answer-bar') === null, 'a rejected failover offers no buttons any more');

  // A plan to run: the token is remembered for this tab.
  await ask('REQUEST-FAILOVER-B', 'requested');
  await page.waitForSelector(`${planned('ui-approve')} .answer-bar button.approve`, { timeout: 30000 });
  await page.click(`${planned('ui-approve')} .answer-bar button.approve`);
  await page.waitForSelector('dialog#answer[open]');
  check(await page.inputValue('#answer-token') === opt.token, 'the token is filled in from this tab');
  check(await page.isHidden('#answer-reason'), 'an approval asks for no reason');
  await page.fill('#answer-name', 'bob');
  await page.click('#answer-confirm');
  await answered(page);
  const approved = await page.textContent('#answer-outcome');
  check(approved.includes('approved by http:bob'), `the outcome is shown: "${approved}"`);
  await page.waitForSelector('li.phase[data-id="ui-approve"][data-phase="completed"]', { timeout: 60000 });
  const trail = (await phasesOf('ui-approve')).reverse();
  check(
    trail[0] === 'requested' && trail.includes('planned') && trail.includes('approved') && trail.includes('step') && trail[trail.length - 1] === 'completed',
    `the timeline shows the failover's phases: ${trail.join(' → ')}`,
  );
  const stepLines = await page.$$eval('li.phase[data-id="ui-approve"][data-phase="step"] summary .what', (els) => els.map((el) => el.textContent));
  check(stepLines.some((t) => /step \d+\/\d+ route53:\S+ done/.test(t)), `each step phase says which step and how it went: "${stepLines[0]}"`);
  check(!(await phasesOf('ui-reject')).some((p) => ['approved', 'step', 'completed'].includes(p)), 'the rejected failover never ran');
  await page.screenshot({ path: `${opt.artifacts}/dashboard-failover-approved.png`, fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `no horizontal scrolling at 390 px with the timeline full (overflow ${overflow}px)`);
  await page.setViewportSize({ width: 1440, height: 1000 });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 1000 }, hasTouch: true });
  page.on('pageerror', (e) => {
    console.error(`page error: ${e.message}`);
    failed = true;
  });
  if (opt.mode === 'layout') await layout(page);
  else if (opt.mode === 'answer') await answering(page);
  else await full(page);
  if (failed) throw new Error('the page raised errors (above)');
  console.log('OK');
} catch (e) {
  console.error(`FAILED: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  lines.close();
}
