"""Preflight decisions over the API's JSON: nodes, taints, tolerations, RBAC.

tests/fixtures/nodes/mixed.json is a NodeList as the API returns it: a Ready
amd64 node, a cordoned one, two tainted arm64 nodes, an arm64 node that is not
Ready, an arm/v7 board with a soft taint, and a node without an arch label.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubebuildx import preflight
from kubebuildx.errors import ClusterError
from kubebuildx.inputs import parse_inputs, parse_tolerations
from kubebuildx.platforms import Platform
from kubebuildx.preflight import ClusterState, NodeInfo, Permission, Taint

ROOT = Path(__file__).parent.parent.parent
NODES = json.loads((ROOT / "tests" / "fixtures" / "nodes" / "mixed.json").read_text())["items"]
AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")
ARMV7 = Platform("linux", "arm", "v7")
RISCV = Platform("linux", "riscv64")
ARM_TAINT = Taint("arch", "arm64", "NoSchedule")
CI_TAINT = Taint("dedicated", "ci", "NoExecute")


def infos() -> tuple[NodeInfo, ...]:
    return tuple(preflight.node_info(n) for n in NODES)


def by_name() -> dict[str, NodeInfo]:
    return {n.name: n for n in infos()}


def test_node_info_from_node_json() -> None:
    nodes = by_name()
    assert nodes["amd-1"] == NodeInfo("amd-1", AMD64, ready=True, unschedulable=False, taints=())
    assert nodes["amd-2"].unschedulable
    assert nodes["amd-2"].taints == (Taint("node.kubernetes.io/unschedulable", "", "NoSchedule"),)
    assert nodes["arm-2"].taints == (ARM_TAINT, CI_TAINT)
    assert nodes["arm-3"].ready is False
    assert nodes["pi-1"].platform == ARMV7
    assert nodes["odd-1"].platform is None


@pytest.mark.parametrize(
    ("labels", "platform"),
    [
        ({"kubernetes.io/arch": "arm64"}, ARM64),  # os defaults to linux
        ({"kubernetes.io/arch": "arm", "kubernetes.io/os": "linux"}, ARMV7),
        ({"kubernetes.io/arch": "arm", "kubebuildx.dev/arch-variant": "v6"}, Platform("linux", "arm", "v6")),
        ({"kubernetes.io/arch": "amd64", "kubernetes.io/os": "windows"}, Platform("windows", "amd64")),
        ({"kubernetes.io/arch": "s390x"}, Platform("linux", "s390x")),
        ({"kubernetes.io/arch": "weird arch!"}, None),
        ({"kubernetes.io/arch": "amd64", "kubernetes.io/os": "plan9"}, None),
        ({}, None),
    ],
)
def test_node_platform_from_labels(labels: dict[str, str], platform: Platform | None) -> None:
    assert preflight.node_info({"metadata": {"name": "n", "labels": labels}}).platform == platform


def test_node_info_of_a_sparse_node() -> None:
    info = preflight.node_info({})
    assert info == NodeInfo("?", None, ready=False, unschedulable=False, taints=())


# core/v1 Toleration.ToleratesTaint
@pytest.mark.parametrize(
    ("toleration", "taint", "tolerated"),
    [
        ({"key": "arch", "operator": "Exists"}, ARM_TAINT, True),
        ({"key": "arch", "operator": "Exists", "effect": "NoSchedule"}, ARM_TAINT, True),
        ({"key": "arch", "operator": "Exists", "effect": "NoExecute"}, ARM_TAINT, False),
        ({"key": "other", "operator": "Exists"}, ARM_TAINT, False),
        ({"operator": "Exists"}, ARM_TAINT, True),  # empty key with Exists tolerates everything
        ({"operator": "Exists", "effect": "NoExecute"}, ARM_TAINT, False),
        ({"key": "arch", "operator": "Equal", "value": "arm64"}, ARM_TAINT, True),
        ({"key": "arch", "value": "arm64"}, ARM_TAINT, True),  # Equal is the default operator
        ({"key": "arch", "operator": "Equal", "value": "amd64"}, ARM_TAINT, False),
        ({"key": "arch", "operator": "Equal"}, ARM_TAINT, False),
        ({"key": "gpu", "operator": "Equal"}, Taint("gpu", "", "NoSchedule"), True),
        ({"key": "arch", "operator": "Equal", "value": "arm64", "effect": "NoSchedule"}, ARM_TAINT, True),
        ({"key": "arch", "operator": "Equal", "value": "arm64", "effect": "NoExecute"}, ARM_TAINT, False),
        ({"key": "arch", "operator": "Sometimes"}, ARM_TAINT, False),
    ],
)
def test_tolerates(toleration: dict[str, str], taint: Taint, tolerated: bool) -> None:
    assert preflight.tolerates([toleration], taint) is tolerated


def test_tolerates_any_of_several() -> None:
    tols = parse_tolerations("key=x,operator=Exists;key=arch,operator=Exists")
    assert preflight.tolerates(tols, ARM_TAINT)
    assert not preflight.tolerates((), ARM_TAINT)


@pytest.mark.parametrize(
    ("taint", "line"),
    [
        (ARM_TAINT, "tolerations=key=arch,operator=Equal,value=arm64,effect=NoSchedule"),
        (Taint("gpu", "", "NoExecute"), "tolerations=key=gpu,operator=Exists,effect=NoExecute"),
    ],
)
def test_toleration_line(taint: Taint, line: str) -> None:
    assert taint.toleration() == line
    # the line is one buildx accepts and that tolerates the taint
    opts = parse_inputs({"driver-opts": line}).driver_opts_for(AMD64)
    assert preflight.tolerates(parse_tolerations(opts["tolerations"]), taint)


@pytest.mark.parametrize(
    ("taint", "text"),
    [(ARM_TAINT, "arch=arm64:NoSchedule"), (Taint("gpu", "", "NoExecute"), "gpu:NoExecute")],
)
def test_taint_str(taint: Taint, text: str) -> None:
    assert str(taint) == text


# ---- platforms against nodes ---------------------------------------------------------------


def test_check_platforms() -> None:
    checks = {c.platform: c for c in preflight.check_platforms(infos(), (AMD64, ARM64, ARMV7, RISCV), {})}
    assert checks[AMD64].native == ("amd-1",)
    assert checks[AMD64].blocked == (("amd-2", "cordoned (unschedulable)"),)
    assert checks[AMD64].ok
    assert checks[ARM64].native == ()
    assert checks[ARM64].blocked == (
        ("arm-1", "tainted arch=arm64:NoSchedule"),
        ("arm-2", "tainted arch=arm64:NoSchedule, dedicated=ci:NoExecute"),
        ("arm-3", "not Ready"),
    )
    assert checks[ARM64].taints == (ARM_TAINT, CI_TAINT)
    assert not checks[ARM64].ok
    assert checks[ARMV7].native == ("pi-1",)  # PreferNoSchedule does not keep pods off
    assert checks[RISCV] == preflight.PlatformCheck(RISCV, (), (), ())


def test_tolerations_per_platform_open_tainted_nodes() -> None:
    tols = {ARM64: parse_tolerations("key=arch,operator=Exists")}
    arm = preflight.check_platforms(infos(), (ARM64,), tols)[0]
    assert arm.native == ("arm-1",)  # arm-2 is still kept off by dedicated=ci
    assert arm.taints == (CI_TAINT,)
    # another platform's tolerations do not count
    arm = preflight.check_platforms(infos(), (ARM64,), {AMD64: tols[ARM64]})[0]
    assert arm.native == ()


def test_serveable_is_every_ready_schedulable_platform() -> None:
    assert preflight.serveable(infos()) == (AMD64, ARMV7, ARM64)
    assert preflight.serveable(()) == ()


def test_describe_cluster() -> None:
    assert preflight.describe_cluster(infos()) == (
        "the cluster has linux/amd64: amd-1, amd-2; linux/arm/v7: pi-1; linux/arm64: arm-1, arm-2, arm-3; "
        "unlabelled: odd-1"
    )
    assert preflight.describe_cluster(()) == "the cluster has no nodes"


def test_table() -> None:
    checks = preflight.check_platforms(infos(), (AMD64, ARMV7), {})
    assert preflight.table(checks).splitlines() == [
        "PLATFORM      NATIVE NODES  PROBLEMS",
        "linux/amd64   amd-1         amd-2: cordoned (unschedulable)",
        "linux/arm/v7  pi-1          -",
    ]


def test_decide_all_native() -> None:
    checks = preflight.check_platforms(infos(), (AMD64, ARMV7), {})
    assert preflight.decide(checks, infos(), qemu_fallback=False) == ((AMD64, ARMV7), {})


def test_decide_missing_platform_lists_what_the_cluster_has() -> None:
    checks = preflight.check_platforms(infos(), (AMD64, RISCV), {})
    with pytest.raises(ClusterError) as exc:
        preflight.decide(checks, infos(), qemu_fallback=False)
    message = str(exc.value)
    assert "no Ready node serves linux/riscv64 natively" in message
    assert "linux/amd64: amd-1, amd-2" in message
    assert "linux/arm64: arm-1, arm-2, arm-3" in message
    assert "kubernetes.io/arch=riscv64" in message
    assert "qemu-fallback" in message


def test_decide_nodes_that_exist_but_are_down() -> None:
    nodes = tuple(n for n in infos() if n.name in {"arm-3", "amd-1"})
    checks = preflight.check_platforms(nodes, (ARM64,), {})
    with pytest.raises(ClusterError) as exc:
        preflight.decide(checks, nodes, qemu_fallback=False)
    assert "arm-3 not Ready" in str(exc.value)
    assert "uncordon" in str(exc.value)


@pytest.mark.parametrize("fallback", [False, True])  # a native node exists: never emulate, tolerate
def test_decide_tainted_gives_the_exact_toleration_lines(fallback: bool) -> None:
    nodes = tuple(n for n in infos() if n.name in {"amd-1", "arm-1"})
    checks = preflight.check_platforms(nodes, (AMD64, ARM64), {})
    with pytest.raises(ClusterError) as exc:
        preflight.decide(checks, nodes, qemu_fallback=fallback)
    message = str(exc.value)
    assert "every arm64 node is tainted (arm-1: tainted arch=arm64:NoSchedule)" in message
    assert "linux/arm64:tolerations=key=arch,operator=Equal,value=arm64,effect=NoSchedule" in message


def _fix_lines(message: str) -> list[str]:
    return [line.strip() for line in message.splitlines() if ":tolerations=" in line]


def test_the_suggested_driver_opts_open_the_tainted_nodes() -> None:
    """Pasting the hint into driver-opts must make the platform schedulable, even with two taints."""
    checks = preflight.check_platforms(infos(), (AMD64, ARM64), {})
    with pytest.raises(ClusterError) as exc:
        preflight.decide(checks, infos(), qemu_fallback=False)
    lines = _fix_lines(str(exc.value))
    assert lines
    inputs = parse_inputs({"platforms": "linux/amd64,linux/arm64", "driver-opts": "\n".join(lines)})
    tols = {p: parse_tolerations(inputs.driver_opts_for(p).get("tolerations", "")) for p in (AMD64, ARM64)}
    after = preflight.check_platforms(infos(), (AMD64, ARM64), tols)
    assert after[1].native == ("arm-1", "arm-2")


def test_decide_qemu_fallback_emulates_on_a_native_platform() -> None:
    checks = preflight.check_platforms(infos(), (ARMV7, RISCV), {})
    native, emulated = preflight.decide(checks, infos(), qemu_fallback=True)
    assert native == (ARMV7,)
    # amd64 nodes are preferred to emulate on when the cluster has them
    assert emulated == {RISCV: AMD64}


def test_decide_qemu_fallback_without_amd64() -> None:
    nodes = tuple(n for n in infos() if n.name == "pi-1")
    checks = preflight.check_platforms(nodes, (ARMV7, RISCV), {})
    assert preflight.decide(checks, nodes, qemu_fallback=True) == ((ARMV7,), {RISCV: ARMV7})


def test_decide_qemu_fallback_needs_one_native_platform() -> None:
    checks = preflight.check_platforms(infos(), (RISCV,), {})
    with pytest.raises(ClusterError, match="riscv64"):
        preflight.decide(checks, infos(), qemu_fallback=True)


# ---- RBAC ----------------------------------------------------------------------------------


def test_missing_permissions() -> None:
    allowed = dict.fromkeys(preflight.REQUIRED, True)
    assert preflight.missing_permissions(allowed) == ()
    allowed[preflight.REQUIRED[1]] = False
    del allowed[preflight.REQUIRED[-1]]
    assert preflight.missing_permissions(allowed) == (preflight.REQUIRED[1], preflight.REQUIRED[-1])
    assert preflight.missing_permissions({}) == preflight.REQUIRED


def test_optional_permissions_are_not_missing() -> None:
    allowed = {**dict.fromkeys(preflight.REQUIRED, True), **dict.fromkeys(preflight.OPTIONAL, False)}
    assert preflight.missing_permissions(allowed) == ()


def test_raise_for_rbac_names_every_missing_verb_and_the_manifest() -> None:
    missing = (
        Permission("create", "deployments", "apps", why="buildx boots the builder"),
        Permission("create", "pods", subresource="exec", why="buildx talks to BuildKit through exec"),
        Permission("list", "nodes", namespaced=False, why="kubebuildx finds the nodes"),
    )
    with pytest.raises(ClusterError) as exc:
        preflight.raise_for_rbac(missing, "buildkit", "user 'ci'")
    message = str(exc.value)
    assert message.startswith("user 'ci' lacks permissions kubebuildx needs:")
    assert "create deployments.apps (in buildkit): buildx boots the builder" in message
    assert "create pods/exec (in buildkit)" in message
    assert "list nodes (cluster-wide)" in message
    assert "kubectl apply -f deploy/rbac.yaml" in message


def test_raise_for_rbac_with_nothing_missing() -> None:
    preflight.raise_for_rbac((), "buildkit", "")


@pytest.mark.parametrize(
    ("perm", "attrs"),
    [
        (
            Permission("create", "deployments", "apps"),
            {"verb": "create", "resource": "deployments", "group": "apps", "namespace": "ns"},
        ),
        (
            Permission("get", "pods", subresource="exec"),
            {"verb": "get", "resource": "pods", "group": "", "subresource": "exec", "namespace": "ns"},
        ),
        (Permission("list", "nodes", namespaced=False), {"verb": "list", "resource": "nodes", "group": ""}),
    ],
)
def test_access_review_body(perm: Permission, attrs: dict[str, str]) -> None:
    assert preflight.access_review(perm, "ns") == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attrs},
    }


# ---- deploy/rbac.yaml ----------------------------------------------------------------------


def _granted() -> dict[tuple[str, str, str, str, bool], str]:
    """(verb, group, resource, subresource, namespaced) → the Role or ClusterRole that grants it."""
    out: dict[tuple[str, str, str, str, bool], str] = {}
    docs: list[dict[str, Any]] = [
        d for d in yaml.safe_load_all((ROOT / "deploy" / "rbac.yaml").read_text()) if d
    ]
    for d in docs:
        if d["kind"] not in {"Role", "ClusterRole"}:
            continue
        for rule in d.get("rules") or []:
            for group in rule.get("apiGroups") or [""]:
                for resource in rule["resources"]:
                    res, _, sub = resource.partition("/")
                    for verb in rule["verbs"]:
                        out[(verb, group, res, sub, d["kind"] == "Role")] = d["metadata"]["name"]
    return out


def _key(p: Permission) -> tuple[str, str, str, str, bool]:
    return (p.verb, p.group, p.resource, p.subresource, p.namespaced)


def test_rbac_manifest_binds_its_roles_to_one_subject() -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "rbac.yaml").read_text()) if d]
    roles = {(d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] in {"Role", "ClusterRole"}}
    bound = {
        (d["roleRef"]["kind"], d["roleRef"]["name"])
        for d in docs
        if d["kind"] in {"RoleBinding", "ClusterRoleBinding"}
    }
    assert roles == bound
    subjects = {
        (s["kind"], s["name"], s.get("namespace"))
        for d in docs
        if d["kind"] in {"RoleBinding", "ClusterRoleBinding"}
        for s in d["subjects"]
    }
    assert len(subjects) == 1


def test_rbac_manifest_grants_every_required_permission() -> None:
    granted = _granted()
    missing = [str(p) for p in preflight.REQUIRED if _key(p) not in granted]
    assert missing == []


def test_rbac_manifest_grants_nothing_beyond_what_kubebuildx_checks() -> None:
    known = {_key(p) for p in (*preflight.REQUIRED, *preflight.OPTIONAL)}
    extra = sorted(
        f"{v} {r}{'/' + s if s else ''} ({role})"
        for (v, g, r, s, ns), role in _granted().items()
        if (v, g, r, s, ns) not in known
    )
    assert extra == []


def test_a_persistent_builder_needs_statefulsets_and_says_where_to_grant_them() -> None:
    inputs = parse_inputs({"driver-opts": "linux/arm64:persistent-volume-claim.requests.storage=20Gi",
                           "platforms": "linux/arm64"})  # fmt: skip
    assert inputs.persistent_storage and not parse_inputs({}).persistent_storage
    wanted = preflight.needed(inputs.persistent_storage)
    allowed = {p: True for p in preflight.REQUIRED}
    missing = preflight.missing_permissions(allowed, wanted)
    assert [str(p) for p in missing] == [
        "get statefulsets.apps", "create statefulsets.apps", "delete statefulsets.apps"
    ]  # fmt: skip
    with pytest.raises(ClusterError) as exc:
        preflight.raise_for_rbac(missing, "buildkit", "user 'ci'")
    assert "uncomment its statefulsets rule" in str(exc.value)


# ---- the verdicts: what stops every platform, as ClusterError (exit 4) -------------------------


def state(
    nodes: tuple[NodeInfo, ...] | None = None,
    *,
    namespace_exists: bool | None = True,
    denied: tuple[Permission, ...] = (),
) -> ClusterState:
    allowed = {p: p not in denied for p in (*preflight.REQUIRED, *preflight.PERSISTENT, *preflight.OPTIONAL)}
    return ClusterState(infos() if nodes is None else nodes, allowed, namespace_exists, "v1.36.3")


@pytest.mark.parametrize(
    ("cluster", "raw", "message", "fix"),
    [
        (state(namespace_exists=False), {}, "namespace 'ci' does not exist", "kubectl create namespace ci"),
        (state(()), {}, "no Ready node with a kubernetes.io/arch label; the cluster has no nodes", "label"),
        (
            state(tuple(n for n in infos() if n.platform is None)),
            {},
            "no Ready node with a kubernetes.io/arch label; the cluster has unlabelled: ",
            "set platforms",
        ),
        (
            state(denied=(preflight.LIST_NODES,)),
            {"platforms": "linux/amd64"},
            "user 'ctx' lacks permissions kubebuildx needs:\n  list nodes (cluster-wide)",
            "deploy/rbac.yaml",
        ),
    ],
)
def test_platform_checks_verdicts_are_cluster_errors(
    cluster: ClusterState, raw: dict[str, str], message: str, fix: str
) -> None:
    with pytest.raises(ClusterError) as exc:
        preflight.platform_checks(cluster, parse_inputs(raw), "ci", "user 'ctx'")
    assert exc.value.exit_code == 4
    assert exc.value.message.startswith(message)
    assert fix in (exc.value.hint or "")


def test_platform_checks_rbac_comes_before_the_namespace() -> None:
    """Without the rights to read it, a namespace cannot be told missing: RBAC is the fix to give first."""
    with pytest.raises(ClusterError, match="lacks permissions"):
        preflight.platform_checks(
            state(namespace_exists=False, denied=(preflight.REQUIRED[0],)), parse_inputs({}), "ci", ""
        )


def test_platform_checks_without_platforms_checks_every_served_one() -> None:
    checks = preflight.platform_checks(state(), parse_inputs({}), "ci", "")
    assert [c.platform for c in checks] == list(preflight.serveable(infos()))


def test_platform_checks_apply_each_platforms_tolerations() -> None:
    raw = {
        "platforms": "linux/amd64,linux/arm64",
        "driver-opts": "linux/arm64:tolerations=key=arch,operator=Exists",
    }
    checks = preflight.platform_checks(state(), parse_inputs(raw), "ci", "")
    assert checks == preflight.check_platforms(
        infos(), (AMD64, ARM64), {AMD64: (), ARM64: ({"key": "arch", "operator": "Exists"},)}
    )
    assert checks[1].native == ("arm-1",)


def test_a_missing_namespace_with_no_right_to_read_it_is_not_an_error() -> None:
    checks = preflight.platform_checks(
        state(namespace_exists=None), parse_inputs({"platforms": "linux/amd64"}), "ci", ""
    )
    assert [c.platform for c in checks] == [AMD64]


def test_emulation_warnings_name_the_platform_and_the_host() -> None:
    assert preflight.emulation_warnings({}) == []
    (warning,) = preflight.emulation_warnings({RISCV: AMD64})
    assert warning.startswith("no node serves linux/riscv64 natively: it is EMULATED on linux/amd64 nodes")
    assert "Add a native node" in warning


def test_plan_lists_native_platforms_first() -> None:
    plan = preflight.Plan((ARMV7,), {RISCV: AMD64})
    assert plan.platforms == (ARMV7, RISCV)


# ---- what the API sends may be empty or odd: never a crash ---------------------------------------


@pytest.mark.parametrize(
    "nodes_body",
    [{"items": None}, {"items": []}, {}, None, [], {"items": [None, 3, {"metadata": None}]}],
    ids=["items null", "items empty", "no items", "null", "a list", "odd items"],
)
def test_read_cluster_takes_an_empty_or_odd_node_list(
    nodes_body: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    def request(
        api: object, method: str, path: str, server: str, what: str, body: object = None
    ) -> tuple[int, object]:
        if path == "/version":
            return 200, ["not", "an", "object"]
        if path.endswith("selfsubjectaccessreviews"):
            return 201, {"status": {"allowed": True}} if "nodes" in str(body) else {"status": None}
        if path == "/api/v1/nodes":
            return 200, nodes_body
        return 200, {}

    monkeypatch.setattr(preflight.kube, "request", request)
    state = preflight.read_cluster(None, "https://10.0.0.1:6443", "buildkit")
    assert state.version == "?"
    assert all(n.platform is None for n in state.nodes)
    assert preflight.serveable(state.nodes) == ()


@pytest.mark.parametrize(
    "node",
    [
        {"metadata": None, "spec": None, "status": None},
        {"metadata": {"labels": None, "name": 3}, "spec": {"taints": None}, "status": {"conditions": None}},
        {"metadata": {"labels": {preflight.ARCH_LABEL: "../.."}}, "spec": {"taints": [None, {"key": None}]}},
    ],
)
def test_node_info_of_odd_nodes(node: dict[str, object]) -> None:
    info = preflight.node_info(node)
    assert info.platform is None and not info.ready
