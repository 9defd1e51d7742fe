"""Faults, duplicates, bad input, and secrets: what the user sees, and what is (not) sent."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from artifact_fault_proxy import RunningProxy
from artifact_peers import official_client
from artifact_twirp_server import RunningService

from kubebuildx import cli
from kubebuildx.artifacts import UploadOptions, upload_artifact
from kubebuildx.errors import ArtifactError, InputError


def tree(root: Path, megabytes: int = 14) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "payload.bin").write_bytes(hashlib.shake_256(b"payload").digest(megabytes << 20))
    (root / "small.txt").write_text("small\n")
    return root


def through_proxy(service: RunningService, fault_proxy: RunningProxy) -> None:
    service.service.upload_endpoint = fault_proxy.endpoint


def test_blocks_answering_503_or_dropped_are_retried(
    tmp_path: Path, peers: Path, service: RunningService, fault_proxy: RunningProxy
) -> None:
    through_proxy(service, fault_proxy)
    fault_proxy.plan.rules.update({"block0": ["503", "503"], "block1": ["drop"], "block2": ["drop", "503"]})
    fault_proxy.plan.rules["commit"] = ["503"]
    src = tree(tmp_path / "src")
    uploaded = upload_artifact(src, UploadOptions(name="flaky", compression_level=0))
    assert uploaded is not None
    outcomes = [o for _, o in fault_proxy.plan.seen]
    assert outcomes.count("503") == 4 and outcomes.count("drop") == 2
    assert service.service.methods_called() == ["CreateArtifact", "FinalizeArtifact"]
    result, _ = official_client(
        peers,
        {**service.env(), "GITHUB_WORKSPACE": str(tmp_path)},
        "download",
        str(uploaded.id),
        str(tmp_path / "dest"),
        uploaded.digest,
    )
    assert result["digestMismatch"] is False
    assert (tmp_path / "dest" / "payload.bin").read_bytes() == (src / "payload.bin").read_bytes()


def test_a_stalled_block_times_out_and_is_retried(
    tmp_path: Path, service: RunningService, fault_proxy: RunningProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubebuildx.artifacts import blob

    # read timeout well under the stall, well over a loaded machine's answer time for a block
    monkeypatch.setattr(blob, "TIMEOUT", (5.0, 2.0))
    through_proxy(service, fault_proxy)
    fault_proxy.plan.rules["block1"] = ["stall"]
    src = tree(tmp_path / "src", megabytes=6)
    uploaded = upload_artifact(src, UploadOptions(name="stalled", compression_level=0))
    assert uploaded is not None
    assert [t for t, _ in fault_proxy.plan.seen].count("block1") >= 2  # stalled once, then retried
    assert service.service.methods_called() == ["CreateArtifact", "FinalizeArtifact"]


def test_a_block_that_always_fails_is_never_finalized(
    tmp_path: Path, service: RunningService, fault_proxy: RunningProxy
) -> None:
    through_proxy(service, fault_proxy)
    fault_proxy.plan.rules["block1"] = ["always503"]
    with pytest.raises(ArtifactError) as failure:
        upload_artifact(tree(tmp_path / "src"), UploadOptions(name="doomed", compression_level=0))
    message = str(failure.value)
    assert "block 1" in message and "503" in message and "not finalized" in message
    assert "sig=" not in message and service.token not in message
    assert "FinalizeArtifact" not in service.service.methods_called()
    assert ("commit", "forward") not in fault_proxy.plan.seen


def test_twirp_5xx_and_non_json_replies_are_retried(tmp_path: Path, service: RunningService) -> None:
    service.service.faults["CreateArtifact"] = ["503", "html", "500"]
    service.service.faults["FinalizeArtifact"] = ["429"]
    (tmp_path / "f").write_text("x")
    assert upload_artifact(tmp_path, UploadOptions(name="retried")) is not None
    assert service.service.methods_called().count("CreateArtifact") == 4


def test_twirp_gives_up_after_five_attempts(tmp_path: Path, service: RunningService) -> None:
    service.service.faults["CreateArtifact"] = ["503"] * 5
    (tmp_path / "f").write_text("x")
    with pytest.raises(ArtifactError, match="CreateArtifact after 5 attempts"):
        upload_artifact(tmp_path, UploadOptions(name="gives-up"))
    assert service.service.methods_called() == ["CreateArtifact"] * 5


def test_quota_is_not_retried_and_explained(tmp_path: Path, service: RunningService) -> None:
    service.service.faults["CreateArtifact"] = ["quota"]
    (tmp_path / "f").write_text("x")
    with pytest.raises(ArtifactError, match="storage quota") as failure:
        upload_artifact(tmp_path, UploadOptions(name="quota"))
    assert "retention-days" in str(failure.value)
    assert service.service.methods_called() == ["CreateArtifact"]


def test_duplicate_name_is_a_clear_error(tmp_path: Path, service: RunningService) -> None:
    (tmp_path / "f").write_text("x")
    assert upload_artifact(tmp_path, UploadOptions(name="dup")) is not None
    with pytest.raises(ArtifactError, match="409") as failure:
        upload_artifact(tmp_path, UploadOptions(name="dup"))
    assert "already exists" in str(failure.value)
    assert "overwrite" in str(failure.value)


def test_overwrite_replaces_the_artifact(tmp_path: Path, service: RunningService) -> None:
    (tmp_path / "f").write_text("one")
    first = upload_artifact(tmp_path, UploadOptions(name="replaced"))
    (tmp_path / "f").write_text("two")
    second = upload_artifact(tmp_path, UploadOptions(name="replaced", overwrite=True))
    assert first is not None and second is not None
    assert first.id not in service.service.artifacts
    assert service.service.artifacts[second.id].digest == second.digest
    assert service.service.methods_called()[-4:] == [
        "ListArtifacts",
        "DeleteArtifact",
        "CreateArtifact",
        "FinalizeArtifact",
    ]


def test_overwrite_of_a_new_name_just_uploads(tmp_path: Path, service: RunningService) -> None:
    (tmp_path / "f").write_text("x")
    assert upload_artifact(tmp_path, UploadOptions(name="fresh", overwrite=True)) is not None
    assert service.service.methods_called() == ["ListArtifacts", "CreateArtifact", "FinalizeArtifact"]


@pytest.mark.parametrize("name", ["a/b", "x:y", "", "what?", "line\nbreak"])
def test_bad_name_fails_before_any_request(tmp_path: Path, service: RunningService, name: str) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError):
        upload_artifact(tmp_path, UploadOptions(name=name))
    assert service.service.calls == []


def test_empty_folder_follows_if_no_files_found(
    tmp_path: Path, service: RunningService, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert upload_artifact(empty, UploadOptions(name="nothing")) is None
    assert "No files were found" in capsys.readouterr().err
    assert upload_artifact(empty, UploadOptions(name="nothing", if_no_files_found="ignore")) is None
    with pytest.raises(ArtifactError, match="No files were found"):
        upload_artifact(empty, UploadOptions(name="nothing", if_no_files_found="error"))
    assert service.service.calls == []


def test_cli_uploads_and_no_token_or_signature_is_logged(
    tmp_path: Path,
    service: RunningService,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    output = tmp_path / "github_output"
    summary = tmp_path / "summary.md"
    output.touch()
    summary.touch()
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    src = tree(tmp_path / "src", megabytes=1)
    assert cli.main(["upload-artifact", "--name", "via-cli", "--retention-days", "400", str(src)]) == 0
    service.service.faults["CreateArtifact"] = ["503"]
    # The same name again: a duplicate, so ArtifactError's exit code.
    assert cli.main(["upload-artifact", "--name", "via-cli", str(src)]) == 7
    logged = capfd.readouterr()
    everything = logged.out + logged.err + output.read_text() + summary.read_text()
    assert service.token not in everything
    assert service.token.split(".")[2] not in everything
    assert "sig=" not in everything
    assert "::add-mask::" in logged.out
    assert "retention-days 400 is more than the repository allows; using 90" in everything
    assert "artifact-id" in output.read_text()
    assert "via-cli" in summary.read_text()
