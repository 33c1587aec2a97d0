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
MIRROR = os.path.join(ROOT, "tests", "functions", "mirror", "bootstrap")

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


class Answers(unittest.TestCase):
    """How a route reads what its function answers, byte for byte as the
    function sent it: the function here answers with the request's body."""

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(config=f"""functions:
  - name: mirror
    bootstrap: {MIRROR}
routes:
  - route: POST /mirror
    function: mirror
""").start()

    @classmethod
    def tearDownClass(cls):
        assert cls.d.stop() == 0, cls.d.log()[-3000:]
        cls.d.cleanup()

    def answer(self, raw):
        """What a client sees when the function answers @raw."""
        conn = self.d.connection(timeout=30)
        try:
            conn.request("POST", "/mirror", body=raw.encode() if isinstance(raw, str) else raw,
                         headers={"Content-Type": "application/octet-stream"})
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            conn.close()

    def assert_internal_error(self, raw):
        status, headers, body = self.answer(raw)
        self.assertEqual((status, json.loads(body)), (500, {"message": "Internal Server Error"}),
                         raw)
        self.assertTrue(headers["Apigw-Requestid"], raw)

    def test_response_object(self):
        status, headers, body = self.answer(
            '{"statusCode": 201, "headers": {"X-Num": 3, "X-Float": 1.50, "X-Big": 1e3, '
            '"X-Yes": true, "X-Str": "s", "Content-Length": "1", "Connection": "close"}, '
            '"cookies": ["a=1; Path=/", "b=2"], "body": "hi \\u00e9"}')
        self.assertEqual(status, 201)
        self.assertEqual((headers["X-Num"], headers["X-Float"], headers["X-Big"], headers["X-Yes"],
                          headers["X-Str"]), ("3", "1.5", "1000", "true", "s"))
        self.assertEqual(headers.get_all("Set-Cookie"), ["a=1; Path=/", "b=2"])
        self.assertEqual(headers["Content-Type"], "text/plain; charset=utf-8")
        self.assertEqual(headers["Content-Length"], str(len("hi é".encode())))
        self.assertIsNone(headers["Connection"])
        self.assertEqual(body, "hi é".encode())
        # The content type, named in any case; the last of a repeated member counts.
        status, headers, body = self.answer(
            '{"statusCode": 500, "body": "first", "headers": {"content-TYPE": "text/csv"}, '
            '"statusCode": 202, "body": "second"}')
        self.assertEqual((status, headers["Content-Type"], body), (202, "text/csv", b"second"))
        # No body, or a null one.
        for raw in ('{"statusCode": 204}', '{"statusCode": 204, "body": null}'):
            status, _, body = self.answer(raw)
            self.assertEqual((status, body), (204, b""), raw)
        # Binary, with isBase64Encoded before or after the body; a body holding U+0000.
        status, _, body = self.answer('{"body": "AAEC/w==", "isBase64Encoded": true, '
                                      '"statusCode": 200}')
        self.assertEqual((status, body), (200, b"\x00\x01\x02\xff"))
        status, _, body = self.answer('{"statusCode": 200, "body": "a\\u0000b"}')
        self.assertEqual((status, body), (200, b"a\x00b"))
        # Headers that are no object and cookies that are no array are left out.
        status, headers, body = self.answer('{"statusCode": 200, "headers": "x", "cookies": {}, '
                                            '"body": "ok"}')
        self.assertEqual((status, headers.get_all("Set-Cookie"), body), (200, None, b"ok"))

    def test_other_json_is_the_body(self):
        for raw in ('[1, 2]', '"text"', '{"a": {"statusCode": 200}}', '42', 'null'):
            status, headers, body = self.answer(raw)
            self.assertEqual((status, headers["Content-Type"], body),
                             (200, "application/json", raw.encode()), raw)

    def test_malformed_answers(self):
        for raw in ('{"statusCode": 600}', '{"statusCode": 99}', '{"statusCode": 200.0}',
                    '{"statusCode": "200"}', '{"statusCode": null}',
                    '{"statusCode": 200, "headers": {"X": "a\\r\\nb"}}',
                    '{"statusCode": 200, "headers": {"X": null}}',
                    '{"statusCode": 200, "headers": {"X": ["a"]}}',
                    '{"statusCode": 200, "headers": {"bad name": "v"}}',
                    '{"statusCode": 200, "cookies": [1]}', '{"statusCode": 200, "body": 5}',
                    '{"statusCode": 200, "body": {"a": 1}}'):
            self.assert_internal_error(raw)
        # Not JSON at all.
        for raw in ('hello', '{"body": "a\nb"}', '{"statusCode": 200} x', '{"statusCode": 200',
                    b'"\xff"', ''):
            self.assert_internal_error(raw)


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
