"""What kubebuildx uploads, the official client downloads byte for byte with its digest check passing."""

from __future__ import annotations

import filecmp
import hashlib
import io
import os
import zipfile
from pathlib import Path

import pytest
import requests
from artifact_peers import official_client
from artifact_twirp_server import RunningService

from kubebuildx.artifacts import UploadedArtifact, UploadOptions, upload_artifact, upload_platform_artifacts


def download(peers: Path, service: RunningService, uploaded: UploadedArtifact, dest: Path) -> None:
    env = {**service.env(), "GITHUB_WORKSPACE": str(dest)}
    result, _ = official_client(peers, env, "download", str(uploaded.id), str(dest), uploaded.digest)
    assert result["digestMismatch"] is False


def same_tree(left: Path, right: Path) -> None:
    compared = filecmp.dircmp(left, right)
    assert not compared.left_only and not compared.right_only and not compared.funny_files, compared.report()
    for name in compared.common_files:
        assert filecmp.cmp(left / name, right / name, shallow=False), name
    for sub in compared.common_dirs:
        same_tree(left / sub, right / sub)


def blob_bytes(service: RunningService, artifact_id: int) -> bytes:
    artifact = service.service.artifacts[artifact_id]
    from artifact_twirp_server import CONTAINER, blob_sas

    url = f"{service.service.blob_endpoint}/{CONTAINER}/{artifact.blob}?{blob_sas(artifact.blob, 'r')}"
    response = requests.get(url, timeout=60)
    response.raise_for_status()
    return response.content


def noise(seed: str, size: int) -> bytes:
    """Incompressible and the same on every run."""
    return hashlib.shake_256(seed.encode()).digest(size)


def make_mixed_tree(root: Path) -> None:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "app").write_bytes(noise("app", 9 << 20))  # > one block, incompressible
    (root / "bin" / "app").chmod(0o755)
    (root / "bin" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "bin" / "run.sh").chmod(0o750)
    (root / "share" / "doc" / "deep" / "deeper").mkdir(parents=True)
    (root / "share" / "doc" / "deep" / "deeper" / "README.md").write_text("text\n" * 300_000)
    (root / "share" / "empty-file").write_bytes(b"")
    (root / "share" / "empty-dir").mkdir()
    (root / "share" / "ünïcode name.txt").write_text("ok")
    (root / "bin" / "app-link").symlink_to("app")


def test_mixed_tree_roundtrip_with_the_official_client(
    tmp_path: Path, peers: Path, service: RunningService
) -> None:
    src = tmp_path / "src"
    make_mixed_tree(src)
    uploaded = upload_artifact(src, UploadOptions(name="mixed", retention_days=5))
    assert uploaded is not None
    assert service.service.methods_called() == ["CreateArtifact", "FinalizeArtifact"]
    dest = tmp_path / "dest"
    download(peers, service, uploaded, dest)
    # The symlink arrives as a copy of its target, as with the official client.
    assert (dest / "bin" / "app-link").read_bytes() == (src / "bin" / "app").read_bytes()
    (src / "bin" / "app-link").unlink()
    (dest / "bin" / "app-link").unlink()
    same_tree(src, dest)
    assert (dest / "share" / "empty-dir").is_dir()
    assert (dest / "share" / "empty-file").stat().st_size == 0


def test_executable_bit_is_in_the_zip(tmp_path: Path, service: RunningService) -> None:
    """unzip-stream (the official downloader) does not restore modes, so we check the
    zip itself: external attributes carry the Unix mode, which unzip and zipfile apply."""
    src = tmp_path / "src"
    make_mixed_tree(src)
    uploaded = upload_artifact(src, UploadOptions(name="modes"))
    assert uploaded is not None
    archive = zipfile.ZipFile(io.BytesIO(blob_bytes(service, uploaded.id)))
    modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
    assert modes["bin/app"] & 0o777 == 0o755
    assert modes["bin/run.sh"] & 0o777 == 0o750
    assert modes["share/empty-file"] & 0o777 == 0o644 & ~_umask()
    assert archive.testzip() is None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_thousands_of_small_files(tmp_path: Path, peers: Path, service: RunningService) -> None:
    src = tmp_path / "small"
    for i in range(3000):
        folder = src / f"d{i % 37:02d}" / f"e{i % 5}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:05d}.txt").write_bytes(noise(str(i), i * 7919 % 2048))
    uploaded = upload_artifact(src, UploadOptions(name="small-files", compression_level=9))
    assert uploaded is not None
    dest = tmp_path / "dest"
    download(peers, service, uploaded, dest)
    same_tree(src, dest)


def test_large_random_files_at_level_0(tmp_path: Path, peers: Path, service: RunningService) -> None:
    src = tmp_path / "large"
    src.mkdir()
    for i in range(3):
        (src / f"blob{i}.bin").write_bytes(noise(f"large{i}", (6 << 20) + i * 12345))
    uploaded = upload_artifact(src, UploadOptions(name="large", compression_level=0))
    assert uploaded is not None
    assert uploaded.size > 3 * (6 << 20)
    dest = tmp_path / "dest"
    download(peers, service, uploaded, dest)
    same_tree(src, dest)


def test_zip64_entries_extract_with_the_official_client(
    tmp_path: Path, peers: Path, service: RunningService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files past 4 GiB get zip64 headers and descriptors; a lowered threshold shows
    unzip-stream reads ours (streamed deflate and stored) without a 4 GiB fixture."""
    from kubebuildx.artifacts import zipstream

    monkeypatch.setattr(zipstream, "ZIP64_FILE_THRESHOLD", 1 << 20)
    src = tmp_path / "src"
    src.mkdir()
    (src / "random.bin").write_bytes(noise("zip64", 3 << 20))
    (src / "text.log").write_bytes(b"zip64 line of text\n" * 200_000)
    uploaded = upload_artifact(src, UploadOptions(name="zip64"))
    assert uploaded is not None
    dest = tmp_path / "dest"
    download(peers, service, uploaded, dest)
    same_tree(src, dest)


def test_same_tree_twice_gives_the_same_digest(tmp_path: Path, service: RunningService) -> None:
    src = tmp_path / "src"
    make_mixed_tree(src)
    first = upload_artifact(src, UploadOptions(name="twice-1"))
    os.utime(src / "bin" / "run.sh", (1, 1))  # timestamps do not reach the archive
    second = upload_artifact(src, UploadOptions(name="twice-2"))
    assert first is not None and second is not None
    assert first.digest == second.digest
    assert first.size == second.size
    assert service.service.artifacts[first.id].digest == first.digest


def test_per_platform_artifacts(tmp_path: Path, peers: Path, service: RunningService) -> None:
    out = tmp_path / "out"
    for platform_dir in ("linux_amd64", "linux_arm64", "linux_arm_v7"):
        (out / platform_dir / "usr" / "bin").mkdir(parents=True)
        (out / platform_dir / "usr" / "bin" / "tool").write_text(platform_dir)
    uploaded = upload_platform_artifacts(out, "app", UploadOptions(name="app"))
    assert sorted(uploaded) == ["linux/amd64", "linux/arm/v7", "linux/arm64"]
    assert uploaded["linux/arm/v7"].name == "app-linux-arm-v7"
    dest = tmp_path / "dest"
    download(peers, service, uploaded["linux/arm/v7"], dest)
    assert (dest / "usr" / "bin" / "tool").read_text() == "linux_arm_v7"
    assert len({a.digest for a in uploaded.values()}) == 3


def test_one_artifact_for_all_platforms(tmp_path: Path, service: RunningService) -> None:
    out = tmp_path / "out"
    for platform_dir in ("linux_amd64", "linux_arm64"):
        (out / platform_dir).mkdir(parents=True)
        (out / platform_dir / "tool").write_text(platform_dir)
    uploaded = upload_platform_artifacts(out, "bundle", UploadOptions(name="bundle"), per_platform=False)
    assert list(uploaded) == ["all"]
    archive = zipfile.ZipFile(io.BytesIO(blob_bytes(service, uploaded["all"].id)))
    assert archive.namelist() == ["linux_amd64/tool", "linux_arm64/tool"]


@pytest.mark.parametrize("camel", [False, True])
def test_replies_in_either_case_are_read(tmp_path: Path, service: RunningService, camel: bool) -> None:
    service.service.camel_replies = camel
    (tmp_path / "f").write_text("x")
    uploaded = upload_artifact(tmp_path, UploadOptions(name=f"case-{camel}"))
    assert uploaded is not None and uploaded.id in service.service.artifacts


def test_the_official_client_sends_the_same_shapes(
    tmp_path: Path, peers: Path, service: RunningService
) -> None:
    """Both clients against the same server: the same methods, fields and value types."""
    (tmp_path / "f.txt").write_text("same")
    env = {**service.env(), "GITHUB_WORKSPACE": str(tmp_path)}
    official_client(peers, env, "upload", "shape-official", str(tmp_path))
    theirs = list(service.service.calls)
    service.service.reset()
    assert upload_artifact(tmp_path, UploadOptions(name="shape-ours")) is not None
    ours = list(service.service.calls)
    assert [c.method for c in ours] == [c.method for c in theirs] == ["CreateArtifact", "FinalizeArtifact"]
    for mine, official in zip(ours, theirs, strict=True):
        assert list(mine.body) == list(official.body)
        assert {k: type(v) for k, v in mine.body.items()} == {k: type(v) for k, v in official.body.items()}
    assert ours[0].body["version"] == theirs[0].body["version"]
    assert ours[0].body["mime_type"] == theirs[0].body["mime_type"]


def test_requests_are_snake_case_with_int64_strings(tmp_path: Path, service: RunningService) -> None:
    (tmp_path / "f").write_text("x")
    uploaded = upload_artifact(tmp_path, UploadOptions(name="shape", retention_days=500))
    assert uploaded is not None
    create, finalize = (call.body for call in service.service.calls)
    assert set(create) == {
        "workflow_run_backend_id",
        "workflow_job_run_backend_id",
        "name",
        "expires_at",
        "version",
        "mime_type",
    }
    assert create["mime_type"] == "application/zip" and create["version"] == 7
    assert finalize["size"] == str(uploaded.size)
    assert finalize["hash"] == uploaded.digest
    assert all(ua.startswith("kubebuildx/") for ua in service.service.seen_user_agents)
