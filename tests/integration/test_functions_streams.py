"""Event source mappings: a function invoked with a data stream's records in
Lambda's Kinesis event shape, in order per shard, from checkpoints that
survive kill -9 (every record delivered at least once), with bisect on error
isolating a poison record to the on-failure stream, and a batching window."""

import base64
import json
import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import Daemon  # noqa: E402

ROOT = os.environ.get("EDGED_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
BASH_RUNTIME = os.path.join(ROOT, "tests", "functions", "bash", "bootstrap")
NODE_RIC = os.path.join(ROOT, "tests", "functions", "node", "bootstrap")
# Its base64 is "fail": the bash runtime fails any event holding "fail"
# (with the quotes), as the record data field of a Kinesis event does.
POISON = base64.b64decode("fail")


def config(logs):
    return f"""streams:
  - name: events
    shards: 2
  - name: slow-in
  - name: poison-in
  - name: poison-out
  - name: windowed
  - name: partial-in
  - name: partial-out
  - name: aged-in
  - name: aged-out
functions:
  - name: sink
    bootstrap: {BASH_RUNTIME}
    environment:
      EVENT_LOG: {logs}/sink.log
  - name: slow
    bootstrap: {BASH_RUNTIME}
    environment:
      EVENT_LOG: {logs}/slow.log
      DELAY: "0.1"
  - name: picky
    bootstrap: {BASH_RUNTIME}
    environment:
      EVENT_LOG: {logs}/picky.log
  - name: patient
    bootstrap: {BASH_RUNTIME}
    environment:
      EVENT_LOG: {logs}/patient.log
  - name: partial
    bootstrap: {NODE_RIC}
    handler: kinesis.handler
    timeout: 10s
    environment:
      SEEN_LOG: {logs}/partial.log
  - name: aged
    bootstrap: {BASH_RUNTIME}
    environment:
      EVENT_LOG: {logs}/aged.log
event_source_mappings:
  - stream: events
    function: sink
    batch_size: 10
    starting_position: TRIM_HORIZON
  - stream: slow-in
    function: slow
    batch_size: 5
    starting_position: TRIM_HORIZON
  - stream: poison-in
    function: picky
    batch_size: 10
    starting_position: TRIM_HORIZON
    bisect_on_error: true
    max_retry_attempts: 1
    on_failure: poison-out
  - stream: windowed
    function: patient
    batch_size: 100
    batching_window: 1500ms
    starting_position: TRIM_HORIZON
  - stream: partial-in
    function: partial
    batch_size: 10
    batching_window: 1s
    starting_position: TRIM_HORIZON
    report_batch_item_failures: true
    max_retry_attempts: 1
    on_failure: partial-out
  - stream: aged-in
    function: aged
    starting_position: TRIM_HORIZON
    max_record_age: 1s
    on_failure: aged-out
"""


def invocations(path):
    """(request id, start time, Records) per invocation."""
    try:
        with open(path) as f:
            # Whole lines only: a long one may be mid-write.
            lines = [line.rstrip("\n") for line in f if line.endswith("\n") and line.strip()]
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        request_id, started, event = line.split(" ", 2)
        out.append((request_id, float(started), json.loads(event)["Records"]))
    return out


def wait_for(predicate, timeout=30, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


class Mappings(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.logs = os.path.join(self.d.workdir, "logs")
        os.makedirs(self.logs)
        self.d = Daemon(workdir=self.d.workdir, config=config(self.logs)).start()

    def tearDown(self):
        if self.d.proc.poll() is None:
            self.assertEqual(self.d.stop(), 0, self.d.log()[-3000:])
        self.d.cleanup()

    def put(self, stream, records):
        status, out = self.d.kinesis("PutRecords", {"StreamName": stream, "Records": [
            {"Data": base64.b64encode(data).decode(), "PartitionKey": key}
            for key, data in records]})
        self.assertEqual(status, 200, out)
        self.assertEqual(out["FailedRecordCount"], 0)
        return out["Records"]

    def delivered(self, name):
        return [(rid, rec) for rid, _, records in invocations(os.path.join(self.logs, f"{name}.log"))
                for rec in records]

    def test_kinesis_event_in_order_per_shard(self):
        sent = [(f"key-{n % 7}", f"reading {n}".encode()) for n in range(50)]
        results = self.put("events", sent)
        got = wait_for(lambda: len(self.delivered("sink")) >= 50 and self.delivered("sink"))
        self.assertTrue(got, self.d.log()[-2000:])
        self.assertEqual(len(got), 50)
        by_seq = {r["SequenceNumber"]: (r["ShardId"], sent[i]) for i, r in enumerate(results)}
        per_shard = {}
        for _, rec in got:
            k = rec["kinesis"]
            shard, (key, data) = by_seq[k["sequenceNumber"]]
            self.assertEqual(k["partitionKey"], key)
            self.assertEqual(base64.b64decode(k["data"]), data)
            self.assertEqual(k["kinesisSchemaVersion"], "1.0")
            self.assertAlmostEqual(k["approximateArrivalTimestamp"], time.time(), delta=60)
            self.assertEqual(rec["eventSource"], "aws:kinesis")
            self.assertEqual(rec["eventName"], "aws:kinesis:record")
            self.assertEqual(rec["eventVersion"], "1.0")
            self.assertEqual(rec["awsRegion"], "us-east-1")
            self.assertEqual(rec["eventID"], f"{shard}:{k['sequenceNumber']}")
            self.assertEqual(rec["eventSourceARN"],
                             "arn:aws:kinesis:us-east-1:000000000000:stream/events")
            per_shard.setdefault(shard, []).append(int(k["sequenceNumber"]))
        self.assertEqual(len(per_shard), 2)
        for seqs in per_shard.values():
            self.assertEqual(seqs, sorted(seqs))
        # Batches of 10 at most.
        for _, _, records in invocations(os.path.join(self.logs, "sink.log")):
            self.assertLessEqual(len(records), 10)
        # The mapping is a registered consumer of the stream.
        status, out = self.d.kinesis("ListStreamConsumers", {
            "StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/events"})
        self.assertEqual(status, 200, out)
        self.assertIn("lambda-sink", [c["ConsumerName"] for c in out["Consumers"]])

    def test_every_record_at_least_once_across_kill_9(self):
        sent = {f"r{n}".encode() for n in range(120)}
        self.put("slow-in", [("k", data) for data in sorted(sent)])
        # 5 records per batch, 0.1 s each: killed about half way.
        self.assertTrue(wait_for(lambda: len(self.delivered("slow")) >= 40))
        self.d.stop(signal.SIGKILL)
        before = {base64.b64decode(r["kinesis"]["data"]) for _, r in self.delivered("slow")}
        self.assertLess(len(before), len(sent), "all delivered before the kill: nothing tested")
        self.d.start()
        got = wait_for(lambda: {base64.b64decode(r["kinesis"]["data"])
                                for _, r in self.delivered("slow")} >= sent, timeout=60)
        self.assertTrue(got, self.d.log()[-2000:])
        # Redelivery is bounded by what was under way: at most one batch again.
        self.assertLessEqual(len(self.delivered("slow")), len(sent) + 5)

    def test_bisect_isolates_the_poison_record(self):
        records = [("k", f"good {n}".encode()) for n in range(19)]
        records.insert(13, ("k", POISON))
        results = self.put("poison-in", records)
        poison_seq = results[13]["SequenceNumber"]
        out = wait_for(lambda: self.d.stream_records("poison-out"))
        self.assertTrue(out, self.d.log()[-3000:])
        self.assertEqual(len(out), 1)
        failure = json.loads(out[0]["Data"])
        info = failure["KinesisBatchInfo"]
        self.assertEqual(info["batchSize"], 1)
        self.assertEqual(info["startSequenceNumber"], poison_seq)
        self.assertEqual(info["endSequenceNumber"], poison_seq)
        self.assertEqual(info["shardId"], "shardId-000000000000")
        self.assertEqual(info["streamArn"], "arn:aws:kinesis:us-east-1:000000000000:stream/poison-in")
        self.assertRegex(info["approximateArrivalOfFirstRecord"], r"Z$")
        self.assertEqual(failure["requestContext"]["condition"], "RetryAttemptsExhausted")
        self.assertEqual(failure["requestContext"]["functionArn"],
                         "arn:aws:lambda:us-east-1:000000000000:function:picky")
        self.assertEqual(failure["responseContext"]["functionError"], "Unhandled")
        # Every other record got through, and the shard moved on.
        good = wait_for(lambda: {base64.b64decode(r["kinesis"]["data"])
                                 for rid, r in self.delivered("picky")} >= {d for _, d in records if d != POISON})
        self.assertTrue(good)
        metrics = self.d.request("GET", "/metrics")[2].decode()
        self.assertIn('edged_function_mapping_records_total{function="picky",stream="poison-in",'
                      'result="failed"} 1', metrics)
        self.assertTrue(wait_for(lambda: 'edged_function_mapping_records_total{function="picky",'
                                 'stream="poison-in",result="success"} 19'
                                 in self.d.request("GET", "/metrics")[2].decode()))

    def test_batch_item_failures(self):
        # One put of ten records, the fifth "bad": the first four are done; from
        # the fifth on the batch is retried once, then given up on.
        records = [("k", b"bad" if n == 4 else f"ok {n}".encode()) for n in range(10)]
        results = self.put("partial-in", records)
        out = wait_for(lambda: self.d.stream_records("partial-out"), timeout=60)
        self.assertTrue(out, self.d.log()[-3000:])
        info = json.loads(out[0]["Data"])["KinesisBatchInfo"]
        self.assertEqual(info["startSequenceNumber"], results[4]["SequenceNumber"])
        self.assertEqual(info["endSequenceNumber"], results[9]["SequenceNumber"])
        self.assertEqual(info["batchSize"], 6)
        with open(os.path.join(self.logs, "partial.log")) as f:
            seen = [line.split()[0] for line in f]
        # Records 0-3 once; 4-9 twice (the first try and one retry).
        for n in range(4):
            self.assertEqual(seen.count(results[n]["SequenceNumber"]), 1)
        for n in range(4, 10):
            self.assertEqual(seen.count(results[n]["SequenceNumber"]), 2)

    def test_records_past_their_age_go_to_on_failure(self):
        self.put("aged-in", [("k", b"fresh")])
        # Settled (so checkpointed) before the stop.
        self.assertTrue(wait_for(lambda: 'edged_function_mapping_records_total{function="aged",'
                                 'stream="aged-in",result="success"} 1'
                                 in self.d.request("GET", "/metrics")[2].decode()))
        self.assertEqual(self.d.stop(), 0)
        # A record put while the mapping does not run (a daemon without it, on
        # the same data) is older than max_record_age when it runs again.
        plain = Daemon(workdir=self.d.workdir, data_dir=self.d.data_dir, config="")
        plain.start()
        try:
            status, put = plain.kinesis("PutRecord", {"StreamName": "aged-in", "Data": "b2xk",
                                                      "PartitionKey": "k"})
            self.assertEqual(status, 200, put)
        finally:
            self.assertEqual(plain.stop(), 0)
        time.sleep(1.5)
        self.d.start()
        out = wait_for(lambda: self.d.stream_records("aged-out"))
        self.assertTrue(out, self.d.log()[-2000:])
        failure = json.loads(out[0]["Data"])
        self.assertEqual(failure["requestContext"]["condition"], "RecordAgeExceeded")
        info = failure["KinesisBatchInfo"]
        self.assertEqual((info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]),
                         (put["SequenceNumber"], put["SequenceNumber"], 1))
        # The old record never reached the function.
        time.sleep(0.5)
        self.assertEqual([base64.b64decode(r["kinesis"]["data"]) for _, r in self.delivered("aged")],
                         [b"fresh"])

    def test_aws_cli_lists_the_mappings(self):
        env = dict(os.environ, AWS_ACCESS_KEY_ID="edged", AWS_SECRET_ACCESS_KEY="edged",
                   AWS_DEFAULT_REGION="us-east-1", AWS_PAGER="")
        aws = os.environ.get("AWS_CLI", "/usr/bin/aws")
        r = subprocess.run([aws, "--endpoint-url", self.d.url, "lambda",
                            "list-event-source-mappings", "--function-name", "picky"],
                           capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        mappings = json.loads(r.stdout)["EventSourceMappings"]
        self.assertEqual(len(mappings), 1)
        m = mappings[0]
        self.assertEqual(m["EventSourceArn"], "arn:aws:kinesis:us-east-1:000000000000:stream/poison-in")
        self.assertEqual(m["FunctionArn"], "arn:aws:lambda:us-east-1:000000000000:function:picky")
        self.assertEqual((m["BatchSize"], m["MaximumRetryAttempts"], m["BisectBatchOnFunctionError"]),
                         (10, 1, True))
        self.assertEqual(m["DestinationConfig"]["OnFailure"]["Destination"],
                         "arn:aws:kinesis:us-east-1:000000000000:stream/poison-out")
        r = subprocess.run([aws, "--endpoint-url", self.d.url, "lambda", "get-event-source-mapping",
                            "--uuid", m["UUID"]], capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["UUID"], m["UUID"])
        r = subprocess.run([aws, "--endpoint-url", self.d.url, "lambda", "list-event-source-mappings"],
                           capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(len(json.loads(r.stdout)["EventSourceMappings"]), 6)

    def test_batching_window_gathers_records(self):
        start = time.monotonic()
        for n in range(5):
            self.put("windowed", [("k", f"w{n}".encode())])
            time.sleep(0.1)
        got = wait_for(lambda: invocations(os.path.join(self.logs, "patient.log")), timeout=10)
        elapsed = time.monotonic() - start
        self.assertEqual(len(got), 1, got)
        self.assertEqual(len(got[0][2]), 5)
        self.assertGreaterEqual(elapsed, 1.4)


if __name__ == "__main__":
    unittest.main()
