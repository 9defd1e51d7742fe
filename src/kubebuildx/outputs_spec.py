"""The action's outputs, named and described once.

``OUTPUTS`` is to outputs what ``inputs.INPUTS`` is to inputs: action.yml and
the README's outputs table are generated from it (scripts/gen-action-yml), and
tests/unit/test_action_yml.py checks that every name here is one the code
actually writes (``summary.outputs`` and ``artifacts.artifact_outputs``).
"""

from __future__ import annotations

OUTPUTS: tuple[tuple[str, str], ...] = (
    # summary.outputs (build); pipeline.merge_all writes digest and metadata (mode: merge)
    ("builder", "Name of the buildx builder (and prefix of its Deployments)."),
    ("platforms", "Platforms built, comma-separated (e.g. linux/amd64,linux/arm64)."),
    (
        "nodes",
        "Builder nodes as JSON: name, platform, kubernetes-node its pod ran on, namespace, emulated.",
    ),
    (
        "metadata",
        "Build result metadata (buildx --metadata-file), as JSON. Merge mode: the created index's.",
    ),
    (
        "digest",
        "Image digest (containerimage.digest), set when an image was pushed. "
        "Merge mode: the digest of the multi-platform index.",
    ),
    ("imageid", "Image ID (containerimage.config.digest)."),
    (
        "output-dir",
        "Folder of the default local output, one subfolder per platform (linux_amd64...). "
        "Empty when push or outputs is set.",
    ),
    ("durations", "Seconds each platform took to build, as JSON keyed by platform."),
    # artifacts.artifact_outputs
    ("artifact-ids", "IDs of the uploaded workflow artifacts, as JSON keyed by platform."),
    ("artifact-urls", "Download URLs of the uploaded workflow artifacts, as JSON keyed by platform."),
    (
        "artifact-digests",
        "sha256 digests of the uploaded artifact zips, as JSON keyed by platform.",
    ),
)

OUTPUT_NAMES = tuple(name for name, _ in OUTPUTS)
