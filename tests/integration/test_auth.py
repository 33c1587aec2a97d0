"""Gateway security against a real edged with authentication on: every route
refuses missing and bad credentials in its clients' error shape; the AWS CLI
signs its way in; API keys, usage plans, JWTs (HS256, RS256, ES256),
sessions, a Lambda authorizer, CORS, TLS, and the limits on what a client may
send. Tokens are signed with the openssl CLI and Python's hmac; SigV4 with
botocore (the AWS CLI's own signer)."""

import base64
import datetime
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
from unittest import mock

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import (EDGECTL, Daemon, WebSocket, assert_kept_alive, camera_env,  # noqa: E402
                           make_certificate, run, run_node_tests, wait_for)

ROOT = os.environ.get("EDGED_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
AUTHORIZER = os.path.join(ROOT, "tests", "functions", "authorizer", "bootstrap")
ECHO = os.path.join(ROOT, "tests", "functions", "bash", "bootstrap")
AWS = os.environ.get("AWS_CLI", "/usr/bin/aws")
AKID, SECRET = "AKIDEDGEDTEST", "edged/secret+key/for-tests"
HS_SECRET = b"an HS256 secret of more than 32 bytes"

# The AWS CLI's own signer: Debian's awscli carries botocore inside it, and
# takes its dependencies (urllib3, dateutil) from Debian's packages.
sys.path[0:0] = ["/usr/lib/python3/dist-packages/awscli", "/usr/lib/python3/dist-packages"]
import botocore.auth  # noqa: E402
import botocore.awsrequest  # noqa: E402
import botocore.credentials  # noqa: E402


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def der_to_raw(der):
    """An ECDSA signature from DER (openssl) to JOSE's r || s."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 3
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        out += der[i + 2:i + 2 + n].lstrip(b"\0").rjust(32, b"\0")
        i += 2 + n
    return out


class Keys:
    """An RSA and a P-256 key pair made with the openssl CLI, their JWKS, and
    a signer of tokens."""

    def __init__(self, directory):
        self.dir = directory
        self.rsa = os.path.join(directory, "rsa.pem")
        self.ec = os.path.join(directory, "ec.pem")
        for path, args in ((self.rsa, ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
                           (self.ec, ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])):
            r = run(["openssl", "genpkey", *args, "-out", path])
            assert r.returncode == 0, r.stderr
        self.jwks_path = os.path.join(directory, "jwks.json")
        with open(self.jwks_path, "w") as f:
            json.dump({"keys": [self.rsa_jwk(), self.ec_jwk()]}, f)
        self.secret_path = os.path.join(directory, "hs256.secret")
        with open(self.secret_path, "wb") as f:
            f.write(HS_SECRET + b"\n")

    def _text(self, path):
        return run(["openssl", "pkey", "-in", path, "-noout", "-text"]).stdout

    @staticmethod
    def _hex_block(text, label):
        m = re.search(label + r":\s*\n((?:\s+[0-9a-f:]+\n)+)", text)
        return bytes.fromhex(re.sub(r"[\s:]", "", m.group(1)))

    def rsa_jwk(self):
        text = self._text(self.rsa)
        n = self._hex_block(text, "modulus").lstrip(b"\0")
        e = int(re.search(r"publicExponent: (\d+)", text).group(1))
        return {"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256", "n": b64url(n),
                "e": b64url(e.to_bytes(3, "big"))}

    def ec_jwk(self):
        point = self._hex_block(self._text(self.ec), "pub")
        assert point[0] == 4 and len(point) == 65
        return {"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": b64url(point[1:33]),
                "y": b64url(point[33:])}

    def token(self, alg="HS256", lifetime=600, **claims):
        now = int(time.time())
        payload = {"sub": "alice", "aud": "edged", "iat": now, "exp": now + lifetime, **claims}
        header = {"alg": alg, "typ": "JWT"}
        if alg != "HS256":
            header["kid"] = "rsa-1" if alg == "RS256" else "ec-1"
        signing = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
        if alg == "HS256":
            sig = hmac.new(HS_SECRET, signing.encode(), hashlib.sha256).digest()
        else:
            r = subprocess.run(["openssl", "dgst", "-sha256", "-sign",
                                self.rsa if alg == "RS256" else self.ec],
                               input=signing.encode(), capture_output=True, check=True)
            sig = r.stdout if alg == "RS256" else der_to_raw(r.stdout)
        return f"{signing}.{b64url(sig)}"


def sigv4_headers(method, url, body=b"", headers=None, akid=AKID, secret=SECRET, when=None,
                  service="kinesis"):
    """Headers for a request signed as the AWS CLI signs it."""
    creds = botocore.credentials.Credentials(akid, secret)
    req = botocore.awsrequest.AWSRequest(method=method, url=url, data=body,
                                         headers=dict(headers or {}))
    signer = botocore.auth.SigV4Auth(creds, service, "us-east-1")
    if when is None:
        signer.add_auth(req)
    else:
        with mock.patch("botocore.auth.datetime") as dt:
            dt.datetime.utcnow.return_value = when
            dt.datetime.now.return_value = when
            signer.add_auth(req)
    return dict(req.headers.items())


def write_credentials(directory):
    path = os.path.join(directory, "credentials")
    with open(path, "w") as f:
        f.write(f"[default]\naws_access_key_id = {AKID}\naws_secret_access_key = {SECRET}\n")
    return path


def auth_config(tmp, keys, extra_gateway="", extra=""):
    """Gateway keys continue the harness's own gateway: section."""
    return f"""  auth:
    enabled: "on"
    jwt:
      secret_file: {keys.secret_path}
      jwks_file: {keys.jwks_path}
      audience: edged
      leeway: 1s
    sigv4:
      credentials_file: {write_credentials(tmp)}
    authorizer:
      function: authz
      ttl: 60s
    usage_plans:
      - name: slow
        rate: 20
        burst: 5
      - name: tiny
        quota_per_day: 10
    groups:
      - routes: /api/*
        modes: authorizer
  cors:
    allow_origins: https://app.example
{extra_gateway}functions:
  - name: authz
    bootstrap: {AUTHORIZER}
    environment:
      AUTH_LOG: {os.path.join(tmp, "authz.log")}
  - name: echo
    bootstrap: {ECHO}
routes:
  - route: GET /api/hello
    function: echo
  - route: GET /open/hello
    function: echo
websockets:
  - path: /chat
    message: echo
{extra}"""


# Path parameters for enumerating routes.
SAMPLE = {"name": "demo", "id": "x1", "uuid": "00000000-0000-0000-0000-000000000000",
          "file": "1.mp4", "path": "style.css"}


def fill(pattern):
    return re.sub(r"\{(\w+)\*?\}", lambda m: SAMPLE.get(m.group(1), "x"), pattern)


AWS_TYPES = {"MissingAuthenticationTokenException", "UnrecognizedClientException",
             "InvalidSignatureException", "ExpiredTokenException", "IncompleteSignatureException"}


class AuthCase(unittest.TestCase):
    """One edged with authentication on for the class, keys to sign with,
    and its admin key. Subclasses add configuration."""
    extra_gateway = ""
    extra = ""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="edged-auth-")
        cls.keys = Keys(cls.tmp)
        # camera_env: a camera runs in some (LeakSanitizer's stacks, tests/lsan.supp).
        cls.d = Daemon(config=auth_config(cls.tmp, cls.keys, cls.extra_gateway, cls.extra),
                       env=camera_env()).start()
        cls.admin = {"x-api-key": cls.d.admin_key}

    @classmethod
    def tearDownClass(cls):
        code = cls.d.stop()
        cls.d.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0, code


class Routes(AuthCase):
    """Every route of the OpenAPI document, the Kinesis JSON API and the
    WebSocket endpoints, with no, wrong, expired and badly signed
    credentials."""
    extra = """cameras:
  - name: demo
    source: test://
streams:
  - name: orders
"""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        status, _, doc = cls.d.request("GET", "/v1/openapi.json", headers=cls.admin)
        assert status == 200, doc
        cls.openapi = json.loads(doc)

    def operations(self):
        for path, ops in self.openapi["paths"].items():
            for method in ops:
                yield method.upper(), path

    def bad_credentials(self, method, path, body):
        url = self.d.url + path
        expired = self.keys.token("HS256", lifetime=-120)
        return {
            "missing": {},
            "wrong key": {"x-api-key": "edk_" + "0" * 48},
            "expired JWT": {"Authorization": f"Bearer {expired}"},
            "bad signature": sigv4_headers(method, url, body, secret="not the secret"),
            "unknown access key": sigv4_headers(method, url, body, akid="AKIDNOBODY"),
        }

    def assert_refused(self, method, path, what, status, headers, body):
        where = f"{method} {path} with {what}"
        self.assertIn(status, (400, 401, 403), f"{where}: {status} {body[:200]!r}")
        if path == "/" and method == "POST":
            answer = json.loads(body)
            self.assertIn(answer["__type"], AWS_TYPES, where)
        elif path.startswith(("/2015-03-31/", "/2019-09-25/", "/2019-09-30/", "/@connections/")) or (
                method == "POST" and path[1:] in KVS_OPERATIONS):
            self.assertIn(headers.get("X-Amzn-ErrorType"), AWS_TYPES, where)
            self.assertIn("message", json.loads(body), where)
        elif path.startswith("/api/") or path.startswith("/open/"):
            self.assertIn(json.loads(body)["message"], ("Unauthorized", "Forbidden"), where)
        else:
            answer = json.loads(body)
            self.assertIn(answer["error"]["code"],
                          ("Unauthorized", "Forbidden", "BadRequest"), where)

    def test_every_route_refuses_bad_credentials(self):
        seen = 0
        for method, pattern in self.operations():
            if pattern in ("/login", "/assets/{path}", "/v1/login", "/v1/logout"):
                continue  # the login page and what it needs: public by design
            path = fill(pattern)
            body = json.dumps({"StreamName": "demo", "name": "made-by-a-stranger",
                               "shards": 1}).encode() if method in ("POST", "PUT") else b""
            for what, headers in self.bad_credentials(method, path, body).items():
                headers = dict(headers)
                if path == "/" and method == "POST":
                    headers["X-Amz-Target"] = "Kinesis_20131202.CreateStream"
                    headers["Content-Type"] = "application/x-amz-json-1.1"
                    if what in ("bad signature", "unknown access key"):
                        headers.update(sigv4_headers(method, self.d.url + path, body, headers,
                                                     secret="not the secret",
                                                     akid=AKID if what == "bad signature"
                                                     else "AKIDNOBODY"))
                status, answer_headers, answer = self.d.request(method, path, body=body,
                                                                headers=headers)
                self.assert_refused(method, path, what, status, answer_headers, answer)
                seen += 1
        self.assertGreater(seen, 5 * 50)
        # Nothing a refused request asked for happened.
        status, _, streams = self.d.get_json_with("/v1/streams", self.admin)
        names = [s["name"] for s in streams["streams"]]
        self.assertNotIn("made-by-a-stranger", names)
        self.assertIn("orders", names)
        status, _, cameras = self.d.get_json_with("/v1/cameras", self.admin)
        self.assertEqual([c["name"] for c in cameras["cameras"]], ["demo"])

    def test_strangers_learn_nothing_of_the_routes(self):
        for method, path in (("GET", "/no/such/route"), ("DELETE", "/v1/streams"),
                             ("PUT", "/2015-03-31/functions/x")):
            status, _, body = self.d.request(method, path)
            self.assertEqual(status, 401, f"{method} {path}: {body!r}")
        self.assertEqual(self.d.request("GET", "/no/such/route", headers=self.admin)[0], 404)
        self.assertEqual(self.d.request("DELETE", "/v1/streams", headers=self.admin)[0], 405)

    def test_every_route_takes_the_admin_key(self):
        for method, pattern in self.operations():
            if method != "GET" or "{" in pattern or pattern.startswith("/api/"):
                continue
            status, _, body = self.d.request("GET", pattern, headers=self.admin)
            self.assertNotIn(status, (401, 403), f"GET {pattern}: {body[:200]!r}")

    def test_websockets_refuse_at_the_upgrade(self):
        for path in ("/v1/streams/orders/subscribe", "/v1/cameras/demo/live", "/chat"):
            ws = WebSocket(self.d.port, path)
            self.assertEqual(ws.status, 401, path)
            ws.close()
            ws = WebSocket(self.d.port, path + "?token=edk_" + "1" * 48)
            self.assertEqual(ws.status, 403, path)
            ws.close()
            ws = WebSocket(self.d.port, path, headers=self.admin)
            self.assertEqual(ws.status, 101, path)
            ws.close()
            # Browsers cannot set headers on a WebSocket: ?token= carries it.
            token = urllib.parse.quote(self.keys.token("ES256"))
            ws = WebSocket(self.d.port, f"{path}?token={token}")
            self.assertEqual(ws.status, 101, path)
            ws.close()

    def test_websocket_closed_when_its_token_expires(self):
        token = self.keys.token("RS256", lifetime=2)
        ws = WebSocket(self.d.port, f"/v1/streams/orders/subscribe?token={token}")
        self.assertEqual(ws.status, 101)
        started = time.monotonic()
        while True:
            opcode, payload = ws.recv()
            if opcode == 8:
                break
        self.assertEqual(int.from_bytes(payload[:2], "big"), 1008)
        self.assertIn(b"expired", payload[2:])
        # exp is 2 s away; the leeway is 1 s, and expiry is checked each second.
        self.assertLess(time.monotonic() - started, 6)
        ws.close()


KVS_OPERATIONS = {"listFragments", "getMediaForFragmentList", "getClip", "getImages",
                  "getHLSStreamingSessionURL", "describeStream", "listStreams",
                  "getDataEndpoint", "createStream", "deleteStream"}


def _get_json_with(self, path, headers):
    status, answer_headers, body = self.request("GET", path, headers=headers)
    return status, answer_headers, json.loads(body)


Daemon.get_json_with = _get_json_with


class Credentials(AuthCase):
    """What each kind of credential lets in, and the AWS CLI with right and
    wrong keys."""
    extra = """streams:
  - name: orders
    shards: 2
"""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.aws_env = dict(os.environ, AWS_ACCESS_KEY_ID=AKID, AWS_SECRET_ACCESS_KEY=SECRET,
                           AWS_DEFAULT_REGION="eu-west-1", AWS_PAGER="",
                           AWS_CONFIG_FILE=os.path.join(cls.tmp, "none"),
                           AWS_SHARED_CREDENTIALS_FILE=os.path.join(cls.tmp, "none"))

    def aws(self, *args, env=None):
        return subprocess.run([AWS, "--endpoint-url", self.d.url, "--output", "json", *args],
                              capture_output=True, text=True, env=env or self.aws_env,
                              timeout=60)

    def test_aws_cli_signs_its_way_in(self):
        if not os.path.exists(AWS):
            self.skipTest("the AWS CLI is not installed")
        data = base64.b64encode(b"signed and delivered").decode()
        r = self.aws("kinesis", "put-record", "--stream-name", "orders", "--partition-key", "k",
                     "--data", data)
        self.assertEqual(r.returncode, 0, r.stderr)
        shard = json.loads(r.stdout)["ShardId"]
        r = self.aws("kinesis", "get-shard-iterator", "--stream-name", "orders", "--shard-id",
                     shard, "--shard-iterator-type", "TRIM_HORIZON")
        iterator = json.loads(r.stdout)["ShardIterator"]
        r = self.aws("kinesis", "get-records", "--shard-iterator", iterator)
        self.assertEqual([base64.b64decode(x["Data"]) for x in json.loads(r.stdout)["Records"]],
                         [b"signed and delivered"])
        r = self.aws("lambda", "invoke", "--function-name", "echo", "--payload", '{"hi": 1}',
                     "--cli-binary-format", "raw-in-base64-out", os.path.join(self.tmp, "out"))
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(self.tmp, "out")) as f:
            self.assertEqual(json.load(f)["event"], {"hi": 1})

        wrong = dict(self.aws_env, AWS_SECRET_ACCESS_KEY="not-the-secret")
        for args in (("kinesis", "list-streams"), ("lambda", "list-functions"),
                     ("kinesisvideo", "list-streams")):
            r = self.aws(*args, env=wrong)
            self.assertNotEqual(r.returncode, 0, args)
            self.assertIn("InvalidSignatureException", r.stderr, args)
        stranger = dict(self.aws_env, AWS_ACCESS_KEY_ID="AKIDSTRANGER")
        r = self.aws("kinesis", "list-streams", env=stranger)
        self.assertIn("UnrecognizedClientException", r.stderr)
        r = self.aws("lambda", "list-functions", env=stranger)
        self.assertIn("UnrecognizedClientException", r.stderr)

    def test_signature_outside_the_replay_window(self):
        body = b"{}"
        headers = {"X-Amz-Target": "Kinesis_20131202.ListStreams",
                   "Content-Type": "application/x-amz-json-1.1"}
        old = datetime.datetime.utcnow() - datetime.timedelta(minutes=6)
        signed = sigv4_headers("POST", self.d.url + "/", body, headers, when=old)
        status, _, answer = self.d.request("POST", "/", body=body, headers=signed)
        self.assertEqual(status, 400)
        answer = json.loads(answer)
        self.assertEqual(answer["__type"], "InvalidSignatureException")
        self.assertIn("Signature expired", answer["message"])
        recent = datetime.datetime.utcnow() - datetime.timedelta(minutes=4)
        signed = sigv4_headers("POST", self.d.url + "/", body, headers, when=recent)
        status, _, answer = self.d.request("POST", "/", body=body, headers=signed)
        self.assertEqual(status, 200, answer)
        # A signed body cannot be swapped for another.
        signed = sigv4_headers("POST", self.d.url + "/", body, headers)
        status, _, answer = self.d.request("POST", "/", body=b'{"Limit": 1}', headers=signed)
        self.assertEqual(json.loads(answer)["__type"], "InvalidSignatureException")

    def test_jwt_algorithms_and_claims(self):
        for alg in ("HS256", "RS256", "ES256"):
            token = self.keys.token(alg)
            status, _, body = self.d.request("GET", "/v1/streams",
                                             headers={"Authorization": f"Bearer {token}"})
            self.assertEqual(status, 200, (alg, body))
        expired = self.keys.token("ES256", lifetime=-30)
        status, headers, body = self.d.request("GET", "/v1/streams",
                                               headers={"Authorization": f"Bearer {expired}"})
        self.assertEqual(status, 401)
        self.assertIn('error="invalid_token"', headers["WWW-Authenticate"])
        self.assertIn("expired", json.loads(body)["error"]["message"])
        for bad in (self.keys.token("RS256", aud="someone-else"),
                    self.keys.token("HS256", nbf=int(time.time()) + 600),
                    self.keys.token("RS256")[:-4] + "AAAA"):
            status, _, body = self.d.request("GET", "/v1/streams",
                                             headers={"Authorization": f"Bearer {bad}"})
            self.assertIn(status, (401, 403), body)
        # Only a token with the admin scope manages keys.
        plain = {"Authorization": f"Bearer {self.keys.token('RS256')}"}
        admin = {"Authorization": f"Bearer {self.keys.token('RS256', scope='edged:admin')}"}
        self.assertEqual(self.d.request("GET", "/v1/keys", headers=plain)[0], 403)
        self.assertEqual(self.d.request("GET", "/v1/keys", headers=admin)[0], 200)

    def test_keys_are_kept_hashed_and_managed_with_edgectl(self):
        env = dict(os.environ, EDGED_URL=self.d.url, EDGED_API_KEY=self.d.admin_key)
        r = subprocess.run([EDGECTL, "keys", "create", "camera-viewer", "slow"], env=env,
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        secret = r.stdout.strip()
        self.assertTrue(secret.startswith("edk_"), secret)
        r = subprocess.run([EDGECTL, "keys"], env=env, capture_output=True, text=True, timeout=30)
        self.assertIn("camera-viewer", r.stdout)
        self.assertNotIn(secret, r.stdout)
        self.assertIn(secret[:10], r.stdout)  # the prefix tells keys apart
        key_id = next(line.split()[0] for line in r.stdout.splitlines() if "camera-viewer" in line)
        # The database holds a hash, never the key.
        for name in os.listdir(self.d.data_dir):
            path = os.path.join(self.d.data_dir, name)
            if os.path.isfile(path) and name != "admin.key":
                with open(path, "rb") as f:
                    self.assertNotIn(secret.encode(), f.read(), name)
        viewer = {"x-api-key": secret}
        self.assertEqual(self.d.request("GET", "/v1/streams", headers=viewer)[0], 200)
        self.assertEqual(self.d.request("GET", "/v1/keys", headers=viewer)[0], 403)
        r = subprocess.run([EDGECTL, "keys", "create", "sneaky"],
                           env=dict(env, EDGED_API_KEY=secret), capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("403", r.stderr)
        # A session made from the key ends with it.
        status, headers, _ = self.d.request("POST", "/v1/login", body=json.dumps({"key": secret}),
                                            headers={"Content-Type": "application/json"})
        cookie = headers["Set-Cookie"].split(";")[0]
        self.assertEqual(self.d.request("GET", "/v1/streams", headers={"Cookie": cookie})[0], 200)
        r = subprocess.run([EDGECTL, "keys", "delete", key_id], env=env, capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.d.request("GET", "/v1/streams", headers=viewer)[0], 403)
        self.assertEqual(self.d.request("GET", "/v1/streams", headers={"Cookie": cookie})[0], 403)

    def test_sessions_for_browsers(self):
        status, headers, _ = self.d.request(
            "POST", "/v1/login", body=json.dumps({"key": self.d.admin_key}),
            headers={"Content-Type": "application/json"})
        self.assertEqual(status, 200)
        set_cookie = headers["Set-Cookie"]
        for attribute in ("HttpOnly", "SameSite=Strict", "Path=/"):
            self.assertIn(attribute, set_cookie)
        cookie = {"Cookie": set_cookie.split(";")[0]}
        self.assertEqual(self.d.request("GET", "/v1/cameras", headers=cookie)[0], 200)
        # A page of another site cannot use it to change anything.
        status, _, _ = self.d.request("POST", "/v1/streams", body=b'{"name":"csrf"}',
                                      headers={**cookie, "Origin": "https://evil.example",
                                               "Content-Type": "application/json"})
        self.assertEqual(status, 403)
        status, _, _ = self.d.request("POST", "/v1/streams", body=b'{"name":"from-the-ui"}',
                                      headers={**cookie, "Origin": self.d.url,
                                               "Content-Type": "application/json"})
        self.assertEqual(status, 201)
        # A browser on a page without a session goes to the login page.
        status, headers, body = self.d.request("GET", "/camera?name=x",
                                               headers={"Accept": "text/html"})
        self.assertEqual(status, 401)
        self.assertIn(b"/login?next=/camera", body)
        status, headers, body = self.d.request("GET", "/login")
        self.assertEqual(status, 200)
        self.assertIn("default-src 'self'", headers["Content-Security-Policy"])
        self.assertEqual(self.d.request("POST", "/v1/login", body=b'{"key":"edk_nope"}',
                                        headers={"Content-Type": "application/json"})[0], 403)

    def test_lambda_authorizer(self):
        log = os.path.join(self.tmp, "authz.log")
        status, _, body = self.d.request("GET", "/api/hello",
                                         headers={"Authorization": "Bearer allow bob"})
        self.assertEqual(status, 200, body)
        event = json.loads(body)["event"]
        self.assertEqual(event["requestContext"]["authorizer"]["lambda"],
                         {"user": "bob", "checked": True})
        status, _, body = self.d.request("GET", "/api/hello",
                                         headers={"Authorization": "Bearer mallory"})
        self.assertEqual(status, 403)
        self.assertEqual(json.loads(body), {"message": "Forbidden"})
        status, _, body = self.d.request("GET", "/api/hello")
        self.assertEqual(status, 401)
        self.assertEqual(json.loads(body), {"message": "Unauthorized"})
        # Answers are cached for the TTL: the same identity again is not asked.
        for _ in range(5):
            self.assertEqual(self.d.request("GET", "/api/hello",
                                            headers={"Authorization": "Bearer allow bob"})[0], 200)
        with open(log) as f:
            calls = [json.loads(line) for line in f]
        self.assertEqual([c["identity"] for c in calls], ["Bearer allow bob", "Bearer mallory"])
        self.assertEqual(calls[0]["routeKey"], "GET /api/hello")
        # Routes outside the group take the usual credentials.
        self.assertEqual(self.d.request("GET", "/open/hello")[0], 401)
        self.assertEqual(self.d.request("GET", "/open/hello", headers=self.admin)[0], 200)

    def test_cors(self):
        status, headers, _ = self.d.request("OPTIONS", "/v1/streams", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key, content-type"})
        self.assertEqual(status, 204)
        self.assertEqual(headers["Access-Control-Allow-Origin"], "https://app.example")
        self.assertIn("POST", headers["Access-Control-Allow-Methods"])
        self.assertIn("x-api-key", headers["Access-Control-Allow-Headers"])
        status, _, _ = self.d.request("OPTIONS", "/v1/streams", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        self.assertEqual(status, 403)
        status, headers, _ = self.d.request("GET", "/v1/streams", headers={
            **self.admin, "Origin": "https://app.example"})
        self.assertEqual(headers["Access-Control-Allow-Origin"], "https://app.example")
        status, headers, _ = self.d.request("GET", "/v1/streams", headers={
            **self.admin, "Origin": "https://evil.example"})
        self.assertNotIn("Access-Control-Allow-Origin", headers)
        for name, value in (("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                            ("Referrer-Policy", "no-referrer")):
            self.assertEqual(headers[name], value)

    def test_access_log_and_metrics(self):
        self.assertEqual(self.d.request("GET", "/v1/streams")[0], 401)
        self.d.request("GET", "/v1/streams?limit=1", headers=self.admin)
        line = wait_for(lambda: next((x for x in self.d.log().splitlines()
                                      if '"GET /v1/streams?limit=1 HTTP/1.1" 200' in x), None),
                        what="an access log line")
        self.assertRegex(line, r'127\.0\.0\.1 - admin \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
                               r'"GET /v1/streams\?limit=1 HTTP/1\.1" 200 \d+ "-" "[^"]*" \d+\.\d{3}')
        token = self.keys.token("HS256")
        self.d.request("GET", f"/v1/streams?token={token}")
        self.assertNotIn(token, self.d.log())
        _, _, metrics = self.d.request("GET", "/metrics", headers=self.admin)
        metrics = metrics.decode()
        self.assertRegex(metrics, r'edged_http_requests_total\{method="GET",route="/v1/streams",'
                                  r'code="200"\} \d+')
        self.assertIn('edged_http_request_duration_seconds_bucket{method="GET",'
                      'route="/v1/streams",le="0.005"}', metrics)
        self.assertRegex(metrics, r'edged_http_auth_refused_total\{reason="missing"\} \d+')

    def test_hls_playlist_carries_its_token(self):
        # Players fetch segments by the playlist's relative URIs, which
        # lose its query: each carries the token on.
        token = urllib.parse.quote(self.keys.token("HS256"), safe="")
        status, _, body = self.d.request("GET", f"/v1/cameras/none/hls/live.m3u8?token={token}")
        self.assertEqual(status, 404)  # authenticated: the camera is what is missing


class UsagePlans(AuthCase):

    def new_key(self, name, plan):
        status, _, body = self.d.request("POST", "/v1/keys",
                                         body=json.dumps({"name": name, "plan": plan}),
                                         headers={**self.admin, "Content-Type": "application/json"})
        self.assertEqual(status, 201, body)
        return json.loads(body)["key"]

    def test_rate_after_the_burst(self):
        key = self.new_key("rated", "slow")  # 20 requests/s, burst 5
        accepted, refused, retry_after = [], 0, set()
        lock = threading.Lock()
        stop = time.monotonic() + 4.0

        def hammer():
            nonlocal refused
            while time.monotonic() < stop:
                status, headers, _ = self.d.request("GET", "/healthz",
                                                    headers={"x-api-key": key})
                with lock:
                    if status == 200:
                        accepted.append(time.monotonic())
                    else:
                        self.assertEqual(status, 429)
                        refused += 1
                        retry_after.add(headers.get("Retry-After"))

        started = time.monotonic()
        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        self.assertGreater(refused, 20)
        self.assertEqual(retry_after, {"1"})
        rate = (len(accepted) - 5) / elapsed
        self.assertLess(abs(rate - 20) / 20, 0.10,
                        f"{len(accepted)} accepted in {elapsed:.2f} s: {rate:.1f}/s after the burst")

    def test_daily_quota_survives_a_restart(self):
        key = self.new_key("quota", "tiny")  # 10 a day
        for _ in range(6):
            self.assertEqual(self.d.request("GET", "/healthz", headers={"x-api-key": key})[0], 200)
        self.d.stop()
        self.d.start()
        for _ in range(4):
            self.assertEqual(self.d.request("GET", "/healthz", headers={"x-api-key": key})[0], 200)
        status, headers, body = self.d.request("GET", "/healthz", headers={"x-api-key": key})
        self.assertEqual(status, 429)
        self.assertEqual(json.loads(body)["error"]["code"], "QuotaExceeded")
        self.assertGreater(int(headers["Retry-After"]), 0)
        self.assertLessEqual(int(headers["Retry-After"]), 86400)
        # The Kinesis clients get their own shape.
        status, headers, body = self.d.request(
            "POST", "/", body=b"{}", headers={"x-api-key": key,
                                              "X-Amz-Target": "Kinesis_20131202.ListStreams",
                                              "Content-Type": "application/x-amz-json-1.1"})
        self.assertEqual(status, 429)
        self.assertEqual(json.loads(body)["__type"], "LimitExceededException")


def tree(directory):
    """Every file under @directory with its size, but the database's own
    journal files (SQLite rewrites them as it likes)."""
    out = {}
    for base, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(base, name)
            if "-wal" in name or "-shm" in name or name.endswith(".db"):
                continue
            out[os.path.relpath(path, directory)] = os.path.getsize(path)
    return out


class Limits(AuthCase):
    extra_gateway = """  max_body_bytes: 64KiB
  max_connections_per_client: 8
  header_timeout: 2s
  keepalive_timeout: 3s
"""

    def raw(self, request, read=True):
        with socket.create_connection(("127.0.0.1", self.d.port), timeout=10) as s:
            s.sendall(request)
            if not read:
                return b""
            # Nothing more to ask: the answer's end is the connection's, not
            # the kept-alive connection's idle timeout. (A request refused
            # before it was all sent may have ended the connection already.)
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return data
                data += chunk

    def test_traversal_and_oversize_change_nothing(self):
        before = tree(self.d.data_dir)
        key = self.d.admin_key
        for path in ("/assets/../../../../etc/passwd", "/assets/%2e%2e/%2e%2e/etc/passwd",
                     "/assets/..%2f..%2fetc%2fpasswd", "/v1/streams/..%2f..%2fmaster.key",
                     "/v1/cameras/..%2F..%2Fstate.db/snapshot.jpg", "/v1/events/../master.key"):
            answer = self.raw(f"GET {path} HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n\r\n".encode())
            status = int(answer.split(b" ")[1])
            self.assertTrue(400 <= status < 500, f"{path}: {answer[:120]!r}")
            self.assertNotIn(b"root:", answer)
        for name in ("../evil", "a/b", "", "x" * 300):
            status, _, _ = self.d.request("POST", "/v1/streams", body=json.dumps({"name": name}),
                                          headers={**self.admin, "Content-Type": "application/json"})
            self.assertEqual(status, 400, name)
        status, _, body = self.d.request("POST", "/v1/streams", body=b"{" + b" " * 200_000 + b"}",
                                         headers={**self.admin, "Content-Type": "application/json"})
        self.assertEqual(status, 413)
        self.assertEqual(json.loads(body)["error"]["code"], "PayloadTooLarge")
        many = "".join(f"X-Filler-{i}: {i}\r\n" for i in range(150))
        answer = self.raw(f"GET /v1/streams HTTP/1.1\r\nHost: x\r\n{many}\r\n".encode())
        self.assertTrue(answer.startswith(b"HTTP/1.1 431"), answer[:80])
        huge = "X-Big: " + "a" * 200_000 + "\r\n"
        try:
            answer = self.raw(f"GET /v1/streams HTTP/1.1\r\nHost: x\r\n{huge}\r\n".encode())
            self.assertFalse(answer.startswith(b"HTTP/1.1 2"), answer[:80])
        except (ConnectionResetError, BrokenPipeError):
            pass  # refused before it was all sent
        self.assertEqual(tree(self.d.data_dir), before)
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(self.d.data_dir), "evil")))

    def test_connections_per_client(self):
        idle = [socket.create_connection(("127.0.0.1", self.d.port)) for _ in range(8)]
        try:
            with socket.create_connection(("127.0.0.1", self.d.port), timeout=5) as s:
                try:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    data = s.recv(100)
                except (ConnectionResetError, BrokenPipeError):
                    data = b""
                self.assertEqual(data, b"")  # closed at once, unanswered
        finally:
            for s in idle:
                s.close()
        wait_for(lambda: self.d.request("GET", "/healthz", headers=self.admin)[0] == 200,
                 what="connections freed")

    def test_slow_client_is_cut_off(self):
        key = self.d.admin_key
        for start in (b"GET /healthz HTTP/1.1\r\nHost: x\r\n",  # and never the end
                      f"POST /v1/streams HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n"
                      "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"na"
                      .encode()):  # and never the rest of the body
            with socket.create_connection(("127.0.0.1", self.d.port), timeout=10) as s:
                s.sendall(start)
                started = time.monotonic()
                self.assertEqual(s.recv(100), b"", start)
                self.assertLess(time.monotonic() - started, 5)
        _, _, metrics = self.d.request("GET", "/metrics", headers=self.admin)
        self.assertRegex(metrics.decode(), r'edged_http_slow_clients_total\{stage="body"\} [1-9]')

    def test_slow_but_steady_body_is_taken(self):
        # header_timeout bounds the silence between a body's chunks, not the whole body:
        # 3.6 s of body, a piece every 0.6 s, against a timeout of 2 s.
        name = "steady"
        body = json.dumps({"name": name, "shards": 1}).encode()
        body += b" " * (12 - len(body) % 12)
        head = (f"POST /v1/streams HTTP/1.1\r\nHost: x\r\nx-api-key: {self.d.admin_key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        piece = len(body) // 6
        with socket.create_connection(("127.0.0.1", self.d.port), timeout=10) as s:
            s.sendall(head)
            started = time.monotonic()
            for i in range(6):
                time.sleep(0.6)
                s.sendall(body[i * piece:(i + 1) * piece])
            answer = s.recv(4096)
            self.assertGreater(time.monotonic() - started, 3)
        self.assertTrue(answer.startswith(b"HTTP/1.1 201"), answer[:200])
        status, _, listed = self.d.request("GET", "/v1/streams", headers=self.admin)
        self.assertIn(name, [s["name"] for s in json.loads(listed)["streams"]])

    def test_kept_alive_connection_ends(self):
        answer = f"GET /healthz HTTP/1.1\r\nHost: x\r\nx-api-key: {self.d.admin_key}\r\n\r\n".encode()
        # Silent after an answer: ended after keepalive_timeout.
        with socket.create_connection(("127.0.0.1", self.d.port), timeout=10) as s:
            s.sendall(answer)
            self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 200 "))
            started = time.monotonic()
            while s.recv(65536):
                pass
            self.assertTrue(2.5 < time.monotonic() - started < 6, time.monotonic() - started)
        # The next request's head begun and never ended: header_timeout.
        with socket.create_connection(("127.0.0.1", self.d.port), timeout=10) as s:
            s.sendall(answer)
            self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 200 "))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHo")
            started = time.monotonic()
            while s.recv(65536):
                pass
            self.assertTrue(1.5 < time.monotonic() - started < 2.9, time.monotonic() - started)


class Tls(AuthCase):
    """HTTPS and WSS with a self-signed certificate, on a listener that is
    not loopback-only: authentication is on without being asked."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="edged-auth-")
        cert, key = make_certificate(cls.tmp)
        cls.d = Daemon(tls=(cert, key), config="""  header_timeout: 2s
  keepalive_timeout: 3s
streams:
  - name: orders
""")
        # Every address: auth "auto" turns on.
        with open(cls.d.config_path) as f:
            text = f.read().replace("listen: 127.0.0.1:", "listen: 0.0.0.0:")
        with open(cls.d.config_path, "w") as f:
            f.write(text)
        cls.d.start()
        cls.admin = {"x-api-key": cls.d.admin_key}

    def test_https_with_auth_on_by_default(self):
        self.assertIsNotNone(self.d.admin_key)
        self.assertEqual(self.d.request("GET", "/v1/streams")[0], 401)
        status, headers, _ = self.d.request("GET", "/v1/streams", headers=self.admin)
        self.assertEqual(status, 200)
        self.assertIn("max-age=", headers["Strict-Transport-Security"])
        self.assertNotIn("Connection", headers)  # kept alive
        status, headers, _ = self.d.request("POST", "/v1/login",
                                            body=json.dumps({"key": self.d.admin_key}),
                                            headers={"Content-Type": "application/json"})
        self.assertIn("Secure", headers["Set-Cookie"])

    def test_connections_are_kept_alive_and_released(self):
        # Requests on one TLS connection reuse it.
        c = assert_kept_alive(self, self.d, "/v1/streams", headers=self.admin)
        # Silent after an answer: ended after keepalive_timeout.
        started = time.monotonic()
        c.sock.settimeout(10)
        try:
            while c.sock.recv(65536):
                pass
        except (ssl.SSLError, OSError):
            pass
        self.assertTrue(2.5 < time.monotonic() - started < 6, time.monotonic() - started)
        c.close()
        # Clients that leave kept-alive connections, saying goodbye
        # (close_notify) or not, leave nothing behind. Under TLS the socket's
        # bytes cannot tell a request from a goodbye, which libsoup alone
        # would keep waiting on for good.
        time.sleep(0.3)
        fds = lambda: len(os.listdir(f"/proc/{self.d.proc.pid}/fd"))
        before = fds()
        held = []
        for i in range(150):
            c = self.d.connection()
            c.request("GET", "/healthz")
            c.getresponse().read()
            if i % 3 == 0:
                try:
                    c.sock.unwrap()  # close_notify, then the end of the stream
                except (ssl.SSLError, OSError):
                    pass
            elif i % 3 == 1:
                # close_notify alone: the client goes quiet, its socket open.
                c.sock.setblocking(False)
                try:
                    c.sock.unwrap()
                except (ssl.SSLError, OSError):
                    pass
                held.append(c)
                continue
            c.close()
        deadline = time.monotonic() + 5
        while fds() - before >= 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertLess(fds() - before, 10)
        _, _, body = self.d.request("GET", "/metrics", headers=self.admin)
        self.assertRegex(body.decode(), r"(?m)^edged_http_connections [01]$")
        for c in held:
            c.close()

    def test_key_update_on_an_idle_connection(self):
        # A TLS 1.3 client may update its keys at any time, idle or not: the
        # connection stays, and the next request on it is answered.
        # (openssl s_client sends a KeyUpdate for a line "k".)
        client = subprocess.Popen(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{self.d.port}", "-tls1_3", "-crlf",
             "-servername", "localhost"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        answers = []
        reader = threading.Thread(target=lambda: answers.append(client.stdout.read()))
        reader.start()

        def send(data):
            try:
                client.stdin.write(data)
                client.stdin.flush()
            except BrokenPipeError:
                pass  # the connection ended: the answers below tell

        try:
            request = f"GET /healthz HTTP/1.1\nHost: x\nx-api-key: {self.d.admin_key}\n\n".encode()
            send(request)
            time.sleep(0.8)  # answered, and idle since
            send(b"k\n")
            time.sleep(0.8)
            send(request)
            time.sleep(0.8)
        finally:
            try:
                client.stdin.close()
            except BrokenPipeError:
                pass
            reader.join(timeout=10)
            client.wait(timeout=10)
        out = answers[0].decode(errors="replace")
        self.assertIn("KEYUPDATE", out)
        self.assertEqual(out.count("HTTP/1.1 200 OK"), 2, out[-2000:])

    def test_plaintext_refused(self):
        with socket.create_connection(("127.0.0.1", self.d.port), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                data = s.recv(100)
            except ConnectionResetError:
                data = b""
            self.assertFalse(data.startswith(b"HTTP/1.1 2"), data)

    def test_wss(self):
        cert = self.d.tls[0]
        ws = WebSocket(self.d.port, "/v1/streams/orders/subscribe", cafile=cert)
        self.assertEqual(ws.status, 401)
        ws.close()
        key = urllib.parse.quote(self.d.admin_key)
        ws = WebSocket(self.d.port, f"/v1/streams/orders/subscribe?token={key}", cafile=cert)
        self.assertEqual(ws.status, 101)
        time.sleep(3)  # past header_timeout: the head came in time, the connection stays
        self.d.request("POST", "/", body=json.dumps({
            "StreamName": "orders", "PartitionKey": "k",
            "Data": base64.b64encode(b"over wss").decode()}), headers={
            **self.admin, "X-Amz-Target": "Kinesis_20131202.PutRecord",
            "Content-Type": "application/x-amz-json-1.1"})
        message = ws.recv_json()
        records = message.get("records") or message.get("Records") or [message]
        self.assertIn("over wss", json.dumps(records) + base64.b64decode(
            records[0].get("data") or records[0].get("Data") or "").decode(errors="replace"))
        ws.close()


class Node(unittest.TestCase):
    def test_login_page(self):
        run_node_tests(self, ["login-browser.test.mjs"], timeout=180, browser=True)

    def test_aws_sdk_signatures(self):
        run_node_tests(self, ["auth-sdk.test.mjs"], timeout=120)


if __name__ == "__main__":
    unittest.main(verbosity=2)
