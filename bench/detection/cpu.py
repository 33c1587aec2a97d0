#!/usr/bin/env python3
"""CPU of the detection branch per camera at default settings (motion, 5
frames a second at 320 pixels wide), side by side with what a motion tool
built on ffmpeg runs per camera for the same frames: ffmpeg decoding the
stream and scaling it to 5 fps, 320 wide, grey
(`ffmpeg -rtsp_transport tcp -i URL -vf fps=5,scale=320:-2 -pix_fmt gray
-f rawvideo -`), which is before any motion analysis of its own.

    python3 bench/detection/cpu.py [BUILD_DIR] [ROUNDS] [SECONDS]

Three processes pull one local RTSP camera (tests/rtsp-server.c, H.264: a
moving ball, then noise) at once: edged recording it without detection, edged recording
it with `detect: motion`, and ffmpeg. The detection branch's cost is the
difference between the two edged; the ratio is that over ffmpeg's. Per
round: fresh processes, a 5 s warm-up, then the CPU seconds (user + system,
/proc/PID/stat) over the window. Prints medians, in % of one core.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from procstat import cpu_seconds, free_port, stop_all  # noqa: E402

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
SECONDS = float(sys.argv[3]) if len(sys.argv) > 3 else 20
# A moving ball on black (most of a fixed camera's picture stays still) and
# noise (every pixel changes: the decoder's worst case).
SOURCES = [("720p15 ball", "ball", 1280, 720, 15, 2000), ("1080p15 ball", "ball", 1920, 1080, 15, 4000),
           ("720p15 noise", "snow", 1280, 720, 15, 2000), ("1080p15 noise", "snow", 1920, 1080, 15, 4000)]




def get_json(url, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                return json.loads(r.read())
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def start_edged(work, name, url, detect):
    port = free_port()
    os.makedirs(os.path.join(work, name))
    config = os.path.join(work, name, "edged.yaml")
    with open(config, "w") as f:
        f.write(f"data_dir: {work}/{name}/data\nlog:\n  level: warning\ngateway:\n"
                f"  listen: 127.0.0.1:{port}\n  access_log: false\n"
                f"cameras:\n  - name: cam\n    source: {url}\n"
                + ("    detect: motion\n" if detect else ""))
    proc = subprocess.Popen([f"{BUILD}/edge/edged", "--config", config],
                            stderr=open(os.path.join(work, name, "edged.log"), "w"))
    status = f"http://127.0.0.1:{port}/v1/cameras/cam"
    # One client at a time joins the RTSP server (two at once can trip an
    # assertion in gst-rtsp-server 1.22's shared media).
    deadline = time.time() + 20
    while get_json(status)["codec"] is None:
        if time.time() > deadline:
            raise SystemExit(f"{name} got no video from the RTSP server")
        time.sleep(0.2)
    return proc, status


def one_round(pattern, width, height, fps, kbps):
    work = tempfile.mkdtemp(prefix="edged-bench-detect-")
    rtsp_port = free_port()
    server = subprocess.Popen([f"{BUILD}/tests/rtsp-server", str(rtsp_port), str(2 * fps),
                               str(width), str(height), str(fps), str(kbps)],
                              stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, RTSP_PATTERN=pattern))
    assert server.stdout.readline().strip() == "ready"
    url = f"rtsp://127.0.0.1:{rtsp_port}/cam"
    procs = [server]
    try:
        plain, _ = start_edged(work, "plain", url, False)
        procs.append(plain)
        detecting, status = start_edged(work, "detecting", url, True)
        procs.append(detecting)
        ffmpeg = subprocess.Popen(["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport",
                                   "tcp", "-i", url, "-vf", "fps=5,scale=320:-2", "-pix_fmt",
                                   "gray", "-f", "rawvideo", "-"],
                                  stdout=subprocess.PIPE)
        procs.append(ffmpeg)
        # ffmpeg's frames are counted as they come, to check it kept up.
        frame_bytes = 320 * (((320 * height // width) + 1) // 2 * 2)
        os.set_blocking(ffmpeg.stdout.fileno(), False)
        got = 0

        def drain():
            nonlocal got
            while True:
                try:
                    chunk = os.read(ffmpeg.stdout.fileno(), 1 << 20)
                except BlockingIOError:
                    return
                if not chunk:
                    return
                got += len(chunk)

        warm = time.monotonic() + 5
        while time.monotonic() < warm:
            drain()
            time.sleep(0.05)
        frames_before = get_json(status)["detection"]["framesExamined"]
        got = 0
        measured = (plain, detecting, ffmpeg)
        start = {p.pid: cpu_seconds(p.pid) for p in measured}
        t0 = time.monotonic()
        while time.monotonic() - t0 < SECONDS:
            drain()
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
        used = {p.pid: (cpu_seconds(p.pid) - start[p.pid]) / elapsed for p in measured}
        edged_fps = (get_json(status)["detection"]["framesExamined"] - frames_before) / elapsed
        ffmpeg_fps = got / frame_bytes / elapsed
        if edged_fps < 4 or ffmpeg_fps < 4:
            raise SystemExit(f"a detector fell behind: edged {edged_fps:.1f} fps, ffmpeg {ffmpeg_fps:.1f} fps")
        return (used[detecting.pid] - used[plain.pid], used[ffmpeg.pid], used[plain.pid],
                edged_fps, ffmpeg_fps)
    finally:
        stop_all(list(reversed(procs)))
        server.stdout.close()
        shutil.rmtree(work, ignore_errors=True)


def main():
    print(f"# {ROUNDS} rounds of {SECONDS:.0f} s each; CPU in % of one core, medians")
    print("| source | recording alone | detection branch | ffmpeg decode + scale | branch / ffmpeg | frames/s examined (edged, ffmpeg) |")
    print("|---|---|---|---|---|---|")
    for name, pattern, width, height, fps, kbps in SOURCES:
        rounds = [one_round(pattern, width, height, fps, kbps) for _ in range(ROUNDS)]
        d = statistics.median(r[0] for r in rounds)
        f = statistics.median(r[1] for r in rounds)
        p = statistics.median(r[2] for r in rounds)
        print(f"| {name} {kbps / 1000:g} Mb/s | {p * 100:.2f}% | {d * 100:.2f}% | {f * 100:.2f}% | "
              f"{d / f:.2f} | {statistics.median(r[3] for r in rounds):.1f}, "
              f"{statistics.median(r[4] for r in rounds):.1f} |", flush=True)


if __name__ == "__main__":
    main()
