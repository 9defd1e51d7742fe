"""Retry decisions and backoff, as pure functions."""

from __future__ import annotations

import pytest

from kubebuildx.artifacts.retry import (
    BLOCK_BACKOFF,
    TWIRP_BACKOFF,
    Backoff,
    BlockFailure,
    Verdict,
    block_should_retry,
    twirp_verdict,
)


@pytest.mark.parametrize(
    ("status", "is_json", "msg", "verdict"),
    [
        (200, True, "", Verdict.OK),
        (200, False, "", Verdict.RETRY),  # a proxy's HTML page with 200
        (429, True, "", Verdict.RETRY),
        (500, True, "", Verdict.RETRY),
        (502, False, "", Verdict.RETRY),
        (503, True, "", Verdict.RETRY),
        (504, True, "", Verdict.RETRY),
        (501, True, "", Verdict.FAIL),
        (400, True, "bad", Verdict.FAIL),
        (401, True, "", Verdict.FAIL),
        (404, True, "", Verdict.FAIL),
        (409, True, "already exists", Verdict.FAIL),
        (429, True, "insufficient usage to create artifact", Verdict.QUOTA),
        (403, True, "insufficient usage", Verdict.QUOTA),
    ],
)
def test_twirp_verdict(status: int, is_json: bool, msg: str, verdict: Verdict) -> None:
    assert twirp_verdict(status, is_json, msg) is verdict


@pytest.mark.parametrize(
    ("failure", "status", "retry"),
    [
        (BlockFailure.STATUS, 500, True),
        (BlockFailure.STATUS, 503, True),
        (BlockFailure.STATUS, 504, True),
        (BlockFailure.STATUS, 400, False),
        (BlockFailure.STATUS, 403, False),
        (BlockFailure.STATUS, 404, False),
        (BlockFailure.STATUS, 413, False),
        (BlockFailure.TIMEOUT, 0, True),
        (BlockFailure.CONNECTION, 0, True),
    ],
)
def test_block_should_retry(failure: BlockFailure, status: int, retry: bool) -> None:
    assert block_should_retry(failure, status) is retry


def test_twirp_backoff_follows_the_official_client() -> None:
    assert TWIRP_BACKOFF.attempts == 5
    assert TWIRP_BACKOFF.delay(0) == 3.0
    assert TWIRP_BACKOFF.delay(1, 0.0) == pytest.approx(4.5)
    assert TWIRP_BACKOFF.delay(1, 0.999) < 6.75


@pytest.mark.parametrize("policy", [TWIRP_BACKOFF, BLOCK_BACKOFF])
def test_backoff_is_bounded(policy: Backoff) -> None:
    delays = [policy.delay(n, 0.999) for n in range(50)]
    assert max(delays) <= policy.cap
    assert delays == sorted(delays)
    total = sum(policy.delay(n, 0.999) for n in range(policy.attempts - 1))
    assert total < 120


def test_backoff_refuses_negative_attempts() -> None:
    with pytest.raises(ValueError, match="failed_attempt"):
        BLOCK_BACKOFF.delay(-1)
