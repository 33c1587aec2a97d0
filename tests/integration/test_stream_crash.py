"""Durability by fault injection: clients write to a stream (durability
sync, the default) while the daemon is killed with SIGKILL at a random
moment; after each restart every acknowledged record must be readable and
intact. CRASH_TRIALS sets the number of trials (20 by default; 100+ for the
long mode)."""

import base64
import http.client
import json
import os
import random
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import Daemon  # noqa: E402

TRIALS = int(os.environ.get("CRASH_TRIALS", "20"))
WRITERS = 3


def kinesis(port, op, body, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/", body=json.dumps(body),
                     headers={"X-Amz-Target": f"Kinesis_20131202.{op}",
                              "Content-Type": "application/x-amz-json-1.1"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def read_all(port, stream, shards):
    got = {}
    for shard in range(shards):
        shard_id = f"shardId-{shard:012d}"
        status, out = kinesis(port, "GetShardIterator", {"StreamName": stream, "ShardId": shard_id,
                                                        "ShardIteratorType": "TRIM_HORIZON"})
        assert status == 200, out
        it = out["ShardIterator"]
        while True:
            status, out = kinesis(port, "GetRecords", {"ShardIterator": it, "Limit": 10000})
            assert status == 200, out
            for r in out["Records"]:
                key = (shard_id, r["SequenceNumber"])
                assert key not in got, f"{key} returned twice"
                got[key] = base64.b64decode(r["Data"])
            it = out["NextShardIterator"]
            if not out["Records"]:
                break
    return got


class CrashTest(unittest.TestCase):
    def test_acknowledged_records_survive_sigkill(self):
        d = Daemon()
        d.start()
        try:
            status, _ = kinesis(d.port, "CreateStream", {"StreamName": "crash", "ShardCount": 2})
            self.assertEqual(status, 200)
            acked = {}
            lock = threading.Lock()
            rng = random.Random(int(os.environ.get("CRASH_SEED", "1")))
            total_acked = 0
            for trial in range(TRIALS):
                stop = threading.Event()

                def writer(w):
                    n = 0
                    while not stop.is_set():
                        batch = []
                        for i in range(rng.randint(1, 20)):
                            body = f"{trial}:{w}:{n}:{i}:".encode() + os.urandom(rng.randint(0, 300))
                            batch.append(body)
                        records = [{"Data": base64.b64encode(b).decode(),
                                    "PartitionKey": f"{w}-{n}-{i}"} for i, b in enumerate(batch)]
                        try:
                            status, out = kinesis(d.port, "PutRecords",
                                                  {"StreamName": "crash", "Records": records})
                        except OSError:
                            return  # the daemon died: nothing acknowledged here
                        if status != 200:
                            return
                        with lock:
                            for body, r in zip(batch, out["Records"]):
                                if "ErrorCode" not in r:
                                    acked[(r["ShardId"], r["SequenceNumber"])] = body
                        n += 1

                threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
                for t in threads:
                    t.start()
                time.sleep(rng.uniform(0.05, 0.6))
                d.proc.send_signal(signal.SIGKILL)
                d.wait_exit()
                stop.set()
                for t in threads:
                    t.join()

                d = Daemon(workdir=d.workdir, data_dir=d.data_dir)
                d.own_workdir = True
                d.start()
                got = read_all(d.port, "crash", 2)
                missing = [k for k in acked if k not in got]
                self.assertEqual(missing, [], f"trial {trial}: acknowledged records lost")
                changed = [k for k in acked if got[k] != acked[k]]
                self.assertEqual(changed, [], f"trial {trial}: acknowledged records changed")
                total_acked = len(acked)
            self.assertGreater(total_acked, TRIALS * 5, "the writers hardly wrote anything")
            print(f"{TRIALS} kills, {total_acked} acknowledged records, all intact", file=sys.stderr)
        finally:
            d.stop()
            d.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
