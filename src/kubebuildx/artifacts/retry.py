"""When to try a request again, and how long to wait: pure decisions.

Twirp calls follow actions/toolkit ``shared/artifact-twirp-client.ts``: 5
attempts, 3 s then x1.5 with jitter, retried on 429/500/502/503/504 and on a
reply that is not JSON; a refused or reset connection is not retried (the
official client raises its NetworkError at once); a quota message ("insufficient
usage") is never retried. Block uploads follow the Azure SDK's storage retry
policy (``@azure/storage-common`` StorageRetryPolicy: 500/503 and network
errors such as ECONNRESET/ETIMEDOUT/EPIPE), widened to every 5xx a proxy may
answer, with exponential backoff bounded by ``cap``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    attempts: int
    base: float
    multiplier: float
    cap: float

    def delay(self, failed_attempt: int, jitter: float = 0.0) -> float:
        """Seconds to wait after attempt ``failed_attempt`` (0-based) failed.

        ``jitter`` in [0, 1) spreads the wait between base*m^n and base*m^(n+1),
        as the official client does; the result never exceeds ``cap``.
        """
        if failed_attempt < 0:
            raise ValueError("failed_attempt must be >= 0")
        if failed_attempt == 0:
            return min(self.base, self.cap)
        low = self.base * self.multiplier**failed_attempt
        high = low * self.multiplier
        return min(low + (high - low) * jitter, self.cap)


TWIRP_BACKOFF = Backoff(attempts=5, base=3.0, multiplier=1.5, cap=30.0)
BLOCK_BACKOFF = Backoff(attempts=5, base=1.0, multiplier=2.0, cap=30.0)

RETRYABLE_TWIRP_STATUS = frozenset({429, 500, 502, 503, 504})
QUOTA_MESSAGE = "insufficient usage"


class Verdict(enum.Enum):
    OK = "ok"
    RETRY = "retry"
    FAIL = "fail"
    QUOTA = "quota"


def twirp_verdict(status: int, body_is_json: bool, msg: str = "") -> Verdict:
    """What to do with one Twirp reply."""
    if body_is_json and 200 <= status < 300:
        return Verdict.OK
    if body_is_json and QUOTA_MESSAGE in msg:
        return Verdict.QUOTA
    if not body_is_json:
        return Verdict.RETRY
    if status in RETRYABLE_TWIRP_STATUS:
        return Verdict.RETRY
    return Verdict.FAIL


class BlockFailure(enum.Enum):
    """How a block request ended when it did not succeed."""

    STATUS = "status"
    TIMEOUT = "timeout"
    CONNECTION = "connection"


def block_should_retry(failure: BlockFailure, status: int = 0) -> bool:
    if failure is BlockFailure.STATUS:
        return 500 <= status <= 599
    return True
