"""Serving a run as SSE: replay from a start point, then live, with pings and stream faults.

One writer coroutine per connection (the aiohttp handler itself). It owns a cursor into the
run's event list and sleeps on the run's `Signal` with a timeout equal to the time left until
the next ping is due, so an idle stream costs one timer and no task.
"""

from __future__ import annotations

import asyncio
import random

from aiohttp import web

from ._faults import StreamFault
from ._framing import interrupt_frame, ping_frame
from ._model import SimRun
from ._state import World

__all__ = ["serve_run"]

_FLUSH_LIMIT = 2.0  # seconds to wait for written bytes to leave before an abort
# Faults that fire at an event boundary once `after_events` events were written.
_AT_BOUNDARY = frozenset({"abort", "eof", "interrupt"})


async def serve_run(
    request: web.Request, world: World, run: SimRun, *, after_seq: int, request_id: str
) -> web.StreamResponse:
    """Stream ``run`` from the event after ``after_seq`` until ``processing.finished``."""
    index = run.connections
    run.connections += 1
    fault = next((f for f in run.faults if f.applies_to(index)), None)
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "x-request-id": request_id,
        },
    )
    writer = _Writer(request, response, world, run, fault=fault, index=index)
    world.open_streams += 1
    world.streams.add(writer)
    try:
        await response.prepare(request)
        await writer.serve(after_seq)
    except ConnectionError:
        pass  # the client went away; the run carries on server-side
    finally:
        world.streams.discard(writer)
        world.open_streams -= 1
    return response


class _Writer:
    """The state of one SSE connection."""

    def __init__(
        self,
        request: web.Request,
        response: web.StreamResponse,
        world: World,
        run: SimRun,
        *,
        fault: StreamFault | None,
        index: int,
    ) -> None:
        self._request = request
        self._response = response
        self._world = world
        self._run = run
        self._fault = fault
        self._config = world.config
        self._loop = asyncio.get_running_loop()
        self._last_write = self._loop.time()
        self._rng: random.Random | None = (
            world.ids.fragment_rng(run.run_id, index) if world.config.fragment else None
        )
        # A "trickle" fault: its own seeded piece sizes, armed once `after_events` are out.
        self._trickle: random.Random | None = None
        self._trickle_seed = f"trickle:{fault.seed}:{index}" if fault is not None else ""
        self._cut_written = 0  # "abort_at_byte": event bytes written since the fault armed

    def abort(self) -> None:
        """Drop the TCP connection at once (no chunked terminator)."""
        transport = self._request.transport
        if transport is not None:
            transport.abort()

    async def serve(self, after_seq: int) -> None:
        """Replay, then follow the run live, applying this connection's fault if any."""
        run, fault, world = self._run, self._fault, self._world
        cursor = min(after_seq, len(run.events))  # seq n is events[n - 1]
        written = 0
        stalled = False
        pause_deadline: float | None = None
        pinged_in_pause = False
        while not world.closing:
            wake = run.signal.future()
            if fault is not None and not stalled and written >= fault.after_events:
                if fault.kind == "stall":
                    stalled = True
                elif fault.kind in _AT_BOUNDARY:
                    await self._fire(fault, cursor)
                    return
                elif fault.kind == "trickle" and self._trickle is None:
                    self._trickle = random.Random(self._trickle_seed)
            if not stalled and cursor < len(run.events):
                event = run.events[cursor]
                if (
                    fault is not None
                    and fault.kind == "abort_mid_event"
                    and written >= fault.after_events
                ):
                    await self._write(event.frame[: len(event.frame) // 2])
                    await self._flush_and_abort()
                    return
                if (
                    fault is not None
                    and fault.kind == "abort_at_byte"
                    and written >= fault.after_events
                ):
                    remaining = fault.at_byte - self._cut_written
                    if remaining <= len(event.frame):
                        if remaining:
                            await self._write(event.frame[:remaining])
                        await self._flush_and_abort()
                        return
                    self._cut_written += len(event.frame)
                await self._write(event.frame)
                cursor += 1
                written += 1
                if event.type == "processing.finished":
                    await self._response.write_eof()
                    return
                continue
            if not stalled and run.finished:
                await self._response.write_eof()  # resumed after the end: nothing left
                return
            now = self._loop.time()
            if not stalled and run.parked:
                # Parked on a runtime connection: keep-alives, then the interrupt, then close.
                if pause_deadline is None:
                    pause_deadline = now + self._config.auth_interrupt_after
                if now >= pause_deadline:
                    if not pinged_in_pause:
                        await self._ping()
                    await self._write(self._interrupt(cursor, "runtime_connection_pending", 1000))
                    await self._response.write_eof()
                    return
            next_ping = self._last_write + self._config.ping_interval
            if now >= next_ping:
                await self._ping()
                pinged_in_pause = pause_deadline is not None
                continue
            timeout = next_ping - now
            if pause_deadline is not None:
                timeout = min(timeout, pause_deadline - now)
            await asyncio.wait(
                (wake, world.closing_signal.future()),
                timeout=timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        self.abort()

    async def _fire(self, fault: StreamFault, cursor: int) -> None:
        if fault.kind == "abort":
            await self._flush_and_abort()
        elif fault.kind == "eof":
            await self._response.write_eof()
        else:  # interrupt
            await self._write(self._interrupt(cursor, "timeout", fault.retry_after_ms))
            await self._response.write_eof()

    def _interrupt(self, cursor: int, reason: str, retry_after_ms: int | None) -> bytes:
        # last_seq_num is the seq of the last persisted event this connection has covered
        # (replayed, written or skipped via Last-Event-ID), which keeps fault output exact.
        last_seq = self._run.events[cursor - 1].seq_num if cursor else 0
        return interrupt_frame(
            self._run.run_id, last_seq, reason, retry_after_ms, self._config.line_ending
        )

    async def _ping(self) -> None:
        await self._write(ping_frame(self._world.clock.isoformat(), self._config.line_ending))

    async def _write(self, data: bytes) -> None:
        if self._trickle is not None and self._fault is not None:
            # Slow trickle: tiny pieces, each its own chunk, with a real pause in between.
            largest, pause = self._fault.piece_bytes, self._fault.piece_delay
            position = 0
            while position < len(data):
                size = self._trickle.randint(1, largest)
                await self._response.write(data[position : position + size])
                position += size
                if position < len(data):
                    await asyncio.sleep(pause)
        elif self._rng is None:
            await self._response.write(data)
        else:
            # Seeded random piece sizes, each its own chunk, with a loop turn in between so a
            # client in the same process really reads them separately.
            biggest = max(48, len(data) // 128)
            position = 0
            while position < len(data):
                size = self._rng.randint(1, biggest)
                await self._response.write(data[position : position + size])
                await asyncio.sleep(0)
                position += size
        self._last_write = self._loop.time()

    async def _flush_and_abort(self) -> None:
        # transport.abort() discards unsent bytes; wait (briefly, fault path only) until the
        # kernel has everything we meant the client to see. asyncio offers no "buffer empty"
        # notification without touching aiohttp's protocol internals, hence the short poll.
        transport = self._request.transport
        deadline = self._loop.time() + _FLUSH_LIMIT
        while (  # noqa: ASYNC110
            transport is not None
            and not transport.is_closing()
            and transport.get_write_buffer_size() > 0
            and self._loop.time() < deadline
        ):
            await asyncio.sleep(0.001)
        self.abort()
