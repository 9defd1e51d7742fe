"""The proving ground for integration tests: `cluster` describes the running
one-machine cluster (scripts/cluster up) and fails, never skips, when it is down.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import loopback_registry
import pytest
from cluster_helpers import cluster_env
from kubernetes.client.exceptions import ApiException
from loopback_registry import Registry
from proving_ground import Cluster, read_cluster

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS_CLUSTER = ROOT / "scripts" / "cluster"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: needs the one-machine cluster (scripts/cluster up)")


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    out = subprocess.run([str(SCRIPTS_CLUSTER), "env", "--json"], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        pytest.fail(f"scripts/cluster env --json failed: {out.stderr.strip()}")
    info = json.loads(out.stdout)
    if not info["running"]:
        pytest.fail("the proving ground is down: run scripts/cluster up (see scripts/cluster status)")
    found = read_cluster(info)
    # The daemons run; ask the API itself, so that a wedged apiserver fails here and not mid-test.
    nodes = found.core_v1().list_node(_request_timeout=30).items
    missing = set(found.nodes.values()) - {n.metadata.name for n in nodes}
    if missing:
        pytest.fail(f"the proving ground has no node {sorted(missing)}: run scripts/cluster up")
    return found


@pytest.fixture(scope="session", autouse=True)
def _clean_proving_ground() -> None:
    """Start from a clean ground. etcd keeps what a session stopped mid-test left behind
    (a fault taint, builder Deployments), across `down` and `up`; without this, every
    later run would fail its arm64 preflight on a taint nobody meant to keep."""
    out = subprocess.run([str(SCRIPTS_CLUSTER), "env", "--json"], capture_output=True, text=True, check=False)
    if out.returncode != 0 or not json.loads(out.stdout).get("running"):
        return  # tests that need the cluster fail through the `cluster` fixture
    found = read_cluster(json.loads(out.stdout))
    core, apps = found.core_v1(), found.apps_v1()
    for node in core.list_node(_request_timeout=30).items:
        taints = node.spec.taints or []
        kept = [t for t in taints if t.key.startswith("node.kubernetes.io/")]
        if len(kept) != len(taints):
            core.patch_node(node.metadata.name, {"spec": {"taints": kept or None}})
    # Only what no session can still be using: sessions of other worktrees share this cluster,
    # and deleting a running test's builder fails it (pytest's timeout is 15 minutes a test).
    stale = datetime.now(UTC) - timedelta(minutes=20)
    for deployment in apps.list_namespaced_deployment(found.namespace, _request_timeout=30).items:
        created = deployment.metadata.creation_timestamp
        if created is None or created < stale:
            try:
                apps.delete_namespaced_deployment(deployment.metadata.name, found.namespace)
            except ApiException as exc:
                if exc.status != 404:  # another session removed it first
                    raise


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """The registry the proving ground's buildkitds are configured for (KUBEBUILDX_REGISTRY),
    plain HTTP on loopback, one per test module that asks for it."""
    loopback_registry.install()
    reg = Registry(tmp_path_factory.mktemp("registry-plain"), cluster_env()["KUBEBUILDX_REGISTRY"]).start()
    yield reg
    reg.stop()
