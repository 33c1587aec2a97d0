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
pid=
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
. "$(dirname "$0")/../callgrind.sh"

put_records_body "$bytes" > "$work/body.json"
callgrind_start "$build" "$work" "streams:
  - name: bench
    shards: 4
    durability: none"
for _ in $(seq 40); do
  curl -sf -o /dev/null -H 'X-Amz-Target: Kinesis_20131202.PutRecords' \
    -H 'Content-Type: application/x-amz-json-1.1' --data-binary @"$work/body.json" \
    "http://127.0.0.1:$port/"
done
callgrind_stop "$work"
echo "instructions: $(thousands "$instructions")"
