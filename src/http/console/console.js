/*
 * The Spillway web console (docs/operations.md "Console").
 *
 * Every POLL_MS it reads /metrics (Prometheus text), /v1/status, /readyz,
 * /v1/streams, /v1/sinks and /v1/views from the server that served it,
 * keeps the last WINDOW_MS of samples in this tab (rates are the
 * difference of two scrapes' counters over the time between them; kept
 * across reloads in sessionStorage) and draws them with Chart.js. #/stream/NAME shows one stream: its
 * partitions and a tail of its newest events (GET .../events from each
 * partition's end).
 *
 * Tokens: when the server answers 401 the page asks for a token, keeps it
 * in sessionStorage (this tab only) and sends it as Authorization: Bearer.
 * A link may carry it in its fragment (#token=T, never sent to a server);
 * the page moves it to sessionStorage and takes it out of the address.
 *
 * Everything shown is put in the page as text (textContent), never as
 * markup: stream names, keys and events are the clients' bytes.
 *
 * For tests and scripts, <body> carries data-state (loading, live, login,
 * error), data-polls (scrapes done) and data-points (values drawn in all
 * charts); each canvas carries data-points of its own.
 */
'use strict';

const POLL_MS = 2000;
const WINDOW_MS = 5 * 60 * 1000;
const TAIL_PER_PARTITION = 20;
const TAIL_ROWS = 50;
const MAX_STREAM_SERIES = 8;
const MAX_LAG_SERIES = 8;
const TOKEN_KEY = 'spillway.token';
const COLORS = ['#1f6feb', '#d6336c', '#2f9e44', '#f08c00', '#7048e8', '#0c8599', '#e8590c', '#5c940d',
  '#c2255c', '#364fc7'];

const $ = (id) => document.getElementById(id);

/* ---- the token ---- */

(function tokenFromFragment() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (!m) return;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
  const rest = location.hash.replace(/(^#|&)token=[^&]*/, '$1').replace(/^#&/, '#');
  history.replaceState(null, '', location.pathname + location.search + (rest === '#' ? '' : rest));
})();

class Unauthorized extends Error {}

async function api(path, accept) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = 'Bearer ' + token;
  if (accept) headers.Accept = accept;
  const r = await fetch(path, { headers, cache: 'no-store' });
  if (r.status === 401) throw new Unauthorized(path);
  return r;
}

async function apiJson(path) {
  const r = await api(path, 'application/json');
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new Error(path + ': ' + (body && body.error ? body.error + ' (' + body.code + ')' : 'HTTP ' + r.status));
  return body;
}

/* ---- Prometheus text ---- */

/* Returns [{name, labels: {..}, value}] for every sample line. */
function parseMetrics(text) {
  const out = [];
  const labelRe = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    let name, labels = {}, rest;
    const brace = line.indexOf('{');
    const space = line.indexOf(' ');
    if (brace >= 0 && brace < space) {
      name = line.slice(0, brace);
      const close = line.lastIndexOf('}');
      const ls = line.slice(brace + 1, close);
      let m;
      labelRe.lastIndex = 0;
      while ((m = labelRe.exec(ls)))
        labels[m[1]] = m[2].replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
      rest = line.slice(close + 1).trim();
    } else {
      name = line.slice(0, space);
      rest = line.slice(space + 1).trim();
    }
    const value = parseFloat(rest.split(' ')[0]);
    if (name && !Number.isNaN(value)) out.push({ name, labels, value });
  }
  return out;
}

/* The samples of one scrape, by family: sum(name, by) adds the samples
 * of name grouped by the label names in by ('' when by is empty). */
class Scrape {
  constructor(text, t) {
    this.t = t;
    this.fam = new Map();
    for (const s of parseMetrics(text)) {
      if (!this.fam.has(s.name)) this.fam.set(s.name, []);
      this.fam.get(s.name).push(s);
    }
  }
  samples(name) { return this.fam.get(name) || []; }
  one(name) { const s = this.samples(name); return s.length ? s[0].value : null; }
  sum(name, by) {
    const m = new Map();
    for (const s of this.samples(name)) {
      const k = (by || []).map((l) => s.labels[l] || '').join('/');
      m.set(k, (m.get(k) || 0) + s.value);
    }
    return m;
  }
  /* cumulative histogram buckets: [[le, count]...] sorted by le */
  buckets(name) {
    return this.samples(name + '_bucket')
      .map((s) => [s.labels.le === '+Inf' ? Infinity : parseFloat(s.labels.le), s.value])
      .sort((a, b) => a[0] - b[0]);
  }
}

/* Per-second rate of each key of two sums (keys only in cur start at 0:
 * a counter that appeared since the last scrape). */
function rates(prev, cur, dt) {
  const out = new Map();
  for (const [k, v] of cur) {
    const p = prev.has(k) ? prev.get(k) : 0;
    out.set(k, v >= p ? (v - p) / dt : v / dt); /* a reset: the new count */
  }
  return out;
}

/* The upper bound of the bucket holding quantile q of what two scrapes'
 * histograms counted in between (null when nothing was counted). */
function quantile(prevB, curB, q) {
  const d = curB.map(([le, c], i) => [le, c - (prevB[i] ? prevB[i][1] : 0)]);
  const total = d.length ? d[d.length - 1][1] : 0;
  if (total <= 0) return null;
  for (const [le, c] of d) if (c >= q * total) return Number.isFinite(le) ? le : null;
  return null;
}

/* ---- history: one time axis, named series ---- */

class History {
  constructor() { this.times = []; this.series = new Map(); }
  push(t, values /* Map name -> number */) {
    this.times.push(t);
    for (const [k, v] of values) {
      if (!this.series.has(k)) this.series.set(k, new Array(this.times.length - 1).fill(null));
    }
    for (const [k, arr] of this.series) arr.push(values.has(k) ? values.get(k) : null);
    while (this.times.length && this.times[0] < t - WINDOW_MS) {
      this.times.shift();
      for (const arr of this.series.values()) arr.shift();
    }
    for (const [k, arr] of this.series) if (arr.every((v) => v === null)) this.series.delete(k);
  }
}

/* The histories are kept in the tab's sessionStorage after each sample,
 * so a reload (or the way back from another page) starts with the charts
 * it had. Too big (a server with very many streams) or unreadable: the
 * charts start empty, as on a first visit. */
const HISTORY_KEY = 'spillway.history';

function saveHistory() {
  try {
    const o = {};
    for (const [k, h] of Object.entries(hist)) o[k] = { times: h.times, series: [...h.series] };
    const text = JSON.stringify(o);
    if (text.length < 2e6) sessionStorage.setItem(HISTORY_KEY, text);
    else sessionStorage.removeItem(HISTORY_KEY);
  } catch (e) { /* storage off or full */ }
}

function loadHistory() {
  let o = null;
  try { o = JSON.parse(sessionStorage.getItem(HISTORY_KEY) || 'null'); } catch (e) { o = null; }
  if (!o) return;
  const now = Date.now();
  for (const [k, h] of Object.entries(hist)) {
    const s = o[k];
    if (!s || !Array.isArray(s.times) || !Array.isArray(s.series)) continue;
    const series = new Map(s.series);
    if (![...series.values()].every((a) => Array.isArray(a) && a.length === s.times.length)) continue;
    h.times = s.times;
    h.series = series;
    while (h.times.length && h.times[0] < now - WINDOW_MS) {
      h.times.shift();
      for (const a of h.series.values()) a.shift();
    }
  }
}

/* ---- charts ---- */

const fmtNum = (v) => v === null || v === undefined ? '–'
  : Math.abs(v) >= 1e9 ? (v / 1e9).toFixed(2) + ' G' : Math.abs(v) >= 1e6 ? (v / 1e6).toFixed(2) + ' M'
  : Math.abs(v) >= 1e4 ? (v / 1e3).toFixed(1) + ' k' : Number.isInteger(v) ? String(v) : v.toFixed(2);
const fmtBytes = (v) => v === null || v === undefined ? '–'
  : v >= 1 << 30 ? (v / (1 << 30)).toFixed(2) + ' GiB' : v >= 1 << 20 ? (v / (1 << 20)).toFixed(1) + ' MiB'
  : v >= 1024 ? (v / 1024).toFixed(1) + ' KiB' : v + ' B';
const fmtTime = (t) => new Date(t).toLocaleTimeString([], { hour12: false });

const charts = {};

function makeChart(id, opts) {
  const o = opts || {};
  const c = new Chart($(id), {
    type: 'line',
    data: { labels: [], datasets: [] },
    options: {
      animation: false, responsive: true, maintainAspectRatio: false, normalized: true,
      interaction: { mode: 'index', intersect: false },
      elements: { point: { radius: 0 }, line: { borderWidth: 2, tension: 0.2 } },
      scales: Object.assign({
        x: { ticks: { maxTicksLimit: 6, maxRotation: 0 }, grid: { display: false } },
        y: { beginAtZero: true, ticks: { callback: o.bytes ? fmtBytes : fmtNum } },
      }, o.right ? { y1: { position: 'right', beginAtZero: true, grid: { drawOnChartArea: false },
        title: { display: true, text: o.right }, ticks: { callback: fmtNum } } } : {}),
      plugins: { legend: { position: 'bottom', labels: { boxWidth: 12, font: { size: 11 } } } },
    },
  });
  c.$spw = o;
  charts[id] = c;
  return c;
}

/* Sets chart id's datasets from history h (names: which series, in
 * order; label(name) its legend; style(name) extra dataset fields). */
function draw(id, h, names, label, style) {
  const c = charts[id];
  c.data.labels = h.times.map(fmtTime);
  const old = new Map(c.data.datasets.map((d) => [d.$name, d]));
  c.data.datasets = names.filter((n) => h.series.has(n)).map((n, i) => {
    const d = old.get(n) || { $name: n };
    const col = COLORS[i % COLORS.length];
    Object.assign(d, { label: label ? label(n) : n, data: h.series.get(n), borderColor: col,
      backgroundColor: col + '22', fill: false, spanGaps: true }, style ? style(n) : {});
    return d;
  });
  c.update('none');
  let points = 0;
  for (const d of c.data.datasets) points += d.data.filter((v) => v !== null).length;
  c.canvas.dataset.points = points;
  return points;
}

/* ---- DOM helpers: text only ---- */

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else if (k === 'href') e.href = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(k === null || k === undefined ? '' : String(k)));
  return e;
}

function fillTable(id, rows, empty) {
  const tb = $(id).tBodies[0];
  const cols = $(id).tHead.rows[0].cells.length;
  tb.replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { class: 'empty', colspan: cols }, empty))]));
  $(id).dataset.rows = rows.length;
}

const num = (v) => el('td', { class: 'n' }, typeof v === 'number' ? fmtNum(v) : v);

/* ---- state ---- */

const hist = {
  events: new History(), pending: new History(), rejected: new History(),
  fsync: new History(), gc: new History(), lag: new History(),
};
let prev = null;
let polls = 0;
let timer = null;
let last = { streams: [], sinks: [], views: [], scrape: null, streamRates: new Map() };

function route() {
  const m = /^#\/stream\/(.+)$/.exec(location.hash);
  return m ? { page: 'stream', name: decodeURIComponent(m[1]) } : { page: 'overview' };
}

function show(state) {
  document.body.dataset.state = state;
  $('login').hidden = state !== 'login';
  const r = route();
  $('overview').hidden = state !== 'live' || r.page !== 'overview';
  $('stream').hidden = state !== 'live' || r.page !== 'stream';
  $('signout').hidden = !sessionStorage.getItem(TOKEN_KEY);
}

/* ---- one poll ---- */

async function poll() {
  const t = Date.now();
  const [text, status, ready, streams, sinks, views] = await Promise.all([
    api('/metrics', 'text/plain').then((r) => {
      if (!r.ok) throw new Error('/metrics: HTTP ' + r.status);
      return r.text();
    }),
    apiJson('/v1/status'),
    fetch('/readyz', { cache: 'no-store' }).then((r) => r.json()).catch(() => null),
    apiJson('/v1/streams'),
    apiJson('/v1/sinks').catch(() => ({ sinks: [] })),
    apiJson('/v1/views').catch(() => ({ views: [] })),
  ]);
  const cur = new Scrape(text, t);
  last = { streams: streams.streams || [], sinks: sinks.sinks || [], views: views.views || [], scrape: cur,
    streamRates: last.streamRates };
  header(status, ready);
  if (prev) {
    sample(prev, cur);
    saveHistory();
  }
  prev = cur;
  polls++;
  document.body.dataset.polls = polls;
  render();
}

function header(status, ready) {
  const up = Math.round(status.uptime_ms / 1000);
  const upText = up >= 86400 ? Math.floor(up / 86400) + 'd ' + Math.floor(up % 86400 / 3600) + 'h'
    : up >= 3600 ? Math.floor(up / 3600) + 'h ' + Math.floor(up % 3600 / 60) + 'm' : Math.floor(up / 60) + 'm ' + up % 60 + 's';
  $('server-info').textContent = location.host + ' · v' + status.version + ' (' + status.commit + ') · node ' +
    status.node_id + ' · up ' + upText;
  const pill = $('ready');
  if (ready && ready.status === 'ready') {
    pill.textContent = 'ready'; pill.className = 'pill ok'; pill.title = '';
  } else {
    pill.textContent = 'not ready'; pill.className = 'pill bad';
    pill.title = ready ? ready.reasons.map((r) => r.code + ': ' + r.detail).join('\n') : '/readyz did not answer';
  }
  const tiles = [
    ['streams', status.streams], ['connections', status.connections],
    ['pending, of ' + fmtBytes(status.limits.max_pending_bytes), fmtBytes(status.pending_bytes)],
    ['disk' + (status.disk.max_bytes ? ', of ' + fmtBytes(status.disk.max_bytes) : ''), fmtBytes(status.disk.bytes)],
    ['free on the file system', fmtBytes(status.disk.fs_available_bytes)],
    ['failed partitions', status.disk.failed_partitions],
  ];
  $('tiles').replaceChildren(...tiles.map(([k, v]) => el('div', { class: k === 'failed partitions' && v > 0 ? 'tile bad' : 'tile' },
    el('div', { class: 'v' }, v),
    el('div', { class: 'k' }, k))));
}

/* Adds one point to every history from two scrapes. */
function sample(p, c) {
  const dt = (c.t - p.t) / 1000;
  if (dt <= 0) return;
  const t = c.t;
  const total = rates(p.sum('spillway_events_in_total'), c.sum('spillway_events_in_total'), dt);
  hist.events.push(t, new Map([['all streams', total.get('') || 0],
    ...rates(p.sum('spillway_stream_events_in_total', ['stream']), c.sum('spillway_stream_events_in_total', ['stream']), dt)]));
  last.streamRates = rates(p.sum('spillway_stream_events_in_total', ['stream']),
    c.sum('spillway_stream_events_in_total', ['stream']), dt);

  hist.pending.push(t, new Map([
    ['pending', c.one('spillway_pending_bytes')], ['budget', c.one('spillway_pending_budget_bytes')],
    ['high watermark', c.one('spillway_pending_high_watermark_bytes')],
    ['low watermark', c.one('spillway_pending_low_watermark_bytes')]].filter(([, v]) => v !== null)));

  hist.rejected.push(t, rates(p.sum('spillway_rejected_total', ['reason']), c.sum('spillway_rejected_total', ['reason']), dt));

  const fs = 'spillway_log_fsync_seconds';
  const dn = (c.one(fs + '_count') || 0) - (p.one(fs + '_count') || 0);
  const ds = (c.one(fs + '_sum') || 0) - (p.one(fs + '_sum') || 0);
  const p99 = quantile(p.buckets(fs), c.buckets(fs), 0.99);
  hist.fsync.push(t, new Map([['mean', dn > 0 ? ds / dn * 1000 : null], ['p99 (bucket bound)', p99 === null ? null : p99 * 1000]]));

  const gc = 'spillway_log_group_commit_appends';
  const gn = (c.one(gc + '_count') || 0) - (p.one(gc + '_count') || 0);
  const gs = (c.one(gc + '_sum') || 0) - (p.one(gc + '_sum') || 0);
  hist.gc.push(t, new Map([['appends per round', gn > 0 ? gs / gn : null], ['rounds per second', gn / dt]]));

  const lag = new Map();
  for (const [k, v] of c.sum('spillway_group_lag', ['stream', 'group'])) lag.set('group ' + k, v);
  for (const [k, v] of c.sum('spillway_sink_lag', ['sink'])) lag.set('sink ' + k, v);
  for (const [k, v] of c.sum('spillway_view_lag_events', ['view'])) lag.set('view ' + k, v);
  hist.lag.push(t, lag);
}

function render() {
  const r = route();
  show('live');
  let points = 0;
  if (r.page === 'overview') {
    /* all streams, and the busiest MAX_STREAM_SERIES streams now */
    const ev = [...last.streamRates.entries()].sort((a, b) => b[1] - a[1]).slice(0, MAX_STREAM_SERIES)
      .map(([n]) => n);
    points += draw('c-events', hist.events, ['all streams', ...ev.sort()],
      (n) => n, (n) => n === 'all streams' ? { borderWidth: 3, borderColor: '#0d1b2a', backgroundColor: '#0d1b2a22' } : {});
    points += draw('c-pending', hist.pending, ['pending', 'low watermark', 'high watermark', 'budget'], null,
      (n) => n === 'pending' ? { fill: true } : { borderDash: [6, 4], borderWidth: 1 });
    points += draw('c-rejected', hist.rejected, [...hist.rejected.series.keys()].sort());
    points += draw('c-fsync', hist.fsync, ['mean', 'p99 (bucket bound)']);
    points += draw('c-gc', hist.gc, ['appends per round', 'rounds per second'], null,
      (n) => n === 'rounds per second' ? { yAxisID: 'y1', borderDash: [4, 3], borderWidth: 1 } : { fill: true });
    /* the budget is the top, in eighths: 8 MiB steps for the default 64 MiB */
    const budget = hist.pending.series.get('budget');
    const top = budget && budget[budget.length - 1];
    if (top) {
      const y = charts['c-pending'].options.scales.y;
      if (y.max !== top) { y.max = top; y.ticks.stepSize = top / 8; charts['c-pending'].update('none'); }
    }
    /* the MAX_LAG_SERIES largest lags now */
    const lagNow = [...hist.lag.series.entries()].map(([n, a]) => [n, a[a.length - 1] || 0]);
    points += draw('c-lag', hist.lag, lagNow.sort((a, b) => b[1] - a[1]).slice(0, MAX_LAG_SERIES).map(([n]) => n).sort());
    tables();
  } else {
    points += draw('c-stream', hist.events, [r.name], () => 'events/s');
    streamPage(r.name).catch(fail);
  }
  document.body.dataset.points = points;
}

function tables() {
  const c = last.scrape;
  const ends = c.sum('spillway_partition_end_offset', ['stream']);
  const bytes = c.sum('spillway_partition_bytes', ['stream']);
  fillTable('t-streams', last.streams.map((s) => el('tr', {},
    el('td', {}, el('a', { href: '#/stream/' + encodeURIComponent(s.name) }, s.name)),
    num(s.partitions), el('td', {}, s.format), el('td', { class: 'mono' }, s.key || '–'), el('td', {}, s.ack),
    num(last.streamRates.has(s.name) ? last.streamRates.get(s.name) : null),
    num(ends.has(s.name) ? ends.get(s.name) : null), el('td', { class: 'n' }, fmtBytes(bytes.get(s.name))))),
  'no streams yet');

  fillTable('t-sinks', last.sinks.map((s) => el('tr', {},
    el('td', {}, s.name), el('td', {}, s.definition.kind), el('td', {}, s.definition.stream),
    el('td', { class: 'state-' + s.state }, s.state), num(s.lag), num(s.delivered_total), num(s.events_per_sec),
    num(s.errors_total), num(s.dlq_total), el('td', { class: 'error' }, s.last_error || ''))), 'no sinks');

  const committed = c.sum('spillway_group_committed_offset', ['stream', 'group']);
  const lag = c.sum('spillway_group_lag', ['stream', 'group']);
  const parts = new Map();
  for (const s of c.samples('spillway_group_lag')) {
    const k = s.labels.stream + '/' + s.labels.group;
    parts.set(k, (parts.get(k) || 0) + 1);
  }
  fillTable('t-groups', [...lag.keys()].sort().map((k) => {
    const [stream, ...g] = k.split('/');
    return el('tr', {}, el('td', {}, stream), el('td', {}, g.join('/')), num(parts.get(k)), num(committed.get(k)),
      num(lag.get(k)));
  }), 'no consumer groups');

  fillTable('t-views', last.views.map((v) => el('tr', {},
    el('td', {}, v.name), el('td', {}, v.definition.kind), el('td', {}, v.definition.stream),
    el('td', { class: 'state-' + v.state }, v.state), num(v.lag_events), num(v.lag_ms), num(v.keys),
    num(v.applied_total), el('td', { class: 'error' }, v.last_error || ''))), 'no views');
}

/* The stream page: its definition, partitions and newest events. */
async function streamPage(name) {
  const path = '/v1/streams/' + encodeURIComponent(name);
  const s = await apiJson(path);
  $('s-title').textContent = 'Stream ' + s.name;
  $('s-def').textContent = JSON.stringify(Object.fromEntries(Object.entries(s).filter(([k]) => k !== 'partition_state')));
  const ps = s.partition_state || [];
  fillTable('t-parts', ps.map((p) => el('tr', {}, num(p.partition), num(p.start_offset), num(p.end_offset),
    num(p.durable_offset), el('td', { class: 'n' }, fmtBytes(p.bytes)), num(p.segments))), 'no partitions');
  /* hot keys (docs/api.md "Hot keys"): the keys split now, then the
   * hottest of the last complete window that are not */
  const hk = s.hot_keys_state || { split: [], top: [] };
  const rate = new Map((hk.top || []).map((t) => [t.key, t.per_s]));
  const split = hk.split || [];
  const rows = split.map((h) => el('tr', {}, el('td', { class: 'mono' }, h.key), el('td', {}, h.how),
    num(h.split), el('td', { class: 'mono' }, (h.partitions || []).join(' ')),
    el('td', { class: 'n' }, rate.has(h.key) ? rate.get(h.key).toFixed(1) : '')));
  for (const t of hk.top || [])
    if (!split.some((h) => h.key === t.key))
      rows.push(el('tr', {}, el('td', { class: 'mono' }, t.key), el('td', {}, 'not split'), el('td', { class: 'n' }, ''),
        el('td', {}, ''), el('td', { class: 'n' }, t.per_s.toFixed(1))));
  fillTable('t-hot', rows, s.hot_keys ? 'no hot key in the last window' : 'hot keys are not counted on this stream');
  const reads = await Promise.all(ps.filter((p) => p.end_offset > p.start_offset).map(async (p) => {
    const from = Math.max(p.start_offset, p.end_offset - TAIL_PER_PARTITION);
    const r = await api(path + '/events?partition=' + p.partition + '&offset=' + from + '&limit=' + TAIL_PER_PARTITION,
      'application/x-ndjson');
    if (!r.ok) return [];
    return (await r.text()).split('\n').filter(Boolean).map((l) => { try { return JSON.parse(l); } catch (e) { return null; } })
      .filter(Boolean);
  }));
  const recs = reads.flat().sort((a, b) => (b.ts - a.ts) || (b.offset - a.offset)).slice(0, TAIL_ROWS);
  fillTable('t-tail', recs.map((e) => el('tr', {},
    el('td', { class: 'mono' }, new Date(e.ts).toISOString().replace('T', ' ').replace('Z', '')),
    num(e.partition), num(e.offset), el('td', { class: 'mono' }, e.key === null || e.key === undefined ? '' : e.key),
    el('td', { class: 'value', title: typeof e.value === 'string' ? e.value : JSON.stringify(e.value) },
      typeof e.value === 'string' ? e.value : JSON.stringify(e.value)))), 'no events yet');
}

/* ---- the loop ---- */

function fail(e) {
  if (e instanceof Unauthorized) {
    clearTimeout(timer);
    timer = null;
    if (sessionStorage.getItem(TOKEN_KEY))
      $('login-error').textContent = 'The server did not accept this token.';
    show('login');
    $('token').focus();
    return;
  }
  $('error').textContent = String(e.message || e);
  $('error').hidden = false;
  if (!polls) show('error');
}

async function tick() {
  try {
    await poll();
    $('error').hidden = true;
  } catch (e) {
    fail(e);
    if (e instanceof Unauthorized) return;
  }
  timer = setTimeout(tick, POLL_MS);
}

function start() {
  if (timer) clearTimeout(timer);
  prev = null;
  tick();
}

document.addEventListener('DOMContentLoaded', () => {
  $('window-min').textContent = WINDOW_MS / 60000;
  $('poll-s').textContent = POLL_MS / 1000;
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = '#6b7385';
  for (const id of ['c-events', 'c-rejected', 'c-fsync', 'c-lag', 'c-stream']) makeChart(id);
  makeChart('c-pending', { bytes: true });
  makeChart('c-gc', { right: 'rounds per second' });
  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $('token').value);
    $('token').value = '';
    $('login-error').textContent = '';
    show('loading');
    start();
  });
  $('signout').addEventListener('click', () => { sessionStorage.removeItem(TOKEN_KEY); location.reload(); });
  window.addEventListener('hashchange', () => { if (last.scrape) render(); });
  loadHistory();
  start();
});
