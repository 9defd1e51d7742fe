"""type=gha through GitHub's cache service v2, with the real buildx and BuildKit and no cluster.

The argv and the environment are kubebuildx's own (``build.argv``, ``cmd.child_env``) with the
environment a container action gets: ``ACTIONS_RESULTS_URL`` and ``ACTIONS_RUNTIME_TOKEN``, never
``ACTIONS_CACHE_SERVICE_V2``. A build on a cold buildkitd exports to the test server (blobs in
Azurite); a second cold buildkitd imports from it and finds its steps cached.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import subprocess
from collections.abc import Mapping
from pathlib import Path

from buildkit_peer import Daemon, Tools, run_buildkitd
from cache_context import RUN_STEP, make_context
from cache_twirp_server import BRANCH_SCOPE, RunningCache

from kubebuildx import build, cache, cmd
from kubebuildx.inputs import parse_inputs
from kubebuildx.platforms import Platform

HOST = Platform("linux", {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine()))


def tool_env(tmp: Path, tools: Tools) -> dict[str, str]:
    """buildx with a store of its own; nothing of this shell's runner variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_", "ACTIONS_"))}
    env.update(
        {
            "PATH": f"{tools.bin_dir}{os.pathsep}{env.get('PATH', '')}",
            "BUILDX_CONFIG": str(tmp / "buildx"),
            "DOCKER_CONFIG": str(tmp / "docker"),
        }
    )
    return env


def remote_builder(tools: Tools, daemon: Daemon, name: str, env: Mapping[str, str]) -> None:
    subprocess.run(
        [str(tools.buildx), "create", "--name", name, "--driver", "remote", daemon.address],
        env=dict(env),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def vertexes(stream: str) -> dict[str, bool]:
    """Step name → cached, from buildx's ``--progress rawjson``."""
    steps: dict[str, bool] = {}
    for line in stream.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        for vertex in event.get("vertexes") or []:
            name = vertex.get("name", "")
            steps[name] = steps.get(name, False) or bool(vertex.get("cached"))
    return steps


def run_build(
    tools: Tools,
    daemon: Daemon,
    tmp: Path,
    context: Path,
    job_env: Mapping[str, str],
    *,
    cache_from: str = "",
    cache_to: str = "",
    target: Platform = HOST,
    cache_v2: bool | None = None,
) -> tuple[list[str], dict[str, bool], subprocess.CompletedProcess[str]]:
    """One ``buildx build`` as kubebuildx makes it, on a remote builder for ``daemon``.
    ``cache_v2`` overrides kubebuildx's decision, to show what buildx does without it."""
    env = tool_env(tmp, tools)
    name = f"kbx-cache-{secrets.token_hex(4)}"
    remote_builder(tools, daemon, name, env)
    raw = {"context": str(context), "build-contexts": tools.base_image_context}
    raw.update({k: v for k, v in (("cache-from", cache_from), ("cache-to", cache_to)) if v})
    argv = build.argv(
        parse_inputs(raw),
        builder=name,
        platforms=(target,),
        paths=build.BuildPaths(tmp / f"{name}.json", tmp / f"{name}-out"),
        cache_v2=cache.speaks_v2(job_env) if cache_v2 is None else cache_v2,
        buildx=(str(tools.buildx),),
    )
    proc = subprocess.run(
        argv,
        env=cmd.child_env(argv, base={**env, **job_env}),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if cache_v2 is None:
        assert proc.returncode == 0, (
            (proc.stdout + proc.stderr)[-4000:] + "\n" + daemon.log.read_text()[-2000:]
        )
        built = tmp / f"{name}-out" / target.folder
        assert (built / "copied").read_text() == (context / "nonce").read_text()
    return argv, vertexes(proc.stdout + proc.stderr), proc


def run_step(steps: Mapping[str, bool]) -> bool:
    found = [cached for name, cached in steps.items() if RUN_STEP in name]
    assert found, f"no {RUN_STEP!r} step in {sorted(steps)}"
    return found[0]


def test_a_cold_builder_reads_back_what_another_exported_to_the_cache_service_v2(
    tools: Tools, cache_service: RunningCache, tmp_path: Path
) -> None:
    context = make_context(tmp_path / "ctx")
    job = cache_service.env()
    service = cache_service.service

    with run_buildkitd(tools) as first:
        argv, steps, _ = run_build(tools, first, tmp_path, context, job, cache_to="type=gha,mode=max")
    assert not run_step(steps), "the first build is cold"
    scope = f"buildkit-{HOST.slug}"
    exported = argv[argv.index("--cache-to") + 1]
    assert exported == f"type=gha,mode=max,version=2,scope={scope}"
    assert cache_service.token not in " ".join(argv), "the token goes to buildx in its environment"
    assert {"CreateCacheEntry", "FinalizeCacheEntryUpload"} <= set(service.methods_called())
    keys = service.finalized_keys(scope=BRANCH_SCOPE)
    # BuildKit's index key is index-<scope>-1-<hash of the token's write scope>#<n>
    assert any(k.startswith(f"index-{scope}-1-") for k in keys), keys
    assert any(k.startswith("buildkit-blob-1-sha256:") for k in keys), keys
    assert {c.authorization for c in service.calls} == {f"Bearer {cache_service.token}"}

    service.calls.clear()
    with run_buildkitd(tools) as second:
        argv, steps, _ = run_build(tools, second, tmp_path, context, job, cache_from="type=gha")
    assert argv[argv.index("--cache-from") + 1] == f"type=gha,version=2,scope={scope}"
    assert run_step(steps), f"the cold second builder should find the step in the cache: {steps}"
    lookups = [c for c in service.calls if c.method == "GetCacheEntryDownloadURL"]
    assert lookups and all(c.status == 200 for c in lookups)
    assert not {"CreateCacheEntry", "FinalizeCacheEntryUpload"} & set(service.methods_called())


def test_two_single_platform_legs_sharing_the_cache_keep_an_index_each(
    tools: Tools, cache_service: RunningCache, tmp_path: Path
) -> None:
    """A matrix of linux/amd64 and linux/arm64 with the same `cache-to: type=gha,mode=max`:
    each leg gets its own scope, so the second leg's export does not replace the first's
    index, and both rebuild from the cache. (arm64 RUN steps run through binfmt here.)"""
    context = make_context(tmp_path / "ctx")
    job = cache_service.env()
    legs = (Platform("linux", "amd64"), Platform("linux", "arm64"))
    for leg in legs:
        with run_buildkitd(tools) as daemon:
            _, steps, _ = run_build(
                tools, daemon, tmp_path / leg.slug, context, job, cache_to="type=gha,mode=max", target=leg
            )
        assert not run_step(steps)
    keys = cache_service.service.finalized_keys()
    for leg in legs:
        assert any(k.startswith(f"index-buildkit-{leg.slug}-1-") for k in keys), keys
    for leg in legs:
        with run_buildkitd(tools) as daemon:
            _, steps, _ = run_build(
                tools, daemon, tmp_path / f"{leg.slug}-again", context, job, cache_from="type=gha", target=leg
            )
        assert run_step(steps), f"{leg} should rebuild from its own index: {steps}"


def test_without_version_2_buildx_speaks_v1_to_the_results_service_and_the_export_fails(
    tools: Tools, cache_service: RunningCache, tmp_path: Path
) -> None:
    """Why kubebuildx adds version=2: with only the variables a container action gets, buildx
    sends ACTIONS_RESULTS_URL as a v1 `url`, and BuildKit asks it for /_apis/artifactcache/,
    which the results service does not serve."""
    context = make_context(tmp_path / "ctx")
    with run_buildkitd(tools) as daemon:
        argv, _, proc = run_build(
            tools,
            daemon,
            tmp_path,
            context,
            cache_service.env(),
            cache_to="type=gha,mode=max",
            cache_v2=False,
        )
    assert argv[argv.index("--cache-to") + 1] == f"type=gha,mode=max,scope=buildkit-{HOST.slug}"
    assert proc.returncode != 0, "a v1 export to the results service should fail"
    called = cache_service.service.methods_called()
    assert called and all(m.startswith("GET /_apis/artifactcache/cache?") for m in called), called
    assert {c.status for c in cache_service.service.calls} == {404}
