"""Test plumbing that keeps concurrent chaos turns from affecting one another.

* `ScopedFaults`: HTTP faults queued for ONE conversation. The simulator's `sim.fail` queues
  are per route and global, so with eight conversations in flight a 503 meant for one turn
  would be served to whichever conversation asked first, and a run could not be reproduced
  from its seed. Each conversation gets its own `FaultQueue` (same semantics: FIFO, ``times``,
  ``after_accept``, ``after_pages``); a middleware tells the queue which conversation the
  current request belongs to. Faults nobody asked for stay in the global queue as before.
* `TurnClocks`: one `VirtualClock` per turn. A single virtual clock shared by concurrent
  turns adds up everybody's backoff, so eight turns retrying at once would exhaust each
  other's 600 s retry budget, which real (parallel) time never does.

Both reach into the simulator's private ``_world`` (documented here, test-only): the public
`GenieSimulator.fail` has no per-conversation scope.
"""

from __future__ import annotations

import collections
import contextvars
from collections.abc import Awaitable, Callable

from aiohttp import web

from genie_async.testing import ROUTES, GenieSimulator, HttpFault, VirtualClock
from genie_async.testing._faults import FaultQueue

_REQUEST_CONVERSATION: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "chaos_request_conversation", default=None
)
_TURN_CLOCK: contextvars.ContextVar[VirtualClock | None] = contextvars.ContextVar(
    "chaos_turn_clock", default=None
)


class ScopedFaults(FaultQueue):
    """The simulator's fault queue, plus one queue per conversation (consulted first)."""

    def __init__(self) -> None:
        super().__init__()
        self._scoped: dict[str, FaultQueue] = {}
        self.served: collections.Counter[str] = collections.Counter()  # per conversation
        self.served_routes: collections.Counter[str] = collections.Counter()

    @classmethod
    def install(cls, sim: GenieSimulator) -> ScopedFaults:
        """Replace ``sim``'s fault queue and add the scoping middleware (before start)."""
        queue = cls()
        world = sim._world
        world.faults = queue

        @web.middleware
        async def scope(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            cid = request.match_info.get("cid") or request.query.get("conversation_id")
            attempt = request.match_info.get("attempt")
            if cid is None and attempt is not None and attempt in world.attempts:
                cid = world.attempts[attempt].conversation_id
            token = _REQUEST_CONVERSATION.set(cid)
            try:
                return await handler(request)
            finally:
                _REQUEST_CONVERSATION.reset(token)

        sim.app.middlewares.append(scope)
        return queue

    def push_for(self, conversation_id: str, fault: HttpFault) -> None:
        """Queue ``fault`` for requests about ``conversation_id`` only."""
        self._scoped.setdefault(conversation_id, FaultQueue()).push(fault)

    def discard_for(self, conversation_id: str) -> int:
        """Drop what is left for ``conversation_id``; returns how many responses that was."""
        queue = self._scoped.pop(conversation_id, None)
        if queue is None:
            return 0
        return sum(queue.pending(route) for route in ROUTES)

    def take(self, route: str) -> HttpFault | None:
        return self._scoped_take(route, after_accept=False) or super().take(route)

    def take_after_accept(self, route: str) -> HttpFault | None:
        return self._scoped_take(route, after_accept=True) or super().take_after_accept(route)

    def _scoped_take(self, route: str, *, after_accept: bool) -> HttpFault | None:
        cid = _REQUEST_CONVERSATION.get()
        queue = self._scoped.get(cid) if cid is not None else None
        if queue is None:
            return None
        fault = queue.take_after_accept(route) if after_accept else queue.take(route)
        if fault is not None and cid is not None:
            self.served[cid] += 1
            self.served_routes[route] += 1
        return fault


class TurnClocks:
    """``clock``/``sleep`` for a `RetryPolicy`: the `VirtualClock` of the current turn.

    `bind` gives the calling task (and every task it starts afterwards, which copy its
    context) a fresh clock; outside any turn a shared fallback clock is used.
    """

    def __init__(self) -> None:
        self.fallback = VirtualClock()
        self.slept = 0.0  # virtual seconds, all turns together

    def bind(self) -> VirtualClock:
        clock = VirtualClock()
        _TURN_CLOCK.set(clock)
        return clock

    def _current(self) -> VirtualClock:
        return _TURN_CLOCK.get() or self.fallback

    def now(self) -> float:
        return self._current().now()

    async def sleep(self, seconds: float) -> None:
        self.slept += max(0.0, seconds)
        await self._current().sleep(seconds)
