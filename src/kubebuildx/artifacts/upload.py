"""Uploading one artifact, then one per platform: the linear flow of the official client.

validate (name, options, files) -> ids from the token -> [overwrite: list + delete]
-> CreateArtifact -> zip streamed into block uploads -> FinalizeArtifact.
Everything that can be refused is refused before the first request.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kubebuildx import runner
from kubebuildx.action_spec import COMPRESSION_LEVELS, IF_NO_FILES_FOUND
from kubebuildx.artifacts import service
from kubebuildx.artifacts.blob import BlockUploader, block_size_for
from kubebuildx.artifacts.names import platform_artifact_name, platform_from_dirname, validate_artifact_name
from kubebuildx.artifacts.service import BackendIds, TwirpClient
from kubebuildx.artifacts.zipstream import Entry, collect, write_zip
from kubebuildx.errors import ArtifactError, InputError

ALL_PLATFORMS = "all"
SUMMARY_HEADER = "| Platform | Artifact | Size | Link |\n| --- | --- | --- | --- |"


@dataclass(frozen=True)
class UploadOptions:
    name: str
    retention_days: int | None = None
    compression_level: int = 6
    if_no_files_found: str = "warn"
    overwrite: bool = False


@dataclass(frozen=True)
class UploadedArtifact:
    name: str
    id: int
    size: int
    digest: str
    url: str


def validate_options(options: UploadOptions) -> None:
    validate_artifact_name(options.name)
    if options.compression_level not in COMPRESSION_LEVELS:
        raise InputError(
            f"compression-level must be between 0 and 9, got {options.compression_level}.",
            hint="use 0 (no compression, fastest) to 9 (smallest); the default is 6",
        )
    if options.if_no_files_found not in IF_NO_FILES_FOUND:
        raise InputError(
            f"if-no-files-found must be one of {', '.join(IF_NO_FILES_FOUND)}, "
            f"got {options.if_no_files_found!r}.",
        )
    if options.retention_days is not None and options.retention_days < 0:
        raise InputError(
            f"retention-days must be 1 or more (0: the repository's default), got {options.retention_days}.",
        )


def no_files(options: UploadOptions, where: str) -> None:
    """if-no-files-found, as actions/upload-artifact applies it."""
    message = f"No files were found with the provided path: {where}. No artifacts will be uploaded."
    if options.if_no_files_found == "error":
        raise ArtifactError(
            message, hint="check that the build wrote its output there, or set if-no-files-found"
        )
    if options.if_no_files_found == "warn":
        runner.warning(message)
    else:
        runner.info(message)


@dataclass(frozen=True)
class Context:
    """What the environment tells us, read once and before any request."""

    client: TwirpClient
    ids: BackendIds
    link_base: str
    max_retention_days: int | None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Context:
        token = service.runtime_token(env)
        ids = service.backend_ids(token)
        server = service.server_url(env)
        if service.is_ghes(server):
            raise ArtifactError(
                f"GitHub Enterprise Server ({server}) does not support the v4 artifact service "
                "that kubebuildx uses.",
                hint="upload the output folder with actions/upload-artifact@v3 on GHES",
            )
        link_base = (
            f"{server.rstrip('/')}/{service.repository(env)}/actions/runs/{service.run_id(env)}/artifacts"
        )
        client = TwirpClient(service.results_origin(env), token)
        return cls(client, ids, link_base, service.max_retention_days(env))


def upload_artifact(
    root: Path,
    options: UploadOptions,
    paths: Sequence[Path] | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> UploadedArtifact | None:
    """Upload ``paths`` (default: all of ``root``) as one zip artifact, named relative to ``root``.

    ``env`` is the job's environment (default: this process's): the artifact
    service's token and address. Returns None when there is nothing to upload
    and if-no-files-found is warn or ignore.
    """
    validate_options(options)
    if not root.exists():
        no_files(options, str(root))
        return None
    entries = collect(root, paths)
    if not entries:
        no_files(options, str(root))
        return None
    return upload_entries(Context.from_env(os.environ if env is None else env), entries, options)


def delete_if_exists(ctx: Context, name: str) -> None:
    """overwrite: delete the newest artifact of that name in this run, as deleteArtifactInternal does."""
    listed = service.parse_list(
        ctx.client.call("ListArtifacts", service.list_request(ctx.ids, name_filter=name))
    )
    if not listed:
        runner.info(f"No artifact named {name} to overwrite.")
        return
    newest = max(listed, key=lambda a: a.database_id)
    reply = ctx.client.call("DeleteArtifact", service.delete_request(newest.ids, newest.name))
    deleted = service.field(reply, "artifact_id", newest.database_id)
    runner.info(f"Deleted artifact {name} (ID {deleted}) to overwrite it.")


def upload_entries(ctx: Context, entries: Sequence[Entry], options: UploadOptions) -> UploadedArtifact:
    """The official client's steps, in order: [delete], create, upload, finalize."""
    expires_at, warning = service.expiration(
        options.retention_days, ctx.max_retention_days, datetime.now(UTC)
    )
    if warning:
        runner.warning(warning)
    if options.overwrite:
        delete_if_exists(ctx, options.name)
    upload_url = create(ctx, options.name, expires_at)
    size, sha256_hex = upload_zip(upload_url, entries, options)
    artifact_id = finalize(ctx, options.name, size, sha256_hex)
    url = f"{ctx.link_base}/{artifact_id}"
    runner.info(f"Artifact {options.name} uploaded: ID {artifact_id}, {url}")
    return UploadedArtifact(options.name, artifact_id, size, f"sha256:{sha256_hex}", url)


def create(ctx: Context, name: str, expires_at: datetime | None) -> str:
    """CreateArtifact; returns the signed upload URL (masked, never logged)."""
    try:
        reply = ctx.client.call("CreateArtifact", service.create_request(ctx.ids, name, expires_at))
    except service.TwirpFailure as exc:
        if exc.status != 409:
            raise
        raise ArtifactError(
            f"An artifact named {name} already exists in this workflow run ({exc.message})",
            hint="give each upload its own name, or set overwrite (--overwrite) to replace it",
        ) from exc
    if not service.field(reply, "ok", False):
        raise ArtifactError(
            f"CreateArtifact for {name}: the service answered but did not create it.",
            hint="run the job again",
        )
    upload_url = str(service.field(reply, "signed_upload_url", ""))
    if not upload_url:
        raise ArtifactError(f"CreateArtifact for {name}: the reply has no signed upload URL.")
    service.mask_signed_url(upload_url)
    return upload_url


def upload_zip(upload_url: str, entries: Sequence[Entry], options: UploadOptions) -> tuple[int, str]:
    """Zip ``entries`` straight into block uploads; returns (size, sha256 hex) of the bytes sent."""
    total = sum(e.size for e in entries)
    runner.info(
        f"Uploading artifact {options.name}.zip: {len(entries)} entries, {total} bytes "
        f"before compression (level {options.compression_level})"
    )
    uploader = BlockUploader(upload_url, block_size=block_size_for(total))
    try:
        write_zip(entries, uploader.write, options.compression_level)
        return uploader.finish()
    finally:
        uploader.close()


def finalize(ctx: Context, name: str, size: int, sha256_hex: str) -> int:
    """FinalizeArtifact; only ever called after the block list was committed."""
    runner.info(f"Finalizing artifact {name}: {size} bytes, sha256:{sha256_hex}")
    reply = ctx.client.call("FinalizeArtifact", service.finalize_request(ctx.ids, name, size, sha256_hex))
    if not service.field(reply, "ok", False):
        raise ArtifactError(f"FinalizeArtifact for {name}: the service did not accept the upload.")
    return service.int64(service.field(reply, "artifact_id"), "artifact id")


def platform_folders(output_dir: Path) -> dict[str, Path]:
    """``{"linux/amd64": out/linux_amd64, ...}``: the folders buildx writes with platform-split."""
    found = {}
    for child in sorted(output_dir.iterdir()):
        platform = platform_from_dirname(child.name) if child.is_dir() else None
        if platform is not None:
            found[platform] = child
    return found


def upload_platform_artifacts(
    output_dir: Path,
    base_name: str,
    options: UploadOptions,
    per_platform: bool = True,
    *,
    env: Mapping[str, str] | None = None,
) -> dict[str, UploadedArtifact]:
    """One artifact per platform folder (``<base>-<os>-<arch>[-<variant>]``), or one keyed "all".

    A folder without platform subfolders (a single-platform build without
    platform-split) is uploaded whole, keyed "all", named ``base_name``.
    Every name is validated and every folder read before the first request.
    """
    if not output_dir.is_dir():
        no_files(options, str(output_dir))
        return {}
    folders = platform_folders(output_dir) if per_platform else {}
    plan: dict[str, tuple[UploadOptions, list[Entry]]] = {}
    if folders:
        for child in sorted(set(output_dir.iterdir()) - set(folders.values())):
            runner.warning(f"{child} is not a platform folder (such as linux_amd64); it is not uploaded.")
        for platform, folder in folders.items():
            opts = dataclasses.replace(options, name=platform_artifact_name(base_name, platform))
            validate_options(opts)
            plan[platform] = (opts, collect(folder))
    else:
        opts = dataclasses.replace(options, name=base_name)
        validate_options(opts)
        plan[ALL_PLATFORMS] = (opts, collect(output_dir))

    uploaded: dict[str, UploadedArtifact] = {}
    ctx: Context | None = None
    for platform, (opts, entries) in plan.items():
        if not entries:
            no_files(opts, str(folders.get(platform, output_dir)))
            continue
        ctx = ctx or Context.from_env(os.environ if env is None else env)
        uploaded[platform] = upload_entries(ctx, entries, opts)
    return uploaded


def artifact_outputs(uploaded: Mapping[str, UploadedArtifact]) -> dict[str, str]:
    """The step outputs: JSON objects keyed by platform."""

    def as_json(values: Mapping[str, object]) -> str:
        return json.dumps(values, sort_keys=True, separators=(",", ":"))

    return {
        "artifact-ids": as_json({p: a.id for p, a in uploaded.items()}),
        "artifact-urls": as_json({p: a.url for p, a in uploaded.items()}),
        "artifact-digests": as_json({p: a.digest for p, a in uploaded.items()}),
    }


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def summary_rows(uploaded: Mapping[str, UploadedArtifact]) -> str:
    """Rows for a table under ``SUMMARY_HEADER``: platform, name, size, link."""
    cell, code = runner.md_cell, runner.md_code
    return "\n".join(
        f"| {cell(platform)} | {code(a.name)} | {human_size(a.size)} | [download]({a.url}) |"
        for platform, a in sorted(uploaded.items())
    )
