"""Kubeconfig: read it, check it, mask every credential in it, and write the
one context we use to a 0600 file that buildx's kubernetes driver reads.

Nothing here ever formats a credential, or a line of the document, into a
message: YAML errors are reported by position only.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubebuildx import runner
from kubebuildx.errors import KubeconfigError
from kubebuildx.files import atomic_write

IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_SECRET_USER_KEYS = ("token", "client-key-data", "client-certificate-data", "password")
_FILE_KEYS = {
    "cluster": ("certificate-authority",),
    "user": ("client-certificate", "client-key", "tokenFile"),
}


@dataclass(frozen=True)
class Kubeconfig:
    """The one context we use, ready to be written."""

    context: str
    cluster: str
    server: str
    namespace: str
    document: Mapping[str, Any] = field(repr=False)
    in_cluster: bool = False

    def to_yaml(self) -> str:
        return yaml.safe_dump(dict(self.document), sort_keys=False)


def _decode(text: str) -> str:
    """Accept YAML, or base64 of YAML (how many users store the secret)."""
    stripped = text.strip()
    if not stripped:
        raise KubeconfigError("the kubeconfig is empty")
    if ":" in stripped.splitlines()[0] or stripped.startswith(("{", "---", "#")):
        return text
    try:
        decoded = base64.b64decode("".join(stripped.split()), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise KubeconfigError(
            "the kubeconfig is neither YAML nor base64-encoded YAML",
            hint="store the file's content as the secret (or `base64 -w0 ~/.kube/config`)",
        ) from None
    runner.mask(stripped)
    return decoded


def _dict(value: Any) -> dict[str, Any]:
    """A mapping the document should hold there, or an empty one: a malformed
    kubeconfig must end in a KubeconfigError, not in an AttributeError."""
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _mask_document(doc: Mapping[str, Any]) -> None:
    for entry in _list(doc.get("users")):
        user = _dict(_dict(entry).get("user"))
        for key in _SECRET_USER_KEYS:
            value = user.get(key)
            if isinstance(value, str):
                runner.mask(value)
        provider = _dict(user.get("auth-provider"))
        for value in _dict(provider.get("config")).values():
            if isinstance(value, str):
                runner.mask(value)
        for env in _list(_dict(user.get("exec")).get("env")):
            if isinstance(env, dict) and isinstance(env.get("value"), str):
                runner.mask(env["value"])


def _named(doc: Mapping[str, Any], kind: str, name: str) -> dict[str, Any] | None:
    for entry in _list(doc.get(kind + "s")):
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(kind)
            return body if isinstance(body, dict) else {}
    return None


def absolutize(text: str, base_dir: Path) -> str:
    """Make the file paths a kubeconfig file names absolute against its own
    folder, as kubectl reads them. Text that is not a YAML mapping is returned
    as it is, for ``parse`` to explain."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if not isinstance(doc, dict):
        return text
    changed = False
    for kind in _FILE_KEYS:
        for entry in doc.get(kind + "s") or []:
            body = entry.get(kind) if isinstance(entry, dict) else None
            if isinstance(body, dict):
                changed = _make_absolute(body, kind, base_dir) or changed
    return yaml.safe_dump(doc, sort_keys=False) if changed else text


def _make_absolute(body: dict[str, Any], kind: str, base_dir: Path) -> bool:
    """Rewrite ``body``'s relative file paths against ``base_dir``; True if any was."""
    changed = False
    for key in _FILE_KEYS[kind]:
        value = body.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            body[key] = str(base_dir / value)
            changed = True
    return changed


def merge_files(paths: Sequence[str], locate: Callable[[str], str] = str) -> str:
    """A ``KUBECONFIG`` list as kubectl merges it (client-go's ClientConfigLoadingRules): files
    that do not exist are skipped, the first file to set current-context wins, and of clusters,
    users and contexts of one name the first wins. A file's relative paths resolve against its
    folder, then every path goes through ``locate`` (to the container's view of it)."""
    merged: dict[str, Any] = {"apiVersion": "v1", "kind": "Config"}
    found = [p for p in paths if Path(p).is_file()]
    if not found:
        raise KubeconfigError(
            "$KUBECONFIG names no file that exists: " + ", ".join(paths),
            hint="write the kubeconfig under ${{ runner.temp }} in the earlier step, or set the "
            "kubeconfig input",
        )
    for path in found:
        try:
            doc = yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise KubeconfigError(f"$KUBECONFIG file {path} is not valid YAML{where}") from None
        if not isinstance(doc, dict):
            continue
        if doc.get("current-context") and not merged.get("current-context"):
            merged["current-context"] = doc["current-context"]
        for kind in ("cluster", "user", "context"):
            entries = merged.setdefault(kind + "s", [])
            names = {e.get("name") for e in entries}
            for entry in _list(doc.get(kind + "s")):
                if not isinstance(entry, dict) or entry.get("name") in names:
                    continue
                body = _dict(entry.get(kind))
                if kind in _FILE_KEYS:
                    _make_absolute(body, kind, Path(path).parent)
                    for key in _FILE_KEYS[kind]:
                        if isinstance(body.get(key), str):
                            body[key] = locate(body[key])
                entries.append({"name": entry.get("name"), kind: body})
                names.add(entry.get("name"))
    return yaml.safe_dump(merged, sort_keys=False)


def parse(text: str, *, context: str = "", base_dir: Path | None = None) -> Kubeconfig:
    """Parse kubeconfig text and keep only ``context`` (default: current-context)."""
    source = _decode(text)
    try:
        doc = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise KubeconfigError(
            f"the kubeconfig is not valid YAML{where}",
            hint="check the secret holds a whole kubeconfig file (`kubectl config view --raw --minify`)",
        ) from None
    if not isinstance(doc, dict):
        raise KubeconfigError(
            "the kubeconfig is not a YAML mapping", hint="store a whole kubeconfig file in the secret"
        )
    _mask_document(doc)
    kind = doc.get("kind")
    if kind not in (None, "Config"):
        shown = repr(kind) if isinstance(kind, str) and re.fullmatch(r"[A-Z][A-Za-z]{0,39}", kind) else "?"
        raise KubeconfigError(f"the kubeconfig has kind {shown}, expected Config")

    names = [c.get("name") for c in _list(doc.get("contexts")) if isinstance(c, dict)]
    chosen = context or doc.get("current-context") or ""
    if not isinstance(chosen, str):
        raise KubeconfigError(
            "the kubeconfig's current-context is not a name", hint="set the kube-context input"
        )
    if not chosen:
        if len(names) == 1:
            chosen = str(names[0])
        else:
            raise KubeconfigError(
                "the kubeconfig has no current-context",
                hint="set the kube-context input to one of: " + (", ".join(map(str, names)) or "(none)"),
            )
    ctx = _named(doc, "context", chosen)
    if ctx is None:
        raise KubeconfigError(
            f"context {chosen!r} is not in the kubeconfig",
            hint="set kube-context to one of: " + (", ".join(map(str, names)) or "(no contexts)"),
        )
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    cluster = _named(doc, "cluster", str(cluster_name)) if cluster_name else None
    if cluster is None:
        raise KubeconfigError(f"context {chosen!r} names cluster {cluster_name!r}, which is not defined")
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise KubeconfigError(f"cluster {cluster_name!r} has no https:// server address")
    if not (
        cluster.get("certificate-authority-data")
        or cluster.get("certificate-authority")
        or cluster.get("insecure-skip-tls-verify")
        or server.startswith("http://")
    ):
        runner.warning(f"cluster {cluster_name!r} has no certificate-authority: the system CAs are used")
    user = _named(doc, "user", str(user_name)) if user_name else None
    if user is None:
        raise KubeconfigError(f"context {chosen!r} names user {user_name!r}, which is not defined")
    if not any(
        user.get(k)
        for k in ("token", "tokenFile", "client-key-data", "client-key", "exec", "auth-provider", "password")
    ):
        raise KubeconfigError(
            f"user {user_name!r} has no credentials (token, client certificate, or exec plugin)",
            hint="export the kubeconfig with `kubectl config view --raw --minify` so credentials are kept",
        )
    if user.get("exec"):
        command = _dict(user.get("exec")).get("command", "")
        runner.warning(
            f"user {user_name!r} authenticates with the exec plugin {command!r}: it must be installed "
            "where kubebuildx runs (the action image has none). A service-account token is simpler.",
        )

    for kind, body in (("cluster", cluster), ("user", user)):
        _make_absolute(body, kind, base_dir or Path.cwd())
        for key in _FILE_KEYS[kind]:
            if isinstance(body.get(key), str) and not Path(body[key]).exists():
                raise KubeconfigError(
                    f"{kind} {key} file {body[key]!r} does not exist",
                    hint="embed it with `kubectl config view --raw --minify --flatten`",
                )

    namespace = str(ctx.get("namespace") or "")
    minimal = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": chosen,
        "contexts": [{"name": chosen, "context": dict(ctx)}],
        "clusters": [{"name": cluster_name, "cluster": cluster}],
        "users": [{"name": user_name, "user": user}],
    }
    return Kubeconfig(chosen, str(cluster_name), server, namespace, minimal)


def in_cluster(env: Mapping[str, str] | None = None, sa_dir: Path = IN_CLUSTER_DIR) -> Kubeconfig:
    """The service account of the pod we run in (a self-hosted runner).

    The token is referenced by file, not copied, so kubelet's rotation keeps working.
    """
    env = os.environ if env is None else env
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
    token = sa_dir / "token"
    if not host or not token.is_file():
        raise KubeconfigError(
            "no kubeconfig was given and this is not a Kubernetes pod with a service account",
            hint="set the kubeconfig input from a secret (`kubeconfig: ${{ secrets.KUBECONFIG }}`), or run "
            "on a self-hosted runner pod whose service account has the RBAC in deploy/rbac.yaml",
        )
    runner.mask(token.read_text().strip())
    namespace_file = sa_dir / "namespace"
    namespace = namespace_file.read_text().strip() if namespace_file.is_file() else ""
    server = f"https://{host}:{port}" if ":" not in host else f"https://[{host}]:{port}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "in-cluster",
        "contexts": [
            {
                "name": "in-cluster",
                "context": {
                    "cluster": "in-cluster",
                    "user": "in-cluster",
                    **({"namespace": namespace} if namespace else {}),
                },
            }
        ],
        "clusters": [
            {
                "name": "in-cluster",
                "cluster": {"server": server, "certificate-authority": str(sa_dir / "ca.crt")},
            }
        ],
        "users": [{"name": "in-cluster", "user": {"tokenFile": str(token)}}],
    }
    return Kubeconfig("in-cluster", "in-cluster", server, namespace, doc, in_cluster=True)


def write(config: Kubeconfig, directory: Path) -> Path:
    """Write atomically with mode 0600 (created so, never widened)."""
    path = directory / "kubeconfig"
    atomic_write(path, config.to_yaml())
    return path
