"""Fault injection: stream faults (per SSE connection of a run) and HTTP faults (per route).

Both are deterministic. A `StreamFault` is attached to a `Turn` and fires on the Nth SSE
connection of that turn's run after a fixed number of persisted events; an `HttpFault` sits in a
per-route FIFO and replaces the next response(s) of that route.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Literal, get_args

__all__ = [
    "ROUTES",
    "FaultQueue",
    "HttpFault",
    "StreamFault",
    "StreamFaultKind",
]

StreamFaultKind = Literal[
    "abort", "abort_mid_event", "abort_at_byte", "eof", "interrupt", "stall", "trickle"
]
RouteName = Literal[
    "create_conversation",
    "list_conversations",
    "get_conversation",
    "delete_conversation",
    "send",
    "reconnect",
    "messages",
    "events",
    "upload",
    "skill_approval",
    "business_approval",
    "link",
    "reject",
    "feedback",
]
#: Route names accepted by `GenieSimulator.fail` and used in `RequestRecord.route`.
ROUTES: frozenset[str] = frozenset(get_args(RouteName))
_PAGED_ROUTES = frozenset({"events", "messages", "list_conversations"})


@dataclass(frozen=True)
class StreamFault:
    """A misbehaviour of one SSE connection of a run.

    ``kind``:

    - ``"abort"``: after ``after_events`` persisted events, abort the TCP transport (no chunked
      terminator; the client sees a payload error).
    - ``"abort_mid_event"``: write the first half of the bytes of the next event, flush, abort.
    - ``"eof"``: after ``after_events`` events, end the response cleanly without
      ``processing.finished``.
    - ``"interrupt"``: after ``after_events`` events, write ``system.stream_interrupted``
      (reason ``"timeout"``, ``retry_after_ms``, ``last_seq_num``) and end cleanly.
    - ``"stall"``: after ``after_events`` events, write only pings on this connection.
    - ``"abort_at_byte"``: after ``after_events`` events, write ``at_byte`` more bytes of the
      following event frames (cutting wherever that lands: inside a line, inside a UTF-8
      character, between CR and LF), flush, abort. Pings and control frames are written whole
      and not counted, so the cut falls at the same place whatever the timing. Nothing happens
      if the connection's events end first.
    - ``"trickle"``: from ``after_events`` events on, write every frame (pings included) in
      pieces of 1 to ``piece_bytes`` bytes with ``piece_delay`` seconds between pieces; sizes
      come from an RNG seeded with ``seed`` and the connection index. Nothing is lost.

    ``connection`` selects the run's SSE connection by opening order (0 = the first, normally
    the POST stream; 1 = the next, normally the first ``genie-runs`` reconnect); ``None``
    applies the fault to every connection. Pings never count as events. The run itself always
    continues server-side.
    """

    kind: StreamFaultKind
    after_events: int = field(default=0, kw_only=True)
    connection: int | None = field(default=0, kw_only=True)
    retry_after_ms: int | None = field(default=50, kw_only=True)
    at_byte: int = field(default=0, kw_only=True)
    piece_bytes: int = field(default=16, kw_only=True)
    piece_delay: float = field(default=0.001, kw_only=True)
    seed: int = field(default=0, kw_only=True)

    def __post_init__(self) -> None:
        if self.kind not in get_args(StreamFaultKind):
            raise ValueError(f"unknown stream fault kind {self.kind!r}")
        if self.after_events < 0:
            raise ValueError("after_events must be >= 0")
        if self.at_byte < 0:
            raise ValueError("at_byte must be >= 0")
        if self.piece_bytes < 1:
            raise ValueError("piece_bytes must be >= 1")
        if self.piece_delay < 0:
            raise ValueError("piece_delay must be >= 0")
        if self.connection is not None and self.connection < 0:
            raise ValueError("connection must be >= 0 or None")

    def applies_to(self, connection: int) -> bool:
        """Whether this fault targets the run's ``connection``-th SSE connection."""
        return self.connection is None or self.connection == connection


@dataclass(frozen=True)
class HttpFault:
    """A replacement response for one route, queued with `GenieSimulator.fail`.

    ``kind="status"`` answers ``status`` with a body per ``body`` (``"json"`` error body,
    ``"html"`` gateway page, ``"empty"``) and an optional raw ``Retry-After`` header.
    ``kind="reset"`` aborts the connection without any response. ``after_accept`` (route
    ``"send"`` only) lets the message be accepted (history + run) before the error is returned.
    ``after_pages=k`` (listing routes) lets ``k`` requests succeed before each failure.
    """

    route: str
    status: int
    times: int = 1
    retry_after: str | None = None
    body: Literal["json", "html", "empty"] = "json"
    after_accept: bool = False
    after_pages: int = 0
    kind: Literal["status", "reset"] = "status"

    def __post_init__(self) -> None:
        if self.route not in ROUTES:
            raise ValueError(f"unknown route {self.route!r}; expected one of {sorted(ROUTES)}")
        if self.kind not in ("status", "reset"):
            raise ValueError(f"unknown HTTP fault kind {self.kind!r}")
        if self.kind == "status" and not 100 <= self.status <= 599:
            raise ValueError(f"invalid status {self.status}")
        if self.times < 1:
            raise ValueError("times must be >= 1")
        if self.body not in ("json", "html", "empty"):
            raise ValueError(f"unknown body style {self.body!r}")
        if self.after_accept and self.route != "send":
            raise ValueError("after_accept applies to the 'send' route only")
        if self.after_pages < 0:
            raise ValueError("after_pages must be >= 0")
        if self.after_pages and self.route not in _PAGED_ROUTES:
            raise ValueError(f"after_pages applies to {sorted(_PAGED_ROUTES)} only")


@dataclass
class _Entry:
    fault: HttpFault
    remaining: int
    passed: int = field(default=0)


class FaultQueue:
    """Per-route FIFOs of `HttpFault`, consumed one response at a time."""

    def __init__(self) -> None:
        self._queues: dict[str, collections.deque[_Entry]] = collections.defaultdict(
            collections.deque
        )

    def push(self, fault: HttpFault) -> None:
        """Queue ``fault`` behind any already queued for its route."""
        self._queues[fault.route].append(_Entry(fault, fault.times))

    def pending(self, route: str) -> int:
        """How many faulty responses are still queued for ``route``."""
        return sum(entry.remaining for entry in self._queues.get(route, ()))

    def clear(self) -> None:
        """Drop every queued fault."""
        self._queues.clear()

    def take(self, route: str) -> HttpFault | None:
        """The fault to answer this request of ``route`` with, if any (consuming it).

        An ``after_accept`` fault at the head is left for `take_after_accept`; an
        ``after_pages`` fault lets its quota of requests through first, then fires and resets
        its quota for the next listing.
        """
        queue = self._queues.get(route)
        if not queue:
            return None
        entry = queue[0]
        if entry.fault.after_accept:
            return None
        if entry.passed < entry.fault.after_pages:
            entry.passed += 1
            return None
        return self._consume(queue, entry)

    def take_after_accept(self, route: str) -> HttpFault | None:
        """The head fault of ``route`` if it is an ``after_accept`` one (consuming it)."""
        queue = self._queues.get(route)
        if not queue or not queue[0].fault.after_accept:
            return None
        return self._consume(queue, queue[0])

    @staticmethod
    def _consume(queue: collections.deque[_Entry], entry: _Entry) -> HttpFault:
        entry.remaining -= 1
        entry.passed = 0
        if entry.remaining == 0:
            queue.popleft()
        return entry.fault
