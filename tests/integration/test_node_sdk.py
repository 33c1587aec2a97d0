"""Runs the tests written against the AWS SDK for JavaScript and node's HTTP/2
client (tests/node) with node's test runner, using the Node 20 that tests/node
installs from the npm registry (Debian 12's own is 18, too old for the current
SDK)."""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import camera_env  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "..", "node")
NODE = os.path.join(NODE_DIR, "node_modules", ".bin", "node")


class NodeSdk(unittest.TestCase):
    def test_kinesis_sdk(self):
        self.assertTrue(os.path.exists(NODE),
                        "tests/node has no node_modules: run .ci/install-deps --test (it runs npm ci there)")
        r = subprocess.run([NODE, "--test", "kinesis-sdk.test.mjs", "http2.test.mjs",
                            "subscribe.test.mjs", "kvs-sdk.test.mjs"], cwd=NODE_DIR,
                           capture_output=True, text=True, timeout=900,
                           env=dict(os.environ, EDGED=os.path.abspath(os.environ["EDGED"]),
                                    **camera_env()))
        sys.stderr.write(r.stdout[-3000:])
        self.assertEqual(r.returncode, 0, r.stdout[-5000:] + r.stderr[-2000:])


if __name__ == "__main__":
    unittest.main(verbosity=2)
