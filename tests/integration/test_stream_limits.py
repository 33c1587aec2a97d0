"""Per-shard write rates from the configuration: over them, records fail as
Kinesis throttles a shard (ProvisionedThroughputExceededException, one by one
in PutRecords), nothing refused is stored, everything accepted is; and
retention by bytes reaches the stream."""

import base64
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import Daemon  # noqa: E402
from test_stream_crash import kinesis, read_all  # noqa: E402

CONFIG = """streams:
  - name: limited
    shards: 1
    durability: none
    write_records_per_second: 100
    write_bytes_per_second: 64KiB
  - name: tiny
    shards: 1
    durability: none
    write_records_per_second: 1
  - name: sized
    shards: 2
    retention_bytes: 1MiB
"""


def b64(data):
    return base64.b64encode(data).decode()


class StreamLimits(unittest.TestCase):
    def setUp(self):
        self.d = Daemon(config=CONFIG).start()
        self.accepted = []

    def tearDown(self):
        code = self.d.stop()
        self.d.cleanup()
        self.assertEqual(code, 0)

    def put_records(self, records):
        status, out = kinesis(self.d.port, "PutRecords", {"StreamName": "limited", "Records": records})
        self.assertEqual(status, 200, out)
        self.assertEqual(out["FailedRecordCount"], sum(1 for r in out["Records"] if "ErrorCode" in r))
        for sent, got in zip(records, out["Records"]):
            if "ErrorCode" in got:
                self.assertEqual(got["ErrorCode"], "ProvisionedThroughputExceededException")
                self.assertIn("Rate exceeded for shard shardId-000000000000 in stream limited",
                              got["ErrorMessage"])
                self.assertNotIn("SequenceNumber", got)
            else:
                self.accepted.append(sent["Data"])
        return out

    def stored(self):
        got = read_all(self.d.port, "limited", 1)
        return [b64(data) for (_, seq), data in sorted(got.items(), key=lambda kv: int(kv[0][1]))]

    def test_records_per_second(self):
        out = self.put_records([{"Data": b64(b"r%d" % i), "PartitionKey": str(i)} for i in range(300)])
        # A full bucket holds one second: 100 records (one put is admitted at one instant).
        self.assertEqual(300 - out["FailedRecordCount"], 100)
        # The first records got in, the later ones were refused: order is kept.
        self.assertEqual(["ErrorCode" in r for r in out["Records"]], [False] * 100 + [True] * 200)
        # Right after, the bucket holds only what the time since refilled.
        out = self.put_records([{"Data": b64(b"s%d" % i), "PartitionKey": str(i)} for i in range(50)])
        self.assertGreater(out["FailedRecordCount"], 20)

        # PutRecord is refused whole, in Kinesis's error shape (1 record per second here).
        tiny = {"StreamName": "tiny", "Data": b64(b"x"), "PartitionKey": "k"}
        self.assertEqual(kinesis(self.d.port, "PutRecord", tiny)[0], 200)
        status, err = kinesis(self.d.port, "PutRecord", tiny)
        self.assertEqual(status, 400, err)
        self.assertEqual(err["__type"], "ProvisionedThroughputExceededException")
        self.assertIn("Rate exceeded for shard shardId-000000000000 in stream tiny", err["message"])

        # A second later the shard takes records again.
        time.sleep(1.1)
        status, out = kinesis(self.d.port, "PutRecord",
                              {"StreamName": "limited", "Data": b64(b"later"), "PartitionKey": "k"})
        self.assertEqual(status, 200, out)
        self.accepted.append(b64(b"later"))

        # Exactly the accepted records are stored, in order.
        self.assertEqual(self.stored(), self.accepted)

    def test_bytes_per_second(self):
        chunk = b64(os.urandom(30 * 1024))
        out = self.put_records([{"Data": chunk, "PartitionKey": str(i)} for i in range(3)])
        self.assertEqual(["ErrorCode" in r for r in out["Records"]], [False, False, True])

        # A record larger than a second's bytes passes on a full bucket, then
        # the shard is in debt and refuses until it has paid it off.
        time.sleep(1.1)
        big = b64(os.urandom(100 * 1024))
        out = self.put_records([{"Data": big, "PartitionKey": "big"}])
        self.assertEqual(out["FailedRecordCount"], 0)
        out = self.put_records([{"Data": b64(b"small"), "PartitionKey": "s"}])
        self.assertEqual(out["FailedRecordCount"], 1)
        time.sleep(1.8)
        out = self.put_records([{"Data": b64(b"small"), "PartitionKey": "s"}])
        self.assertEqual(out["FailedRecordCount"], 0)

        self.assertEqual(self.stored(), self.accepted)

    def test_limits_hold_after_restart_and_retention_bytes(self):
        _, _, sized = self.d.get_json("/v1/streams/sized")
        self.assertEqual(sized["retentionBytes"], 1024 * 1024)
        self.assertEqual(self.d.stop(), 0)
        self.d.start()
        out = self.put_records([{"Data": b64(b"r"), "PartitionKey": str(i)} for i in range(150)])
        self.assertGreater(out["FailedRecordCount"], 0)
        # Streams created through the API have no limit.
        status, _ = kinesis(self.d.port, "CreateStream", {"StreamName": "free", "ShardCount": 1})
        self.assertEqual(status, 200)
        status, out = kinesis(self.d.port, "PutRecords", {"StreamName": "free", "Records": [
            {"Data": b64(b"r"), "PartitionKey": str(i)} for i in range(500)]})
        self.assertEqual((status, out["FailedRecordCount"]), (200, 0))


if __name__ == "__main__":
    unittest.main(verbosity=2)
