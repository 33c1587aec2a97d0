"""The management view of streams: REST under /v1/streams and edgectl streams."""

import json
import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import EDGECTL, Daemon, run  # noqa: E402
from test_stream_crash import kinesis  # noqa: E402


class StreamsRest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon().start()

    @classmethod
    def tearDownClass(cls):
        code = cls.d.stop()
        cls.d.cleanup()
        assert code == 0, code

    def post(self, body):
        status, _, raw = self.d.request("POST", "/v1/streams", body=json.dumps(body),
                                        headers={"Content-Type": "application/json"})
        return status, json.loads(raw)

    def test_create_get_list_delete(self):
        status, s = self.post({"name": "rest", "shards": 3, "durability": "batch", "batchMs": 20,
                               "retentionHours": 48})
        self.assertEqual(status, 201, s)
        self.assertEqual((s["name"], len(s["shards"]), s["durability"], s["batchMs"], s["retentionHours"]),
                         ("rest", 3, "batch", 20, 48))
        self.assertEqual(s["shards"][2]["hashKeyRange"][1], str(2**128 - 1))
        status, err = self.post({"name": "rest"})
        self.assertEqual(status, 409)
        self.assertEqual(err["error"]["code"], "Conflict")
        for bad in [{"name": "x", "shards": 0}, {"name": "x", "durability": "eventually"},
                    {"name": "bad name"}, {"shards": 2}, {"name": "x", "retentionHours": 1}]:
            status, err = self.post(bad)
            self.assertEqual(status, 400, bad)
            self.assertEqual(err["error"]["code"], "InvalidArgument", bad)

        # Records put through the Kinesis API are counted here.
        status, out = kinesis(self.d.port, "PutRecords", {"StreamName": "rest", "Records": [
            {"Data": "aGk=", "PartitionKey": str(i)} for i in range(30)]})
        self.assertEqual(status, 200, out)
        status, _, body = self.d.get_json("/v1/streams/rest")
        self.assertEqual(sum(s["records"] for s in body["shards"]), 30)
        self.assertEqual(body["records"], 30)
        self.assertGreater(body["bytes"], 30 * 2)
        listed = {s["name"]: s for s in self.d.get_json("/v1/streams")[2]["streams"]}
        self.assertEqual(listed["rest"]["records"], 30)
        self.assertEqual(listed["rest"]["shards"], 3)

        status, _, _ = self.d.request("DELETE", "/v1/streams/rest")
        self.assertEqual(status, 204)
        self.assertEqual(self.d.request("GET", "/v1/streams/rest")[0], 404)
        self.assertEqual(self.d.request("DELETE", "/v1/streams/rest")[0], 404)

    def test_edgectl_streams(self):
        env = dict(os.environ, EDGED_URL=self.d.url)
        r = run([EDGECTL, "streams", "create", "cli", "2"], env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "created stream cli with 2 shards\n")
        r = run([EDGECTL, "streams", "create", "cli"], env=env)
        self.assertEqual(r.returncode, 1)
        self.assertIn("409 stream cli already exists", r.stderr)

        tail = subprocess.Popen([EDGECTL, "streams", "tail", "cli"], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.5)
        status, out = kinesis(self.d.port, "PutRecord", {"StreamName": "cli", "PartitionKey": "barn",
                                                         "Data": "eyJ0IjogMjEuNX0="})
        self.assertEqual(status, 200, out)
        line = tail.stdout.readline()
        self.assertEqual(line, f"{out['ShardId']} {out['SequenceNumber']} barn {{\"t\": 21.5}}\n")
        tail.send_signal(signal.SIGINT)
        self.assertEqual(tail.wait(10), 0)
        tail.stdout.close()
        tail.stderr.close()

        r = run([EDGECTL, "streams", "--from-start", "tail", "nope"], env=env)
        self.assertEqual(r.returncode, 1)
        self.assertIn("stream nope not found", r.stderr)
        r = run([EDGECTL, "streams"], env=env)
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"(?m)^cli +2 +1 +\d+ sync +24 h$")
        r = run([EDGECTL, "streams", "delete", "cli"], env=env)
        self.assertEqual((r.returncode, r.stdout), (0, "deleted stream cli\n"))


class ConfiguredStreams(unittest.TestCase):
    def test_streams_from_the_config_file(self):
        config = ("streams:\n"
                  "  - name: sensors\n    shards: 2\n    durability: batch\n    batch_ms: 10ms\n"
                  "  - name: events\n    retention_hours: 48\n")
        d = Daemon(config=config).start()
        try:
            listed = {s["name"]: s for s in d.get_json("/v1/streams")[2]["streams"]}
            self.assertEqual((listed["sensors"]["shards"], listed["sensors"]["durability"],
                              listed["sensors"]["batchMs"]), (2, "batch", 10))
            self.assertEqual(listed["events"]["retentionHours"], 48)
            status, out = kinesis(d.port, "PutRecord", {"StreamName": "sensors", "PartitionKey": "k",
                                                        "Data": "aGk="})
            self.assertEqual(status, 200, out)
            self.assertEqual(d.stop(), 0)
            # Restarted with another retention: the stream and its record stay,
            # the retention follows the file.
            with open(d.config_path) as f:
                text = f.read()
            with open(d.config_path, "w") as f:
                f.write(text.replace("retention_hours: 48", "retention_hours: 72"))
            d.start()
            listed = {s["name"]: s for s in d.get_json("/v1/streams")[2]["streams"]}
            self.assertEqual(listed["events"]["retentionHours"], 72)
            self.assertEqual(listed["sensors"]["records"], 1)
            self.assertIn("stream events: retention set to 72 hours, as configured", d.log())
        finally:
            d.stop()
            d.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
