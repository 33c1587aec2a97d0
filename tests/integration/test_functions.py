"""Functions: an unmodified Node handler under the official runtime interface
client (aws-lambda-ric from npm), custom runtimes (a bash + curl bootstrap,
the Python sample) speaking the Lambda Runtime API, invoked through the Lambda Invoke API with
the AWS CLI and plain HTTP. Timeouts enforced, crashes contained,
invocations served concurrently, environments reused warm and stopped when
idle, errors in Lambda's shapes."""

import base64
import concurrent.futures
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import Daemon  # noqa: E402

AWS = os.environ.get("AWS_CLI", "/usr/bin/aws")
EDGECTL = os.environ.get("EDGECTL", "edgectl")
ROOT = os.environ.get("EDGED_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
BASH_RUNTIME = os.path.join(ROOT, "tests", "functions", "bash", "bootstrap")
HELLO = os.path.join(ROOT, "functions", "examples", "hello", "bootstrap")
NODE_RIC = os.path.join(ROOT, "tests", "functions", "node", "bootstrap")
C_BOOTSTRAP = os.environ.get("C_BOOTSTRAP", os.path.join(ROOT, "build", "tests", "c-bootstrap"))

CONFIG = f"""functions:
  - name: echo
    bootstrap: {BASH_RUNTIME}
    handler: echo.handler
    environment:
      GREETING: hi there
      LANG: C
    memory_mb: 256
    timeout: 1s
    concurrency: 10
    idle_timeout: 2s
  - name: wide
    bootstrap: {BASH_RUNTIME}
    timeout: 30s
    concurrency: 50
  - name: hello
    bootstrap: {HELLO}
  - name: node
    bootstrap: {NODE_RIC}
    handler: index.handler
    memory_mb: 512
  - name: node-missing
    bootstrap: {NODE_RIC}
    handler: missing.handler
  - name: compiled
    bootstrap: {C_BOOTSTRAP}
  - name: exits
    bootstrap: /bin/false
  - name: logger
    bootstrap: {BASH_RUNTIME}
    timeout: 30s
  - name: forky
    bootstrap: {BASH_RUNTIME}
    timeout: 30s
    max_processes: 16
  - name: broken
    bootstrap: {os.path.join(ROOT, "tests", "functions", "broken", "bootstrap")}
  - name: silent
    bootstrap: {os.path.join(ROOT, "tests", "functions", "silent", "bootstrap")}
"""


def children(pid):
    """The processes whose parent is @pid."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


class Functions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(config=CONFIG).start()
        cls.aws_env = dict(os.environ, AWS_ACCESS_KEY_ID="edged", AWS_SECRET_ACCESS_KEY="edged",
                           AWS_DEFAULT_REGION="us-east-1", AWS_PAGER="")

    @classmethod
    def tearDownClass(cls):
        pid = cls.d.proc.pid
        assert cls.d.stop() == 0, cls.d.log()[-3000:]
        # Stopping edged stops every environment with it.
        assert not [p for p in children(pid)], "environments outlived edged"
        cls.d.cleanup()

    def invoke(self, name, payload, headers=None, timeout=30):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.d.request("POST", f"/2015-03-31/functions/{name}/invocations", body=body,
                              headers=headers or {}, timeout=timeout)

    def aws(self, *args):
        return subprocess.run([AWS, "--endpoint-url", self.d.url, *args], capture_output=True,
                              text=True, timeout=60, env=self.aws_env)

    def test_aws_cli_invoke(self):
        out = os.path.join(self.d.workdir, "out.json")
        r = self.aws("lambda", "invoke", "--function-name", "echo", "--cli-binary-format",
                     "raw-in-base64-out", "--payload", '{"hello": "edge"}', out)
        self.assertEqual(r.returncode, 0, r.stderr)
        meta = json.loads(r.stdout)
        self.assertEqual(meta["StatusCode"], 200)
        self.assertEqual(meta["ExecutedVersion"], "$LATEST")
        self.assertNotIn("FunctionError", meta)
        with open(out) as f:
            result = json.load(f)
        self.assertEqual(result["event"], {"hello": "edge"})
        # The standard environment, and the invocation's headers.
        self.assertEqual(result["function"], "echo")
        self.assertEqual(result["handler"], "echo.handler")
        self.assertEqual(result["memory"], "256")
        # The function's own variables, one of them replacing a default.
        self.assertEqual((result["greeting"], result["lang"]), ("hi there", "C"))
        self.assertEqual(result["arn"], "arn:aws:lambda:us-east-1:000000000000:function:echo")
        self.assertEqual(os.path.realpath(result["root"]), os.path.dirname(os.path.realpath(BASH_RUNTIME)))
        self.assertEqual(os.path.realpath(result["cwd"]), os.path.realpath(result["root"]))
        self.assertAlmostEqual(result["deadline"] / 1000, time.time() + 1, delta=1.5)
        # A private, writable /tmp inside edged's data directory.
        self.assertTrue(result["tmp"].startswith(self.d.data_dir), result["tmp"])

        # By ARN, and with the qualifier $LATEST, as SDKs may name it.
        r = self.aws("lambda", "invoke", "--function-name",
                     "arn:aws:lambda:us-east-1:000000000000:function:echo:$LATEST", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            self.assertEqual(json.load(f)["event"], {})

    def test_list_and_get(self):
        r = self.aws("lambda", "list-functions")
        self.assertEqual(r.returncode, 0, r.stderr)
        names = sorted(f["FunctionName"] for f in json.loads(r.stdout)["Functions"])
        self.assertEqual(names, ["broken", "compiled", "echo", "exits", "forky", "hello", "logger",
                                 "node", "node-missing", "silent", "wide"])
        r = self.aws("lambda", "get-function", "--function-name", "echo")
        self.assertEqual(r.returncode, 0, r.stderr)
        config = json.loads(r.stdout)["Configuration"]
        self.assertEqual((config["Timeout"], config["MemorySize"]), (1, 256))
        self.assertEqual(config["Environment"]["Variables"], {"GREETING": "hi there", "LANG": "C"})
        r = self.aws("lambda", "get-function-configuration", "--function-name", "echo")
        self.assertEqual(r.returncode, 0, r.stderr)
        alone = json.loads(r.stdout)
        self.assertEqual(alone["FunctionArn"],
                         "arn:aws:lambda:us-east-1:000000000000:function:echo")
        self.assertEqual((alone["Timeout"], alone["MemorySize"], alone["Handler"]),
                         (1, 256, "echo.handler"))
        self.assertEqual(alone["Environment"], config["Environment"])
        r = self.aws("lambda", "get-function-concurrency", "--function-name", "echo")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), {"ReservedConcurrentExecutions": 10})
        r = self.aws("lambda", "get-function-configuration", "--function-name", "nope")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("ResourceNotFoundException", r.stderr)

    def test_handler_error(self):
        out = os.path.join(self.d.workdir, "error.json")
        r = self.aws("lambda", "invoke", "--function-name", "echo", "--cli-binary-format",
                     "raw-in-base64-out", "--payload", '{"fail": 1}', out)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["FunctionError"], "Unhandled")
        with open(out) as f:
            self.assertEqual(json.load(f), {"errorMessage": "the handler failed",
                                            "errorType": "HandlerFailure"})

    def test_timeout(self):
        start = time.monotonic()
        status, headers, body = self.invoke("echo", {"sleep": 10})
        elapsed = time.monotonic() - start
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("X-Amz-Function-Error"), "Unhandled")
        error = json.loads(body)
        self.assertEqual(error["errorType"], "Sandbox.Timedout")
        self.assertRegex(error["errorMessage"], r"^RequestId: \S+ Error: Task timed out after 1\.00 seconds$")
        # The 1 s timeout holds to within 100 ms (plus this client's own round trip).
        self.assertGreaterEqual(elapsed, 1.0)
        self.assertLess(elapsed, 1.15, elapsed)
        # The killed environment is replaced: the next invocation works.
        status, headers, body = self.invoke("echo", {"after": "timeout"})
        self.assertEqual(status, 200)
        self.assertNotIn("X-Amz-Function-Error", headers)
        self.assertEqual(json.loads(body)["event"], {"after": "timeout"})

    def test_crash_is_contained(self):
        status, headers, body = self.invoke("echo", {"crash": 1})
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("X-Amz-Function-Error"), "Unhandled")
        error = json.loads(body)
        self.assertEqual(error["errorType"], "Runtime.ExitError")
        self.assertIn("Runtime exited with error: exit status 3", error["errorMessage"])
        status, _, _ = self.d.request("GET", "/healthz")
        self.assertEqual(status, 200)
        status, _, body = self.invoke("hello", {"name": "after a crash"})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["message"], "hello, after a crash")
        status, _, body = self.invoke("echo", {"n": 2})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["event"], {"n": 2})

    def test_client_context(self):
        # The AWS CLI's --client-context (base64 of a JSON object) reaches the
        # handler as context.clientContext, through aws-lambda-ric.
        ctx = {"client": {"installation_id": "cam-7"}, "custom": {"zone": "gate"}, "env": {"x": "y\nz"}}
        out = os.path.join(self.d.workdir, "ctx.json")
        r = self.aws("lambda", "invoke", "--function-name", "node", "--client-context",
                     base64.b64encode(json.dumps(ctx).encode()).decode(), out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            self.assertEqual(json.load(f)["clientContext"], ctx)
        # Without one, none.
        status, _, body = self.invoke("node", {})
        self.assertNotIn("clientContext", json.loads(body))
        # Not base64 of a JSON object, or too long: refused in Lambda's shape, not run.
        for bad in ("not base64!", base64.b64encode(b"[1, 2]").decode(), base64.b64encode(b"{").decode(),
                    base64.b64encode(json.dumps({"k": "v" * 3000}).encode()).decode()):
            status, headers, body = self.invoke("node", {}, headers={"X-Amz-Client-Context": bad})
            self.assertEqual(status, 400, bad)
            self.assertEqual(headers.get("X-Amzn-ErrorType"), "InvalidRequestContentException", body)
            self.assertIn("Client context must be a valid Base64-encoded JSON object",
                          json.loads(body)["message"])

    def test_node_handler_under_aws_lambda_ric(self):
        status, headers, body = self.invoke("node", {"from": "node"})
        self.assertEqual(status, 200, body)
        self.assertNotIn("X-Amz-Function-Error", headers, body)
        result = json.loads(body)
        self.assertEqual(result["event"], {"from": "node"})
        self.assertEqual(result["requestId"], headers["X-Amzn-RequestId"])
        self.assertEqual(result["functionName"], "node")
        self.assertEqual(result["memoryLimitInMB"], "512")
        self.assertEqual(result["invokedFunctionArn"],
                         "arn:aws:lambda:us-east-1:000000000000:function:node")
        self.assertTrue(0 < result["remainingMs"] <= 3000, result["remainingMs"])
        # Its console output, in edged's log.
        self.assertIn(f"handling {result['requestId']}", self.d.log())

        # A thrown error comes back as the client reports it.
        status, headers, body = self.invoke("node", {"fail": True})
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("X-Amz-Function-Error"), "Unhandled")
        error = json.loads(body)
        self.assertEqual((error["errorType"], error["errorMessage"]), ("TypeError", "asked to fail"))

        # A handler module that does not exist: the client's init error.
        status, headers, body = self.invoke("node-missing", {})
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("X-Amz-Function-Error"), "Unhandled")
        self.assertEqual(json.loads(body)["errorType"], "Runtime.ImportModuleError")

    def test_memory_limit(self):
        # echo has 256 MB: 64 MiB fits, 400 MiB does not, in the runtime's
        # own children too.
        status, _, body = self.invoke("echo", {"alloc": 64})
        self.assertEqual((status, json.loads(body)), (200, {"alloc": "ok"}))
        status, _, body = self.invoke("echo", {"alloc": 400})
        self.assertEqual((status, json.loads(body)), (200, {"alloc": "failed"}))
        # node has 512 MB: the handler's allocation past it fails inside
        # Node, and the runtime reports the error.
        status, headers, body = self.invoke("node", {"allocMB": 16})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body), {"allocated": 16 * 1024 * 1024})
        status, headers, body = self.invoke("node", {"allocMB": 1024})
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("X-Amz-Function-Error"), "Unhandled")
        self.assertEqual(json.loads(body)["errorType"], "RangeError", body)

    def test_init_error(self):
        status, headers, body = self.invoke("broken", {})
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("X-Amz-Function-Error"), "Unhandled")
        self.assertEqual(json.loads(body), {"errorMessage": "Cannot find module handler",
                                            "errorType": "Runtime.ImportModuleError"})

    def test_runtime_that_never_asks(self):
        start = time.monotonic()
        status, headers, body = self.invoke("silent", {})
        elapsed = time.monotonic() - start
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("X-Amz-Function-Error"), "Unhandled")
        self.assertEqual(json.loads(body)["errorType"], "Sandbox.Timedout")
        self.assertGreater(elapsed, 9.5)
        self.assertLess(elapsed, 12)

    def test_concurrent_invocations_overlap(self):
        n = 50

        def one(i):
            return self.invoke("wide", {"sleep": 4, "i": i}, timeout=60)

        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            results = list(pool.map(one, range(n)))
        spans = []
        for status, headers, body in results:
            self.assertEqual(status, 200, body)
            self.assertNotIn("X-Amz-Function-Error", headers, body)
            r = json.loads(body)
            spans.append((r["start"], r["end"], r["pid"]))
        # Served at once, not one after another: some moment lies inside
        # every handler's run, in 50 distinct environments.
        self.assertLess(max(s for s, _, _ in spans), min(e for _, e, _ in spans))
        self.assertEqual(len({pid for _, _, pid in spans}), n)

    def test_warm_reuse_and_scale_to_zero(self):
        # Two invocations in a row: the second finds the first's environment.
        _, _, first = self.invoke("hello", {})
        _, _, second = self.invoke("hello", {})
        self.assertEqual(json.loads(first)["message"], "hello, world")
        self.assertEqual(json.loads(second)["message"], "hello, world")
        log = self.d.log()
        starts = len(re.findall(r'function "hello": environment \d+ started', log))
        self.assertGreaterEqual(starts, 1)
        # echo's environments stop after its 2 s idle timeout, and no
        # process of theirs is left.
        self.invoke("echo", {"warm": 1})
        pids = [int(p) for p in re.findall(r'function "echo": environment \d+ started \(pid (\d+)\)',
                                            self.d.log())]
        self.assertTrue(pids)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            alive = [p for p in pids if os.path.exists(f"/proc/{p}")]
            if not alive:
                break
            time.sleep(0.2)
        else:
            self.fail(f"echo's environments {alive} did not stop when idle")
        self.assertRegex(self.d.log(), r'function "echo": environment \d+ idle for 2 s, stopping')

    def test_errors_in_lambda_shape(self):
        r = self.aws("lambda", "invoke", "--function-name", "nope", os.devnull)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("ResourceNotFoundException", r.stderr)
        status, headers, body = self.invoke("echo", b"{not json")
        self.assertEqual(status, 400)
        self.assertEqual(headers.get("X-Amzn-ErrorType"), "InvalidRequestContentException")
        self.assertIn("message", json.loads(body))
        status, headers, _ = self.invoke("echo", b"{}", headers={"X-Amz-Invocation-Type": "DryRun"})
        self.assertEqual(status, 204)
        # A body over 6 MiB is refused from its Content-Length, before it is read.
        conn = self.d.connection()
        conn.putrequest("POST", "/2015-03-31/functions/echo/invocations")
        conn.putheader("Content-Length", str(6 * 1024 * 1024 + 1))
        conn.endheaders()
        resp = conn.getresponse()
        self.assertEqual(resp.status, 413)
        conn.close()

    def test_compiled_c_runtime(self):
        # A bootstrap compiled from C (tests/functions/c/bootstrap.c), libc only.
        out = os.path.join(self.d.workdir, "c.json")
        r = self.aws("lambda", "invoke", "--function-name", "compiled", "--cli-binary-format",
                     "raw-in-base64-out", "--payload", '{"sensor": "door", "open": true}', out)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("FunctionError", json.loads(r.stdout))
        with open(out) as f:
            result = json.load(f)
        self.assertEqual(result["runtime"], "c")
        self.assertEqual(result["event"], {"sensor": "door", "open": True})
        self.assertEqual(result["bytes"], len('{"sensor": "door", "open": true}'))
        status, headers, body = self.invoke("compiled", {"fail": True})
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("X-Amz-Function-Error"), "Unhandled")
        self.assertEqual(json.loads(body), {"errorType": "CHandlerError",
                                            "errorMessage": "asked to fail"})
        # Warm: the same environment serves a second invocation.
        status, headers, body = self.invoke("compiled", [1, 2, 3])
        self.assertEqual(json.loads(body)["event"], [1, 2, 3])
        self.assertIn("c handler: " + headers["X-Amzn-RequestId"], self.d.log())

    def test_logs_stream_tail_and_edgectl(self):
        out = os.path.join(self.d.workdir, "tail.json")
        r = self.aws("lambda", "invoke", "--function-name", "logger", "--log-type", "Tail",
                     "--cli-binary-format", "raw-in-base64-out", "--payload", '{"shout": 300000}',
                     out)
        self.assertEqual(r.returncode, 0, r.stderr)
        meta = json.loads(r.stdout)
        tail = base64.b64decode(meta["LogResult"]).decode()
        self.assertLessEqual(len(tail), 4096)
        self.assertIn("after the shout", tail)
        request_id = re.search(r"REPORT RequestId: ([0-9a-f-]+)\tDuration: ", tail).group(1)
        with open(out) as f:
            self.assertEqual(json.load(f)["event"], {"shout": 300000})
        # The lines are records of the function's logs stream, by request id.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            status, _, body = self.d.get_json("/v1/functions/logger/logs?limit=20")
            events = body["events"]
            if any(e["message"].startswith("REPORT RequestId: " + request_id) for e in events):
                break
            time.sleep(0.1)
        self.assertEqual(body["stream"], "function-logs-logger")
        mine = [e["message"] for e in events if e["requestId"] == request_id]
        self.assertTrue(mine[0].startswith("START RequestId: " + request_id), mine[:3])
        self.assertTrue(mine[-1].startswith("REPORT RequestId: " + request_id))
        self.assertIn("handling " + request_id, mine)
        # A line over 256 KiB is cut there; the next line is whole.
        shout = [m for m in mine if m.startswith("xxx")]
        self.assertEqual([len(m) for m in shout], [256 * 1024])
        self.assertIn("after the shout", mine)
        status, _, body = self.d.get_json(f"/v1/functions/logger/logs?request_id={request_id}")
        self.assertEqual({e["requestId"] for e in body["events"]}, {request_id})
        status, _, _ = self.d.get_json("/v1/functions/logger/logs?limit=0")
        self.assertEqual(status, 400)
        # The same stream through the Kinesis API.
        records = self.d.stream_records("function-logs-logger")
        self.assertIn(request_id, {r["PartitionKey"] for r in records})
        # edgectl follows new lines as they come.
        env = dict(os.environ, EDGED_URL=self.d.url)
        follow = subprocess.Popen([EDGECTL, "functions", "logs", "logger", "--follow"], env=env,
                                  stdout=subprocess.PIPE)
        try:
            time.sleep(1)
            status, headers, _ = self.invoke("logger", {"followed": 1})
            new_id = headers["X-Amzn-RequestId"]
            deadline = time.monotonic() + 10
            seen = b""
            fd = follow.stdout.fileno()
            while time.monotonic() < deadline and f"REPORT RequestId: {new_id}".encode() not in seen:
                if select.select([fd], [], [], 0.2)[0]:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    seen += chunk
            seen = seen.decode()
            self.assertIn(f"START RequestId: {new_id}", seen)
            self.assertIn(f"REPORT RequestId: {new_id}", seen)
        finally:
            follow.terminate()
            follow.wait(10)
        r = subprocess.run([EDGECTL, "functions"], env=env, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"(?m)^logger\s+\d+\s+\d+\s+\d+\s+30\.0s\s+128MB")

    def test_process_limit(self):
        # Where edged can make control groups (v2 delegated, or v1 as root), each
        # environment's processes and threads are capped (pids.max).
        if "process limit yes" not in self.d.log():
            self.skipTest("no cgroup pids controller edged may use on this machine")
        status, _, body = self.invoke("forky", {"spawn": 40})
        self.assertEqual(status, 200, body)
        spawned = json.loads(body)["spawned"]
        self.assertGreater(spawned, 0)
        self.assertLess(spawned, 16)
        # The limit is per environment: another function forks freely.
        status, _, body = self.invoke("wide", {"spawn": 40})
        self.assertEqual(json.loads(body)["spawned"], 40)
        # Max Memory Used counts the whole environment (the group), not the bootstrap alone.
        self.assertRegex(self.d.log(), r'function "forky": REPORT .*Max Memory Used: [1-9]\d* MB')

    def test_runtime_that_exits_at_start(self):
        # A bootstrap gone before it asks for an invocation fails the one
        # waiting for it at once, rather than being started again and again.
        started = time.monotonic()
        status, headers, body = self.invoke("exits", {})
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("X-Amz-Function-Error"), "Unhandled")
        self.assertEqual(json.loads(body)["errorType"], "Runtime.ExitError")
        self.assertIn("exit status 1", json.loads(body)["errorMessage"])
        self.assertLess(time.monotonic() - started, 5)

    def test_response_over_6_mib(self):
        # Declared with a Content-Length or sent chunked, a response over the
        # limit fails the invocation in Lambda's shape; the environment lives on.
        for payload in ({"big": 7}, {"big": 7, "chunked": 1}):
            status, headers, body = self.invoke("wide", payload)
            self.assertEqual(status, 200, body)
            self.assertEqual(headers.get("X-Amz-Function-Error"), "Unhandled")
            self.assertEqual(json.loads(body)["errorType"], "Function.ResponseSizeTooLarge")
        status, headers, body = self.invoke("wide", {"after": 1})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body).get("event"), {"after": 1}, body[:300])

    def test_logs_and_metrics(self):
        status, headers, body = self.invoke("hello", {"name": "logs"})
        self.assertEqual(status, 200)
        request_id = headers["X-Amzn-RequestId"]
        log = self.d.log()
        self.assertIn(f'function "hello": START RequestId: {request_id} Version: $LATEST', log)
        self.assertIn(f'function "hello": END RequestId: {request_id}', log)
        report = re.search(rf'function "hello": REPORT RequestId: {request_id}\tDuration: ([0-9.]+) ms'
                           rf'\tBilled Duration: (\d+) ms\tMemory Size: 128 MB\tMax Memory Used: (\d+) MB', log)
        self.assertIsNotNone(report, log[-2000:])
        self.assertGreaterEqual(int(report.group(2)), float(report.group(1)))
        self.assertGreater(int(report.group(3)), 0)
        status, _, metrics = self.d.request("GET", "/metrics")
        text = metrics.decode()
        match = re.search(r'^edged_function_invocations_total\{function="hello",result="success"\} (\d+)',
                          text, re.M)
        self.assertIsNotNone(match, text[-3000:])
        self.assertGreaterEqual(int(match.group(1)), 1)
        self.assertRegex(text, r'(?m)^edged_function_environments\{function="hello"\} [1-9]')
        self.assertRegex(text, r'(?m)^edged_function_duration_seconds_count\{function="hello"\} [1-9]')

    def test_runtime_api_is_per_environment(self):
        # An environment's Runtime API knows only its own invocations.
        self.invoke("hello", {})
        ports = re.findall(r'function "hello": environment \d+ starting \(Runtime API 127\.0\.0\.1:(\d+)\)',
                           self.d.log())
        self.assertTrue(ports)
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", int(ports[-1]), timeout=5)
        conn.request("POST", "/2018-06-01/runtime/invocation/not-mine/response", body=b"{}")
        resp = conn.getresponse()
        self.assertEqual(resp.status, 400)
        self.assertEqual(json.loads(resp.read())["errorType"], "InvalidRequestID")
        conn.close()


class FunctionsApi(unittest.TestCase):
    """Functions created and deleted through /v1/functions, kept across restarts."""

    def test_create_invoke_restart_delete(self):
        d = Daemon(config=f"""functions:
  - name: configured
    bootstrap: {BASH_RUNTIME}
""").start()
        try:
            definition = {"name": "made", "bootstrap": BASH_RUNTIME, "timeout": "5s",
                          "environment": {"GREETING": "from the api"}}
            status, _, body = d.request("POST", "/v1/functions", body=json.dumps(definition))
            self.assertEqual(status, 201, body)
            self.assertEqual(json.loads(body)["timeout_ms"], 5000)
            status, _, body = d.request("POST", "/2015-03-31/functions/made/invocations", body=b"{}")
            self.assertEqual(json.loads(body)["greeting"], "from the api")
            # Refused with the configuration's own messages.
            for bad, message in ((dict(definition), "exists"),
                                 (dict(definition, name="x", timeout="5"), "timeout"),
                                 (dict(definition, name="x", bootstrap="bootstrap"), "absolute"),
                                 (dict(definition, name="x", environment={"AWS_REGION": "eu"}),
                                  "AWS_REGION"),
                                 (dict(definition, name="x", colour="red"), "colour")):
                status, _, body = d.request("POST", "/v1/functions", body=json.dumps(bad))
                self.assertIn(status, (400, 409), body)
                self.assertIn(message, json.loads(body)["error"]["message"])
            status, _, body = d.request("DELETE", "/v1/functions/configured")
            self.assertEqual(status, 409)
            # Kept across a restart.
            self.assertEqual(d.stop(), 0)
            d.start()
            status, _, body = d.request("POST", "/2015-03-31/functions/made/invocations", body=b"{}")
            self.assertEqual(status, 200, body)
            status, _, _ = d.request("DELETE", "/v1/functions/made")
            self.assertEqual(status, 204)
            status, _, _ = d.request("POST", "/2015-03-31/functions/made/invocations", body=b"{}")
            self.assertEqual(status, 404)
            self.assertEqual(d.stop(), 0)
            d.start()
            status, _, _ = d.request("GET", "/v1/functions/made")
            self.assertEqual(status, 404)
        finally:
            d.stop()
            d.cleanup()


class FunctionsConfig(unittest.TestCase):
    def test_bad_bootstrap_is_refused(self):
        tmp = tempfile.mkdtemp(prefix="edged-fn-")
        d = Daemon(workdir=tmp, config="functions:\n  - name: ghost\n    bootstrap: /nonexistent/bootstrap\n")
        try:
            d.start(wait=False)
            self.assertNotEqual(d.wait_exit(), 0)
            self.assertIn("bootstrap /nonexistent/bootstrap is not an executable file", d.log())
        finally:
            d.cleanup()
            subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    unittest.main(verbosity=2)
