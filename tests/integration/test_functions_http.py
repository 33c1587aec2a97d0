"""HTTP API routes: requests on the gateway go to a function as API Gateway's
payload format 2.0 and its answer is the response. The handler is an
unmodified Node handler under aws-lambda-ric; the client is plain HTTP, as a
browser or curl would be."""

import base64
import http.client
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import Daemon  # noqa: E402

ROOT = os.environ.get("EDGED_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
NODE_RIC = os.path.join(ROOT, "tests", "functions", "node", "bootstrap")

CONFIG = f"""functions:
  - name: api
    bootstrap: {NODE_RIC}
    handler: routes.handler
    timeout: 10s
routes:
  - route: ANY /items/{{id}}
    function: api
  - route: POST /items/{{id}}/parts/{{rest+}}
    function: api
  - route: GET /plain
    function: api
  - route: GET /binary
    function: api
  - route: GET /fail
    function: api
  - route: GET /malformed
    function: api
  - route: GET /slow
    function: api
    timeout: 1s
"""


class Routes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(config=CONFIG).start()

    @classmethod
    def tearDownClass(cls):
        assert cls.d.stop() == 0, cls.d.log()[-3000:]
        cls.d.cleanup()

    def request(self, method, path, body=None, headers=None):
        conn = self.d.connection(timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            conn.close()

    def test_round_trip_payload_2_0(self):
        status, headers, body = self.request(
            "PUT", "/items/a%20b?x=1&y=two&x=3&e=%C3%A9", body=b'{"n": 1}',
            headers={"Content-Type": "application/json", "X-Trace": "t1",
                     "Cookie": "c1=v1; c2=v2", "User-Agent": "edged-test"})
        self.assertEqual(status, 201, body)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(headers["X-Route-Key"], "ANY /items/{id}")
        self.assertEqual(headers["X-Count"], "3")
        self.assertEqual(headers.get_all("Set-Cookie"), ["session=abc; Path=/", "theme=dark"])
        self.assertTrue(headers["Apigw-Requestid"])
        event = json.loads(body)
        self.assertEqual(event["version"], "2.0")
        self.assertEqual(event["routeKey"], "ANY /items/{id}")
        self.assertEqual(event["rawPath"], "/items/a%20b")
        self.assertEqual(event["rawQueryString"], "x=1&y=two&x=3&e=%C3%A9")
        self.assertEqual(event["queryStringParameters"], {"x": "1,3", "y": "two", "e": "é"})
        self.assertEqual(event["pathParameters"], {"id": "a b"})
        self.assertEqual(event["cookies"], ["c1=v1", "c2=v2"])
        self.assertEqual(event["headers"]["x-trace"], "t1")
        self.assertEqual(event["headers"]["content-type"], "application/json")
        self.assertNotIn("cookie", event["headers"])
        self.assertEqual(event["body"], '{"n": 1}')
        self.assertIs(event["isBase64Encoded"], False)
        ctx = event["requestContext"]
        self.assertEqual(ctx["http"]["method"], "PUT")
        self.assertEqual(ctx["http"]["path"], "/items/a%20b")
        self.assertEqual(ctx["http"]["protocol"], "HTTP/1.1")
        self.assertEqual(ctx["http"]["sourceIp"], "127.0.0.1")
        self.assertEqual(ctx["http"]["userAgent"], "edged-test")
        self.assertEqual(ctx["routeKey"], "ANY /items/{id}")
        self.assertEqual(ctx["stage"], "$default")
        self.assertEqual(ctx["requestId"], headers["Apigw-Requestid"])
        self.assertAlmostEqual(ctx["timeEpoch"] / 1000, time.time(), delta=30)
        self.assertRegex(ctx["time"], r"^\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000$")

    def test_greedy_parameter_and_binary_body(self):
        raw = bytes(range(256))
        status, headers, body = self.request(
            "POST", "/items/7/parts/a/b/c", body=raw,
            headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(status, 201, body)
        event = json.loads(body)
        self.assertEqual(event["pathParameters"], {"id": "7", "rest": "a/b/c"})
        self.assertIs(event["isBase64Encoded"], True)
        self.assertEqual(base64.b64decode(event["body"]), raw)

    def test_plain_json_binary_answers(self):
        status, headers, body = self.request("GET", "/plain")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(json.loads(body), {"hello": "world"})
        status, headers, body = self.request("GET", "/binary")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "application/octet-stream")
        self.assertEqual(body, bytes([0, 1, 2, 253, 254, 255]))

    def test_errors_in_api_gateway_shape(self):
        status, _, body = self.request("GET", "/fail")
        self.assertEqual((status, json.loads(body)), (500, {"message": "Internal Server Error"}))
        status, _, body = self.request("GET", "/malformed")
        self.assertEqual((status, json.loads(body)), (500, {"message": "Internal Server Error"}))
        started = time.monotonic()
        status, _, body = self.request("GET", "/slow")
        self.assertEqual((status, json.loads(body)), (503, {"message": "Service Unavailable"}))
        self.assertLess(time.monotonic() - started, 2.5)
        # A method the route does not take.
        status, _, _ = self.request("DELETE", "/plain")
        self.assertEqual(status, 405)
        status, _, _ = self.request("GET", "/nowhere")
        self.assertEqual(status, 404)
        # edged's own routes keep working beside them.
        status, _, _ = self.request("GET", "/healthz")
        self.assertEqual(status, 200)

    def test_concurrent_requests(self):
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            results = list(pool.map(lambda n: self.request("GET", f"/items/{n}"), range(60)))
        self.assertEqual([r[0] for r in results], [201] * 60)
        self.assertEqual(sorted(json.loads(r[2])["pathParameters"]["id"] for r in results),
                         sorted(str(n) for n in range(60)))


class BadRoutes(unittest.TestCase):
    def check_refused(self, route, message):
        d = Daemon(config=f"""functions:
  - name: api
    bootstrap: {NODE_RIC}
routes:
  - route: {route}
    function: api
""")
        try:
            d.start(wait=False)
            self.assertNotEqual(d.wait_exit(15), 0)
            self.assertIn(message, d.log())
        finally:
            d.cleanup()

    def test_refused_at_start(self):
        self.check_refused("FETCH /x", "METHOD is one of")
        self.check_refused("GET /x/{a+}/y", "{name+} as the last segment")
        self.check_refused("GET /v1/streams", "edged serves itself")
        self.check_refused("GET /a//b", "empty path segment")
        self.check_refused("GET /x/{id}/{id}", "used twice")


if __name__ == "__main__":
    unittest.main()
