"""Shared by the cluster tests: run kubebuildx as a user does, read the API."""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBEBUILDX = ROOT / ".venv" / "bin" / "kubebuildx"
CONTEXT = ROOT / "tests" / "fixtures" / "contexts" / "multistage"
ELF_MACHINE = {"x86_64": 62, "aarch64": 183}


def cluster_env() -> dict[str, str]:
    """The flat KUBEBUILDX_* variables that `scripts/cluster env` exports."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "cluster"), "env"], capture_output=True, text=True, check=True
    )
    data: dict[str, str] = {}
    # as a whole, not line by line: a quoted value may span lines (KUBEBUILDX_ACTION_BASE_CONTEXTS)
    words = shlex.split(out.stdout, comments=True)
    for keyword, word in itertools.pairwise(words):
        if keyword == "export" and word.startswith("KUBEBUILDX_"):
            key, _, value = word.partition("=")
            data[key] = value
    assert "KUBEBUILDX_KUBECONFIG_ADMIN" in data, "the cluster is not up: run scripts/cluster up"
    return data


def secrets_of(kubeconfig: Path) -> list[str]:
    doc = yaml.safe_load(kubeconfig.read_text())
    found = []
    for entry in doc.get("users", []):
        user = entry.get("user", {})
        for key in ("token", "client-key-data"):
            if user.get(key):
                found.append(user[key])
    assert found, "the test kubeconfig should carry a credential"
    return found


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str], seconds: float, home: Path) -> None:
        self.proc, self.seconds, self.home = proc, seconds, home

    @property
    def text(self) -> str:
        return self.proc.stdout + self.proc.stderr


def kubebuildx(
    args: list[str],
    cenv: Mapping[str, str],
    home: Path,
    extra: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> Run:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_", "RUNNER_", "ACTIONS_"))
    }
    env.update(
        {
            "PATH": f"{cenv['KUBEBUILDX_BIN']}:{env['PATH']}",
            "DOCKER_CONFIG": str(home / "docker"),
            "KUBEBUILDX_TEMP": str(home / "tmp"),
            "HOME": str(home),
        }
    )
    env.pop("BUILDX_CONFIG", None)
    env.pop("KUBECONFIG", None)
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    env.update(extra or {})
    start = time.monotonic()
    proc = subprocess.run(
        [str(KUBEBUILDX), *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    return Run(proc, time.monotonic() - start, home)


def output_dir(home: Path, builder: str) -> Path:
    """The CLI's default output: ``<builder>/out`` in the run's own kubebuildx-out-* folder."""
    found = sorted((home / "tmp").glob(f"kubebuildx-out-*/{builder}/out"), key=lambda p: p.stat().st_mtime)
    assert found, f"no output folder for {builder} under {home / 'tmp'}"
    return found[-1]


def api_json(cenv: Mapping[str, str], path: str) -> dict[str, Any]:
    from kubebuildx import kube

    api = kube.api_client(cenv["KUBEBUILDX_KUBECONFIG_ADMIN"])
    status, body = kube.request(api, "GET", path, "test", "test")
    assert status in (200, 404), status
    return body if status == 200 else {}


def delete_deployment(cenv: Mapping[str, str], name: str) -> None:
    from kubebuildx import kube

    api = kube.api_client(cenv["KUBEBUILDX_KUBECONFIG_ADMIN"])
    path = f"/apis/apps/v1/namespaces/{cenv['KUBEBUILDX_NAMESPACE']}/deployments/{name}"
    status, _ = kube.request(api, "DELETE", path, "test", "test")
    assert status in (200, 202, 404), status


def deployments(cenv: Mapping[str, str], prefix: str) -> list[str]:
    body = api_json(cenv, f"/apis/apps/v1/namespaces/{cenv['KUBEBUILDX_NAMESPACE']}/deployments")
    return sorted(
        d["metadata"]["name"] for d in body.get("items", []) if d["metadata"]["name"].startswith(prefix)
    )


def elf_machine(path: Path) -> int:
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF", f"{path} is not an ELF file"
    return int.from_bytes(head[18:20], "little")


def common(cenv: Mapping[str, str], kubeconfig: str | None = None) -> list[str]:
    return [
        "--kubeconfig",
        kubeconfig or cenv["KUBEBUILDX_KUBECONFIG_ADMIN"],
        "--namespace",
        cenv["KUBEBUILDX_NAMESPACE"],
    ]


def build_argv(
    cenv: Mapping[str, str], context: Path, builder: str, platforms: str, *extra: str
) -> list[str]:
    """`kubebuildx build` of context on the busybox base image, as the admin, in the test namespace."""
    return [
        "build",
        str(context),
        *common(cenv),
        "--builder",
        builder,
        "--platforms",
        platforms,
        "--build-contexts",
        cenv["KUBEBUILDX_BASE_IMAGE_CONTEXT"],
        *extra,
    ]


def read_file_commands(path: Path) -> dict[str, str]:
    """The runner's parser for `name<<delimiter` blocks (GITHUB_OUTPUT, GITHUB_STATE...)."""
    out: dict[str, str] = {}
    lines = path.read_text().split("\n")
    i = 0
    while i < len(lines):
        match = re.match(r"^([^<=]+)<<(.+)$", lines[i])
        if match:
            name, delim = match.groups()
            j = lines.index(delim, i + 1)
            out[name] = "\n".join(lines[i + 1 : j])
            i = j + 1
        else:
            i += 1
    return out


def runner_env(tmp: Path, cenv: dict[str, str], run_id: str = "4242", job: str = "build") -> dict[str, str]:
    """The environment a runner gives the action: file-command files, RUNNER_TEMP and HOME
    under tmp, and nothing of this shell's GITHUB_, INPUT_, RUNNER_ or ACTIONS_ variables."""
    files = {}
    for name in ("OUTPUT", "STEP_SUMMARY", "STATE", "ENV", "PATH"):
        f = tmp / "file_commands" / name.lower()
        f.parent.mkdir(parents=True, exist_ok=True)
        f.touch()
        files[f"GITHUB_{name}"] = str(f)
    (tmp / "runner_temp").mkdir()
    (tmp / "home").mkdir()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_", "RUNNER_", "ACTIONS_"))
    }
    for key in ("KUBECONFIG", "DOCKER_CONFIG", "BUILDX_CONFIG"):  # this shell's, not the job's
        env.pop(key, None)
    env.update(files)
    env.update(
        {
            "PATH": f"{cenv['KUBEBUILDX_BIN']}:{env['PATH']}",
            "GITHUB_ACTIONS": "true",
            "GITHUB_REPOSITORY": "octo/app",
            "GITHUB_RUN_ID": run_id,
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_JOB": job,
            "GITHUB_SERVER_URL": "https://github.com",
            "RUNNER_TEMP": str(tmp / "runner_temp"),
            "HOME": str(tmp / "home"),
        }
    )
    return env
