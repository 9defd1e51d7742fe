"""The build's artifacts: options from the inputs, and whether there is anything to upload."""

from __future__ import annotations

import pytest

from kubebuildx import build
from kubebuildx.artifacts import UploadOptions, build_artifacts
from kubebuildx.builder import plan
from kubebuildx.inputs import parse_inputs
from kubebuildx.platforms import Platform
from kubebuildx.progress import Timings

ARM64 = Platform("linux", "arm64")
DIGEST = "sha256:" + "2" * 64
TOKEN = {"ACTIONS_RUNTIME_TOKEN": "FAKE-RUNTIME-TOKEN-unit"}


def result(*, error: str = "", output_dir: str = "/t/out", digest: str = "") -> build.BuildResult:
    spec = plan(parse_inputs({}), name="kbx", namespace="ns", native=(ARM64,))
    metadata = {"containerimage.digest": digest} if digest else {}
    return build.BuildResult(spec, Timings((), (), {}, 0.0), {}, metadata, output_dir, 1.0, error)


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ({}, "kubebuildx"),
        ({"builder": "kbx-a"}, "kbx-a"),
        ({"builder": "kbx-a", "artifact-name": "app"}, "app"),
    ],
)
def test_base_name(raw: dict[str, str], name: str) -> None:
    assert build_artifacts.base_name(parse_inputs(raw)) == name


def test_upload_options_are_the_artifact_inputs() -> None:
    raw = {
        "artifact-name": "app",
        "retention-days": "5",
        "compression-level": "0",
        "if-no-files-found": "error",
        "overwrite": "true",
    }
    assert build_artifacts.upload_options(parse_inputs(raw)) == UploadOptions("app", 5, 0, "error", True)
    assert build_artifacts.upload_options(parse_inputs({})) == UploadOptions(
        "kubebuildx", None, 6, "warn", False
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, UploadOptions("digests-linux-arm64", 1, 6, "error", False)),
        (
            {
                "artifact-name": "app",
                "retention-days": "9",
                "if-no-files-found": "ignore",
                "overwrite": "true",
            },
            UploadOptions("app-digests-linux-arm64", 9, 6, "error", True),
        ),
    ],
)
def test_digest_options_keep_the_file_a_day_and_never_accept_it_missing(
    raw: dict[str, str], expected: UploadOptions
) -> None:
    assert build_artifacts.digest_options(parse_inputs(raw), result()) == expected


@pytest.mark.parametrize(
    ("raw", "env", "built", "uploads"),
    [
        ({}, TOKEN, result(), True),
        ({}, {}, result(), False),  # no artifact service outside Actions
        ({"upload-artifacts": "false"}, TOKEN, result(), False),
        ({}, TOKEN, result(error="boom"), False),
        ({}, TOKEN, result(output_dir=""), False),  # push or outputs: no local output
    ],
)
def test_uploads_output(
    raw: dict[str, str], env: dict[str, str], built: build.BuildResult, uploads: bool
) -> None:
    assert build_artifacts.uploads_output(parse_inputs(raw), built, env) is uploads


@pytest.mark.parametrize(
    ("raw", "built", "records"),
    [
        ({"push": "true", "image": "ghcr.io/o/app"}, result(output_dir="", digest=DIGEST), True),
        ({"push": "true", "image": "ghcr.io/o/app"}, result(output_dir="", digest=DIGEST, error="x"), False),
        ({"push": "true", "image": "ghcr.io/o/app"}, result(output_dir=""), False),
        ({"push": "true", "tags": "ghcr.io/o/app:1"}, result(output_dir="", digest=DIGEST), False),
    ],
)
def test_records_digest_only_for_a_push_by_digest(
    raw: dict[str, str], built: build.BuildResult, records: bool
) -> None:
    assert build_artifacts.records_digest(parse_inputs(raw), built) is records
