"""kubebuildx: native multi-platform builds on your own Kubernetes cluster, with buildx and BuildKit."""

__version__ = "0.1.0"
