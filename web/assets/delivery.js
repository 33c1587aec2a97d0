// The delivery page: GET /v1/delivery, /v1/forwarders, /v1/uploads and
// /v1/analytics as tables, one row per delivery stream, forwarder, video
// upload or analytics application, with what waits (lag) and what went
// wrong last.
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

  function forwarderRow(f) {
    const tr = document.createElement("tr");
    tr.dataset.name = f.name;
    const when = f.last_forward_ms ? new Date(f.last_forward_ms).toLocaleTimeString() : "never";
    const target = f.destination === "kinesis" ? `${f.endpoint} ${f.target_stream}`
                                                : `${f.servers} ${f.subject}`;
    const stuck = f.lag_records > 0 && f.last_error;
    tr.append(
      cell(f.name),
      cell(f.stream),
      cell(`${f.destination} ${target}`),
      cell(`${f.lag_records} records`, stuck ? "bad" : ""),
      cell(bytes(f.lag_bytes)),
      cell(`${f.lag_seconds} s`, stuck ? "bad" : ""),
      cell(`${f.forwarded_records} (${bytes(f.forwarded_bytes)})`, f.forwarded_records ? "ok" : ""),
      cell(String(f.failed_requests)),
      cell(String(f.skipped_records), f.skipped_records ? "bad" : ""),
      cell(when),
      cell(stuck ? f.last_error : "", stuck ? "bad" : ""));
    return tr;
  }

  function uploadRow(u) {
    const tr = document.createElement("tr");
    tr.dataset.name = u.name;
    const when = u.last_upload_ms ? new Date(u.last_upload_ms).toLocaleTimeString() : "never";
    const stuck = u.lag_fragments > 2 && u.last_error;
    tr.append(
      cell(u.name),
      cell(u.camera),
      cell(`${u.endpoint}/${u.bucket}/${u.prefix}`),
      cell(`${u.lag_fragments} fragments`, stuck ? "bad" : ""),
      cell(bytes(u.lag_bytes)),
      cell(`${u.lag_seconds} s`, stuck ? "bad" : ""),
      cell(`${u.uploaded_fragments} (${bytes(u.uploaded_bytes)})`, u.uploaded_fragments ? "ok" : ""),
      cell(String(u.skipped_fragments), u.skipped_fragments ? "bad" : ""),
      cell(String(u.deleted_objects)),
      cell(when),
      cell(u.last_error || "", u.last_error ? "bad" : ""));
    return tr;
  }

  function analyticsRow(a) {
    const tr = document.createElement("tr");
    tr.dataset.name = a.name;
    const length = a.window === "session" ? `gap ${a.gap_ms / 1000} s`
                 : a.window === "sliding" ? `${a.size_ms / 1000} s every ${a.slide_ms / 1000} s`
                                          : `${a.size_ms / 1000} s`;
    tr.append(
      cell(a.name),
      cell(a.stream),
      cell(a.output),
      cell(`${a.window}, ${length}`),
      cell(`${a.lag_records + a.pending_results}`, a.last_error ? "bad" : ""),
      cell(String(a.records), a.records ? "ok" : ""),
      cell(String(a.open_records)),
      cell(String(a.windows)),
      cell(String(a.results)),
      cell(String(a.anomalies), a.anomalies ? "bad" : ""),
      cell(`${a.late_records} / ${a.invalid_records}`),
      cell(a.last_error || "", a.last_error ? "bad" : ""));
    return tr;
  }

  async function refresh() {
    try {
      const [r, rf, ra, ru] = await Promise.all(
        ["/v1/delivery", "/v1/forwarders", "/v1/analytics", "/v1/uploads"]
          .map((path) => fetch(path, { cache: "no-store" })));
      const uploads = (await ru.json()).video_uploads;
      $("uploads").tBodies[0].replaceChildren(...uploads.map(uploadRow));
      $("no-uploads").hidden = uploads.length > 0;
      const list = (await r.json()).delivery_streams;
      const forwarders = (await rf.json()).forwarders;
      const apps = (await ra.json()).applications;
      $("analytics").tBodies[0].replaceChildren(...apps.map(analyticsRow));
      $("no-analytics").hidden = apps.length > 0;
      $("deliveries").tBodies[0].replaceChildren(...list.map(row));
      $("none").hidden = list.length > 0;
      $("forwarders").tBodies[0].replaceChildren(...forwarders.map(forwarderRow));
      $("no-forwarders").hidden = forwarders.length > 0;
      const waiting = list.concat(forwarders).reduce((sum, d) => sum + d.lag_records, 0);
      const count = (n, what) => `${n} ${what}${n === 1 ? "" : "s"}`;
      $("state").textContent = `${count(list.length, "delivery stream")}, ` +
                               `${count(forwarders.length, "forwarder")}, ` +
                               `${count(waiting, "record")} waiting`;
      const bad = list.concat(forwarders).some((d) => d.last_error && d.lag_records);
      $("state").className = "pill " + (bad ? "bad" : "ok");
    } catch (e) {
      $("state").textContent = "edged is not answering";
      $("state").className = "pill bad";
    }
  }

  refresh();
  setInterval(refresh, 2000);
})();
