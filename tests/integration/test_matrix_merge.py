"""Matrix and release pipelines (issue 5) against the proving ground and a real
registry on loopback (Debian's docker-registry, with and without basic auth).

Two matrix jobs run the action's entrypoint at the same time, one platform
each, and push by digest; a merge job joins the digests. What was pushed is
read back from the registry's HTTP API, never taken from kubebuildx's word.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import loopback_registry
import pytest
from cluster_helpers import (
    CONTEXT,
    KUBEBUILDX,
    api_json,
    cluster_env,
    delete_deployment,
    deployments,
    kubebuildx,
    read_file_commands,
    runner_env,
)
from loopback_registry import Registry, free_loopback_port, images_of

pytestmark = [pytest.mark.cluster, pytest.mark.registry]

PLATFORMS = ("linux/amd64", "linux/arm64")
UNAME_M = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}


@pytest.fixture(scope="module")
def cenv() -> dict[str, str]:
    return cluster_env()


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A second instance with basic auth (htpasswd -B) on another loopback port; buildx and
    BuildKit speak plain HTTP to any loopback registry (containerd's MatchLocalhost)."""
    loopback_registry.install()
    password = "test-only-" + secrets.token_urlsafe(12)
    reg = Registry(
        tmp_path_factory.mktemp("registry-auth"), f"127.0.0.1:{free_loopback_port()}", "kbx-ci", password
    ).start()
    yield reg
    reg.stop()


# ---- the action, as a runner runs it ------------------------------------------------------------


@dataclass
class Job:
    """One job of a workflow run: its runner files and what its steps printed."""

    home: Path
    env: dict[str, str]
    printed: str = ""
    started: float = 0.0
    ended: float = 0.0

    def run(self, inputs: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        env = {**self.env, **{f"INPUT_{k.upper()}": v for k, v in inputs.items()}}
        if args == ("--post",):
            state = read_file_commands(Path(self.env["GITHUB_STATE"]))
            env.update({f"STATE_{k}": v for k, v in state.items()})
        self.started = self.started or time.monotonic()
        proc = subprocess.run(
            [str(KUBEBUILDX), "action", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        self.ended = time.monotonic()
        self.printed += proc.stdout + proc.stderr
        return proc

    @property
    def outputs(self) -> dict[str, str]:
        return read_file_commands(Path(self.env["GITHUB_OUTPUT"]))

    @property
    def state(self) -> dict[str, str]:
        return read_file_commands(Path(self.env["GITHUB_STATE"]))


def new_job(tmp: Path, cenv: Mapping[str, str], run_id: str, job: str) -> Job:
    home = tmp / job
    env = runner_env(
        home, dict(cenv), run_id=run_id, job=job.partition("-")[0]
    )  # matrix legs share the job id
    env["GITHUB_ACTION"] = "__kubebuildx"
    return Job(home, env)


def build_inputs(cenv: Mapping[str, str], platform: str, image: str, **extra: str) -> dict[str, str]:
    return {
        "kubeconfig": Path(cenv["KUBEBUILDX_KUBECONFIG_ADMIN"]).read_text(),
        "namespace": cenv["KUBEBUILDX_NAMESPACE"],
        "platforms": platform,
        "context": str(CONTEXT),
        "build-contexts": cenv["KUBEBUILDX_BASE_IMAGE_CONTEXT"],
        "build-args": f"GREETING=matrix-{platform}",
        "push": "true",
        "image": image,
        **extra,
    }


def ready_replicas(cenv: Mapping[str, str], name: str) -> int:
    body = api_json(cenv, f"/apis/apps/v1/namespaces/{cenv['KUBEBUILDX_NAMESPACE']}/deployments/{name}")
    return int((body.get("status") or {}).get("readyReplicas") or 0)


@dataclass(frozen=True)
class Matrix:
    repo: str  # repository path in the registry
    image: str  # registry/repo
    digests: dict[str, str]  # platform -> digest each job pushed
    digest_dir: Path  # as download-artifact (pattern: digests-*, merge-multiple: true) lays them out
    jobs: dict[str, Job]


@pytest.fixture(scope="module")
def matrix(
    cenv: dict[str, str], plain: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Matrix]:
    """Two matrix jobs at the same time, one platform each, push by digest. The arm64 job
    keeps its builder warm (cleanup: false), so that it still stands after the amd64 job's
    main step removed its own; the fixture deletes it at the end."""
    tmp = tmp_path_factory.mktemp("matrix")
    repo = f"matrix-{uuid.uuid4().hex[:8]}"
    image = f"{plain.address}/{repo}"
    run_id = str(900000 + secrets.randbelow(99999))
    jobs = {p: new_job(tmp, cenv, run_id, f"build-{p.split('/')[1]}") for p in PLATFORMS}
    results: dict[str, subprocess.CompletedProcess[str]] = {}

    warm = {"linux/arm64": {"cleanup": "false", "builder": f"kbx-mx-{run_id}-arm64"}}

    def main_step(platform: str) -> None:
        results[platform] = jobs[platform].run(build_inputs(cenv, platform, image, **warm.get(platform, {})))

    threads = [threading.Thread(target=main_step, args=(p,)) for p in PLATFORMS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        for platform, proc in results.items():
            assert proc.returncode == 0, f"{platform}:\n{jobs[platform].printed[-4000:]}"
        digest_dir = tmp / "digests"
        digest_dir.mkdir()
        digests = {}
        for platform, job in jobs.items():
            digests[platform] = job.outputs["digest"]
            files = list((job.home / "runner_temp").glob("kubebuildx-out-*/*/digests/*"))
            assert [f.name for f in files] == [digests[platform].removeprefix("sha256:")]
            shutil.copy(files[0], digest_dir / files[0].name)
        yield Matrix(repo, image, digests, digest_dir, jobs)
    finally:
        for job in jobs.values():
            if job.state.get("builder"):
                job.run({}, "--post")
        delete_deployment(cenv, f"kbx-mx-{run_id}-arm64-linux-arm64")


def test_matrix_jobs_ran_at_once_each_on_its_own_architecture(cenv: dict[str, str], matrix: Matrix) -> None:
    amd, arm = (matrix.jobs[p] for p in PLATFORMS)
    assert amd.started < arm.ended and arm.started < amd.ended, "the two jobs did not overlap"
    builders = {p: j.outputs["builder"] for p, j in matrix.jobs.items()}
    assert len(set(builders.values())) == 2, f"matrix jobs must not share a builder: {builders}"
    for platform, job in matrix.jobs.items():
        arch = platform.split("/")[1]
        nodes = json.loads(job.outputs["nodes"])
        assert [(n["platform"], n["kubernetes-node"]) for n in nodes] == [
            (platform, cenv[f"KUBEBUILDX_NODE_{arch.upper()}"])
        ], "only the job's own platform was booted"
        assert re.match(r"^sha256:[0-9a-f]{64}$", matrix.digests[platform])
        assert f"pushed {matrix.image}@{matrix.digests[platform]}" in job.printed


def test_each_digest_holds_its_platform_built_natively(plain: Registry, matrix: Matrix) -> None:
    for platform, digest in matrix.digests.items():
        pushed, served_as = plain.manifest(matrix.repo, digest)
        assert served_as == digest
        images = images_of(pushed) if "manifests" in pushed else {platform: digest}
        assert list(images) == [platform]
        # the RUN `uname -m` executed on that architecture's BuildKit
        arch = plain.file_in_image(matrix.repo, images[platform], "arch")
        assert arch is not None and arch.decode().strip() == UNAME_M[platform]
    assert plain.tags(matrix.repo) == [], "push by digest creates no tag"


def test_cleanup_of_one_job_leaves_the_other_jobs_builder_running(
    cenv: dict[str, str], matrix: Matrix
) -> None:
    """The two main steps ran at once; the amd64 one removed its builder as it ended, and
    the arm64 job's (kept warm) still stands, ready."""
    amd, arm = (matrix.jobs[p] for p in PLATFORMS)
    amd_deployment = f"{amd.outputs['builder']}-linux-amd64"
    arm_deployment = f"{arm.outputs['builder']}-linux-arm64"
    assert deployments(cenv, amd_deployment) == [], "the main step removes its builder"
    assert deployments(cenv, arm_deployment) == [arm_deployment], (
        "one job's cleanup removed another's builder"
    )
    assert ready_replicas(cenv, arm_deployment) >= 1
    post = amd.run({}, "--post")
    assert post.returncode == 0, post.stdout + post.stderr
    assert deployments(cenv, arm_deployment) == [arm_deployment]


def test_merge_job_creates_one_index_of_exactly_both_platforms(
    cenv: dict[str, str], plain: Registry, matrix: Matrix, tmp_path: Path
) -> None:
    job = new_job(tmp_path, cenv, "1", "merge")
    tags = [f"{matrix.image}:1.0", f"{matrix.image}:latest"]
    proc = job.run(
        {
            "mode": "merge",
            "image": matrix.image,
            "tags": "\n".join(tags),
            "platforms": ",".join(PLATFORMS),
            "digests": str(matrix.digest_dir),
        }
    )
    assert proc.returncode == 0, job.printed[-4000:]
    index, index_digest = plain.manifest(matrix.repo, "1.0")
    assert index["mediaType"] in loopback_registry.INDEX_TYPES
    # exactly linux/amd64 and linux/arm64, each the image its job pushed
    expected = {}
    for platform, digest in matrix.digests.items():
        pushed, _ = plain.manifest(matrix.repo, digest)
        expected.update(images_of(pushed) if "manifests" in pushed else {platform: digest})
    assert images_of(index) == expected
    assert sorted(images_of(index)) == sorted(PLATFORMS)
    assert plain.manifest(matrix.repo, "latest")[1] == index_digest
    assert job.outputs["digest"] == index_digest
    assert index_digest in Path(job.env["GITHUB_STEP_SUMMARY"]).read_text()


def test_merge_with_a_missing_platform_fails_and_pushes_nothing(
    cenv: dict[str, str], plain: Registry, matrix: Matrix, tmp_path: Path
) -> None:
    only_amd = tmp_path / "digests"
    only_amd.mkdir()
    (only_amd / matrix.digests["linux/amd64"].removeprefix("sha256:")).touch()
    run = kubebuildx(
        ["merge", str(only_amd), "--image", matrix.image, "--tags", f"{matrix.image}:broken",
         "--platforms", ",".join(PLATFORMS)],
        cenv,
        tmp_path,
        timeout=120,
    )  # fmt: skip
    assert run.proc.returncode == 8, run.text
    assert "missing linux/arm64" in run.text and "Nothing was pushed" in run.text, run.text
    assert "imagetools create" not in run.text
    assert not plain.exists(matrix.repo, "broken")
    assert "broken" not in plain.tags(matrix.repo)


def test_basic_auth_registry_push_and_merge_with_credentials(
    cenv: dict[str, str], private: Registry, tmp_path: Path
) -> None:
    repo = f"private-{uuid.uuid4().hex[:8]}"
    image = f"{private.address}/{repo}"
    creds = {"registry": private.address, "username": private.user, "password": private.password}
    job = new_job(tmp_path, cenv, "2", "build-arm64")
    proc = job.run(build_inputs(cenv, "linux/arm64", image, **creds))
    try:
        assert proc.returncode == 0, job.printed[-4000:]
        assert f"logged in to {private.address} as {private.user}" in job.printed
        config = Path(job.state["workdir"]) / "docker-config" / "config.json"
        assert not config.exists(), "deleted when the main step ends, not in the post step"
    finally:
        post = job.run({}, "--post")
    assert post.returncode == 0
    assert not Path(job.state["workdir"]).exists(), "cleanup deletes the credentials"
    digest = job.outputs["digest"]
    merge_job = new_job(tmp_path, cenv, "2", "merge")
    proc = merge_job.run(
        {"mode": "merge", "image": image, "tags": f"{image}:1.0", "platforms": "linux/arm64",
         "digests": digest, **creds}
    )  # fmt: skip
    assert proc.returncode == 0, merge_job.printed[-4000:]
    index, _ = private.manifest(repo, "1.0")
    assert list(images_of(index)) == ["linux/arm64"]
    assert_no_secret(private.password, job, merge_job)


def assert_no_secret(password: str, *jobs: Job) -> None:
    """No credential in anything printed or written; `::add-mask::` lines are the runner's, never shown."""
    import base64

    forms = [password, base64.b64encode(password.encode()).decode()]
    for job in jobs:
        shown = "\n".join(line for line in job.printed.splitlines() if not line.startswith("::add-mask::"))
        for path in job.home.rglob("*"):
            if path.is_file() and path.parent.name == "file_commands":
                shown += path.read_text()
        for form in forms:
            assert form not in shown


@pytest.mark.parametrize("mode", ["build", "merge"])
def test_wrong_credentials_fail_clearly_and_leak_nothing(
    cenv: dict[str, str], private: Registry, tmp_path: Path, mode: str
) -> None:
    wrong = "test-only-wrong-" + secrets.token_urlsafe(12)
    image = f"{private.address}/wrong-{uuid.uuid4().hex[:6]}"
    creds = {"registry": private.address, "username": private.user, "password": wrong}
    job = new_job(tmp_path, cenv, "3", f"{mode}-x")
    if mode == "build":
        inputs = build_inputs(cenv, "linux/amd64", image, **creds)
    else:
        inputs = {"mode": "merge", "image": image, "tags": f"{image}:1", "platforms": "linux/amd64",
                  "digests": "sha256:" + "0" * 64, **creds}  # fmt: skip
    proc = job.run(inputs)
    assert proc.returncode == 8, job.printed[-4000:]
    assert f"{private.address} refused the username '{private.user}'" in job.printed, job.printed[-4000:]
    assert "check the username and password" in job.printed
    assert "Booting builder" not in job.printed, "wrong credentials fail before the cluster is touched"
    job.run({}, "--post")
    assert not any((job.home / "runner_temp").glob("kubebuildx-run-*/docker-config")), (
        "credentials left behind"
    )
    assert_no_secret(wrong, job)
    assert private.tags(image.split("/", 1)[1]) == []


def test_merge_takes_registry_settings_from_the_buildkit_config(cenv: dict[str, str], tmp_path: Path) -> None:
    """A plain-HTTP registry off loopback (on a test host of our own, in a network namespace):
    imagetools reads `[registry."host"] http = true` only from a
    builder's buildkitd.toml, so merge carries buildkitd-config-inline in a builder of its own."""
    loopback_registry.install()
    with loopback_registry.test_host() as ns:
        reg = Registry(
            tmp_path / "registry", f"{loopback_registry.test_host_address(ns)}:5000", netns=ns
        ).start()
        try:
            _merge_needs_the_http_setting(cenv, tmp_path, reg)
        finally:
            reg.stop()


def _merge_needs_the_http_setting(cenv: dict[str, str], tmp_path: Path, reg: Registry) -> None:
    repo = "insecure"
    digests = [reg.put_image(repo, "linux", arch) for arch in ("amd64", "arm64")]
    args = ["merge", *digests, "--image", f"{reg.address}/{repo}", "--tags", f"{reg.address}/{repo}:1",
            "--platforms", ",".join(PLATFORMS)]  # fmt: skip
    refused = kubebuildx(args, cenv, tmp_path / "a", timeout=120)
    assert refused.proc.returncode == 8, refused.text
    assert "HTTP response to HTTPS client" in refused.text
    config = f'[registry."{reg.address}"]\n  http = true\n'
    run = kubebuildx([*args, "--buildkitd-config-inline", config], cenv, tmp_path / "b", timeout=120)
    assert run.proc.returncode == 0, run.text
    index, _ = reg.manifest(repo, "1")
    assert images_of(index) == dict(zip(PLATFORMS, digests, strict=True))


def test_a_docker_config_secret_logs_in_like_username_and_password(
    cenv: dict[str, str], private: Registry, tmp_path: Path
) -> None:
    """issue 5: credentials as a docker config (what `docker login` leaves in config.json)."""
    import base64

    repo = f"dockercfg-{uuid.uuid4().hex[:8]}"
    image = f"{private.address}/{repo}"
    auth = base64.b64encode(f"{private.user}:{private.password}".encode()).decode()
    config = json.dumps({"auths": {private.address: {"auth": auth}}})
    job = new_job(tmp_path, cenv, "5", "build-amd64")
    proc = job.run(build_inputs(cenv, "linux/amd64", image, **{"docker-config": config}))
    try:
        assert proc.returncode == 0, job.printed[-4000:]
        assert f"registries: {private.address}" in job.printed
    finally:
        assert job.run({}, "--post").returncode == 0
    assert not Path(job.state["workdir"]).exists(), "cleanup deletes the credentials"
    assert job.outputs["digest"].startswith("sha256:")
    assert_no_secret(private.password, job)
    shown = "\n".join(line for line in job.printed.splitlines() if not line.startswith("::add-mask::"))
    assert auth not in shown
