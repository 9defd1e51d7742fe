"""The proving ground for integration tests: `cluster` describes the running
one-machine cluster (scripts/cluster up) and fails, never skips, when it is down.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
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
    nodes = found.core_v1().list_node().items
    missing = set(found.nodes.values()) - {n.metadata.name for n in nodes}
    if missing:
        pytest.fail(f"the proving ground has no node {sorted(missing)}: run scripts/cluster up")
    return found
