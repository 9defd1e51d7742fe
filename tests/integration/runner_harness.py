"""Run the action's image exactly as GitHub's runner runs a container action.

Mirrors actions/runner (src/Runner.Worker/Handlers/ContainerActionHandler.cs,
src/Runner.Worker/Container/DockerCommandManager.cs DockerRun, ContainerInfo.cs
TranslateToContainerPath), as a current runner logs it:

    docker run --name <id> --label <label> --workdir /github/workspace --rm
      -e "NAME" ... -e GITHUB_ACTIONS=true -e CI=true [--entrypoint "<post>"] [--network <net>]
      -v "/var/run/docker.sock":"/var/run/docker.sock" -v "<work>/_temp":"/github/runner_temp"
      -v "<work>/_temp/_github_home":"/github/home" -v "<work>/_temp/_github_workflow":"/github/workflow"
      -v "<work>/_temp/_runner_file_commands":"/github/file_commands"
      -v "<work>/<repo>/<repo>":"/github/workspace" <image>  "<arg>"...

Values are not on the command line: docker reads each ``-e NAME`` from its own
environment, where the runner put the value translated to the container's path
when it starts with a mounted host path. Every input action.yml declares is
passed (its default when the step does not set it); the post step gets the
same inputs, the post-entrypoint, action.yml's args, and ``STATE_*`` read from
the main step's GITHUB_STATE file (ActionRunner.cs). Differences, on purpose: ``--network host``
instead of the job's network (this machine is loopback only), the engine's own
socket mounted at /var/run/docker.sock, and no ACTIONS_RUNTIME_* (no artifact
service here; the act tests cover artifacts).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cluster_helpers import ROOT, read_file_commands

RUNNER_UID = 1001  # the `runner` user of GitHub's hosted images
RUNNER_GID = 1001
IMAGE_TAG = "kubebuildx-action:runner-test"
DOCKER_LABEL = "8a0b1c"  # the runner labels its containers with a hash of its root folder


@dataclass(frozen=True)
class Layout:
    """A runner's folders on the host: ``<root>/_work`` as a hosted runner has it."""

    work: Path
    repo: str = "octo/app"

    @property
    def name(self) -> str:
        return self.repo.rpartition("/")[2]

    @property
    def temp(self) -> Path:
        return self.work / "_temp"

    @property
    def home(self) -> Path:
        return self.temp / "_github_home"

    @property
    def workflow(self) -> Path:
        return self.temp / "_github_workflow"

    @property
    def file_commands(self) -> Path:
        return self.temp / "_runner_file_commands"

    @property
    def runner_workspace(self) -> Path:
        return self.work / self.name

    @property
    def workspace(self) -> Path:
        return self.runner_workspace / self.name


def lay_out(root: Path, repo: str = "octo/app", uid: int = RUNNER_UID, gid: int = RUNNER_GID) -> Layout:
    layout = Layout(root / "_work", repo)
    for folder in (layout.home, layout.workflow, layout.file_commands, layout.workspace):
        folder.mkdir(parents=True, exist_ok=True)
    (layout.workflow / "event.json").write_text("{}\n")
    chown_tree(layout.work, uid, gid)
    return layout


def chown_tree(path: Path, uid: int = RUNNER_UID, gid: int = RUNNER_GID) -> None:
    os.lchown(path, uid, gid)
    for top, dirs, files in os.walk(path):
        for entry in (*dirs, *files):
            os.lchown(Path(top) / entry, uid, gid)


def mounts(
    layout: Layout, docker_socket: str = "/var/run/docker.sock", *, runner_temp: bool = True
) -> list[tuple[str, str]]:
    """(host, container) in the order of the runner's -v options. ``runner_temp=False``: a
    runner before v2.329.0 (actions/runner#4011), which did not mount _temp itself."""
    return [
        (docker_socket, "/var/run/docker.sock"),
        *([(str(layout.temp), "/github/runner_temp")] if runner_temp else []),
        (str(layout.home), "/github/home"),
        (str(layout.workflow), "/github/workflow"),
        (str(layout.file_commands), "/github/file_commands"),
        (str(layout.workspace), "/github/workspace"),
    ]


def path_mappings(layout: Layout, *, runner_temp: bool = True) -> list[tuple[str, str]]:
    """AddPathTranslateMapping inserts at the front: the last added is tried first."""
    return list(reversed(mounts(layout, runner_temp=runner_temp)[1:]))


def translate(value: str, mappings: Sequence[tuple[str, str]]) -> str:
    """ContainerInfo.TranslateToContainerPath: the whole value, by its start only."""
    for host, container in mappings:
        if value == host:
            return container
        if value.startswith(host + "/"):
            return container + value[len(host) :]
    return value


def docker_run_argv(
    *,
    docker: str,
    name: str,
    image: str,
    env_names: Sequence[str],
    volumes: Sequence[tuple[str, str]],
    args: Sequence[str],
    entrypoint: str = "",
    network: str = "",
    label: str = DOCKER_LABEL,
) -> list[str]:
    """DockerCommandManager.DockerRun's options, as the argv the runner's command line splits into."""
    argv = [docker, "run", "--name", name, "--label", label, "--workdir", "/github/workspace", "--rm"]
    for key in env_names:
        argv += ["-e", key]
    argv += ["-e", "GITHUB_ACTIONS=true"]
    if "CI" not in env_names:
        argv += ["-e", "CI=true"]
    if entrypoint:
        argv += ["--entrypoint", entrypoint]
    if network:
        argv += ["--network", network]
    for host, container in volumes:
        argv += ["-v", f"{host}:{container}"]
    return [*argv, image, *args]


def action_manifest() -> dict[str, object]:
    return dict(yaml.safe_load((ROOT / "action.yml").read_text()))


def input_env(with_: Mapping[str, str], manifest: Mapping[str, object]) -> dict[str, str]:
    """AddInputsToEnvironment: every declared input, the step's value or the default."""
    declared = manifest["inputs"]
    assert isinstance(declared, dict)
    unknown = set(with_) - set(declared)
    assert not unknown, f"action.yml declares no input {sorted(unknown)}"
    out = {}
    for name, spec in declared.items():
        value = with_.get(name, str((spec or {}).get("default", "")))
        out["INPUT_" + name.replace(" ", "_").upper()] = value
    return out


@dataclass
class Step:
    argv: list[str]
    proc: subprocess.CompletedProcess[str]
    seconds: float
    outputs: dict[str, str] = field(default_factory=dict)
    state: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    container_env: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.proc.stdout + self.proc.stderr


@dataclass
class Runner:
    layout: Layout
    image: str
    docker: str
    docker_env: Mapping[str, str]  # PATH and DOCKER_HOST for the docker CLI itself
    docker_socket: str
    runner_temp: bool = True  # False: an older runner that does not mount _temp
    run_id: str = field(default_factory=lambda: str(700000 + uuid.uuid4().int % 99999))

    def context_env(self, files: Mapping[str, Path]) -> dict[str, str]:
        """What the runner exposes of the github and runner contexts, as host paths."""
        lay = self.layout
        return {
            "HOME": str(lay.home),
            "GITHUB_JOB": "build",
            "GITHUB_REF": "refs/heads/main",
            "GITHUB_SHA": "0" * 40,
            "GITHUB_REPOSITORY": lay.repo,
            "GITHUB_REPOSITORY_OWNER": lay.repo.partition("/")[0],
            "GITHUB_RUN_ID": self.run_id,
            "GITHUB_RUN_NUMBER": "1",
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_ACTOR": "octocat",
            "GITHUB_WORKFLOW": "build",
            "GITHUB_EVENT_NAME": "push",
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_API_URL": "https://api.github.com",
            "GITHUB_WORKSPACE": str(lay.workspace),
            "GITHUB_ACTION": "__self",
            "GITHUB_EVENT_PATH": str(lay.workflow / "event.json"),
            "GITHUB_ACTION_REPOSITORY": "",
            "GITHUB_ACTION_REF": "",
            "GITHUB_PATH": str(files["PATH"]),
            "GITHUB_ENV": str(files["ENV"]),
            "GITHUB_STEP_SUMMARY": str(files["STEP_SUMMARY"]),
            "GITHUB_STATE": str(files["STATE"]),
            "GITHUB_OUTPUT": str(files["OUTPUT"]),
            "RUNNER_OS": "Linux",
            "RUNNER_ARCH": "X64",
            "RUNNER_NAME": "GitHub Actions 1",
            "RUNNER_ENVIRONMENT": "github-hosted",
            "RUNNER_TOOL_CACHE": "/opt/hostedtoolcache",
            "RUNNER_TEMP": str(lay.temp),
            "RUNNER_WORKSPACE": str(lay.runner_workspace),
        }

    def file_commands(self) -> dict[str, Path]:
        """A new file per step and command, as the runner makes them (owned by the runner's user)."""
        step = uuid.uuid4().hex
        names = {
            "OUTPUT": "set_output",
            "STATE": "save_state",
            "STEP_SUMMARY": "step_summary",
            "ENV": "set_env",
            "PATH": "add_path",
        }
        files = {}
        for key, prefix in names.items():
            path = self.layout.file_commands / f"{prefix}_{step}"
            path.touch()
            os.lchown(path, RUNNER_UID, RUNNER_GID)
            files[key] = path
        return files

    def run(
        self,
        with_: Mapping[str, str],
        env: Mapping[str, str] | None = None,
        *,
        post_of: Step | None = None,
        timeout: float = 600,
    ) -> Step:
        """The main step, or with ``post_of`` the post step of that main step."""
        manifest = action_manifest()
        runs = manifest["runs"]
        assert isinstance(runs, dict)
        files = self.file_commands()
        # ActionRunner.cs: the env context (job and step env:), then the main step's state;
        # then ContainerActionHandler adds the inputs, HOME and the github/runner contexts.
        ordered: dict[str, str] = dict(env or {})
        if post_of is not None:
            ordered.update({f"STATE_{k}": v for k, v in post_of.state.items()})
        ordered.update(input_env(with_, manifest))
        ordered.update(self.context_env(files))
        mappings = path_mappings(self.layout, runner_temp=self.runner_temp)
        values = {k: translate(v, mappings) for k, v in ordered.items()}
        name = f"kubebuildxactionrunnertest_{uuid.uuid4().hex[:6]}"
        argv = docker_run_argv(
            docker=self.docker,
            name=name,
            image=self.image,
            env_names=list(values),
            volumes=mounts(self.layout, self.docker_socket, runner_temp=self.runner_temp),
            args=[str(a) for a in runs.get("args", [])],
            entrypoint=str(runs["post-entrypoint"]) if post_of is not None else "",
            network="host",
        )
        start = time.monotonic()
        try:
            proc = subprocess.run(
                argv,
                env={**self.docker_env, **values},
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        finally:
            subprocess.run(
                [self.docker, "rm", "--force", name],
                env=dict(self.docker_env),
                capture_output=True,
                check=False,
            )
        step = Step(argv, proc, time.monotonic() - start, container_env=values)
        step.outputs = read_file_commands(files["OUTPUT"])
        step.state = read_file_commands(files["STATE"])
        step.summary = files["STEP_SUMMARY"].read_text()
        return step

    def later_step(self, python: str, *args: str, uid: int = RUNNER_UID) -> subprocess.CompletedProcess[str]:
        """A later step as the runner's user, seeing the same mounts (a `run:` step of a container job)."""
        argv = [self.docker, "run", "--rm", "--network", "host", "--user", f"{uid}:{uid}"]
        for host, container in mounts(self.layout, self.docker_socket)[1:]:
            argv += ["-v", f"{host}:{container}", "-v", f"{host}:{host}"]
        argv += ["--workdir", "/github/workspace", "--entrypoint", "python", self.image, "-c", python, *args]
        return subprocess.run(
            argv, env=dict(self.docker_env), capture_output=True, text=True, timeout=120, check=False
        )


def build_image(docker: str, docker_env: Mapping[str, str], tag: str = IMAGE_TAG) -> float:
    """The image from the unmodified Dockerfile, as the runner builds it (with host networking)."""
    start = time.monotonic()
    proc = subprocess.run(
        [docker, "build", "--network", "host", "-t", tag, "-f", str(ROOT / "Dockerfile"), str(ROOT)],
        env=dict(docker_env),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return time.monotonic() - start


def copy_into(src: Path, dest: Path) -> Path:
    """Copy as a checkout would leave it: owned by the runner's user."""
    if src.is_dir():
        shutil.copytree(src, dest)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
    chown_tree(dest)
    return dest
