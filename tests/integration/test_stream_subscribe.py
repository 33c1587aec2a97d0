"""WS /v1/streams/{name}/subscribe: records pushed as they land, from a
position, resumable after a reconnect; errors before closing."""

import base64
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import Daemon, WebSocket  # noqa: E402
from test_stream_crash import kinesis  # noqa: E402


class Subscribe(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon().start()
        status, out = kinesis(cls.d.port, "CreateStream", {"StreamName": "live", "ShardCount": 2})
        assert status == 200, out

    @classmethod
    def tearDownClass(cls):
        code = cls.d.stop()
        cls.d.cleanup()
        assert code == 0, code

    def put(self, records):
        status, out = kinesis(self.d.port, "PutRecords", {"StreamName": "live", "Records": [
            {"Data": base64.b64encode(data).decode(), "PartitionKey": key} for key, data in records]})
        self.assertEqual(status, 200, out)
        self.assertEqual(out["FailedRecordCount"], 0)
        return out["Records"]

    def test_history_then_live_then_resume(self):
        first = self.put([(f"k{i}", f"old {i}".encode()) for i in range(10)])
        ws = WebSocket(self.d.port, "/v1/streams/live/subscribe?position=TRIM_HORIZON")
        self.assertEqual(ws.status, 101)
        seen = {}
        for _ in range(10):
            m = ws.recv_json()
            seen[m["sequenceNumber"]] = m
        self.assertEqual({r["SequenceNumber"] for r in first}, set(seen))
        for r in first:
            m = seen[r["SequenceNumber"]]
            self.assertEqual(m["shardId"], r["ShardId"])
            self.assertEqual(base64.b64decode(m["data"]).decode(), m["text"])
            self.assertTrue(m["text"].startswith("old "))

        # Records put now arrive without asking, binary ones without "text".
        live = self.put([("a", b"live 1"), ("b", b"\xff\x00binary")])
        got = [ws.recv_json() for _ in range(2)]
        self.assertEqual({m["sequenceNumber"] for m in got}, {r["SequenceNumber"] for r in live})
        binary = [m for m in got if m["partitionKey"] == "b"][0]
        self.assertNotIn("text", binary)
        self.assertEqual(base64.b64decode(binary["data"]), b"\xff\x00binary")
        ws.close()

        # Resume one shard after the last sequence number seen on it.
        shard = live[0]["ShardId"]
        last = live[0]["SequenceNumber"]
        later = self.put([("a", b"after reconnect")])
        self.assertEqual(later[0]["ShardId"], shard)
        ws = WebSocket(self.d.port, f"/v1/streams/live/subscribe?shard={shard}"
                                    f"&position=AFTER_SEQUENCE_NUMBER&sequence={last}")
        m = ws.recv_json()
        self.assertEqual(m["sequenceNumber"], later[0]["SequenceNumber"])
        self.assertEqual(m["text"], "after reconnect")
        ws.close()

    def test_latest_gets_only_new_records(self):
        self.put([("x", b"before")])
        ws = WebSocket(self.d.port, "/v1/streams/live/subscribe")
        # Give the subscription a moment to take its LATEST positions.
        import time
        time.sleep(0.3)
        self.put([("x", b"after")])
        self.assertEqual(ws.recv_json()["text"], "after")
        ws.close()

    def test_many_records_none_lost(self):
        ws = WebSocket(self.d.port, "/v1/streams/live/subscribe")
        import time
        time.sleep(0.3)
        sent = set()
        for batch in range(20):
            out = self.put([(f"key-{batch}-{i}", os.urandom(2000)) for i in range(100)])
            sent |= {r["SequenceNumber"] for r in out}
        got = set()
        while len(got) < len(sent):
            got.add(ws.recv_json()["sequenceNumber"])
        self.assertEqual(got, sent)
        ws.close()

    def test_follows_resharding_in_key_order(self):
        status, out = kinesis(self.d.port, "CreateStream", {"StreamName": "moving", "ShardCount": 1})
        self.assertEqual(status, 200, out)
        ws = WebSocket(self.d.port, "/v1/streams/moving/subscribe?position=TRIM_HORIZON")

        def put(n0, n):
            status, out = kinesis(self.d.port, "PutRecords", {"StreamName": "moving", "Records": [
                {"Data": base64.b64encode(f"{k}:{i}".encode()).decode(), "PartitionKey": f"key{k}"}
                for i in range(n0, n0 + n) for k in range(5)]})
            self.assertEqual(status, 200, out)

        put(0, 10)
        status, out = kinesis(self.d.port, "SplitShard", {
            "StreamName": "moving", "ShardToSplit": "shardId-000000000000",
            "NewStartingHashKey": str(2**127)})
        self.assertEqual(status, 200, out)
        put(10, 10)
        status, out = kinesis(self.d.port, "MergeShards", {
            "StreamName": "moving", "ShardToMerge": "shardId-000000000001",
            "AdjacentShardToMerge": "shardId-000000000002"})
        self.assertEqual(status, 200, out)
        put(20, 10)
        last, count, shards = {}, 0, set()
        while count < 150:
            m = ws.recv_json()
            k, i = m["text"].split(":")
            self.assertGreater(int(i), last.get(k, -1), f"key {k} out of order")
            last[k] = int(i)
            shards.add(m["shardId"])
            count += 1
        # Records came from the parent, the split's children and the merged shard.
        self.assertIn("shardId-000000000000", shards)
        self.assertTrue(shards & {"shardId-000000000001", "shardId-000000000002"})
        self.assertIn("shardId-000000000003", shards)
        self.assertEqual(last, {str(k): 29 for k in range(5)})
        ws.close()

    def test_errors(self):
        ws = WebSocket(self.d.port, "/v1/streams/nope/subscribe")
        self.assertEqual(ws.status, 101)
        err = ws.recv_json()
        self.assertEqual(err["error"]["code"], "ResourceNotFound")
        opcode, payload = ws.recv()
        self.assertEqual(opcode, 8)
        self.assertEqual(int.from_bytes(payload[:2], "big"), 1008)
        ws.close()
        ws = WebSocket(self.d.port, "/v1/streams/live/subscribe?position=SOMEWHERE")
        self.assertEqual(ws.recv_json()["error"]["code"], "InvalidArgument")
        ws.close()
        ws = WebSocket(self.d.port, "/v1/streams/live/subscribe?shard=shardId-000000000007")
        self.assertEqual(ws.recv_json()["error"]["code"], "ResourceNotFound")
        ws.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
