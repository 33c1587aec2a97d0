// The edged web UI: everything on this page comes from the REST API.
"use strict";

const $ = (id) => document.getElementById(id);

function facts(dl, rows) {
  dl.replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = k;
    dd.textContent = v;
    return [dt, dd];
  }));
}

function duration(seconds) {
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function requestsServed(metricsText) {
  let total = 0;
  for (const line of metricsText.split("\n")) {
    if (line.startsWith("edged_http_requests_total{")) total += Number(line.split(" ").pop());
  }
  return total;
}

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  return { ok: r.ok, body: await r.json() };
}

async function refresh() {
  try {
    const [status, health, metrics] = await Promise.all([
      getJSON("/v1/status"), getJSON("/healthz"),
      fetch("/metrics", { cache: "no-store" }).then((r) => r.text()),
    ]);
    const s = status.body, h = health.body;
    $("health").textContent = h.status === "ok" ? "healthy" : "unhealthy";
    $("health").className = "pill " + (h.status === "ok" ? "ok" : "bad");
    $("version").textContent = `v${s.version}`;
    facts($("system-facts"), [
      ["board", s.board.model === "unknown" ? `${s.board.arch} computer` : s.board.model],
      ["processors", `${s.board.cpus} × ${s.board.arch}`],
      ["memory", bytes(s.board.memory_bytes)],
      ["kernel", s.board.kernel],
      ["up for", duration(s.uptime_seconds)],
      ["instance", s.instance_id],
      ["data", s.data_dir],
      ["encryption", `${s.encryption.cipher}, key ${s.encryption.active_key_id}`],
    ]);
    facts($("gateway-facts"), [
      ["address", s.gateway.url],
      ["TLS", s.gateway.tls ? "on" : "off"],
      ["requests served", requestsServed(metrics).toLocaleString()],
      ["configuration", s.config],
      ...Object.entries(h.checks).map(([k, v]) => [`check: ${k}`, v]),
    ]);
  } catch (e) {
    $("health").textContent = "unreachable";
    $("health").className = "pill bad";
  }
}

async function loadRoutes() {
  const { body: doc } = await getJSON("/v1/openapi.json");
  const rows = [];
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const tr = document.createElement("tr");
      const m = document.createElement("td");
      m.textContent = op["x-websocket"] ? "WS" : method.toUpperCase();
      m.className = "method";
      const p = document.createElement("td");
      p.textContent = path;
      p.className = "path";
      const d = document.createElement("td");
      d.textContent = op.summary;
      tr.append(m, p, d);
      rows.push(tr);
    }
  }
  document.querySelector("#routes tbody").replaceChildren(...rows);
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

let tailSocket = null;

function watch(name) {
  if (tailSocket) tailSocket.close();
  $("tail").hidden = false;
  $("tail-name").textContent = name;
  $("tail-state").textContent = "connecting…";
  const body = document.querySelector("#tail-table tbody");
  body.replaceChildren();
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/v1/streams/${encodeURIComponent(name)}/subscribe?position=TRIM_HORIZON`);
  tailSocket = ws;
  ws.onopen = () => { $("tail-state").textContent = "live"; };
  ws.onclose = () => { if (tailSocket === ws) $("tail-state").textContent = "disconnected"; };
  ws.onmessage = (event) => {
    const m = JSON.parse(event.data);
    if (m.error) { $("tail-state").textContent = m.error.message; return; }
    const tr = document.createElement("tr");
    tr.append(cell(new Date(m.arrivalTime).toLocaleTimeString()), cell(m.shardId.replace("shardId-", "")),
              cell(m.partitionKey), cell(m.text !== undefined ? m.text : `(${atob(m.data).length} bytes)`, "path"));
    body.prepend(tr);
    while (body.children.length > 100) body.lastChild.remove();
  };
}

async function loadStreams() {
  try {
    const { body } = await getJSON("/v1/streams");
    const rows = body.streams.map((s) => {
      const tr = document.createElement("tr");
      tr.className = "clickable";
      tr.append(cell(s.name, "path"), cell(s.shards), cell(s.records.toLocaleString()), cell(bytes(s.bytes)),
                cell(s.durability), cell(`${s.retentionHours} h`));
      tr.onclick = () => { location.hash = `stream=${encodeURIComponent(s.name)}`; };
      return tr;
    });
    document.querySelector("#stream-table tbody").replaceChildren(...rows);
    $("no-streams").hidden = rows.length > 0;
  } catch (e) { /* the status card reports reachability */ }
}

// "#stream=NAME" opens that stream's live view: a link to it can be shared.
function watchFromHash() {
  const m = location.hash.match(/^#stream=(.+)$/);
  if (m) watch(decodeURIComponent(m[1]));
}
window.addEventListener("hashchange", watchFromHash);

// One live tile per camera; tiles stay (and keep playing) across refreshes.
const tiles = new Map();

async function loadCameras() {
  try {
    const { body } = await getJSON("/v1/cameras");
    const grid = $("camera-grid");
    for (const c of body.cameras) {
      let tile = tiles.get(c.name);
      if (!tile) {
        const a = document.createElement("a");
        a.className = "camera-tile";
        a.href = `/camera?name=${encodeURIComponent(c.name)}`;
        const video = document.createElement("video");
        video.autoplay = true;
        const caption = document.createElement("div");
        caption.className = "caption";
        const title = document.createElement("span");
        title.textContent = c.name;
        const state = document.createElement("span");
        state.className = "muted";
        caption.append(title, state);
        a.append(video, caption);
        grid.append(a);
        tile = { element: a, state, player: edgedPlayLive(video, c.name, (s) => { state.textContent = s; }) };
        tiles.set(c.name, tile);
      }
      if (c.state !== "running") tile.state.textContent = c.error || c.state;
    }
    for (const [name, tile] of tiles) {
      if (!body.cameras.some((c) => c.name === name)) {
        tile.player.stop();
        tile.element.remove();
        tiles.delete(name);
      }
    }
    $("no-cameras").hidden = body.cameras.length > 0;
  } catch (e) { /* the status card reports reachability */ }
}

refresh();
loadCameras();
setInterval(loadCameras, 5000);
loadRoutes();
loadStreams();
watchFromHash();
setInterval(refresh, 5000);
setInterval(loadStreams, 5000);
