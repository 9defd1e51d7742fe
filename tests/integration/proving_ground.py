"""What the integration tests know about the proving ground (scripts/cluster),
read from `scripts/cluster env --json`. The `cluster` fixture in conftest.py
returns a `Cluster`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Kubeconfigs:
    admin: Path
    limited: Path  # ServiceAccount buildkit/kubebuildx bound to exactly deploy/rbac.yaml
    bad_token: Path  # a token the apiserver rejects (401)
    bad_ca: Path  # a CA that did not sign the apiserver's certificate (TLS fails)


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Kubeconfigs
    namespace: str  # where the limited identity may build: "buildkit"
    bin_dir: Path  # buildx, buildctl, kube-* ... (put it first on PATH)
    base_image: str  # the name test Dockerfiles use in FROM: "busybox"
    base_image_context: str  # the --build-context value: "busybox=oci-layout:///...:busybox"
    base_image_layout: Path  # the multi-platform OCI layout itself
    nodes: Mapping[str, str]  # architecture -> node name: {"amd64": "kwok-amd64", "arm64": "kwok-arm64"}
    registry: str  # host:port of the loopback registry the buildkitds reach over HTTP
    state: Path  # certs, logs, pids, sockets of the running cluster

    def env(self, **extra: str) -> dict[str, str]:
        """os.environ with bin_dir first on PATH and KUBECONFIG set to the admin one."""
        env = dict(os.environ)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        env["KUBECONFIG"] = str(self.kubeconfig.admin)
        env.update(extra)
        return env

    def api_client(self, identity: str = "admin") -> Any:
        """A kubernetes.client.ApiClient for one of the identities in `kubeconfig`."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(getattr(self.kubeconfig, identity)))

    def core_v1(self, identity: str = "admin") -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api_client(identity))

    def apps_v1(self, identity: str = "admin") -> Any:
        from kubernetes import client

        return client.AppsV1Api(self.api_client(identity))


def read_cluster(info: Mapping[str, Any]) -> Cluster:
    kc = info["kubeconfig"]
    return Cluster(
        kubeconfig=Kubeconfigs(*(Path(kc[k]) for k in ("admin", "limited", "bad_token", "bad_ca"))),
        namespace=info["namespace"],
        bin_dir=Path(info["bin"]),
        base_image=info["base_image"]["name"],
        base_image_context=info["base_image"]["build_context_arg"],
        base_image_layout=Path(info["base_image"]["layout"]),
        nodes=dict(info["nodes"]),
        registry=info["registry"],
        state=Path(info["state"]),
    )
