#!/usr/bin/env bash
# Instructions edged spends per record read with GetRecords, counted by
# callgrind (repeatable, unlike time on a shared machine): 40 PutRecords of
# 500 records of RECORD bytes (default 1024) into a 4-shard stream with
# durability none, then every shard read from TRIM_HORIZON with Limit 10000,
# once in one daemon and three times in another; the difference of their
# totals over the 40,000 records read in addition is one record's read.
#
#   bench/streams/get-instructions.sh [BUILD_DIR] [RECORD_BYTES]
#
# Needs valgrind, curl and python3.
set -euo pipefail
build=${1:-build}
bytes=${2:-1024}
work=$(mktemp -d)
pid=
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
. "$(dirname "$0")/../callgrind.sh"

put_records_body "$bytes" > "$work/body.json"

# The instructions of a daemon that took the puts and read everything @1 times.
count() {
  callgrind_start "$build" "$work" "streams:
  - name: bench
    shards: 4
    durability: none"
  for _ in $(seq 40); do
    curl -sf -o /dev/null -H 'X-Amz-Target: Kinesis_20131202.PutRecords' \
      -H 'Content-Type: application/x-amz-json-1.1' --data-binary @"$work/body.json" \
      "http://127.0.0.1:$port/"
  done
  python3 - "$port" "$1" <<'PY'
import http.client, json, sys
port, passes = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)


def call(op, body):
    c.request("POST", "/", json.dumps(body), {"X-Amz-Target": "Kinesis_20131202." + op,
                                              "Content-Type": "application/x-amz-json-1.1"})
    r = c.getresponse()
    return json.loads(r.read())


read = 0
for _ in range(passes):
    for shard in call("ListShards", {"StreamName": "bench"})["Shards"]:
        it = call("GetShardIterator", {"StreamName": "bench", "ShardId": shard["ShardId"],
                                       "ShardIteratorType": "TRIM_HORIZON"})["ShardIterator"]
        while True:
            out = call("GetRecords", {"ShardIterator": it, "Limit": 10000})
            read += len(out["Records"])
            if not out["Records"]:
                break
            it = out["NextShardIterator"]
assert read == passes * 20000, read
PY
  callgrind_stop "$work"
}

count 1
once=$instructions
count 3
thrice=$instructions
echo "instructions: one pass $(thousands "$once"), three passes $(thousands "$thrice")"
echo "per record read: $(( (thrice - once) / 40000 ))"
