// The sensors page: one chart per numeric field (temperature, humidity, ...)
// with a line per sensor (the record's partition key), fed by each sensor
// stream's subscribe WebSocket from an hour ago onwards; and the brokers'
// and rules' state from /v1/mqtt.
"use strict";

const $ = (id) => document.getElementById(id);
const WINDOW_MS = 3600 * 1000;
const MAX_POINTS = 5000; // per line
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

// field -> sensor -> [[time, value], ...]; also read by the browser test.
const series = new Map();
window.edgedSensors = { series, points: 0, streams: [] };
const sockets = new Map();
let dirty = false;

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function addPoint(field, sensor, time, value) {
  if (!series.has(field)) series.set(field, new Map());
  const lines = series.get(field);
  if (!lines.has(sensor)) lines.set(sensor, []);
  const line = lines.get(sensor);
  line.push([time, value]);
  if (line.length > 1 && line[line.length - 2][0] > time) line.sort((a, b) => a[0] - b[0]);
  while (line.length > MAX_POINTS || (line.length && line[0][0] < Date.now() - WINDOW_MS)) line.shift();
  window.edgedSensors.points++;
  dirty = true;
}

function onRecord(stream, m) {
  let doc;
  try { doc = JSON.parse(m.text); } catch (e) { return; }
  if (doc === null || typeof doc !== "object") return;
  const sensor = m.partitionKey;
  for (const [field, value] of Object.entries(doc)) {
    if (typeof value === "number" && Number.isFinite(value)) addPoint(field, sensor, m.arrivalTime, value);
  }
}

function subscribe(stream) {
  if (sockets.has(stream)) return;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const since = Math.floor((Date.now() - WINDOW_MS) / 1000);
  const ws = new WebSocket(`${scheme}//${location.host}/v1/streams/${encodeURIComponent(stream)}` +
                           `/subscribe?position=AT_TIMESTAMP&timestamp=${since}`);
  sockets.set(stream, ws);
  window.edgedSensors.streams.push(stream);
  ws.onopen = () => { $("state").textContent = "live"; $("state").className = "pill ok"; };
  ws.onmessage = (event) => {
    const m = JSON.parse(event.data);
    if (m.error) { $("state").textContent = `${stream}: ${m.error.message}`; $("state").className = "pill bad"; return; }
    if (m.text !== undefined) onRecord(stream, m);
  };
  ws.onclose = () => {
    sockets.delete(stream);
    $("state").textContent = "reconnecting…";
    $("state").className = "pill bad";
    setTimeout(() => subscribe(stream), 2000);
  };
}

const SVG = "http://www.w3.org/2000/svg";

function svg(name, attrs) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function niceTime(t) {
  return new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function drawChart(field, lines) {
  let figure = document.querySelector(`figure[data-field="${CSS.escape(field)}"]`);
  if (!figure) {
    figure = document.createElement("figure");
    figure.className = "chart";
    figure.dataset.field = field;
    $("chart-list").append(figure);
  }
  const W = 560, H = 220, L = 48, R = 8, T = 10, B = 24;
  let t0 = Infinity, t1 = -Infinity, v0 = Infinity, v1 = -Infinity, points = 0;
  for (const line of lines.values()) {
    for (const [t, v] of line) {
      t0 = Math.min(t0, t); t1 = Math.max(t1, t); v0 = Math.min(v0, v); v1 = Math.max(v1, v);
      points++;
    }
  }
  if (!points) return;
  if (t1 === t0) t1 = t0 + 1000;
  if (v1 === v0) { v0 -= 1; v1 += 1; }
  const pad = (v1 - v0) * 0.08;
  v0 -= pad; v1 += pad;
  const x = (t) => L + (t - t0) / (t1 - t0) * (W - L - R);
  const y = (v) => T + (1 - (v - v0) / (v1 - v0)) * (H - T - B);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": field });
  for (let i = 0; i <= 4; i++) {
    const v = v0 + (v1 - v0) * i / 4;
    chart.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    const label = svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" });
    label.textContent = Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(1);
    chart.append(label);
  }
  for (const [t, anchor] of [[t0, "start"], [t1, "end"]]) {
    const label = svg("text", { x: x(t), y: H - 6, "text-anchor": anchor, class: "axis" });
    label.textContent = niceTime(t);
    chart.append(label);
  }
  const legend = document.createElement("div");
  legend.className = "legend";
  let i = 0;
  for (const [sensor, line] of [...lines.entries()].sort()) {
    const color = COLORS[i++ % COLORS.length];
    const d = line.map(([t, v], k) => `${k ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join("");
    chart.append(svg("path", { d, stroke: color, class: "line", "data-sensor": sensor }));
    const last = line[line.length - 1];
    const item = document.createElement("span");
    item.dataset.sensor = sensor;
    item.dataset.value = String(last[1]);
    item.innerHTML = `<i style="background:${color}"></i>`;
    item.append(`${sensor} ${last[1]}`);
    legend.append(item);
  }
  const title = document.createElement("figcaption");
  title.textContent = field;
  figure.dataset.points = String(points);
  figure.replaceChildren(title, chart, legend);
}

function draw() {
  if (dirty) {
    dirty = false;
    for (const [field, lines] of [...series.entries()].sort()) drawChart(field, lines);
    $("points").textContent = `${window.edgedSensors.points.toLocaleString()} readings`;
  }
  requestAnimationFrame(draw);
}

async function refresh() {
  try {
    const r = await fetch("/v1/mqtt", { cache: "no-store" });
    const s = await r.json();
    $("brokers").tBodies[0].replaceChildren(...s.brokers.map((b) => {
      const tr = document.createElement("tr");
      const state = cell(b.connected ? "connected" : "disconnected");
      state.className = b.connected ? "ok" : "bad";
      tr.append(cell(b.name), cell(`${b.host}:${b.port}${b.tls ? " (TLS)" : ""}`), state,
                cell(b.messages_in.toLocaleString()), cell(b.messages_out.toLocaleString()),
                cell(b.pending), cell(b.reconnects), cell(b.last_error || ""));
      return tr;
    }));
    $("rules").tBodies[0].replaceChildren(...s.rules.map((rule) => {
      const tr = document.createElement("tr");
      const sql = cell(rule.sql);
      sql.className = "path";
      tr.append(cell(rule.name), sql, cell(rule.matches.toLocaleString()), cell(rule.errors));
      return tr;
    }));
    $("no-rules").hidden = s.rules.length > 0;
    const streams = [...new Set(s.subscriptions.map((sub) => sub.stream))];
    $("no-sensors").hidden = streams.length > 0;
    streams.forEach(subscribe);
  } catch (e) {
    $("state").textContent = "edged unreachable";
    $("state").className = "pill bad";
  }
}

refresh();
setInterval(refresh, 5000);
requestAnimationFrame(draw);
