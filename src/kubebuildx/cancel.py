"""Cancellation: one flag for the whole process, set when the job is cancelled.

``cli.main`` sets it on SIGTERM (the runner's cancel) and SIGINT, then the
main thread unwinds with ``KeyboardInterrupt``. Worker threads cannot be
interrupted that way, so everything that waits or retries looks at the flag:
``cmd`` kills its child's process group, the artifact uploader stops retrying,
and ``executor`` shuts a thread pool down without waiting for queued work.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

_requested = threading.Event()


class Cancelled(KeyboardInterrupt):
    """Raised where work stops because the job was cancelled.

    A KeyboardInterrupt, so that no ``except Exception`` retries it and
    ``cli.main`` reports it as the interrupt it is (exit 130).
    """


def request() -> None:
    _requested.set()


def requested() -> bool:
    return _requested.is_set()


def reset() -> None:
    """For tests: one process runs many pipelines."""
    _requested.clear()


def check() -> None:
    if _requested.is_set():
        raise Cancelled


def sleep(seconds: float) -> None:
    """``time.sleep`` that returns, raising ``Cancelled``, as soon as the job is cancelled."""
    if _requested.wait(seconds):
        raise Cancelled


@contextlib.contextmanager
def executor(max_workers: int, thread_name_prefix: str = "") -> Iterator[ThreadPoolExecutor]:
    """A thread pool that, when the block is left by an exception (an interrupt),
    drops the queued work and does not wait for the running one: each running task
    sees the flag and ends on its own."""
    pool = ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix=thread_name_prefix)
    try:
        yield pool
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            request()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
