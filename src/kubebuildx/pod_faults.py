"""A builder pod lost during a build: which pod, on which node, and why.

buildx reaches each BuildKit through an exec stream into one of its
Deployment's pods (``pods/exec``, ``buildctl dial-stdio``). When that pod is
deleted, evicted, or its container restarts, BuildKit and the build's state go
with it, and buildx says only that the stream broke (``error reading from
server: EOF``, ``rpc error: code = Unavailable``). kubebuildx knows which pods
served each builder node when it booted (``boot.Booted.pods``); after a failed
build it lists them again and ``judge`` compares: a pod gone, with a new uid
(a StatefulSet recreates it under its name) or being deleted; a container that
restarted or is not ready, with its terminated reason and exit code and the
pod's events. Nothing changed: no fault, and the build's error stays as it is.

``judge`` is pure and tested with pod JSON fixtures (tests/fixtures/pods/);
``check`` is the edge, and it never raises: listing pods can be forbidden or
the API gone with the pod, and then the build's own error is all there is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubebuildx import kube, runner
from kubebuildx.errors import KubebuildxError
from kubebuildx.runner import one_line

# Event reasons that say why a pod went away or its container stopped.
_TELLING_EVENTS = frozenset(
    {
        "Evicted",
        "Preempted",
        "Preempting",
        "TaintManagerEviction",
        "Killing",
        "OOMKilling",
        "NodeNotReady",
        "BackOff",
        "Unhealthy",
        "Failed",
    }
)
MAX_EVENTS = 3  # per pod: the newest, the rest is kubectl describe's
MAX_EVENT_MESSAGE = 300  # characters of each event's message quoted; the rest is kubectl describe's


@dataclass(frozen=True)
class PodRef:
    """A builder pod as it was when the builder booted."""

    name: str
    uid: str
    node: str  # spec.nodeName
    restarts: int = 0  # of all its containers
    owner: str = "Deployment"  # what makes a replacement: Deployment (via a ReplicaSet) or StatefulSet


@dataclass(frozen=True)
class Fault:
    """What happened to the builder's pods, one line per pod, and what to do."""

    lines: tuple[str, ...]
    hint: str

    @property
    def message(self) -> str:
        return "\n".join(self.lines)


def _mapping(value: Any) -> Mapping[str, Any]:
    """An object of the API's JSON; anything else there reads as empty, never a crash."""
    return value if isinstance(value, Mapping) else {}


def _meta(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(pod.get("metadata"))


def _status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(pod.get("status"))


def _containers(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = _status(pod).get("containerStatuses")
    return [c for c in found if isinstance(c, Mapping)] if isinstance(found, list) else []


def _restarts(pod: Mapping[str, Any]) -> int:
    return sum(c.get("restartCount", 0) for c in _containers(pod) if isinstance(c.get("restartCount"), int))


def _owner(pod: Mapping[str, Any]) -> str:
    refs = _meta(pod).get("ownerReferences")
    kinds = [r.get("kind") for r in refs if isinstance(r, Mapping)] if isinstance(refs, list) else []
    return "StatefulSet" if "StatefulSet" in kinds else "Deployment"


def _text(value: Any) -> str:
    return one_line(value) if isinstance(value, str) else ""


def pod_ref(pod: Mapping[str, Any]) -> PodRef:
    spec = pod.get("spec")
    node = spec.get("nodeName", "") if isinstance(spec, Mapping) else ""
    return PodRef(
        _text(_meta(pod).get("name")),
        _text(_meta(pod).get("uid")),
        _text(node),
        _restarts(pod),
        _owner(pod),
    )


def serving(pods: Sequence[Mapping[str, Any]]) -> tuple[PodRef, ...]:
    """The pods that can serve a build: Running and not being deleted. buildx picks one of them."""
    return tuple(
        pod_ref(p)
        for p in pods
        if _status(p).get("phase") == "Running" and not _meta(p).get("deletionTimestamp")
    )


def _events_of(pod: PodRef, events: Sequence[Mapping[str, Any]]) -> list[str]:
    """``reason: message`` of the telling events about one pod, newest last, at most MAX_EVENTS.

    An event is the pod's when it names a Pod with the pod's uid: not one of an earlier pod of
    the same name (a StatefulSet's), nor another kind of object that shares the name."""
    out: list[str] = []
    for ev in events:
        obj = _mapping(ev.get("involvedObject"))
        if (
            obj.get("kind") != "Pod"
            or obj.get("name") != pod.name
            or not pod.uid
            or obj.get("uid") != pod.uid
        ):
            continue
        reason = _text(ev.get("reason"))
        if reason in _TELLING_EVENTS or ev.get("type") == "Warning":
            message = _text(ev.get("message"))
            if len(message) > MAX_EVENT_MESSAGE:
                message = message[: MAX_EVENT_MESSAGE - 3] + "..."
            line = f"{reason}: {message}".rstrip(": ")
            if line not in out:
                out.append(line)
    return out[-MAX_EVENTS:]


def _terminated(name: str, term: Any, last: bool) -> tuple[str, str]:
    """("buildkitd last terminated: OOMKilled, exit code 137", "OOMKilled"); empty when not terminated."""
    if not isinstance(term, Mapping) or not term:
        return "", ""
    why = _text(term.get("reason")) or "no reason given"
    code = term.get("exitCode")
    said = f"{name} {'last terminated' if last else 'terminated'}: {why}"
    return said + (f", exit code {code}" if isinstance(code, int) else ""), why


def _container_story(pod: Mapping[str, Any]) -> tuple[list[str], str, bool]:
    """What the pod's containers say, the first terminated reason, and whether one is not serving."""
    parts: list[str] = []
    reason = ""
    stopped = False
    for cs in _containers(pod):
        name = _text(cs.get("name")) or "?"
        state, last = _mapping(cs.get("state")), _mapping(cs.get("lastState"))
        said = len(parts)
        now, why_now = _terminated(name, state.get("terminated"), last=False)
        waiting = state.get("waiting")
        if now:
            parts.append(now)
        elif isinstance(waiting, Mapping) and waiting.get("reason"):
            parts.append(f"{name} is waiting: {_text(waiting.get('reason'))}")
        before, why_before = _terminated(name, last.get("terminated"), last=True)
        parts += [before] if before else []
        reason = reason or why_now or why_before
        if cs.get("ready") is False:
            stopped = True
            if len(parts) == said:
                parts.append(f"{name} is not ready")
    return parts, reason, stopped


def _pod_gone(pod: PodRef, namespace: str, replacements: Sequence[str], events: list[str]) -> str:
    if pod.owner == "StatefulSet" and pod.name in replacements:
        then = f"the StatefulSet recreated it under its name, uid {pod.uid[:8]}... is gone"
    elif replacements:
        then = f"the {pod.owner} replaced it with {', '.join(replacements)}"
    else:
        then = f"the {pod.owner} has made no replacement yet"
    line = (
        f"builder pod {namespace}/{pod.name} on node {pod.node or '?'} was deleted during the build "
        f"({then}); its BuildKit and the build's state went with it"
    )
    return line + (f"; events: {'; '.join(events)}" if events else "")


def judge(
    namespace: str,
    before: Mapping[str, Sequence[PodRef]],
    now: Mapping[str, Sequence[Mapping[str, Any]]],
    events: Sequence[Mapping[str, Any]] = (),
) -> Fault | None:
    """What happened to the pods that served each builder node (``before``) by the time
    the build failed (``now``: each node's pods as the API lists them). None when nothing did."""
    lines: list[str] = []
    deleted: list[PodRef] = []
    evicted: list[PodRef] = []
    restarted_pods: list[PodRef] = []
    oom = False
    for node, pods in before.items():
        listed = [p for p in now.get(node, ()) if isinstance(p, Mapping)]
        by_name = {_text(_meta(p).get("name")): p for p in listed}
        old_uids = {p.uid for p in pods}
        replacements = [
            _text(_meta(p).get("name"))
            for p in listed
            if _text(_meta(p).get("uid")) not in old_uids and not _meta(p).get("deletionTimestamp")
        ]
        for pod in pods:
            current = by_name.get(pod.name)
            told = _events_of(pod, events)
            if (
                current is None
                or _text(_meta(current).get("uid")) != pod.uid
                or _meta(current).get("deletionTimestamp")
            ):
                lines.append(_pod_gone(pod, namespace, replacements, told))
                deleted.append(pod)
                continue
            status = _status(current)
            if status.get("phase") == "Failed" or status.get("reason") == "Evicted":
                why = _text(status.get("reason")) or "Failed"
                said = _text(status.get("message")).rstrip(". ")
                lines.append(
                    f"builder pod {namespace}/{pod.name} on node {pod.node or '?'} was {why.lower()} "
                    f"during the build" + (f": {said}" if said else "") + "; its BuildKit stopped with it"
                )
                evicted.append(pod)
                continue
            restarted = _restarts(current) > pod.restarts
            story, reason, stopped = _container_story(current)
            if restarted or stopped:
                what = "restarted during the build" if restarted else "stopped serving during the build"
                line = f"builder pod {namespace}/{pod.name} on node {pod.node or '?'}: BuildKit {what}"
                line += f" ({'; '.join(story)})" if story else ""
                line += f"; events: {'; '.join(told)}" if told else ""
                lines.append(line + "; the build's state in it is lost")
                restarted_pods.append(pod)
                oom = oom or reason == "OOMKilled" or any(e.startswith("OOMKilling") for e in told)
    if not lines:
        return None
    return Fault(tuple(lines), _hint(namespace, deleted, evicted, restarted_pods, oom))


def _hint(
    namespace: str,
    deleted: Sequence[PodRef],
    evicted: Sequence[PodRef],
    restarted: Sequence[PodRef],
    oom: bool,
) -> str:
    if oom:
        return (
            "BuildKit ran out of memory: raise driver-opts limits.memory (or set requests.memory so the "
            "scheduler places it where there is room), then re-run the job"
        )
    lost = [*deleted, *evicted]
    if lost:
        nodes = sorted({p.node for p in lost if p.node})
        where = f"kubectl describe node {' '.join(nodes)}" if nodes else "kubectl describe node NODE"
        return (
            "re-run the job; if builder pods are being evicted or deleted, check the node's pressure and "
            f"taints ({where}) and the namespace's events (kubectl get events -n {namespace}); "
            "driver-opts replicas=2 leaves another pod to serve the next build"
        )
    pod = restarted[0].name if restarted else "POD"
    return f"read BuildKit's last words: kubectl logs -n {namespace} {pod} --previous; then re-run the job"


# ---- the edge -------------------------------------------------------------------------------


def check(connection: kube.Connection, before: Mapping[str, Sequence[PodRef]]) -> Fault | None:
    """List each builder node's pods again and judge; None when nothing changed or the
    pods cannot be listed (forbidden, the API unreachable): the build's error is then all we say."""
    if not before:
        return None
    try:
        now = {node: kube.list_pods(connection, node, strict=True) for node in before}
        events = kube.list_events(connection)  # optional: empty when listing events is not allowed
        return judge(connection.namespace, before, now, events)
    except KubebuildxError as exc:  # ours: its message names no secret
        runner.debug(runner.one_line(f"cannot tell whether a builder pod was lost: {exc}"))
        return None
    except Exception as exc:  # noqa: BLE001 - never let the diagnosis hide the build's own error
        runner.debug(f"cannot read the builder's pods after the build: {type(exc).__name__}")
        return None
