"""Sensors over MQTT against a real mosquitto broker: QoS 1 messages land in
a data stream with none lost while the broker restarts or edged is killed
with SIGKILL; topic rules act only on what they select; bad rules are
refused with the position of the fault."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import (EDGED, SOURCE_ROOT, Daemon, Mosquitto, MqttClient,  # noqa: E402
                           publish_all)

BASH_RUNTIME = os.path.join(SOURCE_ROOT, "tests/functions/bash/bootstrap")
N = int(os.environ.get("MQTT_MESSAGES", "3000"))


def wait_for(predicate, timeout=30, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def broker_status(d):
    status, _, body = d.get_json("/v1/mqtt")
    assert status == 200, body
    return body["brokers"][0]


def payloads(d, stream):
    return [r["Data"] for r in d.stream_records(stream)]


class NoLossTest(unittest.TestCase):
    """Every QoS 1 message acknowledged to the publisher ends up in the
    stream, whatever happens to the broker or to edged in between."""

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="edged-mqtt-")
        self.broker = Mosquitto(self.workdir).start()
        self.config = f"""
streams:
  - name: telemetry
    shards: 2
mqtt:
  brokers:
    - name: site
      host: 127.0.0.1
      port: {self.broker.port}
      client_id: edged-under-test
      reconnect_max: 2s
  subscriptions:
    - broker: site
      topic: plant/+/telemetry
      stream: telemetry
      partition_key: ${{topic(2)}}
      qos: 1
"""
        self.daemon = Daemon(workdir=self.workdir, config=self.config)

    def tearDown(self):
        self.daemon.cleanup()
        self.broker.stop(signal.SIGKILL)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def messages(self, tag):
        return [(f"plant/line-{i % 7}/telemetry", json.dumps({"tag": tag, "n": i}).encode())
                for i in range(N)]

    def check_all_stored(self, messages):
        want = {p for _, p in messages}
        got = wait_for(lambda: (lambda s: s if want <= s else None)(set(payloads(self.daemon,
                                                                                 "telemetry"))),
                       timeout=60, interval=0.5, what="every message in the stream")
        self.assertTrue(want <= got)
        # The partition key is the topic's second level, as configured.
        records = self.daemon.stream_records("telemetry")
        for r in records[:50]:
            n = json.loads(r["Data"])["n"]
            self.assertEqual(r["PartitionKey"], f"line-{n % 7}")
        return records

    def test_broker_restart_mid_stream(self):
        self.daemon.start()
        wait_for(lambda: broker_status(self.daemon)["connected"], what="edged connected")
        messages = self.messages("restart")
        first, rest = messages[:N // 2], messages[N // 2:]
        publish_all(self.broker.port, first)
        # The broker goes down with messages still on their way to edged, and
        # the rest are published while edged is away or reconnecting.
        self.broker.restart()
        publish_all(self.broker.port, rest)
        records = self.check_all_stored(messages)
        status = broker_status(self.daemon)
        self.assertGreaterEqual(status["reconnects"], 1)
        self.assertTrue(status["connected"])
        self.assertGreaterEqual(len(records), N)

    def test_sigkill_mid_stream(self):
        self.daemon.start()
        wait_for(lambda: broker_status(self.daemon)["connected"], what="edged connected")
        messages = self.messages("kill")
        publisher = threading.Thread(target=publish_all, args=(self.broker.port, messages))
        publisher.start()
        # Kill edged while messages are arriving, then start it again; three
        # times, at different points of the flow.
        for kill in range(3):
            before = broker_status(self.daemon)["messages_in"]
            wait_for(lambda: broker_status(self.daemon)["messages_in"] > before + N // 8,
                     timeout=60, interval=0.02, what="messages arriving")
            self.daemon.proc.send_signal(signal.SIGKILL)
            self.daemon.wait_exit()
            self.daemon.start()
        publisher.join(120)
        self.assertFalse(publisher.is_alive())
        self.check_all_stored(messages)

    def test_undeliverable_message_is_dropped_not_retried(self):
        """A message the stream can never take (over its record limit) is
        logged and acknowledged, so that it does not block those after it."""
        self.daemon.cleanup()
        self.daemon = Daemon(workdir=self.workdir, config=self.config.replace(
            "    shards: 2\n", "    shards: 2\n    max_record_bytes: 1KiB\n"))
        self.daemon.start()
        wait_for(lambda: broker_status(self.daemon)["connected"], what="edged connected")
        publish_all(self.broker.port, [("plant/a/telemetry", b"x" * 4096),
                                       ("plant/a/telemetry", b"small")])
        wait_for(lambda: b"small" in payloads(self.daemon, "telemetry"), what="the small one")
        self.assertEqual(broker_status(self.daemon)["dropped"], 1)
        self.assertIn("dropped", self.daemon.log())


class RulesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="edged-mqtt-rules-")
        cls.events = os.path.join(cls.workdir, "events.log")
        cls.broker = Mosquitto(cls.workdir).start()
        cls.daemon = Daemon(workdir=cls.workdir, config=f"""
streams:
  - name: raw
  - name: hot
functions:
  - name: recorder
    bootstrap: {BASH_RUNTIME}
    environment:
      EVENT_LOG: {cls.events}
mqtt:
  brokers:
    - name: site
      host: 127.0.0.1
      port: {cls.broker.port}
  subscriptions:
    - broker: site
      topic: sensors/#
      stream: raw
  rules:
    - name: too-hot
      broker: site
      sql: >-
        SELECT temperature, topic(2) AS device, temperature * 9 / 5 + 32 AS fahrenheit
        FROM 'sensors/+/telemetry'
        WHERE temperature > 30 AND (isUndefined(status) OR NOT (status = 'test'))
      stream: hot
      partition_key: ${{topic(2)}}
      function: recorder
      republish: alerts/${{topic(2)}}
      republish_qos: 1
""").start()
        wait_for(lambda: broker_status(cls.daemon)["connected"], what="edged connected")

    @classmethod
    def tearDownClass(cls):
        cls.daemon.cleanup()
        cls.broker.stop(signal.SIGKILL)
        shutil.rmtree(cls.workdir, ignore_errors=True)

    def test_only_matching_messages_trigger_the_actions(self):
        alerts = MqttClient(self.broker.port, "alert-listener")
        alerts.subscribe("alerts/#", qos=1)
        messages = [
            ("sensors/boiler/telemetry", {"temperature": 35.5, "humidity": 20}),  # match
            ("sensors/fridge/telemetry", {"temperature": 4}),                     # too cold
            ("sensors/boiler/status", {"temperature": 90}),                       # other topic
            ("sensors/lab/telemetry", {"temperature": 40, "status": "test"}),     # WHERE false
            ("sensors/attic/telemetry", {"temperature": "hot"}),                  # a string: undefined
            ("sensors/attic/telemetry", b"not json at all"),                      # no fields
            ("sensors/porch/telemetry", {"temperature": 31}),                     # match
        ]
        publish_all(self.broker.port, [(t, p if isinstance(p, bytes) else json.dumps(p).encode())
                                       for t, p in messages], client_id="rules-publisher")

        # Republished: exactly the two matches, with the selected fields.
        got = {}
        alerts.sock.settimeout(10)
        try:
            while len(got) < 2:
                topic, payload = alerts.receive()
                got[topic] = json.loads(payload)
        except OSError:
            self.fail(f"republished: {got}\n{self.daemon.get_json('/v1/mqtt')[2]}\n"
                      f"{self.daemon.log()[-3000:]}")
        self.assertEqual(got, {
            "alerts/boiler": {"temperature": 35.5, "device": "boiler", "fahrenheit": 95.9},
            "alerts/porch": {"temperature": 31, "device": "porch", "fahrenheit": 87.8},
        })
        alerts.sock.settimeout(1.5)
        with self.assertRaises(OSError):
            alerts.receive()  # nothing else
        alerts.close()

        # The function was invoked with the selected fields, once per match.
        def invocations():
            try:
                with open(self.events) as f:
                    lines = [line for line in f.read().split("\n") if line]
            except FileNotFoundError:
                return None
            return lines if len(lines) >= 2 else None
        lines = wait_for(invocations, what="two invocations")
        time.sleep(1)
        with open(self.events) as f:
            events = [json.loads(line.split(" ", 2)[2]) for line in f.read().split("\n") if line]
        self.assertEqual(sorted(e["device"] for e in events), ["boiler", "porch"])
        self.assertEqual(len(lines), 2)

        # The stream action: the selected document, keyed by device.
        hot = wait_for(lambda: (lambda r: r if len(r) >= 2 else None)(
            self.daemon.stream_records("hot")), what="records in hot")
        self.assertEqual(sorted(r["PartitionKey"] for r in hot), ["boiler", "porch"])
        self.assertEqual(sorted(json.loads(r["Data"])["temperature"] for r in hot), [31, 35.5])
        # The subscription kept every message, byte for byte.
        raw = wait_for(lambda: (lambda r: r if len(r) >= len(messages) else None)(
            payloads(self.daemon, "raw")), what="raw records")
        self.assertIn(b"not json at all", raw)

        status, _, body = self.daemon.get_json("/v1/mqtt")
        rule = body["rules"][0]
        self.assertEqual(rule["matches"], 2)
        self.assertEqual(rule["errors"], 0)
        _, _, metrics = self.daemon.request("GET", "/metrics")
        self.assertIn(b'edged_mqtt_rule_matches_total{rule="too-hot"} 2', metrics)


class InvalidRuleTest(unittest.TestCase):
    def check(self, sql, position, words):
        workdir = tempfile.mkdtemp(prefix="edged-mqtt-bad-")
        try:
            path = os.path.join(workdir, "edged.yaml")
            with open(path, "w") as f:
                f.write("mqtt:\n  brokers:\n    - name: b\n  rules:\n    - name: r\n"
                        f"      broker: b\n      sql: {json.dumps(sql)}\n      republish: out\n")
            r = subprocess.run([EDGED, "--check-config", path], capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(f"mqtt.rules[0] (r): sql: {position}: ", r.stderr)
            for w in words:
                self.assertIn(w, r.stderr)
            # The daemon refuses to start with it too, with the same message.
            r = subprocess.run([EDGED, "--config", path], capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(f"sql: {position}: ", r.stderr)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def test_positions(self):
        self.check("SELECT temperature, FROM 'a/b'", "1:21", ["expected a value", "FROM"])
        self.check("SELECT * FROM sensors/+", "1:15", ["topic filter in quotes"])
        self.check("SELECT * FROM 'a/#/b'", "1:15", ["not a topic filter"])
        self.check("SELECT * FROM 'a' WHERE t >", "1:28", ["expected a value", "the end"])
        self.check("SELECT nosuch(1) FROM 'a'", "1:8", ["unknown function nosuch()"])
        self.check("SELECT a + 1 FROM 'a'", "1:8", ["AS"])
        self.check("SELECT * FROM 'a' WHERE x = 'open", "1:29", ["unterminated string"])
        self.check("SELECT topic(1, 2) FROM 'a'", "1:8", ["topic() takes 0 to 1 arguments"])


if __name__ == "__main__":
    unittest.main()
