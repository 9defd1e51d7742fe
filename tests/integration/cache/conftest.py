"""Fixtures for the cache tests: Azurite and the cache service v2 test server (the artifact
tests' peers and helpers, reused), and BuildKit's pinned binaries. No cluster: each test starts
its own buildkitd, so a fresh one is really cold.

Everything listens on 127.0.0.1 or on a private unix socket.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "artifacts"))  # Azurite, SAS, the JWT

from artifact_peers import Azurite, install_peers, run_azurite
from buildkit_peer import Tools, find_tools
from cache_twirp_server import RunningCache, serve


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.cache)


@pytest.fixture(scope="session")
def tools() -> Tools:
    found, why = find_tools()
    if found is None:
        pytest.skip(f"BuildKit's binaries are not here: {why}")
    return found


@pytest.fixture(scope="session")
def cache_peers() -> Path:
    return install_peers()


@pytest.fixture(scope="session")
def cache_azurite(cache_peers: Path) -> Iterator[Azurite]:
    with run_azurite(cache_peers) as running:
        yield running


@pytest.fixture(scope="session")
def cache_server(cache_azurite: Azurite) -> Iterator[RunningCache]:
    with serve(cache_azurite.endpoint) as running:
        yield running


@pytest.fixture
def cache_service(cache_server: RunningCache) -> Iterator[RunningCache]:
    """The test server with no entries and a clean record."""
    cache_server.service.reset()
    yield cache_server
    cache_server.service.reset()
