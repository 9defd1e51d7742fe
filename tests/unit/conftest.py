"""Unit tests never start a process or open a socket: a guard makes any attempt fail loudly."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import pytest


class UnitTestIsolationError(AssertionError):
    pass


@pytest.fixture(autouse=True)
def _no_processes_or_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: object, **kwargs: object) -> None:
        raise UnitTestIsolationError("unit tests must not start processes or open sockets")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield


@pytest.fixture(autouse=True)
def _not_cancelled() -> Iterator[None]:
    """The cancel flag and the withheld environment are process-wide: a test must not leave
    them to the next one."""
    from kubebuildx import cancel, cmd

    cancel.reset()
    yield
    cancel.reset()
    cmd._withheld.clear()
