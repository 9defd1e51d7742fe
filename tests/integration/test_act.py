"""The action as an open runner runs it: act (github.com/nektos/act) interprets
action.yml and real workflow files (tests/workflows/, .github/workflows/), with the
action image built from the unmodified Dockerfile, against the one-machine cluster.

The workflows' own `run:` steps check outputs and files; this file checks what act
leaves on the host (its artifact store, the registry, the workspace) and pins what
act does differently from GitHub's runner:
  - its docker post step gets no STATE_*, so the post step finds nothing to clean up
    and the builder outlives the job (this file removes it);
  - the workspace sits at its host path, not /github/workspace;
  - RUNNER_TEMP is /tmp, private to each container, so `output-dir` vanishes;
  - a matrix job hands on the outputs of one leg only;
  - its artifact server refuses `mime_type` (hack/act/artifact_shim.py drops it).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import act_workspace
import loopback_registry
import pytest
import yaml
from cluster_helpers import cluster_env, deployments, secrets_of
from loopback_registry import Registry, free_loopback_port, images_of
from proving_ground import Cluster

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "hack" / "act"))
import run as act  # noqa: E402 - hack/act is a folder of scripts, not a package

pytestmark = [pytest.mark.cluster]

BUILD_TIMEOUT = 900  # the action image, cold: pip install of the pinned requirements
RUN_TIMEOUT = 600  # one workflow run


@dataclass
class ActRun:
    proc: subprocess.CompletedProcess[str]
    workspace: Path
    artifacts: Path

    @property
    def text(self) -> str:
        return self.proc.stdout + self.proc.stderr

    def printed(self, job: str) -> list[str]:
        """What the steps of `job` printed (act shows it as `[workflow/job]   | line`)."""
        return [
            m.group(1)
            for m in re.finditer(rf"^\[[^/\]]+/{re.escape(job)}[^\]]*\]\s+\| (.*)$", self.text, re.M)
        ]

    def fail_text(self) -> str:
        """The errors and failed steps act reported, then the end of its output."""
        marked = [line for line in self.text.splitlines() if "❗" in line or "❌" in line]
        return "\n".join([*marked[:20], "...", self.text[-5000:]])


@pytest.fixture(scope="module")
def tools(cluster: Cluster) -> act.Tools:
    """act, the Docker engine and the job image of the running proving ground
    (through `cluster`, which fails with a clear message when it is down)."""
    return act.tools(act.cluster_env())


@pytest.fixture(scope="module")
def action_image(tools: act.Tools, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The action image, built once from the files the workspaces hold."""
    workspace = act_workspace.make(tmp_path_factory.mktemp("image-context"))
    return act.build_action_image(tools, workspace, timeout=BUILD_TIMEOUT)


@pytest.fixture
def builder(cluster: Cluster) -> Iterator[str]:
    """A builder name prefix of this test's own. act's post step cannot clean up (no
    STATE_*), so the Deployments it leaves are removed here."""
    prefix = f"kbx-act-{secrets.token_hex(3)}"
    yield prefix
    apps = cluster.apps_v1()
    for deployment in apps.list_namespaced_deployment(cluster.namespace, _request_timeout=30).items:
        if deployment.metadata.name.startswith(prefix + "-"):
            apps.delete_namespaced_deployment(deployment.metadata.name, cluster.namespace)


def kubeconfig_secret(cluster: Cluster) -> str:
    """The limited identity's kubeconfig, base64: act's secret file takes one line a secret."""
    return base64.b64encode(cluster.kubeconfig.limited.read_bytes()).decode()


def run_act(
    tools: act.Tools,
    image: str,
    workspace: Path,
    args: list[str],
    *,
    secrets_: dict[str, str] | None = None,
    shim: bool = True,
    timeout: float = RUN_TIMEOUT,
    cli: bool = False,
) -> ActRun:
    """act through run(), or with `cli` through scripts/act as a person runs it.

    The tag act uses for `uses: ./` (act-dockeraction:latest) is shared by everyone on
    this engine: it is pointed at our image just before the run and checked afterwards.
    When someone moved it meanwhile, the run used their image and proves nothing: it is
    run once more, then the test fails saying so."""
    artifacts = workspace.parent / "artifacts"
    workflow = args[args.index("-W") + 1]
    for _ in range(2):
        shutil.rmtree(artifacts, ignore_errors=True)
        subprocess.run([tools.docker, "tag", image, act.ACTION_IMAGE], check=True, env=tools.env)
        try:
            if cli:
                assert not secrets_ and shim
                command = [str(ROOT / "scripts" / "act"), "--no-build", "--workdir", str(workspace),
                           "--artifacts", str(artifacts), "--", "--bind", *args]  # fmt: skip
                proc = run_in_own_group(command, timeout)
            else:
                proc = act.run(
                    tools,
                    workspace,
                    ["--bind", *args],
                    artifacts=artifacts,
                    secrets=secrets_,
                    timeout=timeout,
                    capture=True,
                    shim=shim,
                )
        except subprocess.TimeoutExpired:
            remove_act_containers(tools, workflow, workspace)
            raise
        (workspace.parent / "act.log").write_text(proc.stdout + proc.stderr)  # masked by act
        if act.image_id(tools) == image:
            return ActRun(proc, workspace, artifacts)
    pytest.fail(f"{act.ACTION_IMAGE} was retagged by someone else during both runs: rerun")


def run_in_own_group(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """scripts/act runs act as its child: on a timeout, end the whole process group we
    started, not only its first process."""
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def remove_act_containers(tools: act.Tools, workflow: str, workspace: Path) -> None:
    """After a timeout killed act, the containers and volumes it made for this workflow
    (act names them act-<workflow name>-<job>-<hash>[-env])."""
    name = yaml.safe_load((workspace / workflow).read_text())["name"]
    for kind in ("container", "volume"):
        listed = subprocess.run(
            [tools.docker, kind, "ls", "-q", *(["-a"] if kind == "container" else []),
             "--filter", f"name=^act-{name}-"],
            capture_output=True, text=True, env=tools.env, check=False,
        ).stdout.split()  # fmt: skip
        if listed:
            subprocess.run([tools.docker, kind, "rm", "-f", *listed], env=tools.env, capture_output=True)


def assert_no_secret(run: ActRun, cluster: Cluster, encoded: str) -> None:
    kept = run.text
    for root in (run.workspace / "out", run.artifacts):
        for path in root.rglob("*") if root.exists() else ():
            if path.is_file():
                data = path.read_bytes()
                if path.suffix == ".zip":
                    with zipfile.ZipFile(io.BytesIO(data)) as archive:
                        data = b"".join(archive.read(n) for n in archive.namelist())
                kept += data.decode("utf-8", "replace")
    for secret in [*secrets_of(cluster.kubeconfig.limited), encoded]:
        assert secret not in kept


def fnv1a_32(text: str) -> int:
    """act's artifact id (pkg/artifacts/artifacts_v4.go, artifactNameToID)."""
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def workspace_for(tmp_path: Path, cluster: Cluster) -> Path:
    return act_workspace.make(tmp_path / "workspace", {"busybox": cluster.base_image_layout})


# ---- tests ---------------------------------------------------------------------------------------


def test_a_workflow_builds_both_platforms_and_its_steps_read_outputs_files_and_artifacts(
    tools: act.Tools, action_image: str, cluster: Cluster, builder: str, tmp_path: Path
) -> None:
    workspace = workspace_for(tmp_path, cluster)
    encoded = kubeconfig_secret(cluster)
    run = run_act(
        tools,
        action_image,
        workspace,
        ["-W", "tests/workflows/build.yml", "--env", f"KBX_BUILDER={builder}"],
        secrets_={"KUBECONFIG": encoded},
    )
    assert run.proc.returncode == 0, run.fail_text()
    # The tag act derives for `uses: ./`, which scripts/act builds beforehand.
    assert f"docker create image={act.ACTION_IMAGE} " in run.text
    printed = run.printed("build")
    assert "outputs ok: linux/amd64,linux/arm64" in printed, run.fail_text()

    # The files: written by the action into the workspace, which act binds at its host path.
    assert (workspace / "out" / "linux_amd64" / "arch").read_text().strip() == "x86_64"
    assert (workspace / "out" / "linux_arm64" / "arch").read_text().strip() == "aarch64"
    assert f"workspace={workspace} runner_temp=/tmp pwd={workspace}" in printed, printed

    # The artifacts, as act's server stores them: <path>/<run id>/<name>/<name>.zip
    zips = {p.parent.name: p for p in run.artifacts.glob("*/*/*.zip")}
    assert set(zips) == {"hello-linux-amd64", "hello-linux-arm64"}, zips
    for name, arch in (("hello-linux-amd64", "x86_64"), ("hello-linux-arm64", "aarch64")):
        with zipfile.ZipFile(zips[name]) as archive:
            assert sorted(archive.namelist()) == ["arch", "built-on.txt", "message.txt"]
            assert archive.read("arch").decode().strip() == arch
            assert archive.read("message.txt") == (ROOT / "examples/hello/message.txt").read_bytes()
    # artifact-ids are what act's server answered: it numbers an artifact by its name's FNV-1a.
    ids_line = next(line for line in printed if line.startswith("artifact-ids: "))
    assert json.loads(ids_line.removeprefix("artifact-ids: ")) == {
        "linux/amd64": fnv1a_32("hello-linux-amd64"),
        "linux/arm64": fnv1a_32("hello-linux-arm64"),
    }

    # act: RUNNER_TEMP is /tmp of the action's own container, so output-dir is gone by the next step.
    gone = re.compile(rf"output-dir gone: /tmp/kubebuildx-out-[^/]+/{re.escape(builder)}-all/out$")
    assert any(gone.search(line) for line in printed), printed

    # act: the docker post step gets no STATE_*: it finds nothing to clean up. The main step
    # removed each builder as it ended, so nothing is left for it anyway.
    assert printed.count("nothing to clean up") == 2, printed
    for name in (f"{builder}-all", f"{builder}-out"):
        assert deployments(cluster_env(), name) == [], name
    assert re.search(r"Success - Post both platforms, the default local output", run.text)
    assert_no_secret(run, cluster, encoded)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    loopback_registry.install()
    reg = Registry(tmp_path / "registry", f"127.0.0.1:{free_loopback_port()}").start()
    yield reg
    reg.stop()


@pytest.mark.registry
def test_matrix_legs_push_by_digest_and_a_merge_job_joins_them(
    tools: act.Tools,
    action_image: str,
    cluster: Cluster,
    builder: str,
    registry: Registry,
    tmp_path: Path,
) -> None:
    workspace = workspace_for(tmp_path, cluster)
    repo = f"kbx-act/{builder}"
    image = f"{registry.address}/{repo}"
    encoded = kubeconfig_secret(cluster)
    run = run_act(
        tools,
        action_image,
        workspace,
        ["-W", "tests/workflows/matrix.yml", "--env", f"KBX_BUILDER={builder}", "--env", f"IMAGE={image}"],
        secrets_={"KUBECONFIG": encoded},
    )
    assert run.proc.returncode == 0, run.fail_text()

    # What the legs pushed, from their own logs; then the index, from the registry's API.
    pushed = dict(re.findall(r"leg (linux/\w+) pushed (sha256:[0-9a-f]{64})", run.text))
    assert set(pushed) == {"linux/amd64", "linux/arm64"}, run.fail_text()
    index, index_digest = registry.manifest(repo, "act")
    assert index["mediaType"] in loopback_registry.INDEX_TYPES
    expected = {}
    for platform, digest in pushed.items():
        manifest, _ = registry.manifest(repo, digest)
        expected.update(images_of(manifest) if "manifests" in manifest else {platform: digest})
    assert images_of(index) == expected
    assert set(expected) == {"linux/amd64", "linux/arm64"}
    assert f"index {index_digest}" in run.printed("merge")

    # The digests reached the merge job as the legs' artifacts...
    fetched = [line for line in run.printed("merge") if line.startswith("digests-linux-")]
    assert sorted(line.split(":")[0] for line in fetched) == ["digests-linux-amd64", "digests-linux-arm64"]
    # ...while act handed on the job outputs of one leg only (GitHub keeps every leg's
    # non-empty outputs: https://docs.github.com/actions/using-jobs/defining-outputs-for-jobs).
    outputs_line = next(line for line in run.printed("merge") if line.startswith("job outputs: "))
    outputs = json.loads(outputs_line.removeprefix("job outputs: "))
    handed = {k.removeprefix("digest-"): v for k, v in outputs.items() if v}
    assert len(handed) == 1, outputs
    ((arch, digest),) = handed.items()
    assert pushed[f"linux/{arch}"] == digest
    assert_no_secret(run, cluster, encoded)


def test_ci_action_fails_job_fails_on_a_bad_input_and_runs_the_post_step(
    tools: act.Tools, action_image: str, tmp_path: Path
) -> None:
    """The repository's own ci.yml, job action-fails: no cluster, no secret."""
    workspace = act_workspace.make(tmp_path / "workspace")
    run = run_act(tools, action_image, workspace, ["-W", ".github/workflows/ci.yml", "-j", "action-fails"])
    assert run.proc.returncode == 0, run.fail_text()  # continue-on-error: the job itself succeeds
    assert "::error title=Invalid input::" in run.text and "no-such-option" in run.text, run.fail_text()
    assert re.search(r"Failure - Main bad|Failure - Main \./", run.text), run.fail_text()
    assert "outcome: failure" in run.printed("the action fails on a bad input"), run.fail_text()
    post = re.search(r"Run Post .*\n(?:.*\n)*?.*(Success|Failure) - Post ", run.text)
    assert post and post.group(1) == "Success", run.fail_text()
    assert "nothing to clean up" in run.printed("the action fails on a bad input")


def test_act_quirks_are_what_the_harness_assumes(tools: act.Tools, action_image: str, tmp_path: Path) -> None:
    workspace = act_workspace.make(tmp_path / "workspace")
    run = run_act(tools, action_image, workspace, ["-W", "tests/workflows/act-quirks.yml"], shim=False)
    assert run.proc.returncode == 0, run.fail_text()
    printed = [line for line in run.printed("runner") if line.startswith("quirk ")]
    assert printed == [
        f"quirk workspace={workspace} runner_temp=/tmp",
        "quirk CreateArtifact with mime_type: HTTP 500",  # nektos/act#6022: drop the shim when accepted
        "quirk CreateArtifact without mime_type: accepted",
    ]


def test_a_bad_input_fails_the_step_the_job_and_act_but_the_post_step_runs(
    tools: act.Tools, action_image: str, tmp_path: Path
) -> None:
    """Through scripts/act, whose exit code is act's."""
    workspace = act_workspace.make(tmp_path / "workspace")
    run = run_act(tools, action_image, workspace, ["-W", "tests/workflows/bad-input.yml"], cli=True)
    assert run.proc.returncode == 1, run.fail_text()
    assert "Job 'bad-input' failed" in run.text, run.fail_text()
    assert "Failure - Main the action with a platform written backwards" in run.text, run.fail_text()
    assert "::error title=Invalid input::" in run.text and "arm64/linux" in run.text
    printed = run.printed("bad-input")
    assert "ran after the failed step" not in printed
    assert "after the failure, outcome failure" in printed, run.fail_text()
    assert "Success - Post the action with a platform written backwards" in run.text, run.fail_text()
