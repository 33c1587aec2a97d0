"""Full disk, by fault injection: writes are throttled (Kinesis
ProvisionedThroughputExceededException, which SDKs retry with backoff) rather
than failed or half-done; everything acknowledged stays readable; writes
resume once space is freed. Also the configured free-space reserve."""

import base64
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import Daemon  # noqa: E402
from test_stream_crash import kinesis, read_all  # noqa: E402

THROTTLED = "ProvisionedThroughputExceededException"


class Reserve(unittest.TestCase):
    def test_puts_refused_below_the_reserve(self):
        d = Daemon(config="storage:\n  min_free_bytes: 1024GiB\n").start()
        try:
            status, out = kinesis(d.port, "CreateStream", {"StreamName": "s", "ShardCount": 1})
            self.assertEqual(status, 200, out)
            status, out = kinesis(d.port, "PutRecord", {"StreamName": "s", "PartitionKey": "k",
                                                        "Data": "aGk="})
            self.assertEqual((status, out["__type"]), (400, THROTTLED))
            self.assertIn("storage.min_free_bytes", out["message"])
            status, out = kinesis(d.port, "PutRecords", {"StreamName": "s", "Records": [
                {"PartitionKey": "k", "Data": "aGk="}] * 3})
            self.assertEqual(status, 200)
            self.assertEqual(out["FailedRecordCount"], 3)
            self.assertEqual({r["ErrorCode"] for r in out["Records"]}, {THROTTLED})
            self.assertEqual(read_all(d.port, "s", 1), {})
        finally:
            self.assertEqual(d.stop(), 0)
            d.cleanup()


class FullDisk(unittest.TestCase):
    def setUp(self):
        self.mnt = tempfile.mkdtemp(prefix="edged-full-")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", self.mnt],
                           capture_output=True, text=True)
        if r.returncode != 0:
            os.rmdir(self.mnt)
            self.skipTest(f"cannot mount a tmpfs here: {r.stderr.strip()}")

    def tearDown(self):
        subprocess.run(["umount", "-l", self.mnt])
        os.rmdir(self.mnt)

    def test_full_disk_throttles_keeps_acknowledged_records_and_recovers(self):
        d = Daemon(config="storage:\n  min_free_bytes: 0\n",
                   data_dir=os.path.join(self.mnt, "data")).start()
        try:
            for name in ("keep", "spare"):
                status, out = kinesis(d.port, "CreateStream", {"StreamName": name, "ShardCount": 2})
                self.assertEqual(status, 200, out)
            acked = {}
            throttled = 0
            n = 0
            for _ in range(1000):
                batch = [(f"k{n}-{i}", f"{n}:{i}:".encode() + os.urandom(1000)) for i in range(50)]
                stream = "spare" if n % 4 == 0 else "keep"
                status, out = kinesis(d.port, "PutRecords", {"StreamName": stream, "Records": [
                    {"PartitionKey": k, "Data": base64.b64encode(v).decode()} for k, v in batch]})
                self.assertEqual(status, 200, out)
                for (k, v), r in zip(batch, out["Records"]):
                    if "ErrorCode" in r:
                        self.assertEqual(r["ErrorCode"], THROTTLED, r)
                        throttled += 1
                    elif stream == "keep":
                        acked[(r["ShardId"], r["SequenceNumber"])] = v
                n += 1
                if throttled > 500:
                    break
            self.assertGreater(throttled, 500, "the disk never filled")
            self.assertEqual(d.request("GET", "/healthz")[0], 200)
            got = read_all(d.port, "keep", 2)
            self.assertEqual({k: got.get(k) for k in acked}, acked)

            # Free space by deleting the other stream: writes go through again.
            status, out = kinesis(d.port, "DeleteStream", {"StreamName": "spare"})
            self.assertEqual(status, 200, out)
            for _ in range(50):
                status, out = kinesis(d.port, "PutRecord", {"StreamName": "keep", "PartitionKey": "after",
                                                            "Data": base64.b64encode(b"after").decode()})
                if status == 200:
                    break
            self.assertEqual(status, 200, out)
        finally:
            self.assertEqual(d.stop(), 0)
            d.cleanup()
        # And it starts again on the same, nearly full, data.
        d2 = Daemon(config="storage:\n  min_free_bytes: 0\n", data_dir=os.path.join(self.mnt, "data"))
        d2.start()
        try:
            got = read_all(d2.port, "keep", 2)
            self.assertEqual({k: got.get(k) for k in acked}, acked)
            self.assertIn(b"after", got.values())
        finally:
            self.assertEqual(d2.stop(), 0)
            d2.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
