"""The runner-faithful harness (tests/integration/runner_harness.py) builds `docker run` as
actions/runner's ContainerActionHandler does: checked against the command line a runner logs."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import runner_harness
from runner_harness import Layout

LAYOUT = Layout(Path("/home/runner/work"), "octo/app")
# The runner's own log line (DockerCommandManager.DockerRun), for a step with one env: value
# and two inputs; its command line splits into docker's argv as below.
MAIN = (
    '/usr/bin/docker run --name kubebuildxactionrunnertest_1a2b3c --label 8a0b1c '
    '--workdir /github/workspace --rm -e "KUBECONFIG" -e "INPUT_PLATFORMS" -e "INPUT_CONTEXT" '
    '-e "HOME" -e "GITHUB_WORKSPACE" -e "RUNNER_TEMP" -e GITHUB_ACTIONS=true -e CI=true '
    '--network host '
    '-v "/var/run/docker.sock":"/var/run/docker.sock" '
    '-v "/home/runner/work/_temp":"/github/runner_temp" '
    '-v "/home/runner/work/_temp/_github_home":"/github/home" '
    '-v "/home/runner/work/_temp/_github_workflow":"/github/workflow" '
    '-v "/home/runner/work/_temp/_runner_file_commands":"/github/file_commands" '
    '-v "/home/runner/work/app/app":"/github/workspace" '
    'kubebuildx-action:runner-test  "action"'
)  # fmt: skip
ENV_NAMES = ["KUBECONFIG", "INPUT_PLATFORMS", "INPUT_CONTEXT", "HOME", "GITHUB_WORKSPACE", "RUNNER_TEMP"]


def argv(**extra: str) -> list[str]:
    return runner_harness.docker_run_argv(
        docker="/usr/bin/docker",
        name="kubebuildxactionrunnertest_1a2b3c",
        image="kubebuildx-action:runner-test",
        env_names=ENV_NAMES,
        volumes=runner_harness.mounts(LAYOUT),
        args=["action"],
        network="host",
        **extra,
    )


def test_main_step_argv_is_the_runners() -> None:
    assert argv() == shlex.split(MAIN)


def test_post_step_has_the_post_entrypoint_before_the_network_and_keeps_the_args() -> None:
    post = MAIN.replace(
        "-e CI=true --network", '-e CI=true --entrypoint "/usr/local/bin/kubebuildx-post" --network'
    )
    assert argv(entrypoint="/usr/local/bin/kubebuildx-post") == shlex.split(post)


def test_ci_from_the_step_is_not_overridden() -> None:
    got = runner_harness.docker_run_argv(
        docker="docker", name="n", image="i", env_names=["CI"], volumes=[], args=[]
    )
    assert got == shlex.split(
        'docker run --name n --label 8a0b1c --workdir /github/workspace --rm -e "CI" -e GITHUB_ACTIONS=true i'
    )


@pytest.mark.parametrize(
    ("value", "container"),
    [
        ("/home/runner/work/app/app", "/github/workspace"),
        ("/home/runner/work/app/app/sub", "/github/workspace/sub"),
        ("/home/runner/work/_temp/_github_home", "/github/home"),
        ("/home/runner/work/_temp/_runner_file_commands/set_output_1", "/github/file_commands/set_output_1"),
        ("/home/runner/work/_temp/kube/config", "/github/runner_temp/kube/config"),
        ("/home/runner/work/app", "/home/runner/work/app"),  # RUNNER_WORKSPACE is not mounted
        ("/home/runner/work/_temp2/x", "/home/runner/work/_temp2/x"),
        # only the start: a list's second entry stays the host's
        (
            "/home/runner/work/_temp/a:/home/runner/work/_temp/b",
            "/github/runner_temp/a:/home/runner/work/_temp/b",
        ),
        ("", ""),
    ],
)
def test_translate_is_the_runners(value: str, container: str) -> None:
    assert runner_harness.translate(value, runner_harness.path_mappings(LAYOUT)) == container


def test_every_declared_input_is_passed_with_its_default() -> None:
    manifest = {"inputs": {"context": {"default": "."}, "build-args": {}, "no-cache": {"default": "false"}}}
    assert runner_harness.input_env({"build-args": "A=1"}, manifest) == {
        "INPUT_CONTEXT": ".",
        "INPUT_BUILD-ARGS": "A=1",
        "INPUT_NO-CACHE": "false",
    }
    with pytest.raises(AssertionError, match="declares no input"):
        runner_harness.input_env({"nope": "x"}, manifest)


def test_an_older_runner_mounts_only_three_folders_of_temp() -> None:
    volumes = runner_harness.mounts(LAYOUT, runner_temp=False)
    assert ("/home/runner/work/_temp", "/github/runner_temp") not in volumes
    assert len(volumes) == 5
    mappings = runner_harness.path_mappings(LAYOUT, runner_temp=False)
    assert runner_harness.translate("/home/runner/work/_temp/x", mappings) == "/home/runner/work/_temp/x"
