"""The release flow (.github/workflows/release.yml) on the one-machine cluster.

kubebuildx builds its own image from the repository's unmodified Dockerfile,
linux/amd64 and linux/arm64 each on its own BuildKit (the stand-in base images
as oci-layout build contexts, since nothing can be pulled here), and pushes it
by digest to a loopback registry of this test's own. The index is read back
from the registry. scripts/gen-action-yml --image writes the release's
action.yml, whose runs.image is docker://<registry>/...@sha256:<index digest>;
a workflow uses it through `uses: ./release-action` under act, so the Docker
engine pulls the image from the registry and runs it as the action, post step
included. A `uses: docker://` step would bypass action.yml (no args, no post).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import loopback_registry
import pytest
from cluster_helpers import KUBEBUILDX, ROOT, cluster_env, deployments, read_file_commands, secrets_of
from loopback_registry import Registry, free_loopback_port, images_of

pytestmark = [pytest.mark.cluster, pytest.mark.registry]

PLATFORMS = ("linux/amd64", "linux/arm64")
WORKFLOW = ROOT / "tests" / "workflows" / "release-action.yml"
ACT = ROOT / "scripts" / "act"
GEN = ROOT / "scripts" / "gen-action-yml"


@pytest.fixture(scope="module")
def cenv() -> dict[str, str]:
    env = cluster_env()
    assert env.get("KUBEBUILDX_ACTION_BASE_CONTEXTS"), "scripts/cluster env exports no stand-in base contexts"
    return env


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry of this module's own on a free loopback port: the buildkitds and the
    Docker engine both speak plain HTTP to loopback."""
    loopback_registry.install()
    reg = Registry(tmp_path_factory.mktemp("registry-release"), f"127.0.0.1:{free_loopback_port()}").start()
    yield reg
    reg.stop()


@dataclass(frozen=True)
class SelfBuild:
    repo: str
    digest: str  # the index's
    seconds: float
    printed: str
    outputs: dict[str, str]

    def ref(self, registry: Registry) -> str:
        return f"{registry.address}/{self.repo}@{self.digest}"


def action_step(
    home: Path, cenv: dict[str, str], inputs: dict[str, str], *args: str, state: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """`kubebuildx action` as the runner runs release.yml's `uses: ./` step: INPUT_* variables
    and file commands; returns the process and the outputs (or state) it wrote."""
    files = {
        name: home / "file_commands" / name.lower()
        for name in ("OUTPUT", "STEP_SUMMARY", "STATE", "ENV", "PATH")
    }
    for f in files.values():
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("")
    (home / "runner_temp").mkdir(exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "INPUT_", "RUNNER_", "ACTIONS_", "STATE_"))
        and k not in ("KUBECONFIG", "DOCKER_CONFIG", "BUILDX_CONFIG")
    }
    env.update({f"GITHUB_{name}": str(f) for name, f in files.items()})
    env.update(
        {
            "PATH": f"{cenv['KUBEBUILDX_BIN']}:{env['PATH']}",
            "HOME": str(home),
            "GITHUB_ACTIONS": "true",
            "GITHUB_REPOSITORY": "octo/kubebuildx",
            "GITHUB_RUN_ID": str(secrets.randbelow(10**6)),
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_JOB": "image",
            "RUNNER_TEMP": str(home / "runner_temp"),
            **{f"INPUT_{k.upper()}": v for k, v in inputs.items()},
            **{f"STATE_{k}": v for k, v in (state or {}).items()},
        }
    )
    proc = subprocess.run(
        [str(KUBEBUILDX), "action", *args], env=env, capture_output=True, text=True, timeout=1800, check=False
    )
    return proc, read_file_commands(files["OUTPUT"]), read_file_commands(files["STATE"])


@pytest.fixture(scope="module")
def self_build(
    cenv: dict[str, str], registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SelfBuild]:
    """What release.yml's image job does: the action, at this commit, builds its own image."""
    repo = f"kubebuildx-{uuid.uuid4().hex[:8]}"
    builder = f"release-{secrets.token_hex(3)}"
    home = tmp_path_factory.mktemp("self-build")
    inputs = {
        "kubeconfig": Path(cenv["KUBEBUILDX_KUBECONFIG_ADMIN"]).read_text(),
        "namespace": cenv["KUBEBUILDX_NAMESPACE"],
        "builder": builder,
        "platforms": ",".join(PLATFORMS),
        "context": str(ROOT),
        # nothing can be pulled here: the stand-ins of the FROM images, as oci-layout contexts
        "build-contexts": cenv["KUBEBUILDX_ACTION_BASE_CONTEXTS"],
        "push": "true",
        "image": f"{registry.address}/{repo}",
        "upload-artifacts": "false",
    }
    start = time.monotonic()
    # cold, this takes minutes: the arm64 pip install runs under qemu
    proc, outputs, state = action_step(home, cenv, inputs)
    seconds = time.monotonic() - start
    printed = proc.stdout + proc.stderr
    try:
        # Figures for the report: the per-platform table kubebuildx prints, and the wall time.
        table = printed[printed.find("STEP ") :].split("::endgroup::")[0]
        print(f"\nself-build of the action image: {seconds:.1f} s\n{table}")
        assert proc.returncode == 0, printed[-6000:]
        pushed = re.findall(rf"pushed {re.escape(registry.address)}/{repo}@(sha256:[0-9a-f]{{64}})", printed)
        assert pushed == [outputs["digest"]], printed[-3000:]
        yield SelfBuild(repo, outputs["digest"], seconds, printed, outputs)
    finally:
        if state:
            post, _, _ = action_step(home, cenv, {}, "--post", state=state)
            assert post.returncode == 0, post.stdout + post.stderr
        assert deployments(cenv, builder + "-") == [], "the post step left the builder's Deployments"


def _config(registry: Registry, repo: str, manifest_digest: str) -> dict[str, object]:
    manifest, _ = registry.manifest(repo, manifest_digest)
    body, _ = registry.get(f"/v2/{repo}/blobs/{manifest['config']['digest']}")
    config: dict[str, object] = json.loads(body)
    return config


def test_the_pushed_index_holds_both_platforms_of_the_action_image(
    registry: Registry, self_build: SelfBuild
) -> None:
    index, served_as = registry.manifest(self_build.repo, self_build.digest)
    assert served_as == self_build.digest
    assert index["mediaType"] in loopback_registry.INDEX_TYPES
    images = images_of(index)
    assert sorted(images) == sorted(PLATFORMS)
    for platform, digest in images.items():
        config = _config(registry, self_build.repo, digest)
        assert f"{config['os']}/{config['architecture']}" == platform
        inner = config["config"]
        assert isinstance(inner, dict)
        assert inner["Entrypoint"] == ["kubebuildx"], "the Dockerfile's ENTRYPOINT"


def test_each_platform_was_built_natively_on_its_own_node(
    cenv: dict[str, str], self_build: SelfBuild
) -> None:
    nodes = json.loads(self_build.outputs["nodes"])
    assert sorted((n["platform"], n["kubernetes-node"], n["emulated"]) for n in nodes) == [
        (p, cenv[f"KUBEBUILDX_NODE_{p.split('/')[1].upper()}"], False) for p in PLATFORMS
    ]


def layout_index_digests(contexts: str) -> dict[str, str]:
    """name -> digest of the multi-platform index each oci-layout build context holds."""
    found = {}
    for line in contexts.splitlines():
        name, _, value = line.partition("=oci-layout://")
        folder = value.rsplit(":", 1)[0]
        found[name] = json.loads((Path(folder) / "index.json").read_text())["manifests"][0]["digest"]
    return found


def test_the_summary_names_the_base_images_by_digest(
    cenv: dict[str, str], registry: Registry, self_build: SelfBuild
) -> None:
    """release.yml reads the pushed image's provenance and writes scripts/base-images' table
    to its job summary: here the digests must be those of the stand-ins it was built from."""
    inspect = subprocess.run(
        [f"{cenv['KUBEBUILDX_BIN']}/buildx", "imagetools", "inspect", self_build.ref(registry),
         "--format", "{{json .Provenance}}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert inspect.returncode == 0, inspect.stderr
    proc = subprocess.run(
        [str(ROOT / "scripts" / "base-images"), "-"],
        input=inspect.stdout, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    print(f"\n{proc.stdout}")
    rows = {
        tuple(cell.strip(" `") for cell in line.split("|")[1:-1])
        for line in proc.stdout.splitlines()
        if line.startswith("| `")
    }
    expected = {
        (name, "oci-layout", platform, digest)
        for name, digest in layout_index_digests(cenv["KUBEBUILDX_ACTION_BASE_CONTEXTS"]).items()
        for platform in PLATFORMS
    }
    assert rows == expected
    assert "FROM " not in proc.stdout, "stand-ins are no digests to pin the Dockerfile to"


def release_action_yml(image: str, out: Path) -> dict[str, object]:
    proc = subprocess.run(
        [str(GEN), "--image", f"docker://{image}", "--out", str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    import yaml

    doc: dict[str, object] = yaml.safe_load(out.read_text())
    return doc


def test_the_generator_refuses_a_tag_for_the_release(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(GEN), "--image", "docker://127.0.0.1:5000/kubebuildx:v1.0.0", "--out", str(tmp_path / "a.yml")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "by digest" in proc.stderr, proc.stderr
    assert not (tmp_path / "a.yml").exists()


def _docker(cenv: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [cenv["KUBEBUILDX_DOCKER"], *args],
        capture_output=True, text=True, timeout=timeout, check=False,
        env={"PATH": "/usr/bin:/bin", "DOCKER_HOST": _docker_host(cenv)},
    )  # fmt: skip


def _docker_host(cenv: dict[str, str]) -> str:
    out = subprocess.run(
        [str(ROOT / "scripts" / "cluster"), "env", "--json"], capture_output=True, text=True, check=True
    ).stdout
    return str(json.loads(out)["docker"]["host"])


def test_the_release_action_yml_runs_the_pulled_image_as_the_action(
    cenv: dict[str, str], registry: Registry, self_build: SelfBuild, tmp_path: Path
) -> None:
    image = self_build.ref(registry)
    workspace = tmp_path / "workspace"
    (workspace / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(WORKFLOW, workspace / ".github" / "workflows" / WORKFLOW.name)
    shutil.copytree(ROOT / "examples" / "hello", workspace / "hello")
    shutil.copytree(cenv["KUBEBUILDX_BASE_IMAGE_LAYOUT"], workspace / "busybox")
    action = release_action_yml(image, workspace / "release-action" / "action.yml")
    runs = action["runs"]
    assert isinstance(runs, dict) and runs["image"] == f"docker://{image}"

    # The engine must pull it: nothing of the image may be there beforehand.
    _docker(cenv, "image", "rm", image)
    assert _docker(cenv, "image", "inspect", image).returncode != 0

    # act takes the github context (sha, ref) from a Git repository
    for git in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "ws"],
    ):
        subprocess.run(["git", *git], cwd=workspace, check=True, capture_output=True, timeout=60)

    limited = Path(cenv["KUBEBUILDX_KUBECONFIG_LIMITED"])
    encoded = base64.b64encode(limited.read_bytes()).decode()
    secret_file = tmp_path / "secrets.env"
    secret_file.touch(mode=0o600)
    secret_file.write_text(f"KUBECONFIG={encoded}\n")
    builder = f"release-act-{secrets.token_hex(3)}"
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [
                str(ACT), "--no-build", "--workdir", str(workspace), "--",
                "-W", str(workspace / ".github" / "workflows" / WORKFLOW.name),
                "--secret-file", str(secret_file),
                "--env", f"KBX_NAMESPACE={cenv['KUBEBUILDX_NAMESPACE']}",
                "--env", f"KBX_BUILDER={builder}",
            ],
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        printed = proc.stdout + proc.stderr
        print(f"\nact with the release's action.yml: {time.monotonic() - start:.1f} s")
        pulled = _docker(cenv, "image", "inspect", "--format", "{{json .RepoDigests}}", image)
    finally:
        _docker(cenv, "image", "rm", image)
        # act gives a docker action's post step no STATE_* (tests/integration/test_act.py pins
        # that), so its cleanup finds nothing: remove the builder's Deployments here.
        apps = cluster_apps(cenv)
        for name in deployments(cenv, builder + "-"):
            apps.delete_namespaced_deployment(name, cenv["KUBEBUILDX_NAMESPACE"])
    assert proc.returncode == 0, printed[-8000:]
    assert pulled.returncode == 0 and self_build.digest in pulled.stdout, "the engine did not pull the image"
    # every step, post steps included, ran the image pulled by digest: nothing was built
    assert printed.count(f"docker pull image={image}") == 4, printed[-4000:]
    assert "act-dockeraction" not in printed and "docker build" not in printed
    assert printed.count(f'docker run image={image} platform= entrypoint=[] cmd=["action"]') == 2
    assert printed.count('entrypoint=["/usr/local/bin/kubebuildx-post"]') >= 2
    # the bad input failed in the pulled image's kubebuildx; the build ran on both nodes
    assert "::error title=Invalid input::driver-opts: 'no-such-option' is not an option" in printed
    assert "release-action: outputs checked" in printed
    assert "Success - Post the prebuilt image builds both platforms" in printed
    for secret in [*secrets_of(limited), encoded]:
        assert secret not in printed


def cluster_apps(cenv: dict[str, str]) -> Any:
    from kubernetes import client, config

    return client.AppsV1Api(config.new_client_from_config(config_file=cenv["KUBEBUILDX_KUBECONFIG_ADMIN"]))
