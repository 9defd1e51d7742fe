"""The upload flow's decisions: options, folders to platforms, outputs, summary, the CLI's argv."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kubebuildx import cli
from kubebuildx.artifacts import (
    SUMMARY_HEADER,
    UploadedArtifact,
    UploadOptions,
    artifact_outputs,
    summary_rows,
    upload_artifact,
    upload_platform_artifacts,
)
from kubebuildx.artifacts.cli import common_root
from kubebuildx.artifacts.upload import human_size, platform_folders, validate_options
from kubebuildx.errors import ArtifactError, InputError

URL = "https://github.com/o/r/actions/runs/1/artifacts"
UPLOADED = {
    "linux/amd64": UploadedArtifact("app-linux-amd64", 11, 1536, "sha256:aa", f"{URL}/11"),
    "linux/arm/v7": UploadedArtifact("app-linux-arm-v7", 12, 3 << 20, "sha256:bb", f"{URL}/12"),
}


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (UploadOptions(name="a/b"), "Forward slash"),
        (UploadOptions(name="ok", compression_level=10), "compression-level"),
        (UploadOptions(name="ok", compression_level=-1), "compression-level"),
        (UploadOptions(name="ok", if_no_files_found="fail"), "if-no-files-found"),
        (UploadOptions(name="ok", retention_days=-3), "retention-days"),
    ],
)
def test_bad_options_are_input_errors(options: UploadOptions, match: str) -> None:
    with pytest.raises(InputError, match=match):
        validate_options(options)


def test_bad_name_fails_before_reading_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ACTIONS_RUNTIME_TOKEN", raising=False)
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError):
        upload_artifact(tmp_path, UploadOptions(name="bad:name"))


def test_no_files_modes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    assert upload_artifact(tmp_path, UploadOptions(name="x")) is None
    assert "No files were found" in capsys.readouterr().err
    assert upload_artifact(tmp_path, UploadOptions(name="x", if_no_files_found="ignore")) is None
    assert "warning" not in capsys.readouterr().err
    with pytest.raises(ArtifactError, match="No files were found"):
        upload_artifact(tmp_path, UploadOptions(name="x", if_no_files_found="error"))


def test_a_missing_folder_is_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACTIONS_RUNTIME_TOKEN", raising=False)
    assert upload_artifact(tmp_path / "missing", UploadOptions(name="x", if_no_files_found="ignore")) is None
    with pytest.raises(ArtifactError, match="No files were found"):
        upload_artifact(tmp_path / "missing", UploadOptions(name="x", if_no_files_found="error"))


def test_a_missing_path_among_several_is_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("ACTIONS_RUNTIME_TOKEN", raising=False)
    (tmp_path / "here").write_text("x")
    with pytest.raises(ArtifactError, match="ACTIONS_RUNTIME_TOKEN"):
        upload_artifact(tmp_path, UploadOptions(name="x"), [tmp_path / "here", tmp_path / "gone"])
    assert "gone does not exist" in capsys.readouterr().err


def test_missing_environment_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACTIONS_RUNTIME_TOKEN", raising=False)
    (tmp_path / "f").write_text("x")
    with pytest.raises(ArtifactError, match="ACTIONS_RUNTIME_TOKEN"):
        upload_artifact(tmp_path, UploadOptions(name="x"))


def test_platform_folders(tmp_path: Path) -> None:
    for name in ("linux_arm_v7", "linux_amd64", "docs"):
        (tmp_path / name).mkdir()
    (tmp_path / "linux_s390x").write_text("a file, not a folder")
    assert platform_folders(tmp_path) == {
        "linux/amd64": tmp_path / "linux_amd64",
        "linux/arm/v7": tmp_path / "linux_arm_v7",
    }


def test_platform_names_are_validated_before_any_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ACTIONS_RUNTIME_TOKEN", raising=False)
    (tmp_path / "linux_amd64").mkdir()
    (tmp_path / "linux_amd64" / "f").write_text("x")
    with pytest.raises(InputError, match="Colon"):
        upload_platform_artifacts(tmp_path, "bad:base", UploadOptions(name="ignored"))


def test_empty_platform_folders_upload_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ACTIONS_RUNTIME_TOKEN", raising=False)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    (tmp_path / "linux_amd64").mkdir()
    (tmp_path / "stray.txt").write_text("x")
    assert (
        upload_platform_artifacts(tmp_path, "app", UploadOptions(name="app", if_no_files_found="ignore"))
        == {}
    )
    assert "stray.txt is not a platform folder" in capsys.readouterr().err
    assert upload_platform_artifacts(tmp_path / "missing", "app", UploadOptions(name="app")) == {}


def test_outputs_are_json_keyed_by_platform() -> None:
    outputs = artifact_outputs(UPLOADED)
    assert json.loads(outputs["artifact-ids"]) == {"linux/amd64": 11, "linux/arm/v7": 12}
    assert json.loads(outputs["artifact-urls"])["linux/arm/v7"] == f"{URL}/12"
    assert json.loads(outputs["artifact-digests"]) == {
        "linux/amd64": "sha256:aa",
        "linux/arm/v7": "sha256:bb",
    }


def test_summary_rows() -> None:
    assert SUMMARY_HEADER.startswith("| Platform | Artifact | Size | Link |")
    assert summary_rows(UPLOADED).splitlines() == [
        f"| linux/amd64 | `app-linux-amd64` | 1.5 KiB | [download]({URL}/11) |",
        f"| linux/arm/v7 | `app-linux-arm-v7` | 3.0 MiB | [download]({URL}/12) |",
    ]


@pytest.mark.parametrize(
    ("size", "text"), [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (5 << 30, "5.0 GiB")]
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


def test_cli_argv() -> None:
    args = cli.build_parser().parse_args(
        [
            "upload-artifact",
            "--name",
            "n",
            "--retention-days",
            "3",
            "--compression-level",
            "0",
            "--overwrite",
            "--if-no-files-found",
            "error",
            "out/a",
            "out/b",
        ]
    )
    assert (args.name, args.retention_days, args.compression_level, args.overwrite) == ("n", 3, 0, True)
    assert args.if_no_files_found == "error"
    assert args.paths == [Path("out/a"), Path("out/b")]
    assert callable(args.func)


def test_cli_refuses_an_unknown_mode() -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["upload-artifact", "--name", "n", "--if-no-files-found", "maybe", "x"])


def test_common_root(tmp_path: Path) -> None:
    (tmp_path / "out" / "a").mkdir(parents=True)
    (tmp_path / "out" / "b").mkdir()
    (tmp_path / "out" / "b" / "f").write_text("x")
    assert common_root([tmp_path / "out" / "a"]) == tmp_path / "out" / "a"
    assert common_root([tmp_path / "out" / "b" / "f"]) == tmp_path / "out" / "b"
    assert common_root([tmp_path / "out" / "a", tmp_path / "out" / "b" / "f"]) == tmp_path / "out"


def test_a_file_name_that_is_not_utf8_is_refused_before_create_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubebuildx.artifacts import upload

    def no_request(env: object) -> None:
        raise AssertionError("a request was about to be sent")

    monkeypatch.setattr(upload.Context, "from_env", no_request)
    (tmp_path / "linux_amd64").mkdir()
    (tmp_path / "linux_amd64" / "good").write_text("x")
    (tmp_path / "linux_arm64").mkdir()
    (tmp_path / "linux_arm64" / os.fsdecode(b"\xff.bin")).write_text("x")
    with pytest.raises(InputError, match="not UTF-8"):
        upload_platform_artifacts(tmp_path, "app", UploadOptions(name="app"))
