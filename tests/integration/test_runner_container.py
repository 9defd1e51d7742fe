"""The action's image, run as GitHub's runner runs a container action (runner_harness.py),
against the one-machine cluster: the files a later step finds, who owns them, the job's
KUBECONFIG and DOCKER_CONFIG, host paths in inputs, and the post step's cleanup."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import loopback_registry
import pytest
import yaml
from cluster_helpers import ROOT, cluster_env, deployments, secrets_of
from loopback_registry import Registry, free_loopback_port
from runner_harness import (
    RUNNER_GID,
    RUNNER_UID,
    Runner,
    Step,
    build_image,
    chown_tree,
    copy_into,
    lay_out,
)

pytestmark = pytest.mark.cluster
PLATFORMS = "linux/amd64,linux/arm64"
ARCH = {"linux_amd64": "x86_64", "linux_arm64": "aarch64"}


@pytest.fixture(scope="module")
def cenv() -> dict[str, str]:
    return cluster_env()


@pytest.fixture(scope="module")
def docker_env() -> dict[str, str]:
    """The Docker engine of the proving ground, for the docker CLI the runner would run."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "cluster"), "env", "--json"], capture_output=True, text=True, check=True
    )
    docker = json.loads(out.stdout).get("docker") or {}
    if not docker.get("host"):
        pytest.fail("scripts/cluster env --json names no Docker engine: run scripts/cluster up")
    return {"PATH": os.environ["PATH"], "DOCKER_HOST": docker["host"]}


@pytest.fixture(scope="module")
def image(cenv: dict[str, str], docker_env: dict[str, str]) -> str:
    seconds = build_image(cenv["KUBEBUILDX_DOCKER"], docker_env)
    print(f"action image built from the Dockerfile in {seconds:.1f}s")
    return "kubebuildx-action:runner-test"


@pytest.fixture
def gh(tmp_path: Path, cenv: dict[str, str], docker_env: dict[str, str], image: str) -> Runner:
    """A fresh runner: its _work folders owned by uid 1001, the repository checked out."""
    layout = lay_out(tmp_path)
    copy_into(ROOT / "examples" / "hello", layout.workspace / "examples" / "hello")
    # the base image as a build context under the workspace: a host path inside a list input
    copy_into(Path(cenv["KUBEBUILDX_BASE_IMAGE_LAYOUT"]), layout.workspace / ".layouts" / "busybox")
    socket = docker_env["DOCKER_HOST"].removeprefix("unix://")
    return Runner(layout, image, cenv["KUBEBUILDX_DOCKER"], docker_env, socket)


def builder_name() -> str:
    return f"rt-{uuid.uuid4().hex[:8]}"


def hello(gh: Runner, cenv: dict[str, str], builder: str, platforms: str = PLATFORMS) -> dict[str, str]:
    ws = gh.layout.workspace
    return {
        "namespace": cenv["KUBEBUILDX_NAMESPACE"],
        "builder": builder,
        "platforms": platforms,
        "context": "examples/hello",
        # what a workflow writes: ${{ github.workspace }}/... (a host path) inside a list input
        "build-contexts": f"busybox=oci-layout://{ws}/.layouts/busybox:busybox",
    }


def shown(*steps: Step) -> str:
    """What the runner would show: `::add-mask::` lines are consumed, never printed."""
    lines = [line for s in steps for line in s.text.splitlines() if not line.startswith("::add-mask::")]
    return "\n".join(lines)


def host_path(gh: Runner, container_path: str) -> Path:
    for host, container in (
        (gh.layout.temp, "/github/runner_temp"),
        (gh.layout.workspace, "/github/workspace"),
    ):
        if container_path.startswith(container + "/"):
            return host / container_path[len(container) + 1 :]
    raise AssertionError(f"{container_path} is under no mount")


def kept_files(gh: Runner, *, but: tuple[Path, ...] = ()) -> str:
    """Every file the job left on the runner, as text."""
    found = [p for p in gh.layout.work.rglob("*") if p.is_file() and not p.is_symlink() and p not in but]
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in found)


def cleaned_up(gh: Runner, cenv: dict[str, str], main: Step, with_: dict[str, str], builder: str) -> Step:
    """The main step removes the builder and deletes the run's folder (kubeconfig, secrets)
    as it ends, failed or not; the post step then finds nothing left and still succeeds."""
    workdir = host_path(gh, main.state["workdir"])
    assert not workdir.exists(), "the main step deletes the run's folder: kubeconfig and secrets"
    assert deployments(cenv, builder) == [], "the main step removes the builder's Deployments"
    post = gh.run(with_, post_of=main, timeout=300)
    assert post.proc.returncode == 0, post.text[-3000:]
    return post


READ_EVERY_FILE = """
import json, os, sys
root = sys.argv[1]
found = {}
for top, dirs, files in os.walk(root):
    for name in files:
        path = os.path.join(top, name)
        with open(path, "rb") as fh:
            found[os.path.relpath(path, root)] = fh.read().decode("utf-8", "replace").strip()
print(json.dumps({"uid": os.getuid(), "files": found}))
"""


def test_two_platforms_and_a_later_uid_1001_step_reads_every_file_of_output_dir(
    gh: Runner, cenv: dict[str, str]
) -> None:
    builder = builder_name()
    kubeconfig = Path(cenv["KUBEBUILDX_KUBECONFIG_LIMITED"]).read_text()
    with_ = {**hello(gh, cenv, builder), "kubeconfig": base64.b64encode(kubeconfig.encode()).decode()}
    main = gh.run(with_)
    assert main.proc.returncode == 0, main.text[-4000:]
    assert main.argv[main.argv.index("--workdir") + 1] == "/github/workspace"
    assert main.outputs["platforms"] == PLATFORMS
    assert {n["kubernetes-node"] for n in json.loads(main.outputs["nodes"])} == {
        cenv["KUBEBUILDX_NODE_AMD64"],
        cenv["KUBEBUILDX_NODE_ARM64"],
    }
    # output-dir names the host's folder: a later `run:` step uses it as it is
    out = Path(main.outputs["output-dir"])
    assert out.is_relative_to(gh.layout.temp), out
    assert f"`{out}`" in main.summary and f"files: {out}/" in main.text, "the summary and the log, too"
    later = gh.later_step(READ_EVERY_FILE, str(out))
    assert later.returncode == 0, later.stderr[-2000:]
    seen = json.loads(later.stdout)
    assert seen["uid"] == RUNNER_UID
    on_host = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert set(seen["files"]) == on_host and on_host, (sorted(on_host), seen)
    for platform, machine in ARCH.items():
        assert seen["files"][f"{platform}/arch"] == machine
    for path in [out, *out.rglob("*")]:
        assert (path.stat().st_uid, path.stat().st_gid) == (RUNNER_UID, RUNNER_GID), path
    # ...while the kubeconfig is gone before any later step runs
    post = cleaned_up(gh, cenv, main, with_, builder)
    everything = shown(main, post) + kept_files(gh)
    for secret in [*secrets_of(Path(cenv["KUBEBUILDX_KUBECONFIG_LIMITED"])), with_["kubeconfig"]]:
        assert secret not in everything


def test_kubeconfig_and_host_paths_in_list_inputs_from_earlier_steps(
    gh: Runner, cenv: dict[str, str]
) -> None:
    """KUBECONFIG as azure/k8s-set-context exports it (a file under runner.temp), here a list
    whose second entry the runner does not translate; host paths inside list inputs."""
    lay, builder = gh.layout, builder_name()
    kube = lay.temp / "kube"
    kube.mkdir()
    prefs = {"apiVersion": "v1", "kind": "Config", "preferences": {}}
    (kube / "prefs.yaml").write_text(yaml.safe_dump(prefs))
    (kube / "config").write_text(Path(cenv["KUBEBUILDX_KUBECONFIG_LIMITED"]).read_text())
    (lay.temp / "token.txt").write_text("not-a-real-secret\n")
    chown_tree(kube)
    with_ = {
        **hello(gh, cenv, builder, "linux/arm64"),
        "secret-files": f"token={lay.temp}/token.txt",
        "outputs": f"type=local,dest={lay.temp}/out\ntype=local,dest={lay.workspace}/dist",
    }
    env = {"KUBECONFIG": f"{kube}/prefs.yaml:{kube}/config"}
    main = gh.run(with_, env)
    assert main.proc.returncode == 0, main.text[-4000:]
    # the runner translated the value's start only; kubebuildx did the rest
    assert main.container_env["KUBECONFIG"] == f"/github/runner_temp/kube/prefs.yaml:{kube}/config"
    used = "/github/runner_temp/kube/prefs.yaml, /github/runner_temp/kube/config"
    assert f"kubeconfig: $KUBECONFIG ({used})" in main.text
    assert "--secret id=token,src=/github/runner_temp/token.txt" in main.text
    assert "oci-layout:///github/workspace/.layouts/busybox:busybox" in main.text
    for dest in (lay.temp / "out", lay.workspace / "dist"):
        assert (dest / "arch").read_text().strip() == "aarch64", dest
        # files buildx wrote as root belong to the folder's owner, as a checkout's would
        for path in [dest, *dest.rglob("*")]:
            assert (path.stat().st_uid, path.stat().st_gid) == (RUNNER_UID, RUNNER_GID), path
    assert main.outputs["output-dir"] == "", "outputs is set: there is no default folder"
    cleaned_up(gh, cenv, main, with_, builder)


def test_an_older_runner_without_the_runner_temp_mount_keeps_the_files_in_github_home(
    gh: Runner, cenv: dict[str, str]
) -> None:
    """Before v2.329.0 the runner mounted only _github_home, _github_workflow and
    _runner_file_commands of _temp, and RUNNER_TEMP reached the action as the host's path."""
    gh.runner_temp = False
    builder = builder_name()
    with_ = {
        **hello(gh, cenv, builder, "linux/amd64"),
        "kubeconfig": Path(cenv["KUBEBUILDX_KUBECONFIG_LIMITED"]).read_text(),
    }
    main = gh.run(with_)
    assert main.proc.returncode == 0, main.text[-4000:]
    assert main.container_env["RUNNER_TEMP"] == str(gh.layout.temp), "such a runner passes it as it is"
    out = Path(main.outputs["output-dir"])
    assert out.is_relative_to(gh.layout.home), out
    later = gh.later_step(READ_EVERY_FILE, str(out))
    assert later.returncode == 0, later.stderr[-2000:]
    assert json.loads(later.stdout)["files"]["linux_amd64/arch"] == "x86_64"
    workdir = Path(main.state["workdir"].replace("/github/home", str(gh.layout.home), 1))
    post = gh.run(with_, post_of=main, timeout=300)
    assert post.proc.returncode == 0, post.text[-3000:]
    assert not workdir.exists()
    assert deployments(cenv, builder) == []


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    loopback_registry.install()
    password = "test-only-" + secrets.token_urlsafe(12)
    reg = Registry(
        tmp_path_factory.mktemp("registry-auth"), f"127.0.0.1:{free_loopback_port()}", "kbx-rt", password
    ).start()
    yield reg
    reg.stop()


def test_a_docker_config_exported_by_an_earlier_step_logs_in(
    gh: Runner, cenv: dict[str, str], private: Registry
) -> None:
    """DOCKER_CONFIG under runner.temp, as set for docker/login-action and this step; no registry inputs."""
    lay, builder = gh.layout, builder_name()
    repo = f"rt-{uuid.uuid4().hex[:8]}"
    auth = base64.b64encode(f"{private.user}:{private.password}".encode()).decode()
    config = lay.temp / "docker" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"auths": {private.address: {"auth": auth}}}))
    chown_tree(config.parent)
    kubeconfig = Path(cenv["KUBEBUILDX_KUBECONFIG_LIMITED"]).read_text()
    with_ = {
        **hello(gh, cenv, builder, "linux/amd64"),
        "kubeconfig": kubeconfig,
        "push": "true",
        "tags": f"{private.address}/{repo}:1",
    }
    main = gh.run(with_, {"DOCKER_CONFIG": str(config.parent)})
    assert main.proc.returncode == 0, main.text[-4000:]
    assert "registry credentials: $DOCKER_CONFIG (/github/runner_temp/docker)" in main.text
    assert main.outputs["digest"].startswith("sha256:")
    assert private.exists(repo, "1"), "the registry holds what was pushed"
    post = cleaned_up(gh, cenv, main, with_, builder)
    everything = shown(main, post) + kept_files(gh, but=(config,))
    assert private.password not in everything and auth not in everything


def test_a_failed_main_step_cleans_up_too(gh: Runner, cenv: dict[str, str]) -> None:
    builder = builder_name()
    broken = gh.layout.workspace / "broken"
    broken.mkdir()
    (broken / "Dockerfile").write_text("FROM busybox\nRUN echo failing on purpose && false\n")
    chown_tree(broken)
    with_ = {
        **hello(gh, cenv, builder, "linux/amd64"),
        "context": "broken",
        "kubeconfig": Path(cenv["KUBEBUILDX_KUBECONFIG_LIMITED"]).read_text(),
    }
    main = gh.run(with_)
    assert main.proc.returncode == 6, main.text[-4000:]
    assert "failing on purpose" in main.text
    cleaned_up(gh, cenv, main, with_, builder)


@pytest.mark.parametrize(
    ("with_", "env", "named", "says"),
    [
        ({"secret-files": "id=/home/runner/.ssh/key"}, {}, "secret-files", "does not have it"),
        ({"outputs": "type=local,dest=/tmp/out"}, {}, "outputs", "vanish when the step ends"),
        ({"outputs": "type=tar,dest={work}/out.tar"}, {}, "outputs", "vanish when the step ends"),
        ({"build-contexts": "base={work}/_tool/base"}, {}, "build-contexts", "does not have it"),
        ({}, {"KUBECONFIG": "{work}/_tool/kubeconfig"}, "$KUBECONFIG", "does not have it"),
        ({}, {"DOCKER_CONFIG": "/home/runner/.docker"}, "$DOCKER_CONFIG", "does not have it"),
    ],
)
def test_a_host_path_outside_every_mount_fails_naming_the_input_and_the_fix(
    gh: Runner, cenv: dict[str, str], with_: dict[str, str], env: dict[str, str], named: str, says: str
) -> None:
    work = str(gh.layout.work)
    with_ = {k: v.format(work=work) for k, v in with_.items()}
    env = {k: v.format(work=work) for k, v in env.items()}
    inputs = {**hello(gh, cenv, builder_name(), "linux/amd64"), **with_}
    if "KUBECONFIG" not in env:
        inputs["kubeconfig"] = Path(cenv["KUBEBUILDX_KUBECONFIG_LIMITED"]).read_text()
    main = gh.run(inputs, env, timeout=120)
    assert main.proc.returncode == 2, main.text[-3000:]
    errors = [line for line in main.text.splitlines() if line.startswith("::error")]
    assert errors, main.text[-3000:]
    assert f"{named}: " in errors[0] and says in errors[0], errors[0]
    assert "runner.temp" in errors[0] and "github.workspace" in errors[0], "the message says the fix"
    assert deployments(cenv, inputs["builder"]) == []
