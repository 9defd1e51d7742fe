"""Where a run keeps its files: two folders made fresh for each run in a parent checked
link by link, never a fixed name in a shared folder (another user could make it first,
0777, with a symlink named after the next builder, and choose where we write).

  kubebuildx-run-*  0700  the kubeconfig, secrets and registry config; cleanup deletes it
  kubebuildx-out-*  0755  a build's output and digest folders, which later steps read
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kubebuildx import buildx_store, cleanup, files
from kubebuildx.builder import BuilderSpec
from kubebuildx.inputs import Inputs


def temp_source(env: Mapping[str, str]) -> tuple[str, Path]:
    """Where a run makes its folders, and the variable that says so: RUNNER_TEMP (mounted
    into container actions as /github/runner_temp, and kept for the post step), else
    KUBEBUILDX_TEMP, else the container's /github/home, else the system temp dir (the CLI)."""
    for key in ("RUNNER_TEMP", "KUBEBUILDX_TEMP"):
        value = env.get(key)
        if value and Path(value).is_dir() and os.access(value, os.W_OK):
            return key, Path(value)
    if env.get("GITHUB_ACTIONS") == "true" and env.get("HOME") and Path(env["HOME"]).is_dir():
        return "HOME", Path(env["HOME"])
    # The OS's own temp dir, resolved: a system link such as macOS's /tmp -> /private/tmp
    # is not ours to refuse. The folders below are checked link by link.
    return "TMPDIR", Path(os.path.realpath(tempfile.gettempdir()))


def temp_root(env: Mapping[str, str]) -> Path:
    return temp_source(env)[1]


def trusted_uids(key: str, root: Path) -> frozenset[int]:
    """Who may own the folders above ours: root and us; for the runner's own folders also
    their owner (the action runs as root in its container, the runner as its own user)."""
    uids = {0, os.geteuid()}
    if key in ("RUNNER_TEMP", "HOME"):
        uids.add(os.lstat(root).st_uid)
    return frozenset(uids)


@dataclass(frozen=True)
class Run:
    """One run's environment and folders, each made by ``files.new_folder`` (a fresh
    mkdtemp name in a checked parent): ``workdir`` (0700) holds the kubeconfig, secrets
    and registry config, and cleanup deletes it; ``public_dir`` (0755, a build's only)
    holds the builder's output and digest folders, which later steps of the job read."""

    inputs: Inputs
    env: Mapping[str, str]
    workdir: Path
    store: Path  # buildx's store
    public_dir: Path | None = None
    marks: dict[str, float] = field(default_factory=dict, compare=False)

    def output_dir(self, spec: BuilderSpec) -> Path:
        return self._public() / spec.name / "out"

    def digest_dir(self, spec: BuilderSpec) -> Path:
        return self._public() / spec.name / "digests"

    def _public(self) -> Path:
        if self.public_dir is None:
            raise AssertionError("only a build's run has a public folder (start(..., outputs=True))")
        return self.public_dir

    def mark(self, name: str) -> None:
        """Wall-clock marks, so that a benchmark can measure from the moment it spawned us."""
        self.marks[name] = time.time()


def start(inputs: Inputs, env: Mapping[str, str] | None = None, *, outputs: bool = False) -> Run:
    """The run's folders. Never a fixed name in a shared folder: another user could make it
    first (0777, with a symlink named after the next builder) and choose where we write."""
    env = dict(os.environ) if env is None else dict(env)
    workdir = new_folder(env, "kubebuildx-run-", files.PRIVATE)
    cleanup.PostState(workdir=str(workdir)).save()
    public = new_folder(env, "kubebuildx-out-", files.READABLE) if outputs else None
    return Run(inputs, env, workdir, buildx_store.buildx_dir(env), public)


def new_folder(env: Mapping[str, str], prefix: str, mode: int) -> Path:
    """A fresh folder (mkdtemp) in the run's temp folder, every folder above it checked."""
    key, root = temp_source(env)
    return files.new_folder(root, prefix, mode, trusted_uids(key, root), key)
