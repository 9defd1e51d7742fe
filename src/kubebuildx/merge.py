"""Merge: the digests of per-platform jobs into one multi-platform image.

The flow of docker's "distribute the build across runners" recipe
(https://docs.docker.com/build/ci/github-actions/multi-platform/), with the
checks it leaves to the reader:

collect digests (files named by the digest's hex, as download-artifact with
``pattern`` + ``merge-multiple`` lays them out, or a list) → read each digest's
manifest from the registry and the platforms it holds → verify they cover
exactly the expected platforms, once each, BEFORE anything is pushed →
``buildx imagetools create -t TAG... repo@sha256:...`` → read the pushed index
back and fail if a platform or a source manifest is missing.

The parsing and the decisions are pure; ``inspect_raw`` and ``run`` are the edge.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubebuildx import cancel, cmd, runner
from kubebuildx import platforms as plat
from kubebuildx.builder import BuilderSpec, NodeSpec
from kubebuildx.errors import InputError, RegistryError
from kubebuildx.platforms import Platform

DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_HEX = re.compile(r"^[a-f0-9]{64}$")
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPES = frozenset(
    {
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
MANIFEST_TYPES = frozenset(
    {
        OCI_MANIFEST,
        "application/vnd.docker.distribution.manifest.v2+json",
    }
)
# BuildKit's attestation manifests sit in an index as platform unknown/unknown with this annotation
# (https://github.com/moby/buildkit/blob/v0.32.2/docs/attestations/attestation-storage.md).
ATTESTATION_TYPE = "vnd.docker.reference.type"
DIGESTS_ARTIFACT = "digests"


# ---- names and digest files ---------------------------------------------------------------------


def digest_artifact_name(artifact_name: str, platforms: Sequence[Platform]) -> str:
    """``digests-linux-arm64``, or ``<artifact-name>-digests-linux-arm64``: the same in every
    run, so that the merge job downloads them with ``pattern: digests-*``."""
    base = f"{artifact_name}-{DIGESTS_ARTIFACT}" if artifact_name else DIGESTS_ARTIFACT
    return "-".join([base, *(p.slug for p in platforms)])


def digest_file_name(digest: str) -> str:
    """The file that records a digest: its hex, empty content (docker's recipe)."""
    if not DIGEST.match(digest):
        raise RegistryError(f"{digest!r} is not a sha256 digest")
    return digest.removeprefix("sha256:")


def normalize_digest(text: str) -> str | None:
    """``sha256:<hex>``, ``<hex>`` or ``repo@sha256:<hex>`` → ``sha256:<hex>``; None otherwise."""
    value = text.strip().rsplit("@", 1)[-1].lower()
    if _HEX.match(value):
        value = "sha256:" + value
    return value if DIGEST.match(value) else None


def collect_digests(items: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Digests from the ``digests`` input: folders (and their subfolders one level down,
    as download-artifact lays out artifacts without merge-multiple) of files named by the
    hex, or digests written out. Returns (digests in order, files ignored)."""
    found: dict[str, None] = {}
    ignored: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file())
            for sub in sorted(p for p in path.iterdir() if p.is_dir()):
                files += sorted(p for p in sub.iterdir() if p.is_file())
            for file in files:
                digest = normalize_digest(file.name)
                if digest:
                    found.setdefault(digest, None)
                elif not file.name.startswith("."):
                    ignored.append(str(file))
            continue
        digest = normalize_digest(item)
        if digest is None:
            raise InputError(
                f"digests: {item!r} is neither a folder nor a sha256 digest",
                hint="give the folder actions/download-artifact wrote the digest files to "
                "(pattern: digests-*, merge-multiple: true), or sha256:<hex> digests",
            )
        found.setdefault(digest, None)
    return tuple(found), tuple(ignored)


def repository_of(ref: str) -> str:
    """``ghcr.io/o/app:1.0`` → ``ghcr.io/o/app`` (a ``:`` after the last ``/`` is a tag)."""
    name = ref.split("@", 1)[0]
    head, slash, tail = name.rpartition("/")
    if ":" in tail:
        tail = tail.split(":", 1)[0]
    return f"{head}{slash}{tail}"


# ---- manifests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Descriptor:
    digest: str
    media_type: str
    platform: Platform | None
    attestation: bool = False


@dataclass(frozen=True)
class Manifest:
    """What ``imagetools inspect --raw`` shows: an index (its entries) or an image (its config)."""

    digest: str
    media_type: str
    entries: tuple[Descriptor, ...] = ()
    config: str = ""

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def images(self) -> tuple[Descriptor, ...]:
        return tuple(d for d in self.entries if not d.attestation)


def _platform(obj: Mapping[str, Any] | None) -> Platform | None:
    if not obj or not obj.get("os") or not obj.get("architecture"):
        return None
    if obj["os"] == "unknown":
        return None
    text = "/".join(str(p) for p in (obj["os"], obj["architecture"], obj.get("variant", "")) if p)
    try:
        return plat.parse(text)
    except InputError:
        return None


def parse_manifest(raw: str) -> Manifest:
    """Parse a manifest or index exactly as the registry returned it; the digest is of those bytes."""
    digest = "sha256:" + hashlib.sha256(raw.encode()).hexdigest()
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise RegistryError("the registry returned a manifest that is not JSON") from None
    if not isinstance(doc, dict):
        raise RegistryError("the registry returned a manifest that is not a JSON object")
    media_type = str(doc.get("mediaType", ""))
    if not media_type:  # mediaType is optional in OCI; the shape tells
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if media_type in INDEX_TYPES:
        entries = tuple(
            Descriptor(
                str(m.get("digest", "")),
                str(m.get("mediaType", "")),
                _platform(m.get("platform") if isinstance(m.get("platform"), dict) else None),
                isinstance(m.get("annotations"), dict) and ATTESTATION_TYPE in m["annotations"],
            )
            for m in _objects(doc.get("manifests"))
        )
        return Manifest(digest, media_type, entries)
    if media_type in MANIFEST_TYPES:
        config = doc.get("config")
        return Manifest(
            digest, media_type, config=str(config.get("digest", "")) if isinstance(config, dict) else ""
        )
    raise RegistryError(
        f"unexpected media type {runner.one_line(media_type[:100])!r}: neither an image nor an index"
    )


def _objects(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def config_platform(raw: str) -> Platform | None:
    """The platform an image config declares (os, architecture, variant)."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return _platform(doc) if isinstance(doc, dict) else None


# ---- verification -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One platform job's digest and the images (platform, manifest digest) it holds."""

    digest: str
    images: tuple[tuple[Platform | None, str], ...]

    @property
    def platforms(self) -> tuple[Platform | None, ...]:
        return tuple(p for p, _ in self.images)


def describe(sources: Sequence[Source]) -> str:
    return "\n".join(
        f"  {s.digest[:19]}…: " + (", ".join(str(p or "unknown platform") for p in s.platforms) or "no image")
        for s in sources
    )


def verify_sources(expected: Sequence[Platform], sources: Sequence[Source]) -> None:
    """Every expected platform exactly once, nothing else: checked before anything is pushed."""
    by_platform: dict[Platform, list[str]] = {}
    unknown: list[str] = []
    for source in sources:
        for platform, _ in source.images:
            if platform is None:
                unknown.append(source.digest)
            else:
                by_platform.setdefault(platform, []).append(source.digest)
    missing = [p for p in expected if p not in by_platform]
    extra = sorted(p for p in by_platform if p not in expected)
    twice = sorted(p for p, ds in by_platform.items() if len(ds) > 1)
    problems = []
    if missing:
        problems.append("missing " + ", ".join(map(str, missing)))
    if extra:
        problems.append("not among the platforms: " + ", ".join(map(str, extra)))
    if twice:
        problems.append("more than one image for " + ", ".join(map(str, twice)))
    if unknown:
        problems.append(f"{len(unknown)} image(s) without a platform")
    if not problems:
        return
    hint = (
        f"make sure the build job for {', '.join(map(str, missing))} succeeded and uploaded its digest "
        "artifact, and that download-artifact's pattern matches it (e.g. digests-*)"
        if missing
        else "set platforms to exactly the platforms the build jobs built, and download only this "
        "run's digest artifacts"
    )
    raise RegistryError(
        f"the digests do not cover exactly {plat.join(expected)}: {'; '.join(problems)}. "
        f"Nothing was pushed. The digests hold:\n{describe(sources)}",
        hint=hint,
    )


def check_index(expected: Sequence[Platform], sources: Sequence[Source], index: Manifest) -> None:
    """Read back after the push: the tag is an index holding every source image for its platform."""
    if not index.is_index:
        raise RegistryError(f"the pushed tag is a single image ({index.media_type}), not an index")
    held = {(d.platform, d.digest) for d in index.images()}
    platforms = {p for p, _ in held}
    missing = [p for p in expected if p not in platforms]
    lost = [f"{p} {d[:19]}…" for s in sources for p, d in s.images if p is not None and (p, d) not in held]
    if missing or lost or len(index.images()) != len(expected):
        raise RegistryError(
            f"the pushed index {index.digest} does not hold exactly {plat.join(expected)}: "
            f"missing platforms: {plat.join(missing) or 'none'}; "
            f"missing images: {', '.join(lost) or 'none'}; "
            f"it holds {', '.join(str(d.platform) for d in index.images()) or 'nothing'}",
            hint="the registry may have rewritten the index; inspect it with "
            "`docker buildx imagetools inspect`",
        )


def create_argv(
    buildx: Sequence[str],
    tags: Sequence[str],
    refs: Sequence[str],
    *,
    metadata_file: Path,
    annotations: Sequence[str] = (),
    builder: str = "",
) -> list[str]:
    """``buildx imagetools create`` with the sources by digest, in the order given."""
    a = [*buildx, "imagetools", "create"]
    if builder:
        a += ["--builder", builder]
    for value in annotations:
        a += ["--annotation", value]
    a += ["--metadata-file", str(metadata_file)]
    for tag in tags:
        a += ["--tag", tag]
    return [*a, *refs]


def inspect_argv(buildx: Sequence[str], ref: str, *, config: bool = False, builder: str = "") -> list[str]:
    """``--raw``: the manifest's exact bytes; ``config``: an image's config, whose
    os/architecture say its platform (a registry serves config blobs only as blobs)."""
    a = [*buildx, "imagetools", "inspect"]
    if builder:
        a += ["--builder", builder]
    a += ["--format", "{{json .Image}}"] if config else ["--raw"]
    return [*a, ref]


def summary_markdown(tags: Sequence[str], index_digest: str, sources: Sequence[Source]) -> str:
    code = runner.md_code  # platforms and digests come from the registry
    rows = [
        f"| {code(str(p))} | {code(str(d))} | {code(s.digest)} |"
        for s in sources
        for p, d in sorted(s.images, key=lambda i: str(i[0]))
    ]
    return "\n".join(
        [
            f"### kubebuildx: :white_check_mark: merged {len(rows)} platform(s)",
            "",
            "Tags: " + ", ".join(code(t) for t in tags),
            "",
            f"Index digest: {code(index_digest)}",
            "",
            "| Platform | Image manifest | From digest |",
            "|---|---|---|",
            *rows,
        ]
    )


REGISTRY_BUILDER = "kbx-merge"


def registry_builder(config: bytes, platform: Platform) -> BuilderSpec:
    """A builder that is never booted, only carrying the BuildKit config: ``imagetools``
    takes its registry settings (``http``, ``insecure``, mirrors) from the first node's
    ``buildkitd.toml`` (buildx v0.36.1 store/storeutil.GetImageConfig), and otherwise speaks
    plain HTTP only to loopback."""
    node = NodeSpec(f"{REGISTRY_BUILDER}-{platform.slug}", platform, ())
    return BuilderSpec(REGISTRY_BUILDER, "default", (node,), (), (("buildkitd.toml", config),))


def read_metadata(path: Path) -> dict[str, Any]:
    """buildx's --metadata-file: a JSON object; anything else (absent, empty, not JSON, not an
    object, not UTF-8) is an empty one, with a warning, since the image is pushed by then."""
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_bytes() or b"{}")
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        runner.warning(f"{path.name} is not a JSON object; the metadata output is empty")
        return {}
    return doc


# ---- edge ---------------------------------------------------------------------------------------


Inspect = Callable[[str, bool], str]  # (ref, config) -> text


def read_source(image: str, digest: str, inspect: Inspect) -> Source:
    """One digest from the registry: an index (its image entries) or one image (its config's platform)."""
    ref = f"{image}@{digest}"
    manifest = parse_manifest(inspect(ref, False))
    if manifest.is_index:
        return Source(digest, tuple((d.platform, d.digest) for d in manifest.images()))
    return Source(digest, ((config_platform(inspect(ref, True)), digest),))


@dataclass(frozen=True)
class Merged:
    index_digest: str
    tags: tuple[str, ...]
    sources: tuple[Source, ...]
    metadata: Mapping[str, Any]


def run(
    *,
    image: str,
    tags: Sequence[str],
    platforms: Sequence[Platform],
    items: Sequence[str],
    buildx: Sequence[str],
    env: Mapping[str, str],
    workdir: Path,
    annotations: Sequence[str] = (),
    builder: str = "",
) -> Merged:
    """Collect, verify, create, read back. Nothing is pushed unless the digests check out."""

    def inspect(ref: str, config: bool) -> str:
        result = cmd.run(
            inspect_argv(buildx, ref, config=config, builder=builder),
            env=env,
            quiet=True,
            timeout=120,
            error=RegistryError,
            what=f"reading {ref} from the registry",
        )
        return result.stdout

    with runner.group("Collecting digests"):
        digests, ignored = collect_digests(items)
        for path in ignored:
            runner.warning(f"ignored {path}: its name is not a sha256 digest")
        if not digests:
            raise RegistryError(
                f"no digest files in {', '.join(items)}",
                hint="download the build jobs' digest artifacts there first (actions/download-artifact "
                "with pattern: digests-* and merge-multiple: true); did the build jobs push by digest?",
            )
        runner.info(f"{len(digests)} digest(s) for {image}: " + ", ".join(digests))
    with runner.group(f"Verifying the digests cover {plat.join(platforms)}"):
        with cancel.executor(max_workers=8) as pool:  # a cancel does not wait for the other reads
            sources = tuple(pool.map(lambda d: read_source(image, d, inspect), digests))
        runner.info(describe(sources))
        verify_sources(platforms, sources)
    with runner.group(f"Creating {', '.join(tags)}"):
        metadata_file = workdir / "merge-metadata.json"
        refs = [f"{image}@{s.digest}" for s in sources]
        cmd.run(
            create_argv(
                buildx, tags, refs, metadata_file=metadata_file, annotations=annotations, builder=builder
            ),
            env=env,
            timeout=900,
            error=RegistryError,
            what="buildx imagetools create",
        )
        metadata = read_metadata(metadata_file)
    with runner.group("Checking the pushed image"):
        digest = ""
        for tag in tags:
            index = parse_manifest(inspect(tag, False))
            check_index(platforms, sources, index)
            if digest and index.digest != digest:
                raise RegistryError(f"{tag} is {index.digest}, but {tags[0]} is {digest}")
            digest = index.digest
            runner.info(f"{tag}: {index.digest}, " + ", ".join(str(d.platform) for d in index.images()))
    return Merged(digest, tuple(tags), sources, metadata)
