#!/usr/bin/env python3
"""Functions behind HTTP routes: edged side by side with serverless-offline
(Serverless Framework 3 + serverless-offline 13, npm), both running the same
Node handler (handler.mjs, under the official aws-lambda-ric in edged) on
GET /bench.

    python3 bench/functions/run.py [BUILD_DIR] [ROUNDS] [SECONDS] [CONCURRENCY]

First `npm ci` in bench/functions (serverless) and in tests/node (Node 20,
aws-lambda-ric). Per round, alternating the two: warm throughput with
CONCURRENCY keep-alive clients for SECONDS (bench/functions/load.mjs), then
one client for the latency. Reports medians over rounds, and the ratio
edged / serverless-offline:

- invocations per second and p50/p99 latency through the route;
- edged's own CPU per invocation (user + system of the edged process only,
  /proc/PID/stat: the gateway, the Runtime API, the queue), and the added
  latency: route p50 minus /healthz p50 on the same gateway (HTTP alone);
- the Runtime API round trip with aws-lambda-ric: REPORT Duration p50
  (from the invocation handed over to the runtime to its answer);
- 100 concurrent environments: 100 invocations at once of a function with
  concurrency 100 that sleeps 1 s (the compiled C runtime of the tests,
  tests/functions/c/bootstrap.c), their wall time and the invocations
  running at the peak.
"""

import concurrent.futures
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from procstat import cpu_seconds, free_port, wait_http  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
SECONDS = float(sys.argv[3]) if len(sys.argv) > 3 else 10
CONCURRENCY = int(sys.argv[4]) if len(sys.argv) > 4 else 16
NODE = os.path.join(ROOT, "tests", "node", "node_modules", ".bin", "node")


def load(url, concurrency, seconds):
    """Runs the load generator; its answer, with the CPU seconds it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([NODE, os.path.join(HERE, "load.mjs"), url, str(concurrency),
                        str(seconds)], capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = json.loads(r.stdout)
    out["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out


def descendants_cpu(root):
    """CPU seconds of every process below @root (edged's environments)."""
    parents, below = {}, set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    for pid in parents:
        p = pid
        while p in parents and p != root:
            p = parents[p]
        if p == root and pid != root:
            below.add(pid)
    total = 0.0
    for pid in below:
        try:
            total += cpu_seconds(pid)
        except OSError:
            pass
    return total


def start_edged(work):
    port = free_port()
    ric_bootstrap = os.path.join(work, "bootstrap")
    # The handler under aws-lambda-ric, as tests/functions/node/bootstrap runs it.
    shutil.copy(os.path.join(HERE, "handler.mjs"), os.path.join(work, "handler.mjs"))
    with open(ric_bootstrap, "w") as f:
        f.write(f"#!/bin/sh\nexec {NODE} {ROOT}/tests/node/node_modules/aws-lambda-ric/bin/index.mjs"
                " \"$_HANDLER\"\n")
    os.chmod(ric_bootstrap, 0o755)
    config = os.path.join(work, "edged.yaml")
    with open(config, "w") as f:
        f.write(f"""data_dir: {work}/data
log:
  level: warning
gateway:
  listen: 127.0.0.1:{port}
  access_log: false
functions:
  - name: bench
    bootstrap: {ric_bootstrap}
    handler: handler.handler
    concurrency: 4
  - name: sleeper
    bootstrap: {os.path.join(BUILD, "tests", "c-bootstrap")}
    timeout: 30s
    concurrency: 100
routes:
  - route: GET /bench
    function: bench
""")
    proc = subprocess.Popen([os.path.join(BUILD, "edge", "edged"), "--config", config],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "edged.log"), "w"))
    wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
    return proc, port


def start_offline():
    port = free_port()
    lambda_port = free_port()
    env = dict(os.environ, SLS_TELEMETRY_DISABLED="1", SLS_NOTIFICATIONS_MODE="off",
               AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
               PATH=os.path.dirname(NODE) + ":" + os.environ["PATH"])
    proc = subprocess.Popen([NODE, os.path.join(HERE, "node_modules", "serverless", "bin", "serverless.js"),
                             "offline", "start", "--httpPort", str(port), "--lambdaPort", str(lambda_port),
                             "--noTimeout"],
                            cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_http(f"http://127.0.0.1:{port}/bench", timeout=120)
    return proc, port


def median(values):
    return statistics.median(values) if values else float("nan")


def hundred_environments(port):
    url = f"http://127.0.0.1:{port}/2015-03-31/functions/sleeper/invocations"

    def invoke(_):
        req = urllib.request.Request(url, data=b'{"sleep": 1}', method="POST")
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status

    peak = envs = 0
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(100) as pool:
        futures = [pool.submit(invoke, n) for n in range(100)]
        while not all(f.done() for f in futures):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/functions/sleeper") as r:
                status = json.load(r)
            peak = max(peak, status["running"])
            envs = max(envs, status["environments"])
            time.sleep(0.05)
        statuses = [f.result() for f in futures]
    return time.monotonic() - started, peak, envs, statuses.count(200)


def main():
    work = tempfile.mkdtemp(prefix="edged-bench-functions-")
    edged, edged_port = start_edged(work)
    offline, offline_port = start_offline()
    targets = {
        "edged": f"http://127.0.0.1:{edged_port}/bench",
        "serverless-offline": f"http://127.0.0.1:{offline_port}/bench",
    }
    results = {name: {"rps": [], "p50": [], "p99": [], "lat50": [], "lat99": []} for name in targets}
    cpu_per_call, healthz50 = [], []
    runtime_per_call, load_per_call = [], []
    try:
        for url in targets.values():
            load(url, CONCURRENCY, 2)  # warm: environments started, JIT warm
        for r in range(ROUNDS):
            order = list(targets.items()) if r % 2 == 0 else list(reversed(targets.items()))
            for name, url in order:
                before = cpu_seconds(edged.pid)
                runtimes_before = descendants_cpu(edged.pid)
                out = load(url, CONCURRENCY, SECONDS)
                if name == "edged":
                    calls = max(1, out["requests"])
                    cpu_per_call.append((cpu_seconds(edged.pid) - before) / calls)
                    runtime_per_call.append((descendants_cpu(edged.pid) - runtimes_before) / calls)
                    load_per_call.append(out["cpu"] / calls)
                results[name]["rps"].append(out["rps"])
                results[name]["p50"].append(out["p50_ms"])
                results[name]["p99"].append(out["p99_ms"])
                one = load(url, 1, SECONDS / 2)
                results[name]["lat50"].append(one["p50_ms"])
                results[name]["lat99"].append(one["p99_ms"])
            healthz50.append(load(f"http://127.0.0.1:{edged_port}/healthz", 1, SECONDS / 2)["p50_ms"])
            print(f"round {r + 1}/{ROUNDS}: " + ", ".join(
                f"{n} {results[n]['rps'][-1]:.0f}/s p50 {results[n]['lat50'][-1]:.2f} ms"
                for n in targets), file=sys.stderr)
        with urllib.request.urlopen(f"http://127.0.0.1:{edged_port}/v1/functions/bench/logs?limit=10000") as r:
            reports = [float(m.group(1)) for e in json.load(r)["events"]
                       if (m := re.match(r"REPORT RequestId: \S+\tDuration: ([0-9.]+) ms", e["message"]))]
        cold = hundred_environments(edged_port)
        warm = hundred_environments(edged_port)
    finally:
        os.killpg(offline.pid, signal.SIGTERM)
        edged.send_signal(signal.SIGTERM)
        edged.wait(30)
        offline.wait(30)
        shutil.rmtree(work, ignore_errors=True)

    e, s = results["edged"], results["serverless-offline"]
    print(f"\n{ROUNDS} rounds of {SECONDS:g} s, {CONCURRENCY} clients (medians)\n")
    print("| | edged | serverless-offline | edged / serverless-offline |")
    print("|---|---|---|---|")
    print(f"| invocations/s ({CONCURRENCY} clients) | {median(e['rps']):.0f} | {median(s['rps']):.0f} | "
          f"{median(e['rps']) / median(s['rps']):.1f}x |")
    print(f"| p50 / p99 at {CONCURRENCY} clients (ms) | {median(e['p50']):.2f} / {median(e['p99']):.2f} | "
          f"{median(s['p50']):.2f} / {median(s['p99']):.2f} | {median(e['p50']) / median(s['p50']):.2f} |")
    print(f"| p50 / p99, one client (ms) | {median(e['lat50']):.2f} / {median(e['lat99']):.2f} | "
          f"{median(s['lat50']):.2f} / {median(s['lat99']):.2f} | {median(e['lat50']) / median(s['lat50']):.2f} |")
    print()
    print(f"- edged's own CPU per invocation: {median(cpu_per_call) * 1e6:.0f} µs")
    per_call = median(cpu_per_call) + median(runtime_per_call) + median(load_per_call)
    print(f"- the rest of the machine's CPU per invocation: the Node environments (aws-lambda-ric "
          f"and the handler) {median(runtime_per_call) * 1e6:.0f} µs, the load generator "
          f"{median(load_per_call) * 1e6:.0f} µs; with edged's, {per_call * 1e6:.0f} µs: "
          f"{os.cpu_count()} cores carry at most {os.cpu_count() / per_call:.0f} invocations/s "
          f"of this load, and {os.cpu_count() / (per_call - median(cpu_per_call)):.0f}/s if edged "
          f"took no CPU at all")
    print(f"- added latency (route p50 {median(e['lat50']):.3f} ms - /healthz p50 {median(healthz50):.3f} ms): "
          f"{median(e['lat50']) - median(healthz50):.3f} ms")
    print(f"- Runtime API round trip with aws-lambda-ric (REPORT Duration p50 of {len(reports)}): "
          f"{median(reports):.2f} ms")
    for name, (wall, peak, envs, ok) in (("cold", cold), ("warm", warm)):
        print(f"- 100 invocations at once, 1 s each, concurrency 100, {name}: {ok}/100 answered in "
              f"{wall:.2f} s, {envs} environments, {peak} invocations running at the peak (sampled "
              f"every 50 ms)")


if __name__ == "__main__":
    main()
