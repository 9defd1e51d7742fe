"""A zip writer that streams from the files to a sink, never holding the archive.

Same tree, same bytes: entries are sorted by their path in the archive, every
timestamp is the zip epoch (1980-01-01 00:00), and nothing from the clock, the
user or the host goes in. That makes the artifact's ``sha256:`` digest a
function of the tree (the official client's is not: archiver stamps mtimes and
its entry order follows the glob).

Unix modes are kept in the external attributes (``version made by`` = Unix), so
``unzip`` and Python's ``zipfile`` can restore the executable bit. A symlink
inside the folder is followed (its target's contents are uploaded, as the
official client does); one that leads out of the folder, or nowhere, is left
out with a warning.

The build writes the tree, so it may change it under us: the walk is
iterative (a tree 1,100 folders deep is fine), and each file is opened by the
path ``collect`` resolved, with ``O_NOFOLLOW|O_NONBLOCK``, and must still be
the regular file it saw (same device and inode). A symlink or a FIFO swapped
in is refused, never followed or hung on.

Format notes (APPNOTE.TXT 6.3.10):
- A file that does not compress (judged on its first 256 KiB for large files,
  on the whole for small ones) is stored, at any level: Info-ZIP does the same.
- Files up to ``SMALL_FILE`` bytes are read whole, so their CRC and sizes go in
  the local header. Larger files are deflated as a stream with a data
  descriptor (flag bit 3, with its signature: unzip-stream, the official
  downloader, looks for it). Larger stored files (level 0) are read twice, CRC
  first, because a stored entry with a data descriptor cannot be read as a
  stream by every tool.
- Zip64 records appear only when a size, an offset or the entry count needs them.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from kubebuildx import runner
from kubebuildx.artifacts.names import validate_file_path
from kubebuildx.errors import ArtifactError, InputError

SMALL_FILE = 1 << 20
READ_SIZE = 1 << 20
SAMPLE = 256 << 10
MIN_SAVING = 0.03
DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01
DOS_TIME = 0
MADE_BY_UNIX = 3 << 8
FLAG_DATA_DESCRIPTOR = 0x0008
FLAG_UTF8 = 0x0800
STORED = 0
DEFLATED = 8
U32_MAX = 0xFFFFFFFF
U16_MAX = 0xFFFF
# A deflated stream can outgrow its input a little; past this size, plan for zip64.
ZIP64_FILE_THRESHOLD = 0xF0000000

Sink = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class Entry:
    """One member of the archive. ``source`` is None for an (empty) directory.

    Slotted, with the source as a plain string: a tree of 100,000 small files
    is 100,000 of these, and they all live until the archive is written.
    """

    arcname: str
    source: str | None  # the resolved path: opened without following a symlink
    mode: int
    size: int
    device: int = 0
    inode: int = 0


@dataclass(frozen=True, slots=True)
class _Central:
    arcname: bytes
    flags: int
    method: int
    crc: int
    compressed: int
    size: int
    offset: int
    external: int


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def collect(root: Path, paths: Sequence[Path] | None = None) -> list[Entry]:
    """The entries for ``paths`` (default: the whole of ``root``), sorted by arcname.

    Names in the archive are relative to ``root``. Directories contribute their
    files; an empty directory is kept as a directory entry. Symlinks are
    followed (a cycle is walked once) while they stay inside ``root``; one that
    leads out of it, or dangles, is skipped with a warning. A build can write
    any link into its output, and following ``../..`` would upload what lies
    beside the output: the run's kubeconfig, registry config and secrets.
    """
    root = Path(os.path.normpath(root.absolute()))
    if not root.is_dir():
        raise InputError(
            f"The artifact root {root} is not a directory.",
            hint="pass an existing folder (the files are stored relative to it)",
        )
    found: dict[str, Entry] = {}
    for given in paths if paths is not None else [root]:
        path = Path(os.path.normpath(root / given))
        if not _inside(path, root):
            raise InputError(
                f"{given} is outside the artifact root {root}.",
                hint="pass paths inside the root folder",
            )
        if not os.path.lexists(path):
            runner.warning(f"{given} does not exist; nothing is uploaded from it.")
            continue
        if path.exists() and not _stays_inside(path, root):
            _warn_escape(root, path)
            continue
        if path.is_dir():
            _walk(root, path, found)
        else:
            _add_file(root, path, found)
    return [found[name] for name in sorted(found)]


def _walk(root: Path, top: Path, found: dict[str, Entry]) -> None:
    """``os.walk(top, followlinks=True)``'s order, without its recursion (Python 3.11 recurses
    once per level). A folder reached twice (a symlink cycle) is walked once.

    Real paths are built as the walk goes down, and resolved only for symlinks: resolving
    every path would cost the square of the depth in system calls, each one as deep."""
    root_real = os.path.realpath(root)
    seen: set[str] = set()
    top_arc = "" if top == root else top.relative_to(root).as_posix()
    stack: list[tuple[str, str, str]] = [(str(top), os.path.realpath(top), top_arc)]
    while stack:
        here, real, arc = stack.pop()
        if real in seen:
            continue
        seen.add(real)
        try:
            with os.scandir(here) as listing:
                children = sorted(listing, key=lambda child: child.name)
        except OSError as exc:
            raise ArtifactError(f"Cannot read the folder {arc or '.'}: {exc.strerror}.") from exc
        dirs: list[tuple[str, str, str]] = []
        files: list[tuple[os.DirEntry[str], str, str]] = []
        for child in children:
            child_arc = f"{arc}/{child.name}" if arc else child.name
            link = child.is_symlink()
            # strings, not Path objects: a tree of 100,000 files makes as many of them
            child_real = os.path.realpath(child.path) if link else os.path.join(real, child.name)  # noqa: PTH118
            if not _is_dir(child):
                files.append((child, child_real, child_arc))
            elif link and not _inside(Path(child_real), Path(root_real)):
                _warn_escape_name(child_arc)
            else:
                dirs.append((child.path, child_real, child_arc))
        if not dirs and not files and arc:
            validate_file_path(arc + "/")
            found[arc + "/"] = Entry(arc + "/", None, stat.S_IFDIR | 0o755, 0)
        for child, child_real, child_arc in files:
            _add(child_arc, child.path, child_real if child.is_symlink() else None, root_real, found)
        stack.extend(reversed(dirs))


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows a symlink, as os.walk(followlinks=True)
    except OSError:
        return False


def _stays_inside(path: Path, root: Path) -> bool:
    return _inside(Path(os.path.realpath(path)), Path(os.path.realpath(root)))


def _warn_escape(root: Path, path: Path) -> None:
    _warn_escape_name(path.relative_to(root).as_posix())


def _warn_escape_name(name: str) -> None:
    runner.warning(f"{name} is a symlink that leads out of the artifact folder; it is not uploaded.")


def _add_file(root: Path, path: Path, found: dict[str, Entry]) -> None:
    name = path.relative_to(root).as_posix()
    real = os.path.realpath(path) if path.is_symlink() else None
    _add(name, str(path), real, os.path.realpath(root), found)


def _add(name: str, path: str, link_target: str | None, root_real: str, found: dict[str, Entry]) -> None:
    """Add the file at ``path``; ``link_target`` is where it resolves when it is a symlink."""
    validate_file_path(name)
    target = Path(link_target) if link_target is not None else None  # links only: they are few
    if target is not None and target.exists() and not _inside(target, Path(root_real)):
        _warn_escape_name(name)
        return
    try:
        st = os.stat(path)  # noqa: PTH116 - one per file: no Path object for each
    except FileNotFoundError:
        runner.warning(f"{name} is a dangling symlink; it is not uploaded.")
        return
    if not stat.S_ISREG(st.st_mode):
        runner.warning(f"{name} is not a regular file (a socket or a pipe); it is not uploaded.")
        return
    found[name] = Entry(name, link_target or path, st.st_mode, st.st_size, st.st_dev, st.st_ino)


class ZipWriter:
    """Writes entries to ``sink`` in the order given; ``close`` writes the central directory."""

    def __init__(self, sink: Sink, compression_level: int = 6) -> None:
        if not 0 <= compression_level <= 9:
            raise InputError(
                f"compression-level must be between 0 and 9, got {compression_level}.",
                hint="use 0 (store) to 9 (smallest); 6 is the default",
            )
        self._sink = sink
        self._level = compression_level
        self._offset = 0
        # Central directory records, packed as they are made (about 100 bytes a file).
        self._central = bytearray()
        self._count = 0

    def _write(self, data: bytes) -> None:
        if data:
            self._sink(data)
            self._offset += len(data)

    def add(self, entry: Entry) -> None:
        if entry.source is None:
            self._add_bytes(entry, b"")
        elif entry.size <= SMALL_FILE:
            data = _read_all(entry)
            self._add_bytes(entry, data)
        elif self._level == 0 or _incompressible(entry):
            self._add_stored_stream(entry)
        else:
            self._add_deflated_stream(entry)

    def _header(self, name: bytes, flags: int, method: int, sums: tuple[int, int, int], zip64: bool) -> None:
        """A local file header; ``sums`` is (crc, compressed size, size)."""
        crc, compressed, size = sums
        extra = b""
        if zip64:
            extra = struct.pack("<HHQQ", 0x0001, 16, size, compressed)
            compressed = size = U32_MAX
        self._write(
            struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                45 if zip64 else 20,
                flags,
                method,
                DOS_TIME,
                DOS_DATE,
                crc,
                compressed,
                size,
                len(name),
                len(extra),
            )
            + name
            + extra
        )

    def _begin(self, entry: Entry) -> tuple[bytes, int, int, int]:
        name = entry.arcname.encode("utf-8")
        flags = 0 if name.isascii() else FLAG_UTF8
        external = (entry.mode & 0xFFFF) << 16
        if entry.source is None:
            external |= 0x10  # MS-DOS directory bit
        return name, flags, external, self._offset

    def _add_bytes(self, entry: Entry, data: bytes) -> None:
        name, flags, external, offset = self._begin(entry)
        crc = zlib.crc32(data)
        method, payload = STORED, data
        if self._level > 0 and data:
            deflater = zlib.compressobj(self._level, zlib.DEFLATED, -15)
            packed = deflater.compress(data) + deflater.flush()
            # Incompressible data is stored: smaller, and still deterministic.
            if len(packed) < len(data):
                method, payload = DEFLATED, packed
        self._header(name, flags, method, (crc, len(payload), len(data)), zip64=False)
        self._write(payload)
        self._record(_Central(name, flags, method, crc, len(payload), len(data), offset, external))

    def _add_stored_stream(self, entry: Entry) -> None:
        name, flags, external, offset = self._begin(entry)
        crc = 0
        with _open(entry) as fh:
            while chunk := fh.read(READ_SIZE):
                crc = zlib.crc32(chunk, crc)
            size = fh.tell()
        zip64 = size >= ZIP64_FILE_THRESHOLD
        self._header(name, flags, STORED, (crc, size, size), zip64=zip64)
        written = 0
        second_crc = 0
        with _open(entry) as fh:
            while chunk := fh.read(READ_SIZE):
                second_crc = zlib.crc32(chunk, second_crc)
                written += len(chunk)
                self._write(chunk)
        if written != size or second_crc != crc:
            raise _changed(entry)
        self._record(_Central(name, flags, STORED, crc, size, size, offset, external))

    def _add_deflated_stream(self, entry: Entry) -> None:
        name, flags, external, offset = self._begin(entry)
        flags |= FLAG_DATA_DESCRIPTOR
        zip64 = entry.size >= ZIP64_FILE_THRESHOLD
        self._header(name, flags, DEFLATED, (0, 0, 0), zip64=zip64)
        deflater = zlib.compressobj(self._level, zlib.DEFLATED, -15)
        crc = size = compressed = 0
        with _open(entry) as fh:
            while chunk := fh.read(READ_SIZE):
                crc = zlib.crc32(chunk, crc)
                size += len(chunk)
                packed = deflater.compress(chunk)
                compressed += len(packed)
                self._write(packed)
        packed = deflater.flush()
        compressed += len(packed)
        self._write(packed)
        if not zip64 and max(size, compressed) >= U32_MAX:
            raise _changed(entry)
        if zip64:
            self._write(struct.pack("<IIQQ", 0x08074B50, crc, compressed, size))
        else:
            self._write(struct.pack("<IIII", 0x08074B50, crc, compressed, size))
        self._record(_Central(name, flags, DEFLATED, crc, compressed, size, offset, external))

    def _record(self, rec: _Central) -> None:
        self._central += _central_record(rec)
        self._count += 1

    def close(self) -> None:
        start = self._offset
        view = memoryview(self._central)
        for at in range(0, len(view), READ_SIZE):
            self._write(bytes(view[at : at + READ_SIZE]))
        view.release()
        count = self._count
        cd_size = self._offset - start
        if count >= U16_MAX or start >= U32_MAX or cd_size >= U32_MAX:
            eocd64 = self._offset
            self._write(
                struct.pack(
                    "<IQHHIIQQQQ", 0x06064B50, 44, MADE_BY_UNIX | 45, 45, 0, 0, count, count, cd_size, start
                )
            )
            self._write(struct.pack("<IIQI", 0x07064B50, 0, eocd64, 1))
            self._write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, U16_MAX, U16_MAX, U32_MAX, U32_MAX, 0))
        else:
            self._write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, cd_size, start, 0))


def _central_record(rec: _Central) -> bytes:
    extra_fields: list[int] = []
    size, compressed, offset = rec.size, rec.compressed, rec.offset
    if size >= U32_MAX:
        extra_fields.append(size)
        size = U32_MAX
    if compressed >= U32_MAX:
        extra_fields.append(compressed)
        compressed = U32_MAX
    if offset >= U32_MAX:
        extra_fields.append(offset)
        offset = U32_MAX
    extra = b""
    if extra_fields:
        extra = struct.pack(f"<HH{len(extra_fields)}Q", 0x0001, 8 * len(extra_fields), *extra_fields)
    # A streamed zip64 entry announced itself as zip64 in its local header: say so here too.
    version = 45 if extra_fields or rec.size >= ZIP64_FILE_THRESHOLD else 20
    return (
        struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            MADE_BY_UNIX | version,
            version,
            rec.flags,
            rec.method,
            DOS_TIME,
            DOS_DATE,
            rec.crc,
            compressed,
            size,
            len(rec.arcname),
            len(extra),
            0,
            0,
            0,
            rec.external,
            offset,
        )
        + rec.arcname
        + extra
    )


_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _open(entry: Entry) -> BinaryIO:
    """Open the file ``collect`` saw, and only that: a symlink now in its place is not
    followed (O_NOFOLLOW), a FIFO does not block the open (O_NONBLOCK), and fstat must show
    the same regular file (device and inode)."""
    if entry.source is None:
        raise ArtifactError(f"{entry.arcname} is a directory, not a file.")
    try:
        fd = os.open(entry.source, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _replaced(entry, "a symlink") from None
        raise ArtifactError(f"Cannot read {entry.arcname}: {exc.strerror}.") from exc
    st = os.fstat(fd)
    same = not entry.inode or (st.st_dev, st.st_ino) == (entry.device, entry.inode)
    if not stat.S_ISREG(st.st_mode) or not same:
        os.close(fd)
        raise _replaced(entry, "another file" if stat.S_ISREG(st.st_mode) else "a file of another kind")
    return os.fdopen(fd, "rb", buffering=0)


def _replaced(entry: Entry, by: str) -> ArtifactError:
    return ArtifactError(
        f"{entry.arcname} was replaced by {by} while it was being archived; it is not uploaded.",
        hint="upload once the build has finished writing its output",
    )


def _incompressible(entry: Entry) -> bool:
    """Whether a large file's first ``SAMPLE`` bytes would not shrink by ``MIN_SAVING``.

    Such files (compressed layers, archives, media) are stored: deflating
    them costs most of the CPU of an upload and saves nothing. The decision
    depends on the content only, so the archive stays deterministic.
    """
    with _open(entry) as fh:
        sample = fh.read(SAMPLE)
    return len(zlib.compress(sample, 1)) > len(sample) * (1 - MIN_SAVING)


def _read_all(entry: Entry) -> bytes:
    with _open(entry) as fh:
        data: bytes = fh.read()
    if len(data) != entry.size:
        raise _changed(entry)
    return data


def _changed(entry: Entry) -> ArtifactError:
    return ArtifactError(
        f"{entry.arcname} changed while it was being archived.",
        hint="upload once the build has finished writing its output",
    )


def write_zip(entries: Sequence[Entry], sink: Sink, compression_level: int = 6) -> None:
    writer = ZipWriter(sink, compression_level)
    for entry in entries:
        writer.add(entry)
    writer.close()


def iter_zip(entries: Sequence[Entry], compression_level: int = 6) -> Iterator[bytes]:
    """The archive as chunks (for tests and tools); the upload path uses ``write_zip``."""
    chunks: list[bytes] = []
    writer = ZipWriter(chunks.append, compression_level)
    for entry in entries:
        writer.add(entry)
        yield from chunks
        chunks.clear()
    writer.close()
    yield from chunks
