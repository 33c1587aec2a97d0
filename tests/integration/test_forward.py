"""Forwarders against real servers on loopback: kinesalite (npm), another
edged checking SigV4 and throttling records one by one, and a three-node
NATS JetStream cluster (Debian's nats-server) read back with the official
NATS client (npm). Every record arrives at least once and in order per
partition key, through partial failures, destination outages, a SIGKILL of
edged and a JetStream node killed and restarted mid-way; lag is reported in
records, bytes and seconds and drains."""

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import (EDGECTL, SOURCE_ROOT, Daemon, free_port, make_certificate,  # noqa: E402
                           wait_for)

NODE_BIN = os.path.join(SOURCE_ROOT, "tests/node/node_modules/.bin")
NODE = os.path.join(NODE_BIN, "node")
AWS = "/usr/bin/aws" if os.path.exists("/usr/bin/aws") else "aws"
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
AKID, SECRET = "AKIDFORWARDER", "forwarder-secret"
AWS_ENV = {"AWS_ACCESS_KEY_ID": AKID, "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_PAGER": ""}


def listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class KinesisReader:
    """Kinesis's JSON API over HTTP/1.1, for reading a mirror back."""

    def __init__(self, port, headers=None):
        self.port = port
        self.headers = headers or {}

    def call(self, op, body):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("POST", "/", body=json.dumps(body), headers=dict(
                self.headers, **{"X-Amz-Target": f"Kinesis_20131202.{op}",
                                 "Content-Type": "application/x-amz-json-1.1"}))
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"{}")
        finally:
            conn.close()

    def records(self, stream):
        status, desc = self.call("DescribeStream", {"StreamName": stream})
        assert status == 200, desc
        out = []
        for shard in desc["StreamDescription"]["Shards"]:
            status, it = self.call("GetShardIterator", {
                "StreamName": stream, "ShardId": shard["ShardId"],
                "ShardIteratorType": "TRIM_HORIZON"})
            assert status == 200, it
            iterator = it["ShardIterator"]
            while iterator:
                status, page = self.call("GetRecords", {"ShardIterator": iterator,
                                                        "Limit": 10000})
                assert status == 200, page
                for r in page["Records"]:
                    out.append((r["PartitionKey"], base64.b64decode(r["Data"])))
                if not page["Records"]:
                    break
                iterator = page.get("NextShardIterator")
        return out


class Kinesalite:
    def __init__(self, workdir):
        self.port = free_port()
        self.path = os.path.join(workdir, f"kinesalite-{self.port}")
        os.makedirs(self.path)
        self.proc = None
        # kinesalite wants a SigV4-shaped Authorization header (and does not
        # check the signature).
        self.reader = KinesisReader(self.port, {
            "Authorization": f"AWS4-HMAC-SHA256 Credential={AKID}/20260101/us-east-1/kinesis/"
                             "aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
            "X-Amz-Date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())})

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.log = open(self.path + ".log", "ab")
        self.proc = subprocess.Popen(
            [NODE, os.path.join(NODE_BIN, "kinesalite"), "--port", str(self.port),
             "--path", self.path, "--createStreamMs", "0", "--deleteStreamMs", "0"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: listening(self.port), timeout=30, what="kinesalite listening")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def aws(self, *args):
        r = subprocess.run([AWS, "--endpoint-url", self.endpoint, "kinesis", *args],
                           capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, **AWS_ENV))
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout) if r.stdout.strip() else None


class NatsCluster:
    """Three nats-server processes in one JetStream cluster."""

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "nats")
        self.ports = [free_port() for _ in range(3)]
        self.cluster_ports = [free_port() for _ in range(3)]
        self.procs = [None] * 3
        self.logs = [None] * 3

    @property
    def servers(self):
        return ",".join(f"nats://127.0.0.1:{p}" for p in self.ports)

    def start_node(self, i):
        conf = os.path.join(self.dir, f"n{i}.conf")
        routes = ", ".join(f"nats-route://127.0.0.1:{p}" for j, p in enumerate(self.cluster_ports)
                           if j != i)
        os.makedirs(os.path.join(self.dir, f"n{i}"), exist_ok=True)
        with open(conf, "w") as f:
            f.write(f"""server_name: n{i}
listen: 127.0.0.1:{self.ports[i]}
jetstream {{ store_dir: "{os.path.join(self.dir, f"n{i}")}" }}
cluster {{
  name: edged-test
  listen: 127.0.0.1:{self.cluster_ports[i]}
  routes: [{routes}]
}}
""")
        self.logs[i] = open(os.path.join(self.dir, f"n{i}.log"), "ab")
        self.procs[i] = subprocess.Popen([NATS_SERVER, "-c", conf], stdout=self.logs[i],
                                         stderr=subprocess.STDOUT)
        wait_for(lambda: listening(self.ports[i]), timeout=30, what=f"nats-server n{i}")

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        for i in range(3):
            self.start_node(i)
        return self

    def start_single(self, name, extra=""):
        """A standalone JetStream server in node 0's place, its configuration
        @extra (TLS, authorization) after the listen and store lines."""
        os.makedirs(self.dir, exist_ok=True)
        conf = os.path.join(self.dir, f"{name}.conf")
        with open(conf, "w") as f:
            f.write(f"listen: 127.0.0.1:{self.ports[0]}\n"
                    f"jetstream {{ store_dir: \"{self.dir}/{name}\" }}\n{extra}")
        self.logs[0] = open(os.path.join(self.dir, f"{name}.log"), "ab")
        self.procs[0] = subprocess.Popen([NATS_SERVER, "-c", conf], stdout=self.logs[0],
                                         stderr=subprocess.STDOUT)
        wait_for(lambda: listening(self.ports[0]), timeout=30, what=f"nats-server ({name})")

    def connected_node(self, pid):
        """The node the process @pid has its client connection to."""
        out = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True,
                             text=True, check=True).stdout
        for line in out.splitlines():
            if f"pid={pid}," in line:
                peer = line.split()[3]
                port = int(peer.rsplit(":", 1)[1])
                if port in self.ports:
                    return self.ports.index(port)
        raise AssertionError(f"process {pid} has no connection to the cluster:\n{out}")

    def kill(self, i):
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()
        self.logs[i].close()

    def stop(self):
        for i in range(3):
            if self.procs[i] and self.procs[i].poll() is None:
                self.kill(i)

    def read(self, stream, *tls):
        r = subprocess.run([NODE, os.path.join(SOURCE_ROOT, "tests/node/jetstream-read.mjs"),
                            self.servers, stream, *tls], capture_output=True, text=True,
                           timeout=120,
                           cwd=os.path.join(SOURCE_ROOT, "tests/node"))
        assert r.returncode == 0, r.stderr
        return [json.loads(line) for line in r.stdout.splitlines()]


def put(d, stream, start, count, keys=20, headers=None):
    """Records {"k": KEY, "n": N} for N in [start, start + count), key kN%keys."""
    for s in range(start, start + count, 500):
        batch = [{"PartitionKey": f"k{n % keys}",
                  "Data": base64.b64encode(json.dumps({"k": f"k{n % keys}", "n": n}).encode())
                  .decode()} for n in range(s, min(s + 500, start + count))]
        status, _, body = d.request("POST", "/", body=json.dumps(
            {"StreamName": stream, "Records": batch}), timeout=30, headers=dict(
                headers or {}, **{"X-Amz-Target": "Kinesis_20131202.PutRecords",
                                  "Content-Type": "application/x-amz-json-1.1"}))
        out = json.loads(body)
        assert status == 200 and out["FailedRecordCount"] == 0, out


def drained(d, name, timeout, what):
    """Waits for @name's lag to reach 0; the failure shows why not."""
    try:
        wait_for(lambda: forwarder(d, name)["lag_records"] == 0, timeout=timeout, what=what)
    except AssertionError as e:
        raise AssertionError(f"{e}: {forwarder(d, name)}\n{d.log()[-3000:]}") from None


def refused(d, name, what):
    """@name's status once it reports an error (its destination refusing it)."""
    wait_for(lambda: "last_error" in forwarder(d, name), timeout=30, what=what)
    return forwarder(d, name)


def forwarder(d, name):
    code, _, body = d.get_json(f"/v1/forwarders/{name}")
    assert code == 200, body
    return body


def check_order(case, pairs, expected):
    """@pairs: (partition key, data) as they landed upstream, in shard
    order. Every record at least once, and within each key the numbers
    never go back (a duplicate may only repeat the latest)."""
    seen = {}
    got = set()
    for key, data in pairs:
        rec = json.loads(data)
        case.assertEqual(rec["k"], key)
        seen.setdefault(key, []).append(rec["n"])
        got.add(rec["n"])
    case.assertEqual(got, set(expected))
    for key, ns in seen.items():
        case.assertEqual(ns, sorted(ns), f"{key} out of order")
    return sum(len(v) for v in seen.values())


class ForwardCase(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="edged-forward-")
        self.addCleanup(shutil.rmtree, self.work, ignore_errors=True)

    def daemon(self, config, data_dir=None, port=None):
        d = Daemon(workdir=self.work, config=config, data_dir=data_dir, port=port)
        self.addCleanup(d.cleanup)
        return d


class KinesisTest(ForwardCase):
    def kinesalite(self):
        k = Kinesalite(self.work).start()
        self.addCleanup(k.stop)
        k.aws("create-stream", "--stream-name", "mirror", "--shard-count", "3")
        return k

    def config(self, endpoint, extra=""):
        return f"""
streams:
  - name: readings
    shards: 4
forwarders:
  - name: up
    stream: readings
    destination: kinesis
    endpoint: {endpoint}
    target_stream: mirror
    access_key_id: {AKID}
    secret_access_key: {SECRET}
{extra}"""

    def test_mirror_in_kinesalite_reads_back_in_order(self):
        k = self.kinesalite()
        d = self.daemon(self.config(k.endpoint)).start()
        put(d, "readings", 0, 6000)
        drained(d, "up", 60, "lag drained")
        st = forwarder(d, "up")
        self.assertEqual(st["forwarded_records"], 6000)
        self.assertEqual((st["lag_bytes"], st["lag_seconds"], st["in_flight_records"]), (0, 0, 0))
        # Ordered: one record of each of the 20 keys per request at most.
        self.assertGreaterEqual(st["requests"], 6000 // 20)
        n = check_order(self, k.reader.records("mirror"), range(6000))
        self.assertEqual(n, 6000)  # kinesalite never fails a record: exactly once
        # The AWS CLI sees the same stream.
        desc = k.aws("describe-stream-summary", "--stream-name", "mirror")
        self.assertEqual(desc["StreamDescriptionSummary"]["OpenShardCount"], 3)
        out = subprocess.run([EDGECTL, "--url", d.url, "forwarders"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
        self.assertRegex(out, r"up +readings +kinesis +\S+ +0 +0 +0s +6000")
        metrics = d.request("GET", "/metrics")[2].decode()
        self.assertIn('edged_forwarder_records_total{forwarder="up"} 6000', metrics)
        self.assertIn('edged_forwarder_lag_records{forwarder="up"} 0', metrics)

    def test_outage_and_sigkill_lose_nothing_and_lag_drains(self):
        k = self.kinesalite()
        d = self.daemon(self.config(k.endpoint)).start()
        put(d, "readings", 0, 1000)
        drained(d, "up", 60, "first drain")
        k.stop()
        put(d, "readings", 1000, 2000)
        time.sleep(2.5)
        st = forwarder(d, "up")
        self.assertEqual(st["lag_records"], 2000)  # nothing checkpointed while it is down
        self.assertGreater(st["lag_bytes"], 2000 * 20)
        self.assertGreaterEqual(st["lag_seconds"], 2)
        self.assertIn("last_error", st)
        # A crash meanwhile loses nothing either: the checkpoint did not move.
        d.stop(signal.SIGKILL)
        d.start()
        put(d, "readings", 3000, 1000)
        self.assertEqual(forwarder(d, "up")["lag_records"], 3000)
        k.start()
        drained(d, "up", 90, "lag drained after the outage")
        self.assertEqual(forwarder(d, "up")["lag_seconds"], 0)
        check_order(self, k.reader.records("mirror"), range(4000))

    def test_partial_failures_keep_each_keys_order(self):
        """The upstream edged throttles its one shard to 300 records/s, so
        PutRecords answers partly failed requests; it checks SigV4 too."""
        creds = os.path.join(self.work, "credentials")
        with open(creds, "w") as f:
            f.write(f"[default]\naws_access_key_id = {AKID}\n"
                    f"aws_secret_access_key = {SECRET}\n")
        central = self.daemon(f"""  auth:
    enabled: "on"
    sigv4:
      credentials_file: {creds}
streams:
  - name: mirror
    shards: 1
    write_records_per_second: 300
""", data_dir=os.path.join(self.work, "central")).start()
        d = self.daemon(self.config(central.url, extra=f"""  - name: forged
    stream: readings
    destination: kinesis
    endpoint: {central.url}
    target_stream: mirror
    access_key_id: {AKID}
    secret_access_key: not-the-secret
"""), data_dir=os.path.join(self.work, "box")).start()
        put(d, "readings", 0, 3000, keys=10)
        drained(d, "up", 120, "lag drained through throttling")
        st = forwarder(d, "up")
        self.assertGreater(st["failed_requests"], 0, st)  # throttled for real
        self.assertGreater(st["retried_records"], 0, st)
        reader = KinesisReader(central.port, {"x-api-key": central.admin_key})
        n = check_order(self, reader.records("mirror"), range(3000))
        self.assertEqual(n, 3000)  # throttled records are not stored: no duplicates
        # Signed with the wrong secret: refused, nothing checkpointed.
        forged = forwarder(d, "forged")
        self.assertEqual(forged["lag_records"], 3000)
        self.assertIn("InvalidSignatureException", forged["last_error"])

    def test_config_errors(self):
        cases = [
            (self.config("ftp://x"), "kinesis needs endpoint"),
            (self.config("http://127.0.0.1:1", extra="    batch_records: 501\n"),
             "at most 500"),
            (self.config("http://127.0.0.1:1").replace("destination: kinesis",
                                                       "destination: nats"),
             "nats needs servers"),
            (self.config("http://127.0.0.1:1").replace(
                "destination: kinesis", "destination: nats\n    servers: nats://h:1\n"
                "    subject: a.*.b"), "subject must be a NATS subject"),
        ]
        for text, message in cases:
            path = os.path.join(self.work, "bad.yaml")
            with open(path, "w") as f:
                f.write(f"data_dir: {self.work}/data\n" + text)
            r = subprocess.run([os.environ.get("EDGED", "edged"), "--check-config", path],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 2, r.stdout)
            self.assertIn(message, r.stderr)
            self.assertIn("forwarders[0] (up)", r.stderr)


class JetStreamTest(ForwardCase):
    def test_three_node_cluster_with_a_node_killed_mid_way(self):
        cluster = NatsCluster(self.work).start()
        self.addCleanup(cluster.stop)
        d = self.daemon(f"""
streams:
  - name: readings
    shards: 2
forwarders:
  - name: fleet
    stream: readings
    destination: nats
    servers: {cluster.servers}
    jetstream_stream: EDGED
    replicas: 3
    source: site-1
""").start()
        put(d, "readings", 0, 3000)
        drained(d, "fleet", 60, "first 3000 upstream")
        # Kill the node edged is connected to while records flow, then
        # bring it back.
        node = cluster.connected_node(d.proc.pid)
        put(d, "readings", 3000, 1500)
        cluster.kill(node)
        put(d, "readings", 4500, 1500)
        time.sleep(1)
        put(d, "readings", 6000, 1500)
        cluster.start_node(node)
        put(d, "readings", 7500, 1500)
        drained(d, "fleet", 120, "every record upstream after the node came back")
        st = forwarder(d, "fleet")
        self.assertEqual(st["subject"], "edged.site-1.readings")
        msgs = cluster.read("EDGED")
        pairs = []
        for m in msgs:
            self.assertEqual(m["subject"], "edged.site-1.readings")
            h = m["headers"]
            self.assertEqual((h["Edged-Source"], h["Edged-Stream"]), ("site-1", "readings"))
            self.assertTrue(h["Nats-Msg-Id"].startswith("site-1/readings/"))
            pairs.append((h["Edged-Partition-Key"], base64.b64decode(m["data"])))
        check_order(self, pairs, range(9000))

    def test_outage_from_the_start_and_sigkill(self):
        """No server at first (the box came up before the network), a
        SIGKILL meanwhile; then a single-node JetStream appears."""
        cluster = NatsCluster(self.work)
        self.addCleanup(cluster.stop)
        d = self.daemon(f"""
streams:
  - name: readings
forwarders:
  - name: fleet
    stream: readings
    destination: nats
    servers: nats://127.0.0.1:{cluster.ports[0]}
    jetstream_stream: EDGED
    subject: site.{{source}}.{{stream}}
    source: box-7
""").start()
        put(d, "readings", 0, 500)
        time.sleep(2)
        st = forwarder(d, "fleet")
        self.assertEqual(st["lag_records"], 500)
        self.assertIn("connect", st["last_error"])
        d.stop(signal.SIGKILL)
        d.start()
        # One node alone: its cluster block names routes that are not
        # there, which nats-server tolerates; JetStream needs a quorum, so
        # run it standalone instead.
        cluster.start_single("single")
        put(d, "readings", 500, 500)
        drained(d, "fleet", 60, "lag drained once the server came")
        cluster.ports = cluster.ports[:1]
        pairs = [(m["headers"]["Edged-Partition-Key"], base64.b64decode(m["data"]))
                 for m in cluster.read("EDGED")]
        self.assertEqual({m["subject"] for m in cluster.read("EDGED")}, {"site.box-7.readings"})
        check_order(self, pairs, range(1000))


class JetStreamTlsTest(ForwardCase):
    def test_tls_and_a_password(self):
        """A server with TLS and a user: the CA given, records go; without
        it, the certificate is refused and nothing is checkpointed."""
        cluster = NatsCluster(self.work)
        self.addCleanup(cluster.stop)
        os.makedirs(cluster.dir, exist_ok=True)
        cert, key = make_certificate(cluster.dir)
        cluster.start_single("tls", f"tls {{ cert_file: \"{cert}\"\n key_file: \"{key}\" }}\n"
                                    f"authorization {{ user: edge\n password: s3cret }}\n")
        url = f"tls://edge:s3cret@127.0.0.1:{cluster.ports[0]}"
        d = self.daemon(f"""
streams:
  - name: readings
forwarders:
  - name: secure
    stream: readings
    destination: nats
    servers: {url}
    tls_ca_file: {cert}
    jetstream_stream: SECURE
  - name: unchecked
    stream: readings
    destination: nats
    servers: {url}
    subject: other.{{stream}}
""").start()
        put(d, "readings", 0, 500)
        drained(d, "secure", 60, "500 records over TLS")
        self.assertEqual(forwarder(d, "secure")["forwarded_records"], 500)
        st = refused(d, "unchecked", "the unchecked certificate refused")
        self.assertEqual(st["lag_records"], 500)
        self.assertRegex(st["last_error"], r"(?i)ssl|certificate|tls")
        msgs = cluster.read("SECURE", cert, "edge", "s3cret")
        self.assertEqual(sorted(json.loads(base64.b64decode(m["data"]))["n"] for m in msgs),
                         list(range(500)))

    def test_client_certificate(self):
        """A server that asks for a client certificate (verify): with
        tls_cert_file and tls_key_file, records go and are acknowledged;
        without them, the handshake fails and nothing is checkpointed."""
        cluster = NatsCluster(self.work)
        self.addCleanup(cluster.stop)
        server_dir = os.path.join(cluster.dir, "server")
        client_dir = os.path.join(cluster.dir, "client")
        os.makedirs(server_dir)
        os.makedirs(client_dir)
        cert, key = make_certificate(server_dir)
        client_cert, client_key = make_certificate(client_dir)
        cluster.start_single("mtls", f"tls {{ cert_file: \"{cert}\"\n key_file: \"{key}\"\n"
                                     f" ca_file: \"{client_cert}\"\n verify: true }}\n")
        url = f"tls://127.0.0.1:{cluster.ports[0]}"
        d = self.daemon(f"""
streams:
  - name: readings
forwarders:
  - name: mutual
    stream: readings
    destination: nats
    servers: {url}
    tls_ca_file: {cert}
    tls_cert_file: {client_cert}
    tls_key_file: {client_key}
    jetstream_stream: MUTUAL
  - name: anonymous
    stream: readings
    destination: nats
    servers: {url}
    tls_ca_file: {cert}
    subject: other.{{stream}}
""").start()
        put(d, "readings", 0, 300)
        drained(d, "mutual", 60, "300 records with a client certificate")
        self.assertEqual(forwarder(d, "mutual")["forwarded_records"], 300)
        st = refused(d, "anonymous", "the connection without a certificate refused")
        self.assertEqual(st["lag_records"], 300)
        self.assertEqual(st.get("forwarded_records", 0), 0)
        self.assertRegex(st["last_error"], r"(?i)connect|tls|ssl|certificate")


class DeliveryToJetStreamTest(ForwardCase):
    """A delivery stream's destination nats: each record one message,
    published with the batch's message ids, acknowledged before the
    checkpoint moves, through a SIGKILL and a server outage."""

    def test_records_arrive_once_through_an_outage(self):
        cluster = NatsCluster(self.work)
        self.addCleanup(cluster.stop)
        cluster.start_single("single")
        d = self.daemon(f"""
streams:
  - name: readings
    shards: 2
delivery_streams:
  - name: to-nats
    stream: readings
    destination: nats
    servers: nats://127.0.0.1:{cluster.ports[0]}
    jetstream_stream: DELIVERED
    buffer_size: 1MiB
    buffer_interval: 1s
""")
        d.start()

        def delivered():
            code, _, body = d.get_json("/v1/delivery/to-nats")
            assert code == 200, body
            return body
        put(d, "readings", 0, 2000)
        wait_for(lambda: delivered()["delivered_records"] == 2000, timeout=60,
                 what="2000 records published")
        cluster.kill(0)
        put(d, "readings", 2000, 1000)
        time.sleep(2.5)
        self.assertEqual(delivered()["lag_records"], 1000)  # waiting for acknowledgements
        d.stop(signal.SIGKILL)
        d.start()
        cluster.start_single("single")
        wait_for(lambda: delivered()["lag_records"] == 0, timeout=60, what="lag drained")
        self.assertEqual(delivered()["target"], "edged.delivery.to-nats")
        cluster.ports = cluster.ports[:1]
        msgs = cluster.read("DELIVERED")
        self.assertEqual({m["subject"] for m in msgs}, {"edged.delivery.to-nats"})
        got = sorted(json.loads(base64.b64decode(m["data"]))["n"] for m in msgs)
        self.assertEqual(got, list(range(3000)))  # each once: batches sent again are deduplicated


if __name__ == "__main__":
    unittest.main(verbosity=2)
