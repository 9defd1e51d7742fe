"""What the action declares: its inputs and its outputs, named and described once.

``INPUTS`` and ``OUTPUTS`` are the single lists: action.yml and the README's
tables are generated from them (scripts/gen-action-yml), the CLI's flags are
made from ``INPUTS``, and tests/unit/test_action_yml.py checks that every
output named here is one the code actually writes (``summary.step_outputs``
and ``artifacts.artifact_outputs``). Names and meanings follow
docker/build-push-action, docker/setup-buildx-action and
actions/upload-artifact wherever ours mean the same, so switching is a
one-line change.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InputSpec:
    name: str
    description: str
    default: str = ""
    kind: str = "string"  # string | bool | list | int
    group: str = "build"  # cluster | builder | build | artifacts | registry


INPUTS: tuple[InputSpec, ...] = (
    # Cluster
    InputSpec(
        "kubeconfig",
        "Kubeconfig to reach the cluster, as YAML or base64 (store it as a secret). "
        "Empty: the in-cluster service account of a self-hosted runner pod.",
        group="cluster",
    ),
    InputSpec(
        "kube-context", "Context of the kubeconfig to use. Empty: its current-context.", group="cluster"
    ),
    InputSpec(
        "namespace",
        "Namespace for the BuildKit Deployments. Empty: the context's namespace, else `buildkit`.",
        group="cluster",
    ),
    InputSpec(
        "auth",
        "github-oidc: authenticate to the cluster with the job's GitHub OIDC ID token (needs "
        "`permissions: id-token: write`), refreshed before it expires; the kubeconfig (or `server`) "
        "then gives only the cluster. Empty: the kubeconfig's own credentials.",
        group="cluster",
    ),
    InputSpec(
        "audience",
        "Audience of the OIDC ID token with auth: github-oidc; the cluster's AuthenticationConfiguration "
        "must list it.",
        default="kubebuildx",
        group="cluster",
    ),
    InputSpec(
        "token",
        "Bearer token for the cluster from an earlier step (aws eks get-token, gcloud auth "
        "print-access-token, az account get-access-token); replaces the kubeconfig's user.",
        group="cluster",
    ),
    InputSpec(
        "server",
        "API server URL (https://...), instead of a kubeconfig, with auth or token.",
        group="cluster",
    ),
    InputSpec(
        "certificate-authority-data",
        "Base64 PEM of the cluster's CA, with server. Empty: the system CAs.",
        group="cluster",
    ),
    # Builder (docker/setup-buildx-action names)
    InputSpec(
        "builder",
        "Name of the buildx builder. Empty: unique per job (or stable per repository "
        "when `cleanup` is false, so warm builders are reused).",
        group="builder",
    ),
    InputSpec(
        "platforms",
        "List of target platforms (e.g. linux/amd64,linux/arm64). Empty: every platform "
        "the cluster can serve natively.",
        kind="list",
        group="builder",
    ),
    InputSpec(
        "driver-opts",
        "List of kubernetes driver options for every node (e.g. replicas=2, "
        "requests.cpu=2, tolerations=key=arch,operator=Exists); prefix a line with a platform "
        "to apply it to that node only (linux/arm64:requests.memory=8Gi).",
        kind="list",
        group="builder",
    ),
    InputSpec("buildkitd-flags", "BuildKit daemon flags.", group="builder"),
    InputSpec("buildkitd-config", "Path to a BuildKit daemon config file (TOML).", group="builder"),
    InputSpec("buildkitd-config-inline", "Inline BuildKit daemon config (TOML).", group="builder"),
    InputSpec(
        "cleanup",
        "Remove the builder and its Deployments after the job. false keeps them warm for cache reuse.",
        default="true",
        kind="bool",
        group="builder",
    ),
    InputSpec(
        "qemu-fallback",
        "Build a platform that no node serves natively with emulation, with a warning, instead of failing.",
        default="false",
        kind="bool",
        group="builder",
    ),
    # Build (docker/build-push-action names)
    InputSpec("context", "Build's context: a path or a Git URL.", default=".", group="build"),
    InputSpec("file", "Path to the Dockerfile. Empty: `<context>/Dockerfile`.", group="build"),
    InputSpec("target", "Target stage to build.", group="build"),
    InputSpec("build-args", "List of build-time variables.", kind="list", group="build"),
    InputSpec(
        "build-contexts", "List of additional build contexts (e.g. name=path).", kind="list", group="build"
    ),
    InputSpec(
        "secrets", "List of secrets to expose to the build (e.g. key=string).", kind="list", group="build"
    ),
    InputSpec(
        "secret-files",
        "List of secret files to expose to the build (e.g. key=filename).",
        kind="list",
        group="build",
    ),
    InputSpec(
        "secret-envs",
        "List of secret env vars to expose to the build (e.g. key=envname).",
        kind="list",
        group="build",
    ),
    InputSpec("labels", "List of metadata for an image.", kind="list", group="build"),
    InputSpec("annotations", "List of annotations to set to the image.", kind="list", group="build"),
    InputSpec("tags", "List of tags.", kind="list", group="build"),
    InputSpec(
        "push",
        "Push the image (shorthand for --output=type=registry). Without tags: push by digest to `image`.",
        default="false",
        kind="bool",
        group="build",
    ),
    InputSpec(
        "outputs",
        "List of output destinations (format: type=local,dest=path). Empty: the "
        "local output folder, one subfolder per platform.",
        kind="list",
        group="build",
    ),
    InputSpec(
        "cache-from",
        "List of external cache sources (e.g. type=registry,ref=user/app:cache).",
        kind="list",
        group="build",
    ),
    InputSpec("cache-to", "List of cache export destinations.", kind="list", group="build"),
    InputSpec(
        "no-cache", "Do not use cache when building the image.", default="false", kind="bool", group="build"
    ),
    InputSpec("no-cache-filters", "Do not cache specified stages.", kind="list", group="build"),
    InputSpec(
        "pull", "Always attempt to pull all referenced images.", default="false", kind="bool", group="build"
    ),
    InputSpec("ulimit", "Ulimit options (e.g. nofile=1024:1024).", kind="list", group="build"),
    InputSpec("shm-size", "Size of /dev/shm (e.g. 2g).", group="build"),
    InputSpec("network", "Networking mode for the RUN instructions during build.", group="build"),
    InputSpec(
        "allow",
        "List of extra privileged entitlements (e.g. network.host,security.insecure).",
        kind="list",
        group="build",
    ),
    InputSpec(
        "provenance",
        "Provenance attestation (shorthand for --attest=type=provenance): true, "
        "false or attributes such as mode=max.",
        group="build",
    ),
    InputSpec(
        "sbom",
        "SBOM attestation (shorthand for --attest=type=sbom): true, false or attributes.",
        group="build",
    ),
    InputSpec(
        "attests",
        "List of attestation parameters (e.g. type=sbom,generator=image).",
        kind="list",
        group="build",
    ),
    # Registry: push by digest, merge (docker/login-action names for the credentials)
    InputSpec(
        "image",
        "Image repository to push by digest, e.g. ghcr.io/owner/app: with push and no tags, "
        "each platform job pushes by digest there; the merge mode joins those digests there.",
        group="registry",
    ),
    InputSpec(
        "mode",
        "build, or merge: join the digests of per-platform jobs into one multi-platform image "
        "with the tags (no cluster needed).",
        default="build",
        group="registry",
    ),
    InputSpec(
        "digests",
        "Merge mode: folders of digest files (as actions/download-artifact writes them with "
        "pattern: digests-* and merge-multiple: true) or sha256:... digests.",
        kind="list",
        group="registry",
    ),
    InputSpec(
        "registry",
        "Server address of the registry to log in to (e.g. ghcr.io). Empty: Docker Hub.",
        group="registry",
    ),
    InputSpec("username", "Username for the registry.", group="registry"),
    InputSpec(
        "password",
        "Password or personal access token for the registry (store it as a secret).",
        group="registry",
    ),
    InputSpec(
        "docker-config",
        "A docker config.json (its content, from a secret) whose `auths` are used to push and merge; "
        "combined with username/password when both are set.",
        group="registry",
    ),
    # Artifacts (actions/upload-artifact names)
    InputSpec(
        "upload-artifacts",
        "Upload the local output as workflow artifacts.",
        default="true",
        kind="bool",
        group="artifacts",
    ),
    InputSpec(
        "artifact-name",
        "Artifact name (with artifact-per-platform, the prefix). Empty: the `builder` input, else "
        "`kubebuildx`, so a matrix leg and a multi-platform job upload the same names.",
        group="artifacts",
    ),
    InputSpec(
        "artifact-per-platform",
        "One artifact per platform, named `<name>-<os>-<arch>[-<variant>]`.",
        default="true",
        kind="bool",
        group="artifacts",
    ),
    InputSpec(
        "retention-days",
        "Days before the artifact expires (capped, with a warning, by the repository's "
        "setting). Empty or 0: the repository's default.",
        kind="int",
        group="artifacts",
    ),
    InputSpec(
        "compression-level",
        "Zip compression level, 0 (none) to 9 (best).",
        default="6",
        kind="int",
        group="artifacts",
    ),
    InputSpec(
        "if-no-files-found",
        "What to do when the output is empty: warn, error or ignore.",
        default="warn",
        group="artifacts",
    ),
    InputSpec(
        "overwrite",
        "Replace an existing artifact of the same name.",
        default="false",
        kind="bool",
        group="artifacts",
    ),
)

# The artifact inputs' values, as actions/upload-artifact takes them: checked by
# parse_inputs for the action and by artifacts.upload for `kubebuildx upload-artifact`.
IF_NO_FILES_FOUND = ("warn", "error", "ignore")
COMPRESSION_LEVELS = range(10)  # 0 (none) to 9 (best)

OUTPUTS: tuple[tuple[str, str], ...] = (
    # summary.step_outputs (build); pipeline.merge_all writes digest and metadata (mode: merge)
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
    (
        "cache-hits",
        "Build steps the cache served, as JSON keyed by platform: cached, steps, ratio "
        '(e.g. `{"linux/amd64":{"cached":7,"steps":9,"ratio":0.778}}`).',
    ),
    # artifacts.artifact_outputs
    ("artifact-ids", "IDs of the uploaded workflow artifacts, as JSON keyed by platform."),
    ("artifact-urls", "Download URLs of the uploaded workflow artifacts, as JSON keyed by platform."),
    (
        "artifact-digests",
        "sha256 digests of the uploaded artifact zips, as JSON keyed by platform.",
    ),
)

OUTPUT_NAMES = tuple(name for name, _ in OUTPUTS)
