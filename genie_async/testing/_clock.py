"""Clocks: the simulator's adjustable wall clock and a virtual clock for retry tests.

`SimClock` is real time plus an offset that tests move forward with `advance()`, so retention
(24 h), link expiry (5 min), topic and propagation delays can be exercised without sleeping.
It also hands out the unique, strictly increasing microsecond stamps every persisted event
and message carries, which is what makes inclusive `since_created_at` paging repeat exactly one
boundary event per page.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timedelta, timezone

__all__ = ["SimClock", "VirtualClock", "format_timestamp", "parse_timestamp"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))$"
)


def format_timestamp(micros: int) -> str:
    """Render epoch microseconds as RFC 3339 UTC with six fractional digits and ``Z``."""
    moment = _EPOCH + timedelta(microseconds=micros)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> int:
    """Parse an RFC 3339 timestamp (any fraction length, ``Z`` or an offset) to epoch µs.

    Raises `ValueError` on anything else. Written by hand because Python 3.10's
    `datetime.fromisoformat` rejects ``Z`` and most fraction lengths.
    """
    match = _RFC3339.match(text.strip())
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    moment = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=timezone.utc
    )
    micros = (moment - _EPOCH) // timedelta(microseconds=1)
    if fraction:
        micros += int(fraction[:6].ljust(6, "0"))
    if not zulu:
        offset = (int(off_h) * 60 + int(off_m)) * 60_000_000
        micros -= offset if sign == "+" else -offset
    return micros


class SimClock:
    """The simulator's notion of "now": real time plus an adjustable offset.

    ``sim.clock.advance(3600)`` makes the simulator behave as if an hour had passed (for
    retention, link expiry and delays measured on this clock); real timers such as pings and
    step delays are unaffected.
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._last_stamp = 0

    @property
    def offset(self) -> float:
        """Seconds added to the real time."""
        return self._offset

    def now(self) -> float:
        """Current simulated time as epoch seconds."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move simulated time forward (or back, with a negative value) by ``seconds``."""
        self._offset += seconds

    def now_micros(self) -> int:
        """Current simulated time as epoch microseconds (not unique)."""
        return int(self.now() * 1_000_000)

    def stamp(self) -> int:
        """A unique, strictly increasing epoch-µs stamp for a persisted record.

        Ties (or a clock moved backwards) are bumped by 1 µs past the previous stamp, so no two
        records of one simulator ever share a ``created_at``.
        """
        self._last_stamp = max(self.now_micros(), self._last_stamp + 1)
        return self._last_stamp

    def isoformat(self) -> str:
        """Current simulated time in the wire format (used for ping timestamps)."""
        return format_timestamp(self.now_micros())


class VirtualClock:
    """A fake clock for retry tests: `sleep` returns at once and advances `now`.

    Pass ``clock=clock.now`` and ``sleep=clock.sleep`` to a retry policy, then assert on
    ``clock.sleeps`` (every requested duration, in order).
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        """The virtual time in seconds."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Record ``seconds``, advance the virtual time, and yield once to the event loop."""
        self.sleeps.append(seconds)
        self._now += max(0.0, seconds)
        await asyncio.sleep(0)
