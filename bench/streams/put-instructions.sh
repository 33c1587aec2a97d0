#!/usr/bin/env bash
# Instructions edged spends on PutRecords, counted by callgrind (repeatable,
# unlike time on a shared machine): 40 PutRecords of 500 records of RECORD
# bytes (default 100) into a 4-shard stream with durability none, sent with
# curl over HTTP/1.1. Prints the total, start-up and shutdown included.
#
#   bench/streams/put-instructions.sh [BUILD_DIR] [RECORD_BYTES]
#
# Needs valgrind, curl and python3.
set -euo pipefail
build=${1:-build}
bytes=${2:-100}
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 - "$bytes" > "$work/body.json" <<'PY'
import base64, json, sys
data = base64.b64encode(b"a" * int(sys.argv[1])).decode()
print(json.dumps({"StreamName": "bench",
                  "Records": [{"Data": data, "PartitionKey": f"k{i}"} for i in range(500)]}))
PY
cat > "$work/edged.yaml" <<YAML
data_dir: $work/data
log:
  level: warning
gateway:
  listen: 127.0.0.1:$port
  access_log: false
streams:
  - name: bench
    shards: 4
    durability: none
YAML
valgrind --tool=callgrind --callgrind-out-file="$work/out" "$build/edge/edged" \
  --config "$work/edged.yaml" 2> "$work/valgrind.log" &
pid=$!
for _ in $(seq 300); do curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.2; done
for _ in $(seq 40); do
  curl -sf -o /dev/null -H 'X-Amz-Target: Kinesis_20131202.PutRecords' \
    -H 'Content-Type: application/x-amz-json-1.1' --data-binary @"$work/body.json" \
    "http://127.0.0.1:$port/"
done
kill -INT "$pid"
wait "$pid" || true
callgrind_annotate "$work/out" | awk '/PROGRAM TOTALS/ && !n++ { print "instructions:", $1 }'
