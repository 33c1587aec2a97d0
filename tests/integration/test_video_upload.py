"""Video uploads: a test camera's recording copied to s3rver (an
S3-compatible server from npm) as it is made, checked with the AWS CLI's s3
commands and ffprobe; an outage of the server loses no fragment; the
uploaded copy's own retention deletes old objects there while the box keeps
its recording."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from edged_harness import EDGECTL, Daemon, camera_env, wait_for  # noqa: E402
from test_delivery import S3rver  # noqa: E402

CAMERA = """cameras:
  - name: door
    source: test://
    fragment_duration: 1s
    keyframe_interval: 1s
    fps: 10
    width: 320
    height: 240
"""


def upload(d, name="copy"):
    code, _, body = d.get_json(f"/v1/uploads/{name}")
    assert code == 200, body
    return body


def fragment_numbers(keys):
    return sorted(int(m.group(1)) for k in keys if (m := re.search(r"/(\d{12})\.m4s$", k)))


class VideoUploadTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="edged-upload-")
        self.addCleanup(shutil.rmtree, self.work, ignore_errors=True)
        self.s3 = S3rver(self.work, bucket="video").start()
        self.addCleanup(self.s3.stop)

    def daemon(self, retention="0s"):
        d = Daemon(workdir=self.work, env=camera_env(), config=CAMERA + f"""video_uploads:
  - name: copy
    camera: door
    endpoint: {self.s3.endpoint}
    bucket: video
    access_key_id: S3RVER
    secret_access_key: S3RVER
    prefix: site-a/
    retention: {retention}
""")
        self.addCleanup(d.cleanup)
        return d.start()

    def test_fragments_init_and_playlist_land_and_play(self):
        d = self.daemon()
        wait_for(lambda: upload(d)["uploaded_fragments"] >= 4, timeout=60,
                 what="four fragments uploaded")
        keys = [k for k, _ in self.s3.objects()]
        self.assertIn("site-a/door/init-1.mp4", keys)
        numbers = fragment_numbers(keys)
        self.assertGreaterEqual(len(numbers), 4)
        self.assertEqual(numbers, list(range(numbers[0], numbers[0] + len(numbers))))
        playlists = [k for k in keys if k.endswith("/index.m3u8")]
        self.assertTrue(playlists, keys)
        self.assertRegex(playlists[0], r"^site-a/door/\d{4}/\d{2}/\d{2}/\d{2}/index\.m3u8$")
        out = os.path.join(self.work, "down")
        self.s3.download(out)
        with open(os.path.join(out, playlists[0]), encoding="utf-8") as f:
            m3u8 = f.read()
        self.assertIn('#EXT-X-MAP:URI="../../../../init-1.mp4"', m3u8)
        listed = re.findall(r"^(\d{12}\.m4s)$", m3u8, re.M)
        self.assertGreaterEqual(len(listed), 3)
        # The playlist, its init segment and fragments, as downloaded, play:
        # ffprobe reads the HLS from the bucket's copy on disk. The hour's
        # playlist is an EVENT playlist still growing: the copy is ended
        # here so that ffprobe reads it once instead of waiting for more.
        with open(os.path.join(out, playlists[0]), "a", encoding="utf-8") as f:
            f.write("#EXT-X-ENDLIST\n")
        probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v",
                                "-show_entries", "stream=codec_name,width,height,nb_read_frames",
                                "-of", "csv=p=0", os.path.join(out, playlists[0])],
                               capture_output=True, text=True, timeout=60)
        self.assertEqual(probe.returncode, 0, probe.stderr)
        codec, width, height, frames = probe.stdout.strip().splitlines()[0].split(",")[:4]
        self.assertEqual((codec, width, height), ("h264", "320", "240"))
        self.assertGreaterEqual(int(frames), 20)
        st = upload(d)
        self.assertLessEqual(st["lag_fragments"], 2)
        metrics = d.request("GET", "/metrics")[2].decode()
        self.assertRegex(metrics, r'edged_video_upload_lag_fragments\{upload="copy"\} [0-2]\n')
        self.assertIn('edged_video_upload_lag_seconds{upload="copy"}', metrics)
        self.assertEqual(st["skipped_fragments"], 0)
        out = subprocess.run([EDGECTL, "--url", d.url, "uploads"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
        self.assertRegex(out, r"copy +door +http://127\.0\.0\.1:\d+/video/site-a/ +\d +\d+ +\d+s +\d+")

    def test_outage_loses_no_fragment(self):
        d = self.daemon()
        wait_for(lambda: upload(d)["uploaded_fragments"] >= 2, timeout=60, what="first uploads")
        self.s3.stop()
        time.sleep(5)
        st = upload(d)
        self.assertGreaterEqual(st["lag_fragments"], 3)
        self.assertGreaterEqual(st["lag_seconds"], 3)
        self.assertIn("last_error", st)
        # A restart meanwhile resumes from the same place.
        d.stop(signal.SIGKILL)
        d.start()
        self.s3.start()
        wait_for(lambda: upload(d)["lag_fragments"] <= 2 and "last_error" not in upload(d),
                 timeout=60, what="lag drained after the outage")
        numbers = fragment_numbers(k for k, _ in self.s3.objects())
        self.assertGreaterEqual(len(numbers), 7)
        self.assertEqual(numbers, list(range(numbers[0], numbers[0] + len(numbers))),
                         "a fragment is missing upstream")

    def test_the_uploaded_copy_has_its_own_retention(self):
        d = self.daemon(retention="4s")
        wait_for(lambda: upload(d)["deleted_objects"] >= 3, timeout=60,
                 what="old fragments deleted upstream")
        numbers = fragment_numbers(k for k, _ in self.s3.objects())
        self.assertTrue(numbers)
        self.assertGreater(numbers[0], 1)  # the first ones are gone there
        self.assertLessEqual(len(numbers), 8)
        # The hour's playlist is written again without what went. A fragment
        # goes up every second and the playlist with it, so what a playlist
        # lists is checked against the objects there just before and just
        # after it was read: a fragment deleted long before is in neither.
        def playlist_consistent():
            before = {k for k, _ in self.s3.objects()}
            texts = {}
            for k in sorted(k for k in before if k.endswith("index.m3u8")):
                r = self.s3.aws("cp", f"s3://{self.s3.bucket}/{k}", "-")
                if r.returncode != 0:
                    return False  # retention deleted it between the listing and the copy
                texts[k] = r.stdout
            there = before | {k for k, _ in self.s3.objects()}
            if not texts:
                return False
            for k, text in texts.items():
                listed = re.findall(r"^(\d{12}\.m4s)$", text, re.M)
                if not listed or any(os.path.dirname(k) + "/" + n not in there for n in listed):
                    return False
            return True
        wait_for(playlist_consistent, timeout=30, interval=1,
                 what="playlists list only fragments still there")
        # ... and still here: the camera keeps 24 hours.
        code, _, cam = d.get_json("/v1/cameras/door")
        self.assertEqual(code, 200)
        self.assertGreater(cam["recorded"]["fragments"], len(numbers))


if __name__ == "__main__":
    unittest.main(verbosity=2)
