"""Runs the sensors page's browser test (tests/node/sensors-browser.test.mjs):
Debian's Chromium, headless, against edged and a real mosquitto."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import MOSQUITTO, run_node_tests  # noqa: E402


class SensorsBrowser(unittest.TestCase):
    def test_sensors_page_plots_readings(self):
        run_node_tests(self, ["sensors-browser.test.mjs"], timeout=180, browser=True,
                       env={"MOSQUITTO": MOSQUITTO})


if __name__ == "__main__":
    unittest.main(verbosity=2)
