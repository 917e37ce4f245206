"""Streaming throughput of genie_async against three references, over loopback.

One Genie turn of ``--events`` ``agent.message`` events (100,000 by default, plus
``processing.started``, ``processing.finished`` and a ``system.ping`` every 1,000 events) is
generated once by a server in a separate process (``benchmarks/_server.py``), which sends
every client the very same bytes in 64 KiB writes. Four contestants read it, interleaved
round by round (a, b, c, genie_async, a, b, c, ...), the first round a discarded warm-up:

(a) ``raw``: aiohttp ``iter_any()`` reading the bytes with no parsing at all: the ceiling.
(b) ``naive``: a minimal correct SSE parser plus a msgspec decode of each event into a
    Struct, written plainly: the baseline any library's machinery is measured against.
(c) ``sse-client``: aiohttp-sse-client 0.2.1 framing the events, the same msgspec decode.
(d) ``genie_async``: ``GenieClient(...).conversation(cid).send(...)`` with everything on:
    typed events, keep-alive filtering, cursor tracking, dedupe, the stall watchdog.

Every contestant's count is checked against the body the server reports; a miscount stops
the run. The targets (genie_async at least as fast as (b), and at least 5x (c)) are printed,
never asserted. Usage::

    python benchmarks/bench_stream.py                 # 100,000 events, 5 rounds
    python benchmarks/bench_stream.py --quick         # smoke run: 10,000 events, 2 rounds
    python benchmarks/bench_stream.py --profile genie_async   # cProfile of one run
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import gc
import importlib
import json
import os
import platform
import pstats
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import msgspec

import genie_async
from genie_async.events import ProcessingFinished

SERVER_SCRIPT = Path(__file__).with_name("_server.py")
SERVER_START_TIMEOUT = 120.0
GENIE_ID = "gin-AaNpL4XP-baNnFY-CD"
CONVERSATION_ID = "6f1c2a3e-0b7d-4c59-9e4a-2d8f1b0c7a11"
PING = "system.ping"
FINISHED = "processing.finished"

DEFAULT_EVENTS = 100_000
DEFAULT_ROUNDS = 5
QUICK_EVENTS = 10_000
QUICK_ROUNDS = 2
TARGET_VS_NAIVE = 1.0
TARGET_VS_SSE_CLIENT = 5.0


class MiscountError(RuntimeError):
    """A contestant delivered a different number of events than the server sent."""


@dataclass(frozen=True)
class StreamFacts:
    """What the server sends, from its ready line."""

    base_url: str
    bytes: int
    frames: int  # SSE frames, keep-alives included
    events: int  # frames a client must deliver: started + messages + finished
    pings: int
    message_bytes: int


# --- (b) and (c): the event shape a plain msgspec user would write ---------------------------


class Event(msgspec.Struct):
    """The fields of a Genie event, all of them optional but ``type``."""

    type: str
    event_id: str | None = None
    conversation_id: str | None = None
    genie_run_id: str | None = None
    seq_num: int | None = None
    created_at: str | None = None
    message: str | None = None
    message_id: str | None = None


EVENT_DECODER = msgspec.json.Decoder(Event)


def _check_last(name: str, last: Event | None, facts: StreamFacts) -> None:
    if last is None or last.type != FINISHED or last.seq_num != facts.events:
        raise MiscountError(f"{name}: the last event was {last!r}, not processing.finished")


# --- the contestants -------------------------------------------------------------------------


async def raw_read(facts: StreamFacts) -> int:
    """(a) The bytes and nothing else; returns the SSE frames seen (counted by blank lines)."""
    total = 0
    frames = 0
    open_line = False  # the previous chunk ended with a lone "\n"
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{facts.base_url}/stream") as response,
    ):
        response.raise_for_status()
        async for chunk in response.content.iter_any():
            total += len(chunk)
            frames += chunk.count(b"\n\n")
            if open_line and chunk[:1] == b"\n":
                frames += 1  # a blank line split across two chunks
            open_line = chunk[-1:] == b"\n" and chunk[-2:] != b"\n\n"
    if total != facts.bytes:
        raise MiscountError(f"raw read: {total:,} bytes received, {facts.bytes:,} sent")
    return frames


async def naive_events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Event]]:
    """A minimal correct SSE parser for an LF-framed stream: yields (last event id, event).

    Events are split on the blank line; ``event``, ``data`` (joined with ``\\n``) and ``id``
    fields are read, comments and unknown fields ignored, keep-alives skipped by name, and
    each event's data decoded by msgspec. An async generator, so its consumer reads it with
    ``async for`` exactly like genie_async's stream and aiohttp-sse-client's source.
    """
    last_id = ""
    buffer = b""
    async for chunk in response.content.iter_any():
        buffer += chunk
        *frames, buffer = buffer.split(b"\n\n")
        for frame in frames:
            name = "message"
            data: list[bytes] = []
            for line in frame.split(b"\n"):
                if not line or line.startswith(b":"):
                    continue
                field, _, value = line.partition(b":")
                if value.startswith(b" "):
                    value = value[1:]
                if field == b"data":
                    data.append(value)
                elif field == b"event":
                    name = value.decode()
                elif field == b"id":
                    last_id = value.decode()
            if data and name != PING:
                yield last_id, EVENT_DECODER.decode(b"\n".join(data))


async def naive(facts: StreamFacts) -> int:
    """(b) ``naive_events`` over ``iter_any()``."""
    count = 0
    last: tuple[str, Event] | None = None
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{facts.base_url}/stream") as response,
    ):
        response.raise_for_status()
        async for item in naive_events(response):
            last = item
            count += 1
    last_id, last_event = last if last is not None else ("", None)
    _check_last("naive", last_event, facts)
    if last_event is None or last_id != last_event.event_id:
        raise MiscountError(f"naive: last id {last_id!r} is not the last event's id")
    return count


def load_sse_client() -> ModuleType | None:
    """aiohttp-sse-client's ``client`` module, or None when it is not installed."""
    try:
        return importlib.import_module("aiohttp_sse_client.client")
    except ImportError:
        return None


async def sse_client(facts: StreamFacts) -> int:
    """(c) aiohttp-sse-client framing the events; decoded with msgspec like (b)."""
    module = load_sse_client()
    assert module is not None
    count = 0
    last: Event | None = None
    async with aiohttp.ClientSession() as session:
        # It reconnects when the body ends: no connect retries, and we leave on the final
        # event so the reconnect loop is never entered.
        source: Any = module.EventSource(
            f"{facts.base_url}/stream",
            session=session,
            max_connect_retry=0,
            reconnection_time=dt.timedelta(0),
        )
        async with source:
            async for message in source:
                if message.type == PING:
                    continue
                last = EVENT_DECODER.decode(message.data)
                count += 1
                if message.type == FINISHED:
                    break
    _check_last("aiohttp-sse-client", last, facts)
    return count


async def genie(facts: StreamFacts) -> int:
    """(d) genie_async with its defaults: a real client, a real turn, every event typed."""
    count = 0
    last: object = None
    async with genie_async.GenieClient(
        GENIE_ID, base_url=facts.base_url, api_key="f" * 64, user_id="bench-user"
    ) as client:
        async with client.conversation(CONVERSATION_ID).send("bench") as stream:
            async for event in stream:
                last = event
                count += 1
        if stream.outcome != "completed":
            raise MiscountError(f"genie_async: the turn ended with outcome {stream.outcome!r}")
    if not isinstance(last, ProcessingFinished) or last.seq_num != facts.events:
        raise MiscountError(f"genie_async: the last event was {last!r}")
    return count


@dataclass(frozen=True)
class Contestant:
    key: str
    label: str
    run: Callable[[StreamFacts], Awaitable[int]]
    counts_frames: bool = False  # (a) counts raw frames, keep-alives included

    def expected(self, facts: StreamFacts) -> int:
        return facts.frames if self.counts_frames else facts.events


RAW = Contestant("a", "(a) raw aiohttp read", raw_read, counts_frames=True)
NAIVE = Contestant("b", "(b) naive SSE + msgspec", naive)
SSE_CLIENT = Contestant("c", "(c) aiohttp-sse-client", sse_client)
GENIE = Contestant("genie_async", "genie_async", genie)
ALL = (RAW, NAIVE, SSE_CLIENT, GENIE)


async def run_once(contestant: Contestant, facts: StreamFacts) -> float:
    """One timed read of the whole turn (session set-up and teardown included); seconds."""
    gc.collect()
    start = time.perf_counter()
    count = await contestant.run(facts)
    elapsed = time.perf_counter() - start
    if count != contestant.expected(facts):
        raise MiscountError(
            f"{contestant.label}: counted {count:,}, expected {contestant.expected(facts):,}"
        )
    return elapsed


# --- the server process ----------------------------------------------------------------------


class Server:
    """``_server.py`` in a child process; its ready line gives the port and the body's facts."""

    def __init__(self, events: int) -> None:
        self.events = events
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> StreamFacts:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SERVER_SCRIPT),
            "--events",
            str(self.events),
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), SERVER_START_TIMEOUT)
        except asyncio.TimeoutError:
            await self._stop()
            raise RuntimeError("the benchmark server did not start") from None
        if not line:
            await self._stop()
            raise RuntimeError("the benchmark server exited before it was ready")
        ready = json.loads(line)
        return StreamFacts(
            base_url=f"http://127.0.0.1:{ready['port']}",
            bytes=ready["bytes"],
            frames=ready["frames"],
            events=ready["events"],
            pings=ready["pings"],
            message_bytes=ready["message_bytes"],
        )

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stop()

    async def _stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()


# --- reporting -------------------------------------------------------------------------------


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _aiohttp_parser() -> str:
    from aiohttp import http_parser  # noqa: PLC0415  # only for this fact

    module = http_parser.HttpResponseParser.__module__
    return "C extension" if module != http_parser.__name__ else "pure Python"


def print_machine(facts: StreamFacts, rounds: int, contestants: tuple[Contestant, ...]) -> None:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cpus = f"{os.cpu_count()}" + (f" ({affinity} usable)" if affinity is not None else "")
    print("machine")
    print(f"  python        {platform.python_implementation()} {platform.python_version()}")
    print(f"  platform      {platform.platform()}")
    print(f"  cpu           {_cpu_model()}, {cpus} CPUs")
    print(f"  event loop    {type(asyncio.get_running_loop()).__name__}")
    print(f"  aiohttp       {_version('aiohttp')} (HTTP parser: {_aiohttp_parser()})")
    print(f"  msgspec       {_version('msgspec')}")
    print(f"  genie_async   {genie_async.__version__}")
    print(f"  sse client    aiohttp-sse-client {_version('aiohttp-sse-client')}")
    print("stream")
    print(
        f"  {facts.events:,} events delivered per turn "
        f"({facts.events - 2:,} agent.message + started + finished), "
        f"{facts.pings:,} system.ping filtered"
    )
    print(
        f"  {facts.bytes:,} bytes ({facts.bytes / 1e6:.1f} MB) in {facts.frames:,} frames; "
        f"mean {facts.bytes / facts.frames:.0f} B/frame, "
        f"agent.message {facts.message_bytes} B"
    )
    order = ", ".join(c.key for c in contestants)
    print(f"  rounds        {rounds} measured after 1 discarded warm-up, each one: {order}")
    print()


def _rate(events: int, seconds: float) -> float:
    return events / seconds


def print_results(
    times: dict[str, list[float]], contestants: tuple[Contestant, ...], facts: StreamFacts
) -> None:
    medians = {c.key: _rate(facts.events, statistics.median(times[c.key])) for c in contestants}
    header = (
        f"{'contestant':<26}{'median ev/s':>14}{'min ev/s':>13}{'max ev/s':>13}"
        f"{'MB/s':>9}{'vs (a)':>9}"
    )
    print(header)
    print("-" * len(header))
    ceiling = medians.get(RAW.key)
    for contestant in contestants:
        rates = [_rate(facts.events, t) for t in times[contestant.key]]
        median = medians[contestant.key]
        megabytes = facts.bytes / statistics.median(times[contestant.key]) / 1e6
        versus = f"{median / ceiling:.3f}" if ceiling else "-"
        print(
            f"{contestant.label:<26}{median:>14,.0f}{min(rates):>13,.0f}{max(rates):>13,.0f}"
            f"{megabytes:>9,.0f}{versus:>9}"
        )
    print()
    genie_median = medians[GENIE.key]
    _print_target(
        "genie_async vs (b)", genie_median, medians[NAIVE.key], times, NAIVE, TARGET_VS_NAIVE
    )
    if SSE_CLIENT.key in medians:
        _print_target(
            "genie_async vs (c)",
            genie_median,
            medians[SSE_CLIENT.key],
            times,
            SSE_CLIENT,
            TARGET_VS_SSE_CLIENT,
        )
    else:
        print("genie_async vs (c): not measured (aiohttp-sse-client is not installed)")


def _print_target(
    what: str,
    genie_rate: float,
    other_rate: float,
    times: dict[str, list[float]],
    other: Contestant,
    target: float,
) -> None:
    ratio = genie_rate / other_rate
    # Same-round ratios: robust to the machine speeding up or slowing down between rounds.
    paired = [o / g for g, o in zip(times[GENIE.key], times[other.key], strict=True)]
    verdict = "MET" if ratio >= target else "NOT MET"
    print(
        f"{what}: {ratio:.2f}x (per round {min(paired):.2f}-{max(paired):.2f}x); "
        f"target >= {target:g}x: {verdict}"
    )


# --- main ------------------------------------------------------------------------------------


async def bench(events: int, rounds: int) -> None:
    contestants: tuple[Contestant, ...] = ALL
    if load_sse_client() is None:
        print(
            "note: aiohttp-sse-client is not installed, so (c) is skipped. It is a benchmark-"
            "only dependency: pip install aiohttp-sse-client==0.2.1\n"
        )
        contestants = tuple(c for c in ALL if c is not SSE_CLIENT)
    async with Server(events) as facts:
        print_machine(facts, rounds, contestants)
        times: dict[str, list[float]] = {c.key: [] for c in contestants}
        print("time per turn, session set-up and teardown included")
        for round_number in range(rounds + 1):
            measured = round_number > 0
            cells = []
            for contestant in contestants:
                elapsed = await run_once(contestant, facts)
                if measured:
                    times[contestant.key].append(elapsed)
                cells.append(f"{contestant.key}={elapsed * 1000:.0f}ms")
            tag = f"round {round_number}" if measured else "warm-up"
            print(f"  {tag:<9} " + "  ".join(cells), flush=True)
        print()
        print_results(times, contestants, facts)


async def profile(events: int, key: str, top: int) -> None:
    contestant = next(c for c in ALL if c.key == key)
    if contestant is SSE_CLIENT and load_sse_client() is None:
        raise SystemExit("aiohttp-sse-client is not installed: nothing to profile for (c)")
    async with Server(events) as facts:
        await run_once(contestant, facts)  # warm-up
        profiler = cProfile.Profile()
        gc.collect()
        profiler.enable()
        count = await contestant.run(facts)
        profiler.disable()
    print(f"cProfile of one {contestant.label} run: {count:,} counted, {facts.bytes:,} bytes")
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.strip_dirs().sort_stats(pstats.SortKey.TIME).print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Typed events per second of one long Genie turn, genie_async vs references."
    )
    parser.add_argument(
        "--events", type=int, help=f"agent.message events per turn (default {DEFAULT_EVENTS:,})"
    )
    parser.add_argument(
        "--rounds", type=int, help=f"measured rounds after the warm-up (default {DEFAULT_ROUNDS})"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_EVENTS:,} events, {QUICK_ROUNDS} rounds (unless given)",
    )
    parser.add_argument(
        "--profile",
        choices=[c.key for c in ALL],
        help="instead of the table, cProfile one run of this contestant (after a warm-up)",
    )
    parser.add_argument("--top", type=int, default=30, help="functions listed by --profile")
    args = parser.parse_args(argv)
    events = (
        args.events if args.events is not None else (QUICK_EVENTS if args.quick else DEFAULT_EVENTS)
    )
    rounds = (
        args.rounds if args.rounds is not None else (QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS)
    )
    if events < 1 or rounds < 1:
        parser.error("--events and --rounds must be at least 1")
    try:
        if args.profile:
            asyncio.run(profile(events, args.profile, args.top))
        else:
            asyncio.run(bench(events, rounds))
    except MiscountError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
