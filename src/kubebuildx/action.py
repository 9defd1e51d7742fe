"""The container action's entrypoints.

``kubebuildx action`` reads the ``INPUT_*`` variables exactly as a runner
passes them to a container action (upper-cased name, hyphens kept: INPUT_BUILD-ARGS)
and runs the same pipeline as the CLI. ``kubebuildx action --post`` is the
post-entrypoint: it reads the state the main step saved and removes what the
main step's own cleanup (at its end, cancelled or not) could not.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from kubebuildx import cache, cleanup, cmd, hostpaths, kubeconfig, pipeline, registry, runner
from kubebuildx.action_spec import INPUTS
from kubebuildx.errors import KubebuildxError
from kubebuildx.inputs import Inputs, parse_inputs


def raw_inputs(env: Mapping[str, str]) -> dict[str, str]:
    """Our inputs from the environment; absent ones keep their defaults."""
    out = {}
    for spec in INPUTS:
        key = "INPUT_" + spec.name.replace(" ", "_").upper()
        if key in env:
            out[spec.name] = env[key]
    return out


def mask_secret_inputs(env: Mapping[str, str]) -> None:
    """Before anything is printed, in each step: the post step is a process of its own."""
    runner.mask(env.get("INPUT_KUBECONFIG", "").strip())
    runner.mask(env.get("INPUT_PASSWORD", ""))
    runner.mask(env.get("INPUT_TOKEN", "").strip())
    runner.mask(env.get("INPUT_DOCKER-CONFIG", "").strip())
    runner.mask(env.get("ACTIONS_RUNTIME_TOKEN", ""))  # buildx gets it for the gha cache
    cache.mask_tokens([env.get("INPUT_CACHE-FROM", ""), env.get("INPUT_CACHE-TO", "")])


def main(env: Mapping[str, str] | None = None) -> int:
    if env is None:
        env = dict(os.environ)
        cmd.withhold_from_environment()  # no exec plugin inherits INPUT_* or the runner's tokens
    env = dict(env)
    with runner.group("Reading inputs"):
        mask_secret_inputs(env)
        mounts = hostpaths.mount_table(env)
        inputs = from_job(parse_inputs(raw_inputs(env), mounts), env, mounts)
        runner.info(
            f"platforms: {', '.join(map(str, inputs.platforms)) or '(all the cluster serves natively)'}"
        )
    if inputs.mode == "merge":
        return pipeline.merge_all(inputs, env)
    return pipeline.build_all(inputs, env, in_action=True)


def from_job(inputs: Inputs, env: Mapping[str, str], mounts: hostpaths.Mounts) -> Inputs:
    """``$KUBECONFIG`` and ``$DOCKER_CONFIG`` that earlier steps exported (azure/k8s-set-context,
    docker/login-action), used when the inputs leave them empty, as the container sees them."""
    if inputs.mode == "build" and not (inputs.kubeconfig.strip() or inputs.server) and env.get("KUBECONFIG"):
        files = hostpaths.env_paths("KUBECONFIG", env["KUBECONFIG"], mounts)
        text = kubeconfig.merge_files(files, lambda p: hostpaths.path_in("$KUBECONFIG", p, mounts))
        inputs = replace(inputs, kubeconfig=text)
        runner.info(f"kubeconfig: $KUBECONFIG ({', '.join(files)})")
    if not (inputs.username or inputs.password or inputs.docker_config.strip()) and env.get("DOCKER_CONFIG"):
        # Also where buildx keeps its store, which the post step needs: never a folder that
        # vanishes with this container.
        folder = hostpaths.path_in("$DOCKER_CONFIG", env["DOCKER_CONFIG"], mounts)
        text = registry.from_job(Path(folder))
        if text:
            inputs = replace(inputs, docker_config=text)
            runner.info(f"registry credentials: $DOCKER_CONFIG ({folder})")
    return inputs


def post(env: Mapping[str, str] | None = None) -> int:
    """What the main step could not finish (it cleans up at its end, cancelled or not)."""
    if env is None:
        env = dict(os.environ)
        cmd.withhold_from_environment()
    env = dict(env)
    mask_secret_inputs(env)
    state = cleanup.PostState.load(env)
    if not (state.builder or state.workdir):
        runner.info("nothing to clean up")
        return 0
    try:  # the same inputs as the main step's: they give the kubeconfig and namespace again
        mounts = hostpaths.mount_table(env)
        inputs: Inputs | None = from_job(parse_inputs(raw_inputs(env), mounts), env, mounts)
    except KubebuildxError:
        inputs = None
    pipeline.post_clean_up(state, inputs, env)
    return 0
