"""Workflow artifacts: the build's output uploaded to the v4 artifact service.

Behaviour, decided before any request is sent:
- A name with ``" : < > | * ? \\ /``, a carriage return or a line feed, or an
  empty name, is an InputError (exit 2) naming the character: the official
  client's rule. Per-platform names are ``<name>-<os>-<arch>[-<variant>]``.
- A file path in the artifact with one of ``" : < > | * ?`` (or CR/LF) is an
  InputError too.
- No files (an empty or missing folder): ``if-no-files-found`` decides: warn
  (default; a warning, nothing uploaded, no error), ignore (a log line), error
  (ArtifactError, exit 7). A missing path among several is a warning.
- compression-level outside 0-9, an unknown if-no-files-found, or a negative
  retention-days is an InputError.
- retention-days above GITHUB_RETENTION_DAYS is lowered to it, with a warning.
- A name that already exists in the run fails with the fix (overwrite);
  overwrite deletes the newest artifact of that name first.

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
