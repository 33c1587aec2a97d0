"""RTSP cameras against a local RTSP server (tests/rtsp-server.c, the
gst-rtsp-server library): passthrough over TCP and UDP, the source lost and
back, the gap visible in ListFragments, and other cameras unaffected."""

import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import Daemon, WebSocket, camera_env, free_port  # noqa: E402

AWS = os.environ.get("AWS_CLI", "/usr/bin/aws")
RTSP_SERVER = os.environ.get("RTSP_SERVER", "build/tests/rtsp-server")


class RtspServer:
    def __init__(self, port, env=None):
        self.port = port
        self.env = env
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([RTSP_SERVER, str(self.port), "15"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True,
                                     env=dict(os.environ, **(self.env or {})))
        assert self.proc.stdout.readline().strip() == "ready"
        return self

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        if self.proc:
            self.proc.stdout.close()


class CameraRtsp(unittest.TestCase):
    def setUp(self):
        self.port = free_port()
        self.server = RtspServer(self.port).start()
        self.tmp = tempfile.mkdtemp(prefix="edged-rtsp-")
        self.d = Daemon(config=f"""cameras:
  - name: door
    source: rtsp://127.0.0.1:{self.port}/cam
    fragment_duration: 1s
  - name: door-udp
    source: rtsp://127.0.0.1:{self.port}/cam
    rtsp_transport: udp
    fragment_duration: 1s
  - name: yard
    source: test://
    fragment_duration: 1s
    keyframe_interval: 1s
    width: 320
    height: 180
""", env=camera_env()).start()

    def tearDown(self):
        self.server.kill()
        self.d.cleanup()

    def status(self, name):
        return self.d.get_json(f"/v1/cameras/{name}")[2]

    def wait(self, name, predicate, what, timeout=40):
        deadline = time.time() + timeout
        while time.time() < deadline:
            s = self.status(name)
            if predicate(s):
                return s
            time.sleep(0.25)
        raise AssertionError(f"{name}: {what} within {timeout}s: {self.status(name)}\n{self.d.log()}")

    def fragments(self, name):
        env = dict(os.environ, AWS_ACCESS_KEY_ID="edged", AWS_SECRET_ACCESS_KEY="edged",
                   AWS_DEFAULT_REGION="eu-west-1", AWS_PAGER="",
                   AWS_CONFIG_FILE=os.path.join(self.tmp, "c"),
                   AWS_SHARED_CREDENTIALS_FILE=os.path.join(self.tmp, "k"))
        r = subprocess.run([AWS, "--endpoint-url", self.d.url, "--output", "json",
                            "kinesis-video-archived-media", "list-fragments", "--stream-name", name],
                           capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        frags = json.loads(r.stdout)["Fragments"]
        for f in frags:
            f["ProducerTimestamp"] = datetime.datetime.fromisoformat(f["ProducerTimestamp"]).timestamp()
        return sorted(frags, key=lambda f: int(f["FragmentNumber"]))

    def test_passthrough_loss_and_return(self):
        s = self.wait("door", lambda s: s["recorded"]["fragments"] >= 3, "3 fragments")
        # Passthrough: the server's 320x240 H.264, not re-encoded.
        self.assertEqual((s["codec"], s["width"], s["height"]), ("h264", 320, 240))
        self.wait("door-udp", lambda s: s["recorded"]["fragments"] >= 2, "2 fragments over UDP")

        self.server.kill()
        lost_at = time.time()
        s = self.wait("door", lambda s: s["state"] == "retrying", "noticing the loss", timeout=15)
        self.assertIn("retrying in", s["error"])
        yard_before = self.status("yard")["recorded"]["fragments"]
        time.sleep(4)
        # The other cameras and the daemon go on.
        self.assertGreater(self.status("yard")["recorded"]["fragments"], yard_before + 2)
        status, _, _ = self.d.request("GET", "/healthz")
        self.assertEqual(status, 200)

        self.server = RtspServer(self.port).start()
        before = self.status("door")["recorded"]["fragments"]
        s = self.wait("door", lambda s: s["recorded"]["fragments"] >= before + 3 and
                      s["state"] == "running", "recording again", timeout=60)
        self.assertIsNone(s["error"])
        self.assertGreaterEqual(s["restarts"], 1)

        # ListFragments shows the hole: consecutive numbers, one long jump in time.
        frags = self.fragments("door")
        numbers = [int(f["FragmentNumber"]) for f in frags]
        self.assertEqual(numbers, list(range(numbers[0], numbers[0] + len(numbers))))
        holes = []
        for a, b in zip(frags, frags[1:]):
            end = a["ProducerTimestamp"] + a["FragmentLengthInMilliseconds"] / 1000
            if b["ProducerTimestamp"] - end > 1.0:
                holes.append((end, b["ProducerTimestamp"]))
        self.assertEqual(len(holes), 1, frags)
        self.assertGreater(holes[0][1] - holes[0][0], 3.5)
        self.assertLess(abs(holes[0][0] - lost_at), 3)
        # And the gap is recorded, with why.
        gaps = self.d.get_json("/v1/cameras/door/gaps")[2]["gaps"]
        self.assertEqual(len(gaps), 1)
        self.assertGreater((gaps[0]["endMs"] - gaps[0]["startMs"]) / 1000, 3.5)
        self.assertEqual(self.d.stop(), 0, self.d.log()[-6000:])


class CameraRtspLogin(unittest.TestCase):
    """Credentials in the camera's URL log in; wrong ones are retried with
    the reason shown, and never appear in the status."""

    def test_basic_credentials(self):
        self.check_credentials("basic")

    def test_digest_credentials(self):
        self.check_credentials("digest")

    def check_credentials(self, scheme):
        port = free_port()
        server = RtspServer(port, env={"RTSP_USER": "viewer", "RTSP_PASS": "s3cret",
                                       "RTSP_AUTH": scheme}).start()
        d = Daemon(config=f"""cameras:
  - name: good
    source: rtsp://viewer:s3cret@127.0.0.1:{port}/cam
    fragment_duration: 1s
  - name: bad
    source: rtsp://viewer:wrong@127.0.0.1:{port}/cam
""", env=camera_env())
        try:
            d.start()
            deadline = time.time() + 40
            while time.time() < deadline:
                good = d.get_json("/v1/cameras/good")[2]
                bad = d.get_json("/v1/cameras/bad")[2]
                if good["recorded"]["fragments"] >= 2 and bad["state"] == "retrying":
                    break
                time.sleep(0.25)
            self.assertGreaterEqual(good["recorded"]["fragments"], 2, good)
            self.assertEqual(bad["state"], "retrying", bad)
            self.assertRegex(bad["error"], r"(?i)unauthori[sz]ed|authentication|not authorized")
            self.assertEqual(bad["recorded"]["fragments"], 0)
            for c in (good, bad):
                self.assertNotIn("s3cret", json.dumps(c))
                self.assertNotIn("wrong", json.dumps(c))
                self.assertIn("viewer:***@", c["source"])
            self.assertEqual(d.stop(), 0, d.log()[-6000:])
            self.assertNotIn("s3cret", d.log())
        finally:
            server.kill()
            d.cleanup()


class CameraRtspH265(unittest.TestCase):
    """An H.265 camera, recorded as it comes: hvc1 init segments, clips,
    Matroska, snapshots and the live codec string."""

    def test_h265_passthrough(self):
        port = free_port()
        server = RtspServer(port, env={"RTSP_CODEC": "h265"}).start()
        tmp = tempfile.mkdtemp(prefix="edged-h265-")
        d = Daemon(config=f"""cameras:
  - name: hevc
    source: rtsp://127.0.0.1:{port}/cam
    fragment_duration: 1s
""", env=camera_env())
        try:
            d.start()
            deadline = time.time() + 40
            while time.time() < deadline:
                s = d.get_json("/v1/cameras/hevc")[2]
                if s["recorded"]["fragments"] >= 3:
                    break
                time.sleep(0.25)
            self.assertEqual((s["codec"], s["width"], s["height"]), ("h265", 320, 240), s)
            status, _, clip = d.request("GET", f"/v1/cameras/hevc/clip.mp4?start={time.time() - 60:.0f}"
                                        f"&end={time.time():.0f}")
            self.assertEqual(status, 200)
            path = os.path.join(tmp, "clip.mp4")
            with open(path, "wb") as f:
                f.write(clip)
            r = subprocess.run(["ffprobe", "-v", "error", "-of", "json", "-show_entries",
                                "stream=codec_name,codec_tag_string,width", path],
                               capture_output=True, text=True, timeout=60)
            stream = json.loads(r.stdout)["streams"][0]
            self.assertEqual((stream["codec_name"], stream["codec_tag_string"], stream["width"]),
                             ("hevc", "hvc1", 320))
            status, _, snap = d.request("GET", "/v1/cameras/hevc/snapshot.jpg")
            self.assertEqual((status, snap[:2]), (200, b"\xff\xd8"))
            status, _, body = d.request("POST", "/getMediaForFragmentList", body=json.dumps(
                {"StreamName": "hevc", "Fragments": ["1", "2"]}).encode())
            self.assertEqual(status, 200)
            self.assertIn(b"V_MPEGH/ISO/HEVC", body)
            ws = WebSocket(d.port, "/v1/cameras/hevc/live")
            init = json.loads(ws.recv()[1])
            self.assertRegex(init["codec"], r"^hvc1\.")
            ws.sock.close()
            self.assertEqual(d.stop(), 0, d.log()[-6000:])
        finally:
            server.kill()
            d.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
