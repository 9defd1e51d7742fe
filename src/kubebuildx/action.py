"""The container action's entrypoints.

``kubebuildx action`` reads the ``INPUT_*`` variables exactly as a runner
passes them to a container action (upper-cased name, hyphens kept: INPUT_BUILD-ARGS)
and runs the same pipeline as the CLI. ``kubebuildx action --post`` is the
post-entrypoint: it reads the state the main step saved and cleans up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from kubebuildx import cleanup, cmd, pipeline, runner
from kubebuildx.action_spec import INPUTS
from kubebuildx.inputs import parse_inputs


def raw_inputs(env: Mapping[str, str]) -> dict[str, str]:
    """Our inputs from the environment; absent ones keep their defaults."""
    out = {}
    for spec in INPUTS:
        key = "INPUT_" + spec.name.replace(" ", "_").upper()
        if key in env:
            out[spec.name] = env[key]
    return out


def main(env: Mapping[str, str] | None = None) -> int:
    if env is None:
        env = dict(os.environ)
        cmd.withhold_from_environment()  # no exec plugin inherits INPUT_* or the runner's tokens
    env = dict(env)
    with runner.group("Reading inputs"):
        secret = env.get("INPUT_KUBECONFIG", "")
        runner.mask(secret.strip())
        runner.mask(env.get("INPUT_PASSWORD", ""))
        runner.mask(env.get("INPUT_DOCKER-CONFIG", "").strip())
        inputs = parse_inputs(raw_inputs(env))
        runner.info(
            f"platforms: {', '.join(map(str, inputs.platforms)) or '(all the cluster serves natively)'}"
        )
    if inputs.mode == "merge":
        return pipeline.merge_all(inputs, env)
    return pipeline.build_all(inputs, env, post_cleanup=True)


def post(env: Mapping[str, str] | None = None) -> int:
    if env is None:
        env = dict(os.environ)
        cmd.withhold_from_environment()
    env = dict(env)
    state = cleanup.PostState.load(env)
    if not (state.builder or state.workdir):
        runner.info("nothing to clean up")
        return 0
    pipeline.clean_up(
        Path(state.store) if state.store else Path(),
        state.builder,
        Path(state.workdir) if state.workdir else None,
        state.remove_builder,
        forget_warm=True,
    )
    return 0
