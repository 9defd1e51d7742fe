"""Errors a user can act on.

Pipeline code only raises these; ``cli.main`` alone catches them, prints the
message as an ``::error::`` annotation (and into the step summary) and exits
with the class's exit code. A message says what failed, what we saw and what
to do; it never contains a secret.
"""

from __future__ import annotations


class KubebuildxError(Exception):
    """Base class. ``exit_code`` groups failures so that scripts can tell them apart."""

    exit_code = 1
    title = "kubebuildx failed"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  Fix: {self.hint}"
        return self.message


class InputError(KubebuildxError):
    """An input, flag or combination of them is invalid. Raised before anything runs."""

    exit_code = 2
    title = "Invalid input"


class KubeconfigError(KubebuildxError):
    """The kubeconfig cannot be parsed or lacks what we need."""

    exit_code = 3
    title = "Invalid kubeconfig"


class ClusterError(KubebuildxError):
    """The cluster cannot serve the request: unreachable, forbidden, or missing platforms."""

    exit_code = 4
    title = "Cluster preflight failed"


class BootstrapError(KubebuildxError):
    """The builder pods did not become ready, or serve the wrong platform."""

    exit_code = 5
    title = "Builder bootstrap failed"


class BuildError(KubebuildxError):
    """buildx build failed; its own last words are in the message."""

    exit_code = 6
    title = "Build failed"


class ArtifactError(KubebuildxError):
    """Uploading workflow artifacts failed."""

    exit_code = 7
    title = "Artifact upload failed"


class RegistryError(KubebuildxError):
    """Pushing or merging images failed."""

    exit_code = 8
    title = "Registry operation failed"


class ToolError(KubebuildxError):
    """A tool we drive (buildx, docker) is missing or failed outside a build."""

    exit_code = 9
    title = "Tool failed"


class CleanupError(KubebuildxError):
    """The post step could not remove the builder: its Deployments may still be running."""

    exit_code = 10
    title = "Cleanup failed"


class CredentialError(KubebuildxError):
    """A short-lived credential for the cluster could not be had: GitHub's OIDC token
    endpoint is not available to the job (no ``id-token: write``), refused, or answered
    with something that is not a token."""

    exit_code = 11
    title = "Cluster credential failed"
