"""Resharding while clients write: SplitShard, MergeShards and
UpdateShardCount, then a reader that follows shard lineage (a child only
after its parents are read to their end) sees every acknowledged record
exactly once and every key's records in the order they were put."""

import base64
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import Daemon  # noqa: E402
from test_stream_crash import kinesis  # noqa: E402

KEYS = [f"sensor-{i}" for i in range(24)]


class Reshard(unittest.TestCase):
    def setUp(self):
        self.d = Daemon().start()

    def tearDown(self):
        code = self.d.stop()
        self.d.cleanup()
        self.assertEqual(code, 0)

    def call(self, op, body, expect=200):
        status, out = kinesis(self.d.port, op, body)
        self.assertEqual(status, expect, f"{op}: {out}")
        return out

    def shards(self):
        return {s["ShardId"]: s for s in self.call("ListShards", {"StreamName": "rs"})["Shards"]}

    def read_following_lineage(self):
        shards = self.shards()
        done, order = set(), []
        while len(done) < len(shards):
            ready = [sid for sid, s in sorted(shards.items()) if sid not in done and all(
                p in done or p not in shards
                for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p)]
            self.assertTrue(ready, "lineage has a cycle")
            for sid in ready:
                it = self.call("GetShardIterator", {"StreamName": "rs", "ShardId": sid,
                                                    "ShardIteratorType": "TRIM_HORIZON"})["ShardIterator"]
                while it:
                    out = self.call("GetRecords", {"ShardIterator": it})
                    order += [(sid, r) for r in out["Records"]]
                    it = out.get("NextShardIterator")
                    if it and not out["Records"]:
                        break  # an open shard, read to its current end
                    if not it:
                        children = {c["ShardId"] for c in out["ChildShards"]}
                        expected = {c for c, s in shards.items()
                                    if sid in (s.get("ParentShardId"), s.get("AdjacentParentShardId"))}
                        self.assertEqual(children, expected)
                done.add(sid)
        return order

    def test_split_merge_scale_while_writing(self):
        self.call("CreateStream", {"StreamName": "rs", "ShardCount": 2})
        acked, stop = {}, threading.Event()
        lock = threading.Lock()

        def writer(keys):
            counters = {k: 0 for k in keys}
            while not stop.is_set():
                batch = [(k, counters[k]) for k in keys]
                out = self.call("PutRecords", {"StreamName": "rs", "Records": [
                    {"PartitionKey": k, "Data": base64.b64encode(f"{k}:{n}".encode()).decode()}
                    for k, n in batch]})
                with lock:
                    for (k, n), r in zip(batch, out["Records"]):
                        self.assertNotIn("ErrorCode", r)
                        acked[(r["ShardId"], r["SequenceNumber"])] = (k, n)
                for k in keys:
                    counters[k] += 1

        threads = [threading.Thread(target=writer, args=(KEYS[i::3],)) for i in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        s0 = self.shards()["shardId-000000000000"]
        lo, hi = int(s0["HashKeyRange"]["StartingHashKey"]), int(s0["HashKeyRange"]["EndingHashKey"])
        self.call("SplitShard", {"StreamName": "rs", "ShardToSplit": "shardId-000000000000",
                                 "NewStartingHashKey": str((lo + hi) // 2)})
        time.sleep(0.3)
        # shardId-2 is the lower half of shard 0, shardId-3 the upper, adjacent to shard 1.
        self.call("MergeShards", {"StreamName": "rs", "ShardToMerge": "shardId-000000000003",
                                  "AdjacentShardToMerge": "shardId-000000000001"})
        time.sleep(0.3)
        out = self.call("UpdateShardCount", {"StreamName": "rs", "TargetShardCount": 4,
                                             "ScalingType": "UNIFORM_SCALING"})
        self.assertEqual((out["CurrentShardCount"], out["TargetShardCount"]), (2, 4))
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()

        summary = self.call("DescribeStreamSummary", {"StreamName": "rs"})["StreamDescriptionSummary"]
        self.assertEqual(summary["OpenShardCount"], 4)
        shards = self.shards()
        self.assertEqual(len(shards), 9)
        open_ranges = sorted((int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
                             for s in shards.values() if "EndingSequenceNumber" not in s["SequenceNumberRange"])
        self.assertEqual(len(open_ranges), 4)
        self.assertEqual(open_ranges[0][0], 0)
        self.assertEqual(open_ranges[-1][1], 2**128 - 1)
        self.assertEqual(shards["shardId-000000000002"]["ParentShardId"], "shardId-000000000000")
        self.assertEqual(shards["shardId-000000000003"]["ParentShardId"], "shardId-000000000000")
        self.assertEqual((shards["shardId-000000000004"]["ParentShardId"],
                          shards["shardId-000000000004"]["AdjacentParentShardId"]),
                         ("shardId-000000000003", "shardId-000000000001"))

        order = self.read_following_lineage()
        got = {(sid, r["SequenceNumber"]): base64.b64decode(r["Data"]).decode() for sid, r in order}
        self.assertEqual(len(got), len(order), "a record was returned twice")
        self.assertEqual({k: f"{v[0]}:{v[1]}" for k, v in acked.items()}, got)
        last = {}
        for _, r in order:
            key, n = base64.b64decode(r["Data"]).decode().rsplit(":", 1)
            self.assertGreater(int(n), last.get(key, -1), f"{key} out of order")
            last[key] = int(n)
        self.assertGreater(len(acked), 3 * len(KEYS))

    def test_bad_resharding_requests(self):
        self.call("CreateStream", {"StreamName": "rs", "ShardCount": 3})
        err = self.call("SplitShard", {"StreamName": "rs", "ShardToSplit": "shardId-000000000000",
                                       "NewStartingHashKey": "0"}, expect=400)
        self.assertEqual(err["__type"], "InvalidArgumentException")
        err = self.call("MergeShards", {"StreamName": "rs", "ShardToMerge": "shardId-000000000000",
                                        "AdjacentShardToMerge": "shardId-000000000002"}, expect=400)
        self.assertEqual(err["__type"], "InvalidArgumentException")
        err = self.call("UpdateShardCount", {"StreamName": "rs", "TargetShardCount": 7,
                                             "ScalingType": "UNIFORM_SCALING"}, expect=400)
        self.assertEqual(err["__type"], "InvalidArgumentException")
        self.call("MergeShards", {"StreamName": "rs", "ShardToMerge": "shardId-000000000000",
                                  "AdjacentShardToMerge": "shardId-000000000001"})
        err = self.call("SplitShard", {"StreamName": "rs", "ShardToSplit": "shardId-000000000000",
                                       "NewStartingHashKey": "5"}, expect=400)
        self.assertEqual(err["__type"], "ResourceInUseException")
        err = self.call("SplitShard", {"StreamName": "rs", "ShardToSplit": "shardId-000000000099",
                                       "NewStartingHashKey": "5"}, expect=400)
        self.assertEqual(err["__type"], "ResourceNotFoundException")
        # Lineage survives a restart.
        self.assertEqual(self.d.stop(), 0)
        self.d.start()
        s = self.shards()["shardId-000000000003"]
        self.assertEqual((s["ParentShardId"], s["AdjacentParentShardId"]),
                         ("shardId-000000000000", "shardId-000000000001"))
        self.assertIn("EndingSequenceNumber", self.shards()["shardId-000000000000"]["SequenceNumberRange"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
