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
from edged_harness import (EDGECTL, EDGED, SOURCE_ROOT, Daemon, Mosquitto, MqttClient,  # noqa: E402
                           WebSocket, free_port, make_certificate, mount_tmpfs, publish_all, run,
                           wait_for)

BASH_RUNTIME = os.path.join(SOURCE_ROOT, "tests/functions/bash/bootstrap")
N = int(os.environ.get("MQTT_MESSAGES", "3000"))



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
        # Paced so that the flow outlasts three kills and restarts.
        acked = []
        publisher = threading.Thread(target=publish_all, args=(self.broker.port, messages),
                                     kwargs={"rate": N / 8, "progress": acked})
        publisher.start()
        # Kill edged while messages are arriving, then start it again; three
        # times, at a quarter, half and three quarters of the flow.
        for kill in range(1, 4):
            before = broker_status(self.daemon)["messages_in"]
            wait_for(lambda: len(acked) >= kill * N // 4, timeout=60, interval=0.02,
                     what="the publisher's progress")
            self.assertGreater(broker_status(self.daemon)["messages_in"], before,
                               "edged received nothing between kills")
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


class FullDiskTest(unittest.TestCase):
    """A full disk, by fault injection: messages that cannot be stored are
    not acknowledged; edged reconnects, the broker sends them again, and
    once space is freed every one of them is stored."""

    def setUp(self):
        self.mnt = mount_tmpfs(self, "24m", "edged-mqtt-tmpfs-")
        self.workdir = tempfile.mkdtemp(prefix="edged-mqtt-full-")
        self.broker = Mosquitto(self.workdir).start()

    def tearDown(self):
        self.broker.stop(signal.SIGKILL)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def test_full_disk_holds_acknowledgements_until_space_returns(self):
        d = Daemon(workdir=self.workdir, data_dir=os.path.join(self.mnt, "data"), config=f"""
storage:
  min_free_bytes: 0
streams:
  - name: telemetry
  - name: filler
mqtt:
  brokers:
    - name: site
      host: 127.0.0.1
      port: {self.broker.port}
      reconnect_max: 2s
  subscriptions:
    - broker: site
      topic: plant/#
      stream: telemetry
""").start()
        try:
            wait_for(lambda: broker_status(d)["connected"], what="edged connected")
            # Fill the disk through the Kinesis API until puts are refused,
            # with smaller records at the end so that not even a small one fits.
            for size in (60000, 4000, 200, 10):
                blob = __import__("base64").b64encode(os.urandom(size)).decode()
                for i in range(2000):
                    status, out = d.kinesis("PutRecords", {"StreamName": "filler", "Records": [
                        {"PartitionKey": f"k{size}-{i}-{j}", "Data": blob} for j in range(10)]})
                    self.assertEqual(status, 200, out)
                    if out["FailedRecordCount"] == 10:
                        break
                else:
                    self.fail("the disk never filled")

            messages = [(f"plant/line-{i % 3}", f"reading {i}".encode()) for i in range(200)]
            publish_all(self.broker.port, messages, client_id="full-disk-publisher")
            status = wait_for(lambda: (lambda b: b if b["last_error"] else None)(broker_status(d)),
                              what="the refusal")
            self.assertIn("could not be stored", status["last_error"])
            self.assertIn("the broker will send it again", d.log())
            time.sleep(2)
            stored = set(payloads(d, "telemetry"))
            self.assertLess(len(stored), len(messages), "the disk was not full after all")

            # Space comes back: the broker sends what was never acknowledged.
            status, out = d.kinesis("DeleteStream", {"StreamName": "filler"})
            self.assertEqual(status, 200, out)
            want = {p for _, p in messages}
            wait_for(lambda: want <= set(payloads(d, "telemetry")), timeout=60, interval=0.5,
                     what="every message stored")
            self.assertEqual(d.request("GET", "/healthz")[0], 200)
        finally:
            self.assertEqual(d.stop(), 0)
            d.cleanup()


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

        # The topic and the message's flags are kept beside each record (the
        # partition key is the default, the whole topic, here); the rule's
        # records say which rule made them.
        def attributes(stream, n):
            ws = WebSocket(self.daemon.port, f"/v1/streams/{stream}/subscribe?position=TRIM_HORIZON")
            try:
                return [ws.recv_json() for _ in range(n)]
            finally:
                ws.close()
        for record in attributes("raw", len(messages)):
            self.assertEqual(record["attributes"],
                             {"topic": record["partitionKey"], "qos": 1, "retain": False})
        for record in attributes("hot", 2):
            self.assertEqual(record["attributes"]["rule"], "too-hot")
            self.assertEqual(record["attributes"]["topic"],
                             f"sensors/{record['partitionKey']}/telemetry")

        status, _, body = self.daemon.get_json("/v1/mqtt")
        rule = body["rules"][0]
        self.assertEqual(rule["matches"], 2)
        self.assertEqual(rule["errors"], 0)
        _, _, metrics = self.daemon.request("GET", "/metrics")
        self.assertIn(b'edged_mqtt_rule_matches_total{rule="too-hot"} 2', metrics)


class ConnectionsTest(unittest.TestCase):
    """TLS with a client certificate and a password on one listener of a
    real broker; stream records published out; Home Assistant discovery."""

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="edged-mqtt-conn-")
        os.chmod(cls.workdir, 0o755)
        cls.cert, cls.key = make_certificate(cls.workdir)
        os.chmod(cls.key, 0o644)  # mosquitto reads it as its own user
        cls.passwords = os.path.join(cls.workdir, "passwords")
        r = run(["mosquitto_passwd", "-c", "-b", cls.passwords, "edge", "s3cret"])
        assert r.returncode == 0, r.stderr
        os.chmod(cls.passwords, 0o644)
        cls.tls_port = free_port()
        cls.broker = Mosquitto(cls.workdir, extra=f"""per_listener_settings true
listener {cls.tls_port} 127.0.0.1
allow_anonymous false
password_file {cls.passwords}
cafile {cls.cert}
certfile {cls.cert}
keyfile {cls.key}
require_certificate true
""")
        # per_listener_settings applies to the plain listener too.
        with open(cls.broker.conf) as f:
            conf = f.read()
        conf = conf.replace("allow_anonymous true\n", "", 1)
        conf = conf.replace(f"listener {cls.broker.port} 127.0.0.1\n",
                            f"listener {cls.broker.port} 127.0.0.1\nallow_anonymous true\n", 1)
        conf = "per_listener_settings true\n" + conf.replace("per_listener_settings true\n", "")
        with open(cls.broker.conf, "w") as f:
            f.write(conf)
        cls.broker.start()
        tls = f"""      host: 127.0.0.1
      port: {cls.tls_port}
      tls_ca_file: {cls.cert}"""
        cls.daemon = Daemon(workdir=cls.workdir, config=f"""
streams:
  - name: secure
  - name: events
mqtt:
  brokers:
    - name: good
{tls}
      tls_cert_file: {cls.cert}
      tls_key_file: {cls.key}
      username: edge
      password: s3cret
    - name: wrong-password
{tls}
      tls_cert_file: {cls.cert}
      tls_key_file: {cls.key}
      username: edge
      password: guess
    - name: no-certificate
{tls}
      username: edge
      password: s3cret
    - name: plain
      host: 127.0.0.1
      port: {cls.broker.port}
  subscriptions:
    - broker: good
      topic: secure/#
      stream: secure
  publish:
    - stream: events
      broker: plain
      topic: events/${{camera}}/${{kind}}
      qos: 1
  home_assistant:
    discovery: true
""").start()
        wait_for(lambda: cls.status()["good"]["connected"], what="the TLS broker connected")

    @classmethod
    def status(cls):
        _, _, body = cls.daemon.get_json("/v1/mqtt")
        return {b["name"]: b for b in body["brokers"]}

    @classmethod
    def tearDownClass(cls):
        cls.daemon.cleanup()
        cls.broker.stop(signal.SIGKILL)
        shutil.rmtree(cls.workdir, ignore_errors=True)

    def test_tls_with_client_certificate_and_password(self):
        publish_all(self.broker.port, [("secure/door", b"opened")], client_id="plain-publisher")
        wait_for(lambda: b"opened" in payloads(self.daemon, "secure"), what="the message")
        good = self.status()["good"]
        self.assertTrue(good["tls"])
        self.assertIsNone(good["last_error"])
        # A wrong password is refused by the broker, and said so.
        bad = wait_for(lambda: (lambda b: b if b["last_error"] else None)(
            self.status()["wrong-password"]), what="the refusal")
        self.assertFalse(bad["connected"])
        self.assertIn("not authorised", bad["last_error"])
        # Without a client certificate the TLS handshake fails.
        nocert = wait_for(lambda: (lambda b: b if b["last_error"] else None)(
            self.status()["no-certificate"]), what="the handshake failure")
        self.assertFalse(nocert["connected"])

    def test_stream_records_published_out(self):
        listener = MqttClient(self.broker.port, "event-listener")
        listener.subscribe("events/#", qos=1)
        wait_for(lambda: self.status()["plain"]["connected"], what="plain broker connected")
        event = {"camera": "door", "kind": "motion", "score": 0.92}
        status, out = self.daemon.kinesis("PutRecord", {
            "StreamName": "events", "PartitionKey": "door",
            "Data": __import__("base64").b64encode(json.dumps(event).encode()).decode()})
        self.assertEqual(status, 200, out)
        listener.sock.settimeout(15)
        topic, payload = listener.receive()
        self.assertEqual(topic, "events/door/motion")
        self.assertEqual(json.loads(payload), event)
        listener.close()
        wait_for(lambda: self.daemon.get_json("/v1/mqtt")[2]["publish"][0]["published"] == 1,
                 what="the publication counted")

    def test_edgectl_status_and_publish(self):
        edgectl = [EDGECTL, "--url", self.daemon.url, "mqtt"]
        wait_for(lambda: self.status()["plain"]["connected"], what="plain broker connected")
        r = run(edgectl)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = {}
        for line in r.stdout.splitlines():  # the broker table comes first
            if line.strip():
                lines.setdefault(line.split()[0], line)
        self.assertIn("connected", lines["good"])
        self.assertIn(f"127.0.0.1:{self.tls_port} tls", lines["good"])
        self.assertIn("disconnected", lines["wrong-password"])
        self.assertIn("not authorised", lines["wrong-password"])
        self.assertIn("secure/#", r.stdout)

        listener = MqttClient(self.broker.port, "cli-listener")
        listener.subscribe("cli/#", qos=1)
        r = run(edgectl + ["publish", "cli/hello", "from the command line", "plain"])
        self.assertEqual(r.returncode, 0, r.stderr)
        listener.sock.settimeout(10)
        self.assertEqual(listener.receive(), ("cli/hello", b"from the command line"))
        listener.close()
        # Errors in edged's own shape, and a failing exit status.
        r = run(edgectl + ["publish", "cli/#", "x", "plain"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("400", r.stderr)
        r = run(edgectl + ["publish", "cli/x", "x", "wrong-password"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("503", r.stderr)
        r = run(edgectl + ["publish", "cli/x", "x", "nosuch"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("404", r.stderr)

    def test_home_assistant_discovery(self):
        publish_all(self.broker.port, [("secure/boiler", b'{"temperature": 61.5, "state": "on"}')],
                    client_id="ha-publisher")
        listener = MqttClient(self.broker.port, "ha-listener")
        listener.subscribe("homeassistant/#", qos=1)
        listener.sock.settimeout(15)
        topic, payload = listener.receive()  # retained: there already
        listener.close()
        self.assertEqual(topic, "homeassistant/sensor/edged_secure_boiler_temperature/config")
        config = json.loads(payload)
        self.assertEqual(config["state_topic"], "secure/boiler")
        self.assertEqual(config["device_class"], "temperature")
        self.assertEqual(config["unit_of_measurement"], "°C")
        self.assertEqual(config["value_template"], '{{ value_json["temperature"] }}')
        self.assertEqual(config["unique_id"], "edged_secure_boiler_temperature")


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
