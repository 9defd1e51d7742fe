"""A small Kubernetes API client over HTTPS with the admin client certificate.

The harness needs only a handful of calls (apply, get, patch, delete, token), so
it speaks the REST API directly with the standard library.
"""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from proc import HarnessError

FIELD_MANAGER = "kubebuildx-cluster"

# kind -> (API prefix, plural, namespaced)
RESOURCES = {
    "Namespace": ("/api/v1", "namespaces", False),
    "Node": ("/api/v1", "nodes", False),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "Pod": ("/api/v1", "pods", True),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "CustomResourceDefinition": ("/apis/apiextensions.k8s.io/v1", "customresourcedefinitions", False),
    "Exec": ("/apis/kwok.x-k8s.io/v1alpha1", "execs", True),
}


def path_for(kind: str, name: str | None = None, namespace: str | None = None) -> str:
    try:
        prefix, plural, namespaced = RESOURCES[kind]
    except KeyError:
        raise HarnessError(f"the harness does not know kind {kind!r}; add it to kube.RESOURCES") from None
    path = prefix
    if namespaced:
        if not namespace:
            raise HarnessError(f"{kind} {name} needs a namespace")
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    return path + (f"/{name}" if name else "")


class Kube:
    def __init__(self, port: int, pki: Path) -> None:
        self.port = port
        self.context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        ok: tuple[int, ...] = (200, 201),
    ) -> tuple[int, Any]:
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=30)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = content_type
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = raw.decode(errors="replace")
        if response.status not in ok:
            message = decoded.get("message") if isinstance(decoded, dict) else decoded
            raise HarnessError(f"{method} {path}: HTTP {response.status}: {message}")
        return response.status, decoded

    def ready(self) -> bool:
        status, _ = self.request("GET", "/readyz", ok=(200, 500))
        return status == 200

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply, so that running `up` again converges instead of failing."""
        meta = obj["metadata"]
        path = path_for(obj["kind"], meta["name"], meta.get("namespace"))
        query = urlencode({"fieldManager": FIELD_MANAGER, "force": "true"})
        _, result = self.request("PATCH", f"{path}?{query}", obj, content_type="application/apply-patch+yaml")
        return result

    def get(
        self, kind: str, name: str | None = None, namespace: str | None = None, **query: str
    ) -> dict[str, Any] | None:
        path = path_for(kind, name, namespace) + (f"?{urlencode(query)}" if query else "")
        status, result = self.request("GET", path, ok=(200, 404))
        return result if status == 200 else None

    def patch(
        self,
        kind: str,
        name: str,
        patch: Any,
        namespace: str | None = None,
        content_type: str = "application/strategic-merge-patch+json",
    ) -> dict[str, Any]:
        _, result = self.request("PATCH", path_for(kind, name, namespace), patch, content_type=content_type)
        return result

    def delete(
        self, kind: str, name: str, namespace: str | None = None, grace_seconds: int | None = None
    ) -> bool:
        body = None if grace_seconds is None else {"gracePeriodSeconds": grace_seconds}
        status, _ = self.request("DELETE", path_for(kind, name, namespace), body, ok=(200, 202, 404))
        return status != 404

    def token(self, namespace: str, service_account: str, seconds: int) -> str:
        """A bound token from the TokenRequest API."""
        path = path_for("ServiceAccount", service_account, namespace) + "/token"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds},
        }
        _, result = self.request("POST", path, body)
        return str(result["status"]["token"])
