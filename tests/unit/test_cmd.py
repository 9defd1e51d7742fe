"""cmd: what each child gets (a scrubbed environment, its own process group) and how a
command line is shown. No process is started: Popen is replaced by a recorder.
The real process-group kill is tested in tests/integration/test_cmd_processes.py."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from kubebuildx import cancel, cmd, runner

SECRET_ENV = {
    "INPUT_PASSWORD": "FAKE-PASSWORD-kubebuildx",
    "INPUT_KUBECONFIG": "apiVersion: v1 FAKE",
    "input_lowercase": "x",
    "ACTIONS_RUNTIME_TOKEN": "FAKE-RUNTIME-TOKEN",
    "ACTIONS_RESULTS_URL": "https://results.example/",
    "ACTIONS_CACHE_URL": "https://cache.example/",
    "ACTIONS_CACHE_SERVICE_V2": "true",
    "ACTIONS_RUNTIME_URL": "https://runtime.example/",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "FAKE-ID-TOKEN-REQUEST",
    "ACTIONS_ID_TOKEN_REQUEST_URL": "https://token.example/",
    "PATH": "/usr/bin",
    "HOME": "/github/home",
    "GITHUB_ACTIONS": "true",
    "NPM_TOKEN": "FAKE-npm",
}
GHA = {"ACTIONS_RUNTIME_TOKEN", "ACTIONS_RESULTS_URL", "ACTIONS_CACHE_URL", "ACTIONS_CACHE_SERVICE_V2"}
PLAIN = {"PATH", "HOME", "GITHUB_ACTIONS", "NPM_TOKEN"}


@pytest.mark.parametrize(
    ("argv", "kept"),
    [
        (["buildx", "build", "."], PLAIN),
        (["buildx", "rm", "--force", "kbx"], PLAIN),
        (["buildx", "build", "--cache-from", "type=registry,ref=x", "."], PLAIN),
        (["buildx", "build", "--cache-to", "type=gha,mode=max", "."], PLAIN | GHA),
        (["buildx", "build", "--cache-from=type=gha", "."], PLAIN | GHA),
        (["buildx", "build", "--secret", "id=pw,env=INPUT_PASSWORD", "."], PLAIN | {"INPUT_PASSWORD"}),
        (["buildx", "build", "--build-arg", "ACTIONS_RUNTIME_TOKEN", "."], PLAIN | {"ACTIONS_RUNTIME_TOKEN"}),
        (["buildx", "build", "--build-arg", "INPUT_PASSWORD=literal", "."], PLAIN),
        (["buildx", "build", "--tag", "type=gha", "."], PLAIN),  # only where buildx reads it
    ],
    ids=[
        "build",
        "rm",
        "registry cache",
        "gha cache-to",
        "gha cache-from=",
        "secret from an env the user named",
        "build-arg from the environment",
        "build-arg with a value",
        "type=gha elsewhere",
    ],
)
def test_children_get_a_scrubbed_environment(argv: list[str], kept: set[str]) -> None:
    assert set(cmd.child_env(argv, base=SECRET_ENV)) == kept


def test_extra_variables_are_added_after_scrubbing() -> None:
    env = cmd.child_env(["buildx"], {"DOCKER_CONFIG": "/x", "INPUT_X": "asked for"}, base=SECRET_ENV)
    assert env["DOCKER_CONFIG"] == "/x" and env["INPUT_X"] == "asked for"


class Recorder:
    """Stands in for subprocess.Popen: records how the child would be started."""

    calls: list[dict[str, Any]]

    def __init__(self, argv: list[str], **kwargs: Any) -> None:
        Recorder.calls.append({"argv": argv, **kwargs})
        self.pid = 99999
        self.returncode: int | None = None
        self.stdout = iter(["one\n", "::error::forged\n"])
        self.stderr = iter(["two\n"])

    def communicate(self, input: str | None = None, timeout: float | None = None) -> tuple[str, str]:
        self.returncode = 0
        return "out", ""

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self.returncode = 0
        return 0


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[Recorder]]:
    Recorder.calls = []
    monkeypatch.setattr(cmd.subprocess, "Popen", Recorder)
    for key, value in SECRET_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(runner, "_masked", set())
    yield Recorder


@pytest.mark.parametrize("how", ["run", "stream"])
def test_every_child_runs_in_its_own_session_with_the_scrubbed_environment(
    how: str, recorder: type[Recorder], capsys: pytest.CaptureFixture[str]
) -> None:
    if how == "run":
        assert cmd.run(["buildx", "version"], env={"BUILDX_CONFIG": "/s"}).stdout == "out"
    else:
        assert cmd.stream(["buildx", "build"], on_stdout=runner.info, on_stderr=runner.info) == 0
    (call,) = recorder.calls
    assert call["start_new_session"] is True
    assert not set(call["env"]) & {
        "INPUT_PASSWORD",
        "ACTIONS_RUNTIME_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    }
    assert call["env"]["PATH"] == "/usr/bin"
    if how == "stream":  # the tool's lines come between ::stop-commands::<token> and ::<token>::
        lines = capsys.readouterr().out.splitlines()
        token = lines[1].removeprefix("::stop-commands::")
        assert lines[0] == "$ buildx build" and len(token) == 32
        assert lines[-1] == f"::{token}::" and "::error::forged" in lines[2:-1]


def test_a_cancel_stops_waiting_and_ends_the_child(
    recorder: type[Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped: list[int] = []

    def never(self: Recorder, input: str | None = None, timeout: float | None = None) -> tuple[str, str]:
        cancel.request()
        raise subprocess.TimeoutExpired("buildx", timeout or 0)

    monkeypatch.setattr(Recorder, "communicate", never)
    monkeypatch.setattr(cmd, "stop", lambda proc, grace=0: stopped.append(proc.pid))
    raised: list[BaseException] = []

    def worker() -> None:  # as merge's parallel inspect: only a worker thread looks at the flag
        try:
            cmd.run(["buildx", "imagetools", "inspect", "x"], quiet=True)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            raised.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(timeout=10)
    assert isinstance(raised[0], cancel.Cancelled)
    assert stopped == [99999]


def test_after_a_cancel_the_main_thread_still_runs_its_cleanup_commands(recorder: type[Recorder]) -> None:
    """SIGTERM unwinds the main thread with a KeyboardInterrupt; cleanup then runs buildx rm."""
    cancel.request()
    assert cmd.run(["buildx", "rm", "--force", "kbx"], quiet=True).returncode == 0


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (
            ["buildx", "build", "--tag", "app:1\n::error::forged"],
            "$ buildx build --tag 'app:1\\n::error::forged'",
        ),
        (["buildx", "build", "--target", "a\u2028b"], "$ buildx build --target 'a\\u2028b'"),
    ],
)
def test_the_command_line_is_one_line(
    argv: list[str], shown: str, recorder: type[Recorder], capsys: pytest.CaptureFixture[str]
) -> None:
    cmd.run(argv)
    assert capsys.readouterr().out.splitlines() == [shown]


def test_the_action_withholds_inputs_and_tokens_from_its_own_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kubernetes client starts a kubeconfig's exec plugin with a copy of os.environ."""
    from kubebuildx.artifacts import service

    for key, value in SECRET_ENV.items():
        monkeypatch.setenv(key, value)
    env = dict(os.environ)  # what action.main hands the pipeline, taken before it withholds
    cmd.withhold_from_environment()
    assert not {k for k in os.environ if cmd.is_scrubbed(k)}
    assert os.environ["PATH"] == "/usr/bin"
    assert service.runtime_token(env) == "FAKE-RUNTIME-TOKEN"  # our own code reads the env it is given
    gha = cmd.child_env(["buildx", "build", "--cache-to", "type=gha", "--secret", "id=p,env=INPUT_PASSWORD"])
    assert (
        gha["ACTIONS_RUNTIME_TOKEN"] == "FAKE-RUNTIME-TOKEN"
        and gha["INPUT_PASSWORD"] == SECRET_ENV["INPUT_PASSWORD"]
    )
    assert "ACTIONS_RUNTIME_TOKEN" not in cmd.child_env(["buildx", "rm", "x"])


def test_a_cancelled_tools_last_words_stay_inside_stop_commands(
    recorder: type[Recorder], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by the cluster cancel test: buildx prints its "context canceled" as it is
    stopped, and those lines came after workflow commands were on again."""
    stopped = threading.Event()

    def cancelled_stdout() -> Iterator[str]:
        yield "#7 [linux/amd64 1/2] RUN sleep 300\n"
        raise KeyboardInterrupt  # the runner's SIGTERM, while we read the build's output

    def last_words() -> Iterator[str]:
        stopped.wait(5)
        yield "::error::ERROR: failed to build: context canceled\n"

    def stop(proc: Recorder, grace: float = 0) -> None:
        proc.returncode = -15
        stopped.set()

    monkeypatch.setattr(Recorder, "poll", lambda self: self.returncode)
    monkeypatch.setattr(cmd, "stop", stop)
    original = Recorder.__init__

    def init(self: Recorder, argv: list[str], **kwargs: Any) -> None:
        original(self, argv, **kwargs)
        self.stdout = cancelled_stdout()
        self.stderr = last_words()

    monkeypatch.setattr(Recorder, "__init__", init)
    with pytest.raises(KeyboardInterrupt):
        cmd.stream(["buildx", "build"], on_stdout=runner.info, on_stderr=runner.info)
    lines = capsys.readouterr().out.splitlines()
    token = lines[1].removeprefix("::stop-commands::")
    assert lines[-1] == f"::{token}::", lines
    assert lines.index("::error::ERROR: failed to build: context canceled") < len(lines) - 1
