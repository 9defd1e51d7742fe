"""Push by digest in Actions: each platform job uploads its digest as the artifact
``digests-<os>-<arch>``, one empty file named by the hex, which is what the merge
job's download-artifact (pattern: digests-*, merge-multiple: true) and
`kubebuildx merge` read. Uploaded to the real test service, read back from its blobs."""

from __future__ import annotations

import dataclasses
import io
import os
import zipfile
from pathlib import Path

from artifact_twirp_server import RunningService
from test_artifact_roundtrip import blob_bytes

from kubebuildx import build, merge, pipeline, progress
from kubebuildx.artifacts import build_artifacts
from kubebuildx.builder import BuilderSpec, NodeSpec
from kubebuildx.inputs import parse_inputs
from kubebuildx.platforms import parse

DIGESTS = {
    "linux/amd64": "sha256:" + "1" * 64,
    "linux/arm64": "sha256:" + "2" * 64,
    "linux/arm/v7": "sha256:" + "3" * 64,
}


def pushed(platform: str, digest: str, tmp_path: Path) -> tuple[pipeline.Run, build.BuildResult]:
    inputs = parse_inputs({"push": "true", "image": "ghcr.io/octo/app", "platforms": platform})
    tmp_path.mkdir(parents=True, exist_ok=True)  # else KUBEBUILDX_TEMP is passed over for /tmp
    run = pipeline.start(inputs, {**os.environ, "KUBEBUILDX_TEMP": str(tmp_path)}, outputs=True)
    p = parse(platform)
    spec = BuilderSpec("kbx-digest", "buildkit", (NodeSpec(f"kbx-digest-{p.slug}", p, ()),), ())
    result = build.BuildResult(
        spec, progress.Timings((), (), {}, 0.0), {}, {"containerimage.digest": digest}, "", 1.0
    )
    return run, result


def test_each_platform_job_uploads_its_digest_named_for_the_merge(
    service: RunningService, tmp_path: Path
) -> None:
    for platform, digest in DIGESTS.items():
        run, result = pushed(platform, digest, tmp_path / platform.replace("/", "_"))
        assert build_artifacts.records_digest(run.inputs, result)
        assert build_artifacts.can_upload(run.inputs, run.env)
        row = build_artifacts.record_digest(run.inputs, result, run.digest_dir(result.spec), run.env)
        name = merge.digest_artifact_name("", (parse(platform),))
        assert f"`{name}`" in row
    assert service.service.methods_called().count("FinalizeArtifact") == len(DIGESTS)
    by_name = {a.name: a for a in service.service.artifacts.values() if a.finalized and "digests-" in a.name}
    assert sorted(by_name) == ["digests-linux-amd64", "digests-linux-arm-v7", "digests-linux-arm64"]
    merged = tmp_path / "downloaded"  # what download-artifact with merge-multiple: true lays out
    merged.mkdir()
    for artifact in by_name.values():
        with zipfile.ZipFile(io.BytesIO(blob_bytes(service, artifact.id))) as zf:
            assert [(i.filename, i.file_size) for i in zf.infolist()] == [(zf.namelist()[0], 0)]
            zf.extractall(merged)
    digests, ignored = merge.collect_digests([str(merged)])
    assert sorted(digests) == sorted(DIGESTS.values()) and ignored == ()


def test_no_upload_when_the_build_did_not_push_by_digest(service: RunningService, tmp_path: Path) -> None:
    run, result = pushed("linux/arm64", DIGESTS["linux/arm64"], tmp_path)
    tagged = dataclasses.replace(run, inputs=parse_inputs({"push": "true", "tags": "ghcr.io/octo/app:1"}))
    assert not build_artifacts.records_digest(tagged.inputs, result)
    pipeline.publish(tagged, result)  # the outputs and the summary, and no upload at all
    assert service.service.methods_called() == []
