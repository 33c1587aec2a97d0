"""The hardware module as a user meets it: `edged hw probe` and /v1/hw tell
what this machine really has; GPIO edges (replayed from a gpiomon
recording, this kernel having no GPIO chip or gpio-sim) become records with
their own timestamps and debounce; outputs are set through the API and from
a function; systemd hears READY, watchdog pings and STOPPING."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import EDGECTL, EDGED, SOURCE_ROOT, Daemon, camera_env, wait_for  # noqa: E402

RELAY_RUNTIME = os.path.join(SOURCE_ROOT, "tests/functions/relay/bootstrap")
S = 1_000_000_000

# gpiomon's output for a door contact on line 17 (it bounces as it closes
# and as it opens, and glitches once) and a PIR on line 4 (whose chatter
# within the debounce time is dropped).
RECORDING = """\
event:  RISING EDGE offset: 17 timestamp: [1700000000.500000000]
event: FALLING EDGE offset: 17 timestamp: [1700000000.501000000]
event:  RISING EDGE offset: 17 timestamp: [1700000000.503000000]
event: FALLING EDGE offset: 17 timestamp: [1700000000.504000000]
event:  RISING EDGE offset: 17 timestamp: [1700000000.506000000]
event:  RISING EDGE offset: 4 timestamp: [1700000001.000000000]
event: FALLING EDGE offset: 4 timestamp: [1700000001.050000000]
event:  RISING EDGE offset: 4 timestamp: [1700000001.100000000]
event: FALLING EDGE offset: 17 timestamp: [1700000002.000000000]
event:  RISING EDGE offset: 17 timestamp: [1700000002.002000000]
event: FALLING EDGE offset: 17 timestamp: [1700000002.003000000]
event:  RISING EDGE offset: 4 timestamp: [1700000002.500000000]
event:  RISING EDGE offset: 17 timestamp: [1700000003.000000000]
event: FALLING EDGE offset: 17 timestamp: [1700000003.005000000]
"""


def meminfo_total():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


class ProbeTest(unittest.TestCase):
    def test_probe_reports_this_machine(self):
        # GStreamer's plugins are loaded: camera_env lets LeakSanitizer
        # match their one-time allocations to tests/lsan.supp.
        env = dict(os.environ, **camera_env())
        out = subprocess.run([EDGED, "hw", "probe", "--json"], capture_output=True, text=True,
                             timeout=60, check=True, env=env).stdout
        probe = json.loads(out)
        board = probe["board"]
        self.assertEqual(board["cpus"], os.cpu_count())
        self.assertEqual(board["memory_bytes"], meminfo_total())
        self.assertEqual(board["kernel"], os.uname().release)
        self.assertEqual(board["arch"], os.uname().machine)
        if cpu_model():
            self.assertEqual(board["cpu_model"], cpu_model())
        codecs = {c["element"]: c for c in probe["codecs"]}
        # x264 really encodes here; nothing missing is called working.
        self.assertTrue(codecs["x264enc"]["works"], codecs["x264enc"])
        self.assertIn("encoded 10 test frames", codecs["x264enc"]["detail"])
        self.assertTrue(codecs["avdec_h264"]["works"], codecs["avdec_h264"])
        for c in probe["codecs"]:
            if not c["present"]:
                self.assertFalse(c["works"], c)
        # No GPU or codec device on this machine: the software profile.
        self.assertEqual(probe["device_files"], [])
        choice = probe["choice"]
        self.assertEqual(choice["profile"], "software")
        self.assertEqual(choice["encoder"], "x264enc")
        self.assertEqual(choice["encoder_threads"], max(0, os.cpu_count() - 1)
                         if os.cpu_count() <= 4 else 0)
        self.assertTrue(any("No hardware H.264 encoder" in r for r in choice["reasons"]))

        text = subprocess.run([EDGED, "hw", "probe"], capture_output=True, text=True,
                              timeout=60, check=True, env=env).stdout
        self.assertRegex(text, r"x264enc +h264 +software +works")
        self.assertRegex(text, r"Profile +software")
        usage = subprocess.run([EDGED, "hw", "frobnicate"], capture_output=True, text=True)
        self.assertEqual(usage.returncode, 2)
        self.assertIn("usage: edged hw probe", usage.stderr)

    def test_api_matches_probe(self):
        d = Daemon(env=camera_env())
        try:
            d.start()
            status, _, hw = d.get_json("/v1/hw")
            self.assertEqual(status, 200)
            self.assertEqual(hw["board"]["cpus"], os.cpu_count())
            self.assertEqual(hw["choice"]["encoder"], "x264enc")
            status, _, st = d.get_json("/v1/status")
            self.assertEqual(st["board"]["cpu_model"], hw["board"]["cpu_model"])
            out = subprocess.run([EDGECTL, "--url", d.url, "hw"], capture_output=True, text=True,
                                 timeout=30, check=True).stdout
            self.assertRegex(out, r"profile +software")
            self.assertRegex(out, r"encoder +x264enc")
        finally:
            d.stop()
            d.cleanup()


class GpioTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="edged-gpio-")
        self.recording = os.path.join(self.dir, "edges.txt")
        with open(self.recording, "w") as f:
            f.write(RECORDING)
        chip = f"replay:{self.recording}"
        self.d = Daemon(config=f"""
gpio:
  inputs:
    - name: door
      chip: {chip}
      line: "17"
      debounce: 20ms
    - name: pir
      chip: {chip}
      line: "4"
      edges: rising
      debounce: 500ms
      stream: motion
  outputs:
    - name: relay
      chip: {chip}
      line: "27"
    - name: missing
      chip: gpiochip-none
      line: "3"
functions:
  - name: relay-fn
    bootstrap: {RELAY_RUNTIME}
""")
        self.addCleanup(self.d.cleanup)

    def out_lines(self):
        with open(self.recording + ".out") as f:
            return [line.split() for line in f.read().splitlines()]

    def test_edges_become_records(self):
        started = time.time_ns()
        self.d.start()
        # The recording lasts 2.5 s from its first edge; its glitch ends
        # at 2.505 s. Wait past it, then read what was recorded.
        time.sleep(max(0, 3.3 - (time.time_ns() - started) / S))
        door = [json.loads(r["Data"]) for r in self.d.stream_records("gpio")
                if json.loads(r["Data"]).get("sensor") == "door"]
        pir = [json.loads(r["Data"]) for r in self.d.stream_records("motion")]
        # One close and one open: the bounces settle, the glitch is dropped.
        self.assertEqual([(r["value"], r["edge"]) for r in door], [(1, "rising"), (0, "falling")],
                         door)
        # Stamped with the first edge of each change, to the nanosecond.
        self.assertEqual(door[1]["timestamp_ns"] - door[0]["timestamp_ns"], int(1.5 * S))
        self.assertLess(abs(door[0]["timestamp_ns"] - started), 3 * S)
        self.assertEqual(door[0]["line"], 17)
        self.assertTrue(door[0]["timestamp"].endswith("Z"))
        # The PIR: two pulses 1.5 s apart, the chatter 100 ms after the
        # first dropped; partition key and stream as configured.
        self.assertEqual([r["value"] for r in pir], [1, 1], pir)
        self.assertEqual(pir[1]["timestamp_ns"] - pir[0]["timestamp_ns"], int(1.5 * S))
        status, _, line = self.d.get_json("/v1/gpio/door")
        self.assertEqual((status, line["value"], line["events"]), (200, 0, 2))
        status, _, line = self.d.get_json("/v1/gpio/pir")
        self.assertEqual((line["value"], line["events"], line["stream"]), (1, 2, "motion"))

    def put(self, name, body):
        status, _, data = self.d.request("PUT", f"/v1/gpio/{name}", body=json.dumps(body),
                                         headers={"Content-Type": "application/json"})
        return status, json.loads(data)

    def test_outputs_set_through_the_api_and_functions(self):
        self.d.start()
        self.assertEqual(self.out_lines()[-1][1:], ["27", "0"])  # the initial level
        status, line = self.put("relay", {"value": 1})
        self.assertEqual((status, line["value"]), (200, 1), line)
        self.assertEqual(self.out_lines()[-1][1:], ["27", "1"])

        # A pulse: on, and back off by itself 300 ms later.
        self.put("relay", {"value": 0})
        before = len(self.out_lines())
        status, line = self.put("relay", {"value": 1, "pulse_ms": 300})
        self.assertEqual(status, 200)
        wait_for(lambda: len(self.out_lines()) == before + 2, timeout=3, what="pulse end")
        on, off = self.out_lines()[-2:]
        self.assertEqual((on[2], off[2]), ("1", "0"))
        self.assertGreaterEqual(int(off[0]) - int(on[0]), 290_000_000)
        self.assertEqual(self.d.get_json("/v1/gpio/relay")[2]["value"], 0)

        # From a function, through the same API.
        status, _, body = self.d.request(
            "POST", "/2015-03-31/functions/relay-fn/invocations",
            body=json.dumps({"line": "relay", "value": 1}), timeout=30)
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["value"], 1)
        self.assertEqual(self.out_lines()[-1][1:], ["27", "1"])

        changes = [json.loads(r["Data"]) for r in self.d.stream_records("gpio")
                   if json.loads(r["Data"]).get("output") == "relay"]
        self.assertEqual([(c["value"], c["source"]) for c in changes],
                         [(1, "api"), (0, "api"), (1, "api pulse"), (0, "pulse"), (1, "api")])

        # Errors in edged's own shape; nothing changes.
        for name, body, want in [("door", {"value": 1}, (409, "NotAnOutput")),
                                 ("nope", {"value": 1}, (404, "NotFound")),
                                 ("relay", {"value": 2}, (400, "InvalidArgument")),
                                 ("relay", {"value": "1"}, (400, "InvalidArgument")),
                                 ("relay", {"value": 1, "pulse_ms": 0}, (400, "InvalidArgument")),
                                 ("missing", {"value": 1}, (503, "LineUnavailable"))]:
            status, answer = self.put(name, body)
            self.assertEqual((status, answer["error"]["code"]), want, answer)
        self.assertEqual(self.out_lines()[-1][1:], ["27", "1"])
        # A line that cannot be requested shows why, and edged runs on.
        status, _, lines = self.d.get_json("/v1/gpio")
        missing = [line for line in lines["lines"] if line["name"] == "missing"][0]
        self.assertIn("gpiochip-none", missing["error"])
        self.assertNotIn("value", missing)

        # edgectl, as a user at the shell.
        ctl = [EDGECTL, "--url", self.d.url, "gpio"]
        out = subprocess.run(ctl + ["set", "relay", "0"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
        self.assertEqual(out.strip(), "relay: 0")
        self.assertEqual(self.out_lines()[-1][1:], ["27", "0"])
        out = subprocess.run(ctl, capture_output=True, text=True, timeout=30, check=True).stdout
        self.assertRegex(out, r"relay +output .* 27 +0 ")
        self.assertRegex(out, r"missing +output .*error: .*gpiochip-none")
        bad = subprocess.run(ctl + ["set", "door", "1"], capture_output=True, text=True, timeout=30)
        self.assertEqual(bad.returncode, 1)
        self.assertIn("door is an input line", bad.stderr)

    def test_config_errors(self):
        path = os.path.join(self.dir, "bad.yaml")
        for text, message in [
                ("gpio:\n  inputs:\n    - name: a\n      line: '1'\n  outputs:\n"
                 "    - name: a\n      line: '2'\n", "taken by another GPIO line"),
                ("gpio:\n  inputs:\n    - name: 'a b'\n      line: '1'\n", "name \"a b\""),
                ("gpio:\n  inputs:\n    - name: a\n      line: '1'\n      edges: up\n", "edges"),
                ("gpio:\n  outputs:\n    - name: a\n      line: '1'\n      initial: 2\n",
                 "initial")]:
            with open(path, "w") as f:
                f.write(text)
            r = subprocess.run([EDGED, "--check-config", path], capture_output=True, text=True)
            self.assertEqual(r.returncode, 2, text)
            self.assertIn(message, r.stderr)


class SystemdNotifyTest(unittest.TestCase):
    """The sd_notify protocol as systemd speaks it (Type=notify and
    WatchdogSec= in docs/edged.service)."""

    def test_ready_watchdog_stopping(self):
        workdir = tempfile.mkdtemp(prefix="edged-notify-")
        path = os.path.join(workdir, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(0.2)
        self.addCleanup(sock.close)
        d = Daemon(workdir=workdir, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
        self.addCleanup(d.cleanup)
        d.start(wait=False)
        messages = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sum(m == "WATCHDOG=1" for m in messages) < 5:
            try:
                messages.append(sock.recv(4096).decode())
            except socket.timeout:
                pass
        ready = [m for m in messages if m.startswith("READY=1")]
        self.assertEqual(len(ready), 1, messages)
        self.assertIn(f"STATUS=serving on http://127.0.0.1:{d.port}", ready[0])
        self.assertLess(messages.index(ready[0]), messages.index("WATCHDOG=1"))
        self.assertGreaterEqual(messages.count("WATCHDOG=1"), 5)
        d.stop()
        rest = []
        try:
            while True:
                rest.append(sock.recv(4096).decode())
        except socket.timeout:
            pass
        self.assertIn("STOPPING=1", rest)
        self.assertEqual(d.proc.returncode, 0)

        # WATCHDOG_PID naming another process: the pings are not ours to send.
        d2 = Daemon(workdir=workdir, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000",
                                          "WATCHDOG_PID": "1"})
        self.addCleanup(d2.cleanup)
        d2.start()
        time.sleep(0.6)
        got = []
        try:
            while True:
                got.append(sock.recv(4096).decode())
        except socket.timeout:
            pass
        self.assertTrue(any(m.startswith("READY=1") for m in got), got)
        self.assertNotIn("WATCHDOG=1", got)
        d2.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
