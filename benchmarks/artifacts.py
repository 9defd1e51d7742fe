"""Artifact upload: kubebuildx against the official @actions/artifact client.

Both clients upload the same trees to the same loopback Azurite through the
same Twirp test server (tests/integration/artifacts), one process per upload,
measured from outside: wall-clock seconds of the whole process (start-up
included) and its peak RSS (``wait4``). Medians of ``--runs`` (default 3).

Trees (generated once per run, deterministic):
- mixed: 300 MB: large incompressible binaries, compressible text, a
  thousand mid-sized files
- small: 20,000 files of 0-9 KiB (~92 MB) in nested folders
- big: ~2 GB, ours only, to show peak memory does not grow with size

Usage: .venv/bin/python benchmarks/artifacts.py [--runs 3] [--quick] [--no-big] [--no-official]
Everything listens on 127.0.0.1; every run is bounded by a timeout.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration" / "artifacts"))

from artifact_peers import OFFICIAL_CLIENT_SCRIPT, install_peers, run_azurite  # noqa: E402
from artifact_twirp_server import RunningService, serve  # noqa: E402

RUN_TIMEOUT = 900


def noise(seed: str, size: int) -> bytes:
    return hashlib.shake_256(seed.encode()).digest(size)


def text(seed: str, size: int) -> bytes:
    """Log-like text: compressible about 4x, as build output often is."""
    words = noise(seed, 4096).hex()
    lines = []
    total = 0
    i = 0
    while total < size:
        line = f"{i:08d} INFO step {words[i % 4000 : i % 4000 + 24]} done in {i % 977} ms\n"
        lines.append(line)
        total += len(line)
        i += 1
    return "".join(lines).encode()[:size]


def make_mixed(root: Path, scale: float = 1.0) -> None:
    for i in range(5):
        path = root / "bin" / f"tool{i}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(noise(f"bin{i}", int(35_000_000 * scale)))
        path.chmod(0o755)
    for i in range(20):
        path = root / "logs" / f"build{i:02d}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text(f"log{i}", int(5_000_000 * scale)))
    for i in range(1000):
        path = root / "lib" / f"pkg{i % 25:02d}" / f"mod{i:04d}.so"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = noise(f"lib{i}", int(25_000 * scale)) if i % 2 else text(f"lib{i}", int(25_000 * scale))
        path.write_bytes(data)


def make_small(root: Path, count: int = 20_000) -> None:
    for i in range(count):
        path = root / f"d{i % 40:02d}" / f"e{i % 7}" / f"f{i:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        size = i * 7919 % 9216
        path.write_bytes(text(f"s{i}", size) if i % 3 else noise(f"s{i}", size))


def make_big(root: Path, total: int = 2_000_000_000) -> None:
    chunk = 100_000_000
    root.mkdir(parents=True, exist_ok=True)
    for i in range(total // chunk):
        path = root / f"layer{i:02d}.bin"
        with path.open("wb") as fh:
            for j in range(chunk // 10_000_000):
                seed = f"big{i}-{j}"
                fh.write(noise(seed, 10_000_000) if (i + j) % 2 else text(seed, 10_000_000))


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss: int
    digest: str


def hwm(pid: int) -> int:
    """Peak RSS of the program that ``pid`` runs now (VmHWM, in bytes); 0 once it is gone.

    Not ``wait4``'s ru_maxrss: that also counts the moments between fork and
    exec, when the child still maps all of this (much larger) process.
    """
    try:
        with open(f"/proc/{pid}/status") as status:  # noqa: PTH123 - read often, keep it cheap
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def measured(argv: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    start = time.perf_counter()
    peak = 0
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = start + RUN_TIMEOUT
        while proc.poll() is None:
            peak = max(peak, hwm(proc.pid))
            if time.perf_counter() > deadline:
                proc.kill()
                raise RuntimeError(f"{argv[:3]} did not finish within {RUN_TIMEOUT}s")
            time.sleep(0.005)
        seconds = time.perf_counter() - start
        out.seek(0)
        output = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} failed ({proc.returncode}):\n{output[-3000:]}")
    return seconds, peak, output


def upload(client: str, tree: Path, name: str, service: RunningService, peers: Path) -> Run:
    env = {
        **os.environ,
        **service.env(),
        "KUBEBUILDX_ARTIFACT_PEERS": str(peers),
        "GITHUB_WORKSPACE": str(tree),
    }
    if client == "kubebuildx":
        argv = [sys.executable, "-m", "kubebuildx", "upload-artifact", "--name", name, str(tree)]
    else:
        argv = ["node", str(OFFICIAL_CLIENT_SCRIPT), "upload", name, str(tree)]
    seconds, peak, _ = measured(argv, env)
    finalized = [a for a in service.service.artifacts.values() if a.name == name and a.finalized]
    if len(finalized) != 1:
        raise RuntimeError(f"{client} did not finalize {name}")
    return Run(seconds, peak, finalized[0].digest or "")


def report(label: str, client: str, size: int, runs: list[Run]) -> None:
    seconds = statistics.median(r.seconds for r in runs)
    peak = statistics.median(r.peak_rss for r in runs)
    digests = len({r.digest for r in runs})
    print(
        f"{label:<7} {client:<11} {seconds:7.2f} s {size / 1e6 / seconds:7.1f} MB/s "
        f"{peak / 2**20:7.1f} MiB   runs: {', '.join(f'{r.seconds:.2f}' for r in runs)}"
        f"   distinct digests: {digests}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes, to check the script")
    parser.add_argument("--no-big", action="store_true", help="skip the 2 GB tree")
    parser.add_argument("--no-official", action="store_true", help="measure kubebuildx only")
    parser.add_argument("--only", choices=["mixed", "small", "big"], action="append")
    args = parser.parse_args()

    peers = install_peers()
    scale = 0.1 if args.quick else 1.0
    trees = {
        "mixed": lambda root: make_mixed(root, scale),
        "small": lambda root: make_small(root, int(20_000 * scale)),
        "big": lambda root: make_big(root, int(2_000_000_000 * scale)),
    }
    wanted = args.only or ["mixed", "small"] + ([] if args.no_big else ["big"])
    clients = ["kubebuildx"] + ([] if args.no_official else ["official"])
    print(f"load average before: {os.getloadavg()}; cores: {os.cpu_count()}", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="artifact-bench-") as work,
        run_azurite(peers) as azurite,
        serve(azurite.endpoint) as service,
    ):
        for label in wanted:
            tree = Path(work) / label
            trees[label](tree)
            size = tree_bytes(tree)
            count = sum(1 for p in tree.rglob("*") if p.is_file())
            print(f"{label}: {count} files, {size / 1e6:.0f} MB", flush=True)
            for client in clients if label != "big" else ["kubebuildx"]:
                runs = []
                for n in range(1 if label == "big" else args.runs):
                    runs.append(upload(client, tree, f"{label}-{client}-{n}", service, peers))
                report(label, client, size, runs)
            for artifact in list(service.service.artifacts.values()):
                del service.service.artifacts[artifact.id]
            subprocess.run(["rm", "-rf", str(tree)], check=True)
    print(f"load average after: {os.getloadavg()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
