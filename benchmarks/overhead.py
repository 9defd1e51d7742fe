"""How long kubebuildx itself takes before buildx starts building.

Runs `kubebuildx build` several times against the one-machine cluster (start
it with `scripts/cluster up`) and prints, per run and as the median, the time
from spawning the process to the start of `buildx build`, minus the time spent
waiting for the builder pods (scheduling and readiness are the cluster's, not
ours). Target (issue 3): median under 1.5 s.

    .venv/bin/python benchmarks/overhead.py [--runs 7]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTEXT = ROOT / "tests" / "fixtures" / "contexts" / "multistage"


def cluster_env() -> dict[str, str]:
    out = subprocess.run(
        [str(ROOT / "scripts" / "cluster"), "env"], capture_output=True, text=True, check=True
    )
    # One shlex pass over the whole text: a quoted value may span lines
    # (KUBEBUILDX_ACTION_BASE_CONTEXTS is newline-separated).
    words = shlex.split(out.stdout)
    env = {}
    for keyword, assignment in itertools.pairwise(words):
        if keyword == "export" and "=" in assignment:
            key, _, value = assignment.partition("=")
            env[key] = value
    if "KUBEBUILDX_KUBECONFIG_ADMIN" not in env:
        sys.exit("the cluster is not up: run scripts/cluster up")
    return env


def build_command(
    cenv: dict[str, str], work: Path, context: Path, builder: str
) -> tuple[list[str], dict[str, str]]:
    """`kubebuildx build` of ``context`` for both platforms, as a user runs it, with its store in ``work``."""
    env = {
        **os.environ,
        "DOCKER_CONFIG": str(work / "docker"),
        "KUBEBUILDX_TEMP": str(work),
        "PATH": f"{cenv['KUBEBUILDX_BIN']}:{os.environ['PATH']}",
    }
    for key in ("GITHUB_ACTIONS", "BUILDX_CONFIG", "KUBECONFIG"):
        env.pop(key, None)
    argv = [
        str(ROOT / ".venv" / "bin" / "kubebuildx"), "build", str(context),
        "--kubeconfig", cenv["KUBEBUILDX_KUBECONFIG_ADMIN"], "--namespace", cenv["KUBEBUILDX_NAMESPACE"],
        "--builder", builder, "--platforms", "linux/amd64,linux/arm64",
        "--build-contexts", cenv["KUBEBUILDX_BASE_IMAGE_CONTEXT"],
    ]  # fmt: skip
    return argv, env


def one_run(cenv: dict[str, str], index: int, work: Path) -> dict[str, float]:
    trace = work / f"trace-{index}.json"
    argv, env = build_command(cenv, work, CONTEXT, f"kbx-bench-{index}")
    env["KUBEBUILDX_TRACE"] = str(trace)
    spawned = time.time()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"run {index} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    m = json.loads(trace.read_text())
    boot = m["boot-end"] - m["boot-start"]
    return {
        "overhead": m["build-start"] - spawned - boot,
        "startup+connect": m["connected"] - spawned,
        "preflight": m["preflight"] - m["connected"],
        "instance": m["instance"] - m["preflight"],
        "boot (excluded)": boot,
        "native check": m["verified"] - m["boot-end"],
        "to build start": m["build-start"] - m["verified"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    cenv = cluster_env()
    with tempfile.TemporaryDirectory(prefix="kbx-bench-") as tmp:
        results = [one_run(cenv, i, Path(tmp)) for i in range(args.runs)]
    keys = list(results[0])
    print(f"kubebuildx overhead before `buildx build` starts ({args.runs} runs, seconds)")
    print(f"{'':18}" + "".join(f"{k:>17}" for k in keys))
    for i, r in enumerate(results):
        print(f"run {i:<14}" + "".join(f"{r[k]:>17.3f}" for k in keys))
    print(f"{'median':18}" + "".join(f"{statistics.median(r[k] for r in results):>17.3f}" for k in keys))
    median = statistics.median(r["overhead"] for r in results)
    print(f"\nmedian overhead: {median:.3f} s (target < 1.5 s): {'PASS' if median < 1.5 else 'MISS'}")


if __name__ == "__main__":
    main()
