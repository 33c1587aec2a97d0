#!/usr/bin/env python3
"""Analytics throughput: sensor readings through a windowed GROUP BY (10 s
tumbling windows; per sensor count, mean, min, max, 90th percentile), side
by side with what a user would write without edged: a Python consumer that
reads the same stream with GetRecords and aggregates the same windows in
dictionaries.

    python3 bench/analytics/run.py [BUILD_DIR] [ROUNDS] [RECORDS]

Per round, alternating the two, with RECORDS readings of 50 sensors already
in a 2-shard data stream:

- edged: an analytics application is started from TRIM_HORIZON and timed
  until it has taken every record and every window but the last is
  written to its output stream; edged's CPU (user + system) over that time;
- the script: GetRecords over every shard (10,000 a call) and the same
  windows computed in Python, timed the same way, against the same edged.

Both give the same answer: the script's windows are compared with edged's
results once, and the benchmark stops if they differ. Reports medians and
the ratio of records per second.
"""

import base64
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from procstat import cpu_seconds, kinesis, start_edged, stop_all  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
RECORDS = int(sys.argv[3]) if len(sys.argv) > 3 else 200000
T0 = 1_800_000_000_000
SENSORS = 50
STEP_MS = 20  # 50 readings a second per sensor
STREAMS = "streams:\n  - name: readings\n    shards: 2\n    durability: none\n  - name: out\n"
APP = """analytics:
  - name: bench
    stream: readings
    output: out
    window: tumbling
    size: 10s
    time: data->>'ts'
    sql: "SELECT data->>'sensor' AS sensor, count(*) AS n, avg(data->>'v') AS mean,
      min(data->>'v') AS low, max(data->>'v') AS high, percentile(data->>'v', 90) AS p90
      FROM records GROUP BY 1"
"""


def reading(i):
    return {"sensor": f"s{i % SENSORS}", "ts": T0 + (i // SENSORS) * STEP_MS,
            "v": round(20 + ((i * 7919) % 1000) / 100, 2)}


def edged(work, config):
    return start_edged(BUILD, work, config)


def load(url):
    for start in range(0, RECORDS, 500):
        batch = [{"PartitionKey": r["sensor"], "Data": base64.b64encode(
            json.dumps(r).encode()).decode()}
                 for r in map(reading, range(start, min(RECORDS, start + 500)))]
        out = kinesis(url, "PutRecords", {"StreamName": "readings", "Records": batch})
        assert out["FailedRecordCount"] == 0, out


def windows_expected():
    last = reading(RECORDS - 1)["ts"] // 10000
    return last - T0 // 10000  # every window but the one holding the last reading


def run_edged(work):
    proc, url = edged(work, STREAMS)
    load(url)
    stop_all([proc])
    start = time.monotonic()
    proc, url = edged(work, STREAMS + APP)
    want = windows_expected()
    while True:
        with urllib.request.urlopen(f"{url}/v1/analytics/bench") as r:
            st = json.load(r)
        if st["records"] >= RECORDS and st["windows"] >= want and st["pending_results"] == 0:
            break
        time.sleep(0.02)
    elapsed = time.monotonic() - start
    cpu = cpu_seconds(proc.pid)  # since it started: its start-up is in the time too
    return proc, url, RECORDS / elapsed, cpu / RECORDS * 1e6


def read_all(url, stream):
    shards = kinesis(url, "ListShards", {"StreamName": stream})["Shards"]
    for shard in shards:
        it = kinesis(url, "GetShardIterator", {"StreamName": stream, "ShardId": shard["ShardId"],
                                               "ShardIteratorType": "TRIM_HORIZON"})
        iterator = it["ShardIterator"]
        while iterator:
            page = kinesis(url, "GetRecords", {"ShardIterator": iterator, "Limit": 10000})
            yield from page["Records"]
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")


def p90(values):
    v = sorted(values)
    rank = 0.9 * (len(v) - 1)
    lo, hi = int(rank), min(int(rank) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (rank - lo)


def run_script(url):
    """What a user writes: read, group by window and sensor, aggregate."""
    start = time.monotonic()
    groups = {}
    latest = None
    for r in read_all(url, "readings"):
        doc = json.loads(base64.b64decode(r["Data"]))
        window = doc["ts"] // 10000 * 10000
        groups.setdefault((window, doc["sensor"]), []).append(doc["v"])
        latest = doc["ts"] if latest is None else max(latest, doc["ts"])
    closed = latest // 10000 * 10000
    out = {}
    for (window, sensor), vs in groups.items():
        if window < closed:  # the window holding the latest reading is still open
            out[(window, sensor)] = (len(vs), sum(vs) / len(vs), min(vs), max(vs), p90(vs))
    return RECORDS / (time.monotonic() - start), out


def same_answer(url, script):
    got = {}
    for r in read_all(url, "out"):
        doc = json.loads(base64.b64decode(r["Data"]))
        import datetime
        start = datetime.datetime.strptime(doc["window_start"], "%Y-%m-%dT%H:%M:%S.%fZ")
        ms = int(start.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)
        got[(ms, doc["sensor"])] = (doc["n"], doc["mean"], doc["low"], doc["high"], doc["p90"])
    assert got.keys() == script.keys(), (len(got), len(script))
    for k, v in script.items():
        assert got[k][0] == v[0] and all(abs(a - b) < 1e-9 for a, b in zip(got[k][1:], v[1:])), \
            (k, got[k], v)


def main():
    rows = {"edged": [], "cpu": [], "script": []}
    checked = False
    for r in range(ROUNDS):
        with tempfile.TemporaryDirectory(prefix="edged-bench-") as work:
            proc, url, rate, cpu = run_edged(work)
            rows["edged"].append(rate)
            rows["cpu"].append(cpu)
            rate, answer = run_script(url)
            rows["script"].append(rate)
            if not checked:
                same_answer(url, answer)
                checked = True
            stop_all([proc])
            shutil.rmtree(os.path.join(work, "data"), ignore_errors=True)
        print(f"round {r + 1}: edged {rows['edged'][-1]:,.0f} records/s "
              f"({rows['cpu'][-1]:.2f} us CPU/record), "
              f"Python consumer {rows['script'][-1]:,.0f} records/s", flush=True)
    e, s = statistics.median(rows["edged"]), statistics.median(rows["script"])
    print(f"\n{RECORDS} readings of {SENSORS} sensors, 10 s tumbling windows, "
          f"medians of {ROUNDS} rounds (same answers checked):")
    print(f"| edged analytics application | {e:,.0f} records/s | "
          f"{statistics.median(rows['cpu']):.2f} us of edged CPU per record |")
    print(f"| Python consumer (GetRecords + dicts) | {s:,.0f} records/s | |")
    print(f"| ratio | {e / s:.2f}x | |")


if __name__ == "__main__":
    main()
