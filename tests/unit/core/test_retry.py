from __future__ import annotations

import datetime

import pytest
from procrastinate.jobs import Job

from mimic.core.http import retry_after_seconds
from mimic.core.jobs import RETRY, Backoff, RetryableError

BACKOFF = Backoff(base=1.0, cap=60.0)


def job(attempts: int) -> Job:
    return Job(
        id=1, queue="webhooks", lock=None, queueing_lock=None, task_name="t", attempts=attempts
    )


def test_exponential_backoff_with_jitter_is_bounded() -> None:
    for attempts, ceiling in [(0, 1.0), (1, 2.0), (3, 8.0), (10, 60.0)]:
        delays = {BACKOFF.delay(attempts, None) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered


def test_retry_after_is_honoured_and_capped() -> None:
    assert BACKOFF.delay(0, 7.0) == 7.0
    assert BACKOFF.delay(0, 3600.0) == 60.0


def test_only_retryable_errors_are_retried() -> None:
    assert RETRY.get_retry_decision(exception=ValueError("x"), job=job(0)) is None
    decision = RETRY.get_retry_decision(exception=RetryableError("x", retry_after=5), job=job(0))
    assert decision is not None
    assert decision.retry_at is not None
    wait = decision.retry_at - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(seconds=4) < wait <= datetime.timedelta(seconds=5)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("12", 12.0), ("soon", None)],
)
def test_retry_after_header_parsing(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value, now=0) == expected


def test_retry_after_http_date() -> None:
    assert retry_after_seconds("Thu, 01 Jan 1970 00:01:40 GMT", now=40.0) == 60.0


def test_a_429_without_retry_after_honours_ratelimit_reset() -> None:
    import httpx

    from mimic.core.http import retry_after

    assert retry_after(httpx.Response(429, headers={"ratelimit-reset": "3"})) == 3.0
    both = httpx.Response(429, headers={"retry-after": "7", "ratelimit-reset": "3"})
    assert retry_after(both) == 7.0  # Retry-After wins
    assert retry_after(httpx.Response(429)) is None
