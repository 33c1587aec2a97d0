#!/usr/bin/env python3
"""Delivery throughput: records of a data stream into gzip'd objects in
S3-compatible storage (s3rver, npm), side by side with what a user would
script without edged: the same records, as a newline-delimited file, through
`gzip -6` and `aws s3 cp` into the same server.

    python3 bench/delivery/run.py [BUILD_DIR] [ROUNDS] [RECORDS] [RECORD_BYTES] [gzip|zstd]

First `.ci/install-deps --test` (s3rver and Node 20 in tests/node, the AWS
CLI). Per round, alternating the two, into a fresh s3rver each time:

- edged: RECORDS records are put into a 2-shard data stream first; then a
  delivery stream (buffer 64 MiB, interval 0: each buffer goes as soon as
  the one before is acknowledged; gzip) is started from TRIM_HORIZON
  and timed until every record is acknowledged by the server; edged's CPU
  (user + system) over that time;
- the script: the same bytes, already in a file, `gzip -6 | aws s3 cp -`,
  timed the same way.

Reports medians over rounds and the ratio of records per second.
"""

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from procstat import cpu_seconds, free_port, kinesis, start_edged, stop_all, wait_http  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
RECORDS = int(sys.argv[3]) if len(sys.argv) > 3 else 500000
RECORD_BYTES = int(sys.argv[4]) if len(sys.argv) > 4 else 200
COMPRESSION = sys.argv[5] if len(sys.argv) > 5 else "gzip"
TOOL = {"gzip": "gzip -6", "zstd": "zstd -3 -q"}[COMPRESSION]
NODE_BIN = os.path.join(ROOT, "tests", "node", "node_modules", ".bin")
AWS = "/usr/bin/aws" if os.path.exists("/usr/bin/aws") else "aws"
S3_ENV = dict(os.environ, AWS_ACCESS_KEY_ID="S3RVER", AWS_SECRET_ACCESS_KEY="S3RVER",
              AWS_DEFAULT_REGION="us-east-1", AWS_PAGER="")


def record(i):
    """A sensor-like JSON reading of about RECORD_BYTES: readings that vary
    as real ones do, so that gzip works as hard as on real data."""
    rng = random.Random(i)
    doc = {"sensor": f"probe-{i % 50}", "seq": i, "ts": 1795980000000 + i * 37, "readings": []}
    while len(json.dumps(doc)) < RECORD_BYTES - 10:
        doc["readings"].append(round(rng.uniform(-40, 60), 3))
    return json.dumps(doc)


def s3rver(work):
    port = free_port()
    data = os.path.join(work, f"s3-{port}")
    os.makedirs(data)
    proc = subprocess.Popen([os.path.join(NODE_BIN, "node"), os.path.join(NODE_BIN, "s3rver"),
                             "-d", data, "-a", "127.0.0.1", "-p", str(port), "-s",
                             "--configure-bucket", "bench"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/bench", timeout=30)
    return proc, f"http://127.0.0.1:{port}"


def edged(work, config):
    return start_edged(BUILD, work, config)


def load(url):
    import base64
    for start in range(0, RECORDS, 500):
        batch = [{"PartitionKey": f"k{i % 64}",
                  "Data": base64.b64encode(record(i).encode()).decode()}
                 for i in range(start, min(RECORDS, start + 500))]
        out = kinesis(url, "PutRecords", {"StreamName": "readings", "Records": batch})
        assert out["FailedRecordCount"] == 0, out


def run_edged(work):
    server, endpoint = s3rver(work)
    stream = "streams:\n  - name: readings\n    shards: 2\n    durability: none\n"
    proc, url = edged(work, stream)
    load(url)
    stop_all([proc])
    delivery = (f"delivery_streams:\n  - name: bench\n    stream: readings\n    destination: s3\n"
                f"    endpoint: {endpoint}\n    bucket: bench\n    access_key_id: S3RVER\n"
                f"    secret_access_key: S3RVER\n    buffer_size: 64MiB\n    buffer_interval: 0s\n"
                f"    compression: {COMPRESSION}\n")
    start = time.monotonic()
    proc, url = edged(work, stream + delivery)
    cpu0 = cpu_seconds(proc.pid)
    while True:
        with urllib.request.urlopen(f"{url}/v1/delivery/bench") as r:
            st = json.load(r)
        if st["delivered_records"] >= RECORDS:
            break
        time.sleep(0.02)
    elapsed = time.monotonic() - start
    cpu = cpu_seconds(proc.pid) - cpu0
    objects = st["objects"]
    stop_all([proc, server])
    shutil.rmtree(os.path.join(work, "data"), ignore_errors=True)
    return RECORDS / elapsed, cpu / RECORDS * 1e6, objects


def run_script(work):
    server, endpoint = s3rver(work)
    path = os.path.join(work, "records.ndjson")
    with open(path, "w") as f:
        for i in range(RECORDS):
            f.write(record(i) + "\n")
    start = time.monotonic()
    subprocess.run(f"{TOOL} < {path} | {AWS} --endpoint-url {endpoint} s3 cp - "
                   f"s3://bench/records.ndjson.{COMPRESSION}", shell=True, check=True, env=S3_ENV,
                   stdout=subprocess.DEVNULL)
    elapsed = time.monotonic() - start
    stop_all([server])
    os.unlink(path)
    return RECORDS / elapsed


def main():
    rows = {"edged": [], "cpu": [], "script": []}
    for r in range(ROUNDS):
        with tempfile.TemporaryDirectory(prefix="edged-bench-") as work:
            rate, cpu, objects = run_edged(work)
            rows["edged"].append(rate)
            rows["cpu"].append(cpu)
        with tempfile.TemporaryDirectory(prefix="edged-bench-") as work:
            rows["script"].append(run_script(work))
        print(f"round {r + 1}: edged {rows['edged'][-1]:,.0f} records/s "
              f"({rows['cpu'][-1]:.2f} us CPU/record, {objects} objects), "
              f"{TOOL} | aws s3 cp {rows['script'][-1]:,.0f} records/s", flush=True)
    e, s = statistics.median(rows["edged"]), statistics.median(rows["script"])
    print(f"\n{RECORDS} records of {RECORD_BYTES} B, {COMPRESSION}, medians of {ROUNDS} rounds:")
    print(f"| edged delivery stream | {e:,.0f} records/s | "
          f"{statistics.median(rows['cpu']):.2f} us of edged CPU per record |")
    print(f"| {TOOL} \\| aws s3 cp - | {s:,.0f} records/s | |")
    print(f"| ratio | {e / s:.2f}x | |")


if __name__ == "__main__":
    main()
