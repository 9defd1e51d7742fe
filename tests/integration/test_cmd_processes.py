"""cmd against real processes (no cluster): a timeout or a cancel ends the child and
everything it started, TERM first, KILL for what ignores it; the child's environment
is scrubbed."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubebuildx import cancel, cmd
from kubebuildx.errors import ToolError


@pytest.fixture(autouse=True)
def _fresh_flag() -> Iterator[None]:
    cancel.reset()
    yield
    cancel.reset()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _gone(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _parent_of_a_sleeper(pidfile: Path, *, ignore_term: bool = False) -> list[str]:
    """A child that starts a grandchild (which sleeps, and may ignore TERM), writes its pid, sleeps."""
    ignore = "signal.signal(signal.SIGTERM, signal.SIG_IGN); " if ignore_term else ""
    grandchild = f"import signal, time; {ignore}time.sleep(300)"
    script = (
        f"import signal, subprocess, sys, time; {ignore}"
        f"p = subprocess.Popen([sys.executable, '-c', {grandchild!r}]); "
        f"open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(300)"
    )
    return [sys.executable, "-c", script]


def _wait_for(pidfile: Path) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if pidfile.is_file() and pidfile.read_text():
            return int(pidfile.read_text())
        time.sleep(0.05)
    raise AssertionError("the child did not start its grandchild")


def test_a_timeout_ends_the_child_and_the_grandchild(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild"
    started = time.monotonic()
    with pytest.raises(ToolError, match="did not finish within 2s"):
        cmd.run(_parent_of_a_sleeper(pidfile), timeout=2, quiet=True)
    assert time.monotonic() - started < 2 + cmd.GRACE_SECONDS
    assert _gone(_wait_for(pidfile))


def test_what_ignores_term_is_killed_after_the_grace(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild"
    started = time.monotonic()
    with pytest.raises(ToolError):
        cmd.run(_parent_of_a_sleeper(pidfile, ignore_term=True), timeout=1, quiet=True)
    assert time.monotonic() - started < 1 + cmd.GRACE_SECONDS + 3
    assert _gone(_wait_for(pidfile))


def test_a_cancel_ends_a_command_run_by_a_worker_thread(tmp_path: Path) -> None:
    """As merge's parallel imagetools inspect: the thread sees the flag, not the signal."""
    pidfile = tmp_path / "grandchild"
    raised: list[BaseException] = []

    def worker() -> None:
        try:
            cmd.run(_parent_of_a_sleeper(pidfile), timeout=120, quiet=True)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            raised.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    grandchild = _wait_for(pidfile)
    started = time.monotonic()
    cancel.request()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert time.monotonic() - started < 3
    assert isinstance(raised[0], cancel.Cancelled)
    assert _gone(grandchild)


def test_a_child_gets_no_input_nor_runtime_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INPUT_PASSWORD", "FAKE-PASSWORD-kubebuildx")
    monkeypatch.setenv("ACTIONS_RUNTIME_TOKEN", "FAKE-RUNTIME-TOKEN")
    out = cmd.run([sys.executable, "-c", "import os; print(sorted(os.environ))"], quiet=True).stdout
    assert "INPUT_PASSWORD" not in out and "ACTIONS_RUNTIME_TOKEN" not in out
    assert "PATH" in out
    assert os.environ["INPUT_PASSWORD"]  # ours is untouched
