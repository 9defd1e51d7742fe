"""CLI flags map to the same raw input mapping as the action's INPUT_* variables."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kubebuildx import action, cli, runner
from kubebuildx.action_spec import INPUTS
from kubebuildx.errors import InputError, KubebuildxError
from kubebuildx.inputs import parse_inputs

FAKE_KUBECONFIG = """\
# fake, for unit tests
apiVersion: v1
kind: Config
current-context: c
contexts: [{name: c, context: {cluster: c, user: u}}]
clusters: [{name: c, cluster: {server: "https://10.0.0.1:6443"}}]
users: [{name: u, user: {token: FAKE-TOKEN-cli-kubebuildx-unit-test-0009}}]
"""


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(runner, "_masked", set())
    yield


def raw(*argv: str) -> dict[str, str]:
    return cli.raw_from_args(cli.build_parser().parse_args(list(argv)))


def test_list_flags_repeat_and_join_with_newlines() -> None:
    got = raw(
        "build",
        "--build-args",
        "A=1,2",
        "--build-args",
        "B=3",
        "--platforms",
        "linux/amd64",
        "--platforms",
        "linux/arm64",
        "--driver-opts",
        "replicas=2",
        "--driver-opts",
        "linux/arm64:requests.memory=8Gi",
        "--tags",
        "r/a:1,r/a:latest",
    )
    assert got["build-args"] == "A=1,2\nB=3"
    assert got["platforms"] == "linux/amd64\nlinux/arm64"
    assert got["driver-opts"] == "replicas=2\nlinux/arm64:requests.memory=8Gi"
    assert got["tags"] == "r/a:1,r/a:latest"
    inputs = parse_inputs(got)
    assert inputs.build_args == ("A=1,2", "B=3")
    assert inputs.tags == ("r/a:1", "r/a:latest")


@pytest.mark.parametrize(
    ("argv", "value"),
    [
        (["ctx", "--push"], "true"),
        (["--push=true", "ctx"], "true"),
        (["--push", "false", "ctx"], "false"),
        (["--push=false", "ctx"], "false"),
        (["ctx"], None),
    ],
)
def test_bool_flags(argv: list[str], value: str | None) -> None:
    got = raw("build", *argv)
    assert got.get("push") == value
    assert got["context"] == "ctx"


def test_bare_bool_flag_before_the_context() -> None:
    got = raw("build", "--push", "./app")
    assert (got.get("push"), got["context"]) == ("true", "./app")
    got = raw("build", "--cleanup", "false", "./app")
    assert (got.get("cleanup"), got["context"]) == ("false", "./app")
    assert raw("build", "./app", "--no-cache").get("no-cache") == "true"


def test_unset_flags_are_absent_and_the_context_is_positional() -> None:
    got = raw("build", "./app")
    assert got == {"kubeconfig": "", "context": "./app"}  # no kubeconfig anywhere: in-cluster
    assert raw("build")["context"] == "."


def test_same_mapping_as_the_action() -> None:
    """Every input given as a flag and as INPUT_* gives the same raw mapping."""
    argv = ["build", "ctx"]
    env = {"INPUT_CONTEXT": "ctx"}
    for spec in INPUTS:
        if spec.name in {
            "kubeconfig",
            "context",
            "docker-config",
            "token",
        }:  # files for the CLI, content for the action
            continue
        value = {"bool": "true", "int": "3"}.get(spec.kind, f"v-{spec.name}")
        argv += [f"--{spec.name}", value]
        env[f"INPUT_{spec.name.upper()}"] = value
    got = raw(*argv)
    assert got.pop("kubeconfig") == ""
    assert got == action.raw_inputs(env)


def test_kubeconfig_from_a_file_is_read_and_masked(tmp_path: Path) -> None:
    path = tmp_path / "kc.yaml"
    path.write_text(FAKE_KUBECONFIG)
    got = raw("preflight", "--kubeconfig", str(path))
    assert got["kubeconfig"] == FAKE_KUBECONFIG
    assert FAKE_KUBECONFIG.strip() in runner._masked


def test_docker_config_is_a_file_for_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"auths": {"ghcr.io": {"auth": "RkFLRTpGQUtF"}}}')
    assert raw("build", "--docker-config", str(path), "ctx")["docker-config"] == path.read_text()
    with pytest.raises(InputError, match="does not exist"):
        raw("build", "--docker-config", str(tmp_path / "nope.json"), "ctx")


def test_relative_certificate_paths_resolve_against_the_kubeconfig_folder(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    path = tmp_path / "kc.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://h:6443', certificate-authority: certs/ca.crt}}]\n"
        "users: [{name: u, user: {token: FAKE-TOKEN-0123456789}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    got = raw("preflight", "--kubeconfig", str(path))["kubeconfig"]
    assert f"certificate-authority: {tmp_path}/certs/ca.crt" in got


def test_kubeconfig_from_the_environment_then_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home" / ".kube"
    home.mkdir(parents=True)
    (home / "config").write_text(FAKE_KUBECONFIG.replace("current-context: c", "current-context: home"))
    assert "current-context: home" in raw("preflight")["kubeconfig"]
    other = tmp_path / "other.yaml"
    other.write_text(FAKE_KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing.yaml'}:{other}")
    assert raw("preflight")["kubeconfig"] == FAKE_KUBECONFIG


def test_missing_kubeconfig_file_is_an_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["preflight", "--kubeconfig", str(tmp_path / "nope.yaml")])
    assert code == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_main_exits_with_the_error_code_before_anything_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["build", "--push=maybe", "ctx"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: input 'push' must be true or false, got 'maybe'")


def test_instance_and_preflight_take_the_cluster_flags_only() -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["preflight", "--tags", "r/a:1"])
    got = raw("instance", "--builder", "kbx", "--platforms", "linux/arm64", "--cleanup", "false")
    assert got == {"builder": "kbx", "platforms": "linux/arm64", "cleanup": "false", "kubeconfig": ""}


# ---- hostile files and the last resort -----------------------------------------------------------


@pytest.mark.parametrize("flag", ["--kubeconfig", "--docker-config"])
def test_a_file_that_is_not_utf8_is_an_input_error(flag: str, tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"apiVersion: v1\nname: \xff\xfe\n")
    with pytest.raises(InputError, match=r"is not UTF-8 text \(byte 21\)"):
        raw("build", flag, str(path))


def test_an_unexpected_error_is_named_without_its_message_nor_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.delenv("KUBEBUILDX_DEBUG", raising=False)

    def broken(args: object) -> int:
        raise ValueError("FAKE-SECRET-in-an-exception-message")

    monkeypatch.setattr(cli, "_cmd_preflight", broken)
    assert cli.main(["preflight"]) == cli.INTERNAL_ERROR != 0
    printed = capsys.readouterr()
    shown = printed.out + printed.err + summary.read_text()
    assert "unexpected ValueError at cli.py:" in shown
    assert "FAKE-SECRET" not in shown and "Traceback" not in shown


def test_an_error_with_backticks_cannot_close_its_block_in_the_summary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An error quotes the cluster (a pod's event, a server's answer): a run of backticks in
    it must not end the code block and turn the rest into markdown."""
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))

    def failing(args: object) -> int:
        raise KubebuildxError("denied\n```\n![x](https://evil.example/t.png)")

    monkeypatch.setattr(cli, "_cmd_preflight", failing)
    assert cli.main(["preflight"]) == 1
    capsys.readouterr()
    lines = summary.read_text().splitlines()
    assert lines[:3] == ["### :x: kubebuildx failed", "", "````"]
    assert lines[3:6] == ["denied", "```", "![x](https://evil.example/t.png)"]
    assert lines[6] == "````"


def test_sigterm_sets_the_cancel_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubebuildx import cancel

    try:
        with pytest.raises(KeyboardInterrupt):
            cli._terminate(15, None)
        assert cancel.requested()
    finally:
        cancel.reset()


def test_a_token_given_where_its_file_belongs_is_never_printed() -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.FAKE-cli-token-kubebuildx-0010.c2ln"
    with pytest.raises(InputError) as exc:
        raw("build", "--token", token)
    assert token not in str(exc.value) and token not in exc.value.hint
    assert "not a file" in str(exc.value)
    assert token in runner._masked  # and redacted wherever kubebuildx prints
