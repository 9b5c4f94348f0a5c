// Canvas drawing of the playground's views. Pure functions of the numbers the server streams
// (no plotting library: a heat map, a few polylines and boxes are less code than adapting one).

export const PALETTE = ['#f59322', '#0877bd', '#2e9e5b', '#d7443e', '#8e5ab5', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const HEALTH = ['#2e9e5b', '#e0a100', '#d7443e'];  // good, warning, bad

function rgb(hex) { const n = parseInt(hex.slice(1), 16); return [n >> 16, (n >> 8) & 255, n & 255]; }
const RGB = PALETTE.map(rgb);

// ---- the model's view of the data --------------------------------------------------------------

// The points change only with the data: drawn once per data set and test toggle, then copied each frame.
const pointLayers = new WeakMap();
function pointsLayer(data, showTest, w, h) {
  const cached = pointLayers.get(data);
  if (cached && cached.showTest === showTest && cached.canvas.width === w && cached.canvas.height === h) return cached.canvas;
  const canvas = new OffscreenCanvas(w, h), ctx = canvas.getContext('2d');
  const [x0, x1, y0, y1] = data.extent;
  const px = x => (x - x0) / (x1 - x0) * w, py = y => (1 - (y - y0) / (y1 - y0)) * h;
  const dot = (p, test) => {
    ctx.beginPath(); ctx.arc(px(p[0]), py(p[1]), test ? 3.2 : 2.8, 0, 2 * Math.PI);
    ctx.fillStyle = PALETTE[p[2] % PALETTE.length]; ctx.fill();
    ctx.lineWidth = test ? 1.4 : 0.8; ctx.strokeStyle = test ? '#111' : '#fff'; ctx.stroke();
  };
  data.train.forEach(p => dot(p, false));
  if (showTest) data.test.forEach(p => dot(p, true));
  pointLayers.set(data, { canvas, showTest });
  return canvas;
}

// Class colour blended with white by confidence above chance (as TensorFlow Playground shades its boundary).
export function drawBoundary(ctx, data, view, showTest) {
  const { width: w, height: h } = ctx.canvas, g = data.grid, k = Math.max(2, data.classes);
  const image = new ImageData(g, g);
  for (let i = 0; i < g * g; i++) {
    const c = RGB[view.cls[i] % RGB.length], p = view.conf[i] / 255;
    const t = Math.max(0, Math.min(1, (p - 1 / k) / (1 - 1 / k))) * 0.8;
    for (let j = 0; j < 3; j++) image.data[4 * i + j] = 255 + (c[j] - 255) * t;
    image.data[4 * i + 3] = 255;
  }
  const off = new OffscreenCanvas(g, g);
  off.getContext('2d').putImageData(image, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(off, 0, 0, w, h);
  ctx.drawImage(pointsLayer(data, showTest, w, h), 0, 0);
}

export function drawRegression(ctx, data, y) {
  const { width: w, height: h } = ctx.canvas;
  ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, w, h);
  const xs = data.x, all = data.train.map(p => p[1]).concat(y.filter(v => v !== null));
  let lo = Math.min(...all), hi = Math.max(...all); const pad = 0.08 * (hi - lo || 1); lo -= pad; hi += pad;
  const px = x => (x - xs[0]) / (xs[xs.length - 1] - xs[0]) * (w - 20) + 10, py = v => (1 - (v - lo) / (hi - lo)) * (h - 20) + 10;
  data.test.slice(0, 300).forEach(p => { ctx.fillStyle = '#c7d2e0'; ctx.fillRect(px(p[0]) - 1.5, py(p[1]) - 1.5, 3, 3); });
  data.train.forEach(p => { ctx.beginPath(); ctx.arc(px(p[0]), py(p[1]), 4, 0, 7); ctx.fillStyle = PALETTE[0]; ctx.fill(); });
  ctx.beginPath(); ctx.lineWidth = 2.5; ctx.strokeStyle = PALETTE[1];
  y.forEach((v, i) => v === null ? null : (i ? ctx.lineTo(px(xs[i]), py(v)) : ctx.moveTo(px(xs[i]), py(v)))); ctx.stroke();
}

export function drawConfusion(ctx, matrix, names, signals, predicted) {
  const { width: w } = ctx.canvas, h = signals ? ctx.canvas.height - 96 : ctx.canvas.height;
  const k = matrix.length, m = 28, cell = (Math.min(w, h) - m) / k;
  ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, w, ctx.canvas.height);
  if (signals) drawSignals(ctx, signals, predicted || [], names, h + 4);
  const rows = matrix.map(r => r.reduce((a, b) => a + b, 0) || 1);
  ctx.font = '11px system-ui'; ctx.textAlign = 'center'; ctx.textBaseline = 'middle';
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) {
    const f = matrix[i][j] / rows[i];
    ctx.fillStyle = i === j ? `rgba(8,119,189,${0.1 + 0.9 * f})` : `rgba(215,68,62,${Math.min(1, 2 * f)})`;
    ctx.fillRect(m + j * cell, m + i * cell, cell - 1, cell - 1);
    if (k <= 12) { ctx.fillStyle = f > 0.5 ? '#fff' : '#333'; ctx.fillText(matrix[i][j], m + (j + 0.5) * cell, m + (i + 0.5) * cell); }
  }
  ctx.fillStyle = '#666';
  for (let i = 0; i < k; i++) {
    ctx.fillText((names || [])[i] ?? i, m + (i + 0.5) * cell, m / 2);
    ctx.fillText((names || [])[i] ?? i, m / 2, m + (i + 0.5) * cell);
  }
}

// A few input signals (MNIST-1D), each titled with its predicted and true label (green right, red wrong).
function drawSignals(ctx, signals, predicted, names, top) {
  const n = signals.x.length, pw = ctx.canvas.width / n, ph = 70;
  ctx.font = '11px system-ui'; ctx.textAlign = 'center';
  signals.x.forEach((xs, i) => {
    const lo = Math.min(...xs), hi = Math.max(...xs), x0 = i * pw + 6, wid = pw - 12;
    ctx.strokeStyle = '#0877bd'; ctx.lineWidth = 1.5; ctx.beginPath();
    xs.forEach((v, j) => { const x = x0 + j / (xs.length - 1) * wid, y = top + 18 + (1 - (v - lo) / (hi - lo || 1)) * ph; j ? ctx.lineTo(x, y) : ctx.moveTo(x, y); });
    ctx.stroke();
    const p = predicted[i], t = signals.y[i], label = c => (names || [])[c] ?? c;
    ctx.fillStyle = p === t ? '#2e9e5b' : '#d7443e';
    ctx.fillText(p === undefined ? `true ${label(t)}` : p === t ? `${label(p)} \u2713` : `${label(p)} (true ${label(t)})`, x0 + wid / 2, top + 10);
  });
}

// ---- curves ---------------------------------------------------------------------------------

// At most one row per pixel column is drawn (a long session has tens of thousands of epochs: drawing
// them all each frame would cost the page, and the cores it shares with training, more every minute).
export function thinned(rows, columns) {
  const stride = Math.max(1, Math.ceil(rows.length / columns)), kept = [];
  for (let i = 0; i < rows.length; i += stride) kept.push(rows[i]);
  if (rows.length && kept[kept.length - 1] !== rows[rows.length - 1]) kept.push(rows[rows.length - 1]);
  return kept;
}

export function drawCurves(ctx, allRows, series, { log = false } = {}) {
  const { width: w, height: h } = ctx.canvas, left = 42, bottom = 18, top = 8, right = 8;
  ctx.clearRect(0, 0, w, h);
  const rows = thinned(allRows, w - left - right);
  const f = v => log ? Math.log10(Math.max(v, 1e-6)) : v;
  let lo = Infinity, hi = -Infinity;  // a loop, not Math.min(...values): no argument-count limit
  for (const s of series) for (const r of rows) { const v = r[s.key]; if (typeof v === 'number' && isFinite(v)) { lo = Math.min(lo, f(v)); hi = Math.max(hi, f(v)); } }
  ctx.strokeStyle = '#e3e6ea'; ctx.lineWidth = 1; ctx.strokeRect(left, top, w - left - right, h - top - bottom);
  if (lo === Infinity) return;
  if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
  const n = Math.max(rows[rows.length - 1].epoch, 2), e0 = rows[0].epoch;
  const px = e => left + (e - e0) / Math.max(n - e0, 1) * (w - left - right), py = v => top + (1 - (f(v) - lo) / (hi - lo)) * (h - top - bottom);
  for (const s of series) {
    ctx.beginPath(); ctx.strokeStyle = s.color; ctx.lineWidth = 1.8; let started = false;
    for (const r of rows) {
      const v = r[s.key]; if (typeof v !== 'number' || !isFinite(v)) continue;
      started ? ctx.lineTo(px(r.epoch), py(v)) : ctx.moveTo(px(r.epoch), py(v)); started = true;
    }
    ctx.stroke();
  }
  ctx.fillStyle = '#6b7280'; ctx.font = '10px system-ui'; ctx.textAlign = 'right';
  const label = v => { const x = log ? 10 ** v : v; return Math.abs(x) >= 100 || Math.abs(x) < 0.01 ? x.toExponential(0) : x.toFixed(x < 1 ? 2 : 1); };
  ctx.fillText(label(hi), left - 4, top + 8); ctx.fillText(label(lo), left - 4, h - bottom);
  ctx.textAlign = 'center'; ctx.fillText(`epoch ${n}`, w - 30, h - 4); ctx.fillText(e0, left, h - 4);
}

// ---- network ----------------------------------------------------------------------------------

// One health level per hidden layer from the latest probe sample, with the reasons (the doctor's thresholds).
export function layerHealth(probe, i) {
  if (!probe) return { level: 0, reasons: [] };
  const reasons = []; let level = 0;
  const bump = (l, text) => { level = Math.max(level, l); reasons.push(text); };
  const dead = probe.dead_epoch ? probe.dead_epoch[i] : probe.dead[i];
  if (dead > 0.5) bump(2, 'most units dead'); else if (dead > 0.2) bump(1, 'many units dead');
  const sat = probe.saturated[i];
  if (sat > 0.25) bump(2, 'saturated'); else if (sat > 0.1) bump(1, 'partly saturated');
  const g = probe.signal_grad_norm, last = g[g.length - 1];
  if (g[i] !== null && last) {
    const r = g[i] / last;
    if (r < 1e-2) bump(2, 'vanishing gradient'); else if (r < 0.1) bump(1, 'weak gradient');
    if (r > 1e2) bump(2, 'exploding gradient');
  }
  return { level, reasons };
}

const fmt = v => v === null || v === undefined ? '–' : Math.abs(v) >= 1e3 || (Math.abs(v) < 1e-2 && v !== 0) ? v.toExponential(1) : v.toFixed(3);
const pct = v => v === null || v === undefined ? '–' : `${(100 * v).toFixed(0)}%`;

export function layerTooltip(probe, i, units) {
  if (!probe) return `<b>hidden layer ${i + 1}</b> · ${units} units`;
  const g = probe.signal_grad_norm, health = layerHealth(probe, i);
  return `<b>${probe.layers[i]}</b> · ${units} units${health.reasons.length ? ' · ' + health.reasons.join(', ') : ''}<br>` +
    `dead ${pct(probe.dead_epoch ? probe.dead_epoch[i] : probe.dead[i])} · saturated ${pct(probe.saturated[i])} · act std ${fmt(probe.act_std[i])}<br>` +
    `back-prop gradient ${fmt(g[i])} (${fmt(g[i] / g[g.length - 1])}× last layer) · weight grad ${fmt(probe.grad_norm[i])}<br>` +
    `update/weight ${fmt(probe.update_ratio[i])} · weight norm ${fmt(probe.weight_norm[i])}`;
}

function unitImage(map, size) {
  const n = Math.round(Math.sqrt(map.length)), image = new ImageData(n, n);
  for (let i = 0; i < map.length; i++) {
    const v = map[i] / 100, c = v >= 0 ? RGB[1] : RGB[0], t = Math.min(1, Math.sqrt(Math.abs(v)));  // sqrt: faint parts stay visible
    for (let j = 0; j < 3; j++) image.data[4 * i + j] = 255 + (c[j] - 255) * t;
    image.data[4 * i + 3] = 255;
  }
  const off = new OffscreenCanvas(n, n); off.getContext('2d').putImageData(image, 0, 0);
  return off;
}

// Columns: inputs, hidden layers, outputs. Narrow nets on 2-D data: one box per unit showing its output
// over the input plane, and weighted edges (blue positive, orange negative). Wide layers: one bar each.
// Returns the hover regions [{x0, x1, layer}].
export function drawNetwork(ctx, net, frame, boundaryCanvas) {
  const { width: w, height: h } = ctx.canvas;
  ctx.clearRect(0, 0, w, h);
  const widths = [net.inputs, ...net.hidden, net.outputs], cols = widths.length;
  const xs = widths.map((_, i) => 40 + i * (w - 80) / Math.max(cols - 1, 1));
  const narrow = frame && frame.units && frame.weights, box = 28, probe = frame && frame.probe;
  const ys = widths.map(n => { const gap = Math.min(44, (h - 40) / Math.max(n, 1)); return Array.from({ length: n }, (_, j) => h / 2 + (j - (n - 1) / 2) * gap); });
  const regions = [];
  if (narrow) {
    for (let c = 0; c < cols - 1; c++) {
      const W = frame.weights[c]; if (!W) continue;
      const max = Math.max(1e-9, ...W.flat().map(Math.abs));
      W.forEach((row, j) => row.forEach((v, k) => {
        const a = Math.abs(v) / max; ctx.strokeStyle = v >= 0 ? `rgba(8,119,189,${0.15 + 0.75 * a})` : `rgba(245,147,34,${0.15 + 0.75 * a})`;
        ctx.lineWidth = 0.4 + 3.2 * a; ctx.beginPath();
        ctx.moveTo(xs[c] + box / 2, ys[c][k]); ctx.bezierCurveTo((xs[c] + xs[c + 1]) / 2, ys[c][k], (xs[c] + xs[c + 1]) / 2, ys[c + 1][j], xs[c + 1] - box / 2, ys[c + 1][j]); ctx.stroke();
      }));
    }
  }
  ctx.font = '11px system-ui'; ctx.textAlign = 'center';
  widths.forEach((n, c) => {
    const hidden = c > 0 && c < cols - 1, health = hidden ? layerHealth(probe, c - 1) : { level: 0 };
    const colour = hidden ? HEALTH[health.level] : '#9aa4b2';
    if (narrow) {
      ys[c].forEach((y, j) => {
        if (hidden) ctx.drawImage(unitImage(frame.units[c - 1].maps[j]), xs[c] - box / 2, y - box / 2, box, box);
        else if (c === cols - 1 && boundaryCanvas) ctx.drawImage(boundaryCanvas, xs[c] - box / 2, y - box / 2, box, box);
        else { ctx.fillStyle = '#f3f5f8'; ctx.fillRect(xs[c] - box / 2, y - box / 2, box, box); ctx.fillStyle = '#555'; ctx.fillText(c ? `class ${j}` : `x${j + 1}`, xs[c], y + 4); }
        ctx.lineWidth = hidden ? 3 : 1.2; ctx.strokeStyle = colour; ctx.strokeRect(xs[c] - box / 2, y - box / 2, box, box);
      });
    } else {
      const bar = Math.min(h - 60, 40 + 40 * Math.log2(Math.max(n, 1))); ctx.fillStyle = colour;
      ctx.globalAlpha = hidden ? 0.85 : 0.5; ctx.beginPath(); ctx.roundRect(xs[c] - 14, h / 2 - bar / 2, 28, bar, 8); ctx.fill(); ctx.globalAlpha = 1;
      if (c < cols - 1) { ctx.strokeStyle = '#c5ccd6'; ctx.lineWidth = 2; ctx.beginPath(); ctx.moveTo(xs[c] + 16, h / 2); ctx.lineTo(xs[c + 1] - 16, h / 2); ctx.stroke(); }
    }
    ctx.fillStyle = '#3b4252';
    ctx.fillText(c === 0 ? `${n} in` : c === cols - 1 ? `${n} out` : `${n}`, xs[c], h - 8);
    if (hidden) regions.push({ x0: xs[c] - 22, x1: xs[c] + 22, layer: c - 1, units: n });
  });
  return regions;
}

export function drawHistograms(ctx, hist, layers, colour = '#0877bd') {
  const { width: w, height: h } = ctx.canvas; ctx.clearRect(0, 0, w, h);
  if (!hist) return;
  const n = hist.counts.length, cw = w / n;
  ctx.font = '10px system-ui'; ctx.textAlign = 'center';
  hist.counts.forEach((counts, i) => {
    const max = Math.sqrt(Math.max(1, ...counts)), bw = (cw - 12) / counts.length;  // sqrt: a ReLU's spike at 0 does not flatten the rest
    ctx.fillStyle = colour;
    counts.forEach((c, j) => { const bh = (h - 30) * Math.sqrt(c) / max; ctx.fillRect(i * cw + 6 + j * bw, h - 16 - bh, Math.max(bw - 0.3, 0.5), bh); });
    const e = hist.edges[i];
    ctx.fillStyle = '#6b7280'; ctx.fillText(`${(layers || [])[i] || ''}  [${fmt(e[0])}, ${fmt(e[e.length - 1])}]`, i * cw + cw / 2, h - 3);
  });
}
