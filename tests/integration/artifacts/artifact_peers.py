"""The real peers of the artifact upload, installed and started from here.

- Azurite (the Azure Blob emulator) and the official ``@actions/artifact``
  client, from npm, pinned with a lockfile (``npm/``), installed into a cache outside the checkout
  (``~/.cache/kubebuildx/npm/artifacts`` or ``$KUBEBUILDX_CACHE``), so a fresh
  clone on the same machine reuses them.
- Azurite runs the blob service only, on loopback, storing in a temp folder.

Used by the integration tests' fixtures and by ``benchmarks/artifacts.py``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
# azurite 3.35.0 (its engines allow node 20; 3.36+ want node 22) and @actions/artifact 6.2.1,
# with every transitive package pinned by the lockfile.
NPM_PINS = HERE / "npm"
OFFICIAL_CLIENT_SCRIPT = HERE / "official_client.mjs"

# Azurite's well-known development account (public, documented by Microsoft).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def cache_dir() -> Path:
    base = os.environ.get("KUBEBUILDX_CACHE") or str(Path.home() / ".cache" / "kubebuildx")
    return Path(base) / "npm" / "artifacts"


def install_peers() -> Path:
    """``npm ci`` the pinned peers (npm/package-lock.json) into the cache once;
    later calls only compare the lockfile with the one installed."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RuntimeError("the artifact integration tests need node and npm (apt-get install nodejs npm)")
    target = cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    lock = (NPM_PINS / "package-lock.json").read_bytes()
    wanted = hashlib.sha256(lock + (NPM_PINS / "package.json").read_bytes()).hexdigest()
    stamp = target / ".kubebuildx-pins"
    with (target / ".lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == wanted and (target / "node_modules").is_dir():
            return target
        shutil.copyfile(NPM_PINS / "package.json", target / "package.json")
        (target / "package-lock.json").write_bytes(lock)
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=target,
            check=True,
            timeout=600,
        )
        stamp.write_text(wanted)
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {timeout:.0f}s")


@dataclass(frozen=True)
class Azurite:
    port: int
    location: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"


@contextlib.contextmanager
def run_azurite(peers: Path) -> Iterator[Azurite]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="azurite-") as location:
        log = Path(location) / "azurite.log"
        argv = [
            "node",
            str(peers / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            location,
            "--skipApiVersionCheck",  # the Azure SDK in @actions/artifact is newer than Azurite
            "--silent",
            "--disableTelemetry",
        ]
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_port(port, proc=proc)
            yield Azurite(port, Path(location))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def official_client(
    peers: Path, env: dict[str, str], *args: str, timeout: float = 600
) -> tuple[dict[str, object], str]:
    """Run the official client; returns (its RESULT object, its whole output)."""
    full_env = {**os.environ, **env, "KUBEBUILDX_ARTIFACT_PEERS": str(peers)}
    proc = subprocess.run(
        ["node", str(OFFICIAL_CLIENT_SCRIPT), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"official client {args[0]} failed ({proc.returncode}):\n{output[-4000:]}")
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :]), output
    raise RuntimeError(f"official client printed no RESULT:\n{output[-4000:]}")
