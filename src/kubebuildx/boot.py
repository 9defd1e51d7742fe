"""Booting the builder: ``buildx inspect --bootstrap``, the explanation when
its pods do not start, and the check that each node's BuildKit runs on the CPU
it was meant for.

Pure parsing and judging first (tested on captured outputs in
tests/fixtures/inspect/); the two edges, ``start`` and ``verify``, at the end.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kubebuildx import cmd, kube, runner
from kubebuildx import platforms as plat
from kubebuildx.builder import BuilderSpec, NodeSpec
from kubebuildx.errors import BootstrapError, InputError
from kubebuildx.inputs import parse_duration
from kubebuildx.platforms import Platform
from kubebuildx.pod_faults import PodRef, serving

DEFAULT_TIMEOUT = 120.0


@dataclass(frozen=True)
class InspectedNode:
    name: str
    endpoint: str = ""
    status: str = ""
    error: str = ""
    buildkit: str = ""
    platforms: tuple[str, ...] = ()  # as printed: configured ones end with "*"


@dataclass(frozen=True)
class Inspected:
    name: str
    driver: str
    error: str
    nodes: tuple[InspectedNode, ...]


_LINE = re.compile(r"^(?P<key>[A-Za-z][A-Za-z ]*?):\s*(?P<value>.*)$")


def parse_inspect(text: str) -> Inspected:
    """Parse ``buildx inspect`` (tabwriter text), as docker/actions-toolkit's
    Builder.parseInspect does: top-level keys, then one block per node."""
    top: dict[str, str] = {}
    nodes: list[dict[str, str]] = []
    in_nodes = False
    for raw in text.splitlines():
        if raw.startswith(("\t", " ")) or not raw.strip():
            continue  # labels, GC policy, features: nested detail we do not need
        match = _LINE.match(raw.strip())
        if not match:
            continue
        key, value = match["key"], match["value"].strip()
        if key == "Nodes":
            in_nodes = True
            continue
        if in_nodes:
            if key == "Name":
                nodes.append({})
            if nodes:
                nodes[-1][key] = value
        else:
            top[key] = value
    return Inspected(
        top.get("Name", ""),
        top.get("Driver", ""),
        top.get("Error", ""),
        tuple(
            InspectedNode(
                n.get("Name", ""),
                n.get("Endpoint", ""),
                n.get("Status", ""),
                n.get("Error", ""),
                n.get("BuildKit version", n.get("Buildkit", "")),
                tuple(p.strip() for p in n.get("Platforms", "").split(",") if p.strip()),
            )
            for n in nodes
        ),
    )


WORKERS_ARGV = ("buildctl", "debug", "workers", "--format", "{{json .}}")


def worker_platforms(text: str) -> tuple[Platform, ...]:
    """Platforms of ``buildctl debug workers --format '{{json .}}'``, in
    BuildKit's order: the worker's own CPU first, then what it can emulate."""
    try:
        workers = json.loads(text)
    except ValueError:
        return ()
    out: list[Platform] = []
    for worker in workers if isinstance(workers, list) else []:
        for p in worker.get("platforms") or []:
            with contextlib.suppress(InputError):  # an exotic platform tells us nothing
                out.append(
                    plat.parse(
                        "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)
                    )
                )
    return tuple(out)


def check_native(
    spec: BuilderSpec, reported: Mapping[str, tuple[Platform, ...]], pod_nodes: Mapping[str, str]
) -> None:
    """Each node's BuildKit must run on the CPU it was meant for.

    ``reported`` is what each node's BuildKit lists (its own CPU first), read
    from inside the pod. buildx cannot tell us: it merges the platforms we
    configured into what it shows. A node labelled arm64 whose BuildKit runs
    on amd64 is mislabelled: the build would be emulated, or fail.
    """
    problems = []
    for node in spec.nodes:
        want = node.emulated_on or node.platform
        seen = reported.get(node.name, ())
        if not seen or not seen[0].same_cpu(want):
            where = pod_nodes.get(node.name, "?")
            listed = ", ".join(map(str, seen)) or "nothing"
            problems.append(
                f"{node.name} (for {node.platform}) runs on Kubernetes node {where}, labelled {want.arch}, "
                f"but its BuildKit runs on {seen[0] if seen else '?'} (it lists {listed})"
            )
    if problems:
        raise BootstrapError(
            "a builder node does not run on the CPU its labels promise:\n  " + "\n  ".join(problems),
            hint="fix the node's kubernetes.io/arch label (kubectl label node NODE kubernetes.io/arch=ARCH "
            "--overwrite), or cordon it",
        )


def _owned_by(name: str, deployment: str) -> bool:
    """The Deployment itself, its ReplicaSets (<d>-<hash>) and their pods
    (<d>-<hash>-<5>); not another Deployment whose name merely starts the same."""
    return re.fullmatch(re.escape(deployment) + r"(-[a-z0-9]{6,10}(-[a-z0-9]{5})?)?", name) is not None


def diagnose(
    pods: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]], deployment: str
) -> list[str]:
    """Why a builder's pods are not ready, from the pods and their events."""
    reasons: list[str] = []
    if not pods:
        reasons.append(f"{deployment}: no pod was created")
    for pod in pods:
        name = pod.get("metadata", {}).get("name", "?")
        status = pod.get("status", {})
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                reasons.append(
                    f"{name}: {cond.get('reason', 'Unschedulable')}: {cond.get('message', '')}".rstrip()
                )
        for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") and waiting["reason"] != "ContainerCreating":
                reasons.append(
                    f"{name}: {cs.get('name')}: {waiting['reason']}: {waiting.get('message', '')}".rstrip(
                        ": "
                    )
                )
            term = (cs.get("lastState") or {}).get("terminated") or {}
            if term:
                reasons.append(
                    f"{name}: {cs.get('name')} exited {term.get('exitCode')} ({term.get('reason', '')})"
                )
    for ev in events:
        obj = ev.get("involvedObject", {}).get("name", "")
        if ev.get("type") == "Warning" and _owned_by(obj, deployment):
            line = f"{obj}: {ev.get('reason', '')}: {ev.get('message', '')}"
            if line not in reasons:
                reasons.append(line)
    return reasons


def hint_for(reasons: Sequence[str]) -> str:
    text = " ".join(reasons)
    # The scheduler names every node's reason; the most specific one wins.
    if "Insufficient" in text:
        return "lower driver-opts requests.cpu / requests.memory, or add capacity"
    if "taint" in text:
        return "tolerate the taint with driver-opts tolerations=..., or remove it from the node"
    if "node affinity/selector" in text or "didn't match" in text:
        return (
            "no node matches the node selector: check the nodes' kubernetes.io/arch labels "
            "and driver-opts nodeselector"
        )
    if "ImagePull" in text or "ErrImage" in text:
        return "the BuildKit image cannot be pulled: check driver-opts image and the nodes' registry access"
    if "CrashLoopBackOff" in text or "exited" in text:
        return "BuildKit crashes: it needs privileged pods (or rootless=true); read the pod's logs"
    if "forbidden" in text or "PodSecurity" in text:
        return (
            "the namespace's PodSecurity level forbids privileged pods: label it "
            "pod-security.kubernetes.io/enforce=privileged, or use driver-opts rootless=true"
        )
    return "read the pods' events: kubectl describe pods -n NAMESPACE -l app=NODE"


def timeout_of(spec: BuilderSpec) -> float:
    """Seconds to wait for the pods: the first node's driver-opts ``timeout``, else buildx's default."""
    for node in spec.nodes:
        value = dict(node.driver_opts).get("timeout")
        if value:
            return parse_duration(value) or 0.0  # parse_inputs checked it is a duration
    return DEFAULT_TIMEOUT


def failed(inspected: Inspected, returncode: int) -> bool:
    """buildx failed, or a node is not running (an empty status: buildx printed none)."""
    nodes = [n for n in inspected.nodes if n.error or n.status not in ("running", "")]
    return returncode != 0 or bool(inspected.error) or bool(nodes)


def explain_failure(
    builder: str,
    inspected: Inspected,
    output: str,
    reasons: Sequence[str],
    *,
    waited: float,
    timeout: float,
) -> BootstrapError:
    """The error for a builder that did not boot: buildx's own words first (it
    knows when the driver refused the spec itself), then why the pods are not
    ready (``diagnose``), and the most specific fix."""
    words = [n.error for n in inspected.nodes if n.error] or [inspected.error] * bool(inspected.error)
    words = words or [cmd.last_words(output, 8) or "buildx gave no reason"]
    gave_up = f"did not become ready within {timeout:.0f}s" if waited >= timeout else "could not start"
    return BootstrapError(
        f"builder {builder} {gave_up}:\n  buildx: " + "\n  ".join([*words, *reasons]),
        hint=hint_for([*words, *reasons]),
    )


# ---- the edges: boot, then ask each BuildKit -------------------------------------------------


@dataclass(frozen=True)
class Booted:
    """A builder whose every node runs, on the Kubernetes node named for it."""

    spec: BuilderSpec
    pod_nodes: Mapping[str, str]  # buildx node → Kubernetes node its pod runs on
    # buildx node → the pods that could serve it when it booted (name, uid, node, restarts):
    # after a failed build, pod_faults tells from them whether one was lost mid-build.
    pods: Mapping[str, tuple[PodRef, ...]] = field(default_factory=dict)


def start(connection: kube.Connection, spec: BuilderSpec, buildx: Sequence[str]) -> None:
    """``buildx inspect --bootstrap``; BootstrapError with the pods' story when it fails."""
    started = time.monotonic()
    timeout = timeout_of(spec)
    result = cmd.run(
        [*buildx, "inspect", "--bootstrap", "--timeout", f"{int(timeout)}s", spec.name],
        check=False,
        timeout=timeout + 30,
        error=BootstrapError,
        what="buildx inspect --bootstrap",
    )
    inspected = parse_inspect(result.stdout)
    if failed(inspected, result.returncode):
        waited = time.monotonic() - started
        reasons: list[str] = []
        try:
            events = kube.list_events(connection)
            for node in spec.nodes:
                reasons += diagnose(kube.list_pods(connection, node.name), events, node.name)
        except Exception as exc:  # noqa: BLE001 - the API may be the problem; keep buildx's words
            runner.debug(f"cannot read the builder's pods: {type(exc).__name__}")
        raise explain_failure(
            spec.name, inspected, result.stderr or result.stdout, reasons, waited=waited, timeout=timeout
        )
    runner.tool_output(result.stdout.strip())  # buildx inspect: with workflow commands off


def verify(connection: kube.Connection, spec: BuilderSpec) -> Booted:
    """Ask each node's BuildKit which CPU it runs on; BootstrapError for a node on the wrong one."""
    # One exec per node, side by side: each is a round trip through the API server.
    with ThreadPoolExecutor(max_workers=len(spec.nodes)) as pool:
        probes = list(pool.map(lambda node: _probe(connection, node), spec.nodes))
    pod_nodes = {node.name: where for node, (_, where, _, _) in zip(spec.nodes, probes, strict=True) if where}
    reported = {node.name: found for node, (_, _, found, _) in zip(spec.nodes, probes, strict=True)}
    pods = {node.name: refs for node, (_, _, _, refs) in zip(spec.nodes, probes, strict=True)}
    for node, (pod, where, found, _) in zip(spec.nodes, probes, strict=True):
        runner.info(  # pod and node names come from the API server
            runner.one_line(
                f"{node.name}: pod {pod or '?'} on {where or '?'}, BuildKit runs on "
                + (str(found[0]) if found else "?")
                + (f" (emulating {node.platform})" if node.emulated_on else "")
            )
        )
    check_native(spec, reported, pod_nodes)
    return Booted(spec, pod_nodes, pods)


def _probe(
    connection: kube.Connection, node: NodeSpec
) -> tuple[str, str, tuple[Platform, ...], tuple[PodRef, ...]]:
    """(pod, Kubernetes node, platforms its BuildKit lists, the pods that can serve) for one builder node."""
    pods = kube.list_pods(connection, node.name)
    running = [p for p in pods if p.get("status", {}).get("phase") == "Running"]
    if not running:
        return "", "", (), ()
    pod = running[0].get("metadata", {}).get("name", "")
    where = running[0].get("spec", {}).get("nodeName", "")
    try:
        text = kube.exec_in_pod(connection.api, connection.namespace, pod, list(WORKERS_ARGV))
    except Exception as exc:  # noqa: BLE001 - the client raises many kinds; all mean "cannot tell"
        raise BootstrapError(
            f"cannot ask BuildKit in pod {pod} which platforms it runs: {type(exc).__name__}",
            hint="the builder image must contain buildctl (moby/buildkit images do), and the user "
            "needs get and create on pods/exec (deploy/rbac.yaml)",
        ) from None
    return pod, where, worker_platforms(text), serving(pods)
