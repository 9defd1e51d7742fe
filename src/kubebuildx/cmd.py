"""The only place that runs commands.

Argv lists only, never a shell. Each command is printed before it runs (with
masked values redacted); a failure raises with the tool's own last words.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from kubebuildx import runner
from kubebuildx.errors import KubebuildxError, ToolError

TAIL_LINES = 20


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def display(argv: Sequence[str]) -> str:
    """How a command is shown in the log: quoted where needed, secrets redacted."""
    import shlex

    return runner.redact(" ".join(shlex.quote(a) for a in argv))


def last_words(text: str, lines: int = TAIL_LINES) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return runner.redact("\n".join(kept[-lines:]))


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    input_text: str | None = None,
    check: bool = True,
    quiet: bool = False,
    timeout: float | None = None,
    error: type[KubebuildxError] = ToolError,
    what: str | None = None,
) -> Result:
    """Run ``argv`` and capture its output.

    ``env`` is added to the current environment. When ``check`` is set, a
    non-zero exit raises ``error`` naming ``what`` failed and quoting the
    command's last lines.
    """
    argv = [str(a) for a in argv]
    if not quiet:
        runner.info(f"$ {display(argv)}")
    full_env = {**os.environ, **env} if env else None
    start = time.monotonic()
    try:
        proc = subprocess.run(
            argv,
            env=full_env,
            cwd=cwd,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ToolError(
            f"{argv[0]} is not installed or not on PATH.",
            hint=f"install {argv[0]} (the action image ships it), or set PATH so that it is found",
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise error(f"{what or argv[0]} did not finish within {timeout:.0f}s.") from exc
    result = Result(tuple(argv), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
    if check and proc.returncode != 0:
        words = last_words(proc.stderr or proc.stdout)
        raise error(f"{what or display(argv)} failed (exit {proc.returncode}):\n{words}")
    return result


def stream(
    argv: Sequence[str],
    *,
    on_stdout: Callable[[str], None],
    on_stderr: Callable[[str], None],
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> int:
    """Run ``argv`` and hand each output line to a callback as it arrives.

    stderr is read on a thread so that neither pipe can fill and stall the
    tool. Returns the exit code.
    """
    import threading

    argv = [str(a) for a in argv]
    runner.info(f"$ {display(argv)}")
    full_env = {**os.environ, **env} if env else None
    try:
        proc = subprocess.Popen(
            argv,
            env=full_env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
    except FileNotFoundError as exc:
        raise ToolError(f"{argv[0]} is not installed or not on PATH.") from exc
    assert proc.stdout is not None and proc.stderr is not None
    err_stream = proc.stderr

    def pump_stderr() -> None:
        for line in err_stream:
            on_stderr(line.rstrip("\n"))

    reader = threading.Thread(target=pump_stderr, daemon=True)
    reader.start()
    try:
        for line in proc.stdout:
            on_stdout(line.rstrip("\n"))
        reader.join()
        return proc.wait()
    finally:
        if proc.poll() is None:  # interrupted or cancelled: do not leave the tool running
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
