"""Preflight: can this cluster build every requested platform natively?

Pure decisions over the API's JSON (nodes, access reviews) first; the thin
edge that reads them from the cluster with the kubernetes client is at the
end. A missing platform, a taint, missing RBAC, a bad token or a wrong CA all
fail here, in seconds, with what we saw and what to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubebuildx import kube, runner
from kubebuildx import platforms as plat
from kubebuildx.errors import ClusterError
from kubebuildx.inputs import Inputs, parse_tolerations
from kubebuildx.kube import ARCH_LABEL, OS_LABEL
from kubebuildx.platforms import Platform

VARIANT_LABEL = "kubebuildx.dev/arch-variant"
RBAC_MANIFEST = "deploy/rbac.yaml"
OIDC_BINDINGS = "deploy/github-oidc/rolebinding.yaml"


@dataclass(frozen=True)
class Permission:
    verb: str
    resource: str
    group: str = ""
    subresource: str = ""
    namespaced: bool = True
    why: str = ""

    def __str__(self) -> str:
        res = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        if self.group:
            res = f"{res}.{self.group}"
        return f"{self.verb} {res}"


LIST_NODES = Permission(
    "list", "nodes", namespaced=False, why="kubebuildx finds the nodes of each architecture"
)
# What buildx's kubernetes driver (v0.36.1 driver/kubernetes) and kubebuildx do.
# deploy/rbac.yaml grants exactly these (tests/unit/test_preflight.py checks).
REQUIRED: tuple[Permission, ...] = (
    Permission("get", "deployments", "apps", why="buildx checks whether the builder exists"),
    Permission("create", "deployments", "apps", why="buildx boots the builder"),
    Permission("delete", "deployments", "apps", why="cleanup removes the builder"),
    Permission("list", "pods", why="buildx picks a running builder pod"),
    Permission("create", "pods", subresource="exec", why="buildx talks to BuildKit through exec"),
    Permission("get", "pods", subresource="exec", why="kubebuildx asks each BuildKit which CPU it runs on"),
    Permission("create", "configmaps", why="buildx stores the BuildKit config"),
    Permission("update", "configmaps", why="buildx updates the BuildKit config"),
    Permission("delete", "configmaps", why="cleanup removes the BuildKit config"),
    LIST_NODES,
)
# Only with driver-opts persistent-volume-claim.requests.storage: buildx then keeps
# the builder as a StatefulSet (deploy/rbac.yaml has this rule commented out).
PERSISTENT: tuple[Permission, ...] = (
    Permission("get", "statefulsets", "apps", why="buildx checks whether a persistent builder exists"),
    Permission("create", "statefulsets", "apps", why="buildx boots a builder with a persistent volume"),
    Permission("delete", "statefulsets", "apps", why="cleanup removes a persistent builder"),
)
OPTIONAL: tuple[Permission, ...] = (
    Permission("list", "events", why="kubebuildx quotes scheduling events when pods do not start"),
)


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"

    def toleration(self) -> str:
        """The driver-opts line that tolerates this taint."""
        op = (
            f"key={self.key},operator=Equal,value={self.value}"
            if self.value
            else f"key={self.key},operator=Exists"
        )
        return f"tolerations={op},effect={self.effect}"


@dataclass(frozen=True)
class NodeInfo:
    name: str
    platform: Platform | None
    ready: bool
    unschedulable: bool
    taints: tuple[Taint, ...]


@dataclass(frozen=True)
class PlatformCheck:
    platform: Platform
    native: tuple[str, ...]  # nodes that can run its builder
    blocked: tuple[tuple[str, str], ...]  # (node, why not)
    taints: tuple[Taint, ...]  # taints that keep the builder off otherwise suitable nodes

    @property
    def ok(self) -> bool:
        return bool(self.native)


def _obj(value: Any) -> dict[str, Any]:
    """A JSON object from the API, or an empty one: a null or odd field must not crash preflight."""
    return value if isinstance(value, dict) else {}


def _objs(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def node_info(node: Mapping[str, Any]) -> NodeInfo:
    meta, spec, status = _obj(node.get("metadata")), _obj(node.get("spec")), _obj(node.get("status"))
    labels = _obj(meta.get("labels"))
    platform: Platform | None = None
    arch, os_name = labels.get(ARCH_LABEL), labels.get(OS_LABEL, "linux")
    if arch:
        try:
            platform = plat.parse(
                f"{os_name}/{arch}" + (f"/{labels[VARIANT_LABEL]}" if labels.get(VARIANT_LABEL) else "")
            )
        except Exception:  # noqa: BLE001 - an odd label only hides that node
            platform = None
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in _objs(status.get("conditions"))
    )
    # Names and taints are only shown (the log, errors, the toleration to paste): made one line
    # here, so that an API server cannot start a log line of its own (::error::, ::add-mask::).
    taints = tuple(
        Taint(*(runner.one_line(str(t.get(k) or "")) for k in ("key", "value", "effect")))
        for t in _objs(spec.get("taints"))
    )
    name = runner.one_line(meta["name"]) if isinstance(meta.get("name"), str) else "?"
    return NodeInfo(name, platform, ready, bool(spec.get("unschedulable")), taints)


def tolerates(tolerations: Iterable[Mapping[str, str]], taint: Taint) -> bool:
    """Kubernetes' toleration matching (core/v1 Toleration.ToleratesTaint)."""
    for tol in tolerations:
        if tol.get("effect") and tol["effect"] != taint.effect:
            continue
        op = tol.get("operator") or "Equal"
        key = tol.get("key", "")
        if op == "Exists" and (not key or key == taint.key):
            return True
        if op == "Equal" and key == taint.key and tol.get("value", "") == taint.value:
            return True
    return False


_BLOCKING_EFFECTS = {"NoSchedule", "NoExecute"}


def check_platforms(
    nodes: Sequence[NodeInfo],
    requested: Sequence[Platform],
    tolerations: Mapping[Platform, tuple[dict[str, str], ...]],
) -> tuple[PlatformCheck, ...]:
    checks = []
    for platform in requested:
        native: list[str] = []
        blocked: list[tuple[str, str]] = []
        taints: list[Taint] = []
        for node in nodes:
            if node.platform is None or not node.platform.same_cpu(platform):
                continue
            if not node.ready:
                blocked.append((node.name, "not Ready"))
                continue
            if node.unschedulable:
                blocked.append((node.name, "cordoned (unschedulable)"))
                continue
            hard = [
                t
                for t in node.taints
                if t.effect in _BLOCKING_EFFECTS and not tolerates(tolerations.get(platform, ()), t)
            ]
            if hard:
                blocked.append((node.name, "tainted " + ", ".join(map(str, hard))))
                taints.extend(t for t in hard if t not in taints)
                continue
            native.append(node.name)
        checks.append(PlatformCheck(platform, tuple(native), tuple(blocked), tuple(taints)))
    return tuple(checks)


def serveable(nodes: Sequence[NodeInfo]) -> tuple[Platform, ...]:
    """Every platform some Ready node serves natively (for an empty ``platforms`` input)."""
    found = {n.platform for n in nodes if n.platform is not None and n.ready and not n.unschedulable}
    return tuple(sorted(p for p in found if p is not None))


def describe_cluster(nodes: Sequence[NodeInfo]) -> str:
    by: dict[str, list[str]] = {}
    for node in nodes:
        by.setdefault(str(node.platform) if node.platform else "unlabelled", []).append(node.name)
    if not by:
        return "the cluster has no nodes"
    return "the cluster has " + "; ".join(f"{k}: {', '.join(sorted(v))}" for k, v in sorted(by.items()))


def table(checks: Sequence[PlatformCheck]) -> str:
    """The preflight table: platform, native nodes, problems."""
    rows = [("PLATFORM", "NATIVE NODES", "PROBLEMS")]
    for c in checks:
        problems = "; ".join(f"{n}: {why}" for n, why in c.blocked) or "-"
        rows.append((str(c.platform), ", ".join(c.native) or "(none)", problems))
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    return "\n".join(f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  {r[2]}" for r in rows)


def decide(
    checks: Sequence[PlatformCheck], nodes: Sequence[NodeInfo], *, qemu_fallback: bool
) -> tuple[tuple[Platform, ...], dict[Platform, Platform]]:
    """Split platforms into native and emulated, or raise with the fix.

    With qemu-fallback, a platform no node serves is emulated on the first
    platform that is served natively.
    """
    native = tuple(c.platform for c in checks if c.ok)
    failing = [c for c in checks if not c.ok]
    if not failing:
        return native, {}
    tainted = [c for c in failing if c.taints]
    if tainted:  # native nodes exist: the fix is a toleration, never emulation
        lines = [
            f"{c.platform}: every {c.platform.arch} node is tainted ("
            + ", ".join(f"{n}: {why}" for n, why in c.blocked)
            + ")"
            for c in tainted
        ]
        # One line per platform: a second tolerations= line for the same platform would replace the first.
        fixes = [
            f"{c.platform}:tolerations="
            + ";".join(t.toleration().removeprefix("tolerations=") for t in c.taints)
            for c in tainted
        ]
        raise ClusterError(
            "no node can run the builder for "
            + ", ".join(str(c.platform) for c in tainted)
            + ":\n  "
            + "\n  ".join(lines),
            hint="tolerate the taint in driver-opts:\n    "
            + "\n    ".join(fixes)
            + "\n  or remove it (kubectl taint nodes NODE KEY-)",
        )
    if not qemu_fallback or not native:
        missing = ", ".join(str(c.platform) for c in failing)
        blocked = "".join(
            f"\n  {c.platform}: " + "; ".join(f"{n} {why}" for n, why in c.blocked)
            for c in failing
            if c.blocked
        )
        if all(c.blocked for c in failing):
            hint = (
                "the nodes exist but cannot take pods: make them Ready (check their kubelet) or "
                "uncordon them (kubectl uncordon NODE)"
            )
        else:
            hint = (
                f"add a node labelled {ARCH_LABEL}={failing[0].platform.arch}, drop {missing} from "
                "platforms, or set qemu-fallback: true to emulate it (slower)"
            )
        raise ClusterError(
            f"no Ready node serves {missing} natively; {describe_cluster(nodes)}{blocked}", hint=hint
        )
    # Emulate on amd64 when the cluster has it (usually its fastest CPUs), else on the first native platform.
    candidates = (*native, *serveable(nodes))
    host = next((p for p in candidates if p.arch == "amd64"), native[0])
    return native, {c.platform: host for c in failing}


@dataclass(frozen=True)
class Plan:
    """Preflight's answer: the platforms built natively, and those emulated (on which CPU)."""

    native: tuple[Platform, ...]
    emulated: Mapping[Platform, Platform]

    @property
    def platforms(self) -> tuple[Platform, ...]:
        return (*self.native, *self.emulated)


def platform_checks(
    state: ClusterState, inputs: Inputs, namespace: str, user: str
) -> tuple[PlatformCheck, ...]:
    """What each requested platform can run on, or ClusterError for what stops
    every platform: missing RBAC, a missing namespace, no labelled node."""
    raise_for_rbac(missing_permissions(state.allowed, needed(inputs.persistent_storage)), namespace, user)
    if state.namespace_exists is False:
        raise ClusterError(
            f"namespace {namespace!r} does not exist",
            hint=f"create it (kubectl create namespace {namespace}) or set the namespace input",
        )
    requested = inputs.platforms or serveable(state.nodes)
    if not requested:
        raise ClusterError(
            f"no Ready node with a {ARCH_LABEL} label; {describe_cluster(state.nodes)}",
            hint="label your nodes, or set platforms",
        )
    tolerations = {p: parse_tolerations(inputs.driver_opts_for(p).get("tolerations", "")) for p in requested}
    return check_platforms(state.nodes, requested, tolerations)


def emulation_warnings(emulated: Mapping[Platform, Platform]) -> list[str]:
    return [
        f"no node serves {platform} natively: it is EMULATED on {host} nodes with QEMU, "
        "typically 3 to 6 times slower. Add a native node to build it at full speed."
        for platform, host in emulated.items()
    ]


def needed(persistent: bool) -> tuple[Permission, ...]:
    return (*REQUIRED, *PERSISTENT) if persistent else REQUIRED


def missing_permissions(
    allowed: Mapping[Permission, bool], wanted: Sequence[Permission] = REQUIRED
) -> tuple[Permission, ...]:
    return tuple(p for p in wanted if not allowed.get(p, False))


def raise_for_rbac(missing: Sequence[Permission], namespace: str, user: str) -> None:
    if not missing:
        return
    lines = "\n  ".join(
        f"{p} ({'cluster-wide' if not p.namespaced else 'in ' + namespace}): {p.why}" for p in missing
    )
    raise ClusterError(
        f"{user or 'the kubeconfig user'} lacks permissions kubebuildx needs:\n  {lines}",
        hint=f"apply the Role and ClusterRole in {RBAC_MANIFEST} (edit its namespace and subject), "
        f"e.g. kubectl apply -f {RBAC_MANIFEST}"
        + (
            "; for a persistent builder, uncomment its statefulsets rule"
            if any(p in PERSISTENT for p in missing)
            else ""
        )
        + (
            f"; for a GitHub OIDC subject, bind that user to them as {OIDC_BINDINGS} does, or build "
            "from the repository and branch that are bound"
            if "authenticated you as github:" in user
            else ""
        ),
    )


def access_review(p: Permission, namespace: str) -> dict[str, Any]:
    attrs: dict[str, str] = {"verb": p.verb, "resource": p.resource, "group": p.group}
    if p.subresource:
        attrs["subresource"] = p.subresource
    if p.namespaced:
        attrs["namespace"] = namespace
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attrs},
    }


# ---- the edge: read the cluster --------------------------------------------------------------


def subject(username: str, context: str) -> str:
    """Who a message about RBAC names: the user the API server saw (SelfSubjectReview),
    which for an OIDC token is its mapped claim; else the kubeconfig's context."""
    if username:
        return f"the cluster authenticated you as {runner.one_line(username)}, which"
    return f"user {context!r}"


@dataclass(frozen=True)
class ClusterState:
    nodes: tuple[NodeInfo, ...]
    allowed: Mapping[Permission, bool]
    namespace_exists: bool | None  # None: not allowed to tell
    version: str
    username: str = ""  # as the API server authenticated us; empty when it would not say


def read_cluster(api: Any, server: str, namespace: str, persistent: bool = False) -> ClusterState:
    status, version = kube.request(api, "GET", "/version", server, "reading the server version")
    # Every authenticated user may ask who it is (system:basic-user, Kubernetes 1.28+).
    status, review = kube.request(
        api,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        server,
        "SelfSubjectReview",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    username = _obj(_obj(_obj(review).get("status")).get("userInfo")).get("username")
    username = username if status == 201 and isinstance(username, str) else ""
    allowed: dict[Permission, bool] = {}
    for perm in (*needed(persistent), *OPTIONAL):
        status, review = kube.request(
            api,
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            server,
            "SelfSubjectAccessReview",
            access_review(perm, namespace),
        )
        allowed[perm] = bool(status == 201 and _obj(_obj(review).get("status")).get("allowed") is True)
    nodes: tuple[NodeInfo, ...] = ()
    if allowed[LIST_NODES]:
        status, body = kube.request(api, "GET", "/api/v1/nodes", server, "listing nodes")
        if status == 200:  # an empty list may come as "items": null
            nodes = tuple(node_info(n) for n in _objs(_obj(body).get("items")))
    status, _ = kube.request(api, "GET", f"/api/v1/namespaces/{namespace}", server, "reading the namespace")
    exists = True if status == 200 else False if status == 404 else None
    return ClusterState(
        nodes, allowed, exists, runner.one_line(str(_obj(version).get("gitVersion") or "?")), username
    )


def check(connection: kube.Connection, inputs: Inputs) -> Plan:
    """Read the cluster, log what it has, and decide; raise ClusterError with the fix."""
    namespace = connection.namespace
    try:
        state = read_cluster(connection.api, connection.server, namespace, inputs.persistent_storage)
    except kube.Unauthorized:
        raise kube.unauthorized(connection.server, connection.credential, inputs.audience) from None
    runner.info(f"Kubernetes {state.version}; {describe_cluster(state.nodes)}")
    if state.username:
        runner.info(runner.one_line(f"authenticated as {state.username}"))
    checks = platform_checks(state, inputs, namespace, subject(state.username, connection.context))
    runner.info(table(checks))
    native, emulated = decide(checks, state.nodes, qemu_fallback=inputs.qemu_fallback)
    for warning in emulation_warnings(emulated):
        runner.warning(warning, title="Emulated platform")
    if not state.allowed.get(OPTIONAL[0]):
        runner.debug("cannot list events: diagnostics of pods that do not start will be shorter")
    return Plan(native, emulated)
