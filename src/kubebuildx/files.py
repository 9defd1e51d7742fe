"""Private files and folders: written whole or not at all, with their mode from the start."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Collection
from pathlib import Path

from kubebuildx.errors import InputError

PRIVATE = 0o700  # the kubeconfig, secrets, registry config: ours alone
READABLE = 0o755  # the build's output and digests: later steps of the job (any uid) read them


def atomic_write(path: Path, data: str, mode: int = 0o600, *, make_parents: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file created with ``mode``
    (never widened later) and renamed over it; parents are made 0700 unless
    ``make_parents`` is false (a folder that is gone must stay gone)."""
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _unsafe(path: Path, why: str, where: str) -> InputError:
    return InputError(
        f"the temporary folder {where} is not safe for secrets: {path} {why}",
        hint=f"point {where} at a folder that only you (or root) can change, with no symlink "
        "in its path; or leave it unset for the system's temporary folder",
    )


def check_trusted_path(path: Path, trusted_uids: Collection[int], where: str) -> None:
    """``path`` and every folder above it: a real folder (lstat: no symlink), owned by a
    trusted user, that no one else can change (group/other write only with the sticky bit,
    as /tmp). Otherwise another user could replace what we create in it, or what we delete."""
    path = Path(os.path.abspath(path))  # noqa: PTH100 - resolve() would follow the links we look for
    for folder in [*reversed(path.parents), path]:
        try:
            st = os.lstat(folder)
        except OSError as exc:
            raise _unsafe(folder, f"cannot be read ({exc.strerror})", where) from None
        if stat.S_ISLNK(st.st_mode):
            raise _unsafe(folder, "is a symlink", where)
        if not stat.S_ISDIR(st.st_mode):
            raise _unsafe(folder, "is not a folder", where)
        if st.st_uid not in trusted_uids:
            raise _unsafe(folder, f"is owned by uid {st.st_uid}", where)
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
            raise _unsafe(folder, f"is writable by others (mode {stat.S_IMODE(st.st_mode):o})", where)


def new_folder(parent: Path, prefix: str, mode: int, trusted_uids: Collection[int], where: str) -> Path:
    """A folder of our own in ``parent``: a fresh name from mkdtemp (never one someone made
    before us), in a parent checked with ``check_trusted_path``, given ``mode`` through a
    descriptor opened without following links, and checked with fstat: ours, a folder, that mode.

    The parent is made absolute and normal once, and that one value is both checked and given
    to mkdtemp: checked as ``/x`` but made in ``/x/lnk/..``, the folder would land wherever
    ``lnk`` points."""
    parent = Path(os.path.abspath(parent))  # noqa: PTH100 - resolve() would follow the links we look for
    check_trusted_path(parent, trusted_uids, where)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        raise _unsafe(path, "changed as it was made", where) from None
    try:
        os.fchmod(fd, mode)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if st.st_uid != os.geteuid() or not stat.S_ISDIR(st.st_mode) or stat.S_IMODE(st.st_mode) != mode:
        raise _unsafe(path, "changed as it was made", where)
    return path
