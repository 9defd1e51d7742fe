"""The manual recipe, by hand, against the proving ground: a two-node buildx
builder with the kubernetes driver (one node per architecture, pinned by
nodeSelector) builds a multi-stage Dockerfile for linux/amd64 and linux/arm64.

This is what kubebuildx automates; if it fails, the cluster (not kubebuildx) is
broken.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from proving_ground import Cluster

pytestmark = pytest.mark.cluster

CONTEXT = Path(__file__).resolve().parents[1] / "fixtures" / "dockerfiles" / "manual-recipe"
UNAME_M = {"amd64": "x86_64", "arm64": "aarch64"}
ELF_MACHINE = {"amd64": 62, "arm64": 183}  # EM_X86_64, EM_AARCH64
BUILDER_NODES = {"amd64": "builder-amd64", "arm64": "builder-arm64"}  # also the Deployment names


def buildx(cluster: Cluster, docker_config: Path, *args: str, timeout: float = 600) -> str:
    proc = subprocess.run(
        [str(cluster.bin_dir / "buildx"), *args],
        env=cluster.env(DOCKER_CONFIG=str(docker_config)),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"buildx {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", f"{path} is not an ELF file"
    byteorder = "little" if header[5] == 1 else "big"
    return int.from_bytes(header[18:20], byteorder)


@pytest.fixture
def builder(cluster: Cluster, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The recipe's builder, created exactly as the README's manual recipe does, removed after."""
    docker_config = tmp_path / "docker"
    name = f"kbx-manual-{uuid.uuid4().hex[:8]}"
    created = False
    try:
        for index, arch in enumerate(("amd64", "arm64")):
            buildx(
                cluster,
                docker_config,
                "create",
                *(["--append"] if index else []),
                "--name",
                name,
                "--driver",
                "kubernetes",
                "--platform",
                f"linux/{arch}",
                "--node",
                BUILDER_NODES[arch],
                "--driver-opt",
                f"namespace={cluster.namespace},nodeselector=kubernetes.io/arch={arch}",
            )
            created = True
        yield name, docker_config
    finally:
        if created:
            buildx(cluster, docker_config, "rm", name, timeout=120)


def test_manual_recipe_builds_each_platform_natively(
    cluster: Cluster, builder: tuple[str, Path], tmp_path: Path
) -> None:
    name, docker_config = builder
    out = tmp_path / "out"
    buildx(
        cluster,
        docker_config,
        "--builder",
        name,
        "build",
        "--progress",
        "plain",
        "--platform",
        "linux/amd64,linux/arm64",
        "--build-context",
        cluster.base_image_context,
        "--output",
        f"type=local,dest={out}",
        str(CONTEXT),
    )

    for arch in ("amd64", "arm64"):
        root = out / f"linux_{arch}"
        assert root.is_dir(), f"no {root}; exported: {sorted(p.name for p in out.iterdir())}"
        assert (root / "uname-m.txt").read_text().strip() == UNAME_M[arch]
        assert elf_machine(root / "bin" / "busybox") == ELF_MACHINE[arch]

    # Each builder pod ran on the node of its architecture (from the API) ...
    apps, core = cluster.apps_v1(), cluster.core_v1()
    for arch, deployment_name in BUILDER_NODES.items():
        deployment = apps.read_namespaced_deployment(deployment_name, cluster.namespace)
        selector = ",".join(f"{k}={v}" for k, v in sorted(deployment.spec.selector.match_labels.items()))
        pods = core.list_namespaced_pod(cluster.namespace, label_selector=selector).items
        assert pods, f"Deployment {deployment_name} has no pod"
        assert {p.spec.node_name for p in pods} == {cluster.nodes[arch]}

    # ... and reached that node's buildkitd: each daemon labels its worker with its
    # architecture, and buildx inspect shows the label per builder node.
    inspect = buildx(cluster, docker_config, "inspect", name)
    labels = {}
    for section in re.split(r"^Name:\s+", inspect, flags=re.M)[1:]:
        found = re.search(r"^ kubebuildx\.dev/arch:\s+(\S+)$", section, re.M)
        if found:
            labels[section.split()[0]] = found.group(1)
    assert labels == {node: arch for arch, node in BUILDER_NODES.items()}, inspect


def test_exec_reaches_the_buildkitd_of_the_pods_node_in_any_namespace(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Routing follows the scheduler, not a namespace or a name the harness knew in advance."""
    from kubernetes import client

    namespace = f"kbx-anywhere-{uuid.uuid4().hex[:8]}"
    name, node = f"kbx-anywhere-{uuid.uuid4().hex[:8]}", "some-builder-node"
    docker_config = tmp_path / "docker"
    core = cluster.core_v1()
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        buildx(
            cluster,
            docker_config,
            "create",
            "--name",
            name,
            "--driver",
            "kubernetes",
            "--platform",
            "linux/arm64",
            "--node",
            node,
            "--driver-opt",
            f"namespace={namespace},nodeselector=kubernetes.io/arch=arm64",
        )
        try:
            out = tmp_path / "out"
            buildx(
                cluster,
                docker_config,
                "--builder",
                name,
                "build",
                "--platform",
                "linux/arm64",
                "--build-context",
                cluster.base_image_context,
                "--output",
                f"type=local,dest={out}",
                str(CONTEXT),
            )
            assert (out / "uname-m.txt").read_text().strip() == "aarch64"
            pods = core.list_namespaced_pod(namespace, label_selector=f"app={node}").items
            assert {p.spec.node_name for p in pods} == {cluster.nodes["arm64"]}
            inspect = buildx(cluster, docker_config, "inspect", name)
            assert re.search(r"^ kubebuildx\.dev/arch:\s+arm64$", inspect, re.M), inspect
        finally:
            buildx(cluster, docker_config, "rm", name, timeout=120)
    finally:
        core.delete_namespace(namespace)
