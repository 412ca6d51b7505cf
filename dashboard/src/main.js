// Waymark dashboard: a static page that only reads the report API.
//
// The token lives in this module's memory for as long as the tab shows the page: it is never
// written to storage, a cookie or the URL. Everything else (site, dates, filters, funnel steps,
// journey start) lives in the URL's query string, so a view can be shared by its address.
import './style.css';
import { chart, empty, resizeAll, disposeAll, PALETTE } from './charts.js';

const DEFAULT_SITE = 'demo-shop';
const DEFAULT_STEPS = ['page:/products/*', 'cart:add', 'cart:checkout', 'cart:purchase'];
const FILTERS = ['source', 'device', 'browser', 'country', 'page'];
const REALTIME_MS = 10_000;

let token = null;
let realtimeTimer = null;
let generation = 0; // answers of an older load are dropped
let lastTimeseries = null;

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'style') Object.assign(e.style, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c instanceof Node ? c : String(c));
  return e;
};
// ECharts renders tooltips as HTML: anything from the data (paths, names) is escaped.
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// ---------- state in the URL ----------

function localDate(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

function defaults() {
  const to = new Date();
  const from = new Date(to.getTime() - 29 * 86_400_000);
  return { from: localDate(from), to: localDate(to) };
}

function readState() {
  const q = new URLSearchParams(location.search);
  const d = defaults();
  const steps = q.getAll('step').filter(Boolean);
  return {
    site: q.get('site') || DEFAULT_SITE,
    from: q.get('from') || d.from,
    to: q.get('to') || d.to,
    tz: q.get('tz') || Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC',
    filters: Object.fromEntries(FILTERS.map((f) => [f, q.get(f) || ''])),
    steps: steps.length ? steps : DEFAULT_STEPS,
    metric: q.get('metric') || 'visitors',
    start: q.get('start') || '',
    depth: q.get('depth') || '4',
  };
}

let state = readState();

function writeState(replace = false) {
  const q = new URLSearchParams();
  q.set('site', state.site);
  q.set('from', state.from);
  q.set('to', state.to);
  q.set('tz', state.tz);
  for (const f of FILTERS) if (state.filters[f]) q.set(f, state.filters[f]);
  if (state.steps.join('\n') !== DEFAULT_STEPS.join('\n')) for (const s of state.steps) q.append('step', s);
  if (state.metric !== 'visitors') q.set('metric', state.metric);
  if (state.start) q.set('start', state.start);
  if (state.depth !== '4') q.set('depth', state.depth);
  const url = `${location.pathname}?${q}`;
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
}

function stateToForm() {
  $('site').value = state.site;
  $('from').value = state.from;
  $('to').value = state.to;
  for (const f of FILTERS) $(`f-${f}`).value = state.filters[f];
  $('funnel-steps').value = state.steps.join(', ');
  $('paths-start').value = state.start;
  $('paths-depth').value = state.depth;
  for (const b of $('ts-metric').querySelectorAll('button')) b.classList.toggle('on', b.dataset.metric === state.metric);
  const label = $('site-label');
  label.textContent = state.site;
  label.hidden = !token;
}

// ---------- the API ----------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
  }
}

async function api(report, extra = [], { dates = true, filters = true } = {}) {
  const q = new URLSearchParams();
  if (dates) { q.set('from', state.from); q.set('to', state.to); }
  q.set('tz', state.tz);
  if (filters) for (const f of FILTERS) if (state.filters[f]) q.append('filter', `${f}:${state.filters[f]}`);
  for (const [k, v] of extra) q.append(k, v);
  const res = await fetch(`/api/v1/sites/${encodeURIComponent(state.site)}/${report}?${q}`, {
    headers: { Authorization: `Bearer ${token}` },
    cache: 'no-store',
    credentials: 'omit',
    referrerPolicy: 'no-referrer',
  });
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

// ---------- formatting ----------

const nf = new Intl.NumberFormat('en');
const int = (n) => nf.format(Math.round(n || 0));
const pct = (r) => `${(100 * (r || 0)).toFixed(1)}%`;
function duration(s) {
  s = Math.round(s || 0);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}
function money(amount, currency) {
  try {
    return new Intl.NumberFormat('en', { style: 'currency', currency }).format(amount);
  } catch {
    return `${amount.toFixed(2)} ${currency}`;
  }
}
function moneyMap(m) {
  const entries = Object.entries(m || {});
  return entries.length ? entries.map(([c, v]) => money(v, c)).join(' · ') : '–';
}

// ---------- overview cards ----------

const CARDS = [
  ['visitors', 'Visitors', int, '#4f46e5', 'distinct per day'],
  ['sessions', 'Sessions', int, '#0ea5e9'],
  ['pageviews', 'Page views', int, '#10b981'],
  ['bounce_rate', 'Bounce rate', pct, '#f59e0b'],
  ['avg_duration_s', 'Avg. duration', duration, '#8b5cf6'],
  ['avg_scroll', 'Avg. scroll depth', (v) => `${Math.round(v || 0)}%`, '#14b8a6'],
  ['conversion_rate', 'Conversion rate', pct, '#ec4899', 'sessions with a purchase'],
  ['revenue', 'Revenue', moneyMap, '#f97316'],
  ['dropped', 'Dropped events', (m) => int(Object.values(m || {}).reduce((a, b) => a + b, 0)), '#64748b'],
];

function renderCards(o) {
  const cards = CARDS.map(([key, label, fmt, accent, sub]) => {
    let subText = sub || '';
    if (key === 'dropped') {
      subText = Object.entries(o.dropped || {}).filter(([, v]) => v).map(([k, v]) => `${k} ${int(v)}`).join(' · ') || 'bots, rejected, stale';
    }
    if (key === 'sessions') subText = `${(o.sessions && o.visitors ? o.sessions / o.visitors : 0).toFixed(2)} per visitor`;
    if (key === 'pageviews') subText = `${(o.sessions ? o.pageviews / o.sessions : 0).toFixed(2)} per session`;
    const value = o[key];
    return el('div', { class: 'card metric', 'data-metric': key, 'data-value': JSON.stringify(value ?? null), style: { '--accent': accent } },
      el('div', { class: 'label' }, label),
      el('div', { class: 'value', title: fmt(value) }, fmt(value)),
      el('div', { class: 'sub' }, subText));
  });
  $('cards').replaceChildren(...cards);
}

// ---------- time series ----------

const AXIS = {
  axisLine: { lineStyle: { color: '#d5d9e4' } },
  axisLabel: { color: '#6b7487', fontSize: 11 },
  splitLine: { lineStyle: { color: '#eef1f6' } },
};

function renderTimeseries(ts) {
  lastTimeseries = ts;
  const points = ts.points || [];
  if (!points.length) return empty('chart-timeseries', 'No data in this range');
  const m = state.metric;
  const isRate = m.endsWith('_rate');
  const labels = points.map((p) => (ts.interval === 'hour' ? String(p.start).slice(11, 16) || p.start : String(p.start).slice(5)));
  chart('chart-timeseries').setOption({
    color: [PALETTE[0]],
    grid: { left: 48, right: 16, top: 16, bottom: 28 },
    tooltip: {
      trigger: 'axis',
      valueFormatter: (v) => (isRate ? pct(v) : int(v)),
    },
    xAxis: { type: 'category', data: labels, boundaryGap: false, ...AXIS, splitLine: { show: false } },
    yAxis: { type: 'value', minInterval: isRate ? 0 : 1, ...AXIS, axisLabel: { ...AXIS.axisLabel, formatter: isRate ? (v) => `${Math.round(v * 100)}%` : undefined } },
    series: [{
      name: $('ts-metric').querySelector(`[data-metric="${m}"]`)?.textContent || m,
      type: 'line', smooth: 0.25, symbol: 'circle', symbolSize: 5, showSymbol: points.length < 40,
      data: points.map((p) => p[m] ?? 0),
      lineStyle: { width: 2.5 },
      areaStyle: { color: { type: 'linear', x: 0, y: 0, x2: 0, y2: 1, colorStops: [{ offset: 0, color: 'rgba(79,70,229,.28)' }, { offset: 1, color: 'rgba(79,70,229,.02)' }] } },
    }],
  }, true);
}

// ---------- tables and bar lists ----------

function table(id, columns, rows, onRow) {
  if (!rows.length) {
    $(id).replaceChildren(el('div', { class: 'empty' }, 'No data in this range'));
    return;
  }
  const head = el('tr', {}, ...columns.map(([label]) => el('th', {}, label)));
  const body = rows.map((r) => {
    const tr = el('tr', {}, ...columns.map(([, f]) => {
      const v = f(r);
      return el('td', typeof v === 'string' && v.length > 40 ? { title: v } : {}, v);
    }));
    if (onRow) {
      tr.style.cursor = 'pointer';
      tr.title = 'Filter by this';
      tr.addEventListener('click', () => onRow(r));
    }
    return tr;
  });
  $(id).replaceChildren(el('table', {}, el('thead', {}, head), el('tbody', {}, ...body)));
}

function bars(id, rows, name, value, color = PALETTE[0], fmt = int) {
  if (!rows.length) {
    $(id).replaceChildren(el('div', { class: 'empty' }, 'No data'));
    return;
  }
  const max = Math.max(...rows.map(value), 1);
  $(id).replaceChildren(...rows.slice(0, 8).map((r) => el('div', { class: 'bar-row' },
    el('span', { class: 'name', title: name(r) }, name(r)),
    el('span', { class: 'num' }, fmt(value(r))),
    el('div', { class: 'track' }, el('div', { class: 'fill', style: { width: `${(100 * value(r)) / max}%`, background: color } })))));
}

function setFilter(key, value) {
  state.filters[key] = value;
  writeState();
  stateToForm();
  loadAll();
}

function renderPages(p) {
  table('table-pages', [
    ['Page', (r) => r.path],
    ['Views', (r) => int(r.pageviews)],
    ['Visitors', (r) => int(r.visitors)],
    ['Entries', (r) => int(r.entries)],
    ['Exit rate', (r) => pct(r.exit_rate)],
    ['Scroll', (r) => `${Math.round(r.avg_scroll)}%`],
    ['Engaged', (r) => duration(r.avg_engaged_s)],
  ], p.pages || [], (r) => setFilter('page', r.path));
}

function renderSources(s) {
  table('table-sources', [
    ['Source', (r) => (r.medium && r.medium !== 'none' && r.medium !== r.source ? `${r.source} / ${r.medium}` : r.source) + (r.campaign ? ` · ${r.campaign}` : '')],
    ['Visitors', (r) => int(r.visitors)],
    ['Sessions', (r) => int(r.sessions)],
    ['Conv.', (r) => pct(r.conversion_rate)],
    ['Revenue', (r) => moneyMap(r.revenue)],
  ], s.sources || [], (r) => setFilter('source', r.source));
}

function renderDevices(d) {
  const rows = d.rows || [];
  if (!rows.length) return empty('chart-devices', 'No data');
  chart('chart-devices').setOption({
    color: PALETTE,
    tooltip: { trigger: 'item', formatter: (p) => `${esc(p.name)}<br><b>${int(p.value)}</b> visitors (${p.percent}%)` },
    legend: { bottom: 0, icon: 'circle', itemWidth: 8, itemHeight: 8, textStyle: { color: '#6b7487' } },
    series: [{
      type: 'pie', radius: ['48%', '72%'], center: ['50%', '44%'], avoidLabelOverlap: true,
      itemStyle: { borderColor: '#fff', borderWidth: 2 },
      label: { show: true, position: 'center', formatter: () => int(rows.reduce((a, r) => a + r.visitors, 0)), fontSize: 20, fontWeight: 700, color: '#172033' },
      labelLine: { show: false },
      data: rows.map((r) => ({ name: r.device, value: r.visitors })),
    }],
  }, true);
  chart('chart-devices').off('click');
  chart('chart-devices').on('click', (p) => setFilter('device', p.name));
}

// ---------- funnel ----------

function renderFunnel(f) {
  const steps = f.steps || [];
  if (!steps.length || !steps[0].sessions) {
    empty('chart-funnel', 'No session reached the first step in this range');
  } else {
    const first = steps[0].sessions;
    chart('chart-funnel').setOption({
      color: ['#4f46e5', '#6366f1', '#818cf8', '#a5b4fc', '#c7d2fe', '#e0e7ff'],
      tooltip: {
        trigger: 'item',
        formatter: (p) => {
          const s = steps[p.dataIndex];
          return `${esc(s.step)}<br><b>${int(s.sessions)}</b> sessions · ${pct(s.conversion)} of step 1` +
            (p.dataIndex < steps.length - 1 ? `<br>drop-off ${int(s.drop_off)} (${pct(s.drop_off_rate)})` : '');
        },
      },
      series: [{
        type: 'funnel', sort: 'none', min: 0, max: first, minSize: '8%', gap: 3,
        left: '4%', right: '30%', top: 8, bottom: 8,
        label: {
          position: 'right',
          formatter: (p) => `{a|${p.name}}\n{n|${int(p.value)} sessions · ${pct(p.value / first)}}`,
          rich: { a: { color: '#172033', fontSize: 12, fontWeight: 600, lineHeight: 18 }, n: { color: '#6b7487', fontSize: 11, lineHeight: 15 } },
        },
        labelLine: { show: true, length: 12, lineStyle: { color: '#d5d9e4' } },
        itemStyle: { borderColor: '#fff', borderWidth: 1 },
        data: steps.map((s) => ({ name: s.step, value: s.sessions })),
      }],
    }, true);
  }
  table('funnel-table', [
    ['Step', (r) => r.step],
    ['Sessions', (r) => int(r.sessions)],
    ['Conversion', (r) => pct(r.conversion)],
    ['Drop-off', (r) => (r === steps[steps.length - 1] ? '–' : `${int(r.drop_off)} (${pct(r.drop_off_rate)})`)],
    ['Median to next', (r) => (r.median_s == null ? '–' : duration(r.median_s))],
  ], steps);
}

// ---------- journeys (Sankey) ----------

function renderPaths(p) {
  const nodes = p.nodes || [];
  const links = (p.links || []).filter((l) => l.sessions > 0);
  if (!nodes.length || !links.length) return empty('chart-paths', 'No journeys in this range');
  const id = (n) => `${n.step}\u0000${n.path}`;
  const ref = (x) => (typeof x === 'number' ? id(nodes[x]) : x);
  const stepColor = (n) => (n.path === '(exit)' ? '#cbd5e1' : n.path === '(other)' ? '#94a3b8' : PALETTE[n.step % (PALETTE.length - 1)]);
  chart('chart-paths').setOption({
    tooltip: {
      trigger: 'item',
      formatter: (x) => {
        if (x.dataType === 'edge') {
          const [a, b] = [x.data.source, x.data.target].map((s) => esc(s.split('\u0000')[1]));
          return `${a} → ${b}<br><b>${int(x.data.value)}</b> sessions`;
        }
        return `${esc(x.name.split('\u0000')[1])} <span style="color:#6b7487">(step ${esc(x.name.split('\u0000')[0])})</span>`;
      },
    },
    series: [{
      type: 'sankey', left: 8, right: 150, top: 12, bottom: 12, nodeGap: 10, nodeWidth: 14,
      layoutIterations: 32, draggable: false, emphasis: { focus: 'adjacency' },
      lineStyle: { color: 'gradient', opacity: 0.35, curveness: 0.5 },
      label: { color: '#172033', fontSize: 12, formatter: (x) => x.name.split('\u0000')[1] },
      data: nodes.map((n) => ({ name: id(n), itemStyle: { color: stepColor(n), borderColor: stepColor(n) } })),
      links: links.map((l) => ({ source: ref(l.source), target: ref(l.target), value: l.sessions })),
    }],
  }, true);
}

// ---------- scroll depth ----------

function renderScroll(s) {
  const reached = s.reached || {};
  $('scroll-note').textContent = `${int(s.pageviews)} page views${state.filters.page ? ` of ${state.filters.page}` : ''}`;
  $('scroll-reached').replaceChildren(...['25', '50', '75', '100'].map((k) => el('div', { class: 'stat' },
    el('div', { class: 'label' }, `reached ${k}%`),
    el('div', { class: 'value' }, pct(reached[k])))));
  const h = s.histogram || [];
  if (!s.pageviews || !h.length) return empty('chart-scroll', 'No scroll data in this range');
  chart('chart-scroll').setOption({
    grid: { left: 44, right: 12, top: 12, bottom: 28 },
    tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' }, formatter: (x) => `${esc(x[0].name)}<br><b>${int(h[x[0].dataIndex].pageviews)}</b> page views (${pct(h[x[0].dataIndex].share)})` },
    xAxis: { type: 'category', data: h.map((b) => `${b.from}–${b.to}%`), ...AXIS, splitLine: { show: false } },
    yAxis: { type: 'value', ...AXIS, axisLabel: { ...AXIS.axisLabel, formatter: (v) => `${Math.round(v * 100)}%` } },
    series: [{ type: 'bar', data: h.map((b) => b.share), barWidth: '62%', itemStyle: { color: '#14b8a6', borderRadius: [4, 4, 0, 0] } }],
  }, true);
}

// ---------- cart ----------

function renderCart(c) {
  const stat = (label, value, key) => el('div', { class: 'stat', 'data-cart': key }, el('div', { class: 'label' }, label), el('div', { class: 'value' }, value));
  const orders = Object.values(c.orders || {}).reduce((a, b) => a + b, 0);
  const product = (r) => r.name || r.id;
  const list = (title, rows, color) => {
    const box = el('div', { id: `cart-${title.toLowerCase().replace(/\W+/g, '-')}` });
    const wrap = el('div', {}, el('h3', {}, title), box);
    box.className = 'bars compact';
    if (!rows.length) box.append(el('div', { class: 'muted small' }, 'None yet'));
    else {
      const max = Math.max(...rows.map((r) => r.quantity), 1);
      box.append(...rows.slice(0, 5).map((r) => el('div', { class: 'bar-row' },
        el('span', { class: 'name', title: product(r) }, product(r)),
        el('span', { class: 'num' }, `${int(r.quantity)}×`),
        el('div', { class: 'track' }, el('div', { class: 'fill', style: { width: `${(100 * r.quantity) / max}%`, background: color } })))));
    }
    return wrap;
  };
  $('cart').replaceChildren(
    el('div', { class: 'cart-stats' },
      stat('Abandonment', pct(c.abandonment_rate), 'abandonment_rate'),
      stat('Avg. order value', moneyMap(c.aov), 'aov'),
      stat('Orders', int(orders), 'orders'),
      stat('Revenue', moneyMap(c.revenue), 'revenue'),
      stat('Sessions adding to cart', int(c.sessions_with_add), 'sessions_with_add'),
      stat('… reaching checkout', `${int(c.sessions_with_checkout)} → ${int(c.sessions_with_purchase)} bought`, 'sessions_with_checkout')),
    el('div', { class: 'cart-lists' },
      list('Top added', c.top_added || [], '#f59e0b'),
      list('Top bought', c.top_bought || [], '#10b981')));
}

// ---------- real time ----------

async function loadRealtime() {
  if (!token || document.hidden) return;
  try {
    const r = await api('realtime', [], { dates: false });
    $('realtime-visitors').textContent = int(r.visitors);
    bars('realtime-pages', r.pages || [], (x) => x.path, (x) => x.visitors, '#10b981');
    const m = r.per_minute || [];
    const hhmm = (ts) => new Date(ts).toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit' });
    chart('chart-realtime').setOption({
      grid: { left: 32, right: 8, top: 8, bottom: 22 },
      tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
      xAxis: { type: 'category', data: m.map((x) => hhmm(x.ts)), ...AXIS, splitLine: { show: false }, axisLabel: { ...AXIS.axisLabel, interval: 4 } },
      yAxis: { type: 'value', minInterval: 1, ...AXIS },
      series: [{ name: 'events', type: 'bar', data: m.map((x) => x.events), itemStyle: { color: '#10b981', borderRadius: [3, 3, 0, 0] } }],
    });
    $('realtime-updated').textContent = `updated ${new Date().toLocaleTimeString('en-GB')} · every 10 s`;
  } catch (e) {
    $('realtime-updated').textContent = `not updated: ${e.message}`;
    if (e.status === 401) signOut('The token is no longer valid.');
  }
}

// ---------- loading ----------

function setStatus(text, bad = false) {
  $('status').textContent = text;
  $('status').classList.toggle('bad', bad);
}

async function loadAll() {
  const gen = ++generation;
  setStatus('Loading…');
  const interval = (Date.parse(state.to) - Date.parse(state.from)) / 86_400_000 < 2 ? 'hour' : 'day';
  const pathsParams = [['depth', state.depth]];
  if (state.start) pathsParams.push(['start', state.start]);
  const jobs = {
    overview: [() => api('overview'), renderCards],
    timeseries: [() => api('timeseries', [['interval', interval]]), renderTimeseries],
    pages: [() => api('pages', [['limit', '50']]), renderPages],
    sources: [() => api('sources', [['limit', '50']]), renderSources],
    devices: [() => api('devices'), renderDevices],
    browsers: [() => api('browsers'), (d) => bars('bars-browsers', d.rows || [], (r) => r.browser, (r) => r.visitors, PALETTE[1])],
    os: [() => api('os'), (d) => bars('bars-os', d.rows || [], (r) => r.os, (r) => r.visitors, PALETTE[5])],
    countries: [() => api('countries'), (d) => bars('bars-countries', d.rows || [], (r) => r.country || 'unknown', (r) => r.visitors, PALETTE[3])],
    funnel: [() => api('funnel', state.steps.map((s) => ['step', s])), renderFunnel],
    paths: [() => api('paths', pathsParams), renderPaths],
    scroll: [() => api('scroll', state.filters.page ? [['page', state.filters.page]] : []), renderScroll],
    cart: [() => api('cart'), renderCart],
  };
  const failures = [];
  let unauthorized = false;
  let unknownSite = false;
  // Each chart is drawn as soon as its report answers.
  const run = async (name) => {
    let value;
    try {
      value = await jobs[name][0]();
    } catch (err) {
      if (gen !== generation) return;
      if (err.status === 401) {
        unauthorized = true;
      } else if (name === 'overview' && err.status === 404) {
        unknownSite = true;
      } else if (name === 'paths' && (err.status === 404 || err.status === 400)) {
        empty('chart-paths', 'The journey map is not available from this collector yet.');
      } else {
        failures.push(`${name}: ${err.message}`);
        if (name === 'funnel') empty('chart-funnel', err.message);
      }
      return;
    }
    if (gen !== generation) return;
    try { jobs[name][1](value); } catch (e) { failures.push(`${name}: ${e.message}`); console.error(e); }
  };
  // The headline cards first, alone: the first paint then waits neither for the slowest chart
  // nor shares the collector's cores with the other eleven queries.
  await run('overview');
  if (gen !== generation) return false;
  if (!unauthorized && !unknownSite) {
    performance.mark('waymark-first-paint');
    await Promise.all(Object.keys(jobs).filter((n) => n !== 'overview').map(run));
    if (gen !== generation) return false;
  }
  if (unauthorized) {
    signOut('The token was not accepted.');
    return false;
  }
  if (unknownSite) {
    setStatus(`Unknown site "${state.site}".`, true);
    return true;
  }
  setStatus(failures.length ? `Some reports failed: ${failures.join('; ')}` : `${state.site} · ${state.from} to ${state.to} (${state.tz})${activeFilters()}`, failures.length > 0);
  document.body.dataset.loaded = String(gen);
  return true;
}

function activeFilters() {
  const f = FILTERS.filter((k) => state.filters[k]).map((k) => `${k}: ${state.filters[k]}`);
  return f.length ? ` · ${f.join(', ')}` : '';
}

// ---------- sign in / out ----------

function showApp(on) {
  $('login').hidden = on;
  $('app').hidden = !on;
  $('logout').hidden = !on;
  $('site-label').hidden = !on;
}

async function signIn(t, site) {
  token = t;
  state.site = site || DEFAULT_SITE;
  writeState(true);
  showApp(true);
  stateToForm();
  const ok = await loadAll();
  if (!ok) return;
  clearInterval(realtimeTimer);
  loadRealtime();
  realtimeTimer = setInterval(loadRealtime, REALTIME_MS);
}

function signOut(message = '') {
  token = null;
  clearInterval(realtimeTimer);
  realtimeTimer = null;
  disposeAll();
  showApp(false);
  $('token').value = '';
  $('login-site').value = state.site;
  $('login-error').textContent = message;
  $('login-error').hidden = !message;
  $('token').focus();
}

// ---------- wiring ----------

$('login-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const t = $('token').value.trim();
  if (!t) return;
  $('token').value = '';
  $('login-error').hidden = true;
  signIn(t, $('login-site').value.trim());
});
$('logout').addEventListener('click', () => signOut());

$('controls').addEventListener('submit', (e) => {
  e.preventDefault();
  state.site = $('site').value.trim() || DEFAULT_SITE;
  state.from = $('from').value || defaults().from;
  state.to = $('to').value || defaults().to;
  if (state.from > state.to) [state.from, state.to] = [state.to, state.from];
  for (const f of FILTERS) state.filters[f] = $(`f-${f}`).value.trim();
  writeState();
  stateToForm();
  loadAll();
  loadRealtime();
});
$('reset').addEventListener('click', () => {
  const site = state.site;
  history.pushState(null, '', `${location.pathname}?site=${encodeURIComponent(site)}`);
  state = readState();
  stateToForm();
  loadAll();
});
$('funnel-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const steps = $('funnel-steps').value.split(',').map((s) => s.trim()).filter(Boolean);
  state.steps = steps.length ? steps : DEFAULT_STEPS;
  writeState();
  stateToForm();
  api('funnel', state.steps.map((s) => ['step', s])).then(renderFunnel, (err) => {
    empty('chart-funnel', err.message);
    $('funnel-table').replaceChildren();
  });
});
$('paths-form').addEventListener('submit', (e) => {
  e.preventDefault();
  state.start = $('paths-start').value.trim();
  state.depth = $('paths-depth').value;
  writeState();
  const params = [['depth', state.depth]];
  if (state.start) params.push(['start', state.start]);
  api('paths', params).then(renderPaths, (err) => empty('chart-paths',
    err.status === 404 || err.status === 400 ? `The journey map is not available: ${err.message}` : err.message));
});
$('ts-metric').addEventListener('click', (e) => {
  const m = e.target.closest('button')?.dataset.metric;
  if (!m) return;
  state.metric = m;
  writeState(true);
  stateToForm();
  if (lastTimeseries) renderTimeseries(lastTimeseries);
});
window.addEventListener('popstate', () => {
  state = readState();
  stateToForm();
  if (token) loadAll();
});
let resizeTimer;
window.addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(resizeAll, 120);
});
document.addEventListener('visibilitychange', () => { if (!document.hidden) loadRealtime(); });

$('login-site').value = state.site;
stateToForm();
$('token').focus();
