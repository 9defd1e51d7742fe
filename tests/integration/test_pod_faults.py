"""A builder pod lost mid-build, on the one-machine cluster.

``scripts/cluster delete-builder-pod NAMESPACE DEPLOYMENT`` deletes the pods of
a builder's Deployment at once (kwok does not wait for a grace period), and
the harness stops the BuildKit that served them: buildx's exec stream breaks
exactly as it does when a real node evicts the pod. kubebuildx must fail the
step naming the pod, its node and that it was deleted, and still write its
outputs and summary. With ``replicas=2`` and a warm builder, losing one
replica must not break the next build.

Needs the harness that gives each builder pod its own buildkitd.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cluster_helpers import (
    KUBEBUILDX,
    ROOT,
    api_json,
    cluster_env,
    deployments,
    kubebuildx,
    read_file_commands,
    runner_env,
)

pytestmark = pytest.mark.cluster

SCRIPTS_CLUSTER = ROOT / "scripts" / "cluster"
SLOW = "FROM busybox\nRUN uname -m > /arch\nRUN sleep 20 && echo slept > /slept\n"


@pytest.fixture(scope="module")
def cenv() -> dict[str, str]:
    return cluster_env()


def wait_for(what: Callable[[], object], seconds: float, why: str) -> None:
    deadline = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < deadline, why
        time.sleep(0.2)


def pods_of(cenv: dict[str, str], deployment: str) -> list[dict[str, Any]]:
    """A builder node's pods, by the label buildx gives them (app=<deployment>)."""
    ns = cenv["KUBEBUILDX_NAMESPACE"]
    body = api_json(cenv, f"/api/v1/namespaces/{ns}/pods?labelSelector=app%3D{deployment}")
    items: list[dict[str, Any]] = body.get("items", [])
    return items


def running(cenv: dict[str, str], deployment: str) -> list[dict[str, Any]]:
    return [
        p
        for p in pods_of(cenv, deployment)
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]


def context_with_a_slow_run(tmp: Path) -> Path:
    context = tmp / "slow"
    context.mkdir()
    (context / "Dockerfile").write_text(SLOW)
    return context


def test_a_pod_deleted_mid_build_fails_the_step_naming_pod_and_node(
    cenv: dict[str, str], tmp_path: Path
) -> None:
    builder = "kbx-it-podlost"
    arm = f"{builder}-linux-arm64"
    ns = cenv["KUBEBUILDX_NAMESPACE"]
    env = runner_env(tmp_path, cenv)
    env.update(
        {
            "INPUT_KUBECONFIG": Path(cenv["KUBEBUILDX_KUBECONFIG_ADMIN"]).read_text(),
            "INPUT_NAMESPACE": ns,
            "INPUT_PLATFORMS": "linux/amd64,linux/arm64",
            "INPUT_BUILDER": builder,
            "INPUT_CONTEXT": str(context_with_a_slow_run(tmp_path)),
            "INPUT_BUILD-CONTEXTS": cenv["KUBEBUILDX_BASE_IMAGE_CONTEXT"],
            "INPUT_NO-CACHE": "true",
            "INPUT_CLEANUP": "true",
            "INPUT_UPLOAD-ARTIFACTS": "false",
        }
    )
    log = tmp_path / "step.log"
    with log.open("w") as out:
        main = subprocess.Popen(
            [str(KUBEBUILDX), "action"], env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )
    try:
        # The build has started on arm64 once its slow RUN is printed; its pod is Running by then.
        started = re.compile(r"^#\d+ \[linux/arm64 [^\]]*\] RUN sleep 20", re.MULTILINE)
        wait_for(
            lambda: started.search(log.read_text()) or main.poll() is not None,
            300,
            "the build never reached its slow RUN",
        )
        assert main.poll() is None, log.read_text()[-4000:]
        before = running(cenv, arm)
        assert len(before) == 1, before
        pod, node = before[0]["metadata"]["name"], before[0]["spec"]["nodeName"]
        assert node == cenv["KUBEBUILDX_NODE_ARM64"]
        deleted = subprocess.run(
            [str(SCRIPTS_CLUSTER), "delete-builder-pod", ns, arm],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert deleted.returncode == 0, deleted.stdout + deleted.stderr
        assert f"deleted pod {ns}/{pod}" in deleted.stdout
        main.wait(timeout=300)
    finally:
        if main.poll() is None:
            main.kill()
            main.wait()
    printed = log.read_text()
    assert main.returncode == 6, printed[-4000:]
    said = f"builder pod {ns}/{pod} on node {node} was deleted during the build"
    assert said in printed, printed[-4000:]
    assert "::error" in printed and "re-run the job" in printed
    # outputs and the summary are written before the step fails
    outputs = read_file_commands(Path(env["GITHUB_OUTPUT"]))
    assert outputs["builder"] == builder
    assert outputs["platforms"] == "linux/amd64,linux/arm64"
    assert set(json.loads(outputs["cache-hits"])) <= {"linux/amd64", "linux/arm64"}
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert "### kubebuildx: :x: failed" in summary
    assert said in summary
    # and cleanup still removed the builder
    assert deployments(cenv, builder) == []


def test_with_two_replicas_the_next_build_survives_losing_one(cenv: dict[str, str], tmp_path: Path) -> None:
    builder = "kbx-it-replicas"
    arm = f"{builder}-linux-arm64"
    ns = cenv["KUBEBUILDX_NAMESPACE"]
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM busybox\nRUN uname -m > /arch\n")

    home = tmp_path / "home"  # one HOME: the warm builder's instance file is found there again
    home.mkdir()

    def build() -> Any:
        return kubebuildx(
            [
                "build",
                str(context),
                "--kubeconfig",
                cenv["KUBEBUILDX_KUBECONFIG_ADMIN"],
                "--namespace",
                ns,
                "--builder",
                builder,
                "--platforms",
                "linux/arm64",
                "--driver-opts",
                "replicas=2",
                "--cleanup",
                "false",
                "--build-contexts",
                cenv["KUBEBUILDX_BASE_IMAGE_CONTEXT"],
            ],
            cenv,
            home,
        )

    try:
        first = build()
        assert first.proc.returncode == 0, first.text[-4000:]
        assert deployments(cenv, builder) == [arm]
        wait_for(lambda: len(running(cenv, arm)) == 2, 120, "the builder never had two running replicas")
        # --one deletes the first pod by name, grace 0; podkit kills its BuildKit
        lost = sorted(p["metadata"]["name"] for p in running(cenv, arm))[0]
        deleted = subprocess.run(
            [str(SCRIPTS_CLUSTER), "delete-builder-pod", ns, arm, "--one"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert deleted.returncode == 0, deleted.stdout + deleted.stderr
        assert deleted.stdout.count("deleted pod ") == 1 and f"deleted pod {ns}/{lost}" in deleted.stdout
        wait_for(
            lambda: lost not in {p["metadata"]["name"] for p in pods_of(cenv, arm)},
            60,
            f"pod {lost} was never deleted",
        )
        second = build()
        assert second.proc.returncode == 0, second.text[-4000:]
        assert "was deleted during the build" not in second.text
    finally:
        gone = kubebuildx(["cleanup", builder], cenv, home)
        assert gone.proc.returncode == 0, gone.text[-4000:]
        wait_for(lambda: deployments(cenv, builder) == [], 60, f"{builder}'s Deployment is still there")
