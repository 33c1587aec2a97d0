// The delivery page: GET /v1/delivery as a table, one row per delivery
// stream, with what waits (lag) and what went wrong last.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function row(d) {
    const tr = document.createElement("tr");
    tr.dataset.name = d.name;
    const when = d.last_delivery_ms ? new Date(d.last_delivery_ms).toLocaleTimeString() : "never";
    tr.append(
      cell(d.name),
      cell(d.stream),
      cell(`${d.destination} ${d.target}`),
      cell(`${d.lag_records} records`, d.lag_records > 0 && d.last_error ? "bad" : ""),
      cell(`${d.buffered_records} (${bytes(d.buffered_bytes)})`),
      cell(String(d.in_flight_records)),
      cell(`${d.delivered_records} (${bytes(d.delivered_bytes)})`, d.delivered_records ? "ok" : ""),
      cell(String(d.objects)),
      cell(String(d.error_records), d.error_records ? "bad" : ""),
      cell(when),
      cell(d.last_error || "", d.last_error ? "bad" : ""));
    return tr;
  }

  async function refresh() {
    try {
      const r = await fetch("/v1/delivery", { cache: "no-store" });
      const list = (await r.json()).delivery_streams;
      $("deliveries").tBodies[0].replaceChildren(...list.map(row));
      $("none").hidden = list.length > 0;
      const waiting = list.reduce((sum, d) => sum + d.lag_records, 0);
      $("state").textContent = `${list.length} streams, ${waiting} records waiting`;
      $("state").className = "pill " + (list.some((d) => d.last_error && d.lag_records) ? "bad" : "ok");
    } catch (e) {
      $("state").textContent = "edged is not answering";
      $("state").className = "pill bad";
    }
  }

  refresh();
  setInterval(refresh, 2000);
})();
