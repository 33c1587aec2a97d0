#!/usr/bin/env bash
# Instructions edged spends per invocation through an HTTP route, counted by
# callgrind (repeatable, unlike time on a shared machine): the route and
# handler of bench/functions/run.py (GET /bench, aws-lambda-ric on Node,
# which callgrind does not follow), requests sent one after another on one
# kept-alive connection. Two runs, of FEW and MANY requests; the difference
# of their totals over MANY - FEW is the cost of one invocation, start-up
# and the first (cold) invocation left out.
#
#   bench/functions/route-instructions.sh [BUILD_DIR] [FEW] [MANY]
#
# Needs valgrind, python3 and `npm ci` in tests/node.
set -euo pipefail
build=$(realpath "${1:-build}")
few=${2:-200}
many=${3:-1200}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
pid=

cp "$root/bench/functions/handler.mjs" "$work/handler.mjs"
cat > "$work/bootstrap" <<SH
#!/bin/sh
exec $root/tests/node/node_modules/.bin/node $root/tests/node/node_modules/aws-lambda-ric/bin/index.mjs "\$_HANDLER"
SH
chmod +x "$work/bootstrap"

# Total instructions of a daemon that served @1 requests.
count() {
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  rm -rf "$work/data"
  cat > "$work/edged.yaml" <<YAML
data_dir: $work/data
log:
  level: warning
gateway:
  listen: 127.0.0.1:$port
  access_log: false
functions:
  - name: bench
    bootstrap: $work/bootstrap
    handler: handler.handler
routes:
  - route: GET /bench
    function: bench
YAML
  valgrind --tool=callgrind --callgrind-out-file="$work/out" "$build/edge/edged" \
    --config "$work/edged.yaml" 2> "$work/valgrind.log" &
  pid=$!
  python3 - "$port" "$1" <<'PY' || { cat "$work/valgrind.log" >&2; exit 1; }
import http.client, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
for _ in range(300):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/healthz")
        if c.getresponse().read() is not None:
            break
    except OSError:
        time.sleep(0.2)
for _ in range(n):
    c.request("GET", "/bench")
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
PY
  kill -INT "$pid"
  wait "$pid" || true
  callgrind_annotate "$work/out" | awk '/PROGRAM TOTALS/ && !n++ { gsub(",", "", $1); print $1 }'
}

a=$(count "$few")
b=$(count "$many")
echo "instructions: $few requests $a, $many requests $b"
echo "per invocation: $(( (b - a) / (many - few) ))"
