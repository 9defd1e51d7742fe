"""Cold builds against rebuilds from each kind of cache, on the one-machine cluster.

The build (benchmarks/contexts/cache) is what users build: a C program compiled
with gcc -O2 (four translation units of template-heavy code), run as a test
step, and its binary and output exported with `--output type=local`. Its base,
gcc:12-bookworm, is the harness's stand-in made from Debian's packages
(`scripts/cluster bench-images`, made on first use and cached). Every build is
one `kubebuildx build` for linux/amd64 and linux/arm64 (the arm64 BuildKit runs
the RUN steps under qemu here), timed from outside, start to exit: booting the
builder, the build, exporting the files and removing the builder.

  cold      a fresh (ephemeral) builder, a SEED never used before
  warm      a builder kept (--cleanup false, a fixed name) built twice; the second
            build is timed
  registry  a fresh builder pushes --cache-to type=registry,mode=max to a loopback
            registry; a second fresh builder rebuilds with --cache-from: timed
  gha       the same with type=gha, against the GitHub cache service (v2) test
            server of tests/integration/cache/ when present; skipped otherwise

Each run of each scenario takes a new SEED (a build argument that the compile
step reads), so no cache from an earlier run can hit. The scenarios take turns
within each run, so that a change in the machine's load falls on all of them.
Prints each run, the medians, and each rebuild's speedup over the cold build.
Targets (issue 11): warm rebuild at least 5x faster than cold, registry at least 3x.

    .venv/bin/python benchmarks/cache.py [--runs 3]
    .venv/bin/python benchmarks/cache.py --quick     # one run, to check that it works
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from overhead import ROOT, build_command, cluster_env

CONTEXT = ROOT / "benchmarks" / "contexts" / "cache"
INTEGRATION = ROOT / "tests" / "integration"
GHA_SERVER = INTEGRATION / "cache" / "cache_twirp_server.py"
PLATFORMS = ("linux/amd64", "linux/arm64")
TARGETS = {"warm": 5.0, "registry": 3.0, "reg-legs": 3.0}
BUILD_TIMEOUT = 3600  # seconds; a cold build takes minutes, its arm64 leg under qemu


class Skipped(Exception):
    """A scenario that cannot run here; the message says why."""


@dataclass(frozen=True)
class Build:
    wall: float  # seconds, spawn to exit
    totals: dict[str, float]  # platform -> seconds, kubebuildx's TOTAL row
    cached: dict[str, int]  # platform -> steps it found in the cache
    steps: int


@dataclass
class Scenario:
    name: str
    runs: list[Build] = field(default_factory=list)
    skipped: str = ""

    def median(self) -> float:
        return statistics.median(b.wall for b in self.runs)

    def platform_median(self, platform: str) -> float:
        return statistics.median(b.totals.get(platform, 0.0) for b in self.runs)


def compiler_context() -> str:
    """The --build-contexts value for gcc:12-bookworm; makes the image on first use."""
    print("compiler image: scripts/cluster bench-images (minutes the first time, then cached)", flush=True)
    started = time.monotonic()
    proc = subprocess.run(
        [str(ROOT / "scripts" / "cluster"), "bench-images"], stdout=subprocess.PIPE, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit("scripts/cluster bench-images failed (its log is above)")
    print(f"compiler image ready in {time.monotonic() - started:.1f} s", flush=True)
    return proc.stdout.strip().splitlines()[-1]


def console_table(stdout: str) -> tuple[dict[str, float], dict[str, int], int]:
    """From kubebuildx's console table (STEP  linux/amd64  linux/arm64 ... TOTAL): the
    TOTAL row per platform, how many steps each platform found cached, and of how many."""
    lines = stdout.splitlines()
    start = max((i for i, line in enumerate(lines) if line.startswith("STEP ")), default=-1)
    if start < 0:
        return {}, 0, 0
    platforms = lines[start].split()[1:]
    totals: dict[str, float] = {}
    cached = dict.fromkeys(platforms, 0)
    steps = 0
    for line in lines[start + 1 :]:
        cells = line.split()
        if len(cells) <= len(platforms):
            break
        if cells[0] == "TOTAL":
            totals = {p: seconds(c) for p, c in zip(platforms, cells[1:], strict=True)}
            break
        steps += 1
        for platform, cell in zip(platforms, cells[-len(platforms) :], strict=True):
            cached[platform] += cell == "cached"
    return totals, cached, steps


def seconds(cell: str) -> float:
    m = re.fullmatch(r"(?:(\d+)m)?([\d.]+)s", cell)
    if not m:
        sys.exit(f"unexpected duration {cell!r}")
    return int(m[1] or 0) * 60 + float(m[2])


class Bench:
    def __init__(self, cenv: dict[str, str], work: Path, compiler: str, logs: Path | None = None) -> None:
        self.cenv, self.work, self.compiler, self.logs = cenv, work, compiler, logs
        self.count = 0

    def build(
        self,
        builder: str,
        seed: int,
        *extra: str,
        env: dict[str, str] | None = None,
        platforms: tuple[str, ...] = PLATFORMS,
    ) -> Build:
        argv, build_env = build_command(self.cenv, self.work, CONTEXT, builder)
        argv[argv.index("--build-contexts") + 1] = self.compiler  # gcc:12-bookworm, not busybox
        argv[argv.index("--platforms") + 1] = ",".join(platforms)
        out = self.work / "out" / builder
        argv += [
            "--build-args",
            f"SEED={seed}",
            "--outputs",
            f"type=local,dest={out},platform-split=true",
            *extra,
        ]
        started = time.monotonic()
        proc = subprocess.run(
            argv,
            env={**build_env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
        wall = time.monotonic() - started
        if self.logs:
            self.logs.mkdir(parents=True, exist_ok=True)
            self.count += 1
            (self.logs / f"{self.count:02}-{builder}.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            sys.exit(f"build on {builder} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        for platform in platforms:
            result = out / platform.replace("/", "_") / "result.txt"
            if f"seed {seed}," not in (result.read_text() if result.is_file() else ""):
                sys.exit(f"build on {builder}: {result} is missing or not from SEED={seed}")
        return Build(wall, *console_table(proc.stdout))

    def remove_builder(self, builder: str) -> None:
        """`kubebuildx cleanup`, which only warns when buildx rm fails: tried three times."""
        argv, env = build_command(self.cenv, self.work, CONTEXT, builder)
        for attempt in range(3):
            proc = subprocess.run(
                [argv[0], "cleanup", builder], env=env, capture_output=True, text=True, check=False
            )
            output = proc.stdout + proc.stderr
            if proc.returncode == 0 and "could not remove builder" not in output:
                return
            time.sleep(5 * (attempt + 1))
        print(
            f"warning: builder {builder} is left on the cluster; `kubebuildx cleanup` said:\n{output[-1000:]}"
        )

    # ---- the scenarios; each takes a fresh seed and returns the timed build

    def cold(self, seed: int) -> Build:
        return self.build(f"kbx-cache-cold-{seed:x}", seed)

    def warm(self, seed: int) -> Build:
        builder = f"kbx-cache-warm-{seed:x}"
        try:
            self.build(builder, seed, "--cleanup", "false")
            return self.build(builder, seed, "--cleanup", "false")
        finally:
            self.remove_builder(builder)

    def from_cache(self, seed: int, cache: str, env: dict[str, str] | None = None) -> Build:
        """A fresh builder exports the cache, a second fresh builder rebuilds from it."""
        self.build(f"kbx-cache-push-{seed:x}", seed, "--cache-to", f"{cache},mode=max", env=env)
        return self.build(f"kbx-cache-pull-{seed:x}", seed, "--cache-from", cache, env=env)

    def legs_from_cache(self, seed: int, cache: str) -> Build:
        """A matrix: one single-platform job per platform, side by side, all with the same
        cache entries (kubebuildx gives each leg a registry ref of its own); then a fresh
        builder per leg rebuilds. Wall: the slower leg, as a matrix waits for it."""

        def legs(stage: str, *extra: str) -> Build:
            with ThreadPoolExecutor(max_workers=len(PLATFORMS)) as pool:
                builds = list(
                    pool.map(
                        lambda p: self.build(
                            f"kbx-cache-{stage}-{p.rpartition('/')[2]}-{seed:x}", seed, *extra, platforms=(p,)
                        ),
                        PLATFORMS,
                    )
                )
            return Build(
                max(b.wall for b in builds),
                {k: v for b in builds for k, v in b.totals.items()},
                {k: v for b in builds for k, v in b.cached.items()},
                max(b.steps for b in builds),
            )

        legs("legpush", "--cache-to", f"{cache},mode=max")
        return legs("legpull", "--cache-from", cache)


def start_registry(stack: contextlib.ExitStack, scratch: Path) -> str:
    """A loopback registry of this run's own (the buildkitds speak plain HTTP to loopback)."""
    sys.path.insert(0, str(INTEGRATION))
    from loopback_registry import Registry, free_loopback_port, install

    install()
    registry = Registry(scratch / "registry", f"127.0.0.1:{free_loopback_port()}").start()
    stack.callback(registry.stop)
    return registry.address


def start_gha_cache(stack: contextlib.ExitStack) -> dict[str, str]:
    """The GitHub cache service (v2) test server, if tests/integration/cache/ has one;
    returns the variables buildx reads for type=gha.

    Expected of cache_twirp_server.py: `serve(...)`, a context manager like
    tests/integration/artifacts/artifact_twirp_server.serve, yielding an object whose
    `env()` gives ACTIONS_RESULTS_URL and ACTIONS_RUNTIME_TOKEN. If serve() takes an
    argument, it is the blob endpoint of an Azurite started here for it.
    """
    if not GHA_SERVER.is_file():
        raise Skipped(f"no {GHA_SERVER.relative_to(ROOT)} in this checkout (the cache test server)")
    sys.path[:0] = [str(GHA_SERVER.parent), str(INTEGRATION / "artifacts")]
    module = importlib.import_module(GHA_SERVER.stem)
    serve: Callable[..., contextlib.AbstractContextManager[object]] | None = getattr(module, "serve", None)
    if serve is None:
        raise Skipped(f"{GHA_SERVER.relative_to(ROOT)} has no serve(); see start_gha_cache in {__file__}")
    required = [
        p for p in inspect.signature(serve).parameters.values() if p.default is inspect.Parameter.empty
    ]
    if required:
        from artifact_peers import install_peers, run_azurite

        azurite = stack.enter_context(run_azurite(install_peers()))
        service = stack.enter_context(serve(azurite.endpoint))
    else:
        service = stack.enter_context(serve())
    # Only what a container action gets (no ACTIONS_CACHE_SERVICE_V2): choosing the v2
    # protocol is kubebuildx's job, as it is on a runner.
    return dict(service.env())  # type: ignore[attr-defined]


def report(name: str, run: int, build: Build) -> None:
    cells = ", ".join(
        f"{p} {build.totals.get(p, 0.0):5.1f} s {build.cached.get(p, 0)}/{build.steps} cached"
        for p in PLATFORMS
    )
    print(f"run {run + 1} {name:8} {build.wall:7.1f} s wall  ({cells})", flush=True)


def table(scenarios: list[Scenario], runs: int) -> str:
    """Walls per run and their median; per platform the median TOTAL and the fewest steps it
    found cached in any run (a rebuild that missed the cache on one platform shows there)."""
    cold = scenarios[0].median()
    head = "".join(f"{'run ' + str(i + 1):>8}" for i in range(runs))
    lines = [
        f"{'scenario':10}{head}{'median':>9}{'amd64':>8}{'arm64':>8}{'cached':>12}{'speedup':>9}  target",
    ]
    for s in scenarios:
        if s.skipped:
            lines.append(f"{s.name:10}skipped: {s.skipped}")
            continue
        cells = "".join(f"{b.wall:8.1f}" for b in s.runs)
        platforms = "".join(f"{s.platform_median(p):8.1f}" for p in PLATFORMS)
        fewest = " ".join(f"{min(b.cached.get(p, 0) for b in s.runs)}/{s.runs[0].steps}" for p in PLATFORMS)
        speedup = cold / s.median()
        target = TARGETS.get(s.name)
        verdict = f">= {target:.0f}x {'PASS' if speedup >= target else 'MISS'}" if target else ""
        lines.append(f"{s.name:10}{cells}{s.median():9.1f}{platforms}{fewest:>12}{speedup:8.1f}x  {verdict}")
    return "\n".join(lines)


@contextlib.contextmanager
def scratch_folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="kbx-cache-") as tmp:
        yield Path(tmp)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run of each scenario")
    parser.add_argument("--logs", type=Path, help="keep each build's output in this folder")
    parser.add_argument(
        "--only", nargs="+", choices=("cold", "warm", "registry", "gha", "reg-legs"), help="run only these"
    )
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    cenv = cluster_env()
    compiler = compiler_context()
    scenarios = [Scenario(name) for name in ("cold", "warm", "registry", "gha", "reg-legs")]
    cold, warm, registry, gha, legs = scenarios
    print(f"load average at the start: {os.getloadavg()[0]:.1f}", flush=True)
    with scratch_folder() as work, contextlib.ExitStack() as stack:
        bench = Bench(cenv, work, compiler, args.logs)
        address = start_registry(stack, work)
        try:
            gha_env = start_gha_cache(stack)
        except Skipped as why:
            gha.skipped = str(why)
            print(f"gha: skipped, {why}", flush=True)
        for i in range(runs):
            steps: list[tuple[Scenario, Callable[[int], Build]]] = [
                (cold, bench.cold),
                (warm, bench.warm),
                (registry, lambda s: bench.from_cache(s, f"type=registry,ref={address}/bench-cache:{s:x}")),
            ]
            if not gha.skipped:
                steps.append((gha, lambda s: bench.from_cache(s, f"type=gha,scope=bench-{s:x}", gha_env)))
            steps.append(
                (legs, lambda s: bench.legs_from_cache(s, f"type=registry,ref={address}/bench-legs:{s:x}"))
            )
            if args.only:
                steps = [(sc, m) for sc, m in steps if sc.name in args.only or sc is cold]
                for sc in scenarios:
                    if sc.name not in args.only and sc.name != "cold":
                        sc.skipped = sc.skipped or "not in --only"
            for scenario, measure in steps:
                build = measure(secrets.randbelow(2**31))
                scenario.runs.append(build)
                report(scenario.name, i, build)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    print(f"{' '.join(PLATFORMS)} in one kubebuildx build each; wall seconds, amd64/arm64 = median TOTAL")
    print(table(scenarios, runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
