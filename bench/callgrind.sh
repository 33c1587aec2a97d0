# Sourced by the bench scripts that count edged's instructions with
# callgrind (bench/streams/put-instructions.sh, get-instructions.sh,
# bench/functions/route-instructions.sh). Needs valgrind, curl and python3.
#
#   callgrind_start BUILD_DIR WORK_DIR CONFIG_TAIL
#       writes WORK_DIR/edged.yaml (data in WORK_DIR/data, a free port, the
#       access log off, then CONFIG_TAIL), starts edged under callgrind and
#       waits for it; sets $port and $pid
#   callgrind_stop WORK_DIR
#       stops it; sets $instructions to its total
#   put_records_body BYTES
#       prints a PutRecords body of 500 records of BYTES bytes for the
#       stream "bench"

callgrind_start() {
  local build=$1 work=$2 tail=$3
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  rm -rf "$work/data" "$work/out"
  cat > "$work/edged.yaml" <<YAML
data_dir: $work/data
log:
  level: warning
gateway:
  listen: 127.0.0.1:$port
  access_log: false
$tail
YAML
  valgrind --tool=callgrind --callgrind-out-file="$work/out" "$build/edge/edged" \
    --config "$work/edged.yaml" 2> "$work/valgrind.log" &
  pid=$!
  for _ in $(seq 300); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && return 0
    sleep 0.2
  done
  echo "edged did not start:" >&2
  cat "$work/valgrind.log" >&2
  return 1
}

callgrind_stop() {
  local work=$1
  kill -INT "$pid"
  wait "$pid" || true
  pid=
  instructions=$(callgrind_annotate "$work/out" |
    awk '/PROGRAM TOTALS/ && !n++ { gsub(",", "", $1); print $1 }')
}

# 1234567 as 1,234,567.
thousands() {
  python3 -c 'import sys; print(f"{int(sys.argv[1]):,}")' "$1"
}

put_records_body() {
  python3 - "$1" <<'PY'
import base64, json, sys
data = base64.b64encode(b"a" * int(sys.argv[1])).decode()
print(json.dumps({"StreamName": "bench",
                  "Records": [{"Data": data, "PartitionKey": f"k{i}"} for i in range(500)]}))
PY
}
