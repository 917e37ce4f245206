"""The retry policy's arithmetic, Retry-After parsing and the retry predicate."""

from __future__ import annotations

import email.utils
import itertools

import pytest

from genie_async import APIConnectionError, APITimeoutError, RetryPolicy
from genie_async._http import make_status_error
from genie_async._retry import parse_retry_after, retry_reason


def _policy(random_value: float) -> RetryPolicy:
    return RetryPolicy(random=lambda: random_value)


def test_backoff_doubles_from_one_second_to_the_cap() -> None:
    """Without jitter the waits are 1, 2, 4, … capped at 60 s."""
    policy = _policy(0.0)
    assert [policy.backoff(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


@pytest.mark.parametrize("u", [0.0, 0.3, 0.999999])
def test_jitter_only_shortens_and_never_exceeds_the_cap(u: float) -> None:
    """Subtractive jitter keeps every wait within [75 %, 100 %] of the capped backoff."""
    policy = _policy(u)
    for n in range(1, 40):
        nominal = min(60.0, 2.0 ** (n - 1))
        assert 0.75 * nominal <= policy.backoff(n) <= nominal <= 60.0


def test_huge_attempt_numbers_do_not_overflow() -> None:
    """The exponent is capped, so attempt 10**6 still gives the capped wait."""
    assert _policy(0.0).backoff(10**6) == 60.0


@pytest.mark.parametrize(
    ("u", "retry_after"), list(itertools.product([0.0, 0.99], [0.5, 3.0, 60.0]))
)
def test_retry_after_is_never_shortened_by_jitter(u: float, retry_after: float) -> None:
    """A usable Retry-After is a floor for the wait."""
    assert _policy(u).wait_for(1, retry_after) >= retry_after


def test_retry_after_above_the_cap_falls_back_to_backoff() -> None:
    """A Retry-After beyond wait_max is not honoured; the backoff applies."""
    assert _policy(0.0).wait_for(1, 3600.0) == 1.0


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": " 1.5 "}, 1.5),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "-2"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": email.utils.formatdate(NOW + 20, usegmt=True)}, 20.0),
        ({"retry-after": email.utils.formatdate(NOW - 20, usegmt=True)}, 0.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "x", "retry-after": "9"}, 9.0),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    """Delta-seconds, HTTP-dates and retry-after-ms; garbage and negatives are ignored."""
    parsed = parse_retry_after(headers, now=NOW)
    if expected is None:
        assert parsed is None
    else:
        assert parsed == pytest.approx(expected, abs=1.0)


def _status(status: int) -> Exception:
    return make_status_error(status, b"{}", {}, method="GET", path="/", host="h")


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_retried(status: int) -> None:
    """502, 503 and 504 are retried."""
    assert retry_reason(_status(status), RetryPolicy(), server_errors_seen=0, resend_safe=False)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 406, 408, 409, 413, 415, 422, 429])
def test_client_errors_are_never_retried(status: int) -> None:
    """No 4xx is retried by default (429 only with the opt-in)."""
    assert (
        retry_reason(_status(status), RetryPolicy(), server_errors_seen=0, resend_safe=True) is None
    )


def test_429_is_retried_only_when_opted_in() -> None:
    """retry_rate_limited=True makes 429 retryable."""
    policy = RetryPolicy(retry_rate_limited=True)
    assert retry_reason(_status(429), policy, server_errors_seen=0, resend_safe=True)


def test_500_is_retried_once() -> None:
    """The first 500 is retried; the second is not."""
    policy = RetryPolicy()
    assert retry_reason(_status(500), policy, server_errors_seen=1, resend_safe=True)
    assert retry_reason(_status(500), policy, server_errors_seen=2, resend_safe=True) is None


def test_connection_errors_depend_on_whether_the_request_left() -> None:
    """Connect-phase failures always retry; later ones only when repeating is safe."""
    policy = RetryPolicy()
    before = APIConnectionError("refused", request_sent=False)
    after = APITimeoutError("read timeout", request_sent=True)
    assert retry_reason(before, policy, server_errors_seen=0, resend_safe=False)
    assert retry_reason(after, policy, server_errors_seen=0, resend_safe=True)
    assert retry_reason(after, policy, server_errors_seen=0, resend_safe=False) is None


def test_other_exceptions_are_never_retried() -> None:
    """Bugs propagate: only our API errors are candidates."""
    assert (
        retry_reason(ValueError("bug"), RetryPolicy(), server_errors_seen=0, resend_safe=True)
        is None
    )


def test_opted_in_429_with_a_long_retry_after_is_not_retried_early() -> None:
    """A 429 asking for more than wait_max is raised, not retried sooner than asked."""
    policy = RetryPolicy(retry_rate_limited=True)
    long_wait = make_status_error(
        429, b"{}", {"retry-after": "120"}, method="GET", path="/", host="h"
    )
    short_wait = make_status_error(
        429, b"{}", {"retry-after": "5"}, method="GET", path="/", host="h"
    )
    assert retry_reason(long_wait, policy, server_errors_seen=0, resend_safe=True) is None
    assert retry_reason(short_wait, policy, server_errors_seen=0, resend_safe=True)
