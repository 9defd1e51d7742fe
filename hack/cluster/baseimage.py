"""Builds the base image `busybox` as one multi-platform OCI image layout, with no
registry: busybox-static of each architecture from Debian, one layer each.

Layout (https://github.com/opencontainers/image-spec/blob/main/image-layout.md):
  oci-layout, index.json -> image index (tag in org.opencontainers.image.ref.name)
  -> one manifest per platform -> config + one gzip layer.
Builds use it with `--build-context busybox=oci-layout://<dir>:busybox`.

Usage: baseimage.py OUT_DIR TAG amd64=busybox-static_..._amd64.deb arm64=...
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


def _tarinfo(name: str, kind: bytes, mode: int, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, size, linkname
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


def rootfs_tar(busybox: bytes, applets: list[str]) -> bytes:
    """A reproducible rootfs: /bin/busybox, a link per applet, and the usual empty folders."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory, mode in (("bin", 0o755), ("etc", 0o755), ("root", 0o700), ("tmp", 0o1777)):
            tar.addfile(_tarinfo(directory, tarfile.DIRTYPE, mode))
        tar.addfile(_tarinfo("bin/busybox", tarfile.REGTYPE, 0o755, len(busybox)), io.BytesIO(busybox))
        for applet in sorted(set(applets) - {"busybox"}):
            tar.addfile(_tarinfo(f"bin/{applet}", tarfile.SYMTYPE, 0o777, linkname="busybox"))
        passwd = b"root:x:0:0:root:/root:/bin/sh\n"
        tar.addfile(_tarinfo("etc/passwd", tarfile.REGTYPE, 0o644, len(passwd)), io.BytesIO(passwd))
    return buffer.getvalue()


class Blobs:
    def __init__(self, root: Path) -> None:
        self.dir = root / "blobs" / "sha256"
        self.dir.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (self.dir / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data), **extra}


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def extract_busybox(deb: Path, scratch: Path) -> bytes:
    target = scratch / deb.stem
    subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)
    return (target / "bin" / "busybox").read_bytes()


def build(out: Path, tag: str, debs: dict[str, Path]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        binaries = {arch: extract_busybox(deb, Path(scratch)) for arch, deb in debs.items()}
        # The applet list is the same for every architecture of one version; ask the
        # host's own one (no emulation needed).
        host_busybox = Path(scratch) / "busybox-host"
        host_busybox.write_bytes(binaries["amd64"])
        host_busybox.chmod(0o755)
        applets = subprocess.run(
            [str(host_busybox), "--list"], check=True, capture_output=True, text=True
        ).stdout.split()
    layers = {arch: rootfs_tar(busybox, applets) for arch, busybox in binaries.items()}
    write_layout(
        out,
        tag,
        layers,
        {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
        "kubebuildx hack/cluster/baseimage.py: busybox-static from Debian",
    )


def write_layout(
    out: Path,
    tag: str,
    layers: dict[str, bytes],
    config: dict[str, Any],
    created_by: str,
    compresslevel: int = 9,
) -> None:
    """One single-layer image per architecture, as one multi-platform OCI layout tagged tag.

    Written to a sibling folder first and renamed, so a half-written layout is never used.
    """
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    blobs = Blobs(partial)
    manifests = []
    for arch, layer_tar in sorted(layers.items()):
        layer = blobs.put(gzip.compress(layer_tar, compresslevel=compresslevel, mtime=0), OCI_LAYER_GZIP)
        image_config = blobs.put(
            _json(
                {
                    "architecture": arch,
                    "os": "linux",
                    "config": config,
                    "rootfs": {
                        "type": "layers",
                        "diff_ids": [f"sha256:{hashlib.sha256(layer_tar).hexdigest()}"],
                    },
                    "history": [{"created_by": created_by}],
                }
            ),
            OCI_CONFIG,
        )
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": image_config, "layers": [layer]}
        manifests.append(
            blobs.put(_json(manifest), OCI_MANIFEST, platform={"architecture": arch, "os": "linux"})
        )
    image_index = blobs.put(
        _json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}),
        OCI_INDEX,
        annotations={REF_NAME: tag},
    )
    (partial / "oci-layout").write_bytes(_json({"imageLayoutVersion": "1.0.0"}))
    (partial / "index.json").write_bytes(
        _json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [image_index]})
    )
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)


def main(argv: list[str]) -> int:
    out, tag, *pairs = argv
    debs = {arch: Path(path) for arch, _, path in (p.partition("=") for p in pairs)}
    build(Path(out), tag, debs)
    print(f"oci-layout://{out}:{tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
