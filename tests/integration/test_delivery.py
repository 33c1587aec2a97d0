"""Delivery streams against real destinations: a directory, s3rver (an
S3-compatible server from npm, checked with the AWS CLI's s3 commands) and
an HTTP endpoint speaking Firehose's delivery protocol. Nothing is
checkpointed before the destination has it: through an outage of the
destination and a SIGKILL of edged, every record arrives; past the retry
duration a batch goes to the error directory, not away."""

import base64
import glob
import gzip
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import SOURCE_ROOT, Daemon, free_port, run_node_tests, wait_for  # noqa: E402

NODE_BIN = os.path.join(SOURCE_ROOT, "tests/node/node_modules/.bin")
AWS = "/usr/bin/aws" if os.path.exists("/usr/bin/aws") else "aws"
S3_ENV = {"AWS_ACCESS_KEY_ID": "S3RVER", "AWS_SECRET_ACCESS_KEY": "S3RVER",
          "AWS_DEFAULT_REGION": "us-east-1", "AWS_PAGER": ""}


class S3rver:
    """s3rver on loopback with one bucket; it checks SigV4 signatures."""

    def __init__(self, workdir, bucket="deliveries", port=None):
        self.dir = os.path.join(workdir, "s3")
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.bucket = bucket
        self.proc = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.log = open(os.path.join(self.dir, "..", f"s3rver-{self.port}.log"), "ab")
        self.proc = subprocess.Popen(
            [os.path.join(NODE_BIN, "node"), os.path.join(NODE_BIN, "s3rver"), "-d", self.dir,
             "-a", "127.0.0.1", "-p", str(self.port), "--configure-bucket", self.bucket],
            stdout=self.log, stderr=subprocess.STDOUT)

        def listening():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0
        wait_for(listening, timeout=30, what="s3rver listening")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def aws(self, *args):
        return subprocess.run([AWS, "--endpoint-url", self.endpoint, "s3", *args],
                              capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, **S3_ENV))

    def objects(self):
        """(key, size) of every object, from `aws s3 ls --recursive`."""
        r = self.aws("ls", f"s3://{self.bucket}", "--recursive")
        assert r.returncode in (0, 1), r.stderr
        out = []
        for line in r.stdout.splitlines():
            parts = line.split(None, 3)
            out.append((parts[3], int(parts[2])))
        return out

    def download(self, target):
        r = self.aws("cp", f"s3://{self.bucket}", target, "--recursive")
        assert r.returncode == 0, r.stderr
        return sorted(glob.glob(os.path.join(target, "**", "*"), recursive=True))


def put_records(d, stream, records, key=lambda i: f"k{i % 7}"):
    for start in range(0, len(records), 500):
        batch = [{"PartitionKey": key(start + i), "Data": base64.b64encode(r).decode()}
                 for i, r in enumerate(records[start:start + 500])]
        status, out = d.kinesis("PutRecords", {"StreamName": stream, "Records": batch}, timeout=30)
        assert status == 200 and out["FailedRecordCount"] == 0, out


def lines_of(paths):
    """Every line of the files (gunzipped where they end in .gz)."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            continue
        with open(p, "rb") as f:
            data = f.read()
        if p.endswith(".gz"):
            data = gzip.decompress(data)
        out += data.splitlines()
    return out


def status(d, name):
    code, _, body = d.get_json(f"/v1/delivery/{name}")
    assert code == 200, body
    return body


class DeliveryCase(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="edged-delivery-")
        self.addCleanup(shutil.rmtree, self.work, ignore_errors=True)

    def daemon(self, config, data_dir=None):
        d = Daemon(workdir=self.work, config=config, data_dir=data_dir)
        self.addCleanup(d.cleanup)
        return d


class DirectoryTest(DeliveryCase):
    def test_batches_by_size_and_age_gzip_and_names(self):
        out = os.path.join(self.work, "out")
        d = self.daemon(f"""
streams:
  - name: readings
    shards: 2
delivery_streams:
  - name: archive
    stream: readings
    destination: directory
    directory: {out}
    prefix: site-a/
    buffer_size: 1MiB
    buffer_interval: 2s
    compression: gzip
""").start()
        # 3000 records of ~700 bytes: over 2 MiB, so at least two objects
        # are cut by size; the rest goes when its first record is 2 s old.
        records = [json.dumps({"n": i, "pad": "x" * 680}).encode() for i in range(3000)]
        put_records(d, "readings", records)
        wait_for(lambda: status(d, "archive")["delivered_records"] == 3000, timeout=30,
                 what="3000 records delivered")
        files = sorted(glob.glob(os.path.join(out, "**", "*"), recursive=True))
        files = [f for f in files if os.path.isfile(f)]
        # Cut by size at least once (a buffer takes whole reads of its
        # stream, so an object may pass buffer_size by one read).
        self.assertGreaterEqual(len(files), 2, files)
        now = time.gmtime()
        for f in files:
            rel = os.path.relpath(f, out)
            # PREFIX YYYY/MM/DD/HH/NAME-1-YYYY-MM-DD-HH-MM-SS-UUID.gz
            self.assertRegex(rel, r"^site-a/\d{4}/\d{2}/\d{2}/\d{2}/archive-1-\d{4}-\d{2}-\d{2}-"
                                  r"\d{2}-\d{2}-\d{2}-[0-9a-f-]{36}\.gz$")
            self.assertTrue(rel.startswith(time.strftime("site-a/%Y/%m/%d/", now)), rel)
        # In the order they were written (names sort by second, then at random).
        got = lines_of(sorted(files, key=lambda f: os.stat(f).st_mtime_ns))
        self.assertEqual(sorted(got), sorted(records))  # each exactly once, byte for byte
        # In order within each partition key (one shard each).
        for k in range(7):
            mine = [json.loads(x)["n"] for x in got if json.loads(x)["n"] % 7 == k]
            self.assertEqual(mine, sorted(mine))
        st = status(d, "archive")
        self.assertEqual((st["lag_records"], st["buffered_records"], st["error_records"]), (0, 0, 0))
        self.assertEqual(st["objects"], len(files))
        from edged_harness import EDGECTL
        out = subprocess.run([EDGECTL, "--url", d.url, "delivery"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
        self.assertRegex(out, r"archive +readings +directory +\S+ +0 +0 +3000 +0")
        # Only whole files: no temporary ones left beside them.
        self.assertEqual([f for f in files if ".tmp" in f or "~" in f], [])


    def test_zstd_objects_decompress_with_the_zstd_tool(self):
        out = os.path.join(self.work, "out")
        d = self.daemon(f"""
streams:
  - name: readings
delivery_streams:
  - name: packed
    stream: readings
    destination: directory
    directory: {out}
    buffer_interval: 1s
    compression: zstd
""").start()
        records = [json.dumps({"sensor": f"s{i % 5}", "t": 20 + i % 7}).encode()
                   for i in range(2000)]
        put_records(d, "readings", records)
        wait_for(lambda: status(d, "packed")["delivered_records"] == 2000, timeout=30,
                 what="2000 records delivered")
        files = [f for f in glob.glob(os.path.join(out, "**", "*"), recursive=True)
                 if os.path.isfile(f)]
        self.assertTrue(files and all(f.endswith(".zst") for f in files), files)
        got = []
        for f in files:
            r = subprocess.run(["zstd", "-d", "-c", f], capture_output=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertLess(os.path.getsize(f), len(r.stdout) / 5)  # it did compress
            got += r.stdout.splitlines()
        self.assertEqual(sorted(got), sorted(records))
        # Firehose's HTTP endpoint protocol knows gzip only.
        bad = os.path.join(self.work, "bad.yaml")
        with open(bad, "w") as f:
            f.write("delivery_streams:\n  - name: x\n    stream: s\n    destination: http\n"
                    "    url: http://127.0.0.1:1/\n    compression: zstd\n")
        from edged_harness import EDGED
        r = subprocess.run([EDGED, "--check-config", bad], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("an HTTP endpoint takes gzip or none", r.stderr)


class S3Test(DeliveryCase):
    def s3_config(self, s3, secret="S3RVER", interval="1s", size="1MiB", retry="300s"):
        return f"""
streams:
  - name: readings
    shards: 2
delivery_streams:
  - name: lake
    stream: readings
    destination: s3
    endpoint: {s3.endpoint}
    bucket: {s3.bucket}
    access_key_id: S3RVER
    secret_access_key: {secret}
    prefix: raw/
    buffer_size: {size}
    buffer_interval: {interval}
    compression: gzip
    retry_duration: {retry}
"""

    def test_objects_land_and_read_back_with_the_aws_cli(self):
        s3 = S3rver(self.work).start()
        self.addCleanup(s3.stop)
        d = self.daemon(self.s3_config(s3, size="32MiB", interval="3s")).start()
        # A little over 20 MiB in one buffer: sent as a multipart upload.
        records = [(b"%08d," % i) + os.urandom(600).hex().encode() for i in range(17000)]
        put_records(d, "readings", records)
        wait_for(lambda: status(d, "lake")["delivered_records"] == len(records), timeout=90,
                 what="the records in S3")
        objects = s3.objects()
        self.assertEqual(len(objects), 1, objects)
        self.assertRegex(objects[0][0], r"^raw/\d{4}/\d{2}/\d{2}/\d{2}/lake-1-.*\.gz$")
        got = lines_of(s3.download(os.path.join(self.work, "dl")))
        self.assertEqual(sorted(got), sorted(records))

    def test_unknown_key_is_refused_and_nothing_checkpointed(self):
        s3 = S3rver(self.work).start()
        self.addCleanup(s3.stop)
        d = self.daemon(self.s3_config(s3).replace("access_key_id: S3RVER",
                                                   "access_key_id: NOBODY")).start()
        records = [b"r%d" % i for i in range(50)]
        put_records(d, "readings", records)
        wait_for(lambda: status(d, "lake")["failed_attempts"] >= 2, timeout=30, what="failures")
        st = status(d, "lake")
        self.assertIn("InvalidAccessKeyId", st["last_error"])
        self.assertEqual(st["lag_records"], 50)
        self.assertEqual(s3.objects(), [])
        # With the right key, after a restart, every record arrives.
        d.stop()
        d2 = Daemon(workdir=self.work, config=self.s3_config(s3), data_dir=d.data_dir,
                    port=d.port)
        self.addCleanup(d2.cleanup)
        d2.start()
        wait_for(lambda: status(d2, "lake")["lag_records"] == 0, timeout=30, what="lag drained")
        self.assertEqual(sorted(lines_of(s3.download(os.path.join(self.work, "dl")))),
                         sorted(records))

    def test_signatures_verify_with_botocore(self):
        """s3rver checks access keys but not SigV4 signatures: this peer
        checks each request's signature as S3 does, with botocore's S3
        signer (the one the AWS CLI uses), multipart uploads included."""
        SigV4S3.objects, SigV4S3.uploads, SigV4S3.refused = {}, {}, []
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SigV4S3)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.shutdown)
        fake = S3rver(self.work, port=server.server_port)
        # Uncompressed, so that the second object passes 16 MiB: a multipart upload.
        config = self.s3_config(fake, size="32MiB", interval="2s").replace("S3RVER", "EDGEKEY")
        config = config.replace("compression: gzip", "compression: none")
        d = self.daemon(config.replace("secret_access_key: EDGEKEY",
                                       "secret_access_key: edge/secret+key")).start()
        small = [b"small-%d" % i for i in range(10)]
        put_records(d, "readings", small)
        wait_for(lambda: status(d, "lake")["delivered_records"] == 10, timeout=30,
                 what="a signed PutObject")
        big = [(b"%08d," % i) + b"x" * 1200 for i in range(15000)]
        put_records(d, "readings", big)
        wait_for(lambda: status(d, "lake")["delivered_records"] == 15010, timeout=90,
                 what="a signed multipart upload")
        self.assertEqual(SigV4S3.refused, [])
        self.assertEqual(len(SigV4S3.objects), 2)
        self.assertTrue(any(key for key in SigV4S3.completed), "no multipart upload was made")
        got = []
        for body in SigV4S3.objects.values():
            got += body.splitlines()
        self.assertEqual(sorted(got), sorted(small + big))
        # The wrong secret: the same checker refuses, and edged says why.
        d.stop()
        d2 = Daemon(workdir=self.work, config=config.replace("secret_access_key: EDGEKEY",
                                                             "secret_access_key: wrong"),
                    data_dir=d.data_dir, port=d.port)
        self.addCleanup(d2.cleanup)
        d2.start()
        put_records(d2, "readings", [b"late"])
        wait_for(lambda: status(d2, "lake")["failed_attempts"] >= 1, timeout=30, what="a refusal")
        self.assertIn("SignatureDoesNotMatch", status(d2, "lake")["last_error"])
        self.assertEqual(status(d2, "lake")["lag_records"], 1)

    def test_outage_and_sigkill_lose_nothing(self):
        s3 = S3rver(self.work).start()
        self.addCleanup(s3.stop)
        d = self.daemon(self.s3_config(s3)).start()
        first = [b"before-%d" % i for i in range(300)]
        put_records(d, "readings", first)
        wait_for(lambda: status(d, "lake")["delivered_records"] == 300, timeout=30,
                 what="the first records delivered")
        # The destination goes away; records keep coming and are not
        # checkpointed while it is gone.
        s3.stop()
        during = [b"during-%d" % i for i in range(300)]
        put_records(d, "readings", during)
        wait_for(lambda: status(d, "lake")["failed_attempts"] >= 1, timeout=30, what="a failure")
        self.assertEqual(status(d, "lake")["lag_records"], 300)
        # edged dies too, mid-retry.
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        d.stderr.close()
        s3 = S3rver(self.work, port=s3.port).start()
        self.addCleanup(s3.stop)
        d.start()
        after = [b"after-%d" % i for i in range(300)]
        put_records(d, "readings", after)
        wait_for(lambda: status(d, "lake")["lag_records"] == 0, timeout=60, what="lag drained")
        got = lines_of(s3.download(os.path.join(self.work, "dl")))
        # At least once: everything is there; duplicates only of what was
        # in flight when edged was killed.
        self.assertEqual(set(got), set(first + during + after))
        self.assertEqual(len([x for x in got if x.startswith(b"before-")]), 300)

    def test_past_retry_duration_batches_go_to_the_error_directory(self):
        s3 = S3rver(self.work)  # never started: every attempt fails
        d = self.daemon(self.s3_config(s3, retry="3s")).start()
        records = [b"lost-%d" % i for i in range(40)]
        put_records(d, "readings", records)
        wait_for(lambda: status(d, "lake")["error_records"] == 40, timeout=30,
                 what="records in the error directory")
        st = status(d, "lake")
        self.assertEqual(st["lag_records"], 0)
        files = [f for f in glob.glob(os.path.join(st["error_directory"], "**", "*"),
                                      recursive=True) if os.path.isfile(f)]
        self.assertEqual(len(files), 1, files)
        self.assertRegex(os.path.relpath(files[0], st["error_directory"]),
                         r"^errors/\d{4}/\d{2}/\d{2}/\d{2}/lake-1-")
        entries = [json.loads(line) for line in lines_of(files)]
        self.assertEqual(sorted(base64.b64decode(e["rawData"]) for e in entries), sorted(records))
        self.assertEqual({e["errorCode"] for e in entries}, {"S3.PutFailed"})
        self.assertGreaterEqual(min(e["attemptsMade"] for e in entries), 2)
        self.assertTrue(all(e["deliveryStreamName"] == "lake" for e in entries))


class SigV4S3(http.server.BaseHTTPRequestHandler):
    """The part of S3 a delivery stream uses (PutObject, multipart uploads),
    refusing any request whose SigV4 signature botocore's S3 signer does
    not reproduce for the secret "edge/secret+key"."""
    objects, uploads, completed, refused = {}, {}, [], []
    SECRET = "edge/secret+key"

    def verify(self, body):
        sys.path[0:0] = ["/usr/lib/python3/dist-packages/awscli", "/usr/lib/python3/dist-packages"]
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
        auth = self.headers.get("Authorization", "")
        fields = dict(part.strip().split("=", 1) for part in auth.split(" ", 1)[1].split(","))
        access_key, date, region, service, _ = fields["Credential"].split("/")
        signed = fields["SignedHeaders"].split(";")
        request = AWSRequest(method=self.command, url=f"http://{self.headers['Host']}{self.path}",
                             data=body, headers={h: self.headers[h] for h in signed})
        request.context["timestamp"] = self.headers["x-amz-date"]
        signer = S3SigV4Auth(Credentials(access_key, self.SECRET), service, region)
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        import hashlib
        if hashlib.sha256(body).hexdigest() != self.headers["x-amz-content-sha256"]:
            return False
        return expected == fields["Signature"]

    def refuse(self):
        type(self).refused.append(self.path)
        data = (b"<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we "
                b"calculated does not match the signature you provided.</Message></Error>")
        self.send_response(403)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def answer(self, data=b"", headers=()):
        self.send_response(200)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not self.verify(body):
            self.refuse()
            return
        from urllib.parse import parse_qs, urlsplit
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        cls = type(self)
        if self.command == "POST" and "uploads" in query:
            upload = f"upload-{len(cls.uploads) + 1}"
            cls.uploads[upload] = {}
            self.answer(f"<InitiateMultipartUploadResult><UploadId>{upload}</UploadId>"
                        "</InitiateMultipartUploadResult>".encode())
        elif self.command == "PUT" and "partNumber" in query:
            cls.uploads[query["uploadId"][0]][int(query["partNumber"][0])] = body
            self.answer(headers=[("ETag", f'"etag-{query["partNumber"][0]}"')])
        elif self.command == "POST" and "uploadId" in query:
            parts = cls.uploads.pop(query["uploadId"][0])
            cls.objects[url.path] = b"".join(parts[n] for n in sorted(parts))
            cls.completed.append(url.path)
            self.answer(b"<CompleteMultipartUploadResult></CompleteMultipartUploadResult>")
        elif self.command == "PUT":
            cls.objects[url.path] = body
            self.answer(headers=[("ETag", '"etag"')])
        else:
            self.answer()

    do_PUT = do_POST = do_DELETE = handle_any

    def log_message(self, *args):
        pass


class FirehoseEndpoint(http.server.BaseHTTPRequestHandler):
    """An HTTP endpoint as Firehose's HTTP endpoint destinations expect."""
    received = []
    fail_next = 0

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = json.loads(body)
        cls = type(self)
        if cls.fail_next > 0:
            cls.fail_next -= 1
            self.answer(500, {"requestId": request["requestId"], "timestamp": 0,
                              "errorMessage": "try again"})
            return
        cls.received.append((dict(self.headers), request))
        self.answer(200, {"requestId": request["requestId"], "timestamp": int(time.time() * 1000)})

    def answer(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class HttpEndpointTest(DeliveryCase):
    def test_firehose_request_shape_retry_and_access_key(self):
        FirehoseEndpoint.received = []
        FirehoseEndpoint.fail_next = 2
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FirehoseEndpoint)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.shutdown)
        d = self.daemon(f"""
streams:
  - name: alerts
    shards: 1
delivery_streams:
  - name: webhook
    stream: alerts
    destination: http
    url: http://127.0.0.1:{server.server_port}/ingest
    access_key: s3cr3t
    buffer_interval: 1s
    compression: gzip
""").start()
        records = [json.dumps({"alert": i}).encode() for i in range(25)]
        put_records(d, "alerts", records)
        wait_for(lambda: status(d, "webhook")["delivered_records"] == 25, timeout=30,
                 what="records at the endpoint")
        self.assertEqual(status(d, "webhook")["failed_attempts"], 2)
        got = [base64.b64decode(r["data"]) for _, req in FirehoseEndpoint.received
               for r in req["records"]]
        self.assertEqual(got, records)
        headers, request = FirehoseEndpoint.received[0]
        self.assertEqual(headers["X-Amz-Firehose-Access-Key"], "s3cr3t")
        self.assertEqual(headers["X-Amz-Firehose-Protocol-Version"], "1.0")
        self.assertEqual(headers["X-Amz-Firehose-Request-Id"], request["requestId"])
        self.assertTrue(headers["X-Amz-Firehose-Source-Arn"].endswith(":deliverystream/webhook"))
        self.assertIsInstance(request["timestamp"], int)


class TransformTest(DeliveryCase):
    def test_ok_dropped_and_processing_failed(self):
        out = os.path.join(self.work, "out")
        errors = os.path.join(self.work, "errors")
        transform = os.path.join(SOURCE_ROOT, "tests/functions/transform/bootstrap")
        d = self.daemon(f"""
streams:
  - name: raw
    shards: 1
  - name: poison
    shards: 1
functions:
  - name: shape
    bootstrap: {transform}
    timeout: 10s
delivery_streams:
  - name: shaped
    stream: raw
    destination: directory
    directory: {out}
    error_directory: {errors}
    buffer_interval: 1s
    transform: shape
  - name: crashing
    stream: poison
    destination: directory
    directory: {out}-poison
    error_directory: {errors}
    buffer_interval: 1s
    transform: shape
""").start()
        records = [b"alpha", b"please drop this", b"beta", b"this will fail", b"gamma",
                   b"forget me", b"delta"]
        put_records(d, "raw", records, key=lambda i: "one")
        put_records(d, "poison", [b"crash now", b"innocent"], key=lambda i: "one")
        wait_for(lambda: status(d, "shaped")["lag_records"] == 0 and
                 status(d, "crashing")["lag_records"] == 0, timeout=60, what="both drained")
        st = status(d, "shaped")
        self.assertEqual((st["transformed_records"], st["dropped_records"],
                          st["processing_failed_records"]), (4, 1, 2))
        files = [f for f in glob.glob(os.path.join(out, "**", "*"), recursive=True)
                 if os.path.isfile(f)]
        self.assertEqual(lines_of(files), [b"ALPHA", b"BETA", b"GAMMA", b"DELTA"])
        failed = [f for f in glob.glob(os.path.join(errors, "**", "*"), recursive=True)
                  if os.path.isfile(f)]
        by_stream = {}
        for f in failed:
            self.assertIn("/errors/processing-failed/", f)
            for e in (json.loads(x) for x in lines_of([f])):
                by_stream.setdefault(e["deliveryStreamName"], []).append(e)
        shaped = {base64.b64decode(e["rawData"]): e["errorCode"] for e in by_stream["shaped"]}
        self.assertEqual(shaped, {b"this will fail": "Lambda.ProcessingFailed",
                                  b"forget me": "Lambda.MissingRecordId"})
        self.assertTrue(by_stream["shaped"][0]["lambdaArn"].endswith(":function:shape"))
        # A function that fails is tried 4 times, then its records are
        # ProcessingFailed, not lost and not delivered.
        crashed = by_stream["crashing"]
        self.assertEqual(sorted(base64.b64decode(e["rawData"]) for e in crashed),
                         [b"crash now", b"innocent"])
        self.assertEqual({e["errorCode"] for e in crashed}, {"Lambda.FunctionError"})
        self.assertEqual({e["attemptsMade"] for e in crashed}, {4})
        self.assertFalse(glob.glob(os.path.join(out + "-poison", "**", "*.*"), recursive=True))


class FirehoseApiTest(DeliveryCase):
    """The AWS CLI's firehose commands against edged, delivering to s3rver."""

    def firehose(self, d, *args, check=True):
        r = subprocess.run([AWS, "--endpoint-url", d.url, "firehose", *args, "--output", "json"],
                           capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, AWS_ACCESS_KEY_ID="edged",
                                    AWS_SECRET_ACCESS_KEY="edged", AWS_DEFAULT_REGION="eu-west-1",
                                    AWS_PAGER=""))
        if check:
            self.assertEqual(r.returncode, 0, r.stderr)
            return json.loads(r.stdout) if r.stdout.strip() else {}
        return r

    def test_cli_direct_put_and_kinesis_source(self):
        s3 = S3rver(self.work).start()
        self.addCleanup(s3.stop)
        config = f"""
streams:
  - name: clicks
    shards: 2
delivery:
  s3:
    endpoint: {s3.endpoint}
    access_key_id: S3RVER
    secret_access_key: S3RVER
"""
        d = self.daemon(config).start()
        dest = (f"BucketARN=arn:aws:s3:::{s3.bucket},RoleARN=arn:aws:iam::1:role/f,Prefix=web/,"
                "BufferingHints={SizeInMBs=1,IntervalInSeconds=60},CompressionFormat=GZIP")
        out = self.firehose(d, "create-delivery-stream", "--delivery-stream-name", "web",
                            "--extended-s3-destination-configuration", dest)
        self.assertEqual(out["DeliveryStreamARN"],
                         "arn:aws:firehose:eu-west-1:000000000000:deliverystream/web")
        r = self.firehose(d, "create-delivery-stream", "--delivery-stream-name", "web",
                          "--extended-s3-destination-configuration", dest, check=False)
        self.assertIn("ResourceInUseException", r.stderr)
        # A Kinesis-sourced one, reading the clicks data stream.
        self.firehose(d, "create-delivery-stream", "--delivery-stream-name", "clicks-to-s3",
                      "--delivery-stream-type", "KinesisStreamAsSource",
                      "--kinesis-stream-source-configuration",
                      "KinesisStreamARN=arn:aws:kinesis:eu-west-1:000000000000:stream/clicks,"
                      "RoleARN=arn:aws:iam::1:role/f",
                      "--extended-s3-destination-configuration",
                      dest.replace("Prefix=web/", "Prefix=clicks/"))
        names = self.firehose(d, "list-delivery-streams")["DeliveryStreamNames"]
        self.assertEqual(names, ["clicks-to-s3", "web"])
        desc = self.firehose(d, "describe-delivery-stream", "--delivery-stream-name", "web")
        desc = desc["DeliveryStreamDescription"]
        self.assertEqual((desc["DeliveryStreamStatus"], desc["DeliveryStreamType"]),
                         ("ACTIVE", "DirectPut"))
        s3desc = desc["Destinations"][0]["ExtendedS3DestinationDescription"]
        self.assertEqual((s3desc["Prefix"], s3desc["CompressionFormat"],
                          s3desc["BufferingHints"]["SizeInMBs"]), ("web/", "GZIP", 1))

        # PutRecord and PutRecordBatch; past 1 MiB the buffer goes at once.
        out = self.firehose(d, "put-record", "--delivery-stream-name", "web",
                            "--record", json.dumps({"Data": base64.b64encode(b"first\n").decode()}))
        self.assertTrue(out["RecordId"])
        big = [os.urandom(300000).hex().encode()[:600000] for _ in range(2)]
        path = os.path.join(self.work, "batch.json")
        with open(path, "w") as f:
            json.dump({"DeliveryStreamName": "web",
                       "Records": [{"Data": base64.b64encode(x).decode()} for x in big]}, f)
        out = self.firehose(d, "put-record-batch", "--cli-input-json", f"file://{path}")
        self.assertEqual(out["FailedPutCount"], 0)
        self.assertEqual(len(out["RequestResponses"]), 2)
        # Records put to the data stream reach the Kinesis-sourced one.
        put_records(d, "clicks", [b"c%d" % i for i in range(100)] + [b"y" * 700000, b"z" * 600000])
        wait_for(lambda: len(s3.objects()) >= 2, timeout=60, what="objects of both streams")
        got = lines_of(s3.download(os.path.join(self.work, "dl")))
        self.assertEqual(sorted(got), sorted([b"first"] + big + [b"c%d" % i for i in range(100)] +
                                             [b"y" * 700000, b"z" * 600000]))

        # Errors in Firehose's shape.
        r = self.firehose(d, "put-record", "--delivery-stream-name", "clicks-to-s3", "--record",
                          "Data=YQ==", check=False)
        self.assertIn("not permitted on KinesisStreamAsSource", r.stderr)
        r = self.firehose(d, "describe-delivery-stream", "--delivery-stream-name", "nope",
                          check=False)
        self.assertIn("ResourceNotFoundException", r.stderr)
        r = self.firehose(d, "create-delivery-stream", "--delivery-stream-name", "zip",
                          "--extended-s3-destination-configuration",
                          dest.replace("GZIP", "ZIP"), check=False)
        self.assertIn("InvalidArgumentException", r.stderr)

        # They survive a restart; delete forgets them (and the DirectPut one's stream).
        d.stop()
        d.start()
        self.assertEqual(self.firehose(d, "list-delivery-streams")["DeliveryStreamNames"],
                         ["clicks-to-s3", "web"])
        self.firehose(d, "delete-delivery-stream", "--delivery-stream-name", "web")
        self.assertEqual(self.firehose(d, "list-delivery-streams")["DeliveryStreamNames"],
                         ["clicks-to-s3"])
        status_code, streams = d.kinesis("ListStreams", {})
        self.assertNotIn("firehose-web", streams["StreamNames"])


class BrowserTest(unittest.TestCase):
    def test_delivery_page(self):
        run_node_tests(self, ["delivery-browser.test.mjs"], timeout=180, browser=True)


class BackPressureTest(DeliveryCase):
    def test_a_slow_destination_holds_every_shard_and_loses_nothing(self):
        """While one batch is being delivered (slowly) and the next buffer
        is full, the batches of all four shards wait; each must go into a
        later buffer, none forgotten."""
        SlowEndpoint.received = []
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowEndpoint)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.shutdown)
        d = self.daemon(f"""
streams:
  - name: bulk
    shards: 4
    durability: none
delivery_streams:
  - name: slow
    stream: bulk
    destination: http
    url: http://127.0.0.1:{server.server_port}/
    buffer_size: 1MiB
    buffer_interval: 0s
""").start()
        records = [b"%06d-" % i + b"p" * 2000 for i in range(4000)]  # 8 MB over 4 shards
        put_records(d, "bulk", records, key=lambda i: f"key-{i}")
        wait_for(lambda: status(d, "slow")["lag_records"] == 0, timeout=90, what="lag drained")
        got = [base64.b64decode(r["data"]) for req in SlowEndpoint.received
               for r in req["records"]]
        self.assertEqual(sorted(got), sorted(records))
        self.assertGreaterEqual(len(SlowEndpoint.received), 3)


class SlowEndpoint(http.server.BaseHTTPRequestHandler):
    received = []

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        time.sleep(0.4)
        type(self).received.append(request)
        data = json.dumps({"requestId": request["requestId"], "timestamp": 0}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class ConfigTest(DeliveryCase):
    def test_destinations_need_their_settings(self):
        from edged_harness import EDGED
        path = os.path.join(self.work, "bad.yaml")
        for text, message in [
                ("delivery_streams:\n  - name: a\n    stream: s\n    destination: s3\n",
                 "destination s3 needs endpoint, bucket"),
                ("delivery_streams:\n  - name: a\n    stream: s\n    destination: directory\n",
                 "destination directory needs directory"),
                ("delivery_streams:\n  - name: a\n    stream: s\n    destination: ftp\n",
                 "destination"),
                ("delivery_streams:\n  - name: a\n    stream: s\n    destination: http\n"
                 "    url: http://x/\n    buffer_size: 200MiB\n", "buffer_size")]:
            with open(path, "w") as f:
                f.write(text)
            r = subprocess.run([EDGED, "--check-config", path], capture_output=True, text=True)
            self.assertEqual(r.returncode, 2, text)
            self.assertIn(message, r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
