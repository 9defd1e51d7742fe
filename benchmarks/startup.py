"""The start-up a user pays per job for the action's image.

Times what the runner does for a container action, from the step's start to
kubebuildx's first log line (`::group::Reading inputs`), in the proving ground's
Docker engine (`scripts/cluster up` first):

  cold      `docker build` of the unmodified Dockerfile with no layer cache
            (--no-cache; the base images are local, as after the runner's pull),
            then `docker run`: what `runs.image: Dockerfile` costs a fresh runner
  warm      the same build with every layer cached, then `docker run`
  prebuilt  `docker pull` of the image by digest from a loopback registry (removed
            from the engine first), then `docker run`: what a release's
            `runs.image: docker://...@sha256:...` costs. The stand-in python
            image stays in the engine (other builds use it), so its layer is not
            pulled again: the pull fetches the layers above it, whose size is
            printed; on a runner the base layer comes too (see benchmarks/README.md)

The step's inputs are a bad driver option, so kubebuildx stops right after
reading them and no cluster is involved. Builds use --network host (the engine
has no bridge; see hack/act/run.py). Prints each run and the medians, and the
image's size. Nothing is asserted.

    .venv/bin/python benchmarks/startup.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from loopback_registry import Registry, free_loopback_port, install  # noqa: E402

FIRST_LINE = "Reading inputs"  # `::group::Reading inputs` under a runner, `==> ...` in a terminal
# What the runner passes a container action (actions/runner ContainerActionHandler):
# the inputs as INPUT_* variables and runs.args as the command.
FROM_PYTHON = "python:3.11-slim-bookworm"  # the Dockerfile's base, a local stand-in here
RUN_ARGS = [
    "--network", "host",
    "-e", "INPUT_PLATFORMS=linux/amd64",
    "-e", "INPUT_DRIVER-OPTS=no-such-option=1",
    "-e", "GITHUB_ACTIONS=true",
]  # fmt: skip


def docker_info() -> tuple[list[str], dict[str, str]]:
    out = subprocess.run(
        [str(ROOT / "scripts" / "cluster"), "env", "--json"], capture_output=True, text=True, check=True
    ).stdout
    info = json.loads(out)
    if not info["running"]:
        sys.exit("the proving ground is down: run scripts/cluster up")
    env = {**os.environ, "DOCKER_HOST": info["docker"]["host"]}
    return [info["docker"]["cli"]], env


class Engine:
    def __init__(self) -> None:
        self.cli, self.env = docker_info()

    def run(self, *args: str, timeout: float = 900) -> str:
        proc = subprocess.run(
            [*self.cli, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise SystemExit(f"docker {' '.join(args)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        return proc.stdout

    def first_line(self, image: str) -> float:
        """Seconds from `docker run` to kubebuildx's first log line; waits for the exit."""
        start = time.monotonic()
        proc = subprocess.Popen(
            [*self.cli, "run", "--rm", *RUN_ARGS, image, "action"],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        seen = None
        for line in proc.stdout:
            if seen is None and FIRST_LINE in line:
                seen = time.monotonic() - start
        proc.wait(timeout=60)
        if seen is None:
            raise SystemExit(f"{image} printed no {FIRST_LINE!r}")
        return seen

    def size_mb(self, image: str) -> float:
        return int(self.run("image", "inspect", "--format", "{{.Size}}", image).strip()) / 1e6


def timed(fn: Callable[..., object], *args: str) -> float:
    start = time.monotonic()
    fn(*args)
    return time.monotonic() - start


def report(mode: str, i: int, row: tuple[float, float]) -> None:
    what = "pull " if mode == "prebuilt" else "build"
    print(f"{mode:8} run {i + 1}: {what} {row[0]:6.2f} s + to first line {row[1]:5.2f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--context", type=Path, default=ROOT, help="the folder holding the Dockerfile")
    args = parser.parse_args()
    engine = Engine()
    tag = f"kubebuildx-startup-{secrets.token_hex(3)}"
    results: dict[str, list[tuple[float, float]]] = {"cold": [], "warm": [], "prebuilt": []}
    install()
    print(f"load average at the start: {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="kubebuildx-startup-") as scratch:
        registry = Registry(Path(scratch) / "registry", f"127.0.0.1:{free_loopback_port()}").start()
        pushed = ""
        try:
            # Each cold build under its own tag, removed after its run, so that no layer of
            # one is left behind (dangling) or reused by the next.
            for i in range(args.runs):
                image = f"{tag}:cold-{i + 1}"
                build = ["build", "--network", "host", "-q", "--no-cache", "-t", image, str(args.context)]
                prepare = timed(engine.run, *build)
                results["cold"].append((prepare, engine.first_line(image)))
                engine.run("image", "rm", image)
                report("cold", i, results["cold"][-1])
            build = ["build", "--network", "host", "-q", "-t", f"{tag}:latest", str(args.context)]
            engine.run(*build)  # fills the layer cache (the last cold build's layers are gone)
            for i in range(args.runs):
                prepare = timed(engine.run, *build)
                results["warm"].append((prepare, engine.first_line(f"{tag}:latest")))
                report("warm", i, results["warm"][-1])
            size = engine.size_mb(f"{tag}:latest")
            remote = f"{registry.address}/{tag}"
            engine.run("tag", f"{tag}:latest", f"{remote}:bench")
            engine.run("push", f"{remote}:bench")
            digests = json.loads(
                engine.run("image", "inspect", "--format", "{{json .RepoDigests}}", remote + ":bench")
            )
            pushed = next(d for d in digests if d.startswith(remote + "@"))
            engine.run("image", "rm", f"{remote}:bench", f"{tag}:latest")
            base = engine.size_mb(FROM_PYTHON)
            for i in range(args.runs):
                subprocess.run(
                    [*engine.cli, "image", "rm", pushed], env=engine.env, capture_output=True, check=False
                )
                prepare = timed(engine.run, "pull", "-q", pushed)
                run = engine.first_line(pushed)
                results["prebuilt"].append((prepare, run))
                report("prebuilt", i, results["prebuilt"][-1])
        finally:
            for ref in (pushed, f"{tag}:latest", *(f"{tag}:cold-{i + 1}" for i in range(args.runs))):
                if ref:
                    subprocess.run(
                        [*engine.cli, "image", "rm", ref], env=engine.env, capture_output=True, check=False
                    )
            registry.stop()

    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    print(f"image size {size:.0f} MB (stand-in bases; see benchmarks/README.md)")
    print(f"prebuilt pulls {size - base:.0f} MB: the layers above the {base:.0f} MB {FROM_PYTHON} stand-in")
    print(f"{'':8} {'prepare':>8} {'to first line':>14} {'total':>7}   (medians of {args.runs}, seconds)")
    for mode, rows in results.items():
        prep = statistics.median(r[0] for r in rows)
        run = statistics.median(r[1] for r in rows)
        total = statistics.median(r[0] + r[1] for r in rows)
        print(f"{mode:8} {prep:8.2f} {run:14.2f} {total:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
