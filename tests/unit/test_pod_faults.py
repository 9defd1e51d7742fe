"""A builder pod lost during a build: the pods at boot against the pods when the build failed.

tests/fixtures/pods/*.json are core/v1 Pods and an EventList written in the
shape the API server returns them (the fields kubebuildx reads, and the ones
around them): a builder pod running, being deleted, replaced, restarted after
an OOM kill, in CrashLoopBackOff, evicted by the kubelet, and a StatefulSet's
pod recreated under its own name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubebuildx import build, kube, pod_faults
from kubebuildx.errors import ClusterError
from kubebuildx.pod_faults import PodRef

FIXTURES = Path(__file__).parent.parent / "fixtures" / "pods"
ARM = "kbx-demo-linux-arm64"
AMD = "kbx-demo-linux-amd64"
POD = "kbx-demo-linux-arm64-7c9f8d6b5d-x2x7q"
NEW = "kbx-demo-linux-arm64-7c9f8d6b5d-h8k2m"


def pod(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def events(name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads((FIXTURES / f"events-{name}.json").read_text())["items"]
    return items


def booted(*names: str) -> dict[str, tuple[PodRef, ...]]:
    """What boot.verify records: each node's serving pods, from the same fixtures."""
    out: dict[str, list[PodRef]] = {}
    for name in names:
        p = pod(name)
        out.setdefault(p["metadata"]["labels"]["app"], []).extend(pod_faults.serving([p]))
    return {node: tuple(refs) for node, refs in out.items()}


def test_pod_ref_records_name_uid_node_restarts_and_owner() -> None:
    assert pod_faults.pod_ref(pod("running")) == PodRef(
        POD, "0f4b6a3e-8c1d-4d2e-9a57-3b8e5c1f7a01", "kwok-arm64", 0, "Deployment"
    )
    assert pod_faults.pod_ref(pod("oom-restarted")).restarts == 1
    assert pod_faults.pod_ref(pod("statefulset")).owner == "StatefulSet"


@pytest.mark.parametrize(
    ("fixture", "serves"),
    [("running", True), ("deleting", False), ("replacement", False), ("evicted", False), ("crashloop", True)],
)
def test_serving_pods_are_running_and_not_being_deleted(fixture: str, serves: bool) -> None:
    assert bool(pod_faults.serving([pod(fixture)])) is serves


DELETED = (
    f"builder pod buildkit/{POD} on node kwok-arm64 was deleted during the build "
    f"(the Deployment replaced it with {NEW}); its BuildKit and the build's state went with it"
)


@pytest.mark.parametrize(
    ("case", "before", "now", "evs", "lines", "hint"),
    [
        ("nothing changed", ("running",), {ARM: ["running"]}, "deleted", None, ""),
        (
            "deleted and replaced",
            ("running",),
            {ARM: ["replacement"]},
            "",
            [DELETED],
            "kubectl describe node kwok-arm64",
        ),
        (
            "deleted, with the kubelet's event",
            ("running",),
            {ARM: ["replacement"]},
            "deleted",
            [DELETED + "; events: Killing: Stopping container buildkitd"],
            "re-run the job",
        ),
        (
            "being deleted, the replacement already listed",
            ("running",),
            {ARM: ["deleting", "replacement"]},
            "",
            [DELETED],
            "replicas=2",
        ),
        (
            "deleted, no replacement yet",
            ("running",),
            {ARM: []},
            "",
            [
                f"builder pod buildkit/{POD} on node kwok-arm64 was deleted during the build (the "
                "Deployment has made no replacement yet); its BuildKit and the build's state went with it"
            ],
            "re-run the job",
        ),
        (
            "a StatefulSet's pod recreated under its name",
            ("statefulset",),
            {ARM: ["statefulset-recreated"]},
            "",
            [
                "builder pod buildkit/kbx-demo-linux-arm64-0 on node kwok-arm64 was deleted during the "
                "build (the StatefulSet recreated it under its name, uid 2a9c0e61... is gone); its "
                "BuildKit and the build's state went with it"
            ],
            "re-run the job",
        ),
        (
            "OOM killed and restarted",
            ("running",),
            {ARM: ["oom-restarted"]},
            "",
            [
                f"builder pod buildkit/{POD} on node kwok-arm64: BuildKit restarted during the build "
                "(buildkitd last terminated: OOMKilled, exit code 137); the build's state in it is lost"
            ],
            "limits.memory",
        ),
        (
            "crash loop",
            ("running",),
            {ARM: ["crashloop"]},
            "crashloop",
            [
                f"builder pod buildkit/{POD} on node kwok-arm64: BuildKit restarted during the build "
                "(buildkitd is waiting: CrashLoopBackOff; buildkitd last terminated: Error, exit code 1); "
                "events: "
                f"BackOff: Back-off restarting failed container buildkitd in pod {POD}; "
                "the build's state in it is lost"
            ],
            f"kubectl logs -n buildkit {POD} --previous",
        ),
        (
            "evicted by the kubelet",
            ("running",),
            {ARM: ["evicted", "replacement"]},
            "",
            [
                f"builder pod buildkit/{POD} on node kwok-arm64 was evicted during the build: The node "
                "was low on resource: memory. Threshold quantity: 100Mi, available: 51200Ki. Container "
                "buildkitd was using 3145728Ki, request is 0, has larger consumption of memory; its "
                "BuildKit stopped with it"
            ],
            "kubectl describe node kwok-arm64",
        ),
        (
            "only the arm64 pod of two",
            ("amd64-running", "running"),
            {AMD: ["amd64-running"], ARM: ["replacement"]},
            "",
            [DELETED],
            "kubectl describe node kwok-arm64",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else "",
)
def test_judge(
    case: str,
    before: tuple[str, ...],
    now: dict[str, list[str]],
    evs: str,
    lines: list[str] | None,
    hint: str,
) -> None:
    fault = pod_faults.judge(
        "buildkit",
        booted(*before),
        {node: [pod(n) for n in names] for node, names in now.items()},
        events(evs) if evs else [],
    )
    if lines is None:
        assert fault is None
        return
    assert fault is not None
    assert list(fault.lines) == lines
    assert hint in fault.hint


def test_a_pod_replaced_on_another_replica_names_every_replacement() -> None:
    """replicas=2: the lost replica is named, the one that stayed is not a replacement."""
    other = pod("amd64-running")  # any second pod of the node will do: only names and uids count
    other["metadata"].update(name="kbx-demo-linux-arm64-7c9f8d6b5d-zz9zz", uid="other-uid")
    before = {ARM: (pod_faults.pod_ref(pod("running")), pod_faults.pod_ref(other))}
    fault = pod_faults.judge("buildkit", before, {ARM: [other, pod("replacement")]})
    assert fault is not None
    assert fault.lines == (DELETED,)


def test_hostile_text_from_the_cluster_stays_on_one_line() -> None:
    evicted = pod("evicted")
    evicted["status"]["message"] = "low on memory\n::error::forged"
    fault = pod_faults.judge("buildkit", booted("running"), {ARM: [evicted]})
    assert fault is not None
    assert all("\n" not in line for line in fault.lines)
    assert "low on memory\\n::error::forged" in fault.lines[0]  # escaped, never a line of its own


@pytest.mark.parametrize(
    "broken",
    [
        {"metadata": "x"},
        {"status": {"containerStatuses": "x"}},
        {"status": {"containerStatuses": [1, None]}},
        7,
    ],
)
def test_malformed_pods_never_crash(broken: Any) -> None:
    fault = pod_faults.judge("buildkit", booted("running"), {ARM: [broken]})
    assert fault is not None and "was deleted during the build" in fault.message


# ---- the edge: listing can fail, and then the build's own error is all that is said ----------


class Conn:
    namespace = "buildkit"
    server = "https://127.0.0.1:6443"
    api = None


def test_check_judges_what_the_api_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, bool]] = []

    def list_pods(connection: Any, app: str, *, strict: bool = False) -> list[dict[str, Any]]:
        asked.append((app, strict))
        return [pod("replacement")]

    monkeypatch.setattr(kube, "list_pods", list_pods)
    monkeypatch.setattr(kube, "list_events", lambda connection: events("deleted"))
    fault = pod_faults.check(Conn(), booted("running"))  # type: ignore[arg-type]
    assert asked == [(ARM, True)], "strict: a forbidden list must not read as 'every pod is gone'"
    assert fault is not None and fault.lines[0].startswith(DELETED)


@pytest.mark.parametrize(
    "failure",
    [
        ClusterError("listing builder pods failed with HTTP 403 from https://127.0.0.1:6443"),
        ClusterError("the API server at https://127.0.0.1:6443 is unreachable (MaxRetryError)"),
        RuntimeError("anything else"),
    ],
    ids=["forbidden", "unreachable", "a bug"],
)
def test_check_says_nothing_when_the_pods_cannot_be_listed(
    monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    def list_pods(connection: Any, app: str, *, strict: bool = False) -> list[dict[str, Any]]:
        raise failure

    monkeypatch.setattr(kube, "list_pods", list_pods)
    assert pod_faults.check(Conn(), booted("running")) is None  # type: ignore[arg-type]


def test_check_without_recorded_pods_asks_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "list_pods", lambda *a, **k: pytest.fail("no pods were recorded"))
    assert pod_faults.check(Conn(), {}) is None  # type: ignore[arg-type]


def test_strict_listing_raises_on_a_forbidden_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "request", lambda *a, **k: (403, {"kind": "Status", "reason": "Forbidden"}))
    assert kube.list_pods(Conn(), ARM) == []  # type: ignore[arg-type]
    with pytest.raises(ClusterError, match="HTTP 403"):
        kube.list_pods(Conn(), ARM, strict=True)  # type: ignore[arg-type]


# ---- the build's error: the pod's story first, buildx's own words kept -----------------------


def test_with_fault_puts_the_pod_first_and_keeps_the_build_error() -> None:
    from test_summary import result  # the summary's build result, failed

    failed = result(error="ERROR: failed to solve: error reading from server: EOF")
    fault = pod_faults.Fault((DELETED,), "re-run the job")
    got = build.with_fault(failed, fault)
    assert got.error.splitlines() == [DELETED, "ERROR: failed to solve: error reading from server: EOF"]
    assert got.hint == "re-run the job"
    error = build.failure(got, logged_in=False)
    assert error is not None and error.hint == "re-run the job" and DELETED in error.message
    assert build.with_fault(failed, None) is failed
    assert build.with_fault(result(), fault) == result(), "a build that succeeded has no fault"


def _crashloop_event(**involved: str) -> dict[str, Any]:
    event = events("crashloop")[-1]
    assert event["reason"] == "BackOff"
    event["involvedObject"] = {**event["involvedObject"], **involved}
    return event


@pytest.mark.parametrize(
    "involved",
    [
        {"uid": "an-earlier-pod-of-the-same-name"},  # a StatefulSet's pod before it was recreated
        {"uid": ""},
        {"kind": "PersistentVolumeClaim"},  # another kind of object with the pod's name
    ],
    ids=["another uid", "no uid", "not a Pod"],
)
def test_only_the_pods_own_events_are_quoted(involved: dict[str, str]) -> None:
    fault = pod_faults.judge(
        "buildkit", booted("running"), {ARM: [pod("crashloop")]}, [_crashloop_event(**involved)]
    )
    assert fault is not None
    assert "events:" not in fault.message


def test_a_long_event_message_is_cut() -> None:
    event = _crashloop_event()
    event["message"] = "x" * 5000
    fault = pod_faults.judge("buildkit", booted("running"), {ARM: [pod("crashloop")]}, [event])
    assert fault is not None
    quoted = fault.message.split("events: BackOff: ", 1)[1].split(";", 1)[0]
    assert quoted == "x" * 297 + "..."  # MAX_EVENT_MESSAGE, 300 characters
