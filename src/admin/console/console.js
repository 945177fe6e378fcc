// onehttps console: a client of the public admin API (/api/v1), nothing more.
// The token is asked for once and kept in this tab's session storage; it travels only as a
// bearer header (no cookie). Every value from the API is put on the page as text
// (textContent), never as markup: host names, messages and reasons come from tenants.
'use strict';

const TOKEN_KEY = 'onehttps.token';
const PAGE_SIZE = 50;
const STATUSES = ['pending_dns', 'verified', 'issuing', 'queued', 'active', 'failed', 'dns_moved'];
const STATES = ['pending', 'issued', 'expiring', 'expired', 'failed', 'queued', 'replaced'];

const app = {
  token: sessionStorage.getItem(TOKEN_KEY),
  events: [],          // the log, oldest first (at most 1000, like the edge's)
  lastSeq: 0,
  webhook: null,
  view: null,          // { name, refresh(), onEvents(events), timer }
  following: false,
  previous: null,      // the overview's last reading, for rates
};

// ---------- DOM ----------

/** An element with attributes and children (strings become text nodes, never markup). */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'class') node.className = value;
    else if (key === 'value') node.value = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function main(...children) {
  fill(document.getElementById('main'), children);
}

/** Replaces the children of `node` (arrays flattened, null and false skipped). */
function fill(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

function badge(value) {
  return el('span', { class: `badge ${value || ''}`, 'data-status': value || '' }, value || '—');
}

function daysLeft(days) {
  if (days === undefined || days === null) return '—';
  const whole = Math.floor(days);
  const cls = days < 14 ? 'days low' : days < 30 ? 'days mid' : 'days';
  return el('span', { class: cls }, `${whole} d`);
}

function when(rfc3339) {
  if (!rfc3339) return '—';
  const date = new Date(rfc3339);
  return Number.isNaN(date.getTime()) ? rfc3339 : date.toLocaleString();
}

function ago(rfc3339) {
  const seconds = Math.max(0, (Date.now() - new Date(rfc3339).getTime()) / 1000);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

function copyButton(text) {
  return el('button', {
    type: 'button',
    class: 'copy',
    onclick: async (e) => {
      const button = e.currentTarget;
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = 'Copied';
      } catch {
        button.textContent = 'Select and copy';
      }
      setTimeout(() => { button.textContent = 'Copy'; }, 1500);
    },
  }, 'Copy');
}

// ---------- API ----------

class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls the admin API; a 401 forgets the token and shows the token form. */
async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${app.token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (e) {
    throw new ApiFailure(0, 'unreachable', `the edge's admin API did not answer (${e.message})`);
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = { message: text }; }
  }
  if (response.status === 401) {
    refuseToken();
    throw new ApiFailure(401, 'unauthorized', 'token refused');
  }
  if (!response.ok) {
    throw new ApiFailure(response.status, data && data.error, (data && data.message) || `HTTP ${response.status}`);
  }
  return data;
}

function query(params) {
  const parts = [];
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') {
      parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(value)}`);
    }
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

// ---------- token ----------

function refuseToken() {
  const refused = app.token !== null;
  app.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  showTokenForm(refused);
}

function showTokenForm(refused) {
  stopView();
  setLive(false);
  document.getElementById('nav').hidden = true;
  document.getElementById('forget').hidden = true;
  const input = el('input', {
    id: 'token-input', type: 'password', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'the admin token',
  });
  const form = el('form', {
    id: 'token-form',
    onsubmit: async (e) => {
      e.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      app.token = token;
      try {
        await api('GET', '/api/v1/overview');
      } catch (failure) {
        if (failure.status !== 401) {
          app.token = null;
          showTokenForm(false);
          append(document.getElementById('token-form'), el('div', { class: 'error' }, failure.message));
        }
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, token);
      start();
    },
  },
  el('h1', {}, 'onehttps console'),
  refused ? el('div', { id: 'token-refused', class: 'error' },
    'Token refused: the edge did not accept this token. Paste the one it printed at start ',
    '(also in data_dir/admin.token, or server.admin_token in the config).') : null,
  el('label', { for: 'token-input' }, 'Admin token'),
  input,
  el('p', { class: 'hint' },
    'Printed by `onehttps run` at start and kept in data_dir/admin.token. It stays in this tab only (session storage) and is sent as a bearer header to this edge\'s API.'),
  el('button', { type: 'submit', class: 'primary', id: 'token-submit' }, 'Open the console'));
  main(el('div', { class: 'card token' }, form));
  input.focus();
}

// ---------- live events ----------

function setLive(on) {
  const live = document.getElementById('live');
  live.textContent = on ? 'live' : 'offline';
  live.classList.toggle('on', on);
}

/** Follows the event log with long polls for as long as there is a token. */
async function follow() {
  if (app.following) return;
  app.following = true;
  let wait = 0;
  while (app.token) {
    try {
      const data = await api('GET', `/api/v1/events${query({ since: app.lastSeq, wait })}`);
      setLive(true);
      app.webhook = data.webhook;
      const fresh = (data.events || []).filter((event) => event.seq > app.lastSeq);
      if (fresh.length) {
        app.lastSeq = fresh[fresh.length - 1].seq;
        app.events.push(...fresh);
        if (app.events.length > 1000) app.events.splice(0, app.events.length - 1000);
        if (app.view && app.view.onEvents) app.view.onEvents(fresh);
      }
      wait = 25;
    } catch (failure) {
      setLive(false);
      if (failure.status === 401) break;
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
  app.following = false;
}

// ---------- views ----------

function stopView() {
  if (app.view && app.view.timer) clearInterval(app.view.timer);
  app.view = null;
}

/** Shows `name` and refreshes it on events and every `every` ms. */
function mountView(name, refresh, every) {
  stopView();
  const view = { name, refresh, onEvents: () => refresh(), timer: null };
  app.view = view;
  for (const link of document.querySelectorAll('#nav a')) {
    link.classList.toggle('current', link.dataset.view === name);
  }
  view.timer = setInterval(() => { if (app.view === view) refresh(); }, every);
  refresh();
  return view;
}

function failureBox(failure) {
  return el('div', { class: 'error', id: 'view-error' }, failure.message || String(failure));
}

// Overview

function overviewView() {
  const body = el('div', { id: 'overview' }, el('p', { class: 'empty' }, 'Loading…'));
  main(el('h1', {}, 'Overview'), body);
  mountView('overview', async () => {
    let data;
    try { data = await api('GET', '/api/v1/overview'); } catch (failure) {
      if (failure.status !== 401) fill(body, failureBox(failure));
      return;
    }
    const before = app.previous;
    app.previous = data;
    const seconds = before ? (data.time_ms - before.time_ms) / 1000 : 0;
    const rate = (now, then) => (seconds > 0 ? Math.max(0, now - then) / seconds : null);
    const c = data.counters;
    const totalRequests = Object.values(data.requests).reduce((a, b) => a + b, 0);
    const beforeRequests = before ? Object.values(before.requests).reduce((a, b) => a + b, 0) : 0;
    const handshakesPerSecond = before ? rate(c.handshakes, before.counters.handshakes) : null;
    const requestsPerSecond = before ? rate(totalRequests, beforeRequests) : null;
    const resumed = c.handshakes ? (100 * c.resumptions) / c.handshakes : 0;
    const fmt = (value, digits = 1) => (value === null ? '…' : value.toFixed(digits));
    const stat = (id, value, label) => el('div', { class: 'card stat', id },
      el('div', { class: 'value' }, value), el('div', { class: 'label' }, label));
    const earliest = data.earliest_expiry;
    const sitesTotal = Object.values(data.sites).reduce((a, b) => a + b, 0);
    const certsTotal = data.certificates.reduce((a, b) => a + b.count, 0);
    fill(body,
      el('div', { class: 'cards' },
        stat('stat-handshakes', fmt(handshakesPerSecond), `TLS handshakes/s (${c.handshakes} in all)`),
        stat('stat-requests', fmt(requestsPerSecond), `requests/s (${totalRequests} in all)`),
        stat('stat-resumption', `${resumed.toFixed(0)} %`, 'handshakes resumed'),
        stat('stat-origin-errors', String(c.origin_errors), 'origin errors (502/504)'),
        stat('stat-earliest', earliest ? `${Math.floor(earliest.seconds_left / 86400)} d` : '—',
          earliest ? `earliest expiry: ${when(earliest.at)}` : 'no certificate in service'),
        stat('stat-sites', String(sitesTotal), 'registered sites'),
      ),
      el('div', { class: 'columns' },
        el('div', { class: 'card' }, el('h2', {}, 'Sites by status'),
          bars(Object.entries(data.sites), 'sites-by-status')),
        el('div', { class: 'card' }, el('h2', {}, 'Certificates by state'),
          bars(data.certificates.map((x) => [`${x.state} (${x.source})`, x.count]), 'certs-by-state'),
          el('p', { class: 'hint' }, `${certsTotal} certificates in service`)),
      ),
      el('div', { class: 'columns' },
        el('div', { class: 'card' }, el('h2', {}, 'Requests by class'),
          bars(Object.entries(data.requests), 'requests-by-class'),
          before ? el('p', { class: 'hint' }, `per second: ${Object.entries(data.requests)
            .map(([k, v]) => `${k} ${fmt(rate(v, before.requests[k] || 0))}`).join(', ')}`) : null),
        el('div', { class: 'card chart' }, el('h2', {}, 'Expiries, next 90 days'),
          expiryChart(data.expiring_per_day, data.expiring_later)),
      ),
    );
  }, 5000);
}

function bars(entries, id) {
  const max = Math.max(1, ...entries.map(([, n]) => n));
  if (!entries.length) return el('p', { class: 'empty', id }, 'none');
  return el('div', { class: 'bars', id }, entries.map(([label, n]) => {
    const bar = el('div', { class: 'bar' });
    bar.style.width = `${(100 * n) / max}%`;
    return [el('span', {}, label), el('div', {}, bar), el('span', { class: 'mono' }, String(n))];
  }));
}

/** Bars per day for the next 90 days (SVG made with the DOM: no markup strings). */
function expiryChart(perDay, later) {
  const width = 900; const height = 120; const top = 8; const bottom = 20;
  const max = Math.max(1, ...perDay);
  const step = width / perDay.length;
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height + bottom}`, role: 'img', id: 'expiry-chart',
    'aria-label': 'certificates expiring per day over the next 90 days' });
  perDay.forEach((count, day) => {
    if (!count) return;
    const h = Math.max(2, ((height - top) * count) / max);
    const rect = svg('rect', { class: day < 14 ? 'day soon' : 'day', x: day * step + 1, y: height - h,
      width: Math.max(1, step - 2), height: h, 'data-day': day, 'data-count': count });
    rect.append(svg('title', {}, `in ${day} days: ${count} certificate(s)`));
    chart.append(rect);
  });
  for (const day of [0, 30, 60, 89]) {
    chart.append(svg('text', { class: 'axis', x: day * step, y: height + 14 }, day === 0 ? 'today' : `+${day} d`));
  }
  chart.append(svg('line', { x1: 0, x2: width, y1: height, y2: height, stroke: '#d1d9e0' }));
  const total = perDay.reduce((a, b) => a + b, 0);
  return [chart, el('p', { class: 'hint' }, `${total} expire within 90 days, ${later} later. Red: within 14 days.`)];
}

// Lists (sites, certificates)

/** A search box and a status select over a paged list: the filter runs on the edge, the
 * page restarts from the first, and the address keeps the filter (`#/view?q=&param=`). */
function listFilters({ params, view, param, prefix, searchLabel, every, options, onChange }) {
  const state = { q: params.get('q') || '', status: params.get(param) || '', cursors: [''] };
  const search = el('input', { id: `${prefix}-search`, type: 'search', placeholder: searchLabel, value: state.q });
  const select = el('select', { id: `${prefix}-${param}` }, el('option', { value: '' }, every),
    options.map((s) => el('option', { value: s }, s)));
  select.value = state.status;
  let timer = null;
  const restart = () => {
    state.q = search.value.trim();
    state.status = select.value;
    state.cursors = [''];
    history.replaceState(null, '', `#/${view}${query({ q: state.q, [param]: state.status })}`);
    onChange();
  };
  search.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(restart, 250); });
  search.addEventListener('change', restart);
  select.addEventListener('change', restart);
  return { state, search, select };
}

/** Previous / Next over the API's cursors, and which rows of how many are shown. */
function fillPager(pager, state, data, shownRows, refresh) {
  const shown = data.matching !== undefined ? data.matching : data.total;
  const first = (state.cursors.length - 1) * PAGE_SIZE;
  fill(pager,
    el('button', { type: 'button', class: 'prev-page', disabled: state.cursors.length <= 1,
      onclick: () => { state.cursors.pop(); refresh(); } }, '← Previous'),
    el('span', { class: 'page-range' }, shownRows ? `${first + 1}–${first + shownRows} of ${shown}` : `0 of ${shown}`),
    el('button', { type: 'button', class: 'next-page', disabled: !data.next,
      onclick: () => { state.cursors.push(data.next); refresh(); } }, 'Next →'),
    data.matching !== undefined ? el('span', { class: 'hint' }, `(${data.total} in all)`) : null);
}

// Sites

function sitesView(params) {
  const { state, search, select: status } = listFilters({
    params, view: 'sites', param: 'status', prefix: 'site', searchLabel: 'Search host names',
    every: 'every status', options: STATUSES, onChange: () => refresh(),
  });
  const table = el('div', { id: 'sites-table' }, el('p', { class: 'empty' }, 'Loading…'));
  const pager = el('div', { class: 'pager' });
  const configured = el('div', { id: 'configured-sites' });
  main(
    el('h1', {}, 'Sites'),
    el('div', { class: 'toolbar' }, search, status, el('span', { class: 'grow' }),
      el('a', { class: 'button', href: '#/add' }, '+ Add a site')),
    el('h2', {}, 'Registered through the API'),
    table, pager, configured,
  );
  const refresh = async () => {
    const after = state.cursors[state.cursors.length - 1];
    let data; let fromConfig;
    try {
      [data, fromConfig] = await Promise.all([
        api('GET', `/api/v1/sites${query({ limit: PAGE_SIZE, after, q: state.q, status: state.status })}`),
        state.status && state.status !== 'active' ? null
          : api('GET', `/api/v1/certificates${query({ limit: 100, kind: 'configured', q: state.q })}`),
      ]);
    } catch (failure) {
      if (failure.status !== 401) fill(table, failureBox(failure));
      return;
    }
    configuredSites(configured, fromConfig);
    const rows = data.sites.map((site) => el('tr', { 'data-host': site.hosts[0], 'data-status': site.status },
      el('td', {}, el('div', {}, site.hosts.join(', ')),
        site.reason && site.status !== 'active' ? el('div', { class: 'sub reason' }, site.reason) : null),
      el('td', {}, badge(site.status),
        site.status === 'queued' && site.next_attempt_at
          ? el('div', { class: 'sub' }, `next attempt ${new Date(site.next_attempt_at * 1000).toLocaleString()}`) : null),
      el('td', { class: 'mono' }, site.cname_target),
      el('td', { class: 'mono' }, site.origins.join(' ')),
      el('td', { class: 'cert-days' }, site.certificate ? daysLeft(site.certificate.days_left) : '—'),
      el('td', {}, site.last_event
        ? [el('div', {}, site.last_event.kind), el('div', { class: 'sub' }, ago(site.last_event.time))] : '—'),
    ));
    fill(table, rows.length
      ? el('table', {}, el('thead', {}, el('tr', {},
        ['Host', 'Status', 'CNAME target', 'Origins', 'Certificate', 'Last event'].map((h) => el('th', {}, h)))),
      el('tbody', {}, rows))
      : el('p', { class: 'empty' }, state.q || state.status ? 'No site matches.' : 'No site yet: add one.'));
    fillPager(pager, state, data, rows.length, refresh);
  };
  mountView('sites', refresh, 3000);
}

/** The sites of the config file (served, not registered): from the certificate inventory. */
function configuredSites(into, data) {
  if (!data || !data.certificates.length) {
    fill(into);
    return;
  }
  const shown = data.matching !== undefined ? data.matching : data.total;
  fill(into, el('h2', {}, 'From the config file'),
    el('table', {}, el('thead', {}, el('tr', {},
      ['Host', 'Status', 'Origins', 'Certificate', 'Source'].map((h) => el('th', {}, h)))),
    el('tbody', {}, data.certificates.map((cert) => el('tr', { 'data-host': cert.names[0], 'data-status': 'active' },
      el('td', {}, cert.names.join(', ')),
      el('td', {}, badge('active'), el('div', { class: 'sub' }, `certificate ${cert.state}`)),
      el('td', { class: 'mono' }, (cert.origins || []).join(' ')),
      el('td', { class: 'cert-days' }, daysLeft(cert.days_left)),
      el('td', {}, cert.source || '—'))))),
    data.next ? el('p', { class: 'hint' }, `the first 100 of ${shown}: see Certificates for all`) : null);
}

// Add a site

const STEPS = [
  ['pending_dns', 'DNS record'],
  ['verified', 'DNS verified'],
  ['issuing', 'Certificate ordered'],
  ['active', 'HTTPS on'],
];

function addView() {
  const hosts = el('input', { id: 'add-hosts', placeholder: 'www.example.com', size: 40 });
  const origins = el('input', { id: 'add-origins', placeholder: 'http://10.0.0.5:8080', size: 40 });
  const result = el('div', { id: 'add-result' });
  const submit = el('button', { type: 'submit', class: 'primary', id: 'add-submit' }, 'Enable HTTPS');
  const split = (text) => text.split(/[\s,]+/).filter(Boolean);
  const form = el('form', {
    id: 'add-form',
    onsubmit: async (e) => {
      e.preventDefault();
      submit.disabled = true;
      fill(result);
      try {
        const site = await api('POST', '/api/v1/sites', { hosts: split(hosts.value), origins: split(origins.value) });
        followSite(site, result);
      } catch (failure) {
        if (failure.status !== 401) fill(result, el('div', { class: 'error', id: 'add-error' }, failure.message));
      } finally {
        submit.disabled = false;
      }
    },
  },
  el('label', { for: 'add-hosts' }, 'Host names'), hosts,
  el('p', { class: 'hint' }, 'One or more names, separated by spaces or commas (www.example.com, or *.example.com when DNS-01 delegation is on).'),
  el('label', { for: 'add-origins' }, 'Origins'), origins,
  el('p', { class: 'hint' }, 'Where the edge forwards plain HTTP to, e.g. http://10.0.0.5:8080.'),
  el('p', {}, submit));
  main(el('h1', {}, 'Add a site'), el('div', { class: 'columns' }, el('div', { class: 'card' }, form), result));
  stopView();
  for (const link of document.querySelectorAll('#nav a')) {
    link.classList.toggle('current', link.dataset.view === 'add');
  }
}

/** Shows the DNS records to create, then follows the site through its states. */
function followSite(site, into) {
  const host = site.hosts[0];
  const records = [el('div', { class: 'record', 'data-record': 'traffic' },
    el('span', { class: 'badge' }, 'CNAME'),
    el('div', {}, el('div', { class: 'mono', id: 'record-name' }, host), el('div', { class: 'mono', id: 'record-target' }, site.cname_target)),
    copyButton(site.cname_target))];
  if (site.acme_challenge_cname) {
    records.push(el('div', { class: 'record', 'data-record': 'dns01' },
      el('span', { class: 'badge' }, 'CNAME'),
      el('div', {}, el('div', { class: 'mono' }, site.acme_challenge_cname.name), el('div', { class: 'mono' }, site.acme_challenge_cname.target)),
      copyButton(site.acme_challenge_cname.target)));
  }
  const steps = el('div', { class: 'steps', id: 'add-steps' });
  const status = el('div', { id: 'add-status' });
  fill(into, el('div', { class: 'card', id: 'add-follow', 'data-host': host },
    el('h2', {}, `Point ${host} at the edge`),
    el('p', {}, 'Create this DNS record at your DNS provider:'),
    records,
    el('p', { class: 'hint' }, site.next_step || ''),
    steps, status));
  const show = (current) => {
    const at = STEPS.findIndex(([s]) => s === current.status);
    const failed = current.status === 'failed' || current.status === 'dns_moved';
    fill(steps, STEPS.map(([s, label], i) => {
      let cls = 'step';
      if (current.status === 'active' || i < at) cls += ' done';
      else if (i === at) cls += ' now';
      if (failed && i === Math.max(0, at)) cls += ' bad';
      return el('div', { class: cls, 'data-step': s }, label);
    }));
    if (current.status === 'active') {
      fill(status, el('p', { class: 'padlock', id: 'add-active' },
        el('img', { src: '/favicon.svg', alt: '', width: 18, height: 18 }), ` HTTPS is on for ${host}`),
        el('p', {}, el('a', { href: `https://${host}/`, rel: 'noreferrer', target: '_blank' }, `https://${host}/`)),
        current.certificate ? el('p', { class: 'hint' }, `certificate ${current.certificate.serial}, ${Math.floor(current.certificate.days_left)} days left`) : null);
    } else if (failed) {
      fill(status, el('div', { class: 'error', id: 'add-failed' }, `${current.status}: ${current.reason || ''}`),
        el('p', {}, 'What to change: ', current.next_step || ''));
    } else {
      fill(status, el('p', { id: 'add-waiting' }, badge(current.status), ' ', current.reason || ''),
        el('p', { class: 'hint' }, current.next_step || ''));
    }
  };
  show(site);
  const refresh = async () => {
    try {
      show(await api('GET', `/api/v1/sites/${encodeURIComponent(host)}`));
    } catch (failure) {
      if (failure.status !== 401) fill(status, failureBox(failure));
    }
  };
  const view = { name: 'add', refresh, onEvents: () => refresh(), timer: null };
  stopView();
  app.view = view;
  view.timer = setInterval(() => { if (app.view === view) refresh(); }, 2000);
}

// Certificates

function certificatesView(params) {
  const { state, search, select: filter } = listFilters({
    params, view: 'certificates', param: 'state', prefix: 'cert', searchLabel: 'Search names',
    every: 'every state', options: STATES, onChange: () => refresh(),
  });
  const table = el('div', { id: 'certs-table' }, el('p', { class: 'empty' }, 'Loading…'));
  const pager = el('div', { class: 'pager' });
  const chart = el('div', { class: 'card chart', id: 'cert-timeline' }, el('h2', {}, 'Expiries, next 90 days'));
  const notice = el('div', { id: 'cert-notice' });
  main(
    el('h1', {}, 'Certificates'),
    chart,
    el('div', { class: 'toolbar' }, search, filter),
    notice, table, pager,
    uploadForm(() => refresh()),
  );
  const refresh = async () => {
    const after = state.cursors[state.cursors.length - 1];
    let data; let overview;
    try {
      [data, overview] = await Promise.all([
        api('GET', `/api/v1/certificates${query({ limit: PAGE_SIZE, after, q: state.q, status: state.status })}`),
        api('GET', '/api/v1/overview'),
      ]);
    } catch (failure) {
      if (failure.status !== 401) fill(table, failureBox(failure));
      return;
    }
    fill(chart, el('h2', {}, 'Expiries, next 90 days'), expiryChart(overview.expiring_per_day, overview.expiring_later));
    const rows = data.certificates.map((cert) => el('tr', { 'data-name': cert.names[0], 'data-state': cert.state },
      el('td', {}, el('div', {}, cert.names.join(', ')),
        cert.failure ? el('div', { class: 'sub reason' }, cert.failure.reason || JSON.stringify(cert.failure)) : null),
      el('td', {}, cert.source || '—'),
      el('td', {}, cert.issuer || '—'),
      el('td', {}, badge(cert.state)),
      el('td', {}, when(cert.not_before)),
      el('td', {}, when(cert.not_after)),
      el('td', {}, daysLeft(cert.days_left)),
      el('td', { class: 'mono serial' }, cert.serial || '—'),
      el('td', {}, el('button', {
        type: 'button', class: 'renew', 'data-name': cert.names[0],
        onclick: async (e) => {
          const button = e.currentTarget;
          button.disabled = true;
          try {
            await api('POST', `/api/v1/certificates/${encodeURIComponent(cert.names[0])}/renew`);
            fill(notice, el('div', { class: 'ok', id: 'renew-requested' },
              `Renewal of ${cert.names[0]} requested: the new certificate replaces the old one here when it is issued.`));
          } catch (failure) {
            if (failure.status !== 401) fill(notice, failureBox(failure));
          } finally {
            button.disabled = false;
          }
        },
      }, 'Renew now')),
    ));
    fill(table, rows.length
      ? el('table', {}, el('thead', {}, el('tr', {},
        ['Names', 'Source', 'Issuer', 'State', 'Not before', 'Not after', 'Left', 'Serial', ''].map((h) => el('th', {}, h)))),
      el('tbody', {}, rows))
      : el('p', { class: 'empty' }, 'No certificate matches.'));
    fillPager(pager, state, data, rows.length, refresh);
  };
  mountView('certificates', refresh, 5000);
}

/** Upload a PEM chain and key: validated by the edge, errors shown inline. The key is
 * sent once and cleared from the form; the edge never sends a key back. */
function uploadForm(onDone) {
  const cert = el('textarea', { id: 'upload-cert', placeholder: '-----BEGIN CERTIFICATE-----', spellcheck: 'false' });
  const key = el('textarea', { id: 'upload-key', placeholder: '-----BEGIN PRIVATE KEY-----', spellcheck: 'false', autocomplete: 'off' });
  const outcome = el('div', { id: 'upload-outcome' });
  const submit = el('button', { type: 'submit', class: 'primary', id: 'upload-submit' }, 'Upload');
  return el('form', {
    class: 'card', id: 'upload-form',
    onsubmit: async (e) => {
      e.preventDefault();
      submit.disabled = true;
      fill(outcome);
      try {
        const installed = await api('POST', '/api/v1/certificates', { cert: cert.value, key: key.value });
        key.value = '';
        cert.value = '';
        fill(outcome, el('div', { class: 'ok', id: 'upload-ok' },
          `In service for ${installed.names.join(', ')} (serial ${installed.serial}).`));
        onDone();
      } catch (failure) {
        if (failure.status !== 401) fill(outcome, el('div', { class: 'error', id: 'upload-error' }, failure.message));
      } finally {
        submit.disabled = false;
      }
    },
  },
  el('h2', {}, 'Upload a certificate'),
  el('p', { class: 'hint' }, 'PEM chain (leaf first) and its private key, for a site this edge serves. Checked before anything changes: it parses, the key matches, it is valid now and covers every name of the site.'),
  el('div', { class: 'columns' },
    el('div', {}, el('label', { for: 'upload-cert' }, 'Certificate chain'), cert),
    el('div', {}, el('label', { for: 'upload-key' }, 'Private key'), key)),
  el('p', {}, submit), outcome);
}

// Events

function eventsView(params) {
  const host = el('input', { id: 'event-host', type: 'search', placeholder: 'Filter by host', value: params.get('host') || '' });
  const kind = el('select', { id: 'event-kind' }, el('option', { value: '' }, 'every kind'));
  const webhook = el('div', { class: 'card', id: 'webhook-state' });
  const table = el('div', { id: 'events-table' });
  main(el('h1', {}, 'Events'), webhook, el('div', { class: 'toolbar' }, host, kind), table);
  const render = () => {
    const kinds = [...new Set(app.events.map((e) => e.kind))].sort();
    const chosen = kind.value;
    fill(kind, el('option', { value: '' }, 'every kind'), kinds.map((k) => el('option', { value: k }, k)));
    kind.value = kinds.includes(chosen) ? chosen : '';
    const wanted = host.value.trim().toLowerCase();
    const shown = app.events.filter((e) => (!wanted || e.subject.toLowerCase().includes(wanted))
      && (!kind.value || e.kind === kind.value)).slice().reverse();
    fill(table, shown.length
      ? el('table', {}, el('thead', {}, el('tr', {}, ['Time', 'Kind', 'Subject', 'Node', 'Message'].map((h) => el('th', {}, h)))),
        el('tbody', {}, shown.map((e) => el('tr', { 'data-seq': e.seq, 'data-kind': e.kind },
          el('td', {}, when(e.time)), el('td', {}, e.kind), el('td', {}, e.subject),
          el('td', {}, e.node || '—'), el('td', {}, e.message)))))
      : el('p', { class: 'empty' }, 'No event matches.'));
    const w = app.webhook;
    fill(webhook, el('h2', {}, 'Webhook delivery'), w
      ? el('p', {}, `${w.delivered} delivered, ${w.failed} failed, ${w.dropped} dropped (queue full)`,
        w.last_delivered_seq ? `; last delivered: event ${w.last_delivered_seq}` : '',
        w.last_error ? el('div', { class: 'error' }, `last error ${when(w.last_error_at)}: ${w.last_error}`) : null)
      : el('p', { class: 'hint' }, 'No webhook configured ([events] webhook in the config).'));
  };
  host.addEventListener('input', render);
  kind.addEventListener('change', render);
  mountView('events', render, 5000);
}

// ---------- routing ----------

function route() {
  if (!app.token) {
    showTokenForm(false);
    return;
  }
  document.getElementById('nav').hidden = false;
  document.getElementById('forget').hidden = false;
  const [path, search] = (location.hash.replace(/^#/, '') || '/').split('?');
  const params = new URLSearchParams(search || '');
  switch (path) {
    case '/sites': sitesView(params); break;
    case '/add': addView(); break;
    case '/certificates': certificatesView(params); break;
    case '/events': eventsView(params); break;
    default: overviewView();
  }
}

function start() {
  route();
  follow();
}

window.addEventListener('hashchange', () => { if (app.token) route(); });
document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('forget').addEventListener('click', () => {
    app.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showTokenForm(false);
  });
  if (app.token) start(); else showTokenForm(false);
});
