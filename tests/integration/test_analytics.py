"""Analytics applications: SQL over tumbling, sliding and session windows of
a data stream, each window's results checked against answers computed here
by hand from the same records; a SIGKILL in the middle of a window; an
injected anomaly scored above the threshold while normal data is not; bad
SQL refused with a caret under the error."""

import base64
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import shutil
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import EDGED, EDGECTL, Daemon, wait_for  # noqa: E402

T0 = 1_800_000_000_000  # a multiple of every window size used here


def iso(ms):
    import datetime
    t = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def put(d, stream, readings):
    for s in range(0, len(readings), 500):
        batch = [{"PartitionKey": r["sensor"], "Data": base64.b64encode(json.dumps(r).encode())
                  .decode()} for r in readings[s:s + 500]]
        status, out = d.kinesis("PutRecords", {"StreamName": stream, "Records": batch},
                                timeout=30)
        assert status == 200 and out["FailedRecordCount"] == 0, out


def results(d, stream="out"):
    return [json.loads(r["Data"]) for r in d.stream_records(stream)]


def app(d, name="agg"):
    code, _, body = d.get_json(f"/v1/analytics/{name}")
    assert code == 200, body
    return body


def percentile(values, p):
    v = sorted(values)
    rank = p / 100 * (len(v) - 1)
    lo, hi = int(rank // 1), int(-(-rank // 1))
    return v[lo] + (v[hi] - v[lo]) * (rank - lo)


SQL = ("SELECT data->>'sensor' AS sensor, count(*) AS n, sum(data->>'v') AS total, "
       "min(data->>'v') AS low, max(data->>'v') AS high, percentile(data->>'v', 90) AS p90, "
       "median(data->>'v') AS mid FROM records GROUP BY sensor ORDER BY sensor")


def expected_rows(readings, start, end):
    """What SQL gives for the readings with start <= ts < end."""
    rows = []
    for sensor in sorted({r["sensor"] for r in readings}):
        vs = [r["v"] for r in readings if r["sensor"] == sensor and start <= r["ts"] < end]
        if vs:
            rows.append({"sensor": sensor, "n": len(vs), "total": sum(vs), "low": min(vs),
                         "high": max(vs), "p90": percentile(vs, 90),
                         "mid": statistics.median(vs), "window_start": iso(start),
                         "window_end": iso(end)})
    return rows


def readings_over(seconds, sensors=("a", "b", "c"), step_ms=700):
    out = []
    for i, t in enumerate(range(0, seconds * 1000, step_ms)):
        for j, s in enumerate(sensors):
            out.append({"sensor": s, "ts": T0 + t + j, "v": (i * 7 + j * 3) % 23})
    return out


class AnalyticsCase(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="edged-analytics-")
        self.addCleanup(shutil.rmtree, self.work, ignore_errors=True)

    def daemon(self, apps):
        d = Daemon(workdir=self.work, config=f"""
streams:
  - name: readings
    shards: 2
  - name: out
analytics:
{apps}""")
        self.addCleanup(d.cleanup)
        return d.start()

    def assertRows(self, got, want):
        self.assertEqual(len(got), len(want), (got, want))
        for g, w in zip(got, want):
            self.assertEqual(set(g), set(w), g)
            for k, v in w.items():
                if isinstance(v, float) or isinstance(g[k], float):
                    self.assertAlmostEqual(g[k], v, places=9, msg=k)
                else:
                    self.assertEqual(g[k], v, k)


class WindowTest(AnalyticsCase):
    def test_tumbling_windows_match_the_hand_computed_answers(self):
        d = self.daemon(f"""  - name: agg
    stream: readings
    output: out
    window: tumbling
    size: 10s
    time: data->>'ts'
    sql: "{SQL}"
""")
        readings = readings_over(30)
        put(d, "readings", readings)
        # Time moves with the records: a reading at 40 s closes 0-10, 10-20, 20-30.
        put(d, "readings", [{"sensor": "z", "ts": T0 + 40_000, "v": 0}])
        wait_for(lambda: app(d)["windows"] == 3 and app(d)["pending_results"] == 0, timeout=20,
                 what="three windows closed")
        want = []
        for w in range(3):
            want += expected_rows(readings, T0 + w * 10_000, T0 + (w + 1) * 10_000)
        self.assertRows(results(d), want)
        st = app(d)
        self.assertEqual((st["records"], st["late_records"], st["invalid_records"]),
                         (len(readings) + 1, 0, 0))
        self.assertEqual(st["open_records"], 1)  # the reading at 40 s, its window still open
        # A record for a closed window is late: counted, not used.
        put(d, "readings", [{"sensor": "a", "ts": T0 + 5_000, "v": 1}])
        wait_for(lambda: app(d)["late_records"] == 1, timeout=10, what="late record counted")
        out = subprocess.run([EDGECTL, "--url", d.url, "analytics"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
        self.assertRegex(out, r"agg +readings +out +tumbling +\S+ +0 +" + str(len(readings) + 1))

    def test_sliding_windows(self):
        d = self.daemon(f"""  - name: agg
    stream: readings
    output: out
    window: sliding
    size: 10s
    slide: 5s
    time: data->>'ts'
    sql: "{SQL}"
""")
        readings = readings_over(20, sensors=("a", "b"))
        put(d, "readings", readings)
        put(d, "readings", [{"sensor": "z", "ts": T0 + 60_000, "v": 0}])
        # Windows holding records: [-5, 5), [0, 10), [5, 15), [10, 20), [15, 25).
        wait_for(lambda: app(d)["windows"] == 5 and app(d)["pending_results"] == 0, timeout=20,
                 what="five sliding windows")
        want = []
        for start in range(-5_000, 20_000, 5_000):
            want += expected_rows(readings, T0 + start, T0 + start + 10_000)
        self.assertRows(results(d), want)

    def test_session_windows_per_key(self):
        d = self.daemon("""  - name: agg
    stream: readings
    output: out
    window: session
    gap: 5s
    time: data->>'ts'
    key: data->>'sensor'
    sql: "SELECT count(*) AS n, sum(data->>'v') AS total, min(ts) AS first, max(ts) AS last FROM records"
""")
        at = [("a", 0, 1), ("a", 1000, 2), ("a", 4000, 3), ("b", 2000, 10), ("a", 12000, 4),
              ("a", 13000, 5), ("b", 30000, 11)]
        put(d, "readings", [{"sensor": s, "ts": T0 + t, "v": v} for s, t, v in at])
        # A reading at 60 s moves time past every session's gap but its own.
        put(d, "readings", [{"sensor": "z", "ts": T0 + 60_000, "v": 0}])
        wait_for(lambda: app(d)["windows"] == 4 and app(d)["pending_results"] == 0, timeout=20,
                 what="four sessions closed")
        got = sorted(results(d), key=lambda r: (r["key"], r["first"]))
        want = [
            {"key": "a", "n": 3, "total": 6, "first": T0, "last": T0 + 4000,
             "window_start": iso(T0), "window_end": iso(T0 + 9000)},
            {"key": "a", "n": 2, "total": 9, "first": T0 + 12000, "last": T0 + 13000,
             "window_start": iso(T0 + 12000), "window_end": iso(T0 + 18000)},
            {"key": "b", "n": 1, "total": 10, "first": T0 + 2000, "last": T0 + 2000,
             "window_start": iso(T0 + 2000), "window_end": iso(T0 + 7000)},
            {"key": "b", "n": 1, "total": 11, "first": T0 + 30000, "last": T0 + 30000,
             "window_start": iso(T0 + 30000), "window_end": iso(T0 + 35000)},
        ]
        self.assertRows(got, want)

    def test_sigkill_in_the_middle_of_a_window_counts_every_record_once(self):
        config = f"""  - name: agg
    stream: readings
    output: out
    window: tumbling
    size: 60s
    time: data->>'ts'
    sql: "{SQL}"
"""
        d = self.daemon(config)
        readings = readings_over(50)
        half = len(readings) // 2
        put(d, "readings", readings[:half])
        wait_for(lambda: app(d)["records"] == half, timeout=20, what="first half taken")
        d.stop(signal.SIGKILL)
        d.start()
        self.assertEqual(app(d)["open_records"], half)  # the open window survived
        put(d, "readings", readings[half:])
        put(d, "readings", [{"sensor": "z", "ts": T0 + 120_000, "v": 0}])
        wait_for(lambda: app(d)["windows"] == 1 and app(d)["pending_results"] == 0, timeout=20,
                 what="the window closed after the restart")
        self.assertRows(results(d), expected_rows(readings, T0, T0 + 60_000))

    def test_arrival_time_windows_close_by_the_clock(self):
        d = self.daemon("""  - name: agg
    stream: readings
    output: out
    window: tumbling
    size: 1s
    sql: "SELECT count(*) AS n FROM records"
""")
        put(d, "readings", [{"sensor": "a", "ts": 0, "v": i} for i in range(10)])
        wait_for(lambda: app(d)["pending_results"] == 0 and app(d)["results"] >= 1, timeout=10,
                 what="a window closed by the clock alone")
        self.assertEqual(sum(r["n"] for r in results(d)), 10)


class AnomalyTest(AnalyticsCase):
    def test_injected_anomaly_scores_above_the_threshold(self):
        d = self.daemon("""  - name: agg
    stream: readings
    output: out
    window: tumbling
    size: 3600s
    time: data->>'ts'
    key: data->>'sensor'
    sql: "SELECT count(*) AS n FROM records"
    anomaly_value: data->>'v'
    anomaly_threshold: "4"
""")
        normal = [{"sensor": s, "ts": T0 + i * 1000, "v": 20 + (i % 10) / 10}
                  for i in range(300) for s in ("a", "b")]
        put(d, "readings", normal)
        spike = {"sensor": "b", "ts": T0 + 400_000, "v": 35.0}
        put(d, "readings", [spike, {"sensor": "a", "ts": T0 + 401_000, "v": 20.5}])
        wait_for(lambda: app(d)["records"] == len(normal) + 2 and app(d)["pending_results"] == 0,
                 timeout=20, what="every record scored")
        anomalies = [r for r in results(d) if r.get("anomaly")]
        self.assertEqual(len(anomalies), 1, anomalies)
        a = anomalies[0]
        self.assertEqual((a["key"], a["value"], a["time"]), ("b", 35.0, iso(spike["ts"])))
        vs = [r["v"] for r in normal if r["sensor"] == "b"]
        z = (35.0 - statistics.mean(vs)) / statistics.stdev(vs)
        self.assertAlmostEqual(a["score"], z, places=3)
        self.assertGreater(a["score"], 4)
        self.assertEqual(app(d)["anomalies"], 1)


class ConfigTest(AnalyticsCase):
    def check(self, app_yaml):
        path = os.path.join(self.work, "bad.yaml")
        with open(path, "w") as f:
            f.write("analytics:\n" + app_yaml)
        return subprocess.run([EDGED, "--check-config", path], capture_output=True, text=True,
                              timeout=30)

    def test_bad_sql_points_at_the_error(self):
        r = self.check("""  - name: agg
    stream: readings
    output: out
    sql: "SELECT data->>'sensor', count(* FROM records"
""")
        self.assertEqual(r.returncode, 2)
        self.assertIn("analytics[0] (agg): sql: near \"FROM\": syntax error", r.stderr)
        lines = r.stderr.splitlines()
        caret = [i for i, line in enumerate(lines) if line.strip() == "^"]
        self.assertTrue(caret, r.stderr)
        sql_line, caret_line = lines[caret[0] - 1], lines[caret[0]]
        self.assertEqual(sql_line[caret_line.index("^"):].split()[0], "FROM")

    def test_only_a_select_and_known_names(self):
        r = self.check("""  - name: agg
    stream: readings
    output: out
    sql: "DELETE FROM log"
""")
        self.assertEqual(r.returncode, 2)
        self.assertIn("must be a SELECT", r.stderr)
        r = self.check("""  - name: agg
    stream: readings
    output: out
    sql: "SELECT nope FROM records"
""")
        self.assertIn("no such column: nope", r.stderr)
        r = self.check("""  - name: agg
    stream: readings
    output: out
    window: sliding
    size: 10s
    slide: 3s
    sql: "SELECT 1 FROM records"
""")
        self.assertIn("slide must divide size", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
