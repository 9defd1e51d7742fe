"""Push by digest and release builds: the exact buildx argv, and what is refused early."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubebuildx import build
from kubebuildx.errors import InputError
from kubebuildx.inputs import parse_inputs
from kubebuildx.platforms import parse

PATHS = build.BuildPaths(Path("/w/metadata.json"), Path("/w/out"))


def argv(**raw: str) -> list[str]:
    inputs = parse_inputs({k.replace("_", "-"): v for k, v in raw.items()})
    return build.argv(inputs, builder="b", platforms=inputs.platforms or (parse("linux/arm64"),), paths=PATHS)


def test_push_without_tags_pushes_by_digest_to_the_image() -> None:
    a = argv(push="true", image="ghcr.io/o/app", platforms="linux/arm64")
    assert a[a.index("--output") + 1] == (
        "type=image,name=ghcr.io/o/app,push-by-digest=true,name-canonical=true,push=true"
    )
    assert "--tag" not in a
    assert build.push_by_digest(parse_inputs({"push": "true", "image": "ghcr.io/o/app"}))


def test_push_with_tags_is_a_release() -> None:
    a = argv(
        push="true",
        image="ghcr.io/o/app",
        tags="ghcr.io/o/app:1.0\nghcr.io/o/app:latest",
        labels="org.opencontainers.image.version=1.0",
        provenance="mode=max",
        sbom="true",
    )
    assert a[a.index("--output") + 1] == "type=image,push=true"
    assert [a[i + 1] for i, x in enumerate(a) if x == "--tag"] == [
        "ghcr.io/o/app:1.0",
        "ghcr.io/o/app:latest",
    ]
    assert a[a.index("--label") + 1] == "org.opencontainers.image.version=1.0"
    assert [a[i + 1] for i, x in enumerate(a) if x == "--attest"] == ["type=provenance,mode=max", "type=sbom"]
    assert not build.push_by_digest(parse_inputs({"push": "true", "tags": "ghcr.io/o/app:1"}))


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"push": "true"}, "neither tags nor an image"),
        ({"push": "true", "image": "ghcr.io/o/app:1.0"}, "names a tag or digest"),
        ({"mode": "merge", "platforms": "linux/amd64", "digests": "/d"}, "mode: merge needs tags"),
        ({"mode": "merge", "tags": "r/a:1", "digests": "/d"}, "mode: merge needs platforms"),
        ({"mode": "merge", "tags": "r/a:1", "platforms": "linux/amd64"}, "mode: merge needs digests"),
        ({"mode": "join"}, "must be build or merge"),
        ({"digests": "/d"}, "mode is build"),
    ],
)
def test_bad_registry_inputs_fail_before_anything_runs(raw: dict[str, str], words: str) -> None:
    with pytest.raises(InputError) as err:
        parse_inputs(raw)
    assert words in str(err.value)


def test_image_with_a_port_is_a_repository() -> None:
    assert parse_inputs({"push": "true", "image": "127.0.0.1:5000/app"}).image == "127.0.0.1:5000/app"


def test_password_never_shows_in_the_inputs_repr() -> None:
    inputs = parse_inputs({"username": "u", "password": "test-only-not-a-secret"})
    assert "test-only-not-a-secret" not in repr(inputs)
