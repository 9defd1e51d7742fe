"""Where a run's files land and who may read them: the run's folder (kubeconfig, secrets) is
private, the folder next to it open, and what we leave for a later step is the runner user's."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kubebuildx import hostpaths, pipeline
from kubebuildx.inputs import Inputs

RUNNER_UID = 1001


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_run_folder_is_private_and_the_output_folder_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two fresh folders side by side: a later step (uid 1001 on hosted runners) reads the
    output folder; the run's folder, with the kubeconfig and secrets, stays 0700."""
    monkeypatch.delenv("GITHUB_STATE", raising=False)
    run = pipeline.start(Inputs(), {"RUNNER_TEMP": str(tmp_path), "HOME": str(tmp_path)}, outputs=True)
    assert run.workdir.parent == tmp_path and run.workdir.name.startswith("kubebuildx-run-")
    assert mode(run.workdir) == 0o700
    assert run.public_dir is not None and run.public_dir.parent == tmp_path
    assert mode(run.public_dir) == 0o755


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files away")
def test_hand_over_gives_what_we_wrote_to_the_folders_owner(tmp_path: Path) -> None:
    temp, ws = tmp_path / "temp", tmp_path / "ws"
    for root in (temp, ws):
        root.mkdir()
        os.chown(root, RUNNER_UID, RUNNER_UID)
    out = temp / "kubebuildx" / "b" / "out" / "linux_amd64"
    out.mkdir(parents=True)
    (out / "arch").write_text("x86_64")
    private = temp / "kubebuildx" / "run-1"
    private.mkdir(mode=0o700)
    (ws / "dist").mkdir()
    (ws / "dist" / "a").write_text("a")
    (ws / "dist" / "link").symlink_to("/etc/hostname")
    env = {"GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(ws), "RUNNER_TEMP": str(temp)}
    hostpaths.hand_over([str(temp / "kubebuildx" / "b"), "dist", "/elsewhere", str(ws / "missing")], env)
    for path in (temp / "kubebuildx", temp / "kubebuildx" / "b", out.parent, out, out / "arch", ws / "dist"):
        assert path.stat().st_uid == RUNNER_UID, path
    assert (ws / "dist" / "a").stat().st_uid == RUNNER_UID
    assert (ws / "dist" / "link").lstat().st_uid == RUNNER_UID
    assert Path("/etc/hostname").stat().st_uid == 0, "a symlink is changed, never followed"
    assert private.stat().st_uid == 0, "the run's own folder stays root's"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files away")
def test_hand_over_leaves_the_cli_alone(tmp_path: Path) -> None:
    os.chown(tmp_path, RUNNER_UID, RUNNER_UID)
    (tmp_path / "out").mkdir()
    hostpaths.hand_over([str(tmp_path / "out")], {"GITHUB_WORKSPACE": str(tmp_path)})
    assert (tmp_path / "out").stat().st_uid == 0
