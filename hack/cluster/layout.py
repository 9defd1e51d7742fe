"""Where the proving ground keeps things, which versions it pins, which ports it takes.

Everything that names a version, a path or a port lives here, so that a reader
finds it first and a change touches one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GOMOD = REPO / "hack" / "gomod"

# Pinned versions. The recipes that build them are in hack/gomod/<name>/go.mod
# (or `go install module@version` where the module allows it).
KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
BUILDKIT_VERSION = "v0.32.2"  # the version github.com/docker/buildx v0.36.1 requires
KWOK_VERSION = "v0.8.0"
BUILDX_VERSION = "v0.36.1"
ACT_VERSION = "v0.2.89"  # github.com/nektos/act, the runner that interprets action.yml and workflows

# Debian packages, pinned to the bookworm versions this was made with.
APT_PACKAGES = {
    "runc": "1.1.5+ds1-1+deb12u1",
    "qemu-user-static": "1:7.2+dfsg-7+deb12u18+b3",
    "binfmt-support": "2.2.2-2",
    "openssl": None,  # present on the image; only its CLI is used
    # The action image is built and run by a real Docker engine (Debian's 20.10,
    # started by `up` with no bridge and no iptables), its base images made by mmdebstrap.
    "docker.io": "20.10.24+dfsg1-1+deb12u1+b6",
    "mmdebstrap": "1.3.5-7",
    "arch-test": "0.20-1",  # mmdebstrap's check that arm64 runs through binfmt
}
DOCKERD = "/usr/sbin/dockerd"
DOCKER_CLI = "/usr/bin/docker"  # Debian's, the engine's own version; /usr/local/bin/docker may shadow it
BUSYBOX_STATIC_VERSION = "1:1.35.0-4+deb12u1+b1"

ARCHES = ("amd64", "arm64")
UNAME_M = {"amd64": "x86_64", "arm64": "aarch64"}

# Loopback ports; none is a Kubernetes default, so a real cluster on the same
# machine does not collide.
ETCD_CLIENT_PORT = 23790
ETCD_PEER_PORT = 23800
APISERVER_PORT = 16443
CONTROLLER_MANAGER_PORT = 16457
SCHEDULER_PORT = 16459
KWOK_PORTS = {"amd64": 16250, "arm64": 16251}
# The loopback stand-in for GitHub's OIDC issuer (hack/cluster/oidc.py): discovery and JWKS
# over TLS, which the apiserver's --authentication-config points at.
OIDC_ISSUER_PORT = 16480
# Debian's interpreter runs it (standard library and the openssl CLI only): a fixed argv[0],
# so `env` and `down` find the daemon whichever Python runs scripts/cluster.
OIDC_PYTHON = "/usr/bin/python3"
OIDC_PYTHON_VERSION = "Python 3.11"  # bookworm's python3

NAMESPACE = "buildkit"
SERVICE_ACCOUNT = "kubebuildx"
BASE_IMAGE_TAG = "busybox"


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


@dataclass(frozen=True)
class Layout:
    cache: Path  # built binaries and base-image inputs, kept across runs
    state: Path  # runtime state: certs, etcd data, logs, pids, sockets

    @classmethod
    def default(cls) -> Layout:
        cache = Path(os.environ.get("KUBEBUILDX_CACHE") or _cache_home() / "kubebuildx")
        state = Path(os.environ.get("KUBEBUILDX_CLUSTER_STATE") or cache / "cluster")
        return cls(cache=cache, state=state)

    # Binaries, one folder per pinned version so that a warm `up` builds nothing.
    def bin_for(self, name: str, version: str) -> Path:
        return self.cache / "bin" / f"{name}-{version}"

    @property
    def kubernetes_bin(self) -> Path:
        return self.bin_for("kubernetes", KUBERNETES_VERSION)

    @property
    def etcd_bin(self) -> Path:
        return self.bin_for("etcd", ETCD_VERSION)

    @property
    def buildkit_bin(self) -> Path:
        return self.bin_for("buildkit", BUILDKIT_VERSION)

    @property
    def kwok_bin(self) -> Path:
        return self.bin_for("kwok", KWOK_VERSION)

    @property
    def buildx_bin(self) -> Path:
        return self.bin_for("buildx", BUILDX_VERSION)

    @property
    def act_bin(self) -> Path:
        return self.bin_for("act", ACT_VERSION)

    @property
    def debs(self) -> Path:
        return self.cache / "debs"

    # Runtime state.
    @property
    def bin(self) -> Path:
        """One folder for PATH: links to every pinned binary."""
        return self.state / "bin"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def run(self) -> Path:
        return self.state / "run"

    @property
    def kubeconfigs(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def etcd_data(self) -> Path:
        return self.state / "etcd"

    @property
    def docker_socket(self) -> Path:
        return self.run / "docker.sock"

    @property
    def docker_root(self) -> Path:
        """The engine's images and containers: in the cache, so that `down` keeps the images."""
        return self.cache / "docker"

    @property
    def base_image(self) -> Path:
        return self.state / "images" / "busybox"

    @property
    def base_image_context(self) -> str:
        return f"oci-layout://{self.base_image}:{BASE_IMAGE_TAG}"


def registry() -> str:
    """host:port of the loopback registry that the buildkitds may reach over HTTP."""
    return os.environ.get("KUBEBUILDX_REGISTRY", "127.0.0.1:5000")


def node_name(arch: str) -> str:
    return f"kwok-{arch}"
