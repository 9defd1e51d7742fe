"""Cancellation: the flag stops retry loops and thread pools without waiting for them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from kubebuildx import cancel
from kubebuildx.artifacts.blob import BlockUploader
from kubebuildx.artifacts.retry import Backoff
from kubebuildx.artifacts.service import TwirpClient

SLOW = Backoff(attempts=5, base=60.0, multiplier=2.0, cap=600.0)  # the real waits are minutes


@pytest.fixture(autouse=True)
def _fresh_flag() -> Iterator[None]:
    cancel.reset()
    yield
    cancel.reset()


def test_sleep_returns_at_once_when_cancelled() -> None:
    timer = threading.Timer(0.05, cancel.request)
    timer.start()
    started = time.monotonic()
    with pytest.raises(cancel.Cancelled):
        cancel.sleep(60)
    assert time.monotonic() - started < 5
    timer.join()  # no timer may outlive the test: a late cancel would stop the next one


def test_cancelled_is_an_interrupt_that_no_except_exception_swallows() -> None:
    assert issubclass(cancel.Cancelled, KeyboardInterrupt)
    assert not issubclass(cancel.Cancelled, Exception)


class Busy(requests.Session):
    """Every request gets 503 (retried); counts them, and cancels the job on the first (as a
    SIGTERM during the upload would): the retry's wait must end at once."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def _reply(self) -> requests.Response:
        self.count += 1
        cancel.request()
        response = requests.Response()
        response.status_code = 503
        response.reason = "busy"
        response._content = b'{"msg": "busy"}'
        response._content_consumed = True
        return response

    def post(self, url: str | bytes, data: Any = None, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        return self._reply()

    def put(self, url: str | bytes, data: Any = None, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        return self._reply()


def test_twirp_stops_retrying_on_cancel() -> None:
    session = Busy()
    client = TwirpClient("https://results.example", "tok-abcdef", session=session, backoff=SLOW)
    started = time.monotonic()
    with pytest.raises(cancel.Cancelled):
        client.call("CreateArtifact", {})
    assert session.count == 1 and time.monotonic() - started < 5


def test_block_upload_stops_retrying_and_close_does_not_wait() -> None:
    session = Busy()
    uploader = BlockUploader("https://blob.example/x?sig=s", session=session, block_size=4, backoff=SLOW)
    started = time.monotonic()
    with pytest.raises(cancel.Cancelled):
        for _ in range(50):
            uploader.write(b"data")
            time.sleep(0.01)
        uploader.finish()
    uploader.close()
    assert time.monotonic() - started < 5
    uploader._pool.shutdown(wait=True)  # for the test only: no request may outlive it
    assert session.count <= 4  # the blocks in flight when the cancel came, each tried once


def test_an_interrupted_executor_does_not_wait_for_its_work() -> None:
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), cancel.executor(max_workers=2) as pool:
        futures = [pool.submit(release.wait, 30) for _ in range(6)]
        raise KeyboardInterrupt  # SIGTERM while the main thread waits for the results
    assert time.monotonic() - started < 5
    assert cancel.requested()  # the running tasks see it
    assert sum(f.cancelled() for f in futures) == 4  # the queued ones never start
    release.set()


def test_an_executor_that_finishes_waits_for_its_work() -> None:
    with cancel.executor(max_workers=0) as pool:  # an empty node list still gets one worker
        future = pool.submit(lambda: 42)
    assert future.result() == 42 and not cancel.requested()
