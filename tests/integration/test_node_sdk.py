"""Runs the tests written against the AWS SDK for JavaScript and node's HTTP/2
client (tests/node) with node's test runner, using the Node 20 that tests/node
installs from the npm registry (Debian 12's own is 18, too old for the current
SDK)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import run_node_tests  # noqa: E402


class NodeSdk(unittest.TestCase):
    def test_kinesis_sdk(self):
        run_node_tests(self, ["kinesis-sdk.test.mjs", "http2.test.mjs", "subscribe.test.mjs",
                              "kvs-sdk.test.mjs"], timeout=900)


if __name__ == "__main__":
    unittest.main(verbosity=2)
