// The events page: GET /v1/events as cards with snapshots, each opening the
// camera's page at the event's start (/camera?name=&time=).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);

  function duration(e) {
    if (!e.end_ms) return "going on";
    const s = (e.end_ms - e.start_ms) / 1000;
    return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  }

  function card(e) {
    const a = document.createElement("a");
    a.className = "event" + (e.active ? " active" : "");
    a.href = `/camera?name=${encodeURIComponent(e.camera)}&time=${(e.start_ms / 1000 - 2).toFixed(3)}`;
    a.dataset.id = e.id;
    const img = document.createElement("img");
    img.alt = `${e.type} on ${e.camera}`;
    img.loading = "lazy";
    if (e.snapshot_url) img.src = e.snapshot_url;
    const line = document.createElement("div");
    line.innerHTML = `<b></b> <span class="muted"></span><br><span class="muted"></span>`;
    line.children[0].textContent = `${e.type} · ${e.camera}`;
    line.children[1].textContent = `score ${e.score.toFixed(3)}`;
    line.children[3].textContent = `${new Date(e.start_ms).toLocaleString()} · ${duration(e)}`;
    // The boxes, drawn over the snapshot.
    const frame = document.createElement("div");
    frame.className = "snap";
    frame.append(img);
    for (const b of e.boxes) {
      const box = document.createElement("span");
      box.className = "box";
      Object.assign(box.style, { left: `${b.x * 100}%`, top: `${b.y * 100}%`,
                                 width: `${b.width * 100}%`, height: `${b.height * 100}%` });
      frame.append(box);
    }
    a.append(frame, line);
    return a;
  }

  async function cameras() {
    const r = await fetch("/v1/cameras");
    if (!r.ok) return;
    const select = $("camera");
    const wanted = params.get("camera") || "";
    select.replaceChildren(new Option("all", ""), ...(await r.json()).cameras.map((c) => new Option(c.name, c.name, false, c.name === wanted)));
  }

  async function refresh() {
    const q = new URLSearchParams({ limit: "60" });
    if ($("camera").value) q.set("camera", $("camera").value);
    if ($("type").value) q.set("type", $("type").value);
    try {
      const r = await fetch(`/v1/events?${q}`, { cache: "no-store" });
      const { events } = await r.json();
      $("events").replaceChildren(...events.map(card));
      $("no-events").hidden = events.length > 0;
      $("state").textContent = `${events.length} events`;
      $("state").className = "pill ok";
    } catch (err) {
      $("state").textContent = "edged unreachable";
      $("state").className = "pill";
    }
  }

  // Functions' own lines (not START, END, REPORT) of the last ten minutes.
  async function outputs() {
    const r = await fetch("/v1/functions", { cache: "no-store" });
    if (!r.ok) return;
    const since = Date.now() - 10 * 60 * 1000;
    const blocks = await Promise.all((await r.json()).functions.map(async (f) => {
      const logs = await (await fetch(`/v1/functions/${encodeURIComponent(f.name)}/logs?since=${since}&limit=1000`)).json();
      const lines = (logs.events || []).filter((e) => !/^(START|END|REPORT) RequestId/.test(e.message)).slice(-12);
      const block = document.createElement("div");
      const h = document.createElement("h3");
      h.textContent = f.name;
      const pre = document.createElement("pre");
      pre.className = "output";
      pre.textContent = lines.length ? lines.map((e) => `${new Date(e.timestamp).toLocaleTimeString()}  ${e.message}`).join("\n")
                                     : "(nothing printed in the last ten minutes)";
      block.append(h, pre);
      return block;
    }));
    $("outputs").replaceChildren(...blocks);
  }

  $("camera").onchange = refresh;
  $("type").onchange = refresh;
  cameras().then(refresh);
  outputs();
  setInterval(refresh, 3000);
  setInterval(outputs, 3000);
})();
