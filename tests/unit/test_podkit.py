"""The pure parts of the harness's per-pod BuildKit controller (hack/cluster/podkit.py):
which pods get a daemon, the Exec that routes a pod to it, the daemon's config."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack" / "cluster"))
import podkit  # hack/cluster is a folder of scripts, not a package

NODES = {"kwok-amd64": "amd64", "kwok-arm64": "arm64"}


def uid_of(short: str) -> str:
    """A UID shaped as the API server makes them, told apart by its last characters."""
    return short if "/" in short or "." in short else f"0b7e3f2a-1c4d-4e5f-8a9b-{short:0>12}"


def pod(uid: str, node: str | None = "kwok-arm64", phase: str = "Pending", **meta: Any) -> dict[str, Any]:
    uid = uid_of(uid)
    return {
        "metadata": {"uid": uid, "namespace": "buildkit", "name": f"b-{uid}", **meta},
        "spec": {"nodeName": node} if node else {},
        "status": {"phase": phase},
    }


@pytest.mark.parametrize(
    ("item", "wanted"),
    [
        (pod("1"), True),
        (pod("2", phase="Running"), True),
        (pod("3", node=None), False),  # not scheduled yet
        (pod("4", node="real-node"), False),  # not a kwok node: its kubelet runs its containers
        (pod("5", deletionTimestamp="2026-12-02T00:00:00Z"), False),  # being deleted: kill at once
        (pod("6", phase="Succeeded"), False),
        (pod("7", phase="Failed"), False),
        # the uid names a folder podkit removes later: anything but a UUID is ignored
        (pod("../../etc"), False),
        (pod("/etc"), False),
    ],
)
def test_a_daemon_runs_for_each_live_pod_on_a_kwok_node(item: dict[str, Any], wanted: bool) -> None:
    found = podkit.wanted_pods([item], NODES)
    assert (item["metadata"]["uid"] in found) is wanted


def test_a_pod_gets_the_architecture_of_its_node() -> None:
    found = podkit.wanted_pods([pod("a", "kwok-amd64"), pod("b", "kwok-arm64")], NODES)
    assert {uid: ref.arch for uid, ref in found.items()} == {uid_of("a"): "amd64", uid_of("b"): "arm64"}


def test_the_exec_routes_only_that_pod_to_its_own_socket_and_goes_with_it() -> None:
    ref = podkit.PodRef("u-1", "buildkit", "b-1", "kwok-arm64", "arm64")
    obj = podkit.exec_object(ref, Path("/run/pod-u-1.sock"))
    assert obj["kind"] == "Exec" and obj["apiVersion"] == "kwok.x-k8s.io/v1alpha1"
    # kwok matches an Exec to a pod by exact name and namespace
    assert (obj["metadata"]["name"], obj["metadata"]["namespace"]) == ("b-1", "buildkit")
    assert obj["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": "b-1", "uid": "u-1"}
    ]
    # no container filter: every container of the pod; only the socket, no pod IP
    assert obj["spec"] == {
        "execs": [{"local": {"envs": [{"name": "BUILDKIT_HOST", "value": "unix:///run/pod-u-1.sock"}]}}]
    }


def test_the_daemon_serves_its_pod_alone_on_its_architecture() -> None:
    ref = podkit.PodRef("u-1", "buildkit", "b-1", "kwok-arm64", "arm64")
    config = tomllib.loads(
        podkit.daemon_config(
            Path("/s/pods/u-1/root"), Path("/run/pod-u-1.sock"), "arm64", ref, "127.0.0.1:5000"
        )
    )
    assert config["root"] == "/s/pods/u-1/root"
    assert config["grpc"]["address"] == ["unix:///run/pod-u-1.sock"]
    worker = config["worker"]["oci"]
    assert worker["platforms"] == ["linux/arm64"]
    assert worker["labels"] == {"kubebuildx.dev/arch": "arm64", "kubebuildx.dev/pod": "buildkit/b-1"}
    assert config["worker"]["containerd"]["enabled"] is False
    assert config["registry"]["127.0.0.1:5000"]["http"] is True
