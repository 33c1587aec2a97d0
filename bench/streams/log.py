#!/usr/bin/env python3
"""Runs build/bench/stream-log-bench for each configuration, interleaved,
RUNS times each, pinned to one core, and prints a Markdown table of medians.

    python3 bench/streams/log.py [BUILD_DIR] [RUNS]
"""
import json
import statistics
import subprocess
import sys

build = sys.argv[1] if len(sys.argv) > 1 else "build"
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
configs = [(1_000_000, 100, 1024), (1_000_000, 1024, 1024), (1_000_000, 100, 64), (1_000_000, 1024, 64)]
rows = {c: [] for c in configs}
for _ in range(runs):
    for c in configs:
        out = subprocess.run(["taskset", "-c", "0", f"{build}/bench/streams/stream-log-bench", *map(str, c)],
                             capture_output=True, text=True, check=True).stdout
        rows[c].append(json.loads(out))

print("| segment | record | records | append records/s | append MB/s | read records/s | read MB/s |")
print("|---|---|---|---|---|---|---|")
for c in configs:
    rs = rows[c]
    med = lambda k: statistics.median(r[k] for r in rs)  # noqa: E731
    print(f"| {c[2]} MiB | {c[1]} B | {c[0]:,} | {med('append_records_per_s'):,.0f} | "
          f"{med('append_MB_per_s'):,.0f} | {med('read_records_per_s'):,.0f} | {med('read_MB_per_s'):,.0f} |")
