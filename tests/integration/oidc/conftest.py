"""The loopback OIDC issuer (hack/cluster/oidc.py) and the ID token stub, tested without the cluster.

These tests open loopback sockets and run openssl, and need nothing else: they leave the
shared proving ground alone (the session fixture below replaces the one that tidies it).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

HACK = Path(__file__).resolve().parents[3] / "hack" / "cluster"
sys.path.insert(0, str(HACK))


@pytest.fixture(scope="session", autouse=True)
def _clean_proving_ground() -> None:
    """Nothing to tidy: no test here touches the cluster."""


@pytest.fixture(scope="session")
def issuer() -> ModuleType:
    import oidc

    assert Path(oidc.__file__).parent == HACK, oidc.__file__
    return oidc


@pytest.fixture(scope="session")
def issuer_pki(issuer: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("oidc-pki")
    issuer.ensure(directory)
    return directory


@pytest.fixture
def served(issuer: ModuleType, issuer_pki: Path) -> Iterator[str]:
    """The issuer on a free loopback port; its base URL."""
    import threading

    httpd = issuer.server(issuer_pki, 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer.base_url(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()
