"""Peak memory while a command runs: the machine's, the proving ground's daemons', and
the per-pod buildkitds' (podkit starts one per builder pod).

Samples /proc once a second; prints the peaks when the command ends, and its exit code
is the command's. Nothing is asserted.

    .venv/bin/python benchmarks/memory.py -- .venv/bin/pytest -q tests/integration
    .venv/bin/python benchmarks/memory.py --idle 20     # one fresh builder pod, idle
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack" / "cluster"))
from proc import rss_mib  # noqa: E402 - the harness's own reading, as `scripts/cluster status` shows it


@dataclass
class Peaks:
    used_mib: float = 0.0  # MemTotal - MemAvailable
    buildkitd_mib: float = 0.0  # sum of every buildkitd's RSS
    buildkitds: int = 0
    harness_mib: float = 0.0  # kube-*, etcd, kwok, podkit, dockerd, buildkitd


HARNESS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "etcd",
    "kwok",
    "dockerd",
    "buildkitd",
)


def sample(peaks: Peaks) -> None:
    info = {
        line.split(":")[0]: int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
    }
    peaks.used_mib = max(peaks.used_mib, (info["MemTotal"] - info["MemAvailable"]) / 1024)
    buildkitd, count, harness = 0.0, 0, 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = (entry / "exe").readlink().name
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        rss = rss_mib(int(entry.name))
        if exe == "buildkitd":
            buildkitd, count = buildkitd + rss, count + 1
        if exe in HARNESS or b"podkit.py" in cmdline:
            harness += rss
    peaks.buildkitd_mib = max(peaks.buildkitd_mib, buildkitd)
    peaks.buildkitds = max(peaks.buildkitds, count)
    peaks.harness_mib = max(peaks.harness_mib, harness)


def watch(argv: list[str]) -> int:
    peaks, done = Peaks(), threading.Event()

    def loop() -> None:
        while not done.is_set():
            sample(peaks)
            done.wait(1.0)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    started = time.monotonic()
    code = subprocess.run(argv, check=False).returncode
    done.set()
    thread.join()
    print(
        f"peaks over {time.monotonic() - started:.0f}s: machine {peaks.used_mib:.0f} MiB used; "
        f"proving ground {peaks.harness_mib:.0f} MiB RSS; buildkitds {peaks.buildkitd_mib:.0f} MiB RSS "
        f"({peaks.buildkitds} at most at once)",
        file=sys.stderr,
    )
    return code


def idle(seconds: float) -> int:
    """A fresh builder pod's daemon, left idle: its RSS after `seconds`."""
    before = set(_buildkitds())
    kubebuildx = [str(ROOT / ".venv" / "bin" / "kubebuildx")]
    info = json.loads(
        subprocess.run(
            [str(ROOT / "scripts" / "cluster"), "env", "--json"], capture_output=True, text=True, check=True
        ).stdout
    )
    name = f"kbx-bench-idle-{os.getpid()}"
    common = ["--kubeconfig", info["kubeconfig"]["admin"], "--namespace", info["namespace"]]
    subprocess.run(
        [*kubebuildx, "instance", "--builder", name, *common, "--platforms", "linux/arm64"],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PATH": f"{info['bin']}:{os.environ['PATH']}"}
    try:
        subprocess.run(["buildx", "inspect", "--bootstrap", name], check=True, capture_output=True, env=env)
        time.sleep(seconds)
        new = [p for p in _buildkitds() if p not in before]
        for pid in new:
            print(f"fresh buildkitd pid {pid}, idle {seconds:.0f}s: {rss_mib(int(pid)):.1f} MiB RSS")
    finally:
        subprocess.run(["buildx", "rm", "--force", name], check=False, capture_output=True, env=env)
    return 0


def _buildkitds() -> list[str]:
    return [e.name for e in Path("/proc").iterdir() if e.name.isdigit() and _is_buildkitd(e.name)]


def _is_buildkitd(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/exe").readlink().name == "buildkitd"
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--idle", type=float, help="measure one fresh builder pod's daemon after this many seconds"
    )
    parser.add_argument("command", nargs="*", help="the command to watch (after --)")
    args = parser.parse_args()
    if args.idle is not None:
        return idle(args.idle)
    if not args.command:
        parser.error("give a command after --, or --idle SECONDS")
    return watch(args.command)


if __name__ == "__main__":
    sys.exit(main())
