"""Runs the browser test (tests/node/camera-browser.test.mjs): Debian's
Chromium, headless, plays the live page over WebSocket + Media Source
Extensions and a recorded range with hls.js."""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import camera_env  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "..", "node")
NODE = os.path.join(NODE_DIR, "node_modules", ".bin", "node")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


class CameraBrowser(unittest.TestCase):
    def test_browser_plays_video(self):
        self.assertTrue(os.path.exists(NODE),
                        "tests/node has no node_modules: run .ci/install-deps --test")
        self.assertTrue(os.path.exists(CHROMIUM),
                        f"{CHROMIUM} is missing: run .ci/install-deps --test (apt-get install chromium)")
        r = subprocess.run([NODE, "--test", "camera-browser.test.mjs"], cwd=NODE_DIR,
                           capture_output=True, text=True, timeout=240,
                           env=dict(os.environ, EDGED=os.path.abspath(os.environ["EDGED"]),
                                    **camera_env()))
        sys.stderr.write(r.stdout[-3000:])
        self.assertEqual(r.returncode, 0, r.stdout[-5000:] + r.stderr[-2000:])


if __name__ == "__main__":
    unittest.main(verbosity=2)
