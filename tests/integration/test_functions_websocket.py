"""WebSocket APIs: $connect deciding on the handshake, $default messages
answered, $disconnect told, and POST /@connections/{id} pushing to a client,
here from an unmodified Node handler under aws-lambda-ric with the AWS SDK's
ApiGatewayManagementApi client."""

import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import Daemon, WebSocket  # noqa: E402

ROOT = os.environ.get("EDGED_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
NODE_RIC = os.path.join(ROOT, "tests", "functions", "node", "bootstrap")


class WebSockets(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        d = Daemon()
        cls.disconnects = os.path.join(d.workdir, "disconnects.log")
        cls.d = Daemon(workdir=d.workdir, port=d.port, config=f"""functions:
  - name: chat
    bootstrap: {NODE_RIC}
    handler: ws.handler
    timeout: 10s
    environment:
      EDGED_URL: http://127.0.0.1:{d.port}
      DISCONNECT_LOG: {cls.disconnects}
websockets:
  - path: /chat
    connect: chat
    disconnect: chat
    message: chat
websocket_routes:
  - path: /chat
    action: shout
    function: chat
""")
        cls.d.own_workdir = True
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        assert cls.d.stop() == 0, cls.d.log()[-3000:]
        cls.d.cleanup()

    def connect(self, query="?token=letmein"):
        return WebSocket(self.d.port, "/chat" + query, timeout=30)

    def test_connect_refused_without_token(self):
        ws = WebSocket(self.d.port, "/chat?token=wrong", timeout=30)
        self.assertEqual(ws.status, 403)
        ws.sock.close()

    def test_default_route_round_trip(self):
        ws = self.connect()
        self.assertEqual(ws.status, 101)
        ws.send(json.dumps({"hello": "edge"}).encode())
        answer = ws.recv_json()
        self.assertEqual(answer["echo"], {"hello": "edge"})
        self.assertEqual(answer["routeKey"], "$default")
        self.assertEqual(answer["eventType"], "MESSAGE")
        self.assertTrue(answer["connectionId"])
        # A message whose "action" has a route goes there, with its route key.
        ws.send(json.dumps({"action": "shout", "text": "hey"}).encode())
        routed = ws.recv_json()
        self.assertEqual(routed["routeKey"], "shout")
        self.assertEqual(routed["echo"], {"action": "shout", "text": "hey"})
        ws.send(json.dumps({"action": "fail"}).encode())
        error = ws.recv_json()
        self.assertEqual(error["message"], "Internal server error")
        self.assertEqual(error["connectionId"], answer["connectionId"])
        ws.close()

    def test_post_to_connection_and_disconnect(self):
        alice, bob = self.connect(), self.connect()
        alice.send(b'{"who": "alice"}')
        alice_id = alice.recv_json()["connectionId"]
        bob.send(b'{"who": "bob"}')
        bob_id = bob.recv_json()["connectionId"]
        self.assertNotEqual(alice_id, bob_id)
        # Alice's message makes the handler push to Bob through the SDK.
        alice.send(json.dumps({"action": "send", "to": bob_id, "text": "hi bob"}).encode())
        self.assertEqual(alice.recv_json(), {"sent": True})
        pushed = bob.recv_json()
        self.assertEqual(pushed, {"from": alice_id, "text": "hi bob", "peerIp": "127.0.0.1"})
        # Plain HTTP works the same, and GET tells about the connection.
        status, _, _ = self.d.request("POST", f"/@connections/{bob_id}", body=b"from outside")
        self.assertEqual(status, 200)
        self.assertEqual(bob.recv(), (1, b"from outside"))
        status, _, body = self.d.request("GET", f"/@connections/{bob_id}")
        self.assertEqual(status, 200)
        info = json.loads(body)
        self.assertEqual(info["identity"]["sourceIp"], "127.0.0.1")
        self.assertRegex(info["connectedAt"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        # Closed by the server with DELETE; then gone.
        status, _, _ = self.d.request("DELETE", f"/@connections/{bob_id}")
        self.assertEqual(status, 204)
        opcode, _ = bob.recv()
        self.assertEqual(opcode, 8)
        bob.close()
        alice.close()
        deadline = time.monotonic() + 15
        seen = ""
        while time.monotonic() < deadline:
            if os.path.exists(self.disconnects):
                with open(self.disconnects) as f:
                    seen = f.read()
                if alice_id in seen and bob_id in seen:
                    break
            time.sleep(0.1)
        self.assertIn(f"{alice_id} $disconnect", seen)
        self.assertIn(f"{bob_id} $disconnect", seen)
        status, headers, body = self.d.request("POST", f"/@connections/{bob_id}", body=b"late")
        self.assertEqual(status, 410)
        self.assertEqual(headers["X-Amzn-ErrorType"], "GoneException")


if __name__ == "__main__":
    unittest.main()
