"""Workflow artifacts: the build's output uploaded to the v4 artifact service.

Kept light to import: requests and the standard library only (no kubernetes
client), so that the upload path stays well under its memory budget.
"""

from kubebuildx.artifacts.upload import (
    SUMMARY_HEADER,
    UploadedArtifact,
    UploadOptions,
    artifact_outputs,
    summary_rows,
    upload_artifact,
    upload_platform_artifacts,
)

__all__ = [
    "SUMMARY_HEADER",
    "UploadOptions",
    "UploadedArtifact",
    "artifact_outputs",
    "summary_rows",
    "upload_artifact",
    "upload_platform_artifacts",
]
