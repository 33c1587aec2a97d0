"""Schedules: EventBridge rate() and cron() expressions invoke functions on
time, with EventBridge's Scheduled Event (or a fixed input), as asynchronous
invocations."""

import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import Daemon  # noqa: E402

ROOT = os.environ.get("EDGED_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
BASH_RUNTIME = os.path.join(ROOT, "tests", "functions", "bash", "bootstrap")


def entries(path):
    """(request id, start time, event) per invocation the runtime logged."""
    try:
        with open(path) as f:
            # Whole lines only: a long one may be mid-write.
            lines = [line.rstrip("\n") for line in f if line.endswith("\n") and line.strip()]
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        request_id, started, event = line.split(" ", 2)
        out.append((request_id, float(started), json.loads(event)))
    return out


class Schedules(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon()
        cls.logs = os.path.join(cls.d.workdir, "logs")
        os.makedirs(cls.logs)
        cls.d = Daemon(workdir=cls.d.workdir, config=f"""functions:
  - name: ticker
    bootstrap: {BASH_RUNTIME}
    environment:
      EVENT_LOG: {cls.logs}/ticker.log
  - name: minutely
    bootstrap: {BASH_RUNTIME}
    environment:
      EVENT_LOG: {cls.logs}/minutely.log
  - name: fixed
    bootstrap: {BASH_RUNTIME}
    environment:
      EVENT_LOG: {cls.logs}/fixed.log
schedules:
  - name: every-second
    function: ticker
    expression: rate(1 second)
  - name: on-the-minute
    function: minutely
    expression: cron(* * * * ? *)
  - name: with-input
    function: fixed
    expression: rate(2 seconds)
    input: '{{"from": "schedule", "n": 1}}'
  - name: far-away
    function: fixed
    expression: cron(0 0 1 1 ? 2199)
""").start()
        cls.started = time.time()

    @classmethod
    def tearDownClass(cls):
        assert cls.d.stop() == 0, cls.d.log()[-3000:]
        cls.d.cleanup()

    def wait_entries(self, name, count, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = entries(os.path.join(self.logs, f"{name}.log"))
            if len(got) >= count:
                return got
            time.sleep(0.05)
        self.fail(f"{name}: {len(got)} invocations, expected {count}:\n{self.d.log()[-2000:]}")

    def test_rate_fires_every_period(self):
        got = self.wait_entries("ticker", 4, timeout=10)
        # One firing per second, none skipped or doubled...
        times = [time.mktime(time.strptime(e[2]["time"], "%Y-%m-%dT%H:%M:%SZ")) for e in got[:4]]
        self.assertEqual([b - a for a, b in zip(times, times[1:])], [1, 1, 1])
        # ...and each run about a second after the last.
        starts = [e[1] for e in got[:4]]
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        for gap in gaps:
            self.assertAlmostEqual(gap, 1.0, delta=0.5, msg=gaps)
        event = got[0][2]
        self.assertEqual(event["detail-type"], "Scheduled Event")
        self.assertEqual(event["source"], "aws.events")
        self.assertEqual(event["version"], "0")
        self.assertEqual(event["account"], "000000000000")
        self.assertEqual(event["region"], "us-east-1")
        self.assertEqual(event["resources"],
                         ["arn:aws:events:us-east-1:000000000000:rule/every-second"])
        self.assertEqual(event["detail"], {})
        self.assertRegex(event["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        # Each firing is its own event.
        self.assertEqual(len({e[2]["id"] for e in got}), len(got))

    def test_input_replaces_the_event(self):
        got = self.wait_entries("fixed", 1, timeout=10)
        self.assertEqual(got[0][2], {"from": "schedule", "n": 1})

    def test_schedules_logged_with_next_time(self):
        log = self.d.log()
        self.assertIn('schedule "far-away": cron(0 0 1 1 ? 2199) -> function "fixed", '
                      'next at 2199-01-01T00:00:00Z', log)

    @unittest.skipIf(os.environ.get("EDGED_TESTS_SKIP_SLOW"),
                     "waits for a minute boundary: run once, not again under the sanitizers")
    def test_z_cron_fires_on_the_minute(self):
        # The first whole minute after the start: within 61 s, run last so
        # that the wait overlaps the other tests.
        got = self.wait_entries("minutely", 1, timeout=75)
        request_id, started, event = got[0]
        boundary = (int(self.started) // 60 + 1) * 60
        self.assertEqual(event["time"], time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(boundary)))
        # On time: the handler (its environment started cold) runs within a
        # second of the minute.
        self.assertGreaterEqual(started, boundary)
        self.assertLess(started - boundary, 1.0, started - boundary)


class BadSchedules(unittest.TestCase):
    def test_refused_at_start(self):
        for expression, message in (("rate(1 minutes)", "singular for 1"),
                                    ("cron(0 0 30 2 ? *)", "never fires"),
                                    ("cron(* * * * * *)", "must be ?")):
            d = Daemon(config=f"""functions:
  - name: f
    bootstrap: {BASH_RUNTIME}
schedules:
  - name: s
    function: f
    expression: {expression}
""")
            try:
                d.start(wait=False)
                self.assertNotEqual(d.wait_exit(15), 0)
                self.assertIn(message, d.log())
            finally:
                d.cleanup()


if __name__ == "__main__":
    unittest.main()
