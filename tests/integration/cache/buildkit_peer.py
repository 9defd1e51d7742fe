"""A BuildKit daemon of the test's own: rootful, on a private unix socket, its root in a temp folder.

Not the cluster's daemons (those are shared, on fixed sockets): every call of ``run_buildkitd``
starts a cold one, which is the point of a cache test. The binaries are those
``scripts/cluster install`` put in ``~/.cache/kubebuildx``; ``scripts/cluster env --json`` names
them whether the cluster runs or not.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Tools:
    bin_dir: Path  # buildkitd, buildctl, buildx
    base_image_context: str  # "busybox=oci-layout:///...:busybox"

    @property
    def buildkitd(self) -> Path:
        return self.bin_dir / "buildkitd"

    @property
    def buildctl(self) -> Path:
        return self.bin_dir / "buildctl"

    @property
    def buildx(self) -> Path:
        return self.bin_dir / "buildx"


def find_tools() -> tuple[Tools | None, str]:
    """The pinned binaries and the base image layout, or why they are not there."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "cluster"), "env", "--json"], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        return None, f"scripts/cluster env --json failed: {out.stderr.strip()[-300:]}"
    info = json.loads(out.stdout)
    tools = Tools(Path(info["bin"]), info["base_image"]["build_context_arg"])
    missing = [str(p) for p in (tools.buildkitd, tools.buildctl, tools.buildx) if not p.exists()]
    layout = Path(info["base_image"]["layout"]) / "index.json"
    if not layout.exists():
        missing.append(str(layout))
    if missing:
        return None, f"not installed: {', '.join(missing)} (scripts/cluster install, or up once)"
    if os.geteuid() != 0:
        return None, "a rootful buildkitd needs root"
    if shutil.which("runc") is None:
        return None, "the oci worker needs runc on PATH"
    return tools, ""


@dataclass(frozen=True)
class Daemon:
    address: str  # unix:///.../buildkitd.sock
    root: Path
    log: Path


def _config(folder: Path, socket: Path) -> str:
    return "\n".join(
        [
            f'root = "{folder / "root"}"',
            "[grpc]",
            f'  address = ["unix://{socket}"]',
            "[worker.oci]",
            "  enabled = true",
            '  snapshotter = "overlayfs"',
            '  networkMode = "host"  # RUN steps share the host network: no CNI, no private addresses',
            "  gc = false",
            "[worker.containerd]",
            "  enabled = false",
            "",
        ]
    )


def _ready(tools: Tools, address: str) -> bool:
    probe = subprocess.run(
        [str(tools.buildctl), f"--addr={address}", "debug", "workers"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return probe.returncode == 0


@contextlib.contextmanager
def run_buildkitd(tools: Tools, timeout: float = 60.0) -> Iterator[Daemon]:
    """A cold buildkitd; stopped, and its root removed, at the end. The folder is short and
    under /tmp: a unix socket's path may not exceed 107 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="kbx-bk-", dir="/tmp"))
    socket = folder / "buildkitd.sock"
    config = folder / "buildkitd.toml"
    config.write_text(_config(folder, socket))
    log = folder / "buildkitd.log"
    address = f"unix://{socket}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(tools.buildkitd), "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while not (socket.exists() and _ready(tools, address)):
            if proc.poll() is not None:
                raise RuntimeError(f"buildkitd exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"buildkitd was not ready within {timeout:.0f}s:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.2)
        yield Daemon(address, folder / "root", log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # overlayfs mounts under the root are gone with the daemon; what is left is plain files
        shutil.rmtree(folder, ignore_errors=True)
