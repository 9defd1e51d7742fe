"""Nothing leaks: the action, given hostile input holding a secret, fails with our error and
leaves the secret (and its base64 form) in nothing it printed or wrote.

Scanned: stdout and stderr, the runner's GITHUB_OUTPUT, GITHUB_STATE, GITHUB_ENV and
GITHUB_STEP_SUMMARY files, and every file under the temp root; ``::add-mask::`` lines are
the one place a secret belongs. Each case stops before anything would start a process or
open a socket (the unit guard would refuse it).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from kubebuildx import cli, kubeconfig, runner

SECRET = "FAKE-SECRET-kubebuildx-scan-5e1f0c2a9b"
SERVER = "https://10.0.0.1:6443"


def _kubeconfig(user: object, context_user: object = "u") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "ci",
            "contexts": [{"name": "ci", "context": {"cluster": "lab", "user": context_user}}],
            "clusters": [{"name": "lab", "cluster": {"server": SERVER}}],
            "users": [{"name": "u", "user": user}],
        }
    )


def _deep(levels: int) -> str:
    return "users:\n- user:\n    token: " + SECRET + "\n    x: " + "[" * levels + "]" * levels + "\n"


def _raise_with_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> kubeconfig.Kubeconfig:
        raise ValueError(f"a library quoting its input: {SECRET}")

    monkeypatch.setattr(kubeconfig, "parse", broken)


CASES: dict[str, tuple[dict[str, str], int, Callable[[pytest.MonkeyPatch], None] | None]] = {
    # issue 10, 1: a token pasted into tokenFile, and a context whose user is a mapping holding one
    "token in tokenFile": ({"INPUT_KUBECONFIG": _kubeconfig({"tokenFile": SECRET})}, 3, None),
    "token in the context's user": (
        {"INPUT_KUBECONFIG": _kubeconfig({"token": "FAKE-other-token-0001"}, {"token": SECRET})},
        3,
        None,
    ),
    "token in an unknown field": ({"INPUT_KUBECONFIG": _kubeconfig({"future-token": SECRET})}, 3, None),
    "base64 kubeconfig": (
        {"INPUT_KUBECONFIG": base64.b64encode(_kubeconfig({"tokenFile": SECRET}).encode()).decode()},
        3,
        None,
    ),
    # 7: a deeply nested kubeconfig, a deeply nested docker-config
    "deep kubeconfig": ({"INPUT_KUBECONFIG": _deep(1100)}, 3, None),
    "deep docker-config": (
        {
            "INPUT_DOCKER-CONFIG": '{"auths": {"r": {"auth": "'
            + SECRET
            + '"}, "x": '
            + "[" * 5000
            + "]" * 5000
            + "}}"
        },
        2,
        None,
    ),
    # 7: a secret id of .. (the secret is the value)
    "secret id ..": ({"INPUT_SECRETS": f"..={SECRET}"}, 2, None),
    "colliding secret ids": ({"INPUT_SECRETS": f"a/b={SECRET}\na_b=FAKE-other-0002"}, 2, None),
    # 7: main's last resort, when a library's exception quotes what it was given
    "unexpected exception": (
        {"INPUT_KUBECONFIG": _kubeconfig({"token": SECRET})},
        cli.INTERNAL_ERROR,
        _raise_with_the_secret,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_nothing_printed_or_written_holds_the_secret(
    case: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    inputs, code, arrange = CASES[case]
    temp, files = tmp_path / "runner-temp", tmp_path / "file-commands"
    temp.mkdir()
    files.mkdir()
    runner_files = {}
    for name in ("GITHUB_OUTPUT", "GITHUB_STATE", "GITHUB_ENV", "GITHUB_STEP_SUMMARY"):
        runner_files[name] = files / name.lower()
        runner_files[name].touch()
        monkeypatch.setenv(name, str(runner_files[name]))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("RUNNER_TEMP", str(temp))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KUBEBUILDX_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runner, "_masked", set())
    for key, value in {"INPUT_PLATFORMS": "linux/amd64", **inputs}.items():
        monkeypatch.setenv(key, value)
    if arrange:
        arrange(monkeypatch)

    assert cli.main(["action"]) == code

    printed = capsys.readouterr()
    texts = {"stdout": printed.out, "stderr": printed.err}
    texts |= {name: path.read_text(errors="replace") for name, path in runner_files.items()}
    texts |= {str(p): p.read_bytes().decode(errors="replace") for p in temp.rglob("*") if p.is_file()}
    forms = {SECRET, base64.b64encode(SECRET.encode()).decode(), json.dumps(SECRET)[1:-1]}
    for where, text in texts.items():
        kept = "\n".join(line for line in text.splitlines() if not line.startswith("::add-mask::"))
        for form in forms:
            assert form not in kept, f"{case}: the secret is in {where}"
    assert "::error" in printed.out  # the failure was reported, as an annotation
    assert "Traceback" not in printed.out + printed.err
