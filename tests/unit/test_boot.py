"""Booting decisions: buildx inspect text, the CPU each BuildKit reports, why pods do not start.

tests/fixtures/inspect/*.txt were printed by Go's text/tabwriter with the
Fprintf calls of buildx v0.36.1 commands/inspect.go (runInspect), so the
padding is buildx's own; workers-*.json is ``buildctl debug workers --format
'{{json .}}'`` (client.WorkerInfo) of an arm64, an amd64 and an amd64 node
with QEMU emulators installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubebuildx import boot
from kubebuildx.builder import plan
from kubebuildx.errors import BootstrapError
from kubebuildx.inputs import parse_inputs
from kubebuildx.platforms import Platform

FIXTURES = Path(__file__).parent.parent / "fixtures" / "inspect"
AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")
ARMV7 = Platform("linux", "arm", "v7")
RISCV = Platform("linux", "riscv64")
EP = "kubernetes:///kbx-demo?deployment={}&kubeconfig=%2Fhome%2Frunner%2Fwork%2F_temp%2Fkubebuildx%2Fkubeconfig"


def inspect(name: str) -> boot.Inspected:
    return boot.parse_inspect((FIXTURES / f"{name}.txt").read_text())


def workers(name: str) -> tuple[Platform, ...]:
    return boot.worker_platforms((FIXTURES / f"workers-{name}.json").read_text())


def test_parse_inspect_running() -> None:
    got = inspect("running")
    assert (got.name, got.driver, got.error) == ("kbx-demo", "kubernetes", "")
    assert got.nodes == (
        boot.InspectedNode(
            "kbx-demo-linux-amd64",
            EP.format("kbx-demo-linux-amd64"),
            "running",
            "",
            "v0.25.1",
            ("linux/amd64*", "linux/amd64/v2", "linux/amd64/v3", "linux/386"),
        ),
        boot.InspectedNode(
            "kbx-demo-linux-arm64",
            EP.format("kbx-demo-linux-arm64"),
            "running",
            "",
            "v0.25.1",
            ("linux/arm64*", "linux/arm/v7", "linux/arm/v6"),
        ),
    )


def test_parse_inspect_node_error() -> None:
    got = inspect("node-error")
    assert [n.name for n in got.nodes] == ["kbx-demo-linux-amd64", "kbx-demo-linux-arm64"]
    assert got.nodes[0].status == "running"
    assert got.nodes[0].error == ""
    assert got.nodes[1].status == ""
    assert got.nodes[1].error == "expected 1 replicas to be ready, got 0"
    assert got.nodes[1].platforms == ()
    assert got.error == ""


def test_parse_inspect_inactive() -> None:
    got = inspect("inactive")
    assert [(n.name, n.status, n.buildkit, n.platforms) for n in got.nodes] == [
        ("kbx-demo-linux-amd64", "inactive", "", ("linux/amd64*",)),
        ("kbx-demo-linux-arm-v7", "inactive", "", ("linux/arm/v7*",)),
    ]
    assert got.nodes[1].endpoint == "kubernetes:///kbx-demo?deployment=kbx-demo-linux-arm-v7&kubeconfig="


def test_parse_inspect_builder_error() -> None:
    got = inspect("builder-error")
    assert (got.name, got.driver, got.error, got.nodes) == (
        "kbx-demo",
        "kubernetes",
        'failed to find driver "kubernetes"',
        (),
    )


def test_parse_inspect_ignores_what_it_does_not_know() -> None:
    assert boot.parse_inspect("") == boot.Inspected("", "", "", ())
    got = boot.parse_inspect(
        "warning: something\nName: b\nDriver: kubernetes\n\nNodes:\nName: n0\nStatus: running\n"
    )
    assert (got.name, [n.name for n in got.nodes], got.nodes[0].status) == ("b", ["n0"], "running")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("arm64", (ARM64, ARMV7, Platform("linux", "arm", "v6"))),
        (
            "amd64",
            (
                AMD64,
                Platform("linux", "amd64", "v2"),
                Platform("linux", "amd64", "v3"),
                Platform("linux", "386"),
            ),
        ),
    ],
)
def test_worker_platforms(name: str, expected: tuple[Platform, ...]) -> None:
    assert workers(name) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "{}",
        "null",
        '[{"platforms": null}]',
        '[{"platforms": [{"os": "plan9", "architecture": "x"}]}]',
    ],
)
def test_worker_platforms_of_nothing_useful(text: str) -> None:
    assert boot.worker_platforms(text) == ()


def _spec(emulated: dict[Platform, Platform] | None = None) -> Any:
    return plan(
        parse_inputs({}), name="kbx-demo", namespace="buildkit", native=(AMD64, ARM64), emulated=emulated
    )


PODS = {"kbx-demo-linux-amd64": "amd-1", "kbx-demo-linux-arm64": "arm-1"}


def test_check_native_accepts_nodes_on_their_cpu() -> None:
    reported = {"kbx-demo-linux-amd64": workers("amd64"), "kbx-demo-linux-arm64": workers("arm64")}
    boot.check_native(_spec(), reported, PODS)


def test_check_native_names_a_mislabelled_node_and_what_buildkit_reports() -> None:
    # the arm64 builder landed on a node labelled arm64 whose CPU is amd64 (with emulators installed)
    reported = {"kbx-demo-linux-amd64": workers("amd64"), "kbx-demo-linux-arm64": workers("amd64-qemu")}
    with pytest.raises(BootstrapError) as exc:
        boot.check_native(_spec(), reported, PODS)
    message = str(exc.value)
    assert "kbx-demo-linux-arm64 (for linux/arm64)" in message
    assert "Kubernetes node arm-1" in message
    assert "its BuildKit runs on linux/amd64" in message
    assert "linux/arm64" in message
    assert "kbx-demo-linux-amd64 (for" not in message
    assert "kubernetes.io/arch" in message  # the fix: relabel the node


def test_check_native_when_a_node_reported_nothing() -> None:
    with pytest.raises(BootstrapError) as exc:
        boot.check_native(_spec(), {"kbx-demo-linux-amd64": workers("amd64")}, {})
    assert "kbx-demo-linux-arm64 (for linux/arm64) runs on Kubernetes node ?" in str(exc.value)
    assert "it lists nothing" in str(exc.value)


def test_check_native_emulated_node_runs_on_its_host_cpu() -> None:
    spec = plan(
        parse_inputs({}), name="kbx-demo", namespace="buildkit", native=(AMD64,), emulated={RISCV: AMD64}
    )
    reported = {"kbx-demo-linux-amd64": workers("amd64"), "kbx-demo-linux-riscv64": workers("amd64-qemu")}
    boot.check_native(spec, reported, {})
    with pytest.raises(BootstrapError, match="kbx-demo-linux-riscv64"):
        boot.check_native(spec, {**reported, "kbx-demo-linux-riscv64": workers("arm64")}, {})


# ---- pods that do not start ----------------------------------------------------------------


def pod(
    name: str,
    *,
    conditions: list[dict[str, str]] | None = None,
    containers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "buildkit", "labels": {"app": "kbx-demo-linux-arm64"}},
        "status": {"phase": "Pending", "conditions": conditions or [], "containerStatuses": containers or []},
    }


UNSCHEDULABLE = (
    "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 node(s) had untolerated "
    "taint {arch: arm64}. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
)


def test_diagnose_unschedulable() -> None:
    pods = [
        pod(
            "kbx-demo-linux-arm64-7f6d4c9b5-kq8zp",
            conditions=[
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": UNSCHEDULABLE,
                }
            ],
        )
    ]
    reasons = boot.diagnose(pods, [], "kbx-demo-linux-arm64")
    assert reasons == [f"kbx-demo-linux-arm64-7f6d4c9b5-kq8zp: Unschedulable: {UNSCHEDULABLE}"]
    assert "taint" in boot.hint_for(reasons)


def test_diagnose_image_pull_backoff() -> None:
    waiting = {
        "reason": "ImagePullBackOff",
        "message": 'Back-off pulling image "moby/buildkit:v9.9.9": ErrImagePull: not found',
    }
    pods = [
        pod(
            "kbx-demo-linux-arm64-1",
            conditions=[{"type": "PodScheduled", "status": "True"}],
            containers=[{"name": "buildkitd", "ready": False, "state": {"waiting": waiting}}],
        )
    ]
    reasons = boot.diagnose(pods, [], "kbx-demo-linux-arm64")
    assert reasons == [f"kbx-demo-linux-arm64-1: buildkitd: ImagePullBackOff: {waiting['message']}"]
    assert "image cannot be pulled" in boot.hint_for(reasons)


def test_diagnose_crash_loop() -> None:
    cs = {
        "name": "buildkitd",
        "ready": False,
        "restartCount": 4,
        "state": {
            "waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s restarting failed container"}
        },
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
    }
    reasons = boot.diagnose([pod("kbx-demo-linux-arm64-1", containers=[cs])], [], "kbx-demo-linux-arm64")
    assert reasons == [
        "kbx-demo-linux-arm64-1: buildkitd: CrashLoopBackOff: back-off 1m20s restarting failed container",
        "kbx-demo-linux-arm64-1: buildkitd exited 1 (Error)",
    ]
    assert "crashes" in boot.hint_for(reasons)


def test_diagnose_still_creating_is_not_a_reason() -> None:
    cs = {"name": "buildkitd", "state": {"waiting": {"reason": "ContainerCreating"}}}
    assert boot.diagnose([pod("p", containers=[cs])], [], "kbx-demo-linux-arm64") == []


def test_diagnose_no_pod_and_warning_events() -> None:
    events = [
        {
            "type": "Warning",
            "reason": "FailedCreate",
            "message": 'pods "kbx-demo-linux-arm64-7f6d4c9b5-" is forbidden: '
            'violates PodSecurity "baseline:latest": '
            'privileged (container "buildkitd" must not set securityContext.privileged=true)',
            "involvedObject": {"kind": "ReplicaSet", "name": "kbx-demo-linux-arm64-7f6d4c9b5"},
        },
        {
            "type": "Normal",
            "reason": "ScalingReplicaSet",
            "message": "Scaled up replica set",
            "involvedObject": {"name": "kbx-demo-linux-arm64"},
        },
        {
            "type": "Warning",
            "reason": "FailedCreate",
            "message": "other builder",
            "involvedObject": {"name": "other-builder-linux-arm64-1"},
        },
    ]
    reasons = boot.diagnose([], events, "kbx-demo-linux-arm64")
    assert reasons == [
        "kbx-demo-linux-arm64: no pod was created",
        f"kbx-demo-linux-arm64-7f6d4c9b5: FailedCreate: {events[0]['message']}",
    ]
    assert "PodSecurity" in boot.hint_for(reasons)


def test_diagnose_a_repeated_event_once() -> None:
    ev = {
        "type": "Warning",
        "reason": "BackOff",
        "message": "m",
        "involvedObject": {"name": "kbx-demo-linux-arm64-68448f887d-96zkk"},
    }
    got = boot.diagnose([pod("kbx-demo-linux-arm64-68448f887d-96zkk")], [ev, ev], "kbx-demo-linux-arm64")
    assert got == ["kbx-demo-linux-arm64-68448f887d-96zkk: BackOff: m"]


def test_diagnose_ignores_events_of_a_deployment_whose_name_merely_starts_the_same() -> None:
    other = {
        "type": "Warning",
        "reason": "BackOff",
        "message": "m",
        "involvedObject": {"name": "kbx-demo-linux-arm-v7-68448f887d-96zkk"},
    }
    mine = {
        "type": "Warning",
        "reason": "FailedCreate",
        "message": "forbidden",
        "involvedObject": {"name": "kbx-demo-linux-arm-5d9f7c8b6f"},
    }
    got = boot.diagnose([], [other, mine], "kbx-demo-linux-arm")
    assert got == [
        "kbx-demo-linux-arm: no pod was created",
        "kbx-demo-linux-arm-5d9f7c8b6f: FailedCreate: forbidden",
    ]


@pytest.mark.parametrize(
    ("reasons", "words"),
    [
        (
            [
                "p: Unschedulable: 0/2 nodes are available: 2 Insufficient memory, "
                "1 node(s) had untolerated taint"
            ],
            "requests",
        ),
        (
            ["p: Unschedulable: 0/1 nodes are available: 1 node(s) had untolerated taint {a: b}"],
            "tolerations",
        ),
        (
            [
                "p: Unschedulable: 0/2 nodes are available: "
                "2 node(s) didn't match Pod's node affinity/selector"
            ],
            "kubernetes.io/arch",
        ),
        (["p: buildkitd: ErrImagePull: not found"], "driver-opts image"),
        (["p: buildkitd: CrashLoopBackOff"], "rootless"),
        (
            ["rs: FailedCreate: pods is forbidden: violates PodSecurity"],
            "pod-security.kubernetes.io/enforce=privileged",
        ),
        ([], "kubectl describe pods"),
    ],
)
def test_hint_for(reasons: list[str], words: str) -> None:
    assert words in boot.hint_for(reasons)


@pytest.mark.parametrize(
    ("fixture", "returncode", "failed"),
    [
        ("running", 0, False),
        ("running", 1, True),  # buildx failed, whatever it printed
        ("builder-error", 0, True),
        ("node-error", 0, True),
        ("inactive", 0, True),
    ],
)
def test_failed(fixture: str, returncode: int, failed: bool) -> None:
    assert boot.failed(inspect(fixture), returncode) is failed


@pytest.mark.parametrize(
    ("driver_opts", "seconds"),
    [("", boot.DEFAULT_TIMEOUT), ("timeout=5m", 300.0), ("timeout=90s", 90.0), ("timeout=1m30s", 90.0)],
)
def test_timeout_of(driver_opts: str, seconds: float) -> None:
    spec = plan(parse_inputs({"driver-opts": driver_opts}), name="b", namespace="ns", native=(AMD64,))
    assert boot.timeout_of(spec) == seconds


NO_MEMORY = "kbx-demo-linux-arm64-x: Unschedulable: 0/2 nodes are available: 2 Insufficient memory"


@pytest.mark.parametrize(
    ("fixture", "output", "reasons", "waited", "lines", "fix"),
    [
        (  # buildx names the node that failed; the pods say why; it gave up at the timeout
            "node-error",
            "",
            [NO_MEMORY],
            120.0,
            [
                "builder kbx-demo did not become ready within 120s:",
                "  buildx: expected 1 replicas to be ready, got 0",
                "  " + NO_MEMORY,
            ],
            "lower driver-opts requests.cpu",
        ),
        (  # the builder itself failed, early
            "builder-error",
            "",
            [],
            3.0,
            ["builder kbx-demo could not start:", '  buildx: failed to find driver "kubernetes"'],
            "kubectl describe pods",
        ),
        (  # no error in what inspect printed: buildx's last words on stderr
            "inactive",
            "line 1\nERROR: deployments.apps is forbidden: cannot create",
            [],
            1.0,
            [
                "builder kbx-demo could not start:",
                "  buildx: line 1\nERROR: deployments.apps is forbidden: cannot create",
            ],
            "PodSecurity",
        ),
        (
            "inactive",
            "",
            [],
            1.0,
            ["builder kbx-demo could not start:", "  buildx: buildx gave no reason"],
            "",
        ),
    ],
)
def test_explain_failure(
    fixture: str, output: str, reasons: list[str], waited: float, lines: list[str], fix: str
) -> None:
    err = boot.explain_failure("kbx-demo", inspect(fixture), output, reasons, waited=waited, timeout=120.0)
    assert isinstance(err, BootstrapError) and err.exit_code == 5
    assert err.message == "\n".join(lines)
    assert fix in (err.hint or "")
