"""Fixtures for the artifact tests: Azurite, the Twirp test server, the fault proxy, the official client.

Everything is installed and started here (npm packages pinned, cached outside
the checkout); all of it listens on 127.0.0.1 only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from artifact_fault_proxy import RunningProxy, proxy
from artifact_peers import ACCOUNT, Azurite, install_peers, run_azurite
from artifact_twirp_server import RunningService, serve

from kubebuildx.artifacts import retry

FAST_TWIRP = retry.Backoff(attempts=5, base=0.05, multiplier=1.5, cap=0.2)
FAST_BLOCKS = retry.Backoff(attempts=4, base=0.05, multiplier=2.0, cap=0.2)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.artifacts)


@pytest.fixture(scope="session")
def peers() -> Path:
    return install_peers()


@pytest.fixture(scope="session")
def azurite(peers: Path) -> Iterator[Azurite]:
    with run_azurite(peers) as running:
        yield running


@pytest.fixture(scope="session")
def twirp(azurite: Azurite) -> Iterator[RunningService]:
    with serve(azurite.endpoint) as running:
        yield running


@pytest.fixture(scope="session")
def fault_proxy(azurite: Azurite) -> Iterator[RunningProxy]:
    with proxy(azurite.port, ACCOUNT) as running:
        yield running


@pytest.fixture
def service(
    twirp: RunningService, fault_proxy: RunningProxy, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningService]:
    """The test server with a clean record, its environment set, and quick retries."""
    twirp.service.reset()
    fault_proxy.plan.reset()
    for key, value in twirp.env().items():
        monkeypatch.setenv(key, value)
    for key in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ACTIONS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(retry, "TWIRP_BACKOFF", FAST_TWIRP)
    monkeypatch.setattr(retry, "BLOCK_BACKOFF", FAST_BLOCKS)
    yield twirp
    twirp.service.reset()
    fault_proxy.plan.reset()
