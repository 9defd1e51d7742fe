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
  --artifact-server-addr 127.0.0.1     act's defaults bind its servers to a non-loopback
  --no-cache-server                    address; the artifact one is kept on loopback, the
                                       cache one is not started

Usage: scripts/act [--no-build] [--workdir DIR] [--artifacts DIR] -- ACT-ARGS...
  (everything after `--` goes to act: -W workflow.yml, -j job, -s NAME=..., ...)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# act names a local Dockerfile action's image "act-" + its path with every
# non-alphanumeric character as "-" + "-dockeraction:latest", trimmed of leading
# dashes (pkg/runner/action.go, execAsDocker): `uses: ./` gives this.
ACTION_IMAGE = "act-dockeraction:latest"


def cluster_env() -> dict[str, object]:
    out = subprocess.run(
        [str(REPO / "scripts" / "cluster"), "env", "--json"], check=True, capture_output=True, text=True
    ).stdout
    info: dict[str, object] = json.loads(out)
    return info


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_action_image(docker: list[str], context: Path, tag: str = ACTION_IMAGE) -> None:
    """The unmodified Dockerfile, built as the runner would but with the host's network."""
    subprocess.run([*docker, "build", "--network", "host", "-t", tag, str(context)], check=True)


def act_argv(act: str, job_image: str, artifacts: Path, port: int, extra: list[str]) -> list[str]:
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
        *extra,
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/act", description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-build", action="store_true", help="use the action image as it is")
    parser.add_argument(
        "--workdir", type=Path, default=Path.cwd(), help="the repository act runs (default .)"
    )
    parser.add_argument("--artifacts", type=Path, help="act's artifact store (default: a temporary folder)")
    parser.add_argument("act_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    extra = args.act_args[1:] if args.act_args[:1] == ["--"] else args.act_args
    info = cluster_env()
    docker_info = info["docker"]
    assert isinstance(docker_info, dict)
    if not info["running"]:
        print(
            "scripts/act: the one-machine cluster is not running; start it with scripts/cluster up",
            file=sys.stderr,
        )
        return 2
    os.environ["DOCKER_HOST"] = str(docker_info["host"])
    docker = [str(docker_info["cli"])]
    if not args.no_build:
        build_action_image(docker, args.workdir)
    with tempfile.TemporaryDirectory(prefix="kubebuildx-act-") as scratch:
        artifacts = args.artifacts or Path(scratch) / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        command = act_argv(
            str(docker_info["act"]), str(docker_info["job_image"]), artifacts, free_port(), extra
        )
        return subprocess.run(command, cwd=args.workdir, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
