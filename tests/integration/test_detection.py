"""Detection against a camera the test steers (tests/rtsp-server.c's "scene":
a square that stands still or moves on command): motion events start within
2 s of the motion and none come from a still scene, nor from a scene that
changed while the camera was away; an excluded zone suppresses them; a
function subscribed to the events stream runs with each event and fetches
its snapshot and clip; bad detection settings are refused with the setting
named."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import (EDGECTL, EDGED, SOURCE_ROOT, Daemon, Mosquitto, MqttClient,  # noqa: E402
                           camera_env, free_port, mount_tmpfs, publish_all, run_node_tests,
                           wait_for)

RTSP_SERVER = os.environ.get("RTSP_SERVER", "build/tests/rtsp-server")
EVENTS_RUNTIME = os.path.join(SOURCE_ROOT, "tests/functions/events/bootstrap")


class Scene:
    """The steered camera: rtsp://127.0.0.1:PORT/cam, 320x240 at 15 fps, a
    keyframe a second."""

    def __init__(self):
        self.port = free_port()
        self.start()

    def start(self):
        """Starts the camera (again, on the same port), its square still at
        its first place."""
        self.proc = subprocess.Popen([RTSP_SERVER, str(self.port), "15", "320", "240", "15", "300"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True,
                                     env=dict(os.environ, RTSP_PATTERN="scene"))
        assert self.proc.stdout.readline().strip() == "ready"

    def command(self, what):
        """Sends @what and returns the time the first frame showing it was made."""
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"
        return time.time()

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()



def events_function(results, starting_position="LATEST"):
    """Configuration for the function that handles the events stream
    (tests/functions/events), writing what it got to @results."""
    return f"""functions:
  - name: on-event
    bootstrap: {EVENTS_RUNTIME}
    environment:
      RESULTS: {results}
event_source_mappings:
  - stream: events
    function: on-event
    starting_position: {starting_position}
"""


def read_results(path):
    """What the events function wrote, a JSON object a line."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


class MotionTest(unittest.TestCase):
    def setUp(self):
        self.scene = Scene()
        self.workdir = tempfile.mkdtemp(prefix="edged-detect-")
        self.broker = Mosquitto(self.workdir).start()
        self.results = os.path.join(self.workdir, "results")
        url = f"rtsp://127.0.0.1:{self.scene.port}/cam"
        self.d = Daemon(workdir=self.workdir, env=camera_env(), config=f"""
cameras:
  - name: door
    source: {url}
    fragment_duration: 1s
    detect: motion
    event_cooldown: 1500ms
    event_pre_roll: 2s
    event_post_roll: 1s
  # The same scene with its right half, where the square moves, excluded.
  - name: fenced
    source: {url}
    fragment_duration: 1s
    detect: motion
    zones: exclude 0.5,0 1,0 1,1 0.5,1
{events_function(self.results, "TRIM_HORIZON")}mqtt:
  brokers:
    - name: site
      host: 127.0.0.1
      port: {self.broker.port}
  publish:
    - stream: events
      broker: site
      topic: cameras/${{camera}}/${{type}}
""")
        self.d.start()
        self.listener = MqttClient(self.broker.port, "event-listener")
        self.listener.subscribe("cameras/#", qos=1)

    def tearDown(self):
        self.listener.close()
        self.d.cleanup()
        self.broker.stop(signal.SIGKILL)
        self.scene.stop()

    def events(self, camera):
        status, _, body = self.d.get_json(f"/v1/events?camera={camera}")
        self.assertEqual(status, 200, body)
        return body["events"]

    def results_for(self, event_id):
        return [r for r in read_results(self.results) if r.get("id") == event_id]

    def test_motion_starts_events_and_runs_the_function(self):
        for camera in ("door", "fenced"):
            wait_for(lambda: self.d.get_json(f"/v1/cameras/{camera}")[2]["recorded"]["fragments"] >= 3,
                     what=f"{camera} recording")
        # A still scene: the detectors look at it, and nothing happens.
        wait_for(lambda: self.d.get_json("/v1/cameras/door")[2]["detection"]["framesExamined"] >= 20,
                 what="the detector looking")
        time.sleep(2)
        self.assertEqual(self.events("door"), [])

        moved = self.scene.command("move")
        event = wait_for(lambda: (self.events("door") or [None])[0], timeout=10, interval=0.05,
                         what="a motion event")
        seen = time.time()
        self.assertLess(seen - moved, 2.0, "the event took more than 2 s to show")
        self.assertEqual((event["camera"], event["type"], event["active"]), ("door", "motion", True))
        self.assertLess(abs(event["start_ms"] / 1000 - moved), 2.0, event)
        # Where it moved: the square is in the right half, in the middle band.
        self.assertTrue(event["boxes"], event)
        box = event["boxes"][0]
        self.assertGreaterEqual(box["x"], 0.45, box)
        self.assertLess(box["y"], 0.6, box)
        self.assertGreater(box["y"] + box["height"], 0.4, box)
        self.assertGreater(event["score"], 0)
        # Its fragment is the one holding its start.
        def fragment():
            status, _, frags = self.d.get_json(
                f"/v1/cameras/door/fragments?start={event['start_ms'] / 1000 - 10}")
            return [f for f in frags["fragments"] if f["number"] == int(event["fragment_number"])]
        frag = wait_for(fragment, timeout=10, what="the event's fragment")
        self.assertLessEqual(frag[0]["producerMs"], event["start_ms"])
        self.assertLess(event["start_ms"], frag[0]["producerMs"] + frag[0]["durationMs"])

        # Still moving a while: the excluded zone keeps "fenced" quiet.
        time.sleep(3)
        self.assertEqual(self.events("fenced"), [])
        self.assertEqual(len(self.events("door")), 1, "one event while the motion lasts")

        stopped = self.scene.command("still")
        ended = wait_for(lambda: (lambda e: e if e["end_ms"] else None)(self.events("door")[0]),
                         timeout=10, what="the event ending")
        self.assertFalse(ended["active"])
        self.assertEqual(ended["id"], event["id"])
        # It ends at the last frame that saw motion, the cooldown after it.
        self.assertLess(abs(ended["end_ms"] / 1000 - stopped), 1.5, ended)

        # edgectl lists it.
        r = subprocess.run([EDGECTL, "--url", self.d.url, "events", "door"], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(event["id"], r.stdout)
        self.assertRegex(r.stdout, r"door +motion")

        # The snapshot, through the API.
        status, headers, body = self.d.request("GET", event["snapshot_url"])
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("Content-Type"), "image/jpeg")
        self.assertEqual(body[:2], b"\xff\xd8")

        # The function ran with the start and the end, from the events stream,
        # and fetched the snapshot and the clip.
        results = wait_for(lambda: (lambda r: r if len(r) >= 2 else None)(self.results_for(event["id"])),
                           timeout=30, what="the function handling the event")
        start = [r for r in results if r["phase"] == "start"][0]
        self.assertEqual(start["partition_key"], "door")
        self.assertEqual((start["snapshot_status"], start["snapshot_jpeg"]), (200, True), start)
        self.assertEqual((start["clip_status"], start["clip_mp4"]), (200, True), start)
        self.assertGreater(start["clip_bytes"], 1000)
        self.assertIn("end", [r["phase"] for r in results])

        # Filters.
        self.assertEqual(len(self.d.get_json("/v1/events?type=motion")[2]["events"]), 1)
        self.assertEqual(self.d.get_json("/v1/events?type=face")[2]["events"], [])
        since = event["start_ms"] / 1000 + 1
        self.assertEqual(self.d.get_json(f"/v1/events?since={since}")[2]["events"], [])
        status, _, body = self.d.get_json("/v1/events?limit=0")
        self.assertEqual(status, 400, body)
        status, _, body = self.d.get_json("/v1/events/no-such-event")
        self.assertEqual(status, 404, body)
        status = self.d.get_json("/v1/cameras/door")[2]["detection"]
        self.assertEqual(status["events"], 2)  # its start and its end
        # Published over MQTT too: the start and the end, on the camera's topic.
        self.listener.sock.settimeout(10)
        published = []
        while len(published) < 2:
            topic, payload = self.listener.receive()
            message = json.loads(payload)
            if message["id"] == event["id"]:
                published.append((topic, message["phase"]))
        self.assertEqual(published, [("cameras/door/motion", "start"), ("cameras/door/motion", "end")])

        # A clean stop (under the sanitizers: nothing leaked).
        self.assertEqual(self.d.stop(), 0, self.d.log()[-6000:])


    def test_a_scene_changed_while_the_camera_was_away_is_no_motion(self):
        # The square moves to another place and stays there: one event.
        wait_for(lambda: self.d.get_json("/v1/cameras/door")[2]["detection"]["framesExamined"] >= 20,
                 what="the detector looking")
        self.scene.command("move")
        wait_for(lambda: self.events("door"), timeout=10, interval=0.05, what="a motion event")
        time.sleep(1.5)
        self.scene.command("still")
        wait_for(lambda: all(e["end_ms"] for e in self.events("door")), timeout=10,
                 what="the event ending")
        moved = len(self.events("door"))
        # The camera goes away and comes back with the square at its first
        # place: nothing was seen moving, so no event (the first second
        # back only shows the detector the scene, as at the start).
        restarts = self.d.get_json("/v1/cameras/door")[2]["restarts"]
        self.scene.stop()
        self.scene.start()
        wait_for(lambda: self.d.get_json("/v1/cameras/door")[2]["restarts"] > restarts,
                 timeout=20, what="the camera reconnecting")
        examined = self.d.get_json("/v1/cameras/door")[2]["detection"]["framesExamined"]
        wait_for(lambda: self.d.get_json("/v1/cameras/door")[2]["detection"]["framesExamined"]
                 >= examined + 15, timeout=20, what="the detector looking again")
        self.assertEqual(len(self.events("door")), moved, self.events("door"))
        # And motion after it is motion again.
        self.scene.command("move")
        wait_for(lambda: len(self.events("door")) > moved, timeout=10, interval=0.05,
                 what="a motion event after the camera came back")


@unittest.skipIf(os.environ.get("EDGED_TESTS_SKIP_SLOW"),
                 "slow, and run in the plain build: the full-disk pass runs the same under the sanitizers as in the plain build")
class RetentionTest(unittest.TestCase):
    """A full disk, by fault injection (a 48 MiB tmpfs and a 20 Mb/s camera):
    ordinary footage is removed first, and the footage around an event
    (its pre- and post-roll included) stays, its clip still playable."""

    def setUp(self):
        self.mnt = mount_tmpfs(self, "48m", "edged-detect-full-")
        self.scene = Scene()

    def tearDown(self):
        self.scene.stop()

    def fragments(self, d, camera):
        return d.get_json(f"/v1/cameras/{camera}/fragments")[2]["fragments"]

    def test_event_footage_outlives_ordinary_footage(self):
        d = Daemon(config=f"""storage:
  min_free_bytes: 0
  video_reserve_bytes: 24MiB
cameras:
  - name: door
    source: rtsp://127.0.0.1:{self.scene.port}/cam
    fragment_duration: 1s
    detect: motion
    event_cooldown: 1s
    event_pre_roll: 1s
    event_post_roll: 1s
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
            wait_for(lambda: len(self.fragments(d, "door")) >= 4, what="door recording")
            self.scene.command("move")
            time.sleep(2)
            self.scene.command("still")
            event = wait_for(lambda: (lambda e: e[0] if e and e[0]["end_ms"] else None)(
                d.get_json("/v1/events?camera=door")[2]["events"]), what="the event ending")
            keep_from, keep_to = event["start_ms"] - 1000, event["end_ms"] + 1000
            time.sleep(2)  # the post-roll recorded
            frags = self.fragments(d, "door")
            kept = [f["number"] for f in frags
                    if f["producerMs"] + f["durationMs"] >= keep_from and f["producerMs"] <= keep_to]
            self.assertTrue(kept, frags)

            # The disk fills; the oldest ordinary footage goes, door's too
            # (perhaps some of it already).
            wait_for(lambda: all(f["producerMs"] + f["durationMs"] >= keep_from
                                 for f in self.fragments(d, "door")),
                     timeout=120, interval=1, what="ordinary footage from before the event removed")
            # Footage newer than the event's, but ordinary, went as well while
            # the event's stayed.
            wait_for(lambda: self.fragments(d, "noisy")[0]["producerMs"] > keep_to,
                     timeout=120, interval=1, what="newer ordinary footage removed")
            left = {f["number"] for f in self.fragments(d, "door")}
            self.assertTrue(set(kept) <= left, (kept, sorted(left)))
            status, headers, body = d.request("GET", event["clip_url"], timeout=30)
            self.assertEqual(status, 200, body[:200])
            self.assertEqual(body[4:8], b"ftyp")
            self.assertEqual(d.get_json("/v1/cameras/noisy")[2]["state"], "running")
        finally:
            d.cleanup()


class SensorEventTest(unittest.TestCase):
    """The same path for sensors: a topic rule with a threshold writes an
    event into the events stream, and the function subscribed to it runs."""

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="edged-sensor-event-")
        self.broker = Mosquitto(self.workdir).start()
        self.results = os.path.join(self.workdir, "results")
        self.d = Daemon(workdir=self.workdir, config=f"""
streams:
  - name: sensors
  - name: events
mqtt:
  brokers:
    - name: site
      host: 127.0.0.1
      port: {self.broker.port}
  subscriptions:
    - broker: site
      topic: sensors/+/telemetry
      stream: sensors
  rules:
    - name: too-warm
      broker: site
      sql: SELECT 'too-warm' AS type, topic(2) AS sensor, temperature FROM 'sensors/+/telemetry' WHERE temperature > 30
      stream: events
      partition_key: ${{topic(2)}}
{events_function(self.results)}""")
        self.d.start()

    def tearDown(self):
        self.d.cleanup()
        self.broker.stop(signal.SIGKILL)

    def test_threshold_runs_the_function(self):
        wait_for(lambda: self.d.get_json("/v1/mqtt")[2]["brokers"][0]["connected"],
                 what="edged connected")
        publish_all(self.broker.port, [("sensors/boiler/telemetry", b'{"temperature": 24.5}'),
                                       ("sensors/boiler/telemetry", b'{"temperature": 31.5}'),
                                       ("sensors/porch/telemetry", b'{"temperature": 12}')])
        results = wait_for(lambda: read_results(self.results), what="the function running")
        time.sleep(1)  # anything else would have come by now
        results = read_results(self.results)
        self.assertEqual(results, [{"sensor_event": {"type": "too-warm", "sensor": "boiler",
                                                     "temperature": 31.5},
                                    "partition_key": "boiler"}])
        self.assertEqual(self.d.stop(), 0, self.d.log()[-6000:])


@unittest.skipIf(os.environ.get("EDGED_TESTS_SKIP_SLOW"),
                 "waits for two retention passes: run once, not again under the sanitizers")
class CameraRetentionTest(unittest.TestCase):
    """A camera's own retention (here retention_bytes) passes over the
    footage around an event and removes ordinary footage on both sides."""

    def setUp(self):
        self.scene = Scene()

    def tearDown(self):
        self.scene.stop()

    def test_retention_bytes_keeps_event_footage(self):
        d = Daemon(env=camera_env(), config=f"""
cameras:
  - name: door
    source: rtsp://127.0.0.1:{self.scene.port}/cam
    fragment_duration: 1s
    retention_bytes: 24KiB
    detect: motion
    event_cooldown: 1s
    event_pre_roll: 1s
    event_post_roll: 1s
""")
        try:
            d.start()

            def fragments():
                return d.get_json("/v1/cameras/door/fragments")[2]["fragments"]
            wait_for(lambda: len(fragments()) >= 3, what="door recording")
            self.scene.command("move")
            time.sleep(2)
            self.scene.command("still")
            event = wait_for(lambda: (lambda e: e[0] if e and e[0]["end_ms"] else None)(
                d.get_json("/v1/events")[2]["events"]), what="the event ending")
            keep_from, keep_to = event["start_ms"] - 1000, event["end_ms"] + 1000

            def pinned(f):
                return f["producerMs"] + f["durationMs"] >= keep_from and f["producerMs"] <= keep_to
            kept = [f["number"] for f in fragments() if pinned(f)]
            self.assertTrue(kept)
            # Recording goes on past the byte budget: the retention pass (every
            # 10 s) removes ordinary footage from before and after the event.
            left = wait_for(lambda: (lambda fs: fs if any(not pinned(f) and f["producerMs"] > keep_to
                                                          for f in fs) and
                                     fs[0]["number"] > 1 and
                                     all(pinned(f) or f["producerMs"] > keep_to for f in fs)
                                     else None)(fragments()),
                            timeout=90, interval=1, what="ordinary footage before the event removed")
            self.assertTrue(set(kept) <= {f["number"] for f in left}, (kept, left))
            # And the newest ordinary footage over the budget goes next, before the event's.
            total_ordinary = sum(f["bytes"] for f in left if not pinned(f))
            self.assertLessEqual(total_ordinary, 24 * 1024 + max(f["bytes"] for f in left))
        finally:
            d.cleanup()


IMAGES = os.environ.get("EDGED_TEST_IMAGES", "/usr/local/share/edged/test-images")


class FaceTest(unittest.TestCase):
    """Faces, on packaged photographs (scikit-image's sample data from its
    Debian package, which .ci/install-deps --test extracts): a still video of
    a face gives a face event boxed on the face; one of a cup of coffee none."""

    def setUp(self):
        r = subprocess.run(["gst-inspect-1.0", "facedetect"], capture_output=True)
        if r.returncode != 0:
            self.skipTest("no face detector here: GStreamer's OpenCV plugin (facedetect, Debian: "
                          "gstreamer1.0-opencv) is not installed")
        if not all(os.path.exists(os.path.join(IMAGES, f"{n}.png")) for n in ("astronaut", "coffee")):
            self.skipTest(f"no test photographs in {IMAGES} (.ci/install-deps --test puts them there)")
        self.workdir = tempfile.mkdtemp(prefix="edged-faces-")
        # Each photograph as a 3 s video (H.264 in MP4), which a file:// camera loops.
        for name in ("astronaut", "coffee"):
            subprocess.run(["gst-launch-1.0", "-q", "filesrc", f"location={IMAGES}/{name}.png", "!",
                            "pngdec", "!", "videoconvert", "!", "imagefreeze", "num-buffers=45", "!",
                            "video/x-raw,framerate=15/1", "!", "videoconvert", "!",
                            "video/x-raw,format=I420", "!", "x264enc", "key-int-max=15",
                            "speed-preset=ultrafast", "!", "h264parse", "!", "mp4mux", "!",
                            "filesink", f"location={self.workdir}/{name}.mp4"],
                           check=True, timeout=60)

    def tearDown(self):
        subprocess.run(["rm", "-rf", self.workdir])

    def test_a_face_is_found_and_a_cup_is_not(self):
        d = Daemon(workdir=self.workdir, env=camera_env(), config=f"""
cameras:
  - name: astronaut
    source: file://{self.workdir}/astronaut.mp4
    detect: face, motion
    detect_width: 512
  - name: coffee
    source: file://{self.workdir}/coffee.mp4
    detect: face
    detect_width: 512
""")
        try:
            d.start()
            event = wait_for(lambda: (d.get_json("/v1/events?camera=astronaut&type=face")[2]["events"]
                                      or [None])[0], timeout=30, what="a face event")
            # Eileen Collins' face: in the upper middle of the 512x512 picture.
            self.assertEqual(len(event["boxes"]), 1, event)
            box = event["boxes"][0]
            cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            self.assertTrue(0.35 < cx < 0.55 and 0.15 < cy < 0.35, box)
            self.assertTrue(0.08 < box["width"] < 0.35, box)
            self.assertEqual(d.get_json("/v1/events?camera=astronaut&type=motion")[2]["events"], [],
                             "a still picture does not move")
            status, headers, body = d.request("GET", event["snapshot_url"])
            self.assertEqual((status, body[:2]), (200, b"\xff\xd8"))
            time.sleep(3)
            self.assertGreater(d.get_json("/v1/cameras/coffee")[2]["detection"]["framesExamined"], 10)
            self.assertEqual(d.get_json("/v1/events?camera=coffee")[2]["events"], [])
            self.assertEqual(d.stop(), 0, d.log()[-6000:])
        finally:
            d.cleanup()


@unittest.skipIf(os.environ.get("EDGED_TESTS_SKIP_SLOW"),
                 "slow, and run in the plain build: the page is the same page under the sanitizers")
class EventsBrowser(unittest.TestCase):
    def test_events_page(self):
        run_node_tests(self, ["events-browser.test.mjs"], timeout=180, browser=True,
                       env={"RTSP_SERVER": os.path.abspath(RTSP_SERVER),
                            "EDGED_SOURCE_ROOT": SOURCE_ROOT})


class OpenEventTest(unittest.TestCase):
    """An event going on when edged stops is ended then; one going on when
    edged is killed is ended at the next start, where the footage ends."""

    def setUp(self):
        self.scene = Scene()
        self.d = Daemon(env=camera_env(), config=f"""
cameras:
  - name: door
    source: rtsp://127.0.0.1:{self.scene.port}/cam
    fragment_duration: 1s
    detect: motion
""")
        self.d.start()

    def tearDown(self):
        self.d.cleanup()
        self.scene.stop()

    def open_event(self):
        wait_for(lambda: self.d.get_json("/v1/cameras/door")[2]["recorded"]["fragments"] >= 2,
                 what="door recording")
        self.scene.command("move")
        event = wait_for(lambda: (self.d.get_json("/v1/events")[2]["events"] or [None])[0],
                         timeout=10, what="an event")
        self.assertTrue(event["active"])
        time.sleep(2)
        return event

    def test_stop_and_kill_end_open_events(self):
        event = self.open_event()
        self.assertEqual(self.d.stop(), 0, self.d.log()[-3000:])
        self.d.start()
        ended = self.d.get_json(f"/v1/events/{event['id']}")[2]
        self.assertFalse(ended["active"], ended)
        self.assertGreater(ended["end_ms"], event["start_ms"] + 1000)
        # The end is in the events stream too, after the start.
        phases = [json.loads(r["Data"])["phase"] for r in self.d.stream_records("events")
                  if json.loads(r["Data"])["id"] == event["id"]]
        self.assertEqual(phases, ["start", "end"])

        # The scene still moves: a new event starts; kill -9 leaves it open.
        second = wait_for(lambda: [e for e in self.d.get_json("/v1/events")[2]["events"]
                                   if e["id"] != event["id"]], timeout=10, what="a second event")[0]
        time.sleep(2)
        self.d.proc.send_signal(signal.SIGKILL)
        self.d.wait_exit()
        self.d.start()
        closed = self.d.get_json(f"/v1/events/{second['id']}")[2]
        self.assertFalse(closed["active"], closed)
        last = self.d.get_json("/v1/cameras/door/fragments")[2]["fragments"]
        # Where the footage recorded before the kill ended.
        self.assertLessEqual(closed["end_ms"], max(f["producerMs"] + f["durationMs"] for f in last))
        self.assertGreater(closed["end_ms"], second["start_ms"])


@unittest.skipIf(os.environ.get("EDGED_TESTS_SKIP_SLOW"),
                 "waits for the demo camera's visitor (up to 30 s): run once, not again under the sanitizers")
class EmbeddedDefaultTest(unittest.TestCase):
    """What a first start shows: the demo camera's visitor is motion, a demo
    sensor over its threshold is an event too, and the sample function runs
    for both (its lines are what the Events page shows)."""

    def test_demo_motion_and_sensor_run_the_sample_function(self):
        d = Daemon(env=camera_env())
        # No --config: the embedded default, moved to a free port and a
        # temporary data directory.
        d.config_path = None
        d.start = lambda: embedded_start(d)
        try:
            d.start()
            event = wait_for(lambda: (d.get_json("/v1/events?camera=demo")[2]["events"] or [None])[0],
                             timeout=45, interval=0.5, what="the demo camera's motion")
            self.assertEqual(event["type"], "motion")
            self.assertTrue(event["snapshot_url"])

            def printed(prefix):
                logs = d.get_json("/v1/functions/hello/logs?limit=1000")[2]["events"]
                return [e["message"] for e in logs if e["message"].startswith(prefix)]
            lines = wait_for(lambda: printed("motion start on demo"), timeout=30,
                             what="the sample function's line for the motion")
            self.assertIn(event["snapshot_url"], lines[0])
            if not d.get_json("/v1/mqtt")[2]["brokers"][0]["connected"]:
                self.skipTest("no MQTT broker on 127.0.0.1:1883 for the demo sensors "
                              "(.ci/install-deps starts one)")
            wait_for(lambda: printed("too-warm: sensor demo-"), timeout=45,
                     what="the sample function's line for a warm demo sensor")
        finally:
            d.cleanup()


def embedded_start(d):
    d.stderr = open(d.stderr_path, "wb")
    d.proc = subprocess.Popen([EDGED, "--set", f"data_dir={d.data_dir}",
                               "--set", f"gateway.listen=127.0.0.1:{d.port}"],
                              stdout=subprocess.DEVNULL, stderr=d.stderr, env=d.env,
                              cwd=d.workdir)
    d.wait_ready()
    return d


class SettingsTest(unittest.TestCase):
    """Detection settings are checked before anything runs."""

    def check(self, extra):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(f"""cameras:
  - name: door
    source: test://
{extra}""")
        try:
            return subprocess.run([EDGED, "--check-config", f.name], capture_output=True,
                                  text=True, timeout=30)
        finally:
            os.unlink(f.name)

    def test_bad_settings_are_named(self):
        for extra, message in [
            ("    detect: motion, teleport\n", 'no detector "teleport"'),
            ("    detect: motion\n    zones: exclude 0,0 1,0\n", "zone 1: needs at least three points"),
            ("    detect: motion\n    zones: include 0,0 2,0 1,1\n", "zone 1: a point is X,Y"),
            ("    detect: motion\n    zones: around 0,0 1,0 1,1\n", "zone 1: starts with include"),
            ("    motion_min_area: lots\n", "motion_min_area"),
            ("    motion_sensitivity: 0\n", "motion_sensitivity"),
        ]:
            r = self.check(extra)
            self.assertNotEqual(r.returncode, 0, extra)
            self.assertIn(message, r.stderr, extra)
        r = self.check("    detect: motion\n    zones: exclude 0,0 0.3,0 0.3,0.1 0,0.1; include 0,0 1,0 1,1\n")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_cameras_added_through_the_api_are_checked_too(self):
        d = Daemon(env=camera_env())
        try:
            d.start()
            status, _, body = d.request("POST", "/v1/cameras", body=json.dumps(
                {"name": "gate", "source": "test://", "detect": "motion", "zones": "exclude 0,0 1,0"}),
                headers={"Content-Type": "application/json"})
            self.assertEqual(status, 400, body)
            self.assertIn("zone 1: needs at least three points", json.loads(body)["error"]["message"])
            status, _, body = d.request("POST", "/v1/cameras", body=json.dumps(
                {"name": "gate", "source": "test://", "detect": "motion", "motion_sensitivity": 80,
                 "zones": "include 0,0 1,0 1,1 0,1"}),
                headers={"Content-Type": "application/json"})
            self.assertEqual(status, 201, body)
            camera = d.get_json("/v1/cameras/gate")[2]
            self.assertEqual(camera["detection"]["detectors"], "motion")
            wait_for(lambda: d.get_json("/v1/cameras/gate")[2]["detection"]["framesExamined"] > 5,
                     what="the new camera's detector looking")
            # Kept across a restart, detection settings included.
            self.assertEqual(d.stop(), 0, d.log()[-3000:])
            d.start()
            self.assertEqual(d.get_json("/v1/cameras/gate")[2]["detection"]["detectors"], "motion")
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
