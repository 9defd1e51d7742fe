"""The container action's entrypoints, run the way a runner runs them: INPUT_*
variables (hyphens kept), GITHUB_OUTPUT / GITHUB_STEP_SUMMARY / GITHUB_STATE
files, then the post-entrypoint with STATE_* variables."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from cluster_helpers import (
    KUBEBUILDX,
    ROOT,
    cluster_env,
    deployments,
    read_file_commands,
    runner_env,
    secrets_of,
)

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cenv() -> dict[str, str]:
    return cluster_env()


def post_step(env: dict[str, str], state: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The post-entrypoint as a runner starts it: the main step's state as STATE_* variables."""
    post_env = {**env, **{f"STATE_{k}": v for k, v in state.items()}}
    return subprocess.run(
        [str(KUBEBUILDX), "action", "--post"],
        env=post_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_action_writes_outputs_and_summary_and_post_cleans_up(cenv: dict[str, str], tmp_path: Path) -> None:
    env = runner_env(tmp_path, cenv)
    kubeconfig_text = Path(cenv["KUBEBUILDX_KUBECONFIG_LIMITED"]).read_text()
    env.update(
        {
            "INPUT_KUBECONFIG": base64.b64encode(kubeconfig_text.encode()).decode(),
            "INPUT_NAMESPACE": cenv["KUBEBUILDX_NAMESPACE"],
            "INPUT_PLATFORMS": "linux/amd64\nlinux/arm64",
            "INPUT_CONTEXT": str(ROOT / "tests" / "fixtures" / "contexts" / "multistage"),
            "INPUT_BUILD-CONTEXTS": cenv["KUBEBUILDX_BASE_IMAGE_CONTEXT"],
            "INPUT_BUILD-ARGS": "GREETING=from-action",
            "INPUT_CLEANUP": "true",
            "INPUT_UPLOAD-ARTIFACTS": "true",
            "INPUT_NO-CACHE": "true",  # so that every step really runs and has a duration
        }
    )
    main = subprocess.run(
        [str(KUBEBUILDX), "action"], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    printed = main.stdout + main.stderr
    assert main.returncode == 0, printed[-4000:]
    assert "::group::Booting builder" in printed and "::endgroup::" in printed
    outputs = read_file_commands(Path(env["GITHUB_OUTPUT"]))
    builder = outputs["builder"]
    assert builder.startswith("kbx-4242-")
    assert outputs["platforms"] == "linux/amd64,linux/arm64"
    nodes = json.loads(outputs["nodes"])
    assert {(n["platform"], n["kubernetes-node"]) for n in nodes} == {
        ("linux/amd64", cenv["KUBEBUILDX_NODE_AMD64"]),
        ("linux/arm64", cenv["KUBEBUILDX_NODE_ARM64"]),
    }
    durations = json.loads(outputs["durations"])
    assert set(durations) == {"linux/amd64", "linux/arm64"} and all(v > 0 for v in durations.values())
    out = Path(outputs["output-dir"])
    assert (out / "linux_arm64" / "greeting").read_text().strip() == "from-action"
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert "| Step | `linux/amd64` | `linux/arm64` |" in summary, summary
    assert cenv["KUBEBUILDX_NODE_ARM64"] in summary and "**Total**" in summary
    # the main step cleans up at its end: the builder is gone, and so is its kubeconfig
    state = read_file_commands(Path(env["GITHUB_STATE"]))
    kubeconfig_file = Path(state["workdir"]) / "kubeconfig"
    assert not kubeconfig_file.exists() and not Path(state["workdir"]).exists()
    assert deployments(cenv, builder) == [], "removed by the main step"
    assert state["done"] == "true"

    post = post_step(env, state)
    assert post.returncode == 0, post.stdout + post.stderr
    assert "nothing left to clean up" in post.stdout
    assert deployments(cenv, builder) == []

    # No secret of the kubeconfig anywhere: logs, outputs, summary, state, files written
    # `::add-mask::` lines are consumed by the runner, never shown: they are how a secret gets masked.
    shown = [
        line
        for line in (printed + post.stdout + post.stderr).splitlines()
        if not line.startswith("::add-mask::")
    ]
    everything = "\n".join(shown)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            everything += path.read_bytes().decode("utf-8", "replace")
    for secret in [*secrets_of(Path(cenv["KUBEBUILDX_KUBECONFIG_LIMITED"])), env["INPUT_KUBECONFIG"]]:
        assert secret not in everything


def test_action_bad_input_fails_before_anything_runs(cenv: dict[str, str], tmp_path: Path) -> None:
    env = runner_env(tmp_path, cenv)
    env.update(
        {
            "INPUT_KUBECONFIG": Path(cenv["KUBEBUILDX_KUBECONFIG_ADMIN"]).read_text(),
            "INPUT_PLATFORMS": "linux/amd64,arm64/linux",
            "INPUT_CLEANUP": "true",
        }
    )
    run = subprocess.run(
        [str(KUBEBUILDX), "action"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 2
    assert "::error title=Invalid input::" in run.stdout
    assert "arm64/linux" in run.stdout
    assert "Invalid input" in Path(env["GITHUB_STEP_SUMMARY"]).read_text()


def test_the_kubeconfig_is_deleted_when_a_failed_preflight_ends_the_main_step(
    cenv: dict[str, str], tmp_path: Path
) -> None:
    env = runner_env(tmp_path, cenv)
    env.update(
        {
            "INPUT_KUBECONFIG": Path(cenv["KUBEBUILDX_KUBECONFIG_LIMITED"]).read_text(),
            "INPUT_NAMESPACE": cenv["KUBEBUILDX_NAMESPACE"],
            "INPUT_PLATFORMS": "linux/s390x",
        }
    )
    main = subprocess.run(
        [str(KUBEBUILDX), "action"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert main.returncode == 4, main.stdout + main.stderr
    assert "::error title=Cluster preflight failed::" in main.stdout
    state = read_file_commands(Path(env["GITHUB_STATE"]))
    assert not Path(state["workdir"]).exists(), "deleted by the main step, failed as it is"
    post = post_step(env, state)
    assert post.returncode == 0, post.stdout + post.stderr
    assert not Path(state["workdir"]).exists()


def test_a_warm_builder_outlives_the_job_but_its_kubeconfig_does_not(
    cenv: dict[str, str], tmp_path: Path
) -> None:
    """cleanup: false keeps the Deployments for the next run's cache; the credentials never stay."""
    kubeconfig = Path(cenv["KUBEBUILDX_KUBECONFIG_LIMITED"]).read_text()
    common = {
        "INPUT_KUBECONFIG": kubeconfig,
        "INPUT_NAMESPACE": cenv["KUBEBUILDX_NAMESPACE"],
        "INPUT_PLATFORMS": "linux/arm64",
        "INPUT_BUILDER": "kbx-it-warm-action",
        "INPUT_CONTEXT": str(ROOT / "tests" / "fixtures" / "contexts" / "scratch"),
    }
    for attempt, cleanup in (("first", "false"), ("second", "true")):
        env = runner_env(tmp_path / attempt, cenv)
        env.update({**common, "INPUT_CLEANUP": cleanup})
        main = subprocess.run(
            [str(KUBEBUILDX), "action"], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert main.returncode == 0, (main.stdout + main.stderr)[-3000:]
        state = read_file_commands(Path(env["GITHUB_STATE"]))
        post = post_step(env, state)
        assert post.returncode == 0, post.stdout + post.stderr
        store = Path(env["HOME"]) / ".docker" / "buildx"
        assert not (store / "instances" / "kbx-it-warm-action").exists()
        assert not list(tmp_path.rglob("*.kubeconfig")), "no kubeconfig copy outlives the job"
        assert not Path(state["workdir"]).exists()
        if cleanup == "false":
            assert deployments(cenv, "kbx-it-warm-action") == ["kbx-it-warm-action-linux-arm64"]
    # the second run found the warm Deployment, built on it, and its cleanup removed it
    assert deployments(cenv, "kbx-it-warm-action") == []


def _groups(printed: str) -> list[str]:
    return [line.removeprefix("::group::") for line in printed.splitlines() if line.startswith("::group::")]


def test_the_log_groups_of_a_real_job_come_in_the_order_of_the_stages(
    cenv: dict[str, str], tmp_path: Path
) -> None:
    """pipeline.py reads like the log: this is the log, from a real builder on the real cluster."""
    env = runner_env(tmp_path, cenv)
    env.update(
        {
            "INPUT_KUBECONFIG": Path(cenv["KUBEBUILDX_KUBECONFIG_LIMITED"]).read_text(),
            "INPUT_NAMESPACE": cenv["KUBEBUILDX_NAMESPACE"],
            "INPUT_PLATFORMS": "linux/amd64,linux/arm64",
            "INPUT_BUILDER": "kbx-it-order",
            "INPUT_CONTEXT": str(ROOT / "tests" / "fixtures" / "contexts" / "scratch"),
        }
    )
    main = subprocess.run(
        [str(KUBEBUILDX), "action"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert main.returncode == 0, (main.stdout + main.stderr)[-3000:]
    post = post_step(env, read_file_commands(Path(env["GITHUB_STATE"])))
    assert post.returncode == 0, post.stdout + post.stderr
    assert _groups(main.stdout) == [
        "Reading inputs",
        "Connecting to the cluster",
        "Preflight",
        "Writing the builder instance",
        "Booting builder kbx-it-order",
        "Checking each node builds natively",
        "Building linux/amd64, linux/arm64",
        "Outputs and summary",
        "Cleanup",
    ]
    assert main.stdout.count("::group::") == main.stdout.count("::endgroup::")
    assert _groups(post.stdout) == ["Cleanup"]
    assert deployments(cenv, "kbx-it-order") == []
