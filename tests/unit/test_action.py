"""The container action's entrypoint reads inputs exactly as a runner passes them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kubebuildx import action, kubeconfig, runner
from kubebuildx.action_spec import INPUTS
from kubebuildx.errors import InputError
from kubebuildx.hostpaths import Mount, Mounts
from kubebuildx.inputs import parse_inputs
from kubebuildx.platforms import Platform

FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.fixture(autouse=True)
def _fresh_masks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.setattr(runner, "_masked", set())
    yield


def test_raw_inputs_reads_runner_names() -> None:
    # the runner upper-cases the name and keeps its hyphens: INPUT_BUILD-ARGS
    env = {
        "INPUT_BUILD-ARGS": "A=1\nB=2",
        "INPUT_PLATFORMS": "linux/amd64,linux/arm64",
        "INPUT_QEMU-FALLBACK": "true",
        "INPUT_KUBE-CONTEXT": "ci",
        "INPUT_CONTEXT": "./app",
        "INPUT_NO-SUCH-INPUT": "x",
        "INPUT_BUILD_ARGS": "ignored: not the runner's spelling",
        "input_tags": "ignored: lower case",
        "PATH": "/usr/bin",
    }
    assert action.raw_inputs(env) == {
        "build-args": "A=1\nB=2",
        "platforms": "linux/amd64,linux/arm64",
        "qemu-fallback": "true",
        "kube-context": "ci",
        "context": "./app",
    }


def test_every_input_has_its_variable() -> None:
    env = {"INPUT_" + spec.name.upper(): f"v-{spec.name}" for spec in INPUTS}
    assert action.raw_inputs(env) == {spec.name: f"v-{spec.name}" for spec in INPUTS}


def test_absent_inputs_keep_their_defaults() -> None:
    assert action.raw_inputs({}) == {}
    assert parse_inputs(action.raw_inputs({"INPUT_CLEANUP": "false"})).cleanup is False


def test_raw_inputs_parse() -> None:
    got = parse_inputs(
        action.raw_inputs({"INPUT_PLATFORMS": "linux/arm64", "INPUT_DRIVER-OPTS": "replicas=2"})
    )
    assert got.platforms == (Platform("linux", "arm64"),)
    assert got.driver_opts == (("replicas", "2"),)


def test_main_masks_the_kubeconfig_before_a_bad_input_fails(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"INPUT_KUBECONFIG": "FAKE-KUBECONFIG-kubebuildx-unit-test-0008\n", "INPUT_PUSH": "maybe"}
    with pytest.raises(InputError, match="'push'"):
        action.main(env)
    assert "FAKE-KUBECONFIG-kubebuildx-unit-test-0008" in runner._masked
    assert "FAKE-KUBECONFIG" not in capsys.readouterr().out


def test_post_with_nothing_saved(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("STATE_builder", "STATE_store", "STATE_workdir", "STATE_cleanup"):
        monkeypatch.delenv(name, raising=False)
    assert action.post({}) == 0
    assert "nothing to clean up" in capsys.readouterr().out


def test_from_job_uses_kubeconfig_and_docker_config_when_the_inputs_are_empty(tmp_path: Path) -> None:
    kube = tmp_path / "kube"
    kube.mkdir()
    (kube / "config").write_text((FIXTURES / "kubeconfig" / "token.yaml").read_text())
    docker = tmp_path / "docker"
    docker.mkdir()
    (docker / "config.json").write_text('{"auths": {"ghcr.io": {"auth": "FAKE-AUTH-unit-0012"}}}')
    env = {"KUBECONFIG": f"{kube}/missing:{kube}/config", "DOCKER_CONFIG": str(docker)}
    got = action.from_job(parse_inputs({}), env, Mounts())
    assert kubeconfig.parse(got.kubeconfig).server.startswith("https://")
    assert '"ghcr.io"' in got.docker_config


def test_from_job_never_overrides_an_input(tmp_path: Path) -> None:
    env = {"KUBECONFIG": "/nowhere/config", "DOCKER_CONFIG": "/nowhere"}
    given = parse_inputs({"kubeconfig": "apiVersion: v1", "username": "u", "password": "p"})
    assert action.from_job(given, env, Mounts()) == given
    merge = parse_inputs({"mode": "merge", "tags": "r/x:1", "platforms": "linux/amd64", "digests": "d"})
    assert action.from_job(merge, {"KUBECONFIG": "/nowhere/config"}, Mounts()).kubeconfig == ""


def test_from_job_refuses_a_host_path_the_container_does_not_have() -> None:
    mounts = Mounts((Mount("/home/runner/work/_temp", "/github/runner_temp"),))
    with pytest.raises(InputError, match=r"^\$DOCKER_CONFIG: '/home/runner/.docker' is outside"):
        action.from_job(parse_inputs({}), {"DOCKER_CONFIG": "/home/runner/.docker"}, mounts)
