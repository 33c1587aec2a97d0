"""Runs the sensors page's browser test (tests/node/sensors-browser.test.mjs):
Debian's Chromium, headless, against edged and a real mosquitto."""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import MOSQUITTO  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "..", "node")
NODE = os.path.join(NODE_DIR, "node_modules", ".bin", "node")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


class SensorsBrowser(unittest.TestCase):
    def test_sensors_page_plots_readings(self):
        self.assertTrue(os.path.exists(NODE),
                        "tests/node has no node_modules: run .ci/install-deps --test")
        self.assertTrue(os.path.exists(CHROMIUM),
                        f"{CHROMIUM} is missing: run .ci/install-deps --test (apt-get install chromium)")
        r = subprocess.run([NODE, "--test", "sensors-browser.test.mjs"], cwd=NODE_DIR,
                           capture_output=True, text=True, timeout=180,
                           env=dict(os.environ, EDGED=os.path.abspath(os.environ["EDGED"]),
                                    MOSQUITTO=MOSQUITTO))
        sys.stderr.write(r.stdout[-3000:])
        self.assertEqual(r.returncode, 0, r.stdout[-5000:] + r.stderr[-2000:])


if __name__ == "__main__":
    unittest.main(verbosity=2)
