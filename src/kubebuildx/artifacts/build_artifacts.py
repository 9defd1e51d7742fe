"""The build's artifacts: its local output, one artifact per platform, and
for push by digest the digest file the merge job downloads.

Decisions (the options from the inputs, whether there is anything to upload)
are pure; ``upload_output`` and ``record_digest`` are the edges. This module
reads the build's inputs and result, so it is imported by the pipeline only,
never by ``kubebuildx upload-artifact``, which stays light.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Mapping
from pathlib import Path

from kubebuildx import merge, runner
from kubebuildx.artifacts.upload import (
    SUMMARY_HEADER,
    UploadOptions,
    artifact_outputs,
    summary_rows,
    upload_artifact,
    upload_platform_artifacts,
)
from kubebuildx.build import BuildResult, push_by_digest
from kubebuildx.inputs import Inputs


def base_name(inputs: Inputs) -> str:
    """Predictable, unlike the default builder name: a later job downloads ``<name>-*``."""
    return inputs.artifact_name or inputs.builder or "kubebuildx"


def upload_options(inputs: Inputs) -> UploadOptions:
    """The artifact inputs, for the local output."""
    return UploadOptions(
        name=base_name(inputs),
        retention_days=inputs.retention_days,
        compression_level=inputs.compression_level,
        if_no_files_found=inputs.if_no_files_found,
        overwrite=inputs.overwrite,
    )


def digest_options(inputs: Inputs, result: BuildResult) -> UploadOptions:
    """The digest file is the merge job's input: kept a day unless told otherwise, and never absent."""
    return dataclasses.replace(
        upload_options(inputs),
        name=merge.digest_artifact_name(inputs.artifact_name, result.spec.platforms),
        retention_days=inputs.retention_days or 1,
        if_no_files_found="error",
    )


def can_upload(inputs: Inputs, env: Mapping[str, str]) -> bool:
    """upload-artifacts, in a job that has the artifact service's token."""
    return inputs.upload_artifacts and bool(env.get("ACTIONS_RUNTIME_TOKEN"))


def uploads_output(inputs: Inputs, result: BuildResult, env: Mapping[str, str]) -> bool:
    """A build that wrote the local output and succeeded uploads it."""
    return bool(result.output_dir) and not result.error and can_upload(inputs, env)


def records_digest(inputs: Inputs, result: BuildResult) -> bool:
    """A build that pushed by digest records the digest for the merge job."""
    return not result.error and bool(result.digest) and push_by_digest(inputs)


def upload_output(inputs: Inputs, output_dir: Path, env: Mapping[str, str]) -> str:
    """Upload each platform's folder; set the artifact outputs; return the summary table."""
    options = upload_options(inputs)
    uploaded = upload_platform_artifacts(
        output_dir, options.name, options, per_platform=inputs.artifact_per_platform, env=env
    )
    for key, value in artifact_outputs(uploaded).items():
        runner.set_output(key, value)
    return f"{SUMMARY_HEADER}\n{summary_rows(uploaded)}" if uploaded else ""


def record_digest(inputs: Inputs, result: BuildResult, folder: Path, env: Mapping[str, str]) -> str:
    """Push by digest: a file named by the digest's hex, uploaded as ``digests-<platform>``
    for the merge job (docker's matrix recipe) when the job can upload; the summary's line about it."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    file = folder / merge.digest_file_name(result.digest)
    file.touch()
    runner.info(f"pushed {inputs.image}@{result.digest}")
    runner.info(f"digest file: {file}")
    if not can_upload(inputs, env):
        return ""
    uploaded = upload_artifact(folder, digest_options(inputs, result), [file], env=env)
    if uploaded is None:
        return ""
    return f"Digest artifact for the merge job: [`{uploaded.name}`]({uploaded.url})"
