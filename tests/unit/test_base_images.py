"""scripts/base-images: the base images and digests a build resolved, from its provenance,
as release.yml writes them to its job summary."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# `buildx imagetools inspect --format '{{json .Provenance}}'` of examples/hello built for two
# platforms on the one-machine cluster with busybox as an oci-layout build context.
CAPTURED = ROOT / "tests" / "fixtures" / "release" / "provenance-oci-layout.json"
BUSYBOX = "sha256:13d44d414d8da80b53e90964fc240526dc161050c39f18c47813ca73e5f66a89"
PYTHON = "sha256:" + "1" * 64
BUILDX = "sha256:" + "2" * 64


def _script() -> ModuleType:
    path = ROOT / "scripts" / "base-images"
    loader = importlib.machinery.SourceFileLoader("base_images", str(path))
    spec = importlib.util.spec_from_loader("base_images", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _material(uri: str, digest: str) -> dict[str, Any]:
    return {"uri": uri, "digest": {"sha256": digest.removeprefix("sha256:")}}


# What a release on GitHub resolves: Docker Hub images, SLSA v1 (imagetools) and v0.2 (metadata).
REGISTRY_V1 = {
    platform: {
        "SLSA": {
            "buildDefinition": {
                "resolvedDependencies": [
                    _material(
                        f"pkg:docker/docker/buildx-bin@0.36.1?platform={platform.replace('/', '%2F')}", BUILDX
                    ),
                    _material(
                        f"pkg:docker/python@3.11-slim-bookworm?platform={platform.replace('/', '%2F')}",
                        PYTHON,
                    ),
                    _material("https://github.com/octo/kubebuildx.git#refs/tags/v1.0.0", "3" * 64),
                ]
            }
        }
    }
    for platform in ("linux/amd64", "linux/arm64")
}
METADATA_V02 = {
    "buildx.build.provenance/linux/amd64": {
        "buildType": "https://mobyproject.org/buildkit@v1",
        "materials": [_material("pkg:docker/python@3.11-slim-bookworm?platform=linux%2Famd64", PYTHON)],
    },
    "buildx.build.ref": "builder/builder0/abc",
    "containerimage.digest": "sha256:" + "4" * 64,
}


def test_captured_oci_layout_provenance() -> None:
    script = _script()
    images = script.base_images(json.loads(CAPTURED.read_text()))
    assert images == {("busybox", "oci-layout"): {"linux/amd64": BUSYBOX, "linux/arm64": BUSYBOX}}
    text = script.markdown(images)
    assert f"| `busybox` | oci-layout | linux/arm64 | `{BUSYBOX}` |" in text
    assert "FROM " not in text, "a local layout is no digest to pin the Dockerfile to"


@pytest.mark.parametrize(
    ("provenance", "expected"),
    [
        (
            REGISTRY_V1,
            {
                ("python:3.11-slim-bookworm", "registry"): {"linux/amd64": PYTHON, "linux/arm64": PYTHON},
                ("docker/buildx-bin:0.36.1", "registry"): {"linux/amd64": BUILDX, "linux/arm64": BUILDX},
            },
        ),
        (METADATA_V02, {("python:3.11-slim-bookworm", "registry"): {"linux/amd64": PYTHON}}),
        ({"containerimage.digest": "sha256:" + "4" * 64}, {}),
        ({}, {}),
    ],
    ids=["imagetools-slsa-v1", "metadata-slsa-v0.2", "metadata-of-a-push", "empty"],
)
def test_base_images(provenance: dict[str, Any], expected: dict[tuple[str, str], dict[str, str]]) -> None:
    assert _script().base_images(provenance) == expected


def test_registry_images_become_from_lines_to_pin() -> None:
    script = _script()
    text = script.markdown(script.base_images(REGISTRY_V1))
    assert f"FROM docker/buildx-bin:0.36.1@{BUILDX}\nFROM python:3.11-slim-bookworm@{PYTHON}\n" in text


def test_no_pin_when_platforms_resolved_different_digests() -> None:
    script = _script()
    images = {("python:3.11-slim-bookworm", "registry"): {"linux/amd64": PYTHON, "linux/arm64": BUILDX}}
    assert "FROM " not in script.markdown(images)


def test_no_provenance_says_how_to_get_it() -> None:
    assert "build with provenance" in _script().markdown({})
