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
# Needs valgrind, curl, python3 and `npm ci` in tests/node.
set -euo pipefail
build=$(realpath "${1:-build}")
few=${2:-200}
many=${3:-1200}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
pid=
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
. "$root/bench/callgrind.sh"

cp "$root/bench/functions/handler.mjs" "$work/handler.mjs"
cat > "$work/bootstrap" <<SH
#!/bin/sh
exec $root/tests/node/node_modules/.bin/node $root/tests/node/node_modules/aws-lambda-ric/bin/index.mjs "\$_HANDLER"
SH
chmod +x "$work/bootstrap"

# The instructions of a daemon that served @1 requests.
count() {
  callgrind_start "$build" "$work" "functions:
  - name: bench
    bootstrap: $work/bootstrap
    handler: handler.handler
routes:
  - route: GET /bench
    function: bench"
  python3 - "$port" "$1" <<'PY'
import http.client, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
for _ in range(n):
    c.request("GET", "/bench")
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
PY
  callgrind_stop "$work"
}

count "$few"
a=$instructions
count "$many"
b=$instructions
echo "instructions: $few requests $(thousands "$a"), $many requests $(thousands "$b")"
echo "per invocation: $(( (b - a) / (many - few) ))"
