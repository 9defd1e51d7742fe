"""Host paths and the action's container: the mount table, translation, refusal, hand-over."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kubebuildx import hostpaths
from kubebuildx.errors import InputError
from kubebuildx.hostpaths import Mount, Mounts
from kubebuildx.inputs import parse_inputs

WORK = "/home/runner/work"
WS = f"{WORK}/app/app"
TEMP = f"{WORK}/_temp"
# What a current runner gives a container action (the runner_temp mount came in v2.329.0).
RUNNER_ENV = {
    "GITHUB_WORKSPACE": "/github/workspace",
    "RUNNER_WORKSPACE": f"{WORK}/app",
    "RUNNER_TEMP": "/github/runner_temp",
    "GITHUB_REPOSITORY": "octo/app",
    "HOME": "/github/home",
}
MOUNTS = hostpaths.mount_table(RUNNER_ENV)


def test_the_mount_table_of_a_runner_container_action() -> None:
    want = Mounts(
        (
            Mount(WS, "/github/workspace"),
            Mount(f"{TEMP}/_runner_file_commands", "/github/file_commands"),
            Mount(f"{TEMP}/_github_workflow", "/github/workflow"),
            Mount(f"{TEMP}/_github_home", "/github/home"),
            Mount(TEMP, "/github/runner_temp"),
        )
    )
    assert want == MOUNTS
    assert (MOUNTS.workspace, MOUNTS.temp) == (WS, TEMP)


@pytest.mark.parametrize(
    "env",
    [
        # act: the workspace sits at its host path, RUNNER_TEMP is private to the container
        {"GITHUB_WORKSPACE": "/home/me/src/app", "RUNNER_WORKSPACE": "/home/me/src", "RUNNER_TEMP": "/tmp"},
        {"GITHUB_WORKSPACE": "/github/workspace"},  # no RUNNER_WORKSPACE: nothing to derive from
        {"GITHUB_WORKSPACE": "/github/workspace", "RUNNER_WORKSPACE": "relative"},
        {},  # the CLI
    ],
)
def test_no_table_outside_a_runner_container_action_and_nothing_changes(env: dict[str, str]) -> None:
    mounts = hostpaths.mount_table(env)
    assert not mounts
    for path in ("/tmp/out", f"{TEMP}/x", "rel/x"):
        assert hostpaths.locate(path, mounts) == path
    assert hostpaths.env_paths("KUBECONFIG", "/a:/b", mounts) == ("/a", "/b")


def test_an_older_runner_without_the_runner_temp_mount() -> None:
    mounts = hostpaths.mount_table({**RUNNER_ENV, "RUNNER_TEMP": TEMP})
    assert mounts.temp == ""
    assert hostpaths.locate(f"{TEMP}/_github_home/x", mounts) == "/github/home/x"
    assert hostpaths.locate(f"{TEMP}/x", mounts) is None


@pytest.mark.parametrize(
    ("path", "container"),
    [
        (WS, "/github/workspace"),
        (f"{WS}/dist", "/github/workspace/dist"),
        (f"{TEMP}/kube/config", "/github/runner_temp/kube/config"),
        (f"{TEMP}/_github_home/.docker", "/github/home/.docker"),  # the deeper mount wins
        (f"{TEMP}/_runner_file_commands/set_output_1", "/github/file_commands/set_output_1"),
        ("/github/runner_temp/x", "/github/runner_temp/x"),  # already the container's
        ("out", "out"),  # relative to the workspace, the container's --workdir
        (f"{TEMP}2/x", None),  # a sibling of a mount is not under it
        (f"{WORK}/_tool/x", None),
        (f"{WORK}/app/other", None),  # RUNNER_WORKSPACE itself is not mounted
        ("/tmp/out", None),
        ("/github/workspace2", None),
        (f"{WS}/../../_tool/x", None),  # '..' does not lead out of a mount
        ("/github/workspace/../home/x", "/github/home/x"),
        (f"{TEMP}//out/", "/github/runner_temp/out"),
    ],
)
def test_locate(path: str, container: str | None) -> None:
    assert hostpaths.locate(path, MOUNTS) == container


def test_to_host_is_the_way_back() -> None:
    assert hostpaths.to_host("/github/runner_temp/kubebuildx/b/out", MOUNTS) == f"{TEMP}/kubebuildx/b/out"
    assert hostpaths.to_host("/github/home/x", MOUNTS) == f"{TEMP}/_github_home/x"
    assert hostpaths.to_host("", MOUNTS) == ""
    assert hostpaths.to_host("/elsewhere", MOUNTS) == "/elsewhere"


@pytest.mark.parametrize(
    ("name", "item", "want"),
    [
        ("outputs", f"type=local,dest={TEMP}/out", "type=local,dest=/github/runner_temp/out"),
        ("outputs", f"type=tar,dest={WS}/a.tar", "type=tar,dest=/github/workspace/a.tar"),
        ("outputs", f"dest={TEMP}/out,type=oci", "dest=/github/runner_temp/out,type=oci"),
        ("outputs", f"{TEMP}/out", "/github/runner_temp/out"),  # buildx: a bare value is a local dest
        ("outputs", "type=registry,name=/tmp/not-a-path", "type=registry,name=/tmp/not-a-path"),
        ("outputs", "type=tar,dest=-", "type=tar,dest=-"),
        ("cache-to", f"type=local,dest={TEMP}/c,mode=max", "type=local,dest=/github/runner_temp/c,mode=max"),
        ("cache-to", "type=registry,ref=r/x:cache", "type=registry,ref=r/x:cache"),
        ("cache-from", f"type=local,src={WS}/.cache", "type=local,src=/github/workspace/.cache"),
    ],
)  # fmt: skip
def test_list_items_with_a_local_destination(name: str, item: str, want: str) -> None:
    key = "src" if name == "cache-from" else "dest"
    assert hostpaths._fields(name, item, key, MOUNTS, writes=name != "cache-from") == want


@pytest.mark.parametrize(
    ("item", "want"),
    [
        (f"base={WS}/base", "base=/github/workspace/base"),
        (f"busybox=oci-layout://{WS}/l:busybox", "busybox=oci-layout:///github/workspace/l:busybox"),
        (f"b=oci-layout://{TEMP}/l@sha256:ab", "b=oci-layout:///github/runner_temp/l@sha256:ab"),
        ("alpine=docker-image://alpine:3", "alpine=docker-image://alpine:3"),
        ("src=https://github.com/o/r.git", "src=https://github.com/o/r.git"),
        ("t=target:base", "t=target:base"),
        ("rel=./lib", "rel=./lib"),
    ],
)
def test_build_contexts(item: str, want: str) -> None:
    assert hostpaths.build_context(item, MOUNTS) == want


@pytest.mark.parametrize(
    ("raw", "named", "says"),
    [
        ({"secret-files": "id=/home/runner/.ssh/key"}, "secret-files", "does not have it"),
        ({"outputs": "type=local,dest=/tmp/out"}, "outputs", "vanish when the step ends"),
        ({"cache-to": f"type=local,dest={WORK}/cache"}, "cache-to", "vanish when the step ends"),
        ({"build-contexts": f"b=oci-layout://{WORK}/_tool/l:b"}, "build-contexts", "does not have it"),
        ({"file": "/opt/Dockerfile"}, "file", "does not have it"),
        ({"context": f"{WORK}/app/other"}, "context", "does not have it"),
    ],
)
def test_a_path_outside_every_mount_is_refused_naming_the_input(
    raw: dict[str, str], named: str, says: str
) -> None:
    with pytest.raises(InputError) as caught:
        parse_inputs(raw, MOUNTS)
    text = str(caught.value)
    assert text.startswith(f"{named}: ") and says in text, text
    assert WS in text and TEMP in text, "it says what the runner mounts"
    assert "${{ runner.temp }}" in text and "${{ github.workspace }}" in text, "and the fix"


def test_remote_contexts_and_digests_are_not_paths() -> None:
    got = parse_inputs(
        {"context": "https://github.com/o/r.git", "mode": "merge", "tags": "r/x:1",
         "platforms": "linux/amd64", "digests": "sha256:" + "a" * 64},
        MOUNTS,
    )  # fmt: skip
    assert got.context == "https://github.com/o/r.git"
    assert got.digests == ("sha256:" + "a" * 64,)


def test_parse_inputs_translates_before_it_checks_that_files_exist(tmp_path: Path) -> None:
    """The existence check looks where the container looks: a real folder stands in for the mount."""
    host_ws, container_ws = "/home/runner/work/app/app", tmp_path / "workspace"
    (container_ws / "ctx").mkdir(parents=True)
    (container_ws / "key").write_text("k")
    mounts = Mounts((Mount(host_ws, str(container_ws)),))
    got = parse_inputs({"context": f"{host_ws}/ctx", "secret-files": f"id={host_ws}/key"}, mounts)
    assert got.context == f"{container_ws}/ctx"
    assert got.secret_files == (f"id={container_ws}/key",)


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (f"/github/runner_temp/a:{TEMP}/b", ("/github/runner_temp/a", "/github/runner_temp/b")),
        (f"{TEMP}/_github_home/.kube/config", ("/github/home/.kube/config",)),
        ("", ()),
        ("relative/config:", ("relative/config",)),
    ],
)
def test_env_path_lists(value: str, want: tuple[str, ...]) -> None:
    assert hostpaths.env_paths("KUBECONFIG", value, MOUNTS) == want


def test_an_env_path_outside_is_refused_by_the_variable_name() -> None:
    with pytest.raises(InputError, match=r"^\$KUBECONFIG: '/home/runner/.kube/config' is outside"):
        hostpaths.env_paths("KUBECONFIG", f"{TEMP}/a:/home/runner/.kube/config", MOUNTS)


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ({}, ()),
        ({"outputs": "type=local,dest=out"}, ("out",)),
        ({"outputs": "type=tar,dest=/w/a.tar\ntype=image,push=false"}, ("/w/a.tar",)),
        ({"outputs": "dist"}, ("dist",)),
        ({"outputs": "type=tar,dest=-"}, ()),
        ({"outputs": "type=registry,ref=r/x"}, ()),
        ({"cache-to": "type=local,dest=.cache,mode=max"}, (".cache",)),
    ],
)  # fmt: skip
def test_local_destinations(raw: dict[str, str], want: tuple[str, ...], tmp_path: Path) -> None:
    inputs = parse_inputs({"context": str(tmp_path), **raw})
    assert hostpaths.local_destinations((*inputs.outputs, *inputs.cache_to)) == want


def test_owner_root_and_roots() -> None:
    env = {"GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": "/github/workspace"}
    roots = hostpaths.ownership_roots({**env, "RUNNER_TEMP": "/github/runner_temp"})
    assert roots == ("/github/workspace", "/github/runner_temp")
    assert hostpaths.owner_root("/github/workspace/dist/a", roots) == "/github/workspace"
    assert hostpaths.owner_root("/github/runner_temp/kubebuildx", roots) == "/github/runner_temp"
    assert hostpaths.owner_root("/tmp/x", roots) is None
    assert hostpaths.ownership_roots({"GITHUB_WORKSPACE": "/w", "RUNNER_TEMP": "/t"}) == (), "not the CLI"
    nested = ("/w", "/w/tmp")  # act on a self-hosted runner may nest them: the deeper one owns
    assert hostpaths.owner_root("/w/tmp/x", nested) == "/w/tmp"


# ---- hand-over: what the build wrote chooses none of the files we chown ----------------------

RUNNER_UID = 1001
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files away")


class Chowns:
    """os.chown's stand-in: the (device, inode) of each entry it was asked to change, looked up
    the way os.chown would find it, so that a test needs no root and sees what would change."""

    def __init__(self) -> None:
        self.changed: list[tuple[int, int]] = []

    def __call__(self, name: str, uid: int, gid: int, *, dir_fd: int, follow_symlinks: bool) -> None:
        assert follow_symlinks is False, "a symlink is changed itself, never its target"
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        self.changed.append((st.st_dev, st.st_ino))


def ids(*paths: Path) -> list[tuple[int, int]]:
    return [(st.st_dev, st.st_ino) for st in (os.lstat(p) for p in paths)]


def hostile_tree(tmp: Path) -> tuple[Path, Path]:
    """A root (the workspace) whose build output holds symlinks to a file and a folder outside it."""
    root, outside = tmp / "ws", tmp / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "dir" / "inner").write_text("not ours")
    (outside / "file").write_text("not ours")
    (root / "dist" / "sub").mkdir(parents=True)
    (root / "dist" / "a").write_text("a")
    (root / "dist" / "sub" / "b").write_text("b")
    (root / "dist" / "to-file").symlink_to(outside / "file")
    (root / "dist" / "sub" / "to-dir").symlink_to(outside / "dir")
    (root / "lnk").symlink_to(outside / "dir")
    return root, outside


def test_chown_tree_changes_the_links_never_their_targets(tmp_path: Path) -> None:
    root, outside = hostile_tree(tmp_path)
    chowns = Chowns()
    hostpaths.chown_tree(str(root / "dist" / "sub"), str(root), RUNNER_UID, RUNNER_UID, chowns)
    dist = root / "dist"
    want = ids(dist, dist / "sub", dist / "sub" / "b", dist / "sub" / "to-dir")
    assert sorted(chowns.changed) == sorted(want), "the folders on the way, the tree, the link itself"
    chowns.changed.clear()
    hostpaths.chown_tree(str(root), str(root), RUNNER_UID, RUNNER_UID, chowns)
    assert set(chowns.changed).isdisjoint(ids(root, *outside.rglob("*"))), "not the root, nothing outside"
    assert set(ids(dist / "to-file", dist / "sub" / "to-dir", root / "lnk")) <= set(chowns.changed)


@pytest.mark.parametrize(
    "path",
    ["lnk", "lnk/inner", "lnk/..", "lnk/../dir", "lnk/../file", "dist/sub/to-dir/inner", "dist/to-file"],
)
def test_chown_tree_refuses_a_path_through_a_symlink(tmp_path: Path, path: str) -> None:
    root, _ = hostile_tree(tmp_path)
    chowns = Chowns()
    with pytest.raises(hostpaths.UnsafePathError, match="leads through a symlink"):
        hostpaths.chown_tree(os.path.join(root, path), str(root), RUNNER_UID, RUNNER_UID, chowns)  # noqa: PTH118
    assert chowns.changed == []


def test_a_path_through_a_symlink_is_named_and_the_others_still_handed_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = hostile_tree(tmp_path)
    if os.geteuid() == 0:  # the root's owner is who gets the files; root's own are left alone
        os.chown(root, RUNNER_UID, RUNNER_UID)
    env = {"GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(root)}
    chowns = Chowns()
    hostpaths._chown_under_roots(["lnk/..", "dist/sub/b"], env, chowns)
    assert chowns.changed == ids(root / "dist", root / "dist" / "sub", root / "dist" / "sub" / "b")
    err = capsys.readouterr().err
    assert f"{root}/lnk/..' leads through a symlink" in err and str(root) in err


@AS_ROOT
@pytest.mark.parametrize("path", ["lnk/..", "lnk/sub", "dist"])
def test_hand_over_never_changes_a_file_outside_the_root(tmp_path: Path, path: str) -> None:
    """Real chown, as the action runs it: what lies outside the workspace stays root's."""
    root, outside = hostile_tree(tmp_path)
    (outside / "dir" / "sub").mkdir()
    os.chown(root, RUNNER_UID, RUNNER_UID)
    hostpaths.hand_over([path], {"GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(root)})
    for target in (outside, *outside.rglob("*")):
        assert os.lstat(target).st_uid == 0, target
    if path == "dist":
        assert os.lstat(root / "dist" / "sub" / "to-dir").st_uid == RUNNER_UID
        assert os.lstat(root / "dist" / "sub" / "b").st_uid == RUNNER_UID


def test_a_link_swapped_in_mid_walk_stops_that_path_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """O_NOFOLLOW on a folder the build turned into a link meanwhile raises ELOOP, a plain
    OSError: that path is named, and the next one is still handed over."""
    import errno

    root, _ = hostile_tree(tmp_path)
    if os.geteuid() == 0:
        os.chown(root, RUNNER_UID, RUNNER_UID)
    env = {"GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(root)}
    chowns = Chowns()
    calls = []

    def flaky(name: str, uid: int, gid: int, *, dir_fd: int, follow_symlinks: bool) -> None:
        calls.append(name)
        if len(calls) == 1:
            raise OSError(errno.ELOOP, "Too many levels of symbolic links", name)
        chowns(name, uid, gid, dir_fd=dir_fd, follow_symlinks=follow_symlinks)

    hostpaths._chown_under_roots(["dist/a", "dist/sub/b"], env, flaky)
    assert ids(root / "dist" / "sub" / "b")[0] in chowns.changed
    assert "could not give dist/a to the workspace's owner" in capsys.readouterr().err
