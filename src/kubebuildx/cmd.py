"""The only place that runs commands.

Argv lists only, never a shell. Each command is printed before it runs (with
masked values redacted); a failure raises with the tool's own last words.

Every child runs in its own process group, so that a cancel or a timeout ends
it and whatever it started (TERM, then KILL after ``GRACE_SECONDS``), and with
an environment scrubbed of the action's inputs and the runner's tokens, except
what ``needed_env`` finds that command needs.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from kubebuildx import cancel, runner
from kubebuildx.errors import KubebuildxError, ToolError

TAIL_LINES = 20
GRACE_SECONDS = 5.0  # between TERM and KILL: buildx cancels a build and exits well within it
POLL_SECONDS = 0.2  # how often a waiting command looks at the cancel flag

# A container action gets every input as INPUT_<NAME> (the kubeconfig and the password
# among them) and the runner's tokens; no tool we run needs them, bar the exceptions below.
SCRUBBED_PREFIXES = ("INPUT_",)
SCRUBBED = frozenset(
    {
        "ACTIONS_RUNTIME_TOKEN",
        "ACTIONS_RUNTIME_URL",
        "ACTIONS_RESULTS_URL",
        "ACTIONS_CACHE_URL",
        "ACTIONS_CACHE_SERVICE_V2",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
    }
)
# buildx's GitHub Actions cache exporter reads these (buildx util/buildflags/cache.go, addGithubToken).
GHA_CACHE_ENV = frozenset(
    {"ACTIONS_RUNTIME_TOKEN", "ACTIONS_RESULTS_URL", "ACTIONS_CACHE_URL", "ACTIONS_CACHE_SERVICE_V2"}
)


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def display(argv: Sequence[str]) -> str:
    """How a command is shown in the log: one line, quoted where needed, secrets redacted.
    A line break inside an argument (a tag, a build arg) is shown as an escape."""
    return runner.one_line(runner.redact(" ".join(shlex.quote(a) for a in argv)))


def last_words(text: str, lines: int = TAIL_LINES) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return runner.redact("\n".join(kept[-lines:]))


def _flag_values(argv: Sequence[str], flag: str) -> list[str]:
    """The values of ``flag`` in ``argv``, as ``--flag value`` or ``--flag=value``."""
    values = []
    for i, word in enumerate(argv):
        if word == flag and i + 1 < len(argv):
            values.append(argv[i + 1])
        elif word.startswith(flag + "="):
            values.append(word[len(flag) + 1 :])
    return values


def needed_env(argv: Sequence[str]) -> frozenset[str]:
    """The scrubbed variables this command needs, decided from its argv (the one place that knows):

    - ``--cache-from``/``--cache-to type=gha``: buildx fills in the cache's URL and token from
      the environment;
    - ``--secret id=...,env=NAME`` and ``--build-arg NAME`` (no value): buildx reads ``NAME``
      from its environment, and the user named it.
    """
    needed: set[str] = set()
    for value in [*_flag_values(argv, "--cache-from"), *_flag_values(argv, "--cache-to")]:
        if "type=gha" in (field.strip() for field in value.split(",")):
            needed |= GHA_CACHE_ENV
    for value in _flag_values(argv, "--secret"):
        for field in value.split(","):
            key, _, name = field.partition("=")
            if key.strip() == "env" and name.strip():
                needed.add(name.strip())
    needed.update(v for v in _flag_values(argv, "--build-arg") if "=" not in v)
    return frozenset(needed)


def is_scrubbed(name: str) -> bool:
    return name in SCRUBBED or name.upper().startswith(SCRUBBED_PREFIXES)


_withheld: dict[str, str] = {}


def withhold_from_environment() -> None:
    """Take the scrubbed variables out of our own ``os.environ`` (the action does, once it has
    read its inputs). Not every child goes through ``child_env``: the kubernetes client starts a
    kubeconfig's exec plugin with a copy of ``os.environ``. Our own code reads them from the
    env it is handed (taken before this); ``child_env`` gives a command back those it needs."""
    for name in list(os.environ):
        if is_scrubbed(name):
            _withheld[name] = os.environ.pop(name)


def child_env(
    argv: Sequence[str], extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment a child gets: ours without the scrubbed variables it does not need,
    plus ``extra``."""
    keep = needed_env(argv)
    if base is None:
        base = {**{k: v for k, v in _withheld.items() if k in keep}, **os.environ}
    env = {k: v for k, v in base.items() if k in keep or not is_scrubbed(k)}
    env.update(extra or {})
    return env


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap(pgid: int) -> None:
    """Collect exited members of the group that are our children. As a container's PID 1 we
    inherit orphaned grandchildren: unreaped, they would count as alive until KILL."""
    while True:
        try:
            pid, _ = os.waitpid(-pgid, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def stop(proc: subprocess.Popen[str], grace: float = GRACE_SECONDS) -> None:
    """End ``proc`` and everything in its process group: TERM, then KILL after ``grace``."""
    proc.poll()
    if not _group_alive(proc.pid):
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()
        _reap(proc.pid)
        if not _group_alive(proc.pid):
            return
        time.sleep(0.05)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    proc.wait()
    _reap(proc.pid)


def _communicate(
    proc: subprocess.Popen[str], input_text: str | None, timeout: float | None
) -> tuple[str, str]:
    """``communicate`` in short slices, so that a worker thread sees a cancel within
    ``POLL_SECONDS``. The main thread learns of it from the signal (a KeyboardInterrupt) and
    then cleans up, which must still run commands (``buildx rm``): the flag is not for it."""
    deadline = None if timeout is None else time.monotonic() + timeout
    worker = threading.current_thread() is not threading.main_thread()
    while True:
        if worker:
            cancel.check()
        wait = POLL_SECONDS if deadline is None else max(0.0, min(POLL_SECONDS, deadline - time.monotonic()))
        try:
            return proc.communicate(input_text, timeout=wait)
        except subprocess.TimeoutExpired:
            if deadline is not None and time.monotonic() >= deadline:
                raise


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

    ``env`` is added to the current environment, scrubbed (``child_env``). When ``check`` is set, a
    non-zero exit raises ``error`` naming ``what`` failed and quoting the
    command's last lines.
    """
    argv = [str(a) for a in argv]
    if not quiet:
        runner.info(f"$ {display(argv)}")
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            env=child_env(argv, env),
            cwd=cwd,
            stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise ToolError(
            f"{argv[0]} is not installed or not on PATH.",
            hint=f"install {argv[0]} (the action image ships it), or set PATH so that it is found",
        ) from exc
    try:
        stdout, stderr = _communicate(proc, input_text, timeout)
    except subprocess.TimeoutExpired as exc:
        raise error(f"{what or argv[0]} did not finish within {timeout or 0:.0f}s.") from exc
    finally:
        if proc.returncode is None:  # cancelled, timed out: not the child, nor what it started, stays
            stop(proc)
    result = Result(tuple(argv), proc.returncode, stdout, stderr, time.monotonic() - start)
    if check and proc.returncode != 0:
        words = last_words(stderr or stdout)
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
    argv = [str(a) for a in argv]
    runner.info(f"$ {display(argv)}")
    try:
        proc = subprocess.Popen(
            argv,
            env=child_env(argv, env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise ToolError(f"{argv[0]} is not installed or not on PATH.") from exc
    assert proc.stdout is not None and proc.stderr is not None
    err_stream = proc.stderr

    def pump_stderr() -> None:
        for line in err_stream:
            on_stderr(line.rstrip("\n"))

    reader = threading.Thread(target=pump_stderr, daemon=True)
    # The tool's text is printed with workflow commands off: a line of it cannot be an ::error::.
    # Its last words too: a cancelled tool is stopped, and its stderr read to the end, before
    # workflow commands are on again (buildx prints its "context canceled" as it exits).
    with runner.verbatim():
        reader.start()
        try:
            for line in proc.stdout:
                on_stdout(line.rstrip("\n"))
            reader.join()
            return proc.wait()
        except BaseException:
            if proc.poll() is None:  # interrupted or cancelled: neither the tool nor its children stay
                stop(proc)
            reader.join(timeout=GRACE_SECONDS)
            raise
