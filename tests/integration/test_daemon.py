"""The daemon as a user meets it: started from its binary, spoken to over
HTTP(S) with real clients, stopped with signals."""

import base64
import json
import os
import re
import signal
import socket
import ssl
import stat
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import (EDGECTL, EDGED, Daemon, assert_kept_alive, camera_env, free_port,  # noqa: E402
                           make_certificate, run)


class RunningDaemon(unittest.TestCase):
    """Tests that share one daemon with a small body limit."""

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(config="  max_body_bytes: 64KiB\n").start()

    @classmethod
    def tearDownClass(cls):
        code = cls.d.stop()
        cls.d.cleanup()
        assert code == 0, f"exit status {code}"

    def test_healthz(self):
        status, headers, body = self.d.get_json("/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(body["status"], "ok")
        self.assertEqual(body["checks"], {"state": "ok", "data_dir": "ok"})

    def test_status_describes_the_daemon(self):
        status, _, body = self.d.get_json("/v1/status")
        self.assertEqual(status, 200)
        self.assertRegex(body["instance_id"], r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        self.assertEqual(body["data_dir"], os.path.realpath(self.d.data_dir))
        self.assertEqual(body["gateway"]["url"], self.d.url)
        self.assertEqual(body["encryption"]["cipher"], "AES-256-GCM")
        self.assertGreaterEqual(body["board"]["cpus"], 1)
        self.assertEqual(body["config"], self.d.config_path)

    def test_metrics_are_prometheus_text(self):
        self.d.request("GET", "/healthz")
        status, headers, body = self.d.request("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        text = body.decode()
        sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? '
                            r'(-?[0-9.e+-]+|\+Inf|-Inf|NaN)$')
        families = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ")
                families[name] = kind
            elif line and not line.startswith("#"):
                self.assertRegex(line, sample)
        self.assertEqual(families["edged_http_requests_total"], "counter")
        self.assertEqual(families["edged_http_request_duration_seconds"], "histogram")
        self.assertIn("process_resident_memory_bytes", families)
        m = re.search(r'^edged_http_requests_total\{method="GET",route="/healthz",code="200"\} (\d+)$',
                      text, re.M)
        self.assertIsNotNone(m, text)
        self.assertGreaterEqual(int(m.group(1)), 1)
        self.assertRegex(text, r'edged_http_request_duration_seconds_bucket\{method="GET",'
                               r'route="/healthz",le="\+Inf"\} \d+')
        rss = re.search(r"^process_resident_memory_bytes (\d+)$", text, re.M)
        self.assertGreater(int(rss.group(1)), 1_000_000)

    def test_openapi_lists_the_routes(self):
        status, _, doc = self.d.get_json("/v1/openapi.json")
        self.assertEqual(status, 200)
        self.assertTrue(doc["openapi"].startswith("3."))
        self.assertEqual(doc["info"]["title"], "edged")
        for path in ["/healthz", "/metrics", "/v1/openapi.json", "/v1/status", "/assets/{path}"]:
            self.assertIn(path, doc["paths"])
            self.assertIn("get", doc["paths"][path])
        ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
        self.assertEqual(len(ids), len(set(ids)))
        param = doc["paths"]["/assets/{path}"]["get"]["parameters"][0]
        self.assertEqual((param["name"], param["in"], param["required"]), ("path", "path", True))
        self.assertEqual(doc["components"]["schemas"]["Error"]["type"], "object")

    def test_errors_are_json_in_one_shape(self):
        status, _, body = self.d.request("GET", "/v1/nothing-here")
        self.assertEqual(status, 404)
        self.assertEqual(json.loads(body)["error"]["code"], "NotFound")
        status, headers, body = self.d.request("DELETE", "/healthz")
        self.assertEqual(status, 405)
        self.assertEqual(headers["Allow"], "GET")
        err = json.loads(body)["error"]
        self.assertEqual(err["code"], "MethodNotAllowed")
        self.assertIn("DELETE is not allowed on /healthz", err["message"])

    def test_head_is_answered_like_get(self):
        status, headers, body = self.d.request("HEAD", "/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"")

    def test_oversized_body_refused_before_it_is_read(self):
        # Only the headers are sent; a server that wanted to read the body
        # first would wait forever.
        with socket.create_connection(("127.0.0.1", self.d.port), timeout=5) as s:
            s.sendall(b"POST /v1/status HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 107374182400\r\n\r\n")
            response = recv_response(s)
        head, _, body = response.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 413 "), head)
        self.assertIn(b"Connection: close", head)
        err = json.loads(body)["error"]
        self.assertEqual(err["code"], "PayloadTooLarge")
        self.assertIn("107374182400 bytes is larger than the limit of 65536 bytes", err["message"])

    def test_oversized_body_sent_anyway_does_not_grow_memory(self):
        before = self.d.rss_bytes()
        payload = b"x" * (1 << 20)
        for _ in range(8):
            with socket.create_connection(("127.0.0.1", self.d.port), timeout=10) as s:
                s.sendall(b"POST /v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: 67108864\r\n\r\n")
                sent = 0
                try:
                    for _ in range(64):
                        s.sendall(payload)
                        sent += len(payload)
                except OSError:
                    pass  # the server closed on us, as it should
                try:
                    response = recv_response(s)
                    if response:
                        self.assertTrue(response.startswith(b"HTTP/1.1 413 "), response[:80])
                except OSError:
                    pass
        after = self.d.rss_bytes()
        self.assertLess(after - before, 16 << 20, f"RSS grew from {before} to {after}")
        # And the daemon still answers.
        self.assertEqual(self.d.request("GET", "/healthz")[0], 200)

    def test_chunked_body_over_the_limit_refused(self):
        with socket.create_connection(("127.0.0.1", self.d.port), timeout=5) as s:
            s.sendall(b"POST /v1/status HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n%s\r\n" % (16384, b"y" * 16384)
            try:
                for _ in range(8):
                    s.sendall(chunk)
            except OSError:
                pass
            response = recv_response(s)
        self.assertTrue(response.startswith(b"HTTP/1.1 413 "), response[:80])
        self.assertIn(b"larger than the limit of 65536 bytes", response)

    def test_body_under_the_limit_is_fine(self):
        status, _, _ = self.d.request("POST", "/v1/status", body=b"x" * 60000)
        self.assertEqual(status, 405)  # routed and answered, not refused for size

    def test_connections_are_kept_alive_and_released(self):
        # Requests on one connection reuse it; connections that clients leave
        # after a kept-alive answer do not pile up (Debian 12's libsoup alone
        # would keep each one's socket for good).
        assert_kept_alive(self, self.d, "/healthz").close()
        time.sleep(0.3)
        before = self.open_fds()
        for _ in range(300):
            c = self.d.connection()
            c.request("GET", "/healthz")
            c.getresponse().read()
            c.close()
        deadline = time.monotonic() + 5
        while self.open_fds() - before >= 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertLess(self.open_fds() - before, 10)
        _, _, body = self.d.request("GET", "/metrics")
        self.assertRegex(body.decode(), r"(?m)^edged_http_connections [01]$")

    def test_pipelined_requests_are_answered_in_order(self):
        with socket.create_connection(("127.0.0.1", self.d.port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            s.settimeout(5)
            data = b""
            while chunk := s.recv(65536):  # up to the end the last one asked for
                data += chunk
        statuses = re.findall(rb"HTTP/1.1 (\d{3}) ", data)
        self.assertEqual(statuses, [b"200", b"404", b"200"], data[:400])

    def test_requests_libsoup_takes_midway_through_a_connection(self):
        # Plain requests are read by the gateway itself; a chunked body, an
        # Expect: 100-continue or HTTP/1.0 goes to libsoup, on the same
        # connection, and what follows is answered there too.
        body = json.dumps({"name": "midway", "shards": 1}).encode()
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        with socket.create_connection(("127.0.0.1", self.d.port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            first = recv_until(s, b'"status":"ok"')
            s.sendall(b"POST /v1/streams HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
            second = recv_until(s, b"midway")
            s.sendall(b"POST /v1/streams HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n")
            continued = recv_until(s, b"\r\n\r\n")
            self.assertTrue(continued.startswith(b"HTTP/1.1 100 Continue"), continued)
            s.sendall(b"{}")
            third = recv_until(s, b"}}")
            s.sendall(b"GET /v1/streams/midway HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            fourth = recv_all(s)
        self.assertRegex(first, rb"^HTTP/1.1 200 ")
        self.assertRegex(second, rb"^HTTP/1.1 201 ")
        self.assertRegex(third, rb"^HTTP/1.1 400 ")
        self.assertRegex(fourth, rb"^HTTP/1.1 200 ")
        self.assertIn(b'"name":"midway"', fourth.replace(b" ", b""))

    def test_answers_without_a_body(self):
        with socket.create_connection(("127.0.0.1", self.d.port), timeout=5) as s:
            s.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = recv_all(s)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        self.assertGreater(length, 0)  # the GET's length, without its body
        self.assertTrue(rest.startswith(b"HTTP/1.1 200 "), rest[:100])  # the next answer at once
        self.assertTrue(rest.endswith(b"}"), rest[-100:])

    def test_connection_close_and_http_1_0_end_the_connection(self):
        for request in (b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                        b"GET /healthz HTTP/1.0\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", self.d.port), timeout=5) as s:
                s.sendall(request)
                t0 = time.monotonic()
                data = recv_response(s)  # up to the server's end
                self.assertLess(time.monotonic() - t0, 3)
                self.assertRegex(data, rb"^HTTP/1.\d 200 ")
                self.assertIn(b"Connection: close", data)

    def open_fds(self):
        return len(os.listdir(f"/proc/{self.d.proc.pid}/fd"))

    def test_many_concurrent_clients(self):
        errors = []

        def client():
            try:
                for _ in range(10):
                    status, _, _ = self.d.request("GET", "/healthz")
                    if status != 200:
                        errors.append(status)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

        threads = [threading.Thread(target=client) for _ in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])

    def test_listen_backlog_is_large(self):
        # /proc/net/tcp does not show the backlog; ss does (Send-Q of a LISTEN socket).
        r = run(["ss", "-Hltn", f"sport = :{self.d.port}"])
        if r.returncode != 0:
            self.skipTest("ss (iproute2) is not installed")
        fields = r.stdout.split()
        self.assertGreaterEqual(int(fields[2]), 128, r.stdout)

    def test_web_ui(self):
        status, headers, body = self.d.request("GET", "/")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/html"))
        self.assertIn(b"<title>edged</title>", body)
        self.assertIn(b"/assets/app.js", body)
        status, headers, body = self.d.request("GET", "/assets/app.js")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/javascript"))
        self.assertIn(b"/v1/status", body)
        for path in ["/assets/../edged-web.gresource.xml", "/assets/%2e%2e/index.html",
                     "/assets/nope.js"]:
            self.assertEqual(self.d.request("GET", path)[0], 404, path)

    def test_edgectl_status(self):
        r = run([EDGECTL, "--url", self.d.url, "status"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^edged \S+  ok\n")
        self.assertIn(f"gateway    {self.d.url}", r.stdout)
        r = run([EDGECTL, "status", "--json"], env=dict(os.environ, EDGED_URL=self.d.url))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["gateway"]["url"], self.d.url)

    def test_access_log(self):
        self.d.request("GET", "/healthz?probe=1")
        time.sleep(0.2)
        # The Combined Log Format, and the seconds taken.
        self.assertRegex(self.d.log(), r'INFO  access: 127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:[\d:]{8} '
                                       r'\+0000\] "GET /healthz\?probe=1 HTTP/1\.1" 200 \d+ "-" "-" '
                                       r'\d+\.\d{3}')


def recv_until(s, marker):
    """What comes on @s up to and including @marker (or the end)."""
    data = b""
    s.settimeout(5)
    while marker not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def recv_all(s):
    data = b""
    s.settimeout(5)
    while chunk := s.recv(65536):
        data += chunk
    return data


def recv_response(s, limit=1 << 20):
    data = b""
    s.settimeout(5)
    while len(data) < limit:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        m = re.search(rb"Content-Length: (\d+)", head)
        if sep and m and len(body) >= int(m.group(1)):
            break
    return data


class Lifecycle(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="edged-life-")
        self.daemons = []

    def tearDown(self):
        for d in self.daemons:
            d.cleanup()
        run(["rm", "-rf", self.tmp])

    def daemon(self, **kw):
        d = Daemon(workdir=self.tmp, **kw)
        self.daemons.append(d)
        return d

    def test_sigterm_and_sigint_exit_cleanly(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            d = self.daemon().start()
            self.assertEqual(d.stop(sig), 0, d.log())
            self.assertIn("stopped", d.log())
            with open(os.path.join(d.data_dir, "edged.lock")) as f:
                self.assertEqual(f.read(), "")  # pid cleared on the way out

    def test_data_survives_restart(self):
        d = self.daemon().start()
        first = d.get_json("/v1/status")[2]["instance_id"]
        self.assertEqual(d.stop(), 0)
        d2 = self.daemon(data_dir=d.data_dir).start()
        self.assertEqual(d2.get_json("/v1/status")[2]["instance_id"], first)
        self.assertEqual(d2.stop(), 0)

    def test_second_daemon_on_same_data_dir_refused(self):
        first = self.daemon().start()
        second = self.daemon(data_dir=first.data_dir).start(wait=False)
        self.assertEqual(second.wait_exit(), 1)
        self.assertIn(f"data directory {os.path.realpath(first.data_dir)} is in use by another "
                      f"edged (pid {first.proc.pid})", second.log())
        self.assertEqual(first.request("GET", "/healthz")[0], 200)
        self.assertEqual(first.stop(), 0)

    def test_killed_daemon_leaves_no_stale_lock(self):
        d = self.daemon().start()
        d.stop(signal.SIGKILL)
        d2 = self.daemon(data_dir=d.data_dir).start()
        self.assertEqual(d2.stop(), 0)

    def test_world_readable_key_file_refused(self):
        d = self.daemon().start()
        self.assertEqual(d.stop(), 0)
        key = os.path.join(d.data_dir, "master.key")
        self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)
        os.chmod(key, 0o644)
        d2 = self.daemon(data_dir=d.data_dir).start(wait=False)
        self.assertEqual(d2.wait_exit(), 1)
        self.assertIn(f"master key file {key} has mode 0644", d2.log())
        self.assertIn(f"chmod 600 {key}", d2.log())

    def test_address_in_use_is_a_clear_error(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            d = self.daemon()
            d.port = port
            with open(d.config_path, "w") as f:
                f.write(f"data_dir: {d.data_dir}\ngateway:\n  listen: 127.0.0.1:{port}\n")
            d.start(wait=False)
            self.assertEqual(d.wait_exit(), 1)
            self.assertIn(f"cannot listen on 127.0.0.1:{port}", d.log())

    def test_https(self):
        cert, key = make_certificate(self.tmp)
        d = self.daemon(tls=(cert, key)).start()
        status, _, body = d.get_json("/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(body["status"], "ok")
        self.assertTrue(d.get_json("/v1/status")[2]["gateway"]["tls"])
        # Plain HTTP to the TLS port gets no HTTP answer.
        with socket.create_connection(("127.0.0.1", d.port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(5)
            try:
                data = s.recv(100)
            except (ConnectionResetError, socket.timeout):
                data = b""
            self.assertFalse(data.startswith(b"HTTP/1.1 200"))
        # A client that does not trust the certificate is refused.
        ctx = ssl.create_default_context()
        with socket.create_connection(("127.0.0.1", d.port), timeout=5) as raw:
            with self.assertRaises(ssl.SSLCertVerificationError):
                ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        r = run([EDGECTL, "--url", d.url, "--insecure", "status"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(d.stop(), 0)

    def test_bad_tls_files_refused(self):
        cert, key = make_certificate(self.tmp)
        d = self.daemon(tls=(cert, cert)).start(wait=False)
        self.assertEqual(d.wait_exit(), 1)
        self.assertIn("gateway.tls: cannot use certificate", d.log())

    def test_connection_cap(self):
        d = self.daemon(config="  max_connections: 4\n").start()
        held = []
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
            held.append(s)
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        extra.settimeout(5)
        try:
            data = extra.recv(100)
        except ConnectionResetError:
            data = b""
        self.assertEqual(data, b"")
        extra.close()
        for s in held:
            s.close()
        time.sleep(0.3)
        self.assertEqual(d.request("GET", "/healthz")[0], 200)
        status, _, body = d.request("GET", "/metrics")
        self.assertRegex(body.decode(), r'edged_http_connections_rejected_total\{reason="total"\} [1-9]')
        self.assertEqual(d.stop(), 0)

    def test_idle_connections_give_way_at_the_cap(self):
        d = self.daemon(config="  max_connections: 4\n").start()
        idle = []
        for _ in range(4):  # each answered once, then kept alive and idle
            s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 200 "))
            idle.append(s)
        newer = []
        for _ in range(3):  # new clients are served; an idle connection ends for each
            s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 200 "))
            newer.append(s)
        ended = 0
        for s in idle:
            s.settimeout(0.5)
            try:
                while s.recv(4096):
                    pass
                ended += 1  # closed by the server
            except socket.timeout:
                pass
            s.close()
        self.assertEqual(ended, 3)
        for s in newer:
            s.close()
        status, _, body = d.request("GET", "/metrics")
        self.assertNotRegex(body.decode(), r'edged_http_connections_rejected_total\{reason="total"\} [1-9]')
        self.assertEqual(d.stop(), 0)

    def test_idle_connections_do_not_keep_their_requests(self):
        # 16 clients each put 4 MiB and keep their connection: what the
        # daemon holds afterwards does not grow with them (a kept-alive
        # connection holds its last message's headers, not its bodies).
        env = {}
        if os.environ.get("ASAN_OPTIONS") is not None:  # freed memory is reused at once
            env["ASAN_OPTIONS"] = (os.environ["ASAN_OPTIONS"] +
                                   ":quarantine_size_mb=0:thread_local_quarantine_size_kb=0")
        d = self.daemon(config="streams:\n  - name: big\n    durability: none\n", env=env).start()
        data = base64.b64encode(os.urandom(6400)).decode()
        body = json.dumps({"StreamName": "big", "Records": [
            {"Data": data, "PartitionKey": f"k{i}"} for i in range(500)]}).encode()
        self.assertGreater(len(body), 4 << 20)
        headers = {"X-Amz-Target": "Kinesis_20131202.PutRecords",
                   "Content-Type": "application/x-amz-json-1.1"}

        def put(c):
            c.request("POST", "/", body=body, headers=headers)
            r = c.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(json.loads(r.read())["FailedRecordCount"], 0)

        warm = d.connection(timeout=30)
        for _ in range(3):
            put(warm)
        warm.close()
        time.sleep(0.3)
        before = d.rss_bytes()
        kept = []
        for _ in range(16):
            c = d.connection(timeout=30)
            put(c)
            kept.append(c)
        grown = d.rss_bytes() - before
        for c in kept:
            c.close()
        self.assertLess(grown, 24 << 20, f"RSS grew {grown >> 20} MiB with 16 idle connections")
        self.assertEqual(d.stop(), 0)

    def test_sd_notify(self):
        sock_path = os.path.join(self.tmp, "notify.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.bind(sock_path)
            s.settimeout(10)
            d = self.daemon(env={"NOTIFY_SOCKET": sock_path}).start()
            ready = s.recv(4096).decode()
            self.assertIn("READY=1", ready)
            self.assertIn(f"STATUS=serving on {d.url}", ready)
            d.proc.send_signal(signal.SIGTERM)
            self.assertEqual(s.recv(4096).decode(), "STOPPING=1")
            self.assertEqual(d.wait_exit(), 0)

    def test_journald_priority_prefix(self):
        # Under systemd, stderr is the journal stream named by JOURNAL_STREAM.
        d = self.daemon()
        st = os.stat(d.stderr_path) if os.path.exists(d.stderr_path) else None
        open(d.stderr_path, "wb").close()
        st = os.stat(d.stderr_path)
        d.env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        # The file is reopened by start(); keep the same inode by appending.
        d.start()
        self.assertEqual(d.stop(), 0)
        self.assertRegex(d.log(), r"(?m)^<5>NOTICE edged: ready: open ")

    def test_set_overrides_config(self):
        port = free_port()
        log = os.path.join(self.tmp, "set.log")
        with open(log, "wb") as err:
            p = __import__("subprocess").Popen(
                [EDGED, "--set", f"gateway.listen=127.0.0.1:{port}",
                 "--set", f"data_dir={os.path.join(self.tmp, 'setdata')}", "--set", "log.level=debug"],
                stderr=err, cwd=self.tmp, env=dict(os.environ, **camera_env()))  # the demo camera
            try:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    try:
                        with socket.create_connection(("127.0.0.1", port), timeout=1):
                            break
                    except OSError:
                        time.sleep(0.05)
                p.send_signal(signal.SIGTERM)
                self.assertEqual(p.wait(10), 0)
            finally:
                if p.poll() is None:
                    p.kill()
        with open(log) as f:
            self.assertIn(f"ready: open http://127.0.0.1:{port}/", f.read())
        r = run([EDGED, "--set", "gateway.lissen=x"])
        self.assertEqual(r.returncode, 2)
        self.assertIn('gateway.lissen: unknown key (did you mean "gateway.listen"?)', r.stderr)


class CommandLine(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="edged-cli-")

    def tearDown(self):
        run(["rm", "-rf", self.tmp])

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_check_config(self):
        good = self.write("good.yaml", "gateway:\n  listen: 0.0.0.0:8443\n")
        bad = self.write("edged.yaml", "data_dir: /var/lib/edged\n" + "\n" * 12 +
                         "gateway:\n  listen: \"80\"\n")
        for prog in ([EDGED, "--check-config"], [EDGECTL, "check-config"]):
            r = run(prog + [good])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, f"{good}: valid\n")
            r = run(prog + [bad])
            self.assertEqual(r.returncode, 2)
            self.assertEqual(r.stderr, f'{bad}:15: gateway.listen: expected HOST:PORT, got "80"\n')
            r = run(prog + [os.path.join(self.tmp, "missing.yaml")])
            self.assertEqual(r.returncode, 2)
            self.assertIn("missing.yaml", r.stderr)

    def test_invalid_config_exits_2(self):
        bad = self.write("bad.yaml", "log:\n  level: chatty\n")
        r = run([EDGED, "--config", bad])
        self.assertEqual(r.returncode, 2)
        self.assertIn(f'{bad}:2: log.level: expected one of error, warning, info, debug, got "chatty"',
                      r.stderr)

    def test_default_config_prints_and_validates(self):
        r = run([EDGED, "--print-default-config"])
        self.assertEqual(r.returncode, 0)
        self.assertIn('listen: "127.0.0.1:8080"', r.stdout)
        self.assertIn('data_dir: "edged-data"', r.stdout)
        path = self.write("default.yaml", r.stdout)
        self.assertEqual(run([EDGED, "--check-config", path]).returncode, 0)

    def test_edgectl_without_daemon(self):
        r = run([EDGECTL, "--url", f"http://127.0.0.1:{free_port()}", "status"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot reach edged at", r.stderr)
        self.assertIn("is edged running?", r.stderr)
        self.assertEqual(run([EDGECTL, "frobnicate"]).returncode, 2)

    def test_rotate_master_key(self):
        data = os.path.join(self.tmp, "data")
        cfg = self.write("rot.yaml", f"data_dir: {data}\n")
        d = Daemon(workdir=self.tmp, data_dir=data).start()
        # Not while the daemon holds the directory.
        r = run([EDGED, "--config", cfg, "--rotate-master-key"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("in use by another edged", r.stderr)
        self.assertEqual(d.stop(), 0)
        r = run([EDGED, "--config", cfg, "--rotate-master-key"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("key 2 is now active (2 keys)", r.stdout)
        d2 = Daemon(workdir=self.tmp, data_dir=data).start()
        enc = d2.get_json("/v1/status")[2]["encryption"]
        self.assertEqual((enc["active_key_id"], enc["keys"]), (2, 2))
        self.assertEqual(d2.stop(), 0)

    def test_version_and_help(self):
        r = run([EDGED, "--version"])
        self.assertRegex(r.stdout, r"^edged \d+\.\d+\.\d+\n$")
        r = run([EDGED, "--help"])
        self.assertIn("--check-config", r.stdout)
        r = run([EDGED, "--no-such-flag"])
        self.assertEqual(r.returncode, 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
