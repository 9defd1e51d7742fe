"""Text that a kubeconfig, an API server or a registry chose, printed into the log: it never
starts a line of its own, so it cannot be a workflow command (``::error::``, ``::add-mask::``,
``::set-output``) that the runner would obey."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from kubebuildx import boot, kube, preflight, registry, runner
from kubebuildx.builder import plan
from kubebuildx.inputs import parse_inputs
from kubebuildx.platforms import Platform

ROOT = Path(__file__).parent.parent.parent
AMD64 = Platform("linux", "amd64")
# Every way to end a log line, and the annotation encoding's own (%0A), which is inert in a plain
# line and must stay so.
HOSTILE = [
    "\n::error::pwned",
    "\r\n::add-mask::pwned",
    "\r::set-output name=x::pwned",
    "%0A::error::pwned",
    "%0D%0A::error::pwned",
    "\u2028::error::pwned",
    "\x85::error::pwned",
    "\v::stop-commands::pwned",
]


def assert_inert(out: str) -> None:
    """The hostile text is shown, inside a line of ours, never at the start of one (where the
    runner, after leading blanks, reads ``::``)."""
    assert "pwned" in out
    for line in out.splitlines():  # str.splitlines: every separator a log viewer may break at
        assert not ("pwned" in line and line.lstrip().startswith("::")), out


@pytest.fixture(autouse=True)
def _on_github(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")


def connection(**fields: Any) -> Any:
    return SimpleNamespace(
        api=None, server="https://10.0.0.1:6443", namespace="buildkit", context="ci", **fields
    )


@pytest.mark.parametrize("bad", HOSTILE)
def test_preflight_prints_the_clusters_names_on_their_lines(
    bad: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    amd64 = {"kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux"}
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    nodes = {
        "items": [
            {"metadata": {"name": f"good{bad}", "labels": amd64}, "status": ready},
            {
                "metadata": {"name": f"tainted{bad}", "labels": amd64},
                "spec": {"taints": [{"key": f"k{bad}", "value": f"v{bad}", "effect": "NoSchedule"}]},
                "status": ready,
            },
        ]
    }

    def request(api: object, method: str, path: str, server: str, what: str, body: object = None) -> Any:
        if path == "/version":
            return 200, {"gitVersion": f"v1.31{bad}"}
        if path.endswith("selfsubjectaccessreviews"):
            return 201, {"status": {"allowed": True}}
        return 200, nodes if path == "/api/v1/nodes" else {}

    monkeypatch.setattr(preflight.kube, "request", request)
    preflight.check(connection(), parse_inputs({"platforms": "linux/amd64"}))
    out = capsys.readouterr().out
    assert_inert(out)
    assert len(out.splitlines()) == 1 + 2, "the cluster line, the table's header and its row"


@pytest.mark.parametrize("bad", HOSTILE)
def test_connect_prints_the_kubeconfigs_names_on_one_line(
    bad: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = yaml.safe_load((ROOT / "tests" / "fixtures" / "kubeconfig" / "token.yaml").read_text())
    context, cluster = f"ci{bad}", f"lab{bad}"
    doc["current-context"] = context
    doc["contexts"][0]["name"], doc["contexts"][0]["context"]["cluster"] = context, cluster
    doc["clusters"][0]["name"] = cluster
    doc["clusters"][0]["cluster"]["server"] = f"https://10.0.0.1:6443/{bad}"
    monkeypatch.setattr(kube, "api_client", lambda path, token_file=None: object())
    monkeypatch.setattr(runner, "_masked", set())
    kube.connect(parse_inputs({"kubeconfig": json.dumps(doc)}), {}, tmp_path)
    out = capsys.readouterr().out
    assert_inert(out)
    assert len([line for line in out.splitlines() if not line.startswith("::add-mask::")]) == 1


@pytest.mark.parametrize("bad", HOSTILE)
def test_login_prints_the_registries_and_their_answer_on_one_line(
    bad: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.login(None, {f"reg.example.com{bad}": {"auth": "eDp5"}}, tmp_path / "a", ())
    challenge = "Foo" + bad.replace(" ", "")  # the scheme ends at the first space
    monkeypatch.setattr(
        registry, "_requests_get", lambda url, auth: registry.Reply(401, {"WWW-Authenticate": challenge})
    )
    creds = registry.Credentials("reg.example.com", "user", "a-password-of-some-length")
    monkeypatch.setattr(runner, "_masked", set())
    registry.login(creds, {}, tmp_path / "b", ())
    out = capsys.readouterr().out
    assert_inert(out)
    assert len(out.splitlines()) == 2


@pytest.mark.parametrize("bad", HOSTILE)
def test_verify_prints_the_pods_and_nodes_on_one_line(
    bad: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = plan(parse_inputs({}), name="kbx-demo", namespace="buildkit", native=(AMD64,))
    monkeypatch.setattr(boot, "_probe", lambda connection, node: (f"pod{bad}", f"node{bad}", (AMD64,), ()))
    boot.verify(connection(), spec)
    out = capsys.readouterr().out
    assert_inert(out)
    assert len(out.splitlines()) == 1
