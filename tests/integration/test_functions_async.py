"""Asynchronous (Event) invocations: acknowledged with 202 once kept, run in
the background, retried with back-off, and their invocation records put into
the on_success and on_failure data streams in Lambda's shape. Kept across a
kill -9: every invocation accepted runs after the restart."""

import json
import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import Daemon  # noqa: E402

AWS = os.environ.get("AWS_CLI", "/usr/bin/aws")
ROOT = os.environ.get("EDGED_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
BASH_RUNTIME = os.path.join(ROOT, "tests", "functions", "bash", "bootstrap")


def config(log_dir):
    return f"""streams:
  - name: done
  - name: failed
functions:
  - name: worker
    bootstrap: {BASH_RUNTIME}
    environment:
      EVENT_LOG: {log_dir}/worker.log
    retry_delay: 300ms
    on_success: done
    on_failure: arn:aws:kinesis:us-east-1:000000000000:stream/failed
  - name: once
    bootstrap: {BASH_RUNTIME}
    environment:
      EVENT_LOG: {log_dir}/once.log
    max_retry_attempts: 0
    on_failure: failed
  - name: slow
    bootstrap: {BASH_RUNTIME}
    environment:
      EVENT_LOG: {log_dir}/slow.log
    concurrency: 1
"""


def wait_for(predicate, timeout=20, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def log_lines(path):
    try:
        with open(path) as f:
            # Whole lines only: one may be mid-write.
            return [line.rstrip("\n") for line in f if line.endswith("\n") and line.strip()]
    except FileNotFoundError:
        return []


class Async(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.logs = os.path.join(self.d.workdir, "logs")
        os.makedirs(self.logs)
        self.d = Daemon(workdir=self.d.workdir, config=config(self.logs)).start()
        self.aws_env = dict(os.environ, AWS_ACCESS_KEY_ID="edged", AWS_SECRET_ACCESS_KEY="edged",
                            AWS_DEFAULT_REGION="us-east-1", AWS_PAGER="")

    def tearDown(self):
        if self.d.proc.poll() is None:
            self.assertEqual(self.d.stop(), 0, self.d.log()[-3000:])
        self.d.cleanup()

    def event(self, name, payload):
        status, headers, body = self.d.request(
            "POST", f"/2015-03-31/functions/{name}/invocations", body=json.dumps(payload),
            headers={"X-Amz-Invocation-Type": "Event"})
        self.assertEqual(status, 202, body)
        self.assertEqual(body, b"")
        return headers["X-Amzn-RequestId"]

    def records(self, stream):
        return [json.loads(r["Data"]) for r in self.d.stream_records(stream)]

    def test_event_invoke_config(self):
        def get(name):
            r = subprocess.run([AWS, "--endpoint-url", self.d.url, "lambda",
                                "get-function-event-invoke-config", "--function-name", name],
                               capture_output=True, text=True, timeout=60, env=self.aws_env)
            self.assertEqual(r.returncode, 0, r.stderr)
            return json.loads(r.stdout)
        stream = "arn:aws:kinesis:us-east-1:000000000000:stream/"
        worker = get("worker")
        self.assertEqual(worker["FunctionArn"], "arn:aws:lambda:us-east-1:000000000000:function:worker")
        self.assertEqual((worker["MaximumRetryAttempts"], worker["MaximumEventAgeInSeconds"]),
                         (2, 6 * 3600))
        self.assertEqual(worker["DestinationConfig"], {"OnSuccess": {"Destination": stream + "done"},
                                                       "OnFailure": {"Destination": stream + "failed"}})
        once = get("once")
        self.assertEqual(once["MaximumRetryAttempts"], 0)
        self.assertEqual(once["DestinationConfig"], {"OnFailure": {"Destination": stream + "failed"}})
        self.assertEqual(get("slow")["DestinationConfig"], {})

    def test_aws_cli_event_success_goes_to_on_success(self):
        out = os.path.join(self.d.workdir, "out.json")
        r = subprocess.run([AWS, "--endpoint-url", self.d.url, "lambda", "invoke",
                            "--function-name", "worker", "--invocation-type", "Event",
                            "--cli-binary-format", "raw-in-base64-out",
                            "--payload", '{"order": 17}', out],
                           capture_output=True, text=True, timeout=60, env=self.aws_env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["StatusCode"], 202)
        records = wait_for(lambda: self.records("done"))
        self.assertEqual(len(records), 1, records)
        rec = records[0]
        self.assertEqual(rec["version"], "1.0")
        self.assertEqual(rec["requestContext"]["condition"], "Success")
        self.assertEqual(rec["requestContext"]["functionArn"],
                         "arn:aws:lambda:us-east-1:000000000000:function:worker:$LATEST")
        self.assertEqual(rec["requestContext"]["approximateInvokeCount"], 1)
        self.assertEqual(rec["requestPayload"], {"order": 17})
        self.assertEqual(rec["responseContext"]["statusCode"], 200)
        self.assertNotIn("functionError", rec["responseContext"])
        self.assertEqual(rec["responsePayload"]["event"], {"order": 17})
        self.assertRegex(rec["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(self.records("failed"), [])
        # Once done, nothing is kept.
        self.assertTrue(wait_for(lambda: 'edged_function_async_events{function="worker"} 0'
                                 in self.d.request("GET", "/metrics")[2].decode()))

    def test_failure_retried_twice_then_on_failure(self):
        started = time.monotonic()
        request_id = self.event("worker", {"fail": 1, "n": 1})
        records = wait_for(lambda: self.records("failed"), timeout=30)
        elapsed = time.monotonic() - started
        self.assertEqual(len(records), 1, records)
        rec = records[0]
        self.assertEqual(rec["requestContext"]["requestId"], request_id)
        self.assertEqual(rec["requestContext"]["condition"], "RetriesExhausted")
        self.assertEqual(rec["requestContext"]["approximateInvokeCount"], 3)
        self.assertEqual(rec["requestPayload"], {"fail": 1, "n": 1})
        self.assertEqual(rec["responseContext"]["functionError"], "Unhandled")
        self.assertEqual(rec["responsePayload"]["errorType"], "HandlerFailure")
        # Three attempts, all with the same request id, the retries after
        # 300 ms and then 600 ms.
        attempts = log_lines(os.path.join(self.logs, "worker.log"))
        self.assertEqual([a.split()[0] for a in attempts], [request_id] * 3)
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertEqual(self.records("done"), [])

    def test_timeout_and_crash_fail_like_errors(self):
        self.event("once", {"crash": 1})
        records = wait_for(lambda: self.records("failed"), timeout=30)
        self.assertEqual(len(records), 1)
        self.assertEqual(records[0]["requestContext"]["approximateInvokeCount"], 1)
        self.assertEqual(records[0]["responsePayload"]["errorType"], "Runtime.ExitError")
        self.assertEqual(len(log_lines(os.path.join(self.logs, "once.log"))), 1)

    def test_bad_requests(self):
        status, headers, body = self.d.request(
            "POST", "/2015-03-31/functions/worker/invocations", body=b"x" * (256 * 1024 + 1),
            headers={"X-Amz-Invocation-Type": "Event"})
        self.assertEqual(status, 413)
        self.assertEqual(headers["X-Amzn-ErrorType"], "RequestEntityTooLargeException")
        status, headers, body = self.d.request(
            "POST", "/2015-03-31/functions/worker/invocations", body=b"{not json",
            headers={"X-Amz-Invocation-Type": "Event"})
        self.assertEqual(status, 400)
        self.assertEqual(headers["X-Amzn-ErrorType"], "InvalidRequestContentException")
        status, headers, body = self.d.request(
            "POST", "/2015-03-31/functions/nobody/invocations", body=b"{}",
            headers={"X-Amz-Invocation-Type": "Event"})
        self.assertEqual(status, 404)
        status, headers, body = self.d.request(
            "POST", "/2015-03-31/functions/worker/invocations", body=b"{}",
            headers={"X-Amz-Invocation-Type": "Later"})
        self.assertEqual(status, 400)
        self.assertEqual(headers["X-Amzn-ErrorType"], "InvalidParameterValueException")

    def test_kept_across_kill_9(self):
        # One at a time, half a second each: most are still waiting when
        # edged is killed.
        ids = [self.event("slow", {"sleep": 0.5, "n": n}) for n in range(12)]
        self.assertTrue(wait_for(lambda: log_lines(os.path.join(self.logs, "slow.log"))))
        self.d.stop(signal.SIGKILL)
        before = {line.split()[0] for line in log_lines(os.path.join(self.logs, "slow.log"))}
        self.assertLess(len(before), len(ids), "all ran before the kill: nothing was tested")
        self.d.start()
        # Every invocation accepted runs (at least once), none is lost.
        ran = wait_for(lambda: {line.split()[0] for line in
                                log_lines(os.path.join(self.logs, "slow.log"))} >= set(ids),
                       timeout=40)
        self.assertTrue(ran, self.d.log()[-3000:])
        self.assertIn("asynchronous invocations resumed", self.d.log())
        # And none is kept once all have run.
        self.assertTrue(wait_for(lambda: 'edged_function_async_events{function="slow"} 0'
                                 in self.d.request("GET", "/metrics")[2].decode()))

    def test_payload_sealed_at_rest(self):
        self.event("slow", {"sleep": 2, "n": 0})
        secret = "the-secret-in-the-payload"
        self.event("slow", {"secret": secret})
        with open(os.path.join(self.d.data_dir, "state.db"), "rb") as f:
            db = f.read()
        wal = os.path.join(self.d.data_dir, "state.db-wal")
        if os.path.exists(wal):
            with open(wal, "rb") as f:
                db += f.read()
        self.assertNotIn(secret.encode(), db)
        self.assertIn(b"function_events", db)


if __name__ == "__main__":
    unittest.main()
