"""kubebuildx against the one-machine cluster: real buildx, a real Kubernetes
API, one real BuildKit per architecture. Nothing here is faked."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from cluster_helpers import (
    CONTEXT,
    ELF_MACHINE,
    ROOT,
    api_json,
    cluster_env,
    common,
    deployments,
    elf_machine,
    kubebuildx,
    output_dir,
    secrets_of,
)

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cenv() -> dict[str, str]:
    return cluster_env()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


def test_build_runs_each_platform_on_its_own_architecture(cenv: dict[str, str], home: Path) -> None:
    run = kubebuildx(
        [
            "build",
            str(CONTEXT),
            *common(cenv),
            "--builder",
            "kbx-it-native",
            "--platforms",
            "linux/amd64,linux/arm64",
            "--build-contexts",
            cenv["KUBEBUILDX_BASE_IMAGE_CONTEXT"],
            "--build-args",
            "GREETING=native",
        ],
        cenv,
        home,
    )
    assert run.proc.returncode == 0, run.text[-4000:]
    out = output_dir(home, "kbx-it-native")
    for folder, machine in (("linux_amd64", "x86_64"), ("linux_arm64", "aarch64")):
        assert (out / folder / "arch").read_text().strip() == machine
        assert (out / folder / "greeting").read_text().strip() == "native"
        assert elf_machine(out / folder / "tool") == ELF_MACHINE[machine]
    # the per-platform timing table names each platform's steps
    assert "linux/amd64" in run.text and "linux/arm64" in run.text
    assert "[build 2/3] RUN uname -m" in run.text or "RUN uname -m" in run.text
    # cleanup (the default) removed the Deployments
    assert deployments(cenv, "kbx-it-native") == []


def test_cleanup_false_keeps_the_builder_warm_and_cleanup_removes_it(
    cenv: dict[str, str], home: Path
) -> None:
    run = kubebuildx(
        [
            "build",
            str(CONTEXT),
            *common(cenv),
            "--builder",
            "kbx-it-warm",
            "--platforms",
            "linux/arm64",
            "--cleanup",
            "false",
            "--build-contexts",
            cenv["KUBEBUILDX_BASE_IMAGE_CONTEXT"],
        ],
        cenv,
        home,
    )
    assert run.proc.returncode == 0, run.text[-4000:]
    assert deployments(cenv, "kbx-it-warm") == ["kbx-it-warm-linux-arm64"]
    # only the requested platform's node was booted
    assert (output_dir(home, "kbx-it-warm") / "linux_arm64" / "arch").read_text().strip() == "aarch64"
    # the post step / `kubebuildx cleanup` removes it
    (home / "docker" / "buildx").mkdir(parents=True, exist_ok=True)
    gone = kubebuildx(["cleanup", "kbx-it-warm"], cenv, home)
    assert gone.proc.returncode == 0, gone.text
    deadline = time.monotonic() + 30
    while deployments(cenv, "kbx-it-warm") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert deployments(cenv, "kbx-it-warm") == []


@pytest.mark.parametrize(
    ("case", "args", "expect", "fix"),
    [
        ("missing platform", ["--platforms", "linux/amd64,linux/s390x"], "linux/s390x", "qemu-fallback"),
        ("bad token", ["--platforms", "linux/amd64"], "401 Unauthorized", "create a new one"),
        ("wrong CA", ["--platforms", "linux/amd64"], "certificate", "certificate-authority-data"),
        (
            "missing RBAC",
            ["--platforms", "linux/amd64", "--namespace", "default"],
            "lacks permissions",
            "deploy/rbac.yaml",
        ),
    ],
)
def test_preflight_fails_fast_and_names_the_fix(
    cenv: dict[str, str], home: Path, case: str, args: list[str], expect: str, fix: str
) -> None:
    kubeconfig = {
        "bad token": cenv["KUBEBUILDX_KUBECONFIG_BAD_TOKEN"],
        "wrong CA": cenv["KUBEBUILDX_KUBECONFIG_BAD_CA"],
        "missing RBAC": cenv["KUBEBUILDX_KUBECONFIG_LIMITED"],
    }.get(case)
    argv = ["preflight", "--kubeconfig", kubeconfig or cenv["KUBEBUILDX_KUBECONFIG_ADMIN"]]
    if "--namespace" not in args:
        argv += ["--namespace", cenv["KUBEBUILDX_NAMESPACE"]]
    run = kubebuildx([*argv, *args], cenv, home, timeout=60)
    assert run.proc.returncode == 4, run.text
    assert expect in run.text and fix in run.text, run.text
    assert run.seconds < 30, f"preflight took {run.seconds:.1f}s"
    for secret in secrets_of(Path(kubeconfig or cenv["KUBEBUILDX_KUBECONFIG_ADMIN"])):
        assert secret not in run.text


def test_preflight_names_the_toleration_for_a_tainted_node(cenv: dict[str, str], home: Path) -> None:
    cluster = str(ROOT / "scripts" / "cluster")
    node = cenv["KUBEBUILDX_NODE_ARM64"]
    subprocess.run([cluster, "taint", node], check=True, capture_output=True)
    try:
        run = kubebuildx(["preflight", *common(cenv), "--platforms", "linux/arm64"], cenv, home, timeout=60)
        assert run.proc.returncode == 4, run.text
        assert "tainted" in run.text and "linux/arm64:tolerations=key=" in run.text, run.text
        tolerated = re.search(r"linux/arm64:(tolerations=\S+)", run.text)
        assert tolerated, run.text
        ok = kubebuildx(
            [
                "preflight",
                *common(cenv),
                "--platforms",
                "linux/arm64",
                "--driver-opts",
                f"linux/arm64:{tolerated[1]}",
            ],
            cenv,
            home,
            timeout=60,
        )
        assert ok.proc.returncode == 0, ok.text
    finally:
        subprocess.run([cluster, "untaint", node], check=True, capture_output=True)


def test_limited_service_account_builds(cenv: dict[str, str], home: Path) -> None:
    """The RBAC documented in deploy/rbac.yaml is enough for the whole job."""
    run = kubebuildx(
        [
            "build",
            str(CONTEXT),
            *common(cenv, cenv["KUBEBUILDX_KUBECONFIG_LIMITED"]),
            "--builder",
            "kbx-it-limited",
            "--platforms",
            "linux/amd64",
            "--buildkitd-config-inline",
            "debug = true",  # so buildx also creates its ConfigMap under the limited RBAC
            "--build-contexts",
            cenv["KUBEBUILDX_BASE_IMAGE_CONTEXT"],
        ],
        cenv,
        home,
    )
    assert run.proc.returncode == 0, run.text[-4000:]
    for secret in secrets_of(Path(cenv["KUBEBUILDX_KUBECONFIG_LIMITED"])):
        assert secret not in run.text


def test_instance_file_is_what_buildx_reads(cenv: dict[str, str], home: Path) -> None:
    run = kubebuildx(
        [
            "instance",
            *common(cenv),
            "--builder",
            "kbx-it-instance",
            "--platforms",
            "linux/amd64,linux/arm64",
            "--driver-opts",
            "replicas=1",
            "--driver-opts",
            "linux/arm64:requests.cpu=1",
            "--print",
        ],
        cenv,
        home,
    )
    assert run.proc.returncode == 0, run.text
    env = {
        **os.environ,
        "DOCKER_CONFIG": str(home / "docker"),
        "PATH": f"{cenv['KUBEBUILDX_BIN']}:{os.environ['PATH']}",
    }
    env.pop("BUILDX_CONFIG", None)
    inspect = subprocess.run(
        ["buildx", "inspect", "kbx-it-instance"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    ).stdout
    from kubebuildx.boot import parse_inspect

    parsed = parse_inspect(inspect)
    assert parsed.driver == "kubernetes"
    assert [(n.name, n.platforms) for n in parsed.nodes] == [
        ("kbx-it-instance-linux-amd64", ("linux/amd64*",)),
        ("kbx-it-instance-linux-arm64", ("linux/arm64*",)),
    ]
    kept = home / "docker" / "buildx" / "kubebuildx" / "kbx-it-instance.kubeconfig"
    assert oct(kept.stat().st_mode & 0o777) == "0o600"
    for node in parsed.nodes:
        assert node.endpoint == (
            f"kubernetes:///kbx-it-instance?deployment={node.name}&kubeconfig={str(kept).replace('/', '%2F')}"
        )
    assert 'nodeselector="kubernetes.io/arch=arm64,kubernetes.io/os=linux"' in inspect
    assert 'requests.cpu="1"' in inspect
    ls = subprocess.run(
        ["buildx", "ls"], capture_output=True, text=True, env=env, check=False, timeout=60
    ).stdout
    # listed, and not made the current builder: that is the user's (`buildx use`, or --builder)
    assert "kbx-it-instance " in ls and "kbx-it-instance*" not in ls


def test_pods_that_cannot_schedule_are_explained(cenv: dict[str, str], home: Path) -> None:
    run = kubebuildx(
        [
            "build",
            str(CONTEXT),
            *common(cenv),
            "--builder",
            "kbx-it-unschedulable",
            "--platforms",
            "linux/arm64",
            "--driver-opts",
            "requests.cpu=5000",
            "--driver-opts",
            "timeout=8s",
        ],
        cenv,
        home,
        timeout=120,
    )
    assert run.proc.returncode == 5, run.text[-3000:]
    assert "did not become ready" in run.text
    assert "Insufficient cpu" in run.text, run.text[-3000:]
    assert "requests.cpu" in run.text  # the fix names the option to lower
    assert deployments(cenv, "kbx-it-unschedulable") == [], "cleanup still removes what was created"


def test_instance_can_be_stored_as_a_configmap(cenv: dict[str, str], home: Path) -> None:
    run = kubebuildx(
        [
            "instance",
            *common(cenv),
            "--builder",
            "kbx-it-cm",
            "--platforms",
            "linux/amd64,linux/arm64",
            "--configmap",
            "kbx-it-buildx-config",
            "--kubeconfig-ref",
            "",
        ],
        cenv,
        home,
    )
    assert run.proc.returncode == 0, run.text
    cm = api_json(cenv, f"/api/v1/namespaces/{cenv['KUBEBUILDX_NAMESPACE']}/configmaps/kbx-it-buildx-config")
    stored = json.loads(cm["data"]["data"])
    assert stored["Name"] == "kbx-it-cm" and stored["Driver"] == "kubernetes"
    assert [n["Endpoint"] for n in stored["Nodes"]] == [
        "kubernetes:///kbx-it-cm?deployment=kbx-it-cm-linux-amd64&kubeconfig=",
        "kubernetes:///kbx-it-cm?deployment=kbx-it-cm-linux-arm64&kubeconfig=",
    ]
    # what buildx itself would read from the mounted file
    assert stored == json.loads((home / "docker" / "buildx" / "instances" / "kbx-it-cm").read_text())


def test_qemu_fallback_emulates_a_platform_no_node_serves_and_says_so(
    cenv: dict[str, str], home: Path
) -> None:
    run = kubebuildx(
        [
            "build",
            str(ROOT / "tests" / "fixtures" / "contexts" / "scratch"),
            *common(cenv),
            "--builder",
            "kbx-it-emulated",
            "--platforms",
            "linux/arm64,linux/riscv64",
            "--qemu-fallback",
        ],
        cenv,
        home,
    )
    assert run.proc.returncode == 0, run.text[-3000:]
    assert "linux/riscv64 natively: it is EMULATED on linux/amd64" in run.text
    out = output_dir(home, "kbx-it-emulated")
    assert (out / "linux_riscv64" / "hello.txt").read_text() == "hello\n"
    assert (out / "linux_arm64" / "hello.txt").read_text() == "hello\n"


def test_a_persistent_builder_without_statefulset_rbac_fails_in_preflight(
    cenv: dict[str, str], home: Path
) -> None:
    run = kubebuildx(
        [
            "preflight",
            *common(cenv, cenv["KUBEBUILDX_KUBECONFIG_LIMITED"]),
            "--platforms",
            "linux/arm64",
            "--driver-opts",
            "persistent-volume-claim.requests.storage=1Gi",
        ],
        cenv,
        home,
        timeout=60,
    )
    assert run.proc.returncode == 4, run.text
    assert "create statefulsets.apps" in run.text and "uncomment its statefulsets rule" in run.text
