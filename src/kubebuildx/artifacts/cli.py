"""``kubebuildx upload-artifact``: the same upload, outside the build.

``PATH...`` are files or folders; they are stored relative to their nearest
common folder, as actions/upload-artifact stores paths relative to their least
common ancestor (a single folder: its contents at the top of the zip). Globs
are left to the shell.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from kubebuildx import runner
from kubebuildx.action_spec import IF_NO_FILES_FOUND
from kubebuildx.artifacts.upload import (
    SUMMARY_HEADER,
    UploadOptions,
    summary_rows,
    upload_artifact,
)


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "upload-artifact",
        help="upload files as a workflow artifact (the v4 artifact service)",
        description="Upload files or folders as one workflow artifact, as actions/upload-artifact does.",
    )
    parser.add_argument("--name", required=True, help="artifact name")
    parser.add_argument("--retention-days", type=int, default=None, help="days to keep it")
    parser.add_argument("--compression-level", type=int, default=6, help="0 (store) to 9; default 6")
    parser.add_argument("--overwrite", action="store_true", help="replace a same-named artifact")
    parser.add_argument(
        "--if-no-files-found", choices=IF_NO_FILES_FOUND, default="warn", help="when nothing matches"
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", type=Path)
    parser.set_defaults(func=run)


def absolute_path(path: Path) -> Path:
    """Absolute and normalized, without resolving symlinks (they are followed later, per file)."""
    return Path(os.path.normpath(path.absolute()))


def common_root(paths: list[Path]) -> Path:
    """The folder the paths are stored relative to."""
    absolute = [absolute_path(p) for p in paths]
    if len(absolute) == 1:
        return absolute[0] if absolute[0].is_dir() else absolute[0].parent
    return Path(os.path.commonpath([p if p.is_dir() else p.parent for p in absolute]))


def run(args: argparse.Namespace) -> int:
    options = UploadOptions(
        name=args.name,
        retention_days=args.retention_days,
        compression_level=args.compression_level,
        if_no_files_found=args.if_no_files_found,
        overwrite=args.overwrite,
    )
    paths: list[Path] = args.paths
    root = common_root(paths)
    with runner.group(f"Uploading artifact {options.name}"):
        uploaded = upload_artifact(root, options, [absolute_path(p) for p in paths], env=os.environ)
    if uploaded is None:
        return 0
    runner.set_output("artifact-id", str(uploaded.id))
    runner.set_output("artifact-url", uploaded.url)
    runner.set_output("artifact-digest", uploaded.digest)
    runner.append_summary(f"{SUMMARY_HEADER}\n{summary_rows({'-': uploaded})}")
    return 0
