"""Store the instance file in a ConfigMap (key ``data``), for CI pods that
mount it as ``~/.docker/buildx/instances/<builder>`` (the manual recipe's
buildx.config)."""

from __future__ import annotations

from typing import Any

from kubebuildx import kube, runner
from kubebuildx.errors import ClusterError


def body(name: str, builder: str, text: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/managed-by": "kubebuildx", "kubebuildx.dev/builder": builder},
        },
        "data": {"data": text},
    }


def store(connection: kube.Connection, name: str, builder: str, text: str) -> None:
    """Create the ConfigMap in the builder's namespace, or replace it when it exists."""
    api, server, namespace = connection.api, connection.server, connection.namespace
    manifest = body(name, builder, text)
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    status, _ = kube.request(api, "POST", base, server, "creating the ConfigMap", manifest)
    if status == 409:
        status, _ = kube.request(api, "PUT", f"{base}/{name}", server, "replacing the ConfigMap", manifest)
    if status not in (200, 201):
        raise ClusterError(
            f"cannot store ConfigMap {namespace}/{name}: HTTP {status}",
            hint="the user needs create/update on configmaps in the namespace (deploy/rbac.yaml grants it)",
        )
    runner.info(f"stored the instance in ConfigMap {namespace}/{name} (key: data)")
