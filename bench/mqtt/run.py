#!/usr/bin/env python3
"""MQTT into a durable data stream: edged side by side with mosquitto_sub
writing to /dev/null on the same broker (the ceiling: a subscriber that
keeps nothing).

    python3 bench/mqtt/run.py [BUILD_DIR] [ROUNDS] [MESSAGES] [tuned|default] [batch|sync]

One local mosquitto on a free port, with the settings docs/internals/mqtt.md
recommends (tuned) or its own defaults. Per round and QoS (0 and 1), alternating the two
subscribers: mosquitto_pub -l publishes MESSAGES lines of about 100 bytes
as fast as the broker takes them; the time is from the publisher's start
to the subscriber holding the last message: mosquitto_sub -C MESSAGES
exiting, or edged's stream (durability batch, 10 ms, or sync: either way
a message is acknowledged to the broker only after its fsync) holding
MESSAGES records. After each edged run every record is read back
(GetRecords) and checked: at QoS 1 each message must be there (zero loss).
Reports medians over rounds, edged's CPU per message, and the ratio
edged / ceiling.
"""

import base64
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from procstat import cpu_seconds, free_port  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
MESSAGES = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
BROKER = sys.argv[4] if len(sys.argv) > 4 else "tuned"
# The stream's durability: "sync" (each put acknowledged after its own
# group's fsync) or "batch" (fsync at least every 10 ms; acknowledged after
# it: as durable, fewer fsyncs).
DURABILITY = sys.argv[5] if len(sys.argv) > 5 else "batch"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
# "tuned": what docs/internals/mqtt.md recommends for a broker edged reads
# at QoS 1 (a window of 1000 unacknowledged messages, a queue that does not
# drop); "default": mosquitto's own settings (a window of 20 and a queue of
# 1000 per client, past which the broker drops messages).
BROKER_SETTINGS = {
    "tuned": "max_inflight_messages 1000\nmax_queued_messages 1000000\n",
    "default": "",
}[BROKER]




def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing listens on {port}")


class Edged:
    def __init__(self, work, broker_port, qos):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(dir=work)
        config = os.path.join(self.dir, "edged.yaml")
        with open(config, "w") as f:
            f.write(f"""data_dir: {self.dir}/data
log:
  level: warning
gateway:
  listen: 127.0.0.1:{self.port}
  access_log: false
streams:
  - name: bench
    durability: {DURABILITY}
    batch_ms: 10ms
mqtt:
  brokers:
    - name: local
      host: 127.0.0.1
      port: {broker_port}
      client_id: edged-bench
      clean_session: true
  subscriptions:
    - broker: local
      topic: bench/#
      stream: bench
      partition_key: ${{topic(2)}}
      qos: {qos}
""")
        self.proc = subprocess.Popen([os.path.join(BUILD, "edge", "edged"), "--config", config],
                                     stderr=open(os.path.join(self.dir, "log"), "w"))
        deadline = time.time() + 10
        while not self.connected():
            if time.time() > deadline or self.proc.poll() is not None:
                with open(os.path.join(self.dir, "log")) as f:
                    raise SystemExit("edged did not connect to the broker:\n" + f.read())
            time.sleep(0.05)

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def connected(self):
        try:
            status, body = self.request("GET", "/v1/mqtt")
            return status == 200 and json.loads(body)["brokers"][0]["connected"]
        except OSError:
            return False

    def stored(self):
        _, body = self.request("GET", "/v1/mqtt")
        return json.loads(body)["subscriptions"][0]["stored"]

    def records(self):
        def kinesis(op, body):
            status, out = self.request("POST", "/", json.dumps(body), {
                "X-Amz-Target": f"Kinesis_20131202.{op}",
                "Content-Type": "application/x-amz-json-1.1"})
            assert status == 200, out
            return json.loads(out)
        it = kinesis("GetShardIterator", {"StreamName": "bench", "ShardId": "shardId-000000000000",
                                          "ShardIteratorType": "TRIM_HORIZON"})["ShardIterator"]
        out = []
        while True:
            page = kinesis("GetRecords", {"ShardIterator": it, "Limit": 10000})
            out += [base64.b64decode(r["Data"]) for r in page["Records"]]
            if not page["Records"]:
                return out
            it = page["NextShardIterator"]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


def publish(port, qos, lines_path):
    return subprocess.Popen(["mosquitto_pub", "-p", str(port), "-q", str(qos), "-t", "bench/pub",
                             "-l", "-i", "bench-publisher"], stdin=open(lines_path, "rb"),
                            stdout=subprocess.DEVNULL)


def ceiling(port, qos, lines_path):
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(port), "-q", str(qos), "-t", "bench/#",
                            "-C", str(MESSAGES), "-i", "bench-ceiling"], stdout=subprocess.DEVNULL)
    time.sleep(0.5)  # subscribed
    start = time.perf_counter()
    pub = publish(port, qos, lines_path)
    pub.wait(120)
    try:
        sub.wait(10)
    except subprocess.TimeoutExpired:
        # The broker dropped some (its queue for the subscriber overflowed,
        # or QoS 0): the ceiling never completes.
        sub.kill()
        return None
    return MESSAGES / (time.perf_counter() - start)


def through_edged(work, port, qos, lines_path, tag):
    edged = Edged(work, port, qos)
    time.sleep(0.5)  # subscribed, as the ceiling's subscriber is
    cpu0 = cpu_seconds(edged.proc.pid)
    start = time.perf_counter()
    pub = publish(port, qos, lines_path)
    pub.wait(120)
    deadline = time.time() + 60
    last, last_change = -1, time.time()
    while True:
        n = edged.stored()
        if n >= MESSAGES:
            break
        if n != last:
            last, last_change = n, time.time()
        if time.time() - last_change > 2 or time.time() > deadline:
            break  # nothing more arrives (QoS 0 losses)
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds(edged.proc.pid) - cpu0
    got = edged.records()
    edged.stop()
    want = {f"{tag}-{i:07d}".encode() for i in range(MESSAGES)}
    seen = {r[:len(tag) + 8] for r in got}
    lost = len(want - seen)
    rate = (MESSAGES - lost) / elapsed if lost else MESSAGES / elapsed
    return rate, lost, len(got) - len(seen), cpu / max(1, len(seen))


def main():
    work = tempfile.mkdtemp(prefix="edged-bench-mqtt-")
    os.chmod(work, 0o755)
    port = free_port()
    conf = os.path.join(work, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\n" + BROKER_SETTINGS)
    broker = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    wait_port(port)
    results = {0: {"ceiling": [], "edged": [], "lost": [], "dup": [], "cpu": []},
               1: {"ceiling": [], "edged": [], "lost": [], "dup": [], "cpu": []}}
    try:
        for r in range(ROUNDS):
            for qos in (0, 1):
                tag = f"r{r}q{qos}"
                lines = os.path.join(work, f"{tag}.txt")
                with open(lines, "w") as f:
                    for i in range(MESSAGES):
                        f.write(f'{tag}-{i:07d} {{"temperature":{20 + i % 17}.5,'
                                f'"humidity":{40 + i % 23},"sensor":"s-{i % 16}"}}\n')
                c = ceiling(port, qos, lines)
                e, lost, dup, cpu = through_edged(work, port, qos, lines, tag)
                results[qos]["ceiling"].append(c)
                results[qos]["edged"].append(e)
                results[qos]["lost"].append(lost)
                results[qos]["dup"].append(dup)
                results[qos]["cpu"].append(cpu)
                print(f"round {r + 1} QoS {qos}: ceiling "
                      f"{'incomplete' if c is None else f'{c:,.0f}/s'}, edged {e:,.0f}/s "
                      f"({lost} lost, {dup} twice, {cpu * 1e6:.1f} µs CPU/message)", flush=True)
    finally:
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nmedians over {ROUNDS} rounds of {MESSAGES} messages (about 100 bytes), "
          f"broker settings {BROKER}, stream durability {DURABILITY}:")
    print("| QoS | mosquitto_sub > /dev/null | edged into a stream (fsync) | edged / ceiling "
          "| lost (all rounds) | edged CPU per message |")
    print("|---|---|---|---|---|---|")
    for qos in (0, 1):
        res = results[qos]
        ceilings = [c for c in res["ceiling"] if c is not None]
        c = statistics.median(ceilings) if ceilings else float("nan")
        e = statistics.median(res["edged"])
        print(f"| {qos} | {c:,.0f} msg/s | {e:,.0f} msg/s | {e / c:.2f} | {sum(res['lost'])} "
              f"| {statistics.median(res['cpu']) * 1e6:.1f} µs |")
    if sum(results[1]["lost"]):
        print("LOSS AT QoS 1")
        sys.exit(1)


if __name__ == "__main__":
    main()
