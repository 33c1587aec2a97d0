"""Runs the browser test (tests/node/camera-browser.test.mjs): Debian's
Chromium, headless, plays the live page over WebSocket + Media Source
Extensions and a recorded range with hls.js."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import run_node_tests  # noqa: E402


class CameraBrowser(unittest.TestCase):
    def test_browser_plays_video(self):
        run_node_tests(self, ["camera-browser.test.mjs"], browser=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
