"""Host paths and the action's container.

A container action sees the runner's machine only through the folders the
runner mounts (actions/runner, src/Runner.Worker/Handlers/ContainerActionHandler.cs):

    <work>/_temp                        -> /github/runner_temp
    <work>/_temp/_github_home           -> /github/home
    <work>/_temp/_github_workflow       -> /github/workflow
    <work>/_temp/_runner_file_commands  -> /github/file_commands
    <work>/<repo>/<repo>                -> /github/workspace

The runner rewrites an environment value that *starts* with one of those host
paths (ContainerInfo.TranslateToContainerPath), so ``${{ runner.temp }}`` in an
``env:`` value arrives as ``/github/runner_temp``. It rewrites nothing inside an
input, nor the second entry of a ``KUBECONFIG`` list: ``secret-files:
id=${{ runner.temp }}/x`` names a path the container does not have. This
module translates such paths, and refuses, naming the input, a path that lies
outside every mount: read there it does not exist, written there it would
vanish with the container.

The table comes from the environment the runner gives every container action:
``GITHUB_WORKSPACE=/github/workspace``, and ``RUNNER_WORKSPACE`` left as the
host's ``<work>/<repo>`` (it lies under no mount). Under act, or the CLI, the
workspace is at its host path and the table is empty: every function here is
then a no-op.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kubebuildx import runner
from kubebuildx.errors import InputError

CONTAINER_WORKSPACE = "/github/workspace"
CONTAINER_TEMP = "/github/runner_temp"
HINT = (
    "put it under ${{ runner.temp }} or ${{ github.workspace }} (the runner mounts them as "
    "/github/runner_temp and /github/workspace), or give a path relative to the workspace"
)
_REMOTE = re.compile(r"^(https?://|git@|git://|ssh://)|^-$")
# --build-context values that name no local folder (buildx's build/build.go)
_NOT_A_FOLDER = re.compile(r"^(docker-image://|target:|https?://|git@|git://|ssh://)")
_OCI_LAYOUT = "oci-layout://"
# exporters and caches whose dest/src is a local path (buildx's util/buildflags)
_LOCAL_TYPES = frozenset({"local", "tar", "oci", "docker"})
# os.chown's signature, or a test's stand-in that records the calls
Chown = Callable[..., None]


@dataclass(frozen=True)
class Mount:
    host: str
    container: str


@dataclass(frozen=True)
class Mounts:
    """The runner's mounts, in the order it checks them: the most specific host path first."""

    items: tuple[Mount, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.items)

    @property
    def workspace(self) -> str:
        return next((m.host for m in self.items if m.container == CONTAINER_WORKSPACE), "")

    @property
    def temp(self) -> str:
        return next((m.host for m in self.items if m.container == CONTAINER_TEMP), "")


def mount_table(env: Mapping[str, str]) -> Mounts:
    """The mounts of a runner's container action, derived from its environment; empty elsewhere."""
    workspace, runner_workspace = env.get("GITHUB_WORKSPACE", ""), env.get("RUNNER_WORKSPACE", "")
    if workspace != CONTAINER_WORKSPACE or not runner_workspace.startswith("/"):
        return Mounts()
    if runner_workspace.startswith("/github/"):
        return Mounts()
    pipeline = PurePosixPath(runner_workspace)  # <work>/<repo>
    repo = env.get("GITHUB_REPOSITORY", "").rpartition("/")[2] or pipeline.name
    temp = pipeline.parent / "_temp"
    items = [
        Mount(str(pipeline / repo), CONTAINER_WORKSPACE),
        Mount(str(temp / "_runner_file_commands"), "/github/file_commands"),
        Mount(str(temp / "_github_workflow"), "/github/workflow"),
        Mount(str(temp / "_github_home"), "/github/home"),
    ]
    # Runners before v2.329.0 (actions/runner#4011) did not mount _temp: RUNNER_TEMP then
    # stays a host path, and only its _github_home, _github_workflow and _runner_file_commands
    # are in the container.
    if env.get("RUNNER_TEMP") == CONTAINER_TEMP:
        items.append(Mount(str(temp), CONTAINER_TEMP))
    return Mounts(tuple(items))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def to_container(path: str, mounts: Mounts) -> str:
    """The runner's own TranslateToContainerPath: a host path under a mount, as the container sees it."""
    for mount in mounts.items:
        if _under(path, mount.host):
            return mount.container + path[len(mount.host) :]
    return path


def to_host(path: str, mounts: Mounts) -> str:
    """A container path under a mount, as a later step on the runner sees it."""
    for mount in mounts.items:
        if _under(path, mount.container):
            return mount.host + path[len(mount.container) :]
    return path


def locate(path: str, mounts: Mounts) -> str | None:
    """``path`` as the container sees it, or None when it lies outside every mount.

    A relative path is relative to the workspace (the runner's ``--workdir``)."""
    if not mounts or not path.startswith("/"):
        return path
    translated = to_container(posixpath.normpath(path), mounts)  # no way out of a mount by '..'

    if any(_under(translated, m.container) for m in mounts.items):
        return translated
    return None


def outside(name: str, path: str, mounts: Mounts, *, writes: bool = False) -> InputError:
    what = (
        "buildx would write there inside the action's container, and it would vanish when the step ends"
        if writes
        else "the action's container does not have it"
    )
    mounted = ", ".join(p for p in (mounts.workspace, mounts.temp) if p)
    return InputError(
        f"{name}: {path!r} is outside the folders the runner mounts into the action's container "
        f"({mounted}): {what}",
        hint=HINT,
    )


def path_in(name: str, path: str, mounts: Mounts, *, writes: bool = False) -> str:
    found = locate(path, mounts)
    if found is None:
        raise outside(name, path, mounts, writes=writes)
    return found


def _fields(name: str, item: str, key: str, mounts: Mounts, *, writes: bool) -> str:
    """``type=local,dest=PATH`` with PATH located; other types and fields are kept as written."""
    if "=" not in item:  # buildx reads a bare value as type=local,dest=VALUE
        return item if item == "-" else path_in(name, item, mounts, writes=writes)
    fields = item.split(",")
    kind = next((f.partition("=")[2] for f in fields if f.startswith("type=")), "local")
    if kind not in _LOCAL_TYPES:
        return item
    out = []
    for field in fields:
        k, sep, value = field.partition("=")
        if sep and k == key and value and value != "-":
            out.append(f"{k}={path_in(name, value.strip(chr(34)), mounts, writes=writes)}")
        else:
            out.append(field)
    return ",".join(out)


def build_context(item: str, mounts: Mounts) -> str:
    """``name=path`` or ``name=oci-layout://path[:tag][@digest]`` with the path located."""
    key, sep, value = item.partition("=")
    if not sep or _NOT_A_FOLDER.match(value):
        return item
    prefix = _OCI_LAYOUT if value.startswith(_OCI_LAYOUT) else ""
    rest = value[len(prefix) :]
    folder = re.split(r"[:@]", rest, maxsplit=1)[0] if prefix else rest
    located = path_in("build-contexts", folder, mounts)
    return f"{key}={prefix}{located}{rest[len(folder) :]}"


def apply(values: Mapping[str, object], mounts: Mounts) -> dict[str, object]:
    """Every local path among parse_inputs' values (keyed by ``Inputs`` field) as the container
    sees it; a path outside every mount refused. Plain data in and out, so that this module
    needs nothing of inputs.py, which calls it."""
    out = dict(values)
    if not mounts:
        return out

    def text(key: str) -> str:
        value = values.get(key, "")
        return value if isinstance(value, str) else ""

    def items(key: str) -> tuple[str, ...]:
        value = values.get(key, ())
        return tuple(str(v) for v in value) if isinstance(value, tuple) else ()

    def secret_file(item: str) -> str:
        key, _, src = item.partition("=")
        return f"{key}={path_in('secret-files', src, mounts)}"

    def digest(item: str) -> str:
        return item if item.startswith("sha256:") else path_in("digests", item, mounts)

    def optional(name: str, path: str) -> str:
        return path_in(name, path, mounts) if path else ""

    context = text("context")
    out.update(
        context=context if _REMOTE.match(context) else path_in("context", context, mounts),
        file=optional("file", text("file")),
        buildkitd_config=optional("buildkitd-config", text("buildkitd_config")),
        build_contexts=tuple(build_context(i, mounts) for i in items("build_contexts")),
        secret_files=tuple(secret_file(i) for i in items("secret_files")),
        outputs=tuple(_fields("outputs", i, "dest", mounts, writes=True) for i in items("outputs")),
        cache_to=tuple(_fields("cache-to", i, "dest", mounts, writes=True) for i in items("cache_to")),
        cache_from=tuple(_fields("cache-from", i, "src", mounts, writes=False) for i in items("cache_from")),
        digests=tuple(digest(i) for i in items("digests")),
    )
    return out


def env_paths(name: str, value: str, mounts: Mounts) -> tuple[str, ...]:
    """A path list from the job's environment (``KUBECONFIG`` is colon-separated), each entry
    located: the runner translates only a value's start, never its second entry."""
    return tuple(path_in(f"${name}", p, mounts) for p in value.split(os.pathsep) if p)


# ---- handing files over to the runner's user ---------------------------------------------------


def local_destinations(items: Iterable[str]) -> tuple[str, ...]:
    """Where buildx writes on the runner, from the items of ``outputs`` and ``cache-to``:
    local folders and tar files; a registry or stdout is none."""
    found = []
    for item in items:
        if "=" not in item:
            found += [item] if item != "-" else []
            continue
        fields = {k: v for k, _, v in (f.partition("=") for f in item.split(","))}
        if fields.get("type", "local") in _LOCAL_TYPES and fields.get("dest", "-") != "-":
            found.append(fields["dest"].strip('"'))
    return tuple(found)


def owner_root(path: str, roots: Iterable[str]) -> str | None:
    """The folder among ``roots`` (workspace, runner temp) that ``path`` lies in, the deepest first."""
    found = [r for r in roots if r and _under(path, r)]
    return max(found, key=len) if found else None


def ownership_roots(env: Mapping[str, str]) -> tuple[str, ...]:
    """The folders a later step works in, whose owner should own what we leave there. Only in
    GitHub Actions (act included): the CLI leaves files to whoever ran it."""
    if env.get("GITHUB_ACTIONS") != "true":
        return ()
    return tuple(env[k] for k in ("GITHUB_WORKSPACE", "RUNNER_TEMP") if env.get(k, "").startswith("/"))


def hand_over(paths: Iterable[str], env: Mapping[str, str]) -> None:
    """Give files we (root in the action's container) wrote to the owner of the folder they lie
    in: a later step, or the next checkout on a persistent runner, runs as that user."""
    if os.geteuid() != 0:
        return
    try:
        _chown_under_roots(paths, env)
    except OSError as exc:  # never the reason a build fails, nor hides why it did
        runner.warning(f"could not give the files to the workspace's owner: {runner.one_line(str(exc))}")


class UnsafePathError(OSError):
    """A path to hand over that leads through a symlink: what the build wrote would then
    choose whose files we give away."""


def _chown_under_roots(paths: Iterable[str], env: Mapping[str, str], chown: Chown = os.chown) -> None:
    roots = ownership_roots(env)
    for path in paths:
        absolute = os.path.join(env.get("GITHUB_WORKSPACE") or Path.cwd(), path)  # noqa: PTH118
        root = owner_root(os.path.normpath(absolute), roots)
        if root is None or not os.path.lexists(absolute):
            continue
        owner = Path(root).stat()
        if owner.st_uid == 0:
            continue
        try:
            chown_tree(absolute, root, owner.st_uid, owner.st_gid, chown)
        except OSError as exc:  # unsafe, or a link swapped in mid-walk (ELOOP): the others still go
            runner.warning(runner.one_line(f"could not give {path} to the workspace's owner: {exc}"))


def chown_tree(path: str, root: str, uid: int, gid: int, chown: Chown = os.chown) -> None:
    """Chown the folders from ``root`` (excluded) down to ``path`` (included), so that the
    runner's user can delete all of it, and the tree under ``path``.

    The build wrote what lies below ``root`` and may have left symlinks there (an image's own,
    or one made to point at /etc): nothing below ``root`` is followed. ``path`` must mean what
    it says (no symlink on the way, no ``link/..``); every folder is opened relative to the one
    above it without following a link (O_NOFOLLOW, os.fwalk), and each entry is chowned by its
    name in that folder, a symlink itself and never its target."""
    rel = PurePosixPath(os.path.normpath(path)).relative_to(os.path.normpath(root)).parts
    if os.path.realpath(path) != os.path.join(os.path.realpath(root), *rel):  # noqa: PTH118
        raise UnsafePathError(
            f"{path!r} leads through a symlink, so it was not given to the owner of {root}: "
            "write the build's output to a path with no symlink on the way"
        )
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)  # the root itself is the runner's, trusted
    try:
        for name in rel[:-1]:
            chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
            below = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = below
        top = rel[-1] if rel else "."  # path is the root itself: only what lies under it
        if rel:
            chown(top, uid, gid, dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISDIR(os.lstat(top, dir_fd=fd).st_mode):
            return
        for _, dirs, files, dir_fd in os.fwalk(top, dir_fd=fd, follow_symlinks=False):
            for entry in (*dirs, *files):
                chown(entry, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
    finally:
        os.close(fd)
