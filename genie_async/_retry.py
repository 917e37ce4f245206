"""Applying a :class:`RetryPolicy` to one logical call, with tenacity doing the looping.

What is retried (seed 002, adopted for the Genie runtime):

* 502, 503, 504 — with backoff, honouring ``Retry-After`` — until the budget is spent;
* 500 — once;
* 429 — only when the policy opts in;
* a connection failure or timeout — always when the request never left (connect phase);
  when it may have reached the server, only if the caller says repeating it is safe;
* nothing else: every other 4xx, local refusals and misuse propagate at once.

Every decision is logged at DEBUG on the ``genie_async`` logger with attempt, delay,
status and request id.
"""

from __future__ import annotations

import email.utils
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState

from ._config import RetryPolicy
from ._hints import OLBRAIN_BILLING_CODES
from .errors import APIConnectionError, APIStatusError, GenieError

logger = logging.getLogger("genie_async")

T = TypeVar("T")

_BACKOFF_STATUSES = frozenset({502, 503, 504})


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (delta-seconds or HTTP-date).

    Returns ``None`` for a missing, negative or unparseable value.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
        except ValueError:
            ms = -1.0
        if ms >= 0:
            return ms / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(seconds, 0.0)
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        return None
    return seconds


def retry_reason(
    exc: BaseException,
    policy: RetryPolicy,
    *,
    server_errors_seen: int,
    resend_safe: bool,
) -> str | None:
    """Why ``exc`` may be retried, or ``None`` when it must propagate."""
    if isinstance(exc, APIStatusError):
        if exc.error_code in OLBRAIN_BILLING_CODES:
            return None  # the organization cannot pay: waiting will not change that, even on 503
        if exc.status in _BACKOFF_STATUSES:
            return f"status {exc.status}"
        if exc.status == 500 and policy.retry_server_error_once and server_errors_seen <= 1:
            return "status 500 (retried once)"
        if exc.status == 429 and policy.retry_rate_limited:
            if exc.retry_after is not None and exc.retry_after > policy.wait_max:
                return None  # retrying sooner than the server asked would just be refused
            return "status 429 (opted in)"
        return None
    if isinstance(exc, APIConnectionError):
        if not exc.request_sent:
            return f"{type(exc).__name__} before the request was sent"
        if resend_safe:
            return f"{type(exc).__name__} (repeating this request is safe)"
    return None


def _describe_failure(exc: BaseException) -> str:
    if isinstance(exc, APIStatusError):
        return f"status {exc.status}"
    return type(exc).__name__


async def call_with_retry(
    policy: RetryPolicy,
    attempt: Callable[[int], Awaitable[T]],
    *,
    what: str,
    resend_safe: bool = True,
) -> T:
    """Run ``attempt(n)`` (n = 1, 2, …) until it succeeds or must stop.

    ``attempt`` receives its attempt number so a caller can, before repeating a request that
    may have reached the server, first check whether it already took effect. ``what`` names
    the call in logs (method and path, never credentials).
    """
    started = policy.clock()
    server_errors_seen = 0

    def should_retry(state: RetryCallState) -> bool:
        nonlocal server_errors_seen
        outcome = state.outcome
        if outcome is None or not outcome.failed:
            return False
        exc = outcome.exception()
        assert exc is not None
        if isinstance(exc, APIStatusError) and exc.status == 500:
            server_errors_seen += 1
        reason = retry_reason(
            exc, policy, server_errors_seen=server_errors_seen, resend_safe=resend_safe
        )
        if reason is None:
            logger.debug(
                "%s: not retrying %s (attempt %d)%s",
                what,
                _describe_failure(exc),
                state.attempt_number,
                _request_id_suffix(exc),
            )
            return False
        return True

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = exc.retry_after if isinstance(exc, APIStatusError) else None
        return policy.wait_for(state.attempt_number, retry_after)

    def stop(state: RetryCallState) -> bool:
        elapsed = policy.clock() - started
        if elapsed + state.upcoming_sleep <= policy.wait_budget:
            return False
        exc = state.outcome.exception() if state.outcome else None
        logger.debug(
            "%s: giving up after %d attempts over %.2f s: %s%s",
            what,
            state.attempt_number,
            elapsed,
            _describe_failure(exc) if exc else "?",
            _request_id_suffix(exc),
        )
        return True

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        logger.debug(
            "%s: retrying after %s in %.2f s (attempt %d failed)%s",
            what,
            _describe_failure(exc) if exc else "?",
            state.upcoming_sleep,
            state.attempt_number,
            _request_id_suffix(exc),
        )

    attempt_number = 0

    async def one_attempt() -> T:
        nonlocal attempt_number
        attempt_number += 1
        return await attempt(attempt_number)

    retrying = AsyncRetrying(
        retry=should_retry,
        wait=wait,
        stop=stop,
        sleep=policy.sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return await retrying(one_attempt)
    except APIStatusError as exc:
        exc.attempts = attempt_number
        raise
    finally:
        # tenacity's iteration state holds bound methods of the retrying object: a cycle per
        # call, which also kept whatever the policy's sleep refers to (a whole stream) alive
        # until a full garbage collection. Under load that lengthened the collector's pauses.
        retrying.iter_state.reset()


def _request_id_suffix(exc: BaseException | None) -> str:
    if isinstance(exc, GenieError) and exc.request_id:
        return f" [request_id={exc.request_id}]"
    return ""
