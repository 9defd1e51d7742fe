"""The streamed zip: valid for zipfile, the same bytes for the same tree, modes kept."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tempfile
import zipfile
from pathlib import Path

import pytest

from kubebuildx.artifacts import zipstream
from kubebuildx.artifacts.zipstream import collect, write_zip
from kubebuildx.errors import InputError


def noise(seed: str, size: int) -> bytes:
    return hashlib.shake_256(seed.encode()).digest(size)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_bytes(noise("tool", (1 << 20) + 4321))  # streamed: above SMALL_FILE
    (root / "bin" / "tool").chmod(0o755)
    (root / "etc" / "deep" / "deeper").mkdir(parents=True)
    (root / "etc" / "deep" / "deeper" / "config.txt").write_text("key = value\n" * 100_000)
    (root / "etc" / "empty").write_bytes(b"")
    (root / "etc" / "ünïcode.txt").write_text("ü")
    (root / "var" / "empty-dir").mkdir(parents=True)
    (root / "bin" / "link").symlink_to("tool")
    (root / "bin" / "dangling").symlink_to("nowhere")
    return root


def zip_bytes(root: Path, level: int = 6) -> bytes:
    out = io.BytesIO()
    write_zip(collect(root), out.write, level)
    return out.getvalue()


@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_archive_is_valid_and_complete(tree: Path, level: int) -> None:
    archive = zipfile.ZipFile(io.BytesIO(zip_bytes(tree, level)))
    assert archive.testzip() is None
    assert archive.namelist() == [
        "bin/link",
        "bin/tool",
        "etc/deep/deeper/config.txt",
        "etc/empty",
        "etc/ünïcode.txt",
        "var/empty-dir/",
    ]
    assert archive.read("bin/tool") == (tree / "bin" / "tool").read_bytes()
    assert archive.read("bin/link") == (tree / "bin" / "tool").read_bytes()
    assert archive.read("etc/deep/deeper/config.txt") == (tree / "etc/deep/deeper/config.txt").read_bytes()
    assert archive.getinfo("var/empty-dir/").is_dir()
    assert all(info.date_time == (1980, 1, 1, 0, 0, 0) for info in archive.infolist())


def test_same_tree_same_bytes_whatever_the_timestamps(tree: Path) -> None:
    first = zip_bytes(tree)
    os.utime(tree / "bin" / "tool", (12345, 12345))
    os.utime(tree / "etc", (99999, 99999))
    assert zip_bytes(tree) == first


def test_unix_modes_are_kept(tree: Path) -> None:
    archive = zipfile.ZipFile(io.BytesIO(zip_bytes(tree)))
    tool = archive.getinfo("bin/tool")
    assert tool.create_system == 3
    assert stat.S_IMODE(tool.external_attr >> 16) == 0o755
    assert stat.S_ISREG(tool.external_attr >> 16)
    assert stat.S_ISDIR(archive.getinfo("var/empty-dir/").external_attr >> 16)


def test_compression_levels_trade_size(tree: Path) -> None:
    sizes = [len(zip_bytes(tree, level)) for level in (0, 1, 9)]
    assert sizes[0] > sizes[1] >= sizes[2]


def test_incompressible_small_files_are_stored(tmp_path: Path) -> None:
    (tmp_path / "random").write_bytes(noise("r", 5000))
    (tmp_path / "text").write_text("a" * 5000)
    archive = zipfile.ZipFile(io.BytesIO(zip_bytes(tmp_path)))
    assert archive.getinfo("random").compress_type == zipfile.ZIP_STORED
    assert archive.getinfo("text").compress_type == zipfile.ZIP_DEFLATED


def test_large_files_are_stored_when_they_do_not_compress(tmp_path: Path) -> None:
    (tmp_path / "layer.tar.gz").write_bytes(noise("gz", 3 << 20))
    (tmp_path / "build.log").write_bytes(b"step 1 done\n" * 300_000)
    archive = zipfile.ZipFile(io.BytesIO(zip_bytes(tmp_path, 9)))
    assert archive.getinfo("layer.tar.gz").compress_type == zipfile.ZIP_STORED
    assert archive.getinfo("build.log").compress_type == zipfile.ZIP_DEFLATED
    assert archive.getinfo("build.log").flag_bits & 0x8  # streamed, with a data descriptor
    assert archive.testzip() is None


def test_non_ascii_names_set_the_utf8_flag(tree: Path) -> None:
    archive = zipfile.ZipFile(io.BytesIO(zip_bytes(tree)))
    assert archive.getinfo("etc/ünïcode.txt").flag_bits & 0x800
    assert not archive.getinfo("etc/empty").flag_bits & 0x800


def test_zip64_records_for_big_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file past the zip64 threshold gets zip64 local headers and descriptors; readers cope."""
    monkeypatch.setattr(zipstream, "ZIP64_FILE_THRESHOLD", 1 << 20)
    (tmp_path / "big").write_bytes(noise("big", (1 << 20) + 10))
    (tmp_path / "text").write_bytes(b"compressible " * 100_000)
    for level in (0, 6):
        data = zip_bytes(tmp_path, level)
        assert data.count(b"\x01\x00\x10\x00") == 2  # the zip64 extra field in each local header
        archive = zipfile.ZipFile(io.BytesIO(data))
        assert archive.read("big") == (tmp_path / "big").read_bytes()
        assert archive.read("text") == (tmp_path / "text").read_bytes()
        expected = zipfile.ZIP_STORED if level == 0 else zipfile.ZIP_DEFLATED
        assert archive.getinfo("text").compress_type == expected


def test_a_subset_of_paths(tree: Path) -> None:
    entries = collect(tree, [tree / "etc" / "deep", tree / "bin" / "tool"])
    assert [e.arcname for e in entries] == ["bin/tool", "etc/deep/deeper/config.txt"]


def test_paths_outside_the_root_are_refused(tree: Path) -> None:
    with pytest.raises(InputError, match="outside"):
        collect(tree / "bin", [tree / "etc"])


def test_a_bad_character_in_a_file_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a:b").write_text("x")
    with pytest.raises(InputError, match="Colon"):
        collect(tmp_path)


def test_a_missing_root_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a directory"):
        collect(tmp_path / "missing")


def test_a_symlink_cycle_is_walked_once(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    (tmp_path / "d" / "loop").symlink_to("..")
    names = [e.arcname for e in collect(tmp_path)]
    assert names == ["d/f"]


def test_symlinks_that_lead_out_of_the_folder_are_not_followed(tmp_path: Path) -> None:
    """A build controls its output: `ln -s ../..` must not upload what lies beside it
    (the run's kubeconfig, registry config and secrets)."""
    beside = tmp_path / "run"
    beside.mkdir()
    (beside / "kubeconfig").write_text("FAKE-CREDENTIAL")
    out = tmp_path / "out" / "linux_amd64"
    out.mkdir(parents=True)
    (out / "app").write_text("binary")
    (out / "up").symlink_to("../..")
    (out / "kc").symlink_to(beside / "kubeconfig")
    (out / "same").symlink_to("app")
    names = [e.arcname for e in collect(out)]
    assert names == ["app", "same"]
    assert [e.arcname for e in collect(tmp_path / "out", [Path("linux_amd64/up")])] == []


def test_the_archive_changes_if_a_file_does(tree: Path) -> None:
    first = zip_bytes(tree)
    (tree / "etc" / "empty").write_bytes(b"x")
    assert zip_bytes(tree) != first


# ---- a tree that changes under us, or that a zip cannot hold ------------------------------------


def test_a_tree_1100_folders_deep_is_walked_without_recursion() -> None:
    # Outside pytest's basetemp: on Python 3.11 pytest removes old basetemps with a recursive
    # shutil.rmtree, so a tree this deep left there by a killed run crashes every later session
    # (RecursionError). Here it is removed one level at a time, and a leftover harms nothing.
    root = Path(tempfile.mkdtemp(prefix="kubebuildx-deep-tree-"))
    levels = [root / "out"]
    for _ in range(1100):  # one level at a time: Path.mkdir(parents=True) recurses too
        levels.append(levels[-1] / "d")
    try:
        for level in levels:
            level.mkdir()
        (levels[-1] / "f").write_text("bottom")
        entries = collect(root / "out")
        assert [e.arcname for e in entries] == ["d/" * 1100 + "f"]
        with zipfile.ZipFile(io.BytesIO(zip_bytes(root / "out"))) as archive:
            assert archive.read("d/" * 1100 + "f") == b"bottom"
    finally:
        (levels[-1] / "f").unlink(missing_ok=True)
        for level in reversed(levels):
            if level.is_dir():
                level.rmdir()
        root.rmdir()
    assert not root.exists()


def _swap(path: Path, how: str) -> None:
    if how != "file":
        path.unlink()
    if how == "fifo":
        os.mkfifo(path)
    elif how == "symlink":
        path.symlink_to(path.parent / "secret")
    else:  # created before the old one goes, so that its inode cannot be reused
        new = path.with_name("new")
        new.write_text("another file, same name")
        new.replace(path)


@pytest.mark.parametrize(
    ("how", "words"),
    [
        ("fifo", "was replaced by a file of another kind"),  # the open must not hang
        ("symlink", "was replaced by a symlink"),  # and must not follow it
        ("file", "was replaced by another file"),
    ],
)
@pytest.mark.parametrize("size", [10, (1 << 20) + 1], ids=["small", "streamed"])
def test_a_file_swapped_after_it_was_collected_is_refused(
    tmp_path: Path, how: str, words: str, size: int
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "out" / "secret").write_text("FAKE-kubeconfig")
    (out / "app").write_bytes(noise("app", size))
    entries = [e for e in collect(out) if e.arcname == "app"]
    _swap(out / "app", how)
    with pytest.raises(zipstream.ArtifactError, match=words):
        write_zip(entries, io.BytesIO().write)


def test_a_symlink_inside_the_folder_is_read_through_its_target(tmp_path: Path) -> None:
    (tmp_path / "app").write_text("binary")
    (tmp_path / "alias").symlink_to("app")
    with zipfile.ZipFile(io.BytesIO(zip_bytes(tmp_path))) as archive:
        assert archive.read("alias") == b"binary"


@pytest.mark.parametrize(
    ("name", "words"),
    [("..\\..\\evil.dll", "contains Backslash"), (os.fsdecode(b"caf\xe9.txt"), "is not UTF-8")],
    ids=["backslash", "latin-1 name"],
)
def test_names_a_zip_cannot_store_safely_are_refused_while_collecting(
    tmp_path: Path, name: str, words: str
) -> None:
    (tmp_path / name).write_text("x")
    with pytest.raises(InputError, match=words):
        collect(tmp_path)
