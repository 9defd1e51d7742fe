"""Merge decisions: digest files to refs, manifests to platforms, verification, argv."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from kubebuildx import merge
from kubebuildx.errors import InputError, RegistryError
from kubebuildx.merge import Source
from kubebuildx.platforms import parse

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "merge"
AMD, ARM, ARMV7 = parse("linux/amd64"), parse("linux/arm64"), parse("linux/arm/v7")


def d(char: str) -> str:
    return "sha256:" + char * 64


def test_digest_artifact_names_are_predictable() -> None:
    assert merge.digest_artifact_name("", (ARM,)) == "digests-linux-arm64"
    assert merge.digest_artifact_name("", (ARMV7,)) == "digests-linux-arm-v7"
    assert merge.digest_artifact_name("app", (AMD,)) == "app-digests-linux-amd64"
    assert merge.digest_artifact_name("", (AMD, ARM)) == "digests-linux-amd64-linux-arm64"


def test_digest_file_is_named_by_the_hex() -> None:
    assert merge.digest_file_name(d("a")) == "a" * 64
    with pytest.raises(RegistryError):
        merge.digest_file_name("sha256:nothex")


@pytest.mark.parametrize(
    ("text", "digest"),
    [
        (d("a"), d("a")),
        ("a" * 64, d("a")),
        ("127.0.0.1:5000/app@" + d("b"), d("b")),
        ("  SHA256:" + "C" * 64 + " ", d("c")),
        ("sha256:abc", None),
        ("latest", None),
    ],
)
def test_normalize_digest(text: str, digest: str | None) -> None:
    assert merge.normalize_digest(text) == digest


def test_collect_digests_from_folders_as_download_artifact_writes_them(tmp_path: Path) -> None:
    merged = tmp_path / "digests"  # pattern: digests-*, merge-multiple: true
    merged.mkdir()
    (merged / ("a" * 64)).touch()
    (merged / ("b" * 64)).touch()
    (merged / "README").touch()
    (merged / ".hidden").touch()
    separate = tmp_path / "separate"  # without merge-multiple: one folder per artifact
    (separate / "digests-linux-arm-v7").mkdir(parents=True)
    (separate / "digests-linux-arm-v7" / ("c" * 64)).touch()
    digests, ignored = merge.collect_digests([str(merged), str(separate), d("a"), d("e")])
    assert digests == (d("a"), d("b"), d("c"), d("e"))
    assert ignored == (str(merged / "README"),)


def test_collect_digests_names_a_bad_item() -> None:
    with pytest.raises(InputError) as err:
        merge.collect_digests(["/nonexistent/digests-folder"])
    assert "/nonexistent/digests-folder" in str(err.value) and "merge-multiple" in str(err.value)


@pytest.mark.parametrize(
    ("ref", "repo"),
    [
        ("ghcr.io/o/app:1.0", "ghcr.io/o/app"),
        ("127.0.0.1:5000/app", "127.0.0.1:5000/app"),
        ("127.0.0.1:5000/app:v1", "127.0.0.1:5000/app"),
        ("app@" + d("a"), "app"),
    ],
)
def test_repository_of(ref: str, repo: str) -> None:
    assert merge.repository_of(ref) == repo


# What BuildKit v0.32.2 pushed for `push: true, image: ...` (push by digest, default provenance),
# as `buildx imagetools inspect --raw` printed it: the file's sha256 is the pushed digest.
BUILDKIT_INDEX = FIXTURES / "buildkit-push-by-digest-arm64.json"
PUSHED = "sha256:7078f8bda0ec399fd403962b9f77d72fef8113c386dd50a61603766e02a4dc73"
ARM_IMAGE = "sha256:0da5b58c7d16c2261586303d5f5229e8bd4045993c9b30b138e84e19f73d3521"


def test_parse_index_skips_attestations_and_keeps_the_exact_digest() -> None:
    raw = BUILDKIT_INDEX.read_text()
    manifest = merge.parse_manifest(raw)
    assert manifest.is_index
    assert manifest.digest == PUSHED == "sha256:" + hashlib.sha256(raw.encode()).hexdigest()
    assert [(i.platform, i.digest) for i in manifest.images()] == [(ARM, ARM_IMAGE)]
    assert len(manifest.entries) == 2 and manifest.entries[1].attestation


def test_parse_image_manifest_and_config_platform() -> None:
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d("c"), "size": 1},
            "layers": [],
        }
    )
    manifest = merge.parse_manifest(raw)
    assert not manifest.is_index and manifest.config == d("c")
    assert merge.config_platform('{"architecture":"arm","os":"linux","variant":"v7"}') == ARMV7
    assert merge.config_platform('{"architecture":"arm64","os":"linux","variant":"v8"}') == ARM
    assert merge.config_platform('{"os":"linux"}') is None


def test_parse_manifest_refuses_what_is_not_an_image() -> None:
    with pytest.raises(RegistryError):
        merge.parse_manifest("not json")
    with pytest.raises(RegistryError):
        merge.parse_manifest('{"mediaType":"application/vnd.example+json"}')


def test_read_source_reads_an_index_or_an_image_config() -> None:
    index = BUILDKIT_INDEX.read_text()
    image = json.dumps({"mediaType": merge.OCI_MANIFEST, "config": {"digest": d("c")}})
    asked: list[tuple[str, bool]] = []

    def inspect(ref: str, config: bool) -> str:
        asked.append((ref, config))
        if ref.endswith(d("1")):
            return index
        return '{"architecture":"amd64","os":"linux"}' if config else image

    assert merge.read_source("reg/app", d("1"), inspect) == Source(d("1"), ((ARM, ARM_IMAGE),))
    assert merge.read_source("reg/app", d("2"), inspect) == Source(d("2"), ((AMD, d("2")),))
    assert asked == [(f"reg/app@{d('1')}", False), (f"reg/app@{d('2')}", False), (f"reg/app@{d('2')}", True)]


def test_verify_sources_accepts_exactly_the_expected_platforms() -> None:
    merge.verify_sources([AMD, ARM], [Source(d("1"), ((AMD, d("1")),)), Source(d("2"), ((ARM, d("a")),))])
    # one multi-platform digest covers both too
    merge.verify_sources([AMD, ARM], [Source(d("1"), ((AMD, d("a")), (ARM, d("b"))))])


@pytest.mark.parametrize(
    ("sources", "words"),
    [
        (
            [Source(d("1"), ((AMD, d("1")),))],
            ["missing linux/arm64", "Nothing was pushed", "linux/arm64 succeeded"],
        ),
        (
            [
                Source(d("1"), ((AMD, d("1")),)),
                Source(d("2"), ((ARM, d("2")),)),
                Source(d("3"), ((ARMV7, d("3")),)),
            ],
            ["not among the platforms: linux/arm/v7"],
        ),
        (
            [
                Source(d("1"), ((AMD, d("1")),)),
                Source(d("2"), ((ARM, d("2")),)),
                Source(d("3"), ((ARM, d("3")),)),
            ],
            ["more than one image for linux/arm64"],
        ),
        (
            [
                Source(d("1"), ((AMD, d("1")),)),
                Source(d("2"), ((ARM, d("2")),)),
                Source(d("3"), ((None, d("3")),)),
            ],
            ["without a platform"],
        ),
    ],
)
def test_verify_sources_refuses_anything_else_before_pushing(sources: list[Source], words: list[str]) -> None:
    with pytest.raises(RegistryError) as err:
        merge.verify_sources([AMD, ARM], sources)
    for word in words:
        assert word in str(err.value)


def _index(*entries: tuple[str, str, str]) -> merge.Manifest:
    manifests = [
        {
            "mediaType": merge.OCI_MANIFEST,
            "digest": dg,
            "size": 1,
            "platform": {"os": "linux", "architecture": a},
        }
        for a, dg, _ in entries
    ]
    return merge.parse_manifest(json.dumps({"mediaType": merge.OCI_INDEX, "manifests": manifests}))


def test_check_index_reads_back_every_platform_and_image() -> None:
    sources = [Source(d("1"), ((AMD, d("1")),)), Source(d("2"), ((ARM, d("a")),))]
    merge.check_index([AMD, ARM], sources, _index(("amd64", d("1"), ""), ("arm64", d("a"), "")))
    with pytest.raises(RegistryError) as err:
        merge.check_index([AMD, ARM], sources, _index(("amd64", d("1"), "")))
    assert "missing platforms: linux/arm64" in str(err.value)
    with pytest.raises(RegistryError) as err:
        merge.check_index([AMD, ARM], sources, _index(("amd64", d("1"), ""), ("arm64", d("f"), "")))
    assert "missing images: linux/arm64" in str(err.value)
    single = merge.parse_manifest(json.dumps({"mediaType": merge.OCI_MANIFEST, "config": {"digest": d("c")}}))
    with pytest.raises(RegistryError):
        merge.check_index([AMD], sources[:1], single)


def test_create_and_inspect_argv() -> None:
    argv = merge.create_argv(
        ["buildx"],
        ["reg/app:1", "reg/app:latest"],
        ["reg/app@" + d("1"), "reg/app@" + d("2")],
        metadata_file=Path("/w/merge.json"),
    )
    assert argv == [
        "buildx", "imagetools", "create", "--metadata-file", "/w/merge.json",
        "--tag", "reg/app:1", "--tag", "reg/app:latest",
        "reg/app@" + d("1"), "reg/app@" + d("2"),
    ]  # fmt: skip
    with_builder = merge.create_argv(["docker", "buildx"], ["t"], ["r"], metadata_file=Path("m"), builder="b")
    assert with_builder[:6] == ["docker", "buildx", "imagetools", "create", "--builder", "b"]
    assert merge.inspect_argv(["buildx"], "reg/app:1") == [
        "buildx",
        "imagetools",
        "inspect",
        "--raw",
        "reg/app:1",
    ]
    assert merge.inspect_argv(["buildx"], "r", config=True) == [
        "buildx", "imagetools", "inspect", "--format", "{{json .Image}}", "r",
    ]  # fmt: skip


def test_summary_lists_each_platform_and_its_source() -> None:
    text = merge.summary_markdown(["reg/app:1"], d("9"), [Source(d("1"), ((AMD, d("1")),))])
    assert "`reg/app:1`" in text and d("9") in text and f"| `linux/amd64` | `{d('1')}` | `{d('1')}` |" in text


def test_registry_builder_carries_the_buildkit_config_for_imagetools() -> None:
    from kubebuildx import buildx_store

    config = b'[registry."10.0.0.5:5000"]\n  http = true\n'
    spec = merge.registry_builder(config, ARM)
    doc = json.loads(buildx_store.instance_json(spec, ""))
    assert doc["Name"] == "kbx-merge" and [n["Name"] for n in doc["Nodes"]] == ["kbx-merge-linux-arm64"]
    assert doc["Nodes"][0]["Files"] == {
        "buildkitd.toml": "W3JlZ2lzdHJ5LiIxMC4wLjAuNTo1MDAwIl0KICBodHRwID0gdHJ1ZQo="
    }


@pytest.mark.parametrize(
    "raw",
    ["[]", "3", '"manifest"', "null", "[" * 100_000 + "]" * 100_000, '{"mediaType": 3, "config": []}'],
    ids=["a list", "a number", "a string", "null", "deep", "fields of the wrong type"],
)
def test_a_manifest_that_is_not_a_json_object_is_a_registry_error(raw: str) -> None:
    with pytest.raises(RegistryError):
        merge.parse_manifest(raw)


def test_index_entries_of_the_wrong_type_are_skipped() -> None:
    raw = json.dumps(
        {"mediaType": merge.OCI_INDEX, "manifests": [3, None, {"platform": "x", "annotations": []}]}
    )
    assert merge.parse_manifest(raw).entries == (merge.Descriptor("", "", None, False),)
    assert merge.config_platform("[]") is None and merge.config_platform("[" * 100_000) is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"containerimage.digest": "sha256:x"}', {"containerimage.digest": "sha256:x"}),
        (b"", {}),
        (b"[1]", {}),
        (b"\xff\xfe", {}),
        (b"[" * 100_000, {}),
    ],
    ids=["object", "empty", "a list", "not UTF-8", "deep"],
)
def test_merge_metadata_that_is_not_a_json_object_is_empty(
    content: bytes, expected: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "merge-metadata.json"
    path.write_bytes(content)
    assert merge.read_metadata(path) == expected
    assert merge.read_metadata(tmp_path / "absent.json") == {}


def test_the_merge_summary_shows_what_the_registry_said_as_code_only() -> None:
    """A registry answers the digests: in the summary they can neither end a cell nor link."""
    hostile = "sha256:1| ![x](https://tracker.example/p.png) |"
    text = merge.summary_markdown(["reg/app:1"], hostile, [Source(hostile, ((AMD, hostile),))])
    row = text.splitlines()[-1]
    assert len(re.findall(r"(?<!\\)\|", row)) == 4, f"three cells, no more: {row}"
    assert all(line.count("`") % 2 == 0 for line in text.splitlines()), "every code span closed"
