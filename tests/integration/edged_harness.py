"""Start the real edged binary on a free loopback port with its own data
directory, and talk to it as a user would. Standard library only."""

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

EDGED = os.environ.get("EDGED", "build/edge/edged")
EDGECTL = os.environ.get("EDGECTL", "build/edge/edgectl")
SOURCE_ROOT = os.environ.get("EDGED_SOURCE_ROOT", ".")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def camera_env(env=None):
    """The environment for a daemon that runs cameras. Under AddressSanitizer,
    LeakSanitizer needs whole stacks to match the suppressions for what the
    libraries GStreamer loads allocate once (tests/lsan.supp)."""
    env = dict(env or {})
    asan = os.environ.get("ASAN_OPTIONS")
    if asan is not None:
        env["ASAN_OPTIONS"] = asan + ":fast_unwind_on_malloc=0"
    return env


class Daemon:
    """One edged process. `config` is YAML text appended to the listen and
    data_dir lines this class writes."""

    def __init__(self, workdir=None, config="", tls=None, env=None, data_dir=None, port=None):
        self.own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="edged-it-")
        self.port = port or free_port()
        self.data_dir = data_dir or os.path.join(self.workdir, "data")
        self.tls = tls
        self.config_path = os.path.join(self.workdir, f"edged-{self.port}.yaml")
        lines = [f"data_dir: {self.data_dir}", "gateway:", f"  listen: 127.0.0.1:{self.port}"]
        if tls:
            lines += ["  tls:", f"    cert: {tls[0]}", f"    key: {tls[1]}"]
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n" + config)
        self.stderr_path = os.path.join(self.workdir, f"edged-{self.port}.log")
        self.env = dict(os.environ, **(env or {}))
        self.proc = None

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self, wait=True):
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([EDGED, "--config", self.config_path],
                                     stdout=subprocess.DEVNULL, stderr=self.stderr,
                                     env=self.env, cwd=self.workdir)
        if wait:
            self.wait_ready()
        return self

    @property
    def admin_key(self):
        """The admin key edged writes when authentication is on and it has
        no key yet; None otherwise."""
        try:
            with open(os.path.join(self.data_dir, "admin.key")) as f:
                return f.read().strip()
        except OSError:
            return None

    def wait_ready(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"edged exited with {self.proc.returncode}:\n{self.log()}")
            try:
                key = self.admin_key
                status, _, _ = self.request("GET", "/healthz", timeout=1,
                                            headers={"x-api-key": key} if key else None)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"edged did not answer /healthz within {timeout}s:\n{self.log()}")

    def wait_exit(self, timeout=15):
        try:
            status = self.proc.wait(timeout)
        finally:
            self.stderr.close()
        # Under AddressSanitizer, the leak checker at exit can itself crash
        # while it stops the process's threads ("Tracer caught signal 11",
        # seen once with OpenCV's and GStreamer's threads about): the check
        # did not run, which says nothing of edged. A leak it found, or any
        # other report, still fails.
        log = self.log()
        if (status == -signal.SIGABRT and "LeakSanitizer has encountered a fatal error" in log
                and "Tracer caught signal" in log and "detected memory leaks" not in log
                and "SUMMARY:" not in log):
            sys.stderr.write("edged_harness: the leak checker crashed at exit; no leak check\n")
            return 0
        return status

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait_exit(timeout)

    def log(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def connection(self, timeout=10):
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.tls[0])
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=10):
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def get_json(self, path):
        status, headers, body = self.request("GET", path)
        return status, headers, json.loads(body)

    def kinesis(self, op, body, timeout=10):
        """One Kinesis API call: (status, decoded answer)."""
        status, _, data = self.request(
            "POST", "/", body=json.dumps(body), timeout=timeout,
            headers={"X-Amz-Target": f"Kinesis_20131202.{op}",
                     "Content-Type": "application/x-amz-json-1.1"})
        return status, json.loads(data or b"{}")

    def stream_records(self, stream):
        """Every record of @stream, shard by shard from the oldest, with the
        data decoded from base64."""
        status, desc = self.kinesis("ListShards", {"StreamName": stream})
        assert status == 200, desc
        records = []
        for shard in desc["Shards"]:
            status, it = self.kinesis("GetShardIterator", {
                "StreamName": stream, "ShardId": shard["ShardId"],
                "ShardIteratorType": "TRIM_HORIZON"})
            assert status == 200, it
            iterator = it["ShardIterator"]
            while iterator:
                status, page = self.kinesis("GetRecords", {"ShardIterator": iterator})
                assert status == 200, page
                for r in page["Records"]:
                    r["Data"] = base64.b64decode(r["Data"])
                    records.append(r)
                if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                    break
                iterator = page.get("NextShardIterator")
        return records

    def rss_bytes(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def assert_kept_alive(case, d, path, headers=None, n=5):
    """Asks @d for @path @n times on one connection: each answer is 200 and
    keeps the connection (no Connection header), and all came on the same
    socket. Returns the connection, still open."""
    c = d.connection()
    ports = set()
    for _ in range(n):
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        case.assertEqual(r.status, 200)
        case.assertIsNone(r.getheader("Connection"))
        r.read()
        ports.add(c.sock.getsockname()[1])
    case.assertEqual(len(ports), 1, "each request took a new connection")
    return c


def wait_for(predicate, timeout=30, interval=0.1, what="condition"):
    """@predicate's first true value, polled every @interval seconds; fails
    the test after @timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def mount_tmpfs(case, size, prefix):
    """A tmpfs of @size ("48m") on a new directory, for full-disk tests;
    skips @case where mounting is not allowed. Unmounted and removed at
    the end of the test."""
    mnt = tempfile.mkdtemp(prefix=prefix)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", mnt],
                       capture_output=True, text=True)
    if r.returncode != 0:
        os.rmdir(mnt)
        case.skipTest(f"cannot mount a tmpfs here: {r.stderr.strip()}")

    def unmount():
        subprocess.run(["umount", "-l", mnt])
        os.rmdir(mnt)
    case.addCleanup(unmount)
    return mnt


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kw)


def make_certificate(directory):
    """A self-signed certificate for 127.0.0.1, made with the openssl CLI."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    r = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=edged test",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
    if r.returncode != 0:
        raise AssertionError("openssl: " + r.stderr)
    return cert, key


class WebSocket:
    """A minimal RFC 6455 client (text and binary messages, close), enough to
    test edged's endpoints with the standard library alone."""

    def __init__(self, port, path, timeout=10, headers=None, cafile=None):
        import base64 as b64
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if cafile:
            ctx = ssl.create_default_context(cafile=cafile)
            self.sock = ctx.wrap_socket(self.sock, server_hostname="127.0.0.1")
        key = b64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            head += chunk
        self.status = int(head.split(b" ")[1])
        self.buffer = b""

    def _read(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def recv(self):
        """(opcode, payload) of the next whole message; pings are answered."""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(self._read(2), "big")
            elif n == 127:
                n = int.from_bytes(self._read(8), "big")
            payload = self._read(n)
            opcode = b0 & 0x0F
            if opcode == 9:
                self.send(payload, opcode=10)
                continue
            return opcode, payload

    def recv_json(self):
        opcode, payload = self.recv()
        if opcode == 8:
            raise ConnectionError(f"closed: {payload[:2].hex()} {payload[2:].decode(errors='replace')}")
        return json.loads(payload)

    def send(self, payload, opcode=1):
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            header += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def close(self):
        try:
            self.send(b"\x03\xe8", opcode=8)
        except OSError:
            pass
        self.sock.close()


MOSQUITTO = os.environ.get("MOSQUITTO", shutil.which("mosquitto") or "/usr/sbin/mosquitto")


class Mosquitto:
    """A real mosquitto broker on a free loopback port, with persistence, so
    that a restart keeps sessions and the messages queued for them."""

    def __init__(self, workdir, port=None, extra=""):
        # Run as root, mosquitto changes to its own user: give it a directory
        # it can write its database to.
        self.workdir = tempfile.mkdtemp(prefix="mosquitto-", dir=workdir)
        os.chmod(workdir, 0o755)
        os.chmod(self.workdir, 0o777)
        workdir = self.workdir
        self.port = port or free_port()
        self.conf = os.path.join(workdir, f"mosquitto-{self.port}.conf")
        with open(self.conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                    f"persistence true\npersistence_location {workdir}/\n"
                    "max_queued_messages 1000000\nmax_inflight_messages 100\n" + extra)
        self.log_path = os.path.join(workdir, f"mosquitto-{self.port}.log")
        self.proc = None

    def start(self):
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", self.conf], stdout=self.log_file,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise AssertionError("mosquitto exited: " + open(self.log_path).read())
                time.sleep(0.05)
        raise AssertionError("mosquitto did not listen")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        if self.proc:
            self.log_file.close()

    def restart(self):
        self.stop()
        return self.start()


def _mqtt_string(s):
    b = s.encode() if isinstance(s, str) else s
    return len(b).to_bytes(2, "big") + b


def _mqtt_packet(kind, body):
    n, length = len(body), b""
    while True:
        byte, n = n % 128, n // 128
        length += bytes([byte | (0x80 if n else 0)])
        if not n:
            return bytes([kind]) + length + body


class MqttClient:
    """A minimal MQTT 3.1.1 client over a plain socket: publish at QoS 0 or 1
    with a window of unacknowledged messages, subscribe and receive. Enough to
    drive the tests with exact control over what was acknowledged."""

    def __init__(self, port, client_id, clean=True, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        flags = 0x02 if clean else 0
        body = _mqtt_string("MQTT") + bytes([4, flags]) + (60).to_bytes(2, "big") + \
            _mqtt_string(client_id)
        self.sock.sendall(_mqtt_packet(0x10, body))
        self.buffer = b""
        kind, payload = self.read_packet()
        if kind >> 4 != 2 or payload[1] != 0:
            raise ConnectionError(f"CONNACK refused: {payload.hex()}")
        self.next_mid = 1
        self.unacked = {}  # mid -> key

    def _read(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the broker")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def read_packet(self):
        kind = self._read(1)[0]
        mult, length = 1, 0
        while True:
            byte = self._read(1)[0]
            length += (byte & 0x7F) * mult
            mult *= 128
            if not byte & 0x80:
                break
        return kind, self._read(length)

    def publish(self, topic, payload, qos=1, key=None, retain=False):
        """Sends; for QoS 1 the message counts as unacknowledged (under @key)
        until read_acks sees its PUBACK."""
        body = _mqtt_string(topic)
        if qos:
            mid = self.next_mid
            self.next_mid = self.next_mid % 65535 + 1
            body += mid.to_bytes(2, "big")
            self.unacked[mid] = key
        self.sock.sendall(_mqtt_packet(0x30 | (qos << 1) | int(retain), body + payload))

    def read_acks(self, until_below=0):
        """Reads PUBACKs until fewer than @until_below are outstanding; returns
        the keys acknowledged."""
        done = []
        while len(self.unacked) > until_below:
            kind, payload = self.read_packet()
            if kind >> 4 == 4:
                key = self.unacked.pop(int.from_bytes(payload[:2], "big"), None)
                done.append(key)
        return done

    def subscribe(self, topic, qos=1):
        self.sock.sendall(_mqtt_packet(0x82, (1).to_bytes(2, "big") + _mqtt_string(topic) +
                                       bytes([qos])))
        while True:
            kind, payload = self.read_packet()
            if kind >> 4 == 9:
                return payload[2]

    def receive(self):
        """(topic, payload) of the next PUBLISH (acknowledged if QoS 1)."""
        while True:
            kind, payload = self.read_packet()
            if kind >> 4 != 3:
                continue
            n = int.from_bytes(payload[:2], "big")
            topic = payload[2:2 + n].decode()
            rest = payload[2 + n:]
            if (kind >> 1) & 3:
                self.sock.sendall(_mqtt_packet(0x40, rest[:2]))
                rest = rest[2:]
            return topic, rest

    def close(self):
        try:
            self.sock.sendall(b"\xe0\x00")
        except OSError:
            pass
        self.sock.close()


def publish_all(port, messages, client_id="edged-test-publisher", window=50, rate=None,
                progress=None):
    """Publishes every (topic, payload) at QoS 1 until each is acknowledged,
    reconnecting (and sending the unacknowledged ones again) whenever the
    broker goes away. At most @rate messages a second when given; @progress,
    a list, gets the index of each message as the broker acknowledges it.
    Returns how many connections it took."""
    pending = set(range(len(messages)))
    connections = 0
    started = time.monotonic()
    sent = 0
    while pending:
        try:
            client = MqttClient(port, client_id)
        except OSError:
            time.sleep(0.1)
            continue
        connections += 1
        try:
            queue = sorted(pending)
            while queue or client.unacked:
                paced = False
                while queue and len(client.unacked) < window:
                    if rate and sent >= rate * (time.monotonic() - started):
                        paced = True
                        break
                    i = queue.pop(0)
                    topic, payload = messages[i]
                    client.publish(topic, payload, qos=1, key=i)
                    sent += 1
                if paced and not client.unacked:
                    time.sleep(0.005)
                    continue
                for i in client.read_acks(until_below=window - 1 if queue and not paced else 0):
                    if i in pending:
                        pending.remove(i)
                        if progress is not None:
                            progress.append(i)
            client.close()
        except OSError:
            client.sock.close()
            time.sleep(0.1)
    return connections


NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "node")
NODE = os.path.join(NODE_DIR, "node_modules", ".bin", "node")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def run_node_tests(case, scripts, timeout=240, browser=False, env=None):
    """Runs tests/node's @scripts with node's test runner (the Node 20 that
    tests/node installs from the npm registry) against the edged under test,
    and fails @case with their output if any fails."""
    case.assertTrue(os.path.exists(NODE),
                    "tests/node has no node_modules: run .ci/install-deps --test (it runs npm ci there)")
    if browser:
        case.assertTrue(os.path.exists(CHROMIUM),
                        f"{CHROMIUM} is missing: run .ci/install-deps --test (apt-get install chromium)")
    r = subprocess.run([NODE, "--test", *scripts], cwd=NODE_DIR, capture_output=True, text=True,
                       timeout=timeout,
                       env=dict(os.environ, EDGED=os.path.abspath(os.environ.get("EDGED", EDGED)),
                                **camera_env(), **(env or {})))
    sys.stderr.write(r.stdout[-3000:])
    case.assertEqual(r.returncode, 0, r.stdout[-5000:] + r.stderr[-2000:])
