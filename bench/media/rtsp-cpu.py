#!/usr/bin/env python3
"""CPU and memory of recording one passthrough RTSP camera: edged (ingest,
fragment, encrypt, fdatasync, index) side by side with ffmpeg stream-copying
the same source to HLS (`ffmpeg -rtsp_transport tcp -i URL -c copy -f hls`),
both pulling from one local RTSP server (tests/rtsp-server.c) at the same time.

    python3 bench/media/rtsp-cpu.py [BUILD_DIR] [ROUNDS] [SECONDS]

For 720p30 (2 Mb/s) and 1080p30 (4 Mb/s) sources: per round, fresh processes,
a 5 s warm-up, then the CPU seconds (user + system, /proc/PID/stat) each
process spends over the window. Prints the median CPU (% of one core) per
process, the ratio edged / ffmpeg, and the peak RSS (VmHWM) of each.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from procstat import cpu_seconds, free_port, peak_rss, stop_all, wait_http  # noqa: E402

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
SECONDS = float(sys.argv[3]) if len(sys.argv) > 3 else 20
SIZES = [("720p30", 1280, 720, 30, 2000), ("1080p30", 1920, 1080, 30, 4000)]






def one_round(width, height, fps, kbps):
    work = tempfile.mkdtemp(prefix="edged-bench-media-")
    rtsp_port, http_port = free_port(), free_port()
    # A noise pattern, so that the stream runs at its full bitrate.
    server = subprocess.Popen([f"{BUILD}/tests/rtsp-server", str(rtsp_port), str(2 * fps),
                               str(width), str(height), str(fps), str(kbps)],
                              stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, RTSP_PATTERN="snow"))
    assert server.stdout.readline().strip() == "ready"
    url = f"rtsp://127.0.0.1:{rtsp_port}/cam"
    config = os.path.join(work, "edged.yaml")
    with open(config, "w") as f:
        f.write(f"data_dir: {work}/data\nlog:\n  level: warning\ngateway:\n"
                f"  listen: 127.0.0.1:{http_port}\n  access_log: false\n"
                f"cameras:\n  - name: cam\n    source: {url}\n")
    edged = subprocess.Popen([f"{BUILD}/edge/edged", "--config", config],
                             stderr=open(os.path.join(work, "edged.log"), "w"))
    os.makedirs(os.path.join(work, "hls"))
    ffmpeg = None
    try:
        wait_http(f"http://127.0.0.1:{http_port}/healthz")
        # One client at a time joins the RTSP server (two at once can trip an
        # assertion in gst-rtsp-server 1.22's shared media).
        deadline = time.time() + 20
        while json.loads(wait_http(f"http://127.0.0.1:{http_port}/v1/cameras/cam"))["codec"] is None:
            if time.time() > deadline:
                raise SystemExit("edged got no video from the RTSP server")
            time.sleep(0.2)
        ffmpeg = subprocess.Popen(["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport",
                                   "tcp", "-i", url, "-c", "copy", "-f", "hls", "-hls_time", "2",
                                   os.path.join(work, "hls", "out.m3u8")])
        time.sleep(5)
        status_url = f"http://127.0.0.1:{http_port}/v1/cameras/cam"
        bytes_before = json.loads(wait_http(status_url))["recorded"]["bytes"]
        start = {p.pid: cpu_seconds(p.pid) for p in (edged, ffmpeg)}
        t0 = time.monotonic()
        time.sleep(SECONDS)
        elapsed = time.monotonic() - t0
        used = {p.pid: (cpu_seconds(p.pid) - start[p.pid]) / elapsed for p in (edged, ffmpeg)}
        status = json.loads(wait_http(status_url))
        rate = (status["recorded"]["bytes"] - bytes_before) * 8 / elapsed / 1e6
        if status["state"] != "running" or status["recorded"]["fragments"] < SECONDS / 3:
            raise SystemExit(f"edged did not record: {status}")
        if not any(n.endswith(".ts") for n in os.listdir(os.path.join(work, "hls"))):
            raise SystemExit("ffmpeg wrote no segment")
        return (used[edged.pid], used[ffmpeg.pid], peak_rss(edged.pid), peak_rss(ffmpeg.pid),
                rate)
    finally:
        stop_all([p for p in (ffmpeg, edged, server) if p is not None])
        server.stdout.close()
        shutil.rmtree(work, ignore_errors=True)


def main():
    print(f"# {ROUNDS} rounds of {SECONDS:.0f} s each; CPU in % of one core, medians")
    print("| source | recorded | edged CPU | ffmpeg CPU | edged / ffmpeg | edged peak RSS | ffmpeg peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for name, width, height, fps, kbps in SIZES:
        rounds = [one_round(width, height, fps, kbps) for _ in range(ROUNDS)]
        e = statistics.median(r[0] for r in rounds)
        f = statistics.median(r[1] for r in rounds)
        rate = statistics.median(r[4] for r in rounds)
        print(f"| {name} | {rate:.1f} Mb/s | {e * 100:.2f}% | {f * 100:.2f}% | {e / f:.2f} | "
              f"{max(r[2] for r in rounds) / 2**20:.1f} MiB | {max(r[3] for r in rounds) / 2**20:.1f} MiB |",
              flush=True)


if __name__ == "__main__":
    main()
