"""What the benchmarks share: a free port, a process's CPU seconds and peak
memory from /proc, waiting for an HTTP answer, stopping what they started."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """User plus system CPU seconds @pid has used (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def peak_rss(pid):
    """@pid's peak resident memory (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def wait_http(url, timeout=15, interval=0.1):
    """The body at @url once it answers; exits the benchmark if it never does."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read()
        except OSError:
            time.sleep(interval)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def start_edged(build, work, config):
    """edged from @build with @config (YAML after the data_dir, log and
    gateway lines written here), once /healthz answers: (process, base URL)."""
    port = free_port()
    path = os.path.join(work, f"edged-{port}.yaml")
    with open(path, "w") as f:
        f.write(f"data_dir: {work}/data\nlog:\n  level: warning\ngateway:\n"
                f"  listen: 127.0.0.1:{port}\n  access_log: false\n{config}")
    proc = subprocess.Popen([os.path.join(build, "edge", "edged"), "--config", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return proc, f"http://127.0.0.1:{port}"


def kinesis(url, op, body):
    """One Kinesis API call to @url; the decoded answer."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "X-Amz-Target": f"Kinesis_20131202.{op}", "Content-Type": "application/x-amz-json-1.1"})
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.load(r)


def stop_all(procs, timeout=10):
    """SIGTERM to each of @procs in order, then waits for each (SIGKILL
    after @timeout seconds)."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
