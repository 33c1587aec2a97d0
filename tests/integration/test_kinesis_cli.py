"""The Kinesis Data Streams API as the AWS CLI (Debian's awscli 2.x) sees it,
against a real edged: every operation, with the content checked."""

import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import Daemon  # noqa: E402

AWS = os.environ.get("AWS_CLI", "/usr/bin/aws")
MAX = 2**128 - 1


def shard_for(key, count):
    """The shard Kinesis puts a partition key in, for `count` even shards."""
    h = int(hashlib.md5(key.encode()).hexdigest(), 16)
    width = 2**128 // count
    return min(h // width, count - 1)


class KinesisCli(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(AWS):
            raise unittest.SkipTest(f"{AWS} is not installed (apt-get install awscli)")
        cls.d = Daemon().start()
        cls.tmp = tempfile.mkdtemp(prefix="edged-aws-")
        cls.env = dict(os.environ, AWS_ACCESS_KEY_ID="edged", AWS_SECRET_ACCESS_KEY="edged",
                       AWS_DEFAULT_REGION="eu-west-1", AWS_PAGER="",
                       AWS_CONFIG_FILE=os.path.join(cls.tmp, "config"),
                       AWS_SHARED_CREDENTIALS_FILE=os.path.join(cls.tmp, "credentials"))

    @classmethod
    def tearDownClass(cls):
        code = cls.d.stop()
        cls.d.cleanup()
        assert code == 0, code

    def aws(self, *args, ok=True, input_json=None):
        cmd = [AWS, "--endpoint-url", self.d.url, "--output", "json", "kinesis", *args]
        if input_json is not None:
            path = os.path.join(self.tmp, "input.json")
            with open(path, "w") as f:
                json.dump(input_json, f)
            cmd += ["--cli-input-json", f"file://{path}"]
        r = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=60)
        if ok:
            self.assertEqual(r.returncode, 0, f"{args}: {r.stderr}")
            return json.loads(r.stdout) if r.stdout.strip() else {}
        self.assertNotEqual(r.returncode, 0, f"{args} succeeded: {r.stdout}")
        return r.stderr

    def read_shard(self, stream, shard_id, kind="TRIM_HORIZON", **extra):
        args = ["get-shard-iterator", "--stream-name", stream, "--shard-id", shard_id,
                "--shard-iterator-type", kind]
        for k, v in extra.items():
            args += [f"--{k}", str(v)]
        it = self.aws(*args)["ShardIterator"]
        records = []
        for _ in range(50):
            out = self.aws("get-records", "--shard-iterator", it)
            records += out["Records"]
            it = out["NextShardIterator"]
            if not out["Records"]:
                break
        return records

    def test_stream_lifecycle(self):
        self.aws("create-stream", "--stream-name", "life", "--shard-count", "3")
        err = self.aws("create-stream", "--stream-name", "life", "--shard-count", "1", ok=False)
        self.assertIn("ResourceInUseException", err)
        self.assertIn("life", self.aws("list-streams")["StreamNames"])

        desc = self.aws("describe-stream", "--stream-name", "life")["StreamDescription"]
        self.assertEqual(desc["StreamStatus"], "ACTIVE")
        self.assertEqual(desc["StreamARN"], "arn:aws:kinesis:eu-west-1:000000000000:stream/life")
        self.assertEqual(desc["RetentionPeriodHours"], 24)
        ranges = [(int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
                  for s in desc["Shards"]]
        self.assertEqual([s["ShardId"] for s in desc["Shards"]],
                         ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002"])
        self.assertEqual(ranges[0][0], 0)
        self.assertEqual(ranges[-1][1], MAX)
        for (a, b), (c, _) in zip(ranges, ranges[1:]):
            self.assertEqual(b + 1, c)
        self.assertEqual(ranges[1][0], 2**128 // 3)

        summary = self.aws("describe-stream-summary", "--stream-name", "life")
        self.assertEqual(summary["StreamDescriptionSummary"]["OpenShardCount"], 3)
        # Pages of one shard each, following NextToken (which excludes StreamName).
        page = self.aws("list-shards", "--stream-name", "life", "--max-results", "1")
        shards = page["Shards"]
        while "NextToken" in page:
            page = self.aws("list-shards", "--next-token", page["NextToken"], "--max-results", "1")
            shards += page["Shards"]
        self.assertEqual([s["ShardId"] for s in shards],
                         ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002"])
        err = self.aws("list-shards", "--stream-name", "life", "--next-token", "bm9wZQ==", ok=False)
        self.assertIn("InvalidArgumentException", err)
        limits = self.aws("describe-limits")
        self.assertGreaterEqual(limits["OpenShardCount"], 3)

        self.aws("delete-stream", "--stream-name", "life")
        err = self.aws("describe-stream", "--stream-name", "life", ok=False)
        self.assertIn("ResourceNotFoundException", err)
        self.assertNotIn("life", self.aws("list-streams")["StreamNames"])

    def test_put_and_get_exact_bytes(self):
        self.aws("create-stream", "--stream-name", "data", "--shard-count", "4")
        sent = {}
        for i in range(20):
            payload = bytes([i]) * i + b"\x00\xff binary \n" + os.urandom(8)
            key = f"sensor-{i}"
            out = self.aws("put-record", "--stream-name", "data", "--partition-key", key,
                           "--data", base64.b64encode(payload).decode(), "--cli-binary-format", "base64")
            self.assertEqual(out["ShardId"], f"shardId-{shard_for(key, 4):012d}")
            sent[out["SequenceNumber"]] = (key, payload, out["ShardId"])
        records = [{"Data": base64.b64encode(f"batch {i}".encode()).decode(),
                    "PartitionKey": f"k{i % 13}"} for i in range(300)]
        out = self.aws("put-records", input_json={"StreamName": "data", "Records": records})
        self.assertEqual(out["FailedRecordCount"], 0)
        self.assertEqual(len(out["Records"]), 300)
        for i, r in enumerate(out["Records"]):
            key = f"k{i % 13}"
            self.assertEqual(r["ShardId"], f"shardId-{shard_for(key, 4):012d}")
            sent[r["SequenceNumber"]] = (key, f"batch {i}".encode(), r["ShardId"])

        got = {}
        for shard in range(4):
            shard_id = f"shardId-{shard:012d}"
            records_read = self.read_shard("data", shard_id)
            seqs = [int(r["SequenceNumber"]) for r in records_read]
            self.assertEqual(seqs, sorted(seqs), "records come back in sequence order")
            for r in records_read:
                self.assertIsInstance(r["ApproximateArrivalTimestamp"], str)
                got[r["SequenceNumber"]] = (r["PartitionKey"], base64.b64decode(r["Data"]), shard_id)
        self.assertEqual(got, sent)
        # Per-key order: the batch records of one key come back in the order sent.
        for k in range(13):
            mine = [int(s) for s, v in got.items() if v[0] == f"k{k}"]
            bodies = [got[str(s)][1] for s in sorted(mine)]
            self.assertEqual(bodies, [f"batch {i}".encode() for i in range(300) if i % 13 == k])

    def test_explicit_hash_key_and_iterator_types(self):
        self.aws("create-stream", "--stream-name", "iter", "--shard-count", "2")
        seqs = []
        for i in range(6):
            out = self.aws("put-record", "--stream-name", "iter", "--partition-key", "anything",
                           "--explicit-hash-key", str(MAX), "--data",
                           base64.b64encode(f"r{i}".encode()).decode(), "--cli-binary-format", "base64")
            self.assertEqual(out["ShardId"], "shardId-000000000001")
            seqs.append(out["SequenceNumber"])
            if i == 2:
                time.sleep(1.2)
                middle = time.time()
        shard = "shardId-000000000001"

        def data(records):
            return [base64.b64decode(r["Data"]).decode() for r in records]

        self.assertEqual(data(self.read_shard("iter", shard)), [f"r{i}" for i in range(6)])
        self.assertEqual(data(self.read_shard("iter", shard, "AT_SEQUENCE_NUMBER",
                                              **{"starting-sequence-number": seqs[2]})),
                         ["r2", "r3", "r4", "r5"])
        self.assertEqual(data(self.read_shard("iter", shard, "AFTER_SEQUENCE_NUMBER",
                                              **{"starting-sequence-number": seqs[2]})),
                         ["r3", "r4", "r5"])
        self.assertEqual(data(self.read_shard("iter", shard, "AT_TIMESTAMP",
                                              timestamp=f"{middle:.3f}")), ["r3", "r4", "r5"])
        self.assertEqual(self.read_shard("iter", shard, "LATEST"), [])
        self.assertEqual(self.read_shard("iter", "shardId-000000000000"), [])

        # A sequence number of another shard is refused.
        err = self.aws("get-shard-iterator", "--stream-name", "iter", "--shard-id",
                       "shardId-000000000000", "--shard-iterator-type", "AT_SEQUENCE_NUMBER",
                       "--starting-sequence-number", seqs[0], ok=False)
        self.assertIn("InvalidArgumentException", err)
        err = self.aws("get-shard-iterator", "--stream-name", "iter", "--shard-id",
                       "shardId-000000000009", "--shard-iterator-type", "LATEST", ok=False)
        self.assertIn("ResourceNotFoundException", err)
        # A tampered iterator is refused.
        it = self.aws("get-shard-iterator", "--stream-name", "iter", "--shard-id", shard,
                      "--shard-iterator-type", "TRIM_HORIZON")["ShardIterator"]
        raw = bytearray(base64.b64decode(it))
        raw[-20] ^= 1
        err = self.aws("get-records", "--shard-iterator", base64.b64encode(bytes(raw)).decode(),
                       ok=False)
        self.assertIn("InvalidArgumentException", err)
        # Limit.
        out = self.aws("get-records", "--shard-iterator", it, "--limit", "2")
        self.assertEqual(data(out["Records"]), ["r0", "r1"])
        self.assertGreaterEqual(out["MillisBehindLatest"], 0)

    def test_retention_and_tags(self):
        self.aws("create-stream", "--stream-name", "keep", "--shard-count", "1")
        self.aws("increase-stream-retention-period", "--stream-name", "keep",
                 "--retention-period-hours", "168")
        desc = self.aws("describe-stream", "--stream-name", "keep")["StreamDescription"]
        self.assertEqual(desc["RetentionPeriodHours"], 168)
        err = self.aws("increase-stream-retention-period", "--stream-name", "keep",
                       "--retention-period-hours", "48", ok=False)
        self.assertIn("InvalidArgumentException", err)
        err = self.aws("increase-stream-retention-period", "--stream-name", "keep",
                       "--retention-period-hours", "9000", ok=False)
        self.assertIn("InvalidArgumentException", err)
        self.aws("decrease-stream-retention-period", "--stream-name", "keep",
                 "--retention-period-hours", "48")
        desc = self.aws("describe-stream-summary", "--stream-name", "keep")
        self.assertEqual(desc["StreamDescriptionSummary"]["RetentionPeriodHours"], 48)

        self.aws("add-tags-to-stream", "--stream-name", "keep", "--tags", "site=barn,owner=ops")
        tags = self.aws("list-tags-for-stream", "--stream-name", "keep")
        self.assertEqual(tags["Tags"], [{"Key": "owner", "Value": "ops"}, {"Key": "site", "Value": "barn"}])
        self.assertFalse(tags["HasMoreTags"])
        self.aws("remove-tags-from-stream", "--stream-name", "keep", "--tag-keys", "owner")
        tags = self.aws("list-tags-for-stream", "--stream-name", "keep")
        self.assertEqual(tags["Tags"], [{"Key": "site", "Value": "barn"}])

    def test_stream_consumers(self):
        self.aws("create-stream", "--stream-name", "fanout", "--shard-count", "1")
        arn = self.aws("describe-stream-summary", "--stream-name", "fanout")[
            "StreamDescriptionSummary"]["StreamARN"]
        c = self.aws("register-stream-consumer", "--stream-arn", arn, "--consumer-name", "app-1")["Consumer"]
        self.assertEqual(c["ConsumerName"], "app-1")
        self.assertTrue(c["ConsumerARN"].startswith(arn + "/consumer/app-1:"))
        err = self.aws("register-stream-consumer", "--stream-arn", arn, "--consumer-name", "app-1", ok=False)
        self.assertIn("ResourceInUseException", err)
        self.aws("register-stream-consumer", "--stream-arn", arn, "--consumer-name", "app-2")
        listed = self.aws("list-stream-consumers", "--stream-arn", arn)["Consumers"]
        self.assertEqual([x["ConsumerName"] for x in listed], ["app-1", "app-2"])
        d = self.aws("describe-stream-consumer", "--consumer-arn", c["ConsumerARN"])["ConsumerDescription"]
        self.assertEqual((d["ConsumerName"], d["StreamARN"], d["ConsumerStatus"]), ("app-1", arn, "ACTIVE"))
        d = self.aws("describe-stream-consumer", "--stream-arn", arn, "--consumer-name", "app-2")
        self.assertEqual(d["ConsumerDescription"]["ConsumerName"], "app-2")
        summary = self.aws("describe-stream-summary", "--stream-name", "fanout")
        self.assertEqual(summary["StreamDescriptionSummary"]["ConsumerCount"], 2)
        self.aws("deregister-stream-consumer", "--consumer-arn", c["ConsumerARN"])
        err = self.aws("describe-stream-consumer", "--consumer-arn", c["ConsumerARN"], ok=False)
        self.assertIn("ResourceNotFoundException", err)
        listed = self.aws("list-stream-consumers", "--stream-arn", arn)["Consumers"]
        self.assertEqual([x["ConsumerName"] for x in listed], ["app-2"])

    def test_resharding_with_the_cli(self):
        self.aws("create-stream", "--stream-name", "grow", "--shard-count", "1")
        self.aws("split-shard", "--stream-name", "grow", "--shard-to-split", "shardId-000000000000",
                 "--new-starting-hash-key", str(2**127))
        self.aws("merge-shards", "--stream-name", "grow", "--shard-to-merge", "shardId-000000000001",
                 "--adjacent-shard-to-merge", "shardId-000000000002")
        out = self.aws("update-shard-count", "--stream-name", "grow", "--target-shard-count", "2",
                       "--scaling-type", "UNIFORM_SCALING")
        self.assertEqual((out["CurrentShardCount"], out["TargetShardCount"]), (1, 2))
        shards = self.aws("list-shards", "--stream-name", "grow")["Shards"]
        lineage = [(s["ShardId"], s.get("ParentShardId"), s.get("AdjacentParentShardId")) for s in shards]
        self.assertEqual(lineage, [
            ("shardId-000000000000", None, None),
            ("shardId-000000000001", "shardId-000000000000", None),
            ("shardId-000000000002", "shardId-000000000000", None),
            ("shardId-000000000003", "shardId-000000000001", "shardId-000000000002"),
            ("shardId-000000000004", "shardId-000000000003", None),
            ("shardId-000000000005", "shardId-000000000003", None)])

    def test_bad_input_gets_kinesis_errors(self):
        self.aws("create-stream", "--stream-name", "limits", "--shard-count", "1")
        big = base64.b64encode(b"x" * (1024 * 1024 + 1)).decode()
        path = os.path.join(self.tmp, "big.json")
        with open(path, "w") as f:
            json.dump({"StreamName": "limits", "PartitionKey": "k", "Data": big}, f)
        r = subprocess.run([AWS, "--endpoint-url", self.d.url, "kinesis", "put-record",
                            "--cli-input-json", f"file://{path}"], capture_output=True, text=True,
                           env=self.env, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("ValidationException", r.stderr)
        err = self.aws("put-record", "--stream-name", "nope", "--partition-key", "k", "--data",
                       "aGk=", "--cli-binary-format", "base64", ok=False)
        self.assertIn("ResourceNotFoundException", err)
        err = self.aws("create-stream", "--stream-name", "bad name!", "--shard-count", "1", ok=False)
        self.assertIn("ValidationException", err)
        err = self.aws("create-stream", "--stream-name", "huge", "--shard-count", "100000", ok=False)
        self.assertIn("LimitExceededException", err)

    def test_streams_survive_restart(self):
        self.aws("create-stream", "--stream-name", "durable", "--shard-count", "2")
        out = self.aws("put-record", "--stream-name", "durable", "--partition-key", "p",
                       "--data", base64.b64encode(b"kept").decode(), "--cli-binary-format", "base64")
        self.assertEqual(self.d.stop(), 0)
        type(self).d = Daemon(workdir=self.d.workdir, data_dir=self.d.data_dir).start()
        self.d.own_workdir = True
        self.assertIn("durable", self.aws("list-streams")["StreamNames"])
        records = self.read_shard("durable", out["ShardId"])
        self.assertEqual([base64.b64decode(r["Data"]) for r in records], [b"kept"])
        self.assertEqual(records[0]["SequenceNumber"], out["SequenceNumber"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
