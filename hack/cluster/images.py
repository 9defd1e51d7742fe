"""Stand-ins for the action image's base images, made from Debian packages.

Nothing can be pulled here, so the harness makes every image that the
Dockerfile's FROM lines name, under that exact name, from what this machine can
reach (Debian's archive and the Go module proxy):

  python:<tag>             a bookworm rootfs made with mmdebstrap: python3, pip and
                           `python` on PATH, Debian's EXTERNALLY-MANAGED marker left
                           out, and the host's pip configuration and CA bundle, so
                           the Dockerfile's `pip install` works as on the official image
  docker/buildx-bin:<tag>  /buildx alone, the pinned buildx built from the Go proxy

and, for benchmarks/cache.py only, a compiler image (gcc:12-bookworm, Debian's gcc
and libc6-dev) as a multi-platform OCI layout. That one is made on demand
(`scripts/cluster bench-images`), never by `up` or `install`: its arm64 rootfs
takes minutes under qemu.

They come in two forms:
  - images in the proving ground's Docker engine (linux/amd64), for `docker build`
    of the unmodified Dockerfile, and the same rootfs as act's job image;
  - multi-platform OCI layouts (linux/amd64 and linux/arm64), for kubebuildx's
    own release build on the one-machine cluster (`--build-context
    python:3.11-slim-bookworm=oci-layout://...`).

The rootfs tars are the slow part (a minute natively, several under qemu for
arm64) and live in the cache; the rest is derived from them.
"""

from __future__ import annotations

import io
import re
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import layout as L
from baseimage import write_layout
from layout import Layout
from proc import HarnessError, run, say

DOCKERFILE = L.REPO / "Dockerfile"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
# Pinned to the bookworm versions this was made with; the rest of the rootfs is
# whatever those pull in from the same suite.
ROOTFS_PACKAGES = {
    "python3": "3.11.2-1+b1",
    "python3-pip": "23.0.1+dfsg-1",
    "python-is-python3": "3.11.2-1+deb12u1",
    "ca-certificates": None,  # the host's bundle replaces its file anyway
}
HOST_FILES = (Path("/etc/pip.conf"), Path("/etc/ssl/certs/ca-certificates.crt"))
# What python:*-slim leaves out too; the marker would make pip refuse to install.
DOC_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*")
PYTHON_EXCLUDES = (*DOC_EXCLUDES, "/usr/lib/python3*/EXTERNALLY-MANAGED")
# The compiler of benchmarks/cache.py, pinned the same way. gcc rather than a smaller
# compiler such as tcc: it is what users' images compile with, and its rootfs and an -O2
# compile under qemu stay affordable (figures in benchmarks/README.md).
COMPILER_IMAGE = "gcc:12-bookworm"
COMPILER_PACKAGES: dict[str, str | None] = {
    "gcc": "4:12.2.0-3",
    "gcc-12": "12.2.0-14+deb12u1",
    "libc6-dev": "2.36-9+deb12u14",  # pins libc6 too; gcc only recommends it
}
IMAGE_ENV = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C.UTF-8",
]
FAST = 1  # gzip level: the python rootfs is ~200 MB a platform, and these layers never ship
CREATED_BY = "kubebuildx hack/cluster/images.py: a stand-in from Debian"
JOB_IMAGE = "kubebuildx/act-job:bookworm"  # act's -P ubuntu-latest=<this>


@dataclass(frozen=True)
class Rootfs:
    """A bookworm rootfs made with mmdebstrap, one tar per architecture in the cache."""

    name: str  # <cache>/images/<name>-bookworm-<arch>.tar
    packages: dict[str, str | None]
    path_excludes: tuple[str, ...] = DOC_EXCLUDES
    host_files: tuple[Path, ...] = ()


PYTHON_ROOTFS = Rootfs("python", ROOTFS_PACKAGES, PYTHON_EXCLUDES, HOST_FILES)
COMPILER_ROOTFS = Rootfs("gcc", COMPILER_PACKAGES)


@dataclass(frozen=True)
class Standins:
    python: str  # e.g. python:3.11-slim-bookworm
    buildx: str  # e.g. docker/buildx-bin:0.36.1

    @property
    def names(self) -> tuple[str, str]:
        return (self.python, self.buildx)


def from_images(dockerfile_text: str) -> list[str]:
    """The images a Dockerfile's FROM lines name (stage references left out)."""
    stages: set[str] = set()
    images = []
    for line in dockerfile_text.splitlines():
        match = re.match(r"\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?\s*$", line, re.IGNORECASE)
        if not match:
            continue
        image, stage = match.group(1), match.group(2)
        if image.lower() not in stages and image != "scratch":
            images.append(image)
        if stage:
            stages.add(stage.lower())
    return images


def standins(dockerfile: Path = DOCKERFILE) -> Standins:
    """The stand-in names, read from the Dockerfile so that the two never drift apart."""
    python = buildx = None
    for image in from_images(dockerfile.read_text()):
        if image.startswith("python:"):
            python = image
        elif image.startswith("docker/buildx-bin:"):
            buildx = image
        else:
            raise HarnessError(
                f"{dockerfile}: no stand-in for FROM {image}; nothing can be pulled here, so "
                "hack/cluster/images.py must make it from Debian packages"
            )
    if python is None or buildx is None:
        raise HarnessError(f"{dockerfile}: expected FROM python:<tag> and FROM docker/buildx-bin:<tag>")
    if buildx.split(":", 1)[1] != L.BUILDX_VERSION.removeprefix("v"):
        raise HarnessError(f"{dockerfile}: {buildx} differs from the pinned buildx {L.BUILDX_VERSION}")
    return Standins(python=python, buildx=buildx)


# ---------------------------------------------------------------- rootfs


def rootfs_path(lay: Layout, arch: str, rootfs: Rootfs = PYTHON_ROOTFS) -> Path:
    return lay.cache / "images" / f"{rootfs.name}-{SUITE}-{arch}.tar"


def mmdebstrap_argv(arch: str, out: Path, pinned: bool = True, rootfs: Rootfs = PYTHON_ROOTFS) -> list[str]:
    includes = ",".join(f"{p}={v}" if pinned and v else p for p, v in rootfs.packages.items())
    argv = [
        "mmdebstrap",
        "--variant=minbase",
        f"--architectures={arch}",
        '--aptopt=APT::Install-Recommends "false"',
        *(f"--dpkgopt=path-exclude={pattern}" for pattern in rootfs.path_excludes),
        f"--include={includes}",
    ]
    for host_file in rootfs.host_files:
        if host_file.is_file():
            # mmdebstrap's own `upload` hook: a copy into the rootfs, no shell involved.
            argv.append(f"--customize-hook=upload {host_file} {host_file}")
    return [*argv, SUITE, str(out), DEBIAN_MIRROR]


def ensure_rootfs(lay: Layout, arch: str, rootfs: Rootfs = PYTHON_ROOTFS) -> bool:
    """Make the rootfs tar of arch unless present; True if it was made now."""
    out = rootfs_path(lay, arch, rootfs)
    if out.is_file():
        return False
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial.tar")
    partial.unlink(missing_ok=True)
    log = lay.logs / f"mmdebstrap-{rootfs.name}-{arch}.log"
    say(f"making the {arch} {rootfs.name} rootfs {out} with mmdebstrap (log {log}); minutes under qemu")
    started = time.monotonic()
    try:
        run(mmdebstrap_argv(arch, partial, rootfs=rootfs), log=log)
    except HarnessError:
        say("pinned rootfs packages not available; taking the suite's current ones")
        run(mmdebstrap_argv(arch, partial, pinned=False, rootfs=rootfs), log=log)
    partial.rename(out)
    say(f"made {out.name} in {time.monotonic() - started:.0f} s ({out.stat().st_size / 1e6:.0f} MB)")
    return True


def buildx_binary(lay: Layout, arch: str) -> Path:
    if arch == "amd64":
        return lay.buildx_bin / "buildx"
    return lay.bin_for(f"buildx-{arch}", L.BUILDX_VERSION) / "bin" / f"linux_{arch}" / "buildx"


# ---------------------------------------------------------------- OCI layouts


def _single_file_layer(path: Path, name: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = path.stat().st_size, 0o755, 0
        with path.open("rb") as handle:
            tar.addfile(info, handle)
    return buffer.getvalue()


def layout_dir(lay: Layout, image: str) -> Path:
    return lay.cache / "images" / "layouts" / re.sub(r"[^A-Za-z0-9._-]", "_", image)


def layout_context(lay: Layout, image: str) -> str:
    """The --build-context value that stands for image in a build."""
    return f"{image}=oci-layout://{layout_dir(lay, image)}:{image.rsplit(':', 1)[1]}"


def ensure_layouts(lay: Layout, names: Standins) -> bool:
    built = False
    python_dir = layout_dir(lay, names.python)
    if not (python_dir / "index.json").is_file():
        say(f"writing the OCI layout {python_dir}")
        layers = {arch: rootfs_path(lay, arch).read_bytes() for arch in L.ARCHES}
        write_layout(
            python_dir,
            names.python.rsplit(":", 1)[1],
            layers,
            {"Env": IMAGE_ENV, "Cmd": ["python3"]},
            CREATED_BY,
            FAST,
        )
        built = True
    buildx_dir = layout_dir(lay, names.buildx)
    if not (buildx_dir / "index.json").is_file():
        say(f"writing the OCI layout {buildx_dir}")
        layers = {arch: _single_file_layer(buildx_binary(lay, arch), "buildx") for arch in L.ARCHES}
        write_layout(
            buildx_dir, names.buildx.rsplit(":", 1)[1], layers, {"Cmd": ["/buildx"]}, CREATED_BY, FAST
        )
        built = True
    return built


def ensure_compiler_layout(lay: Layout) -> str:
    """The compiler image of benchmarks/cache.py as an OCI layout, made unless present;
    returns its --build-context value (gcc:12-bookworm=oci-layout://...)."""
    out = layout_dir(lay, COMPILER_IMAGE)
    if not (out / "index.json").is_file():
        for arch in L.ARCHES:
            ensure_rootfs(lay, arch, COMPILER_ROOTFS)
        say(f"writing the OCI layout {out}")
        layers = {arch: rootfs_path(lay, arch, COMPILER_ROOTFS).read_bytes() for arch in L.ARCHES}
        config = {"Env": IMAGE_ENV, "Cmd": ["bash"]}
        write_layout(out, COMPILER_IMAGE.rsplit(":", 1)[1], layers, config, CREATED_BY, FAST)
    return layout_context(lay, COMPILER_IMAGE)


# ---------------------------------------------------------------- Docker engine images


def docker_argv(lay: Layout, *args: str) -> list[str]:
    """Debian's docker CLI (20.10, the engine's own); /usr/local/bin/docker on this
    machine is a newer client that would shadow it on PATH."""
    return [L.DOCKER_CLI, f"--host=unix://{lay.docker_socket}", *args]


def _image_exists(lay: Layout, image: str) -> bool:
    try:
        run(docker_argv(lay, "image", "inspect", "--format={{.Id}}", image), quiet=True)
    except HarnessError:
        return False
    return True


def _import(lay: Layout, tar: Path, image: str, changes: list[str]) -> None:
    argv = docker_argv(lay, "import")
    for change in changes:
        argv.append(f"--change={change}")
    run([*argv, str(tar), image], quiet=True)
    say(f"docker engine: imported {image} from {tar.name}")


def ensure_engine_images(lay: Layout, names: Standins) -> bool:
    """The stand-ins (and act's job image) in the Docker engine; True if any was made now."""
    built = False
    if not _image_exists(lay, names.python):
        changes = [f"ENV {e.split('=', 1)[0]}={e.split('=', 1)[1]}" for e in IMAGE_ENV] + ['CMD ["python3"]']
        _import(lay, rootfs_path(lay, "amd64"), names.python, changes)
        built = True
    if not _image_exists(lay, JOB_IMAGE):
        run(docker_argv(lay, "tag", names.python, JOB_IMAGE), quiet=True)
        built = True
    if not _image_exists(lay, names.buildx):
        with tempfile.TemporaryDirectory() as scratch:
            tar = Path(scratch) / "buildx.tar"
            tar.write_bytes(_single_file_layer(buildx_binary(lay, "amd64"), "buildx"))
            _import(lay, tar, names.buildx, ['CMD ["/buildx"]'])
        built = True
    return built


def describe(lay: Layout) -> dict[str, object]:
    names = standins()
    return {
        "python": names.python,
        "buildx": names.buildx,
        "job_image": JOB_IMAGE,
        "build_contexts": [layout_context(lay, names.python), layout_context(lay, names.buildx)],
        "rootfs": {arch: str(rootfs_path(lay, arch)) for arch in L.ARCHES},
    }
