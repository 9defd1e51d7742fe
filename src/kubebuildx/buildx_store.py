"""buildx's own store: the builder's instance file and ``activity``, and the
private kubeconfig copy a warm builder keeps next to it.

``current`` is the user's: kubebuildx never writes or deletes it (as ``buildx
create`` without ``--use``, and ``buildx rm``). Every command we run names the
builder with ``--builder``, and on a shared HOME another job's plain ``docker
buildx build`` must not reach our builder, nor find its default pointing at a
builder that was removed.

Mirrors buildx v0.36.1 exactly (store/nodegroup.go, store/store.go,
builder/builder.go): the JSON is what Go's encoding/json writes for
``store.NodeGroup``; the endpoint is what ``buildx create --driver kubernetes``
builds; files are written atomically with mode 0600.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from kubebuildx.builder import BuilderSpec
from kubebuildx.files import atomic_write


def endpoint(builder: str, node: str, kubeconfig: str) -> str:
    """``kubernetes:///<builder>?deployment=<node>&kubeconfig=<path>``, encoded
    as Go's url.Values.Encode (keys sorted, QueryEscape)."""
    return f"kubernetes:///{builder}?" + urlencode({"deployment": node, "kubeconfig": kubeconfig})


def go_json(value: Any) -> str:
    """Go's json.Marshal: compact, HTML characters escaped."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def node_group(spec: BuilderSpec, kubeconfig: str) -> dict[str, Any]:
    """``store.NodeGroup`` as a dict in Go's field order (map keys sorted)."""
    files = {k: base64.b64encode(v).decode() for k, v in sorted(spec.files)} or None
    return {
        "Name": spec.name,
        "Driver": "kubernetes",
        "Nodes": [
            {
                "Name": node.name,
                "Endpoint": endpoint(spec.name, node.name, kubeconfig),
                "Platforms": [node.platform.oci()],
                "DriverOpts": dict(sorted(node.driver_opts)),
                "Flags": list(spec.flags) or None,
                "Files": files,
            }
            for node in spec.nodes
        ],
        "Dynamic": False,
    }


def instance_json(spec: BuilderSpec, kubeconfig: str) -> str:
    return go_json(node_group(spec, kubeconfig))


def buildx_dir(env: Mapping[str, str]) -> Path:
    """Where buildx keeps its store: $BUILDX_CONFIG, else $DOCKER_CONFIG/buildx, else ~/.docker/buildx."""
    if env.get("BUILDX_CONFIG"):
        return Path(env["BUILDX_CONFIG"])
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]) / "buildx"
    return Path(env.get("HOME", str(Path.home()))) / ".docker" / "buildx"


def write(spec: BuilderSpec, kubeconfig: str, store: Path) -> Path:
    """Write the instance file (and ``activity``) into buildx's store; never ``current``."""
    path = instance_file(store, spec.name)
    atomic_write(path, instance_json(spec, kubeconfig))
    atomic_write(store / "activity" / spec.name, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return path


def instance_file(store: Path, name: str) -> Path:
    return store / "instances" / name


def kept_kubeconfig(store: Path, name: str) -> Path:
    """Where a builder that outlives the run keeps its private kubeconfig copy."""
    return store / "kubebuildx" / f"{name}.kubeconfig"


def keep_kubeconfig_copy(store: Path, name: str, text: str) -> Path:
    path = kept_kubeconfig(store, name)
    atomic_write(path, text)
    return path


def remove(name: str, store: Path) -> None:
    """Forget a builder in the store only (its Deployments are left alone), as buildx's
    store.Txn.Remove does: ``current`` is left as it is."""
    for sub in ("instances", "activity"):
        (store / sub / name).unlink(missing_ok=True)
    kept_kubeconfig(store, name).unlink(missing_ok=True)


def materialize(
    spec: BuilderSpec,
    kubeconfig: Path,
    store: Path,
    *,
    keep_kubeconfig: bool,
    kubeconfig_ref: str | None = None,
) -> Path:
    """Write the builder's instance file into the store; return its path.

    A builder that outlives the run's workdir (``keep_kubeconfig``) gets a
    private copy of the kubeconfig next to the store. The instance points at
    ``kubeconfig_ref`` when given (``kubebuildx instance --kubeconfig-ref``),
    else at that copy, else at the run's own kubeconfig.
    """
    ref = kubeconfig
    if keep_kubeconfig:
        ref = keep_kubeconfig_copy(store, spec.name, kubeconfig.read_text())
    return write(spec, str(ref) if kubeconfig_ref is None else kubeconfig_ref, store)
