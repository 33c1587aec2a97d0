"""A test camera recorded by the real edged, checked as a user would: the
AWS CLI's Kinesis Video calls (archived media and control plane), ffprobe and
gst-discoverer on what they return, the files on disk, restarts and kill -9."""

import base64
import datetime
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import EDGECTL, Daemon, WebSocket, camera_env, mount_tmpfs  # noqa: E402

AWS = os.environ.get("AWS_CLI", "/usr/bin/aws")
FFPROBE = "/usr/bin/ffprobe"
CAMERA = """cameras:
  - name: yard
    source: test://
    fragment_duration: 1s
    keyframe_interval: 1s
    fps: 15
"""


def seconds(value):
    """A timestamp as the AWS CLI prints it (ISO 8601 in v2, a number in v1)."""
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.datetime.fromisoformat(value).timestamp()


def with_seconds(fragment):
    for key in ("ProducerTimestamp", "ServerTimestamp"):
        fragment[key] = seconds(fragment[key])
    return fragment


def overlapping(fragments, key, start, end):
    return [f for f in fragments
            if f[key] < end and f[key] + f["FragmentLengthInMilliseconds"] / 1000 > start]


def ffprobe(path, *args):
    r = subprocess.run([FFPROBE, "-v", "error", "-of", "json", *args, path],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"ffprobe {path}: {r.stderr}")
    return json.loads(r.stdout)


class Camera(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for tool in (AWS, FFPROBE):
            if not os.path.exists(tool):
                raise unittest.SkipTest(f"{tool} is not installed")
        cls.tmp = tempfile.mkdtemp(prefix="edged-kvs-")
        cls.d = Daemon(config=CAMERA, env=camera_env()).start()
        cls.env = dict(os.environ, AWS_ACCESS_KEY_ID="edged", AWS_SECRET_ACCESS_KEY="edged",
                       AWS_DEFAULT_REGION="eu-west-1", AWS_PAGER="",
                       AWS_CONFIG_FILE=os.path.join(cls.tmp, "config"),
                       AWS_SHARED_CREDENTIALS_FILE=os.path.join(cls.tmp, "credentials"))
        cls.started = time.time()
        # Record for a while: every test below reads what this recorded.
        cls.wait_fragments(cls, 8)

    @classmethod
    def tearDownClass(cls):
        code = cls.d.stop()
        cls.d.cleanup()
        assert code == 0, (code, cls.d.log()[-6000:])

    def wait_fragments(self, n, camera="yard", timeout=40):
        deadline = time.time() + timeout
        while time.time() < deadline:
            status, _, body = self.d.get_json(f"/v1/cameras/{camera}")
            if status == 200 and body["recorded"]["fragments"] >= n:
                return body
            time.sleep(0.25)
        raise AssertionError(f"{camera}: fewer than {n} fragments in {timeout}s:\n{self.d.log()}")

    def aws(self, service, op, *args, ok=True, outfile=None):
        cmd = [AWS, "--endpoint-url", self.d.url, "--output", "json", service, op]
        if outfile:
            cmd.append(outfile)  # before any list option, which would take it
        cmd += args
        r = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=120)
        if ok:
            self.assertEqual(r.returncode, 0, f"{args}: {r.stderr}")
            return json.loads(r.stdout) if r.stdout.strip() else {}
        self.assertNotEqual(r.returncode, 0, f"{args} succeeded: {r.stdout}")
        return r.stderr

    def media(self, *args, **kw):
        return self.aws("kinesis-video-archived-media", *args, **kw)

    def list_all(self):
        now = time.time() + 5
        out = self.media("list-fragments", "--stream-name", "yard", "--fragment-selector",
                         json.dumps({"FragmentSelectorType": "SERVER_TIMESTAMP",
                                     "TimestampRange": {"StartTimestamp": self.started - 60,
                                                        "EndTimestamp": now}}))
        return sorted(map(with_seconds, out["Fragments"]), key=lambda f: int(f["FragmentNumber"]))

    # ---- archived media ----

    def test_list_fragments_contiguous(self):
        frags = self.list_all()
        self.assertGreaterEqual(len(frags), 8)
        numbers = [int(f["FragmentNumber"]) for f in frags]
        self.assertEqual(numbers, list(range(numbers[0], numbers[0] + len(numbers))))
        for a, b in zip(frags, frags[1:]):
            # Each fragment ends where the next one starts (producer time,
            # to the millisecond), and lasts about the target duration.
            end = a["ProducerTimestamp"] + a["FragmentLengthInMilliseconds"] / 1000
            self.assertAlmostEqual(end, b["ProducerTimestamp"], delta=0.002)
            self.assertGreaterEqual(a["FragmentLengthInMilliseconds"], 900)
            self.assertLessEqual(a["FragmentLengthInMilliseconds"], 1600)
            self.assertGreater(a["FragmentSizeInBytes"], 1000)
            self.assertLess(abs(a["ServerTimestamp"] - a["ProducerTimestamp"]), 5)

    def test_list_fragments_pages_and_ranges(self):
        frags = self.list_all()
        # The CLI sends whole seconds: a two-second window.
        start = int(frags[len(frags) // 2]["ProducerTimestamp"])
        one = self.media("list-fragments", "--stream-name", "yard", "--fragment-selector",
                         json.dumps({"FragmentSelectorType": "PRODUCER_TIMESTAMP",
                                     "TimestampRange": {"StartTimestamp": start,
                                                        "EndTimestamp": start + 2}}))
        expected = overlapping(frags, "ProducerTimestamp", start, start + 2)
        self.assertGreaterEqual(len(expected), 2)
        self.assertEqual(sorted(f["FragmentNumber"] for f in one["Fragments"]),
                         sorted(f["FragmentNumber"] for f in expected))
        # The CLI follows NextToken itself; ask for pages of 3 and get all.
        paged = self.media("list-fragments", "--stream-name", "yard", "--page-size", "3")
        self.assertEqual(len({f["FragmentNumber"] for f in paged["Fragments"]}), len(paged["Fragments"]))
        self.assertGreaterEqual(len(paged["Fragments"]), len(frags))
        page = self.media("list-fragments", "--stream-name", "yard", "--max-items", "2")
        self.assertEqual(len(page["Fragments"]), 2)
        self.assertIn("NextToken", page)

    def test_errors_in_the_protocol_shape(self):
        err = self.media("list-fragments", "--stream-name", "nope", ok=False)
        self.assertIn("ResourceNotFoundException", err)
        err = self.media("get-clip", "--stream-name", "yard", "--clip-fragment-selector",
                         json.dumps({"FragmentSelectorType": "SERVER_TIMESTAMP",
                                     "TimestampRange": {"StartTimestamp": 1000, "EndTimestamp": 2000}}),
                         ok=False, outfile=os.path.join(self.tmp, "none.mp4"))
        self.assertIn("ResourceNotFoundException", err)
        err = self.media("get-hls-streaming-session-url", "--stream-name", "yard",
                         "--container-format", "MPEG_TS", ok=False)
        self.assertIn("InvalidArgumentException", err)
        status, headers, body = self.d.request("POST", "/listFragments", body=b"[",
                                               headers={"Content-Type": "application/json"})
        self.assertEqual(status, 400)
        self.assertEqual(headers.get("X-Amzn-ErrorType"), "InvalidArgumentException")
        self.assertIn("message", json.loads(body))

    def test_fragments_on_disk_are_encrypted(self):
        files = glob.glob(os.path.join(self.d.data_dir, "media", "yard", "*.frag"))
        self.assertGreaterEqual(len(files), 8)
        for path in files + glob.glob(os.path.join(self.d.data_dir, "media", "yard", "*.init")):
            with open(path, "rb") as f:
                data = f.read()
            for box in (b"ftyp", b"moov", b"moof", b"mdat", b"avcC", b"EDGM"):
                self.assertNotIn(box, data, f"{path} shows {box!r} in the clear")

    def test_every_fragment_starts_with_a_keyframe(self):
        frags = self.list_all()[:6]
        out = os.path.join(self.tmp, "media.mp4")
        meta = self.media("get-media-for-fragment-list", "--stream-name", "yard", "--fragments",
                          *[f["FragmentNumber"] for f in frags], outfile=out)
        self.assertEqual(meta["ContentType"], "video/webm")
        # Matroska, as Kinesis Video sends, each fragment tagged with its number ...
        with open(out, "rb") as f:
            data = f.read()
        self.assertEqual(data[:4], b"\x1a\x45\xdf\xa3")
        self.assertEqual(data.count(b"AWS_KINESISVIDEO_FRAGMENT_NUMBER"), len(frags))
        # ... and the whole list plays as one stream ...
        probe = ffprobe(out, "-count_frames", "-show_entries",
                        "stream=codec_name,nb_read_frames:format=format_name")
        self.assertEqual(probe["format"]["format_name"], "matroska,webm")
        self.assertEqual(probe["streams"][0]["codec_name"], "h264")
        self.assertGreaterEqual(int(probe["streams"][0]["nb_read_frames"]), 6 * 13)
        # ... and each fragment, decoded on its own behind the init segment,
        # starts with a keyframe.
        for f in frags:
            one = os.path.join(self.tmp, f"one-{f['FragmentNumber']}.mkv")
            self.media("get-media-for-fragment-list", "--stream-name", "yard", "--fragments",
                       f["FragmentNumber"], outfile=one)
            probe = ffprobe(one, "-show_frames", "-read_intervals", "%+#1",
                            "-show_entries", "frame=key_frame,pict_type")
            first = probe["frames"][0]
            self.assertEqual((first["key_frame"], first["pict_type"]), (1, "I"), f)

    def test_get_clip_probes_with_the_expected_duration(self):
        frags = self.list_all()
        start = int(frags[1]["ServerTimestamp"]) + 1  # whole seconds, as the CLI sends
        end = start + 4
        out = os.path.join(self.tmp, "clip.mp4")
        meta = self.media("get-clip", "--stream-name", "yard", "--clip-fragment-selector",
                          json.dumps({"FragmentSelectorType": "SERVER_TIMESTAMP",
                                      "TimestampRange": {"StartTimestamp": start, "EndTimestamp": end}}),
                          outfile=out)
        self.assertEqual(meta["ContentType"], "video/mp4")
        probe = ffprobe(out, "-show_entries", "format=duration,format_name:stream=codec_name,width,height")
        # The fragments overlapping the range, end to end.
        expected = sum(f["FragmentLengthInMilliseconds"]
                       for f in overlapping(frags, "ServerTimestamp", start, end)) / 1000
        self.assertAlmostEqual(float(probe["format"]["duration"]), expected, delta=0.1)
        self.assertLessEqual(abs(float(probe["format"]["duration"]) - (end - start)),
                             max(f["FragmentLengthInMilliseconds"] for f in frags) / 1000 * 2)
        self.assertEqual((probe["streams"][0]["width"], probe["streams"][0]["height"]), (640, 360))
        r = subprocess.run(["gst-discoverer-1.0", out], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("H.264", r.stdout)
        # Traditional MP4: the sample table is in the moov, no fragments.
        with open(out, "rb") as f:
            data = f.read()
        self.assertNotIn(b"moof", data)
        self.assertLess(data.index(b"moov"), data.index(b"mdat"))

    def test_get_images_are_decodable_jpegs(self):
        frags = self.list_all()
        start = int(frags[0]["ServerTimestamp"]) + 1  # whole seconds, as the CLI sends
        out = self.media("get-images", "--stream-name", "yard", "--image-selector-type",
                         "SERVER_TIMESTAMP", "--start-timestamp", str(start), "--end-timestamp",
                         str(start + 7), "--sampling-interval", "3000", "--format", "JPEG",
                         "--width-pixels", "320")
        images = out["Images"]
        self.assertEqual(len(images), 3)
        for i, image in enumerate(images):
            self.assertNotIn("Error", image)
            path = os.path.join(self.tmp, f"image{i}.jpg")
            with open(path, "wb") as f:
                f.write(base64.b64decode(image["ImageContent"]))
            probe = ffprobe(path, "-show_entries", "stream=codec_name,width,height")
            self.assertEqual(probe["streams"][0]["codec_name"], "mjpeg")
            self.assertEqual((probe["streams"][0]["width"], probe["streams"][0]["height"]), (320, 180))
        # A time with nothing recorded says so per image.
        out = self.media("get-images", "--stream-name", "yard", "--image-selector-type",
                         "SERVER_TIMESTAMP", "--start-timestamp", "1000", "--end-timestamp",
                         "1010", "--sampling-interval", "5000", "--format", "PNG")
        self.assertEqual([i.get("Error") for i in out["Images"]], ["NO_MEDIA", "NO_MEDIA"])

    def test_hls_session_urls_serve_playlists(self):
        live = self.media("get-hls-streaming-session-url", "--stream-name", "yard",
                          "--playback-mode", "LIVE")["HLSStreamingSessionURL"]
        self.assertTrue(live.startswith(self.d.url))
        status, headers, body = self.d.request("GET", live[len(self.d.url):])
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "application/vnd.apple.mpegurl")
        text = body.decode()
        self.assertIn("#EXT-X-MAP:URI=\"init/", text)
        self.assertIn("#EXT-X-PROGRAM-DATE-TIME:", text)
        self.assertNotIn("#EXT-X-ENDLIST", text)
        frags = self.list_all()
        start = int(frags[0]["ServerTimestamp"]) + 1  # whole seconds, as the CLI sends
        vod = self.media("get-hls-streaming-session-url", "--stream-name", "yard",
                         "--playback-mode", "ON_DEMAND", "--hls-fragment-selector",
                         json.dumps({"FragmentSelectorType": "SERVER_TIMESTAMP",
                                     "TimestampRange": {"StartTimestamp": start,
                                                        "EndTimestamp": start + 3}}))
        path = vod["HLSStreamingSessionURL"][len(self.d.url):]
        status, _, body = self.d.request("GET", path)
        text = body.decode()
        self.assertIn("#EXT-X-ENDLIST", text)
        segments = [l for l in text.splitlines() if l.startswith("fragment/")]
        expected = overlapping(frags, "ServerTimestamp", start, start + 3)
        self.assertEqual(segments, [f"fragment/{f['FragmentNumber']}.m4s" for f in expected])
        frags = expected
        # The playlist's URIs resolve, and the segment is the fragment.
        base = path.split("?")[0].rsplit("/", 1)[0]
        status, headers, seg = self.d.request("GET", f"{base}/{segments[0]}")
        self.assertEqual(status, 200)
        self.assertEqual(seg[4:8], b"moof")
        self.assertEqual(len(seg), frags[0]["FragmentSizeInBytes"])

    # ---- control plane ----

    def test_control_plane(self):
        info = self.aws("kinesisvideo", "describe-stream", "--stream-name", "yard")["StreamInfo"]
        self.assertEqual(info["StreamName"], "yard")
        self.assertEqual(info["Status"], "ACTIVE")
        self.assertEqual(info["MediaType"], "video/h264")
        self.assertTrue(info["StreamARN"].startswith("arn:aws:kinesisvideo:"))
        by_arn = self.aws("kinesisvideo", "describe-stream", "--stream-arn", info["StreamARN"])
        self.assertEqual(by_arn["StreamInfo"]["StreamName"], "yard")
        endpoint = self.aws("kinesisvideo", "get-data-endpoint", "--stream-name", "yard",
                            "--api-name", "GET_CLIP")
        self.assertEqual(endpoint["DataEndpoint"], self.d.url)
        names = [s["StreamName"] for s in self.aws("kinesisvideo", "list-streams")["StreamInfoList"]]
        self.assertIn("yard", names)
        err = self.aws("kinesisvideo", "create-stream", "--stream-name", "bad", ok=False)
        self.assertIn("edged:source", err)
        arn = self.aws("kinesisvideo", "create-stream", "--stream-name", "porch",
                       "--data-retention-in-hours", "2", "--tags",
                       "edged:source=test://")["StreamARN"]
        self.wait_fragments(1, "porch")
        listed = self.aws("kinesisvideo", "list-streams", "--stream-name-condition",
                          "ComparisonOperator=BEGINS_WITH,ComparisonValue=por")["StreamInfoList"]
        self.assertEqual([(s["StreamName"], s["DataRetentionInHours"]) for s in listed], [("porch", 2)])
        self.aws("kinesisvideo", "delete-stream", "--stream-arn", arn)
        err = self.aws("kinesisvideo", "describe-stream", "--stream-name", "porch", ok=False)
        self.assertIn("ResourceNotFoundException", err)
        self.assertFalse(os.path.exists(os.path.join(self.d.data_dir, "media", "porch")))
        # A camera from the configuration file stays.
        err = self.aws("kinesisvideo", "delete-stream", "--stream-arn", info["StreamARN"], ok=False)
        self.assertIn("ResourceInUseException", err)

    # ---- the REST API and the web UI's endpoints ----

    def test_rest_cameras(self):
        status, _, body = self.d.request("POST", "/v1/cameras", body=json.dumps(
            {"name": "lab", "source": "test://", "fragment_duration_ms": 1000, "width": 320,
             "height": 240}).encode(), headers={"Content-Type": "application/json"})
        self.assertEqual(status, 201, body)
        self.assertEqual(json.loads(body)["name"], "lab")
        body = self.wait_fragments(2, "lab")
        self.assertEqual((body["width"], body["height"]), (320, 240))
        status, _, _ = self.d.request("POST", "/v1/cameras", body=json.dumps(
            {"name": "lab", "source": "test://"}).encode())
        self.assertEqual(status, 409)
        for bad in ({"name": "x y", "source": "test://"}, {"name": "ok", "source": "ftp://x"},
                    {"name": "ok", "source": "test://", "fragment_duration_ms": 50},
                    {"name": "ok"}):
            status, _, body = self.d.request("POST", "/v1/cameras", body=json.dumps(bad).encode())
            self.assertEqual(status, 400, (bad, body))
            self.assertEqual(json.loads(body)["error"]["code"], "InvalidArgument")
        status, _, snap = self.d.request("GET", "/v1/cameras/lab/snapshot.jpg?width=160")
        self.assertEqual(status, 200)
        self.assertEqual(snap[:2], b"\xff\xd8")
        status, _, body = self.d.get_json("/v1/cameras")
        self.assertEqual(sorted(c["name"] for c in body["cameras"]), ["lab", "yard"])
        status, _, _ = self.d.request("DELETE", "/v1/cameras/yard")
        self.assertEqual(status, 409)
        status, _, _ = self.d.request("DELETE", "/v1/cameras/lab")
        self.assertEqual(status, 204)
        status, _, _ = self.d.request("GET", "/v1/cameras/lab")
        self.assertEqual(status, 404)


    def test_file_source_plays_in_real_time_and_loops(self):
        # A 3 s H.264 MP4 with a keyframe every second, made with GStreamer.
        clip = os.path.join(self.tmp, "source.mp4")
        r = subprocess.run(["gst-launch-1.0", "-q", "videotestsrc", "num-buffers=90", "pattern=smpte",
                            "!", "video/x-raw,width=320,height=240,framerate=30/1", "!", "x264enc",
                            "key-int-max=30", "speed-preset=ultrafast", "!", "h264parse", "!", "mp4mux",
                            "!", "filesink", f"location={clip}"], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        status, _, body = self.d.request("POST", "/v1/cameras", body=json.dumps(
            {"name": "replay", "source": f"file://{clip}", "fragment_duration_ms": 1000}).encode())
        self.assertEqual(status, 201, body)
        self.addCleanup(self.d.request, "DELETE", "/v1/cameras/replay")
        started = time.time()
        s = self.wait_fragments(7, "replay")
        elapsed = time.time() - started
        # Recorded as it is (no re-encode), at the pace of its timestamps:
        # seven 1 s fragments take about seven seconds, across two loops.
        self.assertEqual((s["codec"], s["width"], s["height"]), ("h264", 320, 240))
        self.assertGreater(elapsed, 5)
        status, _, listing = self.d.get_json("/v1/cameras/replay/fragments")
        frags = listing["fragments"]
        exact = 0
        for a, b in zip(frags, frags[1:]):
            self.assertEqual(b["number"], a["number"] + 1)
            # Within a loop fragments follow each other exactly; where the
            # file starts again, the pipeline's restart shows as a short gap.
            gap = b["producerMs"] - (a["producerMs"] + a["durationMs"])
            self.assertGreaterEqual(gap, 0)
            self.assertLess(gap, 1000)
            exact += gap <= 2
        self.assertGreaterEqual(exact, (len(frags) - 1) // 2)
        self.assertEqual({f["frames"] for f in frags[:6]}, {30})

    def test_edgectl_cameras(self):
        def ctl(*args):
            return subprocess.run([EDGECTL, "--url", self.d.url, "cameras", *args],
                                  capture_output=True, text=True, timeout=30)
        r = ctl("add", "shed", "test://")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("recording camera shed", r.stdout)
        self.wait_fragments(1, "shed")
        r = ctl("list")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = {l.split()[0]: l.split() for l in r.stdout.splitlines()[1:] if l.strip()}
        self.assertEqual(lines["shed"][1:3], ["running", "h264"])
        self.assertEqual(lines["yard"][-1], "test://")
        r = ctl("add", "shed", "test://")
        self.assertEqual(r.returncode, 1)
        self.assertIn("already exists", r.stderr)
        r = ctl("remove", "shed")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = ctl("remove", "shed")
        self.assertEqual(r.returncode, 1)


class CameraRestart(unittest.TestCase):
    """The index and the fragment numbers survive restarts and kill -9."""

    def test_restart_and_kill(self):
        d = Daemon(config=CAMERA, env=camera_env())
        try:
            d.start()
            self.wait(d, 3)
            self.assertEqual(d.stop(), 0, d.log()[-6000:])
            d.start()
            status, _, body = d.get_json("/v1/cameras/yard")
            kept = body["recorded"]["fragments"]
            self.assertGreaterEqual(kept, 3)
            status, _, listing = d.get_json("/v1/cameras/yard/fragments")
            first_run = [f["number"] for f in listing["fragments"]]
            self.wait(d, kept + 3)
            # kill -9 mid-recording: what was written is still listed and
            # numbers go on from there, never reused.
            d.proc.send_signal(signal.SIGKILL)
            d.wait_exit()
            d.start()
            self.wait(d, kept + 5)
            status, _, listing = d.get_json("/v1/cameras/yard/fragments")
            numbers = [f["number"] for f in listing["fragments"]]
            self.assertEqual(numbers[:len(first_run)], first_run)
            self.assertEqual(numbers, sorted(set(numbers)))
            for f in listing["fragments"]:
                status, _, body = d.request("GET", f"/v1/cameras/yard/hls/fragment/{f['number']}.m4s")
                self.assertEqual(status, 200, f)
            # The two times edged was not running show as gaps, each ending
            # where recording resumed.
            status, _, gaps = d.get_json("/v1/cameras/yard/gaps")
            self.assertEqual(len(gaps["gaps"]), 2, gaps)
            starts = {f["serverMs"] for f in listing["fragments"]}
            for gap in gaps["gaps"]:
                self.assertLess(gap["startMs"], gap["endMs"])
                self.assertIn(gap["endMs"], starts)
            self.assertEqual(d.stop(), 0, d.log()[-6000:])
        finally:
            d.cleanup()

    def wait(self, d, n, timeout=40):
        deadline = time.time() + timeout
        while time.time() < deadline:
            status, _, body = d.get_json("/v1/cameras/yard")
            if status == 200 and body["recorded"]["fragments"] >= n:
                return
            time.sleep(0.25)
        raise AssertionError(f"fewer than {n} fragments:\n{d.log()}")


class CameraLive(unittest.TestCase):
    """WS /v1/cameras/NAME/live as a client sees it, and a viewer that stops
    reading: it has fragments skipped, never grows edged's memory, is closed
    after the stall timeout, and the other viewers see no difference."""

    def test_live_messages_and_a_slow_viewer(self):
        # The first lines continue the harness's gateway: section.
        d = Daemon(config="""  websocket:
    max_buffered_bytes: 1MiB
    stall_timeout: 6s
cameras:
  - name: busy
    source: test://?pattern=snow
    fragment_duration: 1s
    keyframe_interval: 1s
    bitrate_kbps: 8000
    width: 1280
    height: 720
""", env=camera_env())
        try:
            d.start()
            ws = WebSocket(d.port, "/v1/cameras/busy/live")
            self.assertEqual(ws.status, 101)
            opcode, payload = ws.recv()
            init = json.loads(payload)
            self.assertEqual(opcode, 1)
            self.assertEqual(init["type"], "init")
            self.assertRegex(init["codec"], r"^avc1\.[0-9a-f]{6}$")
            self.assertEqual((init["width"], init["height"]), (1280, 720))
            opcode, payload = ws.recv()
            self.assertEqual((opcode, payload[4:8]), (2, b"ftyp"))
            # A stalled viewer: connected, never reading.
            stalled = WebSocket(d.port, "/v1/cameras/busy/live")
            stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            deadline = time.time() + 40
            fragments = 0
            last_sequence = None
            while time.time() < deadline:
                opcode, payload = ws.recv()
                if opcode == 2 and payload[4:8] == b"moof":
                    fragments += 1
                    sequence = int.from_bytes(payload[20:24], "big")  # mfhd
                    if last_sequence is not None:
                        # The reading viewer misses nothing.
                        self.assertEqual(sequence, last_sequence + 1)
                    last_sequence = sequence
                _, _, status = d.get_json("/v1/cameras/busy")
                if status["liveSkipped"] > 0 and status["liveViewers"] == 1:
                    break
            self.assertGreater(status["liveSkipped"], 0, status)
            # The stalled viewer was closed; memory stayed bounded.
            self.assertEqual(status["liveViewers"], 1, status)
            self.assertLess(d.rss_bytes(), 400 * 2**20)
            self.assertGreater(fragments, 3)
            stalled.sock.close()
            ws.sock.close()
            self.assertEqual(d.stop(), 0, d.log()[-6000:])
        finally:
            d.cleanup()


class CameraRetention(unittest.TestCase):
    """Retention by bytes removes the oldest fragments, index and files."""

    def test_retention_bytes(self):
        d = Daemon(config="""cameras:
  - name: tight
    source: test://
    fragment_duration: 1s
    keyframe_interval: 1s
    retention_bytes: 150KiB
""", env=camera_env())
        try:
            d.start()
            deadline = time.time() + 40
            removed = False
            while time.time() < deadline and not removed:
                time.sleep(1)
                _, _, listing = d.get_json("/v1/cameras/tight/fragments")
                numbers = [f["number"] for f in listing["fragments"]]
                removed = bool(numbers) and numbers[0] > 1
            self.assertTrue(removed, f"nothing removed: {listing}\n{d.log()}")
            _, _, status = d.get_json("/v1/cameras/tight")
            # Within the limit after a pass (plus what arrived since it ran).
            newest = max(f["bytes"] for f in listing["fragments"])
            self.assertLessEqual(status["recorded"]["bytes"], 150 * 1024 + 12 * newest)
            # The oldest fragments' files are gone; the kept ones are there.
            files = sorted(int(n.split(".")[0]) for n in os.listdir(os.path.join(d.data_dir, "media", "tight"))
                           if n.endswith(".frag"))
            self.assertNotIn(1, files)
            self.assertTrue(set(numbers) <= set(files))
            status, _, _ = d.request("GET", "/v1/cameras/tight/hls/fragment/1.m4s")
            self.assertEqual(status, 404)
            self.assertEqual(d.stop(), 0, d.log()[-6000:])
        finally:
            d.cleanup()


class CameraDiskSpace(unittest.TestCase):
    """On a small disk (a 48 MiB tmpfs), recording makes room for itself:
    the oldest footage goes, free space stays near the reserve, and the
    camera never stops."""

    def setUp(self):
        self.mnt = mount_tmpfs(self, "48m", "edged-video-full-")

    def test_oldest_footage_makes_room(self):
        d = Daemon(config="""storage:
  min_free_bytes: 0
  video_reserve_bytes: 24MiB
cameras:
  - name: noisy
    source: test://?pattern=snow
    width: 1280
    height: 720
    fragment_duration: 1s
    keyframe_interval: 1s
    bitrate_kbps: 20000
""", data_dir=os.path.join(self.mnt, "data"), env=camera_env())
        try:
            d.start()
            deadline = time.time() + 90
            lowest_free = None
            removed = False
            while time.time() < deadline and not removed:
                time.sleep(1)
                st = os.statvfs(self.mnt)
                free = st.f_bavail * st.f_frsize
                lowest_free = free if lowest_free is None else min(lowest_free, free)
                _, _, listing = d.get_json("/v1/cameras/noisy/fragments")
                numbers = [f["number"] for f in listing["fragments"]]
                removed = bool(numbers) and numbers[0] > 1
            self.assertTrue(removed, f"nothing was removed; lowest free {lowest_free}\n{d.log()[-3000:]}")
            self.assertIn("removed", d.log())
            # Free space never fell far below the reserve (one check period of
            # recording at most), and the camera kept recording throughout.
            self.assertGreater(lowest_free, 12 * 2**20)
            _, _, status = d.get_json("/v1/cameras/noisy")
            self.assertEqual(status["state"], "running", status)
            self.assertIsNone(status["error"], status)
            newest = numbers[-1]
            time.sleep(3)
            _, _, listing = d.get_json("/v1/cameras/noisy/fragments")
            self.assertGreater(listing["fragments"][-1]["number"], newest + 1)
            self.assertEqual(d.stop(), 0, d.log()[-6000:])
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
