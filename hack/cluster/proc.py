"""The harness's one place that runs commands and keeps daemons.

Commands are argv lists, never a shell. A daemon is started in its own session
(so its children share its process group), its pid goes to <run>/<name>.pid,
and `down` ends the whole group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class HarnessError(Exception):
    """A step of the proving ground failed; the message says what and where to look."""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(
    argv: Sequence[str],
    *,
    quiet: bool = False,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
) -> str:
    """Run argv; return its stdout. On failure, raise with the tool's last words."""
    if not quiet:
        say("+ " + " ".join(argv))
    full_env = {**os.environ, **(env or {})}
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            result = subprocess.run(
                argv,
                cwd=cwd,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        if result.returncode != 0:
            tail = log.read_text(errors="replace").splitlines()[-30:]
            raise HarnessError(f"{argv[0]} failed (exit {result.returncode}); log {log}:\n" + "\n".join(tail))
        return ""
    result = subprocess.run(
        argv, cwd=cwd, env=full_env, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    if result.returncode != 0:
        raise HarnessError(
            f"{' '.join(argv)} failed (exit {result.returncode}):\n{result.stderr.strip()[-3000:]}"
        )
    return result.stdout


def wait_for(what: str, check: Callable[[], bool], timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001, S110 - not ready yet; the deadline decides
            pass
        time.sleep(0.2)
    where = f"; see {log}" if log else ""
    raise HarnessError(f"timed out after {timeout:.0f}s waiting for {what}{where}")


@dataclass(frozen=True)
class Daemon:
    name: str
    argv: tuple[str, ...]
    log: Path
    pidfile: Path
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None

    def pid(self) -> int | None:
        """The pid of this daemon if it is running (checked against /proc, not just the file)."""
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        if not cmdline or cmdline[0].decode(errors="replace") != self.argv[0]:
            return None  # a stale pidfile whose number now belongs to someone else
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return None
        return pid

    def start(self) -> bool:
        """Start unless running; True if it was started now."""
        if self.pid() is not None:
            return False
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(
                f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {' '.join(self.argv)}\n".encode()
            )
            out.flush()
            process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pidfile.write_text(f"{process.pid}\n")
        return True

    def stop(self, timeout: float = 15.0) -> bool:
        """End the daemon's whole process group; True if something was running."""
        pid = self.pid()
        self.pidfile.unlink(missing_ok=True)
        if pid is None:
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.1)
        if _group_alive(pid):
            say(f"{self.name} did not stop in {timeout:.0f}s; killing it")
            _signal_group(pid, signal.SIGKILL)
            time.sleep(0.5)
        return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def processes_under(directories: Sequence[Path]) -> list[tuple[int, str]]:
    """Processes whose executable lies in one of directories (a sweep for strays)."""
    found = []
    roots = [str(d.resolve()) + "/" for d in directories]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            exe = str((entry / "exe").readlink())
        except OSError:
            continue
        if any(exe.startswith(root) for root in roots):
            found.append((int(entry.name), exe))
    return found


def rss_mib(pid: int) -> float:
    """Resident memory of pid (VmRSS), in MiB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
