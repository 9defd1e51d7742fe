"""Caches across ephemeral builders on the one-machine cluster (issue 11).

Every builder here is removed at the end of its run (cleanup: true, the default) and every
builder pod gets its own buildkitd, so the second builder starts cold: a step it reports
CACHED came from the external cache, never from a daemon's local store. Each test builds a
context with a fresh random file, so nothing else on the cluster has built it before.

- registry: cache-to/cache-from type=registry against the loopback registry;
- gha: type=gha through the container action with the variables a runner gives it
  (ACTIONS_RESULTS_URL, ACTIONS_RUNTIME_TOKEN; never ACTIONS_CACHE_SERVICE_V2), against the
  cache service v2 test server (tests/integration/cache) with its blobs in Azurite;
- two single-platform legs (linux/amd64, linux/arm64) with the same cache inputs: each
  keeps its own index, so both rebuild from the cache.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_helpers import KUBEBUILDX, build_argv, cluster_env, deployments, kubebuildx, runner_env

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE / "cache"), str(HERE / "artifacts")]  # the cache server, Azurite

from artifact_peers import install_peers, run_azurite  # noqa: E402
from cache_context import RUN_STEP, make_context  # noqa: E402
from cache_twirp_server import RunningCache, serve  # noqa: E402
from loopback_registry import Registry  # noqa: E402

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cenv() -> dict[str, str]:
    return cluster_env()


@pytest.fixture(scope="module")
def cache_server() -> Iterator[RunningCache]:
    with run_azurite(install_peers()) as azurite, serve(azurite.endpoint) as running:
        yield running


@pytest.fixture
def cache_service(cache_server: RunningCache) -> Iterator[RunningCache]:
    cache_server.service.reset()
    yield cache_server
    cache_server.service.reset()


def run_step_cached(text: str) -> bool:
    """kubebuildx's plain log (progress.py) says `#N CACHED <name>` for a step from a cache."""
    assert RUN_STEP in text, text[-3000:]
    return re.search(rf"^#\d+ CACHED .*{re.escape(RUN_STEP)}", text, re.MULTILINE) is not None


def builder_name(what: str) -> str:
    return f"kbx-it-cache-{what}-{secrets.token_hex(3)}"


def cli_build(
    cenv: dict[str, str], home: Path, context: Path, platform: str, builder: str, *cache_args: str, **env: str
) -> str:
    run = kubebuildx(
        build_argv(cenv, context, builder, platform, "--upload-artifacts", "false", *cache_args),
        cenv,
        home,
        extra=env,
    )
    assert run.proc.returncode == 0, run.text[-4000:]
    assert deployments(cenv, builder) == [], "cleanup removed the builder: the next one starts cold"
    return run.text


def test_registry_cache_carries_steps_to_a_fresh_builder(
    cenv: dict[str, str], plain: Registry, tmp_path: Path
) -> None:
    context = make_context(tmp_path / "ctx")
    repo = f"kbx-cache-{secrets.token_hex(4)}"
    ref = f"{plain.address}/{repo}:cache"  # names no platform: a single-platform job makes it its own

    first = cli_build(
        cenv,
        tmp_path / "first",
        context,
        "linux/amd64",
        builder_name("reg-1"),
        "--cache-to",
        f"type=registry,ref={ref},mode=max",
    )
    assert not run_step_cached(first), "the first builder is cold"
    assert f"cache-to: {ref} -> {ref}-linux-amd64: a single-platform job keeps" in first
    assert plain.exists(repo, "cache-linux-amd64"), "the cache manifest is under the platform's own tag"
    assert not plain.exists(repo, "cache")

    second = cli_build(
        cenv,
        tmp_path / "second",
        context,
        "linux/amd64",
        builder_name("reg-2"),
        "--cache-from",
        f"type=registry,ref={ref}",
    )
    assert run_step_cached(second), second[-3000:]


def test_gha_cache_v2_through_the_action_carries_steps_to_a_fresh_builder(
    cenv: dict[str, str], cache_service: RunningCache, tmp_path: Path
) -> None:
    context = make_context(tmp_path / "ctx")
    service = cache_service.service
    printed = []
    for attempt, inputs in (
        ("first", {"INPUT_CACHE-TO": "type=gha,mode=max"}),
        ("second", {"INPUT_CACHE-FROM": "type=gha"}),
    ):
        env = runner_env(tmp_path / attempt, cenv)
        env.update(
            cache_service.env()
        )  # what the runner gives a container action: no ACTIONS_CACHE_SERVICE_V2
        env.update(
            {
                "INPUT_KUBECONFIG": Path(cenv["KUBEBUILDX_KUBECONFIG_LIMITED"]).read_text(),
                "INPUT_NAMESPACE": cenv["KUBEBUILDX_NAMESPACE"],
                "INPUT_PLATFORMS": "linux/arm64",
                "INPUT_BUILDER": builder_name(f"gha-{attempt}"),
                "INPUT_CONTEXT": str(context),
                "INPUT_BUILD-CONTEXTS": cenv["KUBEBUILDX_BASE_IMAGE_CONTEXT"],
                "INPUT_UPLOAD-ARTIFACTS": "false",  # ACTIONS_RESULTS_URL here serves the cache only
                "INPUT_CLEANUP": "true",
                **inputs,
            }
        )
        main = subprocess.run(
            [str(KUBEBUILDX), "action"], env=env, capture_output=True, text=True, timeout=600, check=False
        )
        text = main.stdout + main.stderr
        assert main.returncode == 0, text[-4000:]
        assert deployments(cenv, env["INPUT_BUILDER"]) == []
        printed.append(text)
        if attempt == "first":
            assert not run_step_cached(text)
            assert "type=gha,mode=max,version=2,scope=buildkit-linux-arm64" in text  # the argv, as printed
            assert any(k.startswith("index-buildkit-linux-arm64-1-") for k in service.finalized_keys()), (
                service.finalized_keys()
            )
            service.calls.clear()
    assert run_step_cached(printed[1]), printed[1][-3000:]
    assert "GetCacheEntryDownloadURL" in service.methods_called()
    assert {c.authorization for c in service.calls} == {f"Bearer {cache_service.token}"}
    shown = "\n".join(line for t in printed for line in t.splitlines() if not line.startswith("::add-mask::"))
    assert cache_service.token not in shown


def test_two_single_platform_legs_with_the_same_gha_inputs_both_rebuild_from_the_cache(
    cenv: dict[str, str], cache_service: RunningCache, tmp_path: Path
) -> None:
    """The matrix recipe without a scope per leg: without kubebuildx's per-platform default
    the arm64 leg's export would replace the amd64 leg's index, and amd64 would rebuild."""
    context = make_context(tmp_path / "ctx")
    legs = ("linux/amd64", "linux/arm64")
    same = ("--cache-from", "type=gha", "--cache-to", "type=gha,mode=max")
    for leg in legs:
        slug = leg.replace("/", "-")
        text = cli_build(
            cenv,
            tmp_path / f"{slug}-1",
            context,
            leg,
            builder_name(f"leg-{slug}"),
            *same,
            **cache_service.env(),
        )
        assert not run_step_cached(text), f"{leg}'s first build is cold"
    keys = cache_service.service.finalized_keys()
    for leg in legs:
        assert any(k.startswith(f"index-buildkit-{leg.replace('/', '-')}-1-") for k in keys), keys
    for leg in legs:
        slug = leg.replace("/", "-")
        text = cli_build(
            cenv,
            tmp_path / f"{slug}-2",
            context,
            leg,
            builder_name(f"leg2-{slug}"),
            *same,
            **cache_service.env(),
        )
        assert run_step_cached(text), f"{leg} should rebuild from its own index:\n{text[-3000:]}"


def test_two_single_platform_legs_sharing_one_registry_ref_both_rebuild_from_the_cache(
    cenv: dict[str, str], plain: Registry, tmp_path: Path
) -> None:
    """The same matrix recipe with one registry ref for both legs: each leg's export lands
    under its own platform's tag, so neither replaces the other's."""
    context = make_context(tmp_path / "ctx")
    repo = f"kbx-legs-{secrets.token_hex(4)}"
    ref = f"{plain.address}/{repo}:cache"
    same = ("--cache-from", f"type=registry,ref={ref}", "--cache-to", f"type=registry,ref={ref},mode=max")
    legs = ("linux/amd64", "linux/arm64")
    for leg in legs:
        slug = leg.replace("/", "-")
        text = cli_build(cenv, tmp_path / f"{slug}-1", context, leg, builder_name(f"rleg-{slug}"), *same)
        assert not run_step_cached(text), f"{leg}'s first build is cold"
    for leg in legs:
        assert plain.exists(repo, f"cache-{leg.replace('/', '-')}")
    for leg in legs:
        slug = leg.replace("/", "-")
        text = cli_build(cenv, tmp_path / f"{slug}-2", context, leg, builder_name(f"rleg2-{slug}"), *same)
        assert run_step_cached(text), f"{leg} should rebuild from its own cache:\n{text[-3000:]}"
