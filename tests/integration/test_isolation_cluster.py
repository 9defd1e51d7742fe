"""Every builder pod has its own BuildKit (hack/cluster/podkit.py), as on a real cluster:
a fresh builder starts cold, a warm one keeps its cache, two jobs never share a daemon."""

from __future__ import annotations

import re
import secrets
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cluster_helpers import api_json, build_argv, cluster_env, deployments, kubebuildx

pytestmark = pytest.mark.cluster

POD_LABEL = "kubebuildx.dev/pod"  # the worker label podkit gives each pod's daemon


@pytest.fixture(scope="module")
def cenv() -> dict[str, str]:
    return cluster_env()


def unique_context(tmp: Path, seconds: int = 0) -> Path:
    """A context nobody has built before: its first RUN writes a fresh nonce."""
    context = tmp / f"ctx-{secrets.token_hex(4)}"
    context.mkdir()
    nonce = secrets.token_hex(8)
    (context / "Dockerfile").write_text(
        "FROM busybox\n"
        f"RUN echo {nonce} > /nonce && sleep {seconds}\n"
        "RUN cat /nonce /nonce > /twice\n"
        "FROM scratch\n"
        "COPY --from=0 /twice /\n"
    )
    return context


def run_steps(text: str) -> dict[str, bool]:
    """RUN step name -> whether the plain log said it was CACHED."""
    steps: dict[str, bool] = {}
    for match in re.finditer(r"^#\d+ (?:(CACHED) )?(\[[^\]]+\] RUN .*)$", text, re.MULTILINE):
        steps[match.group(2)] = steps.get(match.group(2), False) or bool(match.group(1))
    return steps


def test_a_fresh_builder_starts_cold_even_after_another_built_the_same_context(
    cenv: dict[str, str], tmp_path: Path
) -> None:
    context = unique_context(tmp_path)
    first = kubebuildx(build_argv(cenv, context, "kbx-it-cold-a", "linux/amd64"), cenv, tmp_path / "a")
    assert first.proc.returncode == 0, first.text[-4000:]
    second = kubebuildx(build_argv(cenv, context, "kbx-it-cold-b", "linux/amd64"), cenv, tmp_path / "b")
    assert second.proc.returncode == 0, second.text[-4000:]
    for run in (first, second):
        steps = run_steps(run.text)
        assert len(steps) == 2, run.text[-3000:]
        assert not any(steps.values()), f"a fresh builder reported cached steps: {steps}"


def test_a_warm_builder_serves_its_second_build_from_cache(cenv: dict[str, str], tmp_path: Path) -> None:
    context = unique_context(tmp_path)
    args = build_argv(cenv, context, "kbx-it-warm-cache", "linux/arm64", "--cleanup", "false")
    try:
        first = kubebuildx(args, cenv, tmp_path)
        assert first.proc.returncode == 0, first.text[-4000:]
        assert not any(run_steps(first.text).values())
        second = kubebuildx(args, cenv, tmp_path)
        assert second.proc.returncode == 0, second.text[-4000:]
        steps = run_steps(second.text)
        assert steps and all(steps.values()), f"the warm builder rebuilt: {steps}"
    finally:
        kubebuildx(["cleanup", "kbx-it-warm-cache"], cenv, tmp_path)


def worker_pod(cenv: dict[str, str], home: Path, builder: str) -> str:
    """The pod whose daemon answered `buildx inspect`, from its worker label."""
    env_home = {"DOCKER_CONFIG": str(home / "docker"), "HOME": str(home)}
    out = subprocess.run(
        [f"{cenv['KUBEBUILDX_BIN']}/buildx", "inspect", builder],
        capture_output=True,
        text=True,
        env={"PATH": f"{cenv['KUBEBUILDX_BIN']}:/usr/bin:/bin", **env_home},
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    labels = re.findall(rf"{re.escape(POD_LABEL)}:\s+(\S+)", out.stdout)
    assert len(labels) == 1, out.stdout
    return labels[0]


def test_two_concurrent_jobs_on_one_architecture_never_share_a_daemon(
    cenv: dict[str, str], tmp_path: Path
) -> None:
    context = unique_context(tmp_path, seconds=3)
    builders = ("kbx-it-iso-1", "kbx-it-iso-2")
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:  # two jobs at once
            runs = list(
                pool.map(
                    lambda b: kubebuildx(
                        build_argv(cenv, context, b, "linux/arm64", "--cleanup", "false"), cenv, tmp_path / b
                    ),
                    builders,
                )
            )
        for run in runs:
            assert run.proc.returncode == 0, run.text[-4000:]
        seen = {}
        for builder in builders:
            pod = worker_pod(cenv, tmp_path / builder, builder)
            namespace, _, name = pod.partition("/")
            assert namespace == cenv["KUBEBUILDX_NAMESPACE"]
            # the daemon that answered is the one started for this builder's own pod
            assert name.startswith(f"{builder}-linux-arm64-"), pod
            body = api_json(cenv, f"/api/v1/namespaces/{namespace}/pods/{name}")
            assert body.get("spec", {}).get("nodeName") == "kwok-arm64"
            seen[builder] = pod
        assert len(set(seen.values())) == 2, seen
    finally:
        for builder in builders:
            kubebuildx(["cleanup", builder], cenv, tmp_path / builder)
    deadline = time.monotonic() + 30
    while any(deployments(cenv, b) for b in builders) and time.monotonic() < deadline:
        time.sleep(0.5)
