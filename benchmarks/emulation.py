"""Native vs emulated: the same CPU-bound RUN step on each platform's BuildKit.

On the one-machine cluster the amd64 BuildKit runs natively and the arm64 one
runs its steps under QEMU user-mode emulation (this machine has no arm64 CPU),
so the ratio of the two step times is what emulation costs, the cost that
kubebuildx avoids on a cluster with real arm64 nodes. Uses `kubebuildx build`
with --no-cache and reads the per-platform step timings it reports.

    .venv/bin/python benchmarks/emulation.py [--runs 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from overhead import ROOT, build_command, cluster_env

CONTEXT = ROOT / "benchmarks" / "contexts" / "cpu"


def one_run(cenv: dict[str, str], work: Path, index: int) -> dict[str, float]:
    argv, env = build_command(cenv, work, CONTEXT, f"kbx-emul-{index}")
    argv.append("--no-cache")
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"run {index} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    # the console table after the log: STEP  linux/amd64  linux/arm64
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("STEP "))
    for line in lines[header + 1 :]:
        cells = line.split()
        if "RUN dd" in line and len(cells) >= 2:
            amd64, arm64 = cells[-2], cells[-1]
            return {"linux/amd64": seconds(amd64), "linux/arm64": seconds(arm64)}
    sys.exit("no timing row for the RUN step in kubebuildx's table")


def seconds(cell: str) -> float:
    m = re.fullmatch(r"(?:(\d+)m)?([\d.]+)s", cell)
    if not m:
        sys.exit(f"unexpected duration {cell!r}")
    return int(m[1] or 0) * 60 + float(m[2])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cenv = cluster_env()
    with tempfile.TemporaryDirectory(prefix="kbx-emul-") as tmp:
        results = [one_run(cenv, Path(tmp), i) for i in range(args.runs)]
    print(f"the same CPU-bound RUN step (sha256 of 256 MiB), {args.runs} runs, seconds")
    print(f"{'':10}{'amd64 (native)':>16}{'arm64 (QEMU)':>16}{'ratio':>8}")
    for i, r in enumerate(results):
        ratio = r["linux/arm64"] / r["linux/amd64"]
        print(f"run {i:<6}{r['linux/amd64']:>16.1f}{r['linux/arm64']:>16.1f}{ratio:>8.1f}")
    native = statistics.median(r["linux/amd64"] for r in results)
    emulated = statistics.median(r["linux/arm64"] for r in results)
    print(f"{'median':10}{native:>16.1f}{emulated:>16.1f}{emulated / native:>8.1f}")


if __name__ == "__main__":
    main()
