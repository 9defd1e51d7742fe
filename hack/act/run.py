"""Runs act (github.com/nektos/act), the open runner, against the one-machine cluster.

act reads action.yml and workflow files as GitHub's runner does, and runs the
action image in the proving ground's Docker engine. Here it runs offline and on
loopback only:
  --pull=false --action-offline-mode   nothing is fetched; images are local
  --rebuild=false                      the action image is built beforehand with
                                       `docker build --network host` under the tag act
                                       derives for `uses: ./` (act-dockeraction:latest):
                                       with --bridge=none, act's own build has no network
  -P ubuntu-latest=<job image>         the bookworm stand-in as the job container
  --network host                       every container on the host's network
  --container-daemon-socket -          no Docker socket in the containers
  --artifact-server-addr 127.0.0.1     act's defaults bind its servers to a non-loopback
  --no-cache-server                    address; the artifact one is kept on loopback, the
                                       cache one is not started
  --rm                                 remove the job containers after a failure too (act
                                       keeps them by default, for debugging)
Secrets go to act in a 0600 file (--secret-file) that is deleted afterwards, never
on a command line.

Usage: scripts/act [--no-build] [--workdir DIR] [--artifacts DIR] -- ACT-ARGS...
  (everything after `--` goes to act: -W workflow.yml, -j job, --bind, --env NAME=..., ...)
  Secrets: --secret NAME=VAR gives the workflow secrets.NAME the value of $VAR
  (--secret NAME alone reads $NAME).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import artifact_shim  # beside this file, which scripts/act runs as a script

REPO = Path(__file__).resolve().parents[2]
# act names a local Dockerfile action's image "act-" + its path with every
# non-alphanumeric character as "-" + "-dockeraction:latest", trimmed of leading
# dashes (pkg/runner/action.go, execAsDocker): `uses: ./` gives this.
ACTION_IMAGE = "act-dockeraction:latest"


@dataclass(frozen=True)
class Tools:
    """What the proving ground provides to run act: read from `scripts/cluster env --json`."""

    act: str
    docker: str  # Debian's docker CLI (the engine's own version)
    docker_host: str
    job_image: str

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.docker_host}


def cluster_env() -> dict[str, object]:
    out = subprocess.run(
        [str(REPO / "scripts" / "cluster"), "env", "--json"], check=True, capture_output=True, text=True
    ).stdout
    info: dict[str, object] = json.loads(out)
    return info


def tools(info: Mapping[str, object]) -> Tools:
    docker = info["docker"]
    assert isinstance(docker, dict)
    return Tools(str(docker["act"]), str(docker["cli"]), str(docker["host"]), str(docker["job_image"]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_action_image(t: Tools, context: Path, tag: str = ACTION_IMAGE, timeout: float = 900) -> str:
    """The unmodified Dockerfile, built as the runner would but with the host's network.
    Returns the image id, so that a caller can tell whether the tag moved under it
    (the tag is shared by everyone who runs act on this engine)."""
    subprocess.run(
        [t.docker, "build", "--network", "host", "-t", tag, str(context)],
        check=True,
        env=t.env,
        timeout=timeout,
    )
    return image_id(t, tag)


def image_id(t: Tools, tag: str = ACTION_IMAGE) -> str:
    out = subprocess.run(
        [t.docker, "image", "inspect", "--format", "{{.Id}}", tag],
        check=True,
        capture_output=True,
        text=True,
        env=t.env,
    )
    return out.stdout.strip()


def act_argv(act: str, job_image: str, artifacts: Path, port: int, extra: Sequence[str]) -> list[str]:
    return [
        act,
        "--pull=false",
        "--action-offline-mode",
        "--rebuild=false",
        "-P",
        f"ubuntu-latest={job_image}",
        "--network",
        "host",
        "--container-daemon-socket",
        "-",
        "--artifact-server-path",
        str(artifacts),
        "--artifact-server-addr",
        "127.0.0.1",
        "--artifact-server-port",
        str(port),
        "--no-cache-server",
        "--rm",
        *extra,
    ]


def secret_file_lines(secrets: Mapping[str, str]) -> str:
    """act reads --secret-file as a dotenv file: one NAME=value a line, so a value
    must be one line (pass a kubeconfig base64-encoded; the action accepts both)."""
    for name, value in secrets.items():
        if "\n" in value or not name.isidentifier():
            raise ValueError(f"secret {name}: one line, and a name of letters, digits and _")
    return "".join(f"{name}={value}\n" for name, value in secrets.items())


def run(
    t: Tools,
    workdir: Path,
    act_args: Sequence[str],
    *,
    artifacts: Path,
    secrets: Mapping[str, str] | None = None,
    timeout: float | None = None,
    capture: bool = False,
    shim: bool = True,
) -> subprocess.CompletedProcess[str]:
    """act in `workdir`. With `capture`, its output is returned (act masks the secrets
    in it); a timeout kills act, and TimeoutExpired carries what it printed.
    `shim`: steps reach act's artifact server through artifact_shim (see there)."""
    artifacts.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = t.env
    with contextlib.ExitStack() as stack:
        if shim:
            # act hands its steps ACTIONS_RUNTIME_URL (and ACTIONS_RESULTS_URL) from its own
            # environment when set (pkg/runner/run_context.go, setActionRuntimeVars).
            env["ACTIONS_RUNTIME_URL"] = stack.enter_context(artifact_shim.serve(f"http://127.0.0.1:{port}"))
        private = stack.enter_context(tempfile.TemporaryDirectory(prefix="kubebuildx-act-secrets-"))
        secret_file = Path(private) / "secrets"
        # Created 0600 before anything is written into it.
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secret_file_lines(secrets or {}))
        command = act_argv(
            t.act, t.job_image, artifacts, port, ["--secret-file", str(secret_file), *act_args]
        )
        return subprocess.run(
            command,
            cwd=workdir,
            env=env,
            check=False,
            timeout=timeout,
            capture_output=capture,
            text=True,
            stdin=subprocess.DEVNULL,
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/act", description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-build", action="store_true", help="use the action image as it is")
    parser.add_argument(
        "--workdir", type=Path, default=Path.cwd(), help="the repository act runs (default .)"
    )
    parser.add_argument("--artifacts", type=Path, help="act's artifact store (default: a temporary folder)")
    parser.add_argument(
        "--secret", action="append", default=[], metavar="NAME[=VAR]", help="a secret, read from $VAR"
    )
    parser.add_argument("act_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    extra = args.act_args[1:] if args.act_args[:1] == ["--"] else args.act_args
    info = cluster_env()
    if not info["running"]:
        print(
            "scripts/act: the one-machine cluster is not running; start it with scripts/cluster up",
            file=sys.stderr,
        )
        return 2
    sources = {name: var or name for name, _, var in (item.partition("=") for item in args.secret)}
    missing = sorted(var for var in sources.values() if var not in os.environ)
    if missing:
        print(f"scripts/act: --secret: no environment variable {', '.join(missing)}", file=sys.stderr)
        return 2
    t = tools(info)
    if not args.no_build:
        build_action_image(t, args.workdir)
    with tempfile.TemporaryDirectory(prefix="kubebuildx-act-") as scratch:
        artifacts = args.artifacts or Path(scratch) / "artifacts"
        secrets = {name: os.environ[var] for name, var in sources.items()}
        return run(t, args.workdir, extra, artifacts=artifacts, secrets=secrets).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
