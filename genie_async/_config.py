"""Immutable client configuration: timeouts and the retry policy."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from . import _constants as C
from .errors import ConfigurationError

__all__ = ["RetryPolicy", "Timeouts"]


def _require_positive(name: str, value: float | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    valid = isinstance(value, (int, float)) and value > 0 and not math.isinf(value)
    if not valid:
        raise ConfigurationError(
            f"{name} must be a positive, finite number of seconds, not {value!r}"
        )


@dataclass(frozen=True)
class Timeouts:
    """Timeouts in seconds.

    Streams have no total timeout: a turn can legitimately last many minutes.

    Attributes:
        connect: Establishing a connection (TCP + TLS).
        read: Longest silence between two reads of any response. Must exceed the server's
            keep-alive interval (~30 s) or paused turns would be cut off.
        request: Whole duration of one non-streaming request attempt.
        stall: Longest time a turn may go without a *meaningful* event; keep-alives do not
            count and the clock stops while a pause waits on your decision or your user.
            ``None`` disables it. Expiry raises :class:`~genie_async.errors.StreamStalledError`.
        decision: How long a skill confirmation may wait for a decision (hook or
            ``stream.approve``/``reject``) before it is rejected (fail closed).
        auth: How long a runtime-connection pause may wait for the end user to authorize.
    """

    connect: float = C.DEFAULT_CONNECT_TIMEOUT
    read: float = C.DEFAULT_READ_TIMEOUT
    request: float = C.DEFAULT_REQUEST_TIMEOUT
    stall: float | None = C.DEFAULT_STALL_TIMEOUT
    decision: float = C.DEFAULT_DECISION_TIMEOUT
    auth: float = C.DEFAULT_AUTH_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("connect", "read", "request", "decision", "auth"):
            _require_positive(f"Timeouts.{name}", getattr(self, name))
        _require_positive("Timeouts.stall", self.stall, allow_none=True)


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before retrying a failed call.

    Retried: 502, 503 and 504, and connection failures before a response; a 500 once; a
    429 only with ``retry_rate_limited=True``. Never any other 4xx.

    The wait before retry *n* (1-based) is::

        backoff(n) = min(wait_max, wait_initial * wait_exp_base ** (n - 1)) * (1 - wait_jitter * U)

    with ``U`` uniform in [0, 1): jitter only ever shortens a wait, so it never exceeds
    ``wait_max``. A ``Retry-After`` header of at most ``wait_max`` seconds raises the wait to
    at least that value (jitter never goes below it). Retrying stops, re-raising the last
    error, when the next wait would end past ``wait_budget`` seconds after the first attempt.

    The same backoff and budget bound the reconnects and replays of a dropped stream.

    ``clock`` and ``sleep`` are injectable so tests can run the 10-minute budget in
    milliseconds (see :class:`genie_async.testing.VirtualClock`).
    """

    wait_initial: float = C.DEFAULT_WAIT_INITIAL
    wait_max: float = C.DEFAULT_WAIT_MAX
    wait_exp_base: float = C.DEFAULT_WAIT_EXP_BASE
    wait_jitter: float = C.DEFAULT_WAIT_JITTER
    wait_budget: float = C.DEFAULT_WAIT_BUDGET
    retry_server_error_once: bool = True
    retry_rate_limited: bool = False
    reconnect_attempts: int = C.DEFAULT_RECONNECT_ATTEMPTS
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    sleep: Callable[[float], Awaitable[None]] = field(default=_sleep, repr=False, compare=False)
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        _require_positive("RetryPolicy.wait_initial", self.wait_initial)
        _require_positive("RetryPolicy.wait_max", self.wait_max)
        _require_positive("RetryPolicy.wait_budget", self.wait_budget)
        if self.wait_initial > self.wait_max:
            raise ConfigurationError("RetryPolicy.wait_initial must not exceed wait_max")
        if not self.wait_exp_base >= 1:
            raise ConfigurationError("RetryPolicy.wait_exp_base must be at least 1")
        if not 0 <= self.wait_jitter < 1:
            raise ConfigurationError("RetryPolicy.wait_jitter must be in [0, 1)")
        if self.reconnect_attempts < 0:
            raise ConfigurationError("RetryPolicy.reconnect_attempts must be >= 0")

    @classmethod
    def disabled(cls) -> RetryPolicy:
        """A policy that never retries (the budget is spent by the first wait)."""
        return cls(wait_initial=1.0, wait_max=1.0, wait_budget=1e-9, retry_server_error_once=False)

    def backoff(self, retry_number: int) -> float:
        """The jittered wait before retry ``retry_number`` (1-based), without Retry-After."""
        # Cap the exponent so huge attempt numbers cannot overflow the float.
        exponent = min(max(retry_number - 1, 0), 64)
        base = min(self.wait_max, self.wait_initial * self.wait_exp_base**exponent)
        return base * (1.0 - self.wait_jitter * self.random())

    def wait_for(self, retry_number: int, retry_after: float | None) -> float:
        """The wait before retry ``retry_number``, honouring a usable ``Retry-After``."""
        wait = self.backoff(retry_number)
        if retry_after is not None and 0 <= retry_after <= self.wait_max:
            wait = max(wait, retry_after)
        return wait
