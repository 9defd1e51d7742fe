"""The run's folders: a fresh mkdtemp name, in a parent that only a trusted user can change,
with no symlink on the way; given their mode and checked (issue 10, 3)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from kubebuildx import files
from kubebuildx.errors import InputError

ATTACKER = 4242  # another local user; the tests run as root, so they can make its files
US = frozenset({0, os.geteuid()})


def sticky_shared(tmp: Path) -> Path:
    """A /tmp of our own: root's, 1777."""
    shared = tmp / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    return shared


def _symlinked(tmp: Path) -> Path:
    (tmp / "real").mkdir()
    (tmp / "link").symlink_to(tmp / "real")
    return tmp / "link"


def _symlink_above(tmp: Path) -> Path:
    (tmp / "real" / "below").mkdir(parents=True)
    (tmp / "link").symlink_to(tmp / "real")
    return tmp / "link" / "below"


def _world_writable(tmp: Path) -> Path:
    (tmp / "open").mkdir()
    (tmp / "open").chmod(0o777)
    return tmp / "open"


def _group_writable_above(tmp: Path) -> Path:
    (tmp / "team" / "below").mkdir(parents=True)
    (tmp / "team").chmod(0o775)
    return tmp / "team" / "below"


ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="making another user's folder needs root")


def _attackers(tmp: Path) -> Path:
    (tmp / "theirs").mkdir()
    os.chown(tmp / "theirs", ATTACKER, ATTACKER)
    return tmp / "theirs"


def _a_file(tmp: Path) -> Path:
    (tmp / "file").write_text("x")
    return tmp / "file"


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_symlinked, "link is a symlink"),
        (_symlink_above, "link is a symlink"),
        (_world_writable, "open is writable by others (mode 777)"),
        (_group_writable_above, "team is writable by others (mode 775)"),
        pytest.param(_attackers, f"theirs is owned by uid {ATTACKER}", marks=ROOT_ONLY),
        (_a_file, "file is not a folder"),
    ],
    ids=["symlink", "symlink above", "0777", "group-writable above", "another user's", "a file"],
)
def test_an_unsafe_parent_is_refused_before_anything_is_made(
    tmp_path: Path, make: Callable[[Path], Path], words: str
) -> None:
    parent = make(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(InputError) as exc:
        files.new_folder(parent, "kubebuildx-run-", files.PRIVATE, US, "KUBEBUILDX_TEMP")
    assert words in exc.value.message
    assert "KUBEBUILDX_TEMP" in exc.value.message and "KUBEBUILDX_TEMP" in (exc.value.hint or "")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("mode", [files.PRIVATE, files.READABLE])
def test_a_new_folder_is_fresh_ours_and_of_its_mode(tmp_path: Path, mode: int) -> None:
    shared = sticky_shared(tmp_path)
    first = files.new_folder(shared, "kubebuildx-run-", mode, US, "TMPDIR")
    second = files.new_folder(shared, "kubebuildx-run-", mode, US, "TMPDIR")
    assert first != second and first.parent == shared
    for folder in (first, second):
        st = os.lstat(folder)
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == mode


@ROOT_ONLY
def test_the_runners_own_folder_may_be_the_runners(tmp_path: Path) -> None:
    """RUNNER_TEMP belongs to the runner's user (1001) while the action runs as root."""
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    os.chown(temp, 1001, 1001)
    with pytest.raises(InputError, match="owned by uid 1001"):
        files.new_folder(temp, "kubebuildx-run-", files.PRIVATE, US, "RUNNER_TEMP")
    made = files.new_folder(temp, "kubebuildx-run-", files.PRIVATE, US | {1001}, "RUNNER_TEMP")
    assert os.lstat(made).st_uid == os.geteuid()


def test_the_parent_checked_is_the_parent_used(tmp_path: Path) -> None:
    """``/x/lnk/..``: the check sees /x, the kernel would go where lnk points. The folder is
    made in the folder that was checked, never beside the link's target."""
    checked = sticky_shared(tmp_path)
    elsewhere = tmp_path / "elsewhere" / "deep"
    elsewhere.mkdir(parents=True)
    (checked / "lnk").symlink_to(elsewhere)
    made = files.new_folder(checked / "lnk" / "..", "kubebuildx-run-", files.PRIVATE, US, "KUBEBUILDX_TEMP")
    assert made.parent == checked
    assert list((tmp_path / "elsewhere").iterdir()) == [elsewhere]
