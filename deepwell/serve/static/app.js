// The playground page: controls (spec keys), the session's stream, the views, URL state.
import { drawBoundary, drawRegression, drawConfusion, drawCurves, drawNetwork, drawHistograms, layerTooltip, PALETTE } from './draw.js';

const $ = id => document.getElementById(id);
const state = { id: null, spec: null, keys: {}, data: null, frame: null, rows: [], regions: [], playing: false, meta: null };
// What the tests (and the bench) read: the last numbers drawn and the delay of each frame.
window.__dw = state; state.latencies = []; state.frames = 0;

// ---- controls: every control edits one spec key -----------------------------------------------
const SOURCES = ['moons', 'circles', 'spirals', 'xor', 'gaussians'];
const CONTROLS = {
  'data-controls': [
    ['data.source', 'data set', 'datasets', 'moons, spirals:noise=0.3, mnist1d, csv:path=f.csv,target=y'],
    ['noise', 'noise (2-D data sets)', null, '0.2', 'number'],
    ['data.n_train', 'training examples (n_train)', null, 'all', 'number'],
    ['data.val_fraction', 'validation fraction', null, '0.2', 'number'],
    ['data.label_noise', 'label noise', null, '0', 'number'],
    ['data.preprocess', 'preprocessing', 'preprocessing'],
    ['data.augment', 'augmentation (MNIST-1D)', 'augmentation', '[shift:5, noise:0.1]'],
  ],
  'model-controls': [
    ['model.hidden', 'hidden layers (units each)', null, '[8, 8]'],
    ['model.activation', 'activation', 'activation', 'relu, tanh, leaky_relu:0.1'],
    ['model.init', 'init', 'initializer', 'he, xavier, normal:std=0.01, he:mode=fan_out'],
    ['model.norm', 'normalisation', 'normalization', 'none, batchnorm, layernorm'],
    ['model.norm_position', 'norm before / after activation', ['before', 'after']],
    ['model.dropout', 'dropout / DropConnect', 'dropout', 'dropout:0.3, dropconnect:0.2'],
  ],
  'train-controls': [
    ['train.optimizer', 'optimiser', 'optimizer', 'adam, sgd:momentum=0.9'],
    ['train.lr', 'learning rate', null, '0.01'],
    ['train.schedule', 'schedule', 'schedule', 'constant, cosine, onecycle'],
    ['train.batch_size', 'batch size', null, '32', 'number'],
    ['train.penalty', 'penalty', 'penalty', 'l2:1e-4, l1:1e-4, elasticnet:1e-4'],
    ['train.early_stopping', 'early stopping', ['null', '{patience: 10}', '{patience: 5}'], 'null or {patience: 10}'],
    ['train.epochs', 'epochs', null, '300', 'number'],
    ['seed', 'seed', null, '0', 'number'],
  ],
};

function buildControls() {
  for (const [panel, rows] of Object.entries(CONTROLS)) {
    for (const [key, label, choices, placeholder, type] of rows) {
      const div = document.createElement('div'); div.className = 'control'; div.dataset.key = key;
      const listId = choices ? `list-${key}` : null;
      div.innerHTML = `<label>${label} <code>${key === 'noise' ? 'data.source noise=' : key}</code></label>` +
        `<input data-key="${key}" ${type ? `type="${type}" step="any"` : ''} ${listId ? `list="${listId}"` : ''} placeholder="${placeholder || ''}" autocomplete="off">` +
        (listId ? `<datalist id="${listId}"></datalist>` : '') + `<div class="msg" id="msg-${key}"></div>`;
      $(panel).appendChild(div);
      const input = div.querySelector('input');
      input.addEventListener('change', () => edit(key, input.value));
      if (listId) {
        const names = Array.isArray(choices) ? choices : choices === 'datasets' ? state.meta.datasets.concat(state.meta.files.map(f => `csv:path=${f},target=target`))
          : state.meta.choices[choices];
        div.querySelector('datalist').innerHTML = names.map(n => `<option value="${n}">`).join('');
      }
    }
  }
  const upload = document.createElement('div'); upload.className = 'control'; upload.dataset.key = 'upload';
  upload.innerHTML = `<label>your data: upload a CSV / NPZ <code>(max ${(state.meta.max_upload_bytes / 2 ** 20).toFixed(0)} MiB)</code></label>` +
    `<div class="upload"><input type="file" id="upload-file" accept=".csv,.npz"><input id="upload-target" placeholder="target column" value="target" style="width:90px"></div>` +
    `<div class="msg" id="msg-upload"></div>`;
  $('data-controls').insertBefore(upload, $('data-controls').children[2]);
  $('upload-file').addEventListener('change', uploadFile);
}

function valueOf(key, spec) {
  if (key === 'noise') { const m = /noise=([0-9.e-]+)/.exec(spec.data.source); return m ? m[1] : ''; }
  let v = spec; for (const part of key.split('.')) v = v == null ? v : v[part];
  if (v === null || v === undefined) return key === 'train.early_stopping' ? 'null' : '';
  if (Array.isArray(v)) return `[${v.join(', ')}]`;
  if (typeof v === 'object') return `{patience: ${v.patience}}`;
  return String(v);
}

function showSpec(spec) {
  for (const input of document.querySelectorAll('.control input[data-key]')) {
    if (document.activeElement !== input) input.value = valueOf(input.dataset.key, spec);
  }
  renderLayerButtons(spec);
}

function message(key, text, ok = false) {
  const el = $(`msg-${key}`); if (!el) return;
  el.textContent = text || ''; el.classList.toggle('ok', ok);
  el.parentElement.classList.toggle('bad', !!text && !ok);
}

async function post(path, body) {
  const response = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body || {}) });
  const json = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  return { ok: response.ok, status: response.status, json };
}

async function edit(key, value, restart = false) {
  let changes = { [key]: value };
  if (key === 'noise') {
    const name = state.spec.data.source.split(':')[0];
    changes = { 'data.source': `${name}:noise=${value}` };
  }
  return apply(changes, restart, key);
}

async function apply(changes, restart = false, key = null) {
  const { ok, json } = await post(`/api/sessions/${state.id}/set`, { changes, restart });
  if (!ok) { message(json.key === 'data.source' && key === 'noise' ? 'noise' : (key || json.key), json.error); setStatus(json.error, true); return false; }
  for (const k of Object.keys(changes).concat(key ? [key] : [])) message(k, '');
  adopt(json);
  setStatus(json.kind === 'keep' ? 'Applied from the next epoch; the weights were kept.' : json.kind === 'rebuild' ? 'Rebuilt: re-initialised with the seed.' : '');
  return true;
}

function adopt(json) {
  state.spec = json.spec; state.keys = json.keys; state.command = json.command;
  showSpec(json.spec);
  history.replaceState(null, '', '?' + new URLSearchParams(json.keys).toString());
  if (!$('command').classList.contains('hidden')) $('command').textContent = json.command;
}

function renderLayerButtons(spec) {
  const hidden = spec.model.hidden || Array(spec.model.depth).fill(spec.model.width);
  const set = h => apply({ 'model.hidden': `[${h.join(', ')}]` });
  const box = $('layer-buttons'); box.innerHTML = '';
  const button = (text, title, fn) => { const b = document.createElement('button'); b.textContent = text; b.title = title; b.onclick = fn; return b; };
  box.append(button('+ layer', 'add a hidden layer', () => set(hidden.concat([hidden[hidden.length - 1] || 4]))));
  box.append(button('− layer', 'remove the last hidden layer', () => hidden.length && set(hidden.slice(0, -1))));
  hidden.forEach((n, i) => {
    const span = document.createElement('span'); span.className = 'layer';
    span.append(button('−', `fewer units in layer ${i + 1}`, () => n > 1 && set(hidden.map((m, j) => j === i ? m - 1 : m))));
    span.append(document.createTextNode(` ${n} `));
    span.append(button('+', `more units in layer ${i + 1}`, () => set(hidden.map((m, j) => j === i ? m + 1 : m))));
    box.append(span);
  });
}

async function uploadFile() {
  const file = $('upload-file').files[0]; if (!file) return;
  message('upload', 'checking…', true);
  const target = $('upload-target').value || 'target';
  const response = await fetch(`/api/upload?name=${encodeURIComponent(file.name)}&target=${encodeURIComponent(target)}`, { method: 'POST', body: file });
  const json = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) { message('upload', json.error); return; }
  message('upload', `${file.name}: read fine`, true);
  await apply({ 'data.source': json.source }, false, 'data.source');
}

// ---- the stream -----------------------------------------------------------------------------
function setStatus(text, error = false) { $('status').textContent = text || ''; $('status').classList.toggle('error', error); }

function onMessage(event) {
  const m = JSON.parse(event.data);
  if (m.type === 'data') { state.data = m; state.rows = []; state.frame = null; $('view-title').textContent = { boundary: 'Decision boundary', curve: 'Fitted curve', confusion: 'Confusion matrix (validation)', none: 'Output' }[m.kind]; }
  else if (m.type === 'status') {
    state.playing = m.state === 'playing'; state.held = m.held; $('play').innerHTML = state.playing ? '&#10074;&#10074;' : '&#x25b6;';
    if (m.message) setStatus(m.message, m.message.startsWith('error'));
  } else if (m.type === 'ended') { setStatus(m.message, true); }
  else if (m.type === 'frame') {
    state.latencies.push(Date.now() - m.t * 1000); if (state.latencies.length > 2000) state.latencies.shift();
    unpack(m);
    state.rows = m.replace ? m.rows : state.rows.concat(m.rows);
    state.frame = Object.assign(state.frame || {}, m); state.frames++;
    if (m.findings) renderFindings(m.findings);
    requestDraw();
  }
}

// Heat maps and unit maps arrive as base64 bytes (views.packed): typed arrays here, one per unit for the maps.
function bytes(text, type) { const raw = atob(text), out = new type(raw.length); for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i); return out; }
function unpack(m) {
  if (m.view && m.view.kind === 'boundary') { m.view.cls = bytes(m.view.cls, Uint8Array); m.view.conf = bytes(m.view.conf, Uint8Array); }
  for (const layer of m.units || []) {
    const all = bytes(layer.maps, Int8Array), n = all.length / layer.scale.length;
    layer.maps = layer.scale.map((_, j) => all.subarray(j * n, (j + 1) * n));
  }
}

let drawPending = false;
const drawnWith = {};  // panel -> the values it was last drawn from
function changed(panel, ...values) {
  const before = drawnWith[panel];
  drawnWith[panel] = values;
  return !before || before.length !== values.length || values.some((v, i) => v !== before[i]);
}
function requestDraw() { if (!drawPending) { drawPending = true; requestAnimationFrame(() => { drawPending = false; draw(); }); } }

function draw() {
  const f = state.frame, d = state.data; if (!f || !d) return;
  $('epoch').textContent = f.epoch; $('steps').textContent = f.step; $('rate').textContent = Math.round(f.steps_per_s);
  const last = state.rows[state.rows.length - 1] || {};
  $('loss').textContent = last['train/loss'] !== undefined ? last['train/loss'].toFixed(4) : '–';
  $('acc').textContent = last['val/acc'] !== undefined ? (100 * last['val/acc']).toFixed(1) + '%' : '–';
  const view = $('view').getContext('2d');
  if (f.view && f.view.kind === 'boundary') drawBoundary(view, d, f.view, $('show-test').checked);
  else if (f.view && f.view.kind === 'curve') drawRegression(view, d, f.view.y);
  else if (f.view && f.view.kind === 'confusion') drawConfusion(view, f.view.matrix, d.class_names, d.signals, f.view.predicted);
  state.regions = drawNetwork($('network').getContext('2d'), d.network, f, $('view'));
  // Panels whose data did not change since they were last drawn are left as they are: the page shares
  // the machine's cores with the training it shows.
  // (the layer names by value: every frame's probe is a new array, while f.hist stays the same object until resent)
  const layers = f.probe && f.probe.layers, names = layers && layers.join('|');
  if (changed('hist', f.hist, names)) drawHistograms($('histograms').getContext('2d'), f.hist, layers);
  if (changed('grad-hist', f.grad_hist, names)) drawHistograms($('grad-histograms').getContext('2d'), f.grad_hist, layers, '#d7443e');
  if (changed('curves', state.rows.length, state.rows[state.rows.length - 1])) {
    drawCurves($('loss-curve').getContext('2d'), state.rows, [{ key: 'train/loss', color: PALETTE[0] }, { key: 'train/loss_clean', color: '#8e5ab5' }, { key: 'val/loss', color: PALETTE[1] }], { log: true });
    drawCurves($('acc-curve').getContext('2d'), state.rows, [{ key: 'train/acc_clean', color: '#8e5ab5' }, { key: 'val/acc', color: PALETTE[1] }]);
  }
  gradientFlow(f.probe);
}

function gradientFlow(probe) {
  const el = $('gradflow');
  if (!probe || probe.signal_grad_norm.length < 2) { el.textContent = ''; return; }
  const g = probe.signal_grad_norm, ratio = g[0] / g[g.length - 1];
  el.dataset.ratio = ratio;
  const show = v => v >= 0.01 && v < 1000 ? v.toFixed(2) : v.toExponential(1);
  el.innerHTML = `Gradient reaching the first hidden layer: <b>${show(ratio)}×</b> the last hidden layer's` +
    (probe.signal_at_init ? ` (at init ${show(probe.signal_at_init[0] / probe.signal_at_init[g.length - 1])}×)` : '');
}

function renderFindings(findings) {
  const box = $('findings'); box.innerHTML = '';
  if (!findings.length) { box.innerHTML = '<div class="healthy">No problem found so far.</div>'; return; }
  for (const f of findings) {
    const div = document.createElement('div'); div.className = `finding ${f.severity}`; div.dataset.rule = f.rule;
    div.innerHTML = `<div class="title"></div><div class="evidence"></div>`;
    div.querySelector('.title').textContent = `${f.severity.toUpperCase()}: ${f.title}`;
    div.querySelector('.evidence').textContent = f.evidence;
    for (const action of f.actions) {
      const b = document.createElement('button');
      b.textContent = 'try ' + Object.entries(action).map(([k, v]) => `${k.split('.').pop()}=${v}`).join(', ');
      b.title = Object.entries(action).map(([k, v]) => `${k}=${v}`).join(' ') + ' (applies and restarts)';
      b.onclick = async () => { if (await apply(action, true)) setStatus(`Applied ${b.title}`); };
      div.appendChild(b);
    }
    box.appendChild(div);
  }
}

// ---- start ------------------------------------------------------------------------------------
async function start() {
  state.meta = await (await fetch('/api/meta')).json();
  buildControls();
  for (const s of state.meta.scenes) $('scene').insertAdjacentHTML('beforeend', `<option value="${s.name}">${s.title}</option>`);
  const keys = Object.fromEntries(new URLSearchParams(location.search));
  const { ok, json } = await post('/api/sessions', { keys });
  if (!ok) { setStatus(json.error, true); return; }
  state.id = json.id; adopt(json);
  const socket = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws/${json.id}`);
  socket.onmessage = onMessage;
  socket.onclose = () => setStatus('Disconnected from the server; reload the page.', true);
  setStatus('Ready: press play, or step one epoch.');
  $('play').onclick = () => post(`/api/sessions/${state.id}/${state.playing ? 'pause' : 'play'}`);
  $('step').onclick = () => post(`/api/sessions/${state.id}/step`);
  $('reset').onclick = () => post(`/api/sessions/${state.id}/reset`);
  $('show-test').onchange = requestDraw;
  $('scene').onchange = async () => {
    const name = $('scene').value; if (!name) return;
    const { ok, json } = await post(`/api/sessions/${state.id}/scene`, { name });
    if (!ok) { setStatus(json.error, true); return; }
    adopt(json); $('caption').innerHTML = `<b>${$('scene').selectedOptions[0].textContent}</b>`; $('caption').append(json.scene);
    $('caption').classList.remove('hidden'); setStatus('Scene loaded: press play.');
  };
  $('copy').onclick = async () => {
    $('command').textContent = state.command; $('command').classList.toggle('hidden');
    try { await navigator.clipboard.writeText(state.command); setStatus('Command copied to the clipboard.'); } catch (e) { setStatus('Select the command below to copy it.'); }
  };
  $('save').onclick = async () => {
    setStatus('Saving…');
    const { ok, json } = await post(`/api/sessions/${state.id}/save`);
    setStatus(ok ? `Saved run folder: ${json.path}` : json.error, !ok);
    if (ok) $('status').dataset.saved = json.path;
  };
  $('network').onmousemove = event => {
    const rect = $('network').getBoundingClientRect(), x = (event.clientX - rect.left) * $('network').width / rect.width;
    const region = state.regions.find(r => x >= r.x0 && x <= r.x1), tip = $('tooltip');
    if (!region) { tip.classList.add('hidden'); return; }
    tip.innerHTML = layerTooltip(state.frame && state.frame.probe, region.layer, region.units);
    tip.style.left = `${Math.min(event.clientX - rect.left + 12, rect.width - 330)}px`; tip.style.top = `${event.clientY - rect.top + 12}px`;
    tip.classList.remove('hidden');
  };
  $('network').onmouseleave = () => $('tooltip').classList.add('hidden');
}

start();
