// The camera page: live view, status, the recording timeline and replays.
"use strict";
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const name = params.get("name") || "demo";
const lowLatency = params.get("latency") === "low";
const base = `/v1/cameras/${encodeURIComponent(name)}`;
document.title = `${name} · edged`;
$("name").textContent = name;
$("snapshot").href = `${base}/snapshot.jpg`;
$("hls").href = `${base}/hls/live.m3u8`;
$("latency-toggle").textContent = lowLatency ? "normal latency" : "low latency";
$("latency-toggle").href = `/camera?name=${encodeURIComponent(name)}${lowLatency ? "" : "&latency=low"}`;
window.player = edgedPlayLive($("live"), name, (s) => {
  $("live-state").textContent = s;
  $("live-state").className = "pill " + (s === "live" ? "ok" : "");
}, { lowLatency });

function facts(rows) {
  $("facts").replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = k; dd.textContent = v;
    return [dt, dd];
  }));
}

async function refresh() {
  const r = await fetch(base, { cache: "no-store" });
  if (!r.ok) { $("live-state").textContent = "no such camera"; return; }
  const c = await r.json();
  $("facts-line").textContent = c.codec ? `${c.codec} ${c.width}×${c.height}` : "";
  facts([["source", c.source], ["state", c.state + (c.error ? ` (${c.error})` : "")],
         ["recorded", `${c.recorded.fragments} fragments, ${(c.recorded.bytes / 1048576).toFixed(1)} MiB`],
         ["oldest", c.recorded.oldest || "-"], ["newest", c.recorded.newest || "-"],
         ["retention", `${c.retentionHours} h`], ["viewers", c.liveViewers], ["restarts", c.restarts]]);
}

async function drawTimeline() {
  const span = Number($("span").value), end = Date.now() / 1000, start = end - span;
  const [f, g] = await Promise.all([
    fetch(`${base}/fragments?start=${start}&end=${end}`).then((r) => r.json()),
    fetch(`${base}/gaps?start=${start}&end=${end}`).then((r) => r.json())]);
  const bar = $("timeline");
  const at = (ms) => `${Math.max(0, (ms / 1000 - start) / span * 100)}%`;
  const blocks = [];
  // Contiguous fragments draw as one block.
  let run = null;
  for (const x of f.fragments) {
    if (run && x.serverMs - run.end < 1500) { run.end = x.serverMs + x.durationMs; continue; }
    if (run) blocks.push(run);
    run = { start: x.serverMs, end: x.serverMs + x.durationMs };
  }
  if (run) blocks.push(run);
  bar.replaceChildren(...blocks.map((b) => {
    const d = document.createElement("div");
    d.className = "recorded";
    d.style.left = at(b.start);
    d.style.width = `${(b.end - b.start) / 1000 / span * 100}%`;
    return d;
  }), ...g.gaps.map((x) => {
    const d = document.createElement("div");
    d.className = "gap";
    d.style.left = at(x.startMs);
    d.style.width = `${Math.max(0.2, (x.endMs - x.startMs) / 1000 / span * 100)}%`;
    d.title = "source lost";
    return d;
  }));
  $("scale-start").textContent = new Date(start * 1000).toLocaleTimeString();
  $("scale-end").textContent = "now";
  $("range-label").textContent = `${f.fragments.length} fragments`;
  bar.onclick = (event) => {
    const rect = bar.getBoundingClientRect();
    playFrom(start + (event.clientX - rect.left) / rect.width * span);
  };
}

// The recording from @t (Unix seconds, server time; producer time with
// @producer) for two minutes.
function playFrom(t, producer) {
  const url = `${base}/clip.mp4?start=${t.toFixed(3)}&end=${(t + 120).toFixed(3)}${producer ? "&producer=1" : ""}`;
  $("replay").hidden = false;
  $("replay-from").textContent = new Date(t * 1000).toLocaleTimeString();
  $("download").href = url;
  $("recorded").src = url;
}
// /camera?name=X&time=T (from the events page): that moment's recording.
if (params.get("time")) playFrom(Number(params.get("time")), true);

$("span").onchange = drawTimeline;
refresh(); drawTimeline();
setInterval(refresh, 5000);
setInterval(drawTimeline, 10000);
