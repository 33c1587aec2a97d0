"""Start the real edged binary on a free loopback port with its own data
directory, and talk to it as a user would. Standard library only."""

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

EDGED = os.environ.get("EDGED", "build/edge/edged")
EDGECTL = os.environ.get("EDGECTL", "build/edge/edgectl")
SOURCE_ROOT = os.environ.get("EDGED_SOURCE_ROOT", ".")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """One edged process. `config` is YAML text appended to the listen and
    data_dir lines this class writes."""

    def __init__(self, workdir=None, config="", tls=None, env=None, data_dir=None):
        self.own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="edged-it-")
        self.port = free_port()
        self.data_dir = data_dir or os.path.join(self.workdir, "data")
        self.tls = tls
        self.config_path = os.path.join(self.workdir, f"edged-{self.port}.yaml")
        lines = [f"data_dir: {self.data_dir}", "gateway:", f"  listen: 127.0.0.1:{self.port}"]
        if tls:
            lines += ["  tls:", f"    cert: {tls[0]}", f"    key: {tls[1]}"]
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n" + config)
        self.stderr_path = os.path.join(self.workdir, f"edged-{self.port}.log")
        self.env = dict(os.environ, **(env or {}))
        self.proc = None

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self, wait=True):
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([EDGED, "--config", self.config_path],
                                     stdout=subprocess.DEVNULL, stderr=self.stderr,
                                     env=self.env, cwd=self.workdir)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"edged exited with {self.proc.returncode}:\n{self.log()}")
            try:
                status, _, _ = self.request("GET", "/healthz", timeout=1)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"edged did not answer /healthz within {timeout}s:\n{self.log()}")

    def wait_exit(self, timeout=15):
        try:
            return self.proc.wait(timeout)
        finally:
            self.stderr.close()

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait_exit(timeout)

    def log(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def connection(self, timeout=10):
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.tls[0])
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=10):
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def get_json(self, path):
        status, headers, body = self.request("GET", path)
        return status, headers, json.loads(body)

    def rss_bytes(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kw)


def make_certificate(directory):
    """A self-signed certificate for 127.0.0.1, made with the openssl CLI."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    r = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=edged test",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
    if r.returncode != 0:
        raise AssertionError("openssl: " + r.stderr)
    return cert, key
