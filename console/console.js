// The imagegate console: a playground, the history, route and key dashboards, all over the public
// API with the key the user types (kept in sessionStorage only). Every string from the API is
// rendered as text (`el` never parses HTML), so a prompt like `<img onerror=…>` shows as itself.

const KEY = 'imagegate.key';
const view = document.getElementById('view');
/** The number of the view shown last: a slower, older one never replaces it. */
let shown = 0;
/** What the view shown last must stop when another replaces it (observers, polling). */
let cleanups = [];

/** An element with attributes and children; strings become text nodes, never markup. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElementNS(tag === 'svg' || attrs.svg ? 'http://www.w3.org/2000/svg' : 'http://www.w3.org/1999/xhtml', tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === 'svg' || value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
const svg = (tag, attrs = {}, ...children) => el(tag, { ...attrs, svg: true }, ...children);

/** The API, with the key as a bearer token; the answer's JSON (or an Error carrying it). */
async function api(path, { method = 'GET', body, headers = {} } = {}) {
  const key = sessionStorage.getItem(KEY);
  if (!key) throw new Error('Type your API key above first.');
  const init = { method, headers: { authorization: `Bearer ${key}`, ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['content-type'] = 'application/json';
  }
  const res = await fetch(path, init);
  const json = await res.json().catch(() => ({}));
  if (!res.ok) {
    const error = new Error(json?.error?.message ?? `${res.status} ${res.statusText}`);
    error.status = res.status;
    throw error;
  }
  return { json, res };
}

const money = (usd) => (usd === null || usd === undefined ? 'unpriced' : `$${Number(usd).toFixed(6).replace(/0+$/, '').replace(/\.$/, '')}`);
const when = (ms) => (ms ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) : '');
const failure = (error) => el('p', { class: 'error', role: 'alert' }, error.message);

// ---- the key ----

const keyForm = document.getElementById('key-form');
const keyInput = document.getElementById('api-key');
const keyState = document.getElementById('key-state');
function showKeyState() {
  keyState.textContent = sessionStorage.getItem(KEY) ? 'key set for this tab' : 'no key';
}
keyForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
  keyInput.value = '';
  showKeyState();
  render();
});

// ---- the playground ----

async function playground() {
  const { json: me } = await api('/api/v1/key');
  if (me.data.is_management_key) {
    return [el('h2', {}, 'Playground'), el('p', {}, 'A management key manages keys and reads everyone\'s history; it cannot generate. Type a gateway key to use the playground.')];
  }
  const models = await api('/v1/models').then(({ json }) => json.data.map((m) => m.id));
  const out = el('section', { 'aria-live': 'polite' });
  const snippet = el('pre', { 'aria-label': 'The same request' });
  const field = (label, control) => el('label', {}, label, control);
  const prompt = el('textarea', { id: 'prompt', name: 'prompt', required: true });
  const model = el('select', { name: 'model' }, models.map((id) => el('option', { value: id }, id)));
  const size = el('select', { name: 'size' }, ['256x256', '512x512', '1024x1024', 'auto'].map((s) => el('option', { value: s }, s)));
  const n = el('input', { name: 'n', type: 'number', min: 1, max: 4, value: 1 });
  const quality = el('select', { name: 'quality' }, ['', 'low', 'medium', 'high'].map((q) => el('option', { value: q }, q || 'default')));
  const retry = el('input', { name: 'retry', type: 'number', min: 0, max: 5, value: '' });
  const fallbacks = el('input', { name: 'fallbacks', placeholder: 'model, model' });
  const cache = el('input', { name: 'cache', type: 'checkbox' });
  const asynchronous = el('input', { name: 'async', type: 'checkbox' });
  const request = () => {
    // Base64, so that the images show under the page's img-src whatever the provider gave.
    const body = { model: model.value, prompt: prompt.value, size: size.value, n: Number(n.value) || 1, response_format: 'b64_json' };
    if (quality.value) body.quality = quality.value;
    if (retry.value !== '') body.retry = { count: Number(retry.value) };
    const chain = fallbacks.value.split(',').map((s) => s.trim()).filter(Boolean);
    if (chain.length) body.fallbacks = chain.map((m) => ({ model: m }));
    if (cache.checked) body.cache = { type: 'exact_match', ttl: 3600 };
    return body;
  };
  const showSnippets = () => {
    const all = request();
    const body = JSON.stringify(all);
    const routing = Object.fromEntries(['retry', 'fallbacks', 'cache'].filter((k) => k in all).map((k) => [k, all[k]]));
    const openai = Object.fromEntries(Object.entries(all).filter(([k]) => !(k in routing)));
    const py = (value) => JSON.stringify(value).replaceAll('true', 'True').replaceAll('false', 'False');
    const extras = [Object.keys(routing).length ? `extra_body=${py(routing)}` : '', asynchronous.checked ? 'extra_headers={"Prefer": "respond-async"}' : ''].filter(Boolean);
    snippet.textContent = [
      `curl ${location.origin}/v1/images/generations -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json'${asynchronous.checked ? " -H 'Prefer: respond-async'" : ''} -d '${body.replaceAll("'", "'\\''")}'`,
      '',
      `from openai import OpenAI\nclient = OpenAI(api_key=KEY, base_url="${location.origin}/v1")\nimage = client.images.generate(**${py(openai)}${extras.map((e) => `, ${e}`).join('')})`,
      '',
      `import OpenAI from 'openai';\nconst client = new OpenAI({ apiKey: KEY, baseURL: '${location.origin}/v1' });\nconst image = await client.images.generate(${body}${asynchronous.checked ? ", { headers: { Prefer: 'respond-async' } }" : ''});`,
    ].join('\n');
  };
  const generate = el('button', { type: 'submit' }, 'Generate');
  const form = el('form', { class: 'fields', onsubmit: async (event) => {
    event.preventDefault();
    generate.disabled = true;
    out.replaceChildren(el('p', {}, 'Generating…'));
    try {
      if (asynchronous.checked) await generateAsync(request(), out);
      else await generateNow(request(), out);
    } catch (error) {
      out.replaceChildren(failure(error));
    } finally {
      generate.disabled = false;
    }
  }, oninput: showSnippets },
  el('div', { class: 'wide' }, el('label', { for: 'prompt' }, 'Prompt'), prompt),
  field('Model', model), field('Size', size), field('Images (n)', n), field('Quality', quality),
  field('Retries', retry), field('Fallbacks', fallbacks), field('Cache the answer', cache), field('Run apart (async)', asynchronous),
  el('div', {}, generate));
  showSnippets();
  return [el('h2', {}, 'Playground'), form, out, el('h2', {}, 'Copy as curl / Python / Node'), snippet,
    el('button', { type: 'button', class: 'plain', onclick: () => navigator.clipboard?.writeText(snippet.textContent) }, 'Copy')];
}

/** The answer's images and what its headers say. */
function answer(images, facts, out) {
  out.replaceChildren(
    el('div', { class: 'facts' }, facts.map(([name, value]) => (value ? el('span', {}, `${name}: ${value}`) : null))),
    el('div', { class: 'images' }, images.map((image, i) => el('img', { src: image, alt: `Generated image ${i + 1}` }))),
  );
}

async function generateNow(body, out) {
  const started = performance.now();
  const { json, res } = await api('/v1/images/generations', { method: 'POST', body });
  const header = (name) => res.headers.get(name);
  answer(json.data.map((d) => (d.b64_json ? `data:image/png;base64,${d.b64_json}` : d.url)), [
    ['latency', `${Math.round(performance.now() - started)} ms`], ['cost', header('x-imagegate-cost-usd') && `$${header('x-imagegate-cost-usd')}`],
    ['cache', header('x-imagegate-cache')], ['attempts', header('x-imagegate-attempts')], ['action', header('x-imagegate-action-id')],
  ], out);
}

async function generateAsync(body, out) {
  const { json: queued } = await api('/v1/images/generations', { method: 'POST', body, headers: { prefer: 'respond-async' } });
  let action = queued;
  const seq = shown;
  out.replaceChildren(el('p', {}, `Action ${action.id} is running; this view polls it every second.`));
  for (let i = 0; i < 300 && ['queued', 'in-progress'].includes(action.status); i++) {
    // Polling stops when another view replaces this one.
    if (seq !== shown) return;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    action = (await api(`/v1/actions/${encodeURIComponent(action.id)}`)).json;
  }
  if (['queued', 'in-progress'].includes(action.status)) throw new Error(`Action ${action.id} is still ${action.status}; the history will show how it ends.`);
  if (action.status !== 'success') throw new Error(action.error ?? `The action ended ${action.status}.`);
  answer((action.response?.data ?? []).map((d) => d.url), [['latency', `${action.latency_ms} ms`], ['cost', money(action.cost_usd)], ['action', action.id]], out);
}

// ---- the history ----

async function history() {
  const rows = el('tbody');
  const detail = el('section');
  const status = el('select', { name: 'status' }, ['', 'success', 'error', 'timed-out', 'queued', 'in-progress'].map((s) => el('option', { value: s }, s || 'any')));
  const model = el('input', { name: 'model', placeholder: 'any model' });
  const routeIds = await api('/v1/routes').then(({ json }) => json.data).catch(() => []);
  const route = el('select', { name: 'route' }, el('option', { value: '' }, 'any'), routeIds.map((r) => el('option', { value: r.identifier }, r.identifier)));
  const since = el('input', { name: 'since', type: 'date' });
  const more = el('button', { type: 'button', class: 'plain' }, 'Load more');
  let after = null;
  let loading = null;
  let filter = 0;
  const load = async (fresh) => {
    if (loading && !fresh) return loading;
    const mine = fresh ? ++filter : filter;
    if (fresh) { rows.replaceChildren(); after = null; more.hidden = true; }
    const query = new URLSearchParams({ limit: '20' });
    if (status.value) query.set('status', status.value);
    if (model.value.trim()) query.set('model', model.value.trim());
    if (route.value) query.set('route', route.value);
    if (since.value) query.set('since', String(Math.floor(Date.parse(`${since.value}T00:00:00Z`) / 1000)));
    if (after) query.set('after', after);
    loading = api(`/v1/actions?${query}`);
    try {
      const { json } = await loading;
      // A newer filter's page wins over an older one's.
      if (mine !== filter) return;
      for (const action of json.data) rows.append(historyRow(action, detail));
      after = json.last_id ?? json.data.at(-1)?.id ?? null;
      more.hidden = !json.has_more;
    } finally {
      loading = null;
    }
  };
  more.addEventListener('click', () => load(false).catch((e) => detail.replaceChildren(failure(e))));
  // Infinite scroll: the button loads the next page when it comes into view.
  const observer = new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting) && !more.hidden && after) more.click(); });
  observer.observe(more);
  cleanups.push(() => observer.disconnect());
  const filters = el('form', { class: 'fields', onsubmit: (e) => { e.preventDefault(); load(true).catch((err) => detail.replaceChildren(failure(err))); } },
    el('label', {}, 'Status', status), el('label', {}, 'Model', model), el('label', {}, 'Route', route), el('label', {}, 'Since (UTC day)', since),
    el('div', {}, el('button', { type: 'submit' }, 'Filter')));
  await load(true);
  return [el('h2', {}, 'History'), filters,
    el('div', { class: 'scroll' }, el('table', {}, el('thead', {}, el('tr', {}, ['', 'When', 'Status', 'Model', 'Route', 'Latency', 'Cost', ''].map((h) => el('th', { scope: 'col' }, h)))), rows)),
    more, detail];
}

function historyRow(action, detail) {
  const thumb = action.response?.data?.[0]?.url;
  const open = () => showAction(action, detail);
  const state = { success: 'success', error: 'error', 'timed-out': 'error' }[action.status] ?? '';
  return el('tr', { class: 'row', onclick: open },
    el('td', {}, thumb ? el('img', { src: thumb, alt: '' }) : ''),
    el('td', {}, when(action.created_at)), el('td', { class: state }, action.status),
    el('td', {}, action.model ?? ''), el('td', {}, action.route_id ?? ''), el('td', {}, `${action.latency_ms} ms`), el('td', {}, money(action.cost_usd)),
    el('td', {}, el('button', { type: 'button', class: 'plain', 'aria-label': `Open action ${action.id}`, onclick: (e) => { e.stopPropagation(); open(); } }, 'Open')));
}

function showAction(action, detail) {
  const heading = el('h2', { tabindex: -1 }, `Action ${action.id}`);
  detail.replaceChildren(...[
    heading,
    el('div', { class: 'images' }, (action.response?.data ?? []).map((d, i) => el('img', { src: d.url, alt: `Image ${i + 1}` }))),
    action.error ? el('p', { class: 'error' }, action.error) : null,
    el('h3', {}, 'Request'), el('pre', {}, JSON.stringify(action.request ?? {}, null, 2)),
    el('h3', {}, 'Attempts'), el('pre', {}, (action.attempts ?? []).map((a) => `${a.model} (${a.provider}): ${a.status} in ${a.ms} ms`).join('\n') || 'none'),
    el('h3', {}, 'Answer'), el('pre', {}, JSON.stringify(action.response ?? null, null, 2)),
  ].filter(Boolean));
  heading.focus();
}

// ---- routes and their statistics ----

async function routes() {
  const { json } = await api('/v1/routes');
  const chart = el('section', { 'aria-live': 'polite' });
  const interval = el('select', { name: 'interval' }, el('option', { value: 'hour' }, 'hour'), el('option', { value: 'day' }, 'day'));
  const from = el('input', { name: 'from', type: 'date' });
  const to = el('input', { name: 'to', type: 'date' });
  let current = json.data[0];
  const show = async (route) => {
    current = route;
    const query = new URLSearchParams({ interval: interval.value });
    const seconds = (day, next) => String(Math.floor(Date.parse(`${day}T00:00:00Z`) / 1000) + (next ? 86400 : 0));
    if (from.value) query.set('from', seconds(from.value, false));
    if (to.value) query.set('to', seconds(to.value, true));
    const { json: stats } = await api(`/v1/routes/${encodeURIComponent(route.id)}/stats?${query}`);
    const fields = Object.keys(route.request_schema?.properties ?? {});
    chart.replaceChildren(el('h3', {}, route.identifier), el('p', {}, route.description ?? ''),
      el('p', { class: 'legend' }, `request fields: ${fields.join(', ') || 'none'}`),
      el('h3', {}, `Requests and errors per ${interval.value}`),
      barChart(stats.data, (b) => [b.successes, b.errors]), el('p', { class: 'legend' }, 'blue: successes, red: errors'),
      el('h3', {}, 'p50 and p95 latency (ms)'), barChart(stats.data, (b) => [b.p50_latency_ms ?? 0, Math.max(0, (b.p95_latency_ms ?? 0) - (b.p50_latency_ms ?? 0))]),
      el('p', { class: 'legend' }, 'blue: p50; blue and red together: p95'),
      el('h3', {}, `Cost per ${interval.value} (USD)`), barChart(stats.data, (b) => [b.cost_usd, 0]),
      el('p', { class: 'legend' }, `cost in range: ${money(stats.data.reduce((sum, b) => sum + b.cost_usd, 0))}`));
  };
  for (const control of [interval, from, to]) control.addEventListener('change', () => current && show(current).catch((e) => chart.replaceChildren(failure(e))));
  const list = el('ul', {}, json.data.map((route) => el('li', {},
    el('button', { type: 'button', class: 'plain', onclick: () => show(route).catch((e) => chart.replaceChildren(failure(e))) }, route.identifier),
    ' ', route.description ?? '', ' ', el('code', {}, route.model ?? ''))));
  if (current) await show(current);
  return [el('h2', {}, 'Routes'), json.data.length ? list : el('p', {}, 'No routes for this key.'),
    el('div', { class: 'fields' }, el('label', {}, 'Interval', interval), el('label', {}, 'From (UTC day)', from), el('label', {}, 'To (UTC day)', to)), chart];
}

/** A stacked bar chart of `values(bucket)` (two series) over `buckets`, as SVG. */
function barChart(buckets, values) {
  const width = 600;
  const height = 160;
  const max = Math.max(1, ...buckets.map((b) => values(b)[0] + values(b)[1]));
  const step = width / Math.max(1, buckets.length);
  const bars = buckets.flatMap((bucket, i) => {
    const [a, b] = values(bucket);
    const ha = (a / max) * (height - 10);
    const hb = (b / max) * (height - 10);
    return [
      svg('rect', { x: i * step + 1, y: height - ha, width: Math.max(1, step - 2), height: ha, fill: '#1f5fbf' }, svg('title', {}, `${new Date(bucket.start * 1000).toISOString()}: ${a}`)),
      svg('rect', { x: i * step + 1, y: height - ha - hb, width: Math.max(1, step - 2), height: hb, fill: '#b42318' }),
    ];
  });
  return svg('svg', { class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `chart of ${buckets.length} buckets, highest ${max}` }, bars);
}

// ---- keys and usage ----

async function keys() {
  const { json: me } = await api('/api/v1/key');
  const key = me.data;
  const usage = await api('/v1/usage?group_by=day').then(({ json }) => json).catch((error) => ({ error }));
  const parts = [el('h2', {}, 'Keys and usage'),
    el('div', { class: 'facts' },
      el('span', {}, `key: ${key.label}`), el('span', {}, `spent: ${money(key.usage)}`), el('span', {}, `today: ${money(key.usage_daily)}`),
      el('span', {}, `limit: ${key.limit === null ? 'none' : money(key.limit)}`), el('span', {}, `remaining: ${key.limit_remaining === null ? 'no limit' : money(key.limit_remaining)}`),
      el('span', {}, `resets: ${key.limit_reset ?? 'never'}`)),
    el('h3', {}, 'Generations per day')];
  if (usage.error) {
    parts.push(failure(usage.error));
  } else {
    parts.push(barChart(usage.data.map((row) => ({ ...row, start: row.group })), (row) => [row.successes, row.failures]),
      el('p', { class: 'legend' }, `${usage.total.requests} requests, ${money(usage.total.cost_usd)} in the last 30 days`));
    const { json: byModel } = await api('/v1/usage?group_by=model');
    parts.push(el('h3', {}, 'By model'), el('div', { class: 'scroll' }, el('table', {},
    el('thead', {}, el('tr', {}, ['Model', 'Requests', 'Successes', 'Failures', 'Images', 'Cost', 'p50', 'p95'].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, byModel.data.map((row) => el('tr', {}, el('td', {}, row.group ?? 'none'), el('td', {}, row.requests), el('td', {}, row.successes),
      el('td', {}, row.failures), el('td', {}, row.images), el('td', {}, money(row.cost_usd)), el('td', {}, row.p50_latency_ms ?? ''), el('td', {}, row.p95_latency_ms ?? '')))))));
  }
  if (key.is_management_key) parts.push(...(await managedKeys()));
  return parts;
}

async function managedKeys() {
  const list = el('tbody');
  const shown = el('pre', { 'aria-live': 'polite' });
  const refresh = async () => {
    const { json } = await api('/api/v1/keys?include_disabled=true');
    list.replaceChildren(...json.data.map((k) => el('tr', {},
      el('td', {}, k.name), el('td', {}, k.label), el('td', {}, k.disabled ? 'disabled' : 'active'), el('td', {}, money(k.usage)), el('td', {}, k.limit === null ? '' : money(k.limit)),
      el('td', {},
        el('button', { type: 'button', class: 'plain', 'aria-label': `${k.disabled ? 'Enable' : 'Disable'} ${k.name}`, onclick: () => change(k.hash, { disabled: !k.disabled }) }, k.disabled ? 'Enable' : 'Disable'), ' ',
        el('button', { type: 'button', class: 'plain', 'aria-label': `Delete ${k.name}`, onclick: () => change(k.hash, null) }, 'Delete')))));
  };
  const change = async (hash, fields) => {
    await api(`/api/v1/keys/${encodeURIComponent(hash)}`, fields ? { method: 'PATCH', body: fields } : { method: 'DELETE' }).catch((e) => shown.replaceChildren(failure(e)));
    await refresh();
  };
  const name = el('input', { name: 'name', required: true });
  const limit = el('input', { name: 'limit', type: 'number', min: 0, step: '0.01' });
  const create = el('form', { class: 'fields', onsubmit: async (event) => {
    event.preventDefault();
    try {
      const { json } = await api('/api/v1/keys', { method: 'POST', body: { name: name.value, ...(limit.value ? { limit: Number(limit.value) } : {}) } });
      shown.textContent = `New key (shown once, copy it now): ${json.key}`;
      await refresh();
    } catch (error) {
      shown.replaceChildren(failure(error));
    }
  } }, el('label', {}, 'Name', name), el('label', {}, 'Limit (USD)', limit), el('div', {}, el('button', { type: 'submit' }, 'Create key')));
  await refresh();
  return [el('h3', {}, 'Managed keys'), create, shown,
    el('div', { class: 'scroll' }, el('table', {}, el('thead', {}, el('tr', {}, ['Name', 'Label', 'State', 'Spent', 'Limit', ''].map((h) => el('th', { scope: 'col' }, h)))), list))];
}

// ---- navigation ----

const VIEWS = { playground, history, routes, keys };

async function render() {
  const seq = ++shown;
  for (const cleanup of cleanups.splice(0)) cleanup();
  const name = VIEWS[location.hash.slice(1)] ? location.hash.slice(1) : 'playground';
  for (const link of document.querySelectorAll('nav a')) {
    if (link.getAttribute('href') === `#${name}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (!sessionStorage.getItem(KEY)) {
    view.replaceChildren(el('p', {}, 'Type your API key above to begin. It is kept in this tab only.'));
    return;
  }
  view.replaceChildren(el('p', {}, 'Loading…'));
  let parts;
  try {
    parts = await VIEWS[name]();
  } catch (error) {
    parts = [failure(error)];
  }
  if (seq !== shown) return;
  view.replaceChildren(...parts);
  // Keyboard and screen reader users land on the new view.
  view.focus({ preventScroll: true });
}

window.addEventListener('hashchange', render);
showKeyState();
render();
