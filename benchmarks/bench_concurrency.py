"""Scale: 1,000 concurrent conversations streaming through one ``GenieClient``.

The simulator (:class:`genie_async.testing.GenieSimulator`) runs in a child process (this
script with ``--serve``), so only the client lives in the measured process. The client opens
``--streams`` turns at once (1,000 by default), each in its own conversation, all through ONE
``GenieClient`` (``connection_limit`` = streams + 100; the conversations are spread over ten
end users with ``as_user``). Every turn goes:

* ``processing.started`` and an ``open`` message: the stream is live;
* an idle pause with keep-alives only (``system.ping`` every ``--ping`` s, 0.5 by default),
  long enough that every stream is open and idle at once: the idle sample (RSS, descriptors,
  CPU) is taken then;
* the steady phase: ``--messages`` ``agent.message`` events (24), one every ``--interval`` s
  (0.2), then ``processing.finished``. The turns start their writes at 20 offsets spread over
  one interval, so the server's writes are spread evenly too.

One conversation in ten pauses half-way on a skill confirmation: its hook waits 1-2 s (as a
person would), then approves, and the rest follows on the same stream. One in twenty has its
stream cut half-way (TCP abort) and one in twenty gets ``system.stream_interrupted``; both
recover by reconnecting with ``Last-Event-ID``.

Measured: failures; every run's events delivered exactly once and in order (event ids
against the simulator's own record); the delay from the server stamping an event
(``created_at``, taken when the simulator produces it, just before its writers wake) to the
consumer's ``async for`` receiving it, on the machine's one wall clock; events per second;
RSS (``VmRSS``) per idle open stream; the CPU and the event-loop lag of both processes, and
their garbage-collector pauses, to which every late event is matched. The simulator runs with
its collector off (``--simulator-gc`` turns it on): it keeps everything it ever served, and
its growing full collections would otherwise land between stamping and writing. Targets: no
failure, p99 added delay under 50 ms, under 64 KiB RSS per idle open stream.

Then five smaller experiments on purpose-built shortages: 200 streams at once through
``connection_limit=50`` (the default ``Timeouts(connect=10)``; ``connect=2`` with the retry
policy on; and off): queueing, then ``APITimeoutError`` naming the pool after the connect
timeout, retried or raised; streams paused on confirmations holding every pooled connection
while their decisions need one more; and fewer free file descriptors than streams.

Usage::

    python benchmarks/bench_concurrency.py                 # 1,000 streams (~1 min)
    python benchmarks/bench_concurrency.py --quick         # 100 streams
    python benchmarks/bench_concurrency.py --streams 2000 --interval 0.5
    python benchmarks/bench_concurrency.py --gc-freeze     # gc.freeze() before the streams
    python benchmarks/bench_concurrency.py --profile       # cProfile of the client (no targets)

Exits 1 when a turn failed, an event was lost or duplicated, or something hung; else 0.
Speed is printed, never asserted. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import cProfile
import datetime as dt
import functools
import gc
import json
import logging
import math
import os
import platform
import pstats
import random
import re
import resource
import sys
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp

import genie_async
from genie_async import (
    AgentMessage,
    Approve,
    Conversation,
    GenieClient,
    GenieError,
    RetryPolicy,
    SkillConfirmationRequired,
    Timeouts,
)
from genie_async.testing import Confirm, GenieSimulator, Say, Step, StreamFault, Turn, Wait

SCRIPT = Path(__file__).resolve()
SERVER_START_TIMEOUT = 60.0

DEFAULT_STREAMS = 1_000
QUICK_STREAMS = 100
DEFAULT_MESSAGES = 24
DEFAULT_INTERVAL = 0.2
DEFAULT_PING = 0.5
PHASES = 20  # write offsets spread over one interval
USERS = 10  # end users the conversations are spread over (as_user)
POOL_HEADROOM = 100  # connection_limit = streams + this: room for the REST calls
CREATE_CONCURRENCY = 20
SETTLE = 1.0  # s after the last stream opened before the idle sample
IDLE_WINDOW = 2.0  # s of idle CPU measured
LAG_PERIOD = 0.01  # s between two event-loop lag probes
CONFIRM_WAIT = (1.0, 2.0)  # s a confirmation hook waits before approving
OPEN_BUDGET = 30.0  # s (plus 50 ms per stream) for every stream to open before giving up

TARGET_DELAY_P99_MS = 50.0
TARGET_RSS_KIB = 64.0

# The pool experiments.
POOL_STREAMS = 200
POOL_LIMIT = 50
POOL_CONNECT = 2.0
POOL_HOLD = (0.5, 0.5, 0.5)  # a pool turn: three messages 0.5 s apart (holds ~1.5 s)
GATE_LIMIT = 10
GATE_CONNECT = 1.0
GATE_BUDGET = 5.0
FD_STREAMS = 100
FD_SPARE = 60  # descriptors left free under the lowered limit

# A message of a realistic size (a sentence of markdown): an agent.message frame is 508 bytes.
FILLER = (
    "Your request is being processed; the next step checks the balance, then files the "
    "form and reports back with the reference number."
)

Kind = str  # "steady", "confirm", "abort", "interrupt"


def kind_of(index: int) -> Kind:
    """The workload mix: 80% steady, 10% paused on a confirmation, 5% + 5% recovering."""
    if index % 10 == 3:
        return "confirm"
    if index % 10 == 7:
        return "abort" if (index // 10) % 2 == 0 else "interrupt"
    return "steady"


# --- the child process: a simulator with a fixed scenario ------------------------------------


@dataclass(frozen=True)
class Workload:
    """What every turn does; the same numbers on both sides of the pipe."""

    messages: int
    interval: float
    idle: float
    ping: float

    def args(self) -> list[str]:
        return [
            "--messages",
            str(self.messages),
            "--interval",
            str(self.interval),
            "--idle",
            str(self.idle),
            "--ping",
            str(self.ping),
        ]


def _says(first: int, last: int, interval: float) -> tuple[Step, ...]:
    return tuple(Say(f"m{n} {FILLER}", delay=interval) for n in range(first, last + 1))


def _script(sim: GenieSimulator, work: Workload) -> None:
    """The turns the child serves, chosen by the message's ``kind/phase`` prefix."""
    half = work.messages // 2
    cut_after = 2 + half  # processing.started, open, then half of the messages
    for phase in range(PHASES):
        idle = (Say("open"), Wait(work.idle + phase * work.interval / PHASES))
        whole = _says(1, work.messages, work.interval)

        def rule(kind: str, turn: Turn, phase: int = phase) -> None:
            sim.on_message(re.compile(rf"^{kind}/{phase} "), turn)

        rule("steady", Turn(*idle, *whole))
        rule(
            "confirm",
            Turn(
                *idle,
                *_says(1, half, work.interval),
                Confirm(
                    "Submit expense report",
                    parameters={"amount": 42},
                    on_approve=_says(half + 1, work.messages, work.interval),
                ),
            ),
        )
        rule("abort", Turn(*idle, *whole, faults=[StreamFault("abort", after_events=cut_after)]))
        rule(
            "interrupt",
            Turn(
                *idle,
                *whole,
                faults=[StreamFault("interrupt", after_events=cut_after, retry_after_ms=50)],
            ),
        )
    sim.on_message(re.compile(r"^warm "), Turn(Say("warm")))
    sim.on_message(
        re.compile(r"^pool "), Turn(*(Say(f"p{n}", delay=d) for n, d in enumerate(POOL_HOLD)))
    )
    sim.on_message(
        re.compile(r"^gate "),
        Turn(Say("open"), Confirm("Submit expense report", on_approve=(Say("done"),))),
    )


async def _probe_lag(samples: list[tuple[float, float]]) -> None:
    """Event-loop lag: how late a 10 ms sleep wakes, as (wall time, seconds late)."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(LAG_PERIOD)
        samples.append((time.time(), loop.time() - start - LAG_PERIOD))


GcPause = tuple[float, float, float, int]  # (wall start, seconds, CPU seconds, generation)


class GcPauses:
    """Garbage-collector pauses of this process. The CPU time (of the collecting thread)
    tells the collector's own work from time the process spent descheduled meanwhile."""

    def __init__(self) -> None:
        self.pauses: list[GcPause] = []
        self._began = (0.0, 0.0, 0.0)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = (time.time(), time.perf_counter(), time.thread_time())
        else:
            wall, began, cpu = self._began
            self.pauses.append(
                (
                    wall,
                    time.perf_counter() - began,
                    time.thread_time() - cpu,
                    info["generation"],
                )
            )

    def install(self) -> None:
        gc.callbacks.append(self._callback)

    def remove(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def __enter__(self) -> GcPauses:
        self.install()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()


async def serve(work: Workload, *, collect: bool) -> None:
    """Serve until stdin closes; ``report`` on stdin prints what the simulator recorded.

    Unless ``collect``, the simulator's garbage collector is off: it keeps every event,
    message and request it ever saw, so its full collections grow into pauses of 50-100 ms
    that would land between stamping an event and writing it, and be charged to the client.
    """
    if not collect:
        gc.disable()
    lags: list[tuple[float, float]] = []
    with GcPauses() as pauses:
        await _serve(work, lags, pauses)


async def _serve(work: Workload, lags: list[tuple[float, float]], pauses: GcPauses) -> None:
    async with GenieSimulator(ping_interval=work.ping, topic_delay=0.0) as sim:
        _script(sim, work)
        users = [sim.user_id] + [sim.add_user() for _ in range(USERS - 1)]
        probe = asyncio.ensure_future(_probe_lag(lags))
        ready = {"url": sim.url, "genie_id": sim.genie_id, "api_key": sim.api_key, "users": users}
        print(json.dumps(ready), flush=True)
        while True:
            command = await asyncio.to_thread(sys.stdin.readline)
            if not command:  # EOF: the parent is done
                break
            if command.strip() == "report":
                runs = {
                    run.run_id: [event.event_id for event in run.events]
                    for conversation in sim.conversations
                    for run in conversation.runs
                }
                routes = Counter(record.route for record in sim.log)
                report = {"runs": runs, "routes": routes, "lags": lags, "gc": pauses.pauses}
                print(json.dumps(report), flush=True)
        probe.cancel()


@dataclass(frozen=True)
class Server:
    url: str
    genie_id: str
    api_key: str
    users: list[str]


class Child:
    """The simulator process: started with this script's ``--serve``, stopped by closing
    its stdin (or, failing that, by terminating this one process)."""

    def __init__(self, work: Workload, *, collect: bool) -> None:
        self.work = work
        self.collect = collect
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> Server:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            "--serve",
            *self.work.args(),
            *(["--simulator-gc"] if self.collect else []),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=256 * 1024 * 1024,  # the report is one (long) line
        )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), SERVER_START_TIMEOUT)
        if not line:
            raise RuntimeError("the simulator process exited before it was ready")
        return Server(**json.loads(line))

    async def report(self) -> dict[str, Any]:
        assert self.process is not None
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(b"report\n")
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), 60)
        report: dict[str, Any] = json.loads(line)
        return report

    def cpu(self) -> float:
        """CPU seconds (user + system) the simulator process has used."""
        assert self.process is not None
        return process_cpu(self.process.pid)

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        assert process.stdin is not None
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except asyncio.TimeoutError:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()


# --- measuring ------------------------------------------------------------------------------


def rss_kib() -> int:
    """``VmRSS`` of this process, in KiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])  # the value is in kB (KiB)
    raise RuntimeError("no VmRSS in /proc/self/status")


def peak_rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def process_cpu(pid: int) -> float:
    """utime + stime of a process, in seconds (from ``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return ticks / os.sysconf("SC_CLK_TCK")


def pool_usage(client: GenieClient) -> tuple[int, int]:
    """(connections checked out, idle connections) of the client's aiohttp pool."""
    session = client._core._session
    if session is None or session.closed or session.connector is None:
        return 0, 0
    connector: Any = session.connector
    idle = sum(len(conns) for conns in connector._conns.values())
    return len(connector._acquired), idle


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values`` (``q`` in [0, 1])."""
    if not values:
        return math.nan
    rank = max(1, math.ceil(q * len(values)))
    return values[min(rank, len(values)) - 1]


@functools.lru_cache(maxsize=4096)
def _second(prefix: str) -> float:
    moment = dt.datetime.strptime(prefix, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def epoch(created_at: str) -> float:
    """``2026-11-22T10:00:00.123456Z`` as epoch seconds (the simulator's exact format)."""
    return _second(created_at[:19]) + float("0" + created_at[19:-1])


@dataclass(frozen=True)
class Window:
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def lag_stats(samples: Sequence[tuple[float, float]], window: Window) -> tuple[float, float]:
    """(p99, max) event-loop lag in ms within ``window``."""
    lags = sorted(lag for at, lag in samples if window.start <= at <= window.end)
    if not lags:
        return math.nan, math.nan
    return percentile(lags, 0.99) * 1000, lags[-1] * 1000


class LagProbe:
    """The same lag probe as the child's, in this process."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._task: asyncio.Future[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(_probe_lag(self.samples))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class RetryCounter(logging.Handler):
    """Counts the retry policy's DEBUG records ("retrying after X") by failure."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.retries: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.msg if isinstance(record.msg, str) else ""
        if "retrying after" in message and len(record.args or ()) >= 2:
            args: Any = record.args
            self.retries[str(args[1])] += 1

    def __enter__(self) -> RetryCounter:
        logger = logging.getLogger("genie_async")
        self._level = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logger = logging.getLogger("genie_async")
        logger.removeHandler(self)
        logger.setLevel(self._level)


# --- the scale run ----------------------------------------------------------------------------


@dataclass
class Record:
    """One conversation's turn, as the consumer saw it."""

    index: int
    kind: Kind
    text: str
    conversation: Conversation
    sent: float = 0.0
    first: float | None = None  # processing.started received
    opened: float | None = None  # the "open" message received
    # Every event in delivery order, as three parallel columns. Flat containers of
    # floats and strings, not a tuple per event: tuples are GC-tracked, and 27,000 of
    # them surviving the run make the benchmark itself trigger full collections in
    # the middle of the phase it measures.
    received: array[float] = field(default_factory=lambda: array("d"))
    created: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    steady_at: float | None = None  # the first steady-phase event received
    run_id: str | None = None
    outcome: str | None = None
    error: str | None = None
    done: bool = False


class Opened:
    """Counts the streams that delivered their ``open`` message; set when all did.

    ``on_steady`` is called once, when the first steady-phase event arrives anywhere.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.count = 0
        self.all = asyncio.Event()
        self.on_steady: Callable[[], None] | None = None

    def steady(self) -> None:
        callback, self.on_steady = self.on_steady, None
        if callback is not None:
            callback()

    def one(self) -> None:
        self.count += 1
        if self.count >= self.total:
            self.all.set()


def confirmation_hook(index: int) -> Callable[[SkillConfirmationRequired], Awaitable[Approve]]:
    wait = random.Random(index).uniform(*CONFIRM_WAIT)

    async def hook(event: SkillConfirmationRequired) -> Approve:
        await asyncio.sleep(wait)  # a person reading the request
        return Approve()

    return hook


async def consume(record: Record, opened: Opened) -> None:
    """Run one turn and record every event with the time it was received."""
    hook = confirmation_hook(record.index) if record.kind == "confirm" else None
    received, created, event_ids = record.received, record.created, record.event_ids
    clock = time.time
    stream = record.conversation.send(record.text, on_skill_confirmation=hook)
    record.sent = clock()
    try:
        async with stream:
            async for event in stream:
                now = clock()
                received.append(now)
                created.append(event.created_at or "")
                event_ids.append(event.event_id or "")
                if record.first is None:
                    record.first = now
                elif record.opened is None and isinstance(event, AgentMessage):
                    record.opened = now
                    opened.one()
                elif record.steady_at is None and record.opened is not None:
                    record.steady_at = now
                    opened.steady()
        record.outcome = stream.outcome
    except GenieError as exc:
        record.error = f"{type(exc).__name__}: {exc}"
    finally:
        record.run_id = stream.genie_run_id
        record.done = True
        if record.opened is None:
            opened.one()  # failed before its open message: don't wait for it


async def create_conversations(
    views: Sequence[GenieClient], count: int, concurrency: int = CREATE_CONCURRENCY
) -> list[Conversation]:
    """``count`` conversations, round-robin over the end users, ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> Conversation:
        async with gate:
            return await views[index % len(views)].create_conversation()

    return list(await asyncio.gather(*(one(i) for i in range(count))))


@dataclass
class Sample:
    label: str
    rss_kib: int
    fds: int
    tasks: int
    in_use: int
    idle: int
    tracked: int | None = None  # objects the garbage collector tracks
    collect_ms: float | None = None  # how long the full collection before the sample took


def sample(label: str, client: GenieClient, *, collect: bool = True) -> Sample:
    """RSS, descriptors, tasks and pool; after a full collection (and counting the objects
    the collector tracks) unless ``collect`` is false."""
    tracked = collect_ms = None
    if collect:
        started = time.perf_counter()
        gc.collect()
        collect_ms = (time.perf_counter() - started) * 1000
        tracked = len(gc.get_objects()) + gc.get_freeze_count()
    in_use, idle = pool_usage(client)
    return Sample(
        label, rss_kib(), open_fds(), len(asyncio.all_tasks()), in_use, idle, tracked, collect_ms
    )


@dataclass
class CpuSpan:
    """Client and simulator CPU over one wall-clock window."""

    window: Window
    client: float
    server: float

    def client_pct(self) -> float:
        return 100 * self.client / self.window.seconds if self.window.seconds else math.nan

    def server_pct(self) -> float:
        return 100 * self.server / self.window.seconds if self.window.seconds else math.nan


class CpuMeter:
    def __init__(self, child: Child) -> None:
        self.child = child
        self._start = (time.time(), time.process_time(), child.cpu())

    def lap(self) -> CpuSpan:
        now = (time.time(), time.process_time(), self.child.cpu())
        start, self._start = self._start, now
        return CpuSpan(Window(start[0], now[0]), now[1] - start[1], now[2] - start[2])


@dataclass
class ScaleResult:
    streams: int
    records: list[Record]
    samples: list[Sample]
    create_seconds: float
    windows: dict[str, Window]
    cpu: dict[str, CpuSpan]
    client_lags: list[tuple[float, float]]
    server_lags: list[tuple[float, float]]
    client_gc: list[GcPause]
    server_gc: list[GcPause]
    runs: dict[str, list[str]]
    routes: dict[str, int]
    hung: list[Record]
    left_idle_early: int
    peak_rss_kib: int


async def scale_run(
    child: Child,
    server: Server,
    streams: int,
    work: Workload,
    profiler: cProfile.Profile | None,
    *,
    freeze: bool,
) -> ScaleResult:
    retry = RetryPolicy(wait_initial=0.05, wait_max=0.5)  # a cut stream recovers in ~50 ms
    async with GenieClient(
        server.genie_id,
        base_url=server.url,
        api_key=server.api_key,
        user_id=server.users[0],
        retry=retry,
        connection_limit=streams + POOL_HEADROOM,
    ) as client:
        views = [client.as_user(user) for user in server.users]
        warm = await client.create_conversation()
        await warm.ask("warm up")  # imports, caches and code paths warmed before the baseline
        started = time.perf_counter()
        conversations = await create_conversations(views, streams)
        create_seconds = time.perf_counter() - started
        print(
            f"created {streams:,} conversations in {create_seconds:.1f} s "
            f"({CREATE_CONCURRENCY} at a time, {USERS} end users)",
            flush=True,
        )
        records = [
            Record(i, kind_of(i), f"{kind_of(i)}/{i % PHASES} #{i}", conversations[i])
            for i in range(streams)
        ]
        probe = LagProbe()
        probe.start()
        pauses = GcPauses()
        pauses.install()
        await asyncio.sleep(0.1)
        samples = [sample("before the streams", client)]
        if freeze:
            gc.freeze()  # what is alive now is never scanned again by a full collection
            print(f"gc.freeze(): {gc.get_freeze_count():,} objects frozen", flush=True)
        opened = Opened(streams)
        windows: dict[str, Window] = {}
        cpu: dict[str, CpuSpan] = {}
        total = CpuMeter(child)
        meter = CpuMeter(child)
        if profiler is not None:
            profiler.enable()
        tasks = [asyncio.ensure_future(consume(record, opened)) for record in records]
        try:
            await asyncio.wait_for(opened.all.wait(), OPEN_BUDGET + streams * 0.05)
        except asyncio.TimeoutError:
            pass  # reported below; the turns still get the steady phase's budget to end
        cpu["open"] = meter.lap()
        windows["open"] = cpu["open"].window
        print(
            f"{opened.count:,} of {streams:,} streams open in {windows['open'].seconds:.1f} s",
            flush=True,
        )
        await asyncio.sleep(SETTLE)
        samples.append(sample("all open, idle", client))
        meter.lap()
        await asyncio.sleep(IDLE_WINDOW)
        cpu["idle"] = meter.lap()
        windows["idle"] = cpu["idle"].window
        left_early = sum(
            1 for r in records if r.steady_at is not None and r.steady_at < windows["idle"].end
        )
        print("idle sample taken; steady phase...", flush=True)

        def steady_begins() -> None:
            cpu["until steady"] = meter.lap()

        if left_early:
            steady_begins()
        else:
            opened.on_steady = steady_begins
        largest = Sample("steady (largest RSS)", 0, 0, 0, 0, 0)
        budget = work.idle + work.interval * (work.messages + 2) + 60 + streams * 0.02
        pending: set[asyncio.Future[None]] = set(tasks)
        deadline = time.monotonic() + budget
        while pending and time.monotonic() < deadline:
            _, pending = await asyncio.wait(pending, timeout=0.5)
            if pending:  # no gc.collect here: it would pause the streams being measured
                now = sample("steady (largest RSS)", client, collect=False)
                largest = now if now.rss_kib > largest.rss_kib else largest
        cpu["steady"] = meter.lap()
        windows["steady"] = cpu["steady"].window
        cpu["run"] = total.lap()
        windows["run"] = cpu["run"].window
        if profiler is not None:
            profiler.disable()
        hung = [r for r in records if not r.done]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if largest.rss_kib:
            samples.append(largest)
        samples.append(sample("after (all closed)", client))
        await probe.stop()
        pauses.remove()
        if freeze:
            gc.unfreeze()
    report = await child.report()
    return ScaleResult(
        streams=streams,
        records=records,
        samples=samples,
        create_seconds=create_seconds,
        windows=windows,
        cpu=cpu,
        client_lags=probe.samples,
        server_lags=[(at, lag) for at, lag in report["lags"]],
        client_gc=pauses.pauses,
        server_gc=[(at, wall, cpu, gen) for at, wall, cpu, gen in report["gc"]],
        runs=report["runs"],
        routes=report["routes"],
        hung=hung,
        left_idle_early=left_early,
        peak_rss_kib=peak_rss_kib(),
    )


# --- the pool experiments ---------------------------------------------------------------------


@dataclass
class PoolTurn:
    started: float
    first: float | None = None
    ended: float | None = None
    error: GenieError | None = None


@dataclass
class PoolResult:
    title: str
    streams: int
    limit: int
    connect: float
    turns: list[PoolTurn]
    wall: float
    retries: Counter[str]
    most_in_use: int
    hung: int


async def _pool_turns(
    client: GenieClient,
    conversations: Sequence[Conversation],
    text: str,
    *,
    hook: Callable[[SkillConfirmationRequired], Awaitable[Approve]] | None = None,
    budget: float,
) -> tuple[list[PoolTurn], float, int, int]:
    """Run one turn per conversation at once: (turns, wall seconds, most in use, hung)."""
    turns = [PoolTurn(0.0) for _ in conversations]

    async def one(index: int, turn: PoolTurn, conversation: Conversation) -> None:
        turn.started = time.perf_counter()
        try:
            message = f"{text} #{index}"
            async with conversation.send(message, on_skill_confirmation=hook) as stream:
                async for _ in stream:
                    if turn.first is None:
                        turn.first = time.perf_counter()
        except GenieError as exc:
            turn.error = exc
        turn.ended = time.perf_counter()

    started = time.perf_counter()
    tasks = [
        asyncio.ensure_future(one(i, t, c))
        for i, (t, c) in enumerate(zip(turns, conversations, strict=True))
    ]
    most = 0
    pending: set[asyncio.Future[None]] = set(tasks)
    deadline = time.monotonic() + budget
    while pending and time.monotonic() < deadline:
        _, pending = await asyncio.wait(pending, timeout=0.05)
        most = max(most, pool_usage(client)[0])
    wall = time.perf_counter() - started
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    return turns, wall, most, len(pending)


async def pool_exhaustion(server: Server, *, connect: float, retry: bool) -> PoolResult:
    """``POOL_STREAMS`` turns at once through a pool of ``POOL_LIMIT`` connections."""
    policy = (
        RetryPolicy(wait_initial=0.05, wait_max=0.5, wait_budget=60)
        if retry
        else RetryPolicy.disabled()
    )
    async with GenieClient(
        server.genie_id,
        base_url=server.url,
        api_key=server.api_key,
        user_id=server.users[0],
        connection_limit=POOL_LIMIT,
        timeouts=Timeouts(connect=connect),
        retry=policy,
    ) as client:
        views = [client.as_user(user) for user in server.users]
        conversations = await create_conversations(views, POOL_STREAMS)
        with RetryCounter() as counter:
            turns, wall, most, hung = await _pool_turns(client, conversations, "pool", budget=90)
    title = (
        f"{POOL_STREAMS} streams of ~{sum(POOL_HOLD):g} s at once, "
        f"connection_limit={POOL_LIMIT}, Timeouts(connect={connect:g}), "
    ) + ("retry policy on (0.05-0.5 s backoff, 60 s budget)" if retry else "retry policy disabled")
    return PoolResult(
        title, POOL_STREAMS, POOL_LIMIT, connect, turns, wall, counter.retries, most, hung
    )


async def confirmation_starvation(server: Server) -> PoolResult:
    """Every pooled connection held by a stream paused on a confirmation: the decisions
    (a POST each) need one more connection."""
    policy = RetryPolicy(wait_initial=0.05, wait_max=0.5, wait_budget=GATE_BUDGET)
    async with GenieClient(
        server.genie_id,
        base_url=server.url,
        api_key=server.api_key,
        user_id=server.users[0],
        connection_limit=GATE_LIMIT,
        timeouts=Timeouts(connect=GATE_CONNECT),
        retry=policy,
    ) as client:
        conversations = await create_conversations([client], GATE_LIMIT)

        async def approve(event: SkillConfirmationRequired) -> Approve:
            return Approve()

        with RetryCounter() as counter:
            turns, wall, most, hung = await _pool_turns(
                client, conversations, "gate", hook=approve, budget=60
            )
    return PoolResult(
        f"{GATE_LIMIT} streams paused on confirmations, connection_limit={GATE_LIMIT}, "
        f"Timeouts(connect={GATE_CONNECT:g}), retry budget {GATE_BUDGET:g} s",
        GATE_LIMIT,
        GATE_LIMIT,
        GATE_CONNECT,
        turns,
        wall,
        counter.retries,
        most,
        hung,
    )


async def descriptor_limit(server: Server) -> PoolResult:
    """Fewer file descriptors than streams: what a low ``ulimit -n`` does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    async with GenieClient(
        server.genie_id,
        base_url=server.url,
        api_key=server.api_key,
        user_id=server.users[0],
        connection_limit=0,
        retry=RetryPolicy.disabled(),
    ) as client:
        conversations = await create_conversations([client], FD_STREAMS)
        await asyncio.sleep(0.1)
        limit = open_fds() + FD_SPARE
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        try:
            with RetryCounter() as counter:
                turns, wall, most, hung = await _pool_turns(
                    client, conversations, "pool", budget=60
                )
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return PoolResult(
        f"{FD_STREAMS} streams with {FD_SPARE} free file descriptors (ulimit -n lowered to "
        f"{limit}), retry policy disabled",
        FD_STREAMS,
        0,
        Timeouts().connect,
        turns,
        wall,
        counter.retries,
        most,
        hung,
    )


# --- reporting --------------------------------------------------------------------------------


def _machine() -> None:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print("machine")
    print(f"  python        {platform.python_implementation()} {platform.python_version()}")
    print(f"  platform      {platform.platform()}")
    print(f"  cpus          {os.cpu_count()} ({affinity} usable)")
    print(f"  event loop    {type(asyncio.get_running_loop()).__name__}")
    print(f"  aiohttp       {aiohttp.__version__}")
    print(f"  msgspec       {metadata.version('msgspec')}")
    print(f"  genie_async   {genie_async.__version__}")
    print(f"  ulimit -n     {soft} (hard {hard})")


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.1f}"


def _verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


@dataclass
class Delays:
    label: str
    values: list[float]  # seconds, sorted

    def row(self) -> str:
        v = self.values
        cells = [percentile(v, q) * 1000 for q in (0.5, 0.9, 0.99)]
        top = v[-1] * 1000 if v else math.nan
        return (
            f"  {self.label:<44}{len(v):>9,}{_ms(cells[0]):>9}{_ms(cells[1]):>9}"
            f"{_ms(cells[2]):>9}{_ms(top):>10}"
        )


SLOW = 0.025  # s: a live event this late is looked into (half the target)
STALL = 0.010  # s: an event-loop lag at least this long counts as a stall
GC_PAUSE = 0.005  # s: a garbage collection at least this long counts as a pause


def delays(result: ScaleResult) -> tuple[dict[str, Delays], list[tuple[float, float]]]:
    """The delay sets, and (created, received) of every live event later than ``SLOW``."""
    slow: list[tuple[float, float]] = []
    burst: list[float] = []
    live: list[float] = []
    recovering: list[float] = []
    for record in result.records:
        recovers = record.kind in ("abort", "interrupt")
        target = recovering if recovers else live
        columns = zip(record.received, record.created, strict=True)
        for position, (received, created_at) in enumerate(columns):
            if not created_at:
                continue
            created = epoch(created_at)
            delay = received - created
            (burst if position < 2 else target).append(delay)
            if position >= 2 and not recovers and delay > SLOW:
                slow.append((created, received))
    sets = {
        "burst": Delays("open burst (started + first message)", sorted(burst)),
        "live": Delays("steady phase, live streams", sorted(live)),
        "recovering": Delays("steady phase, streams cut and recovered", sorted(recovering)),
        "overall": Delays("overall", sorted(burst + live + recovering)),
    }
    return sets, slow


def check_delivery(result: ScaleResult) -> tuple[int, int, list[str]]:
    """(delivered, expected, problems): each run's events exactly once, in order."""
    delivered = expected = 0
    problems: list[str] = []
    for record in result.records:
        got = record.event_ids
        delivered += len(got)
        if record.run_id is None:
            problems.append(f"#{record.index} ({record.kind}): no run ({record.error})")
            continue
        sent = result.runs.get(record.run_id, [])
        expected += len(sent)
        if got != sent:
            missing = len(set(sent) - set(got))
            extra = len(got) - len(set(got))
            problems.append(
                f"#{record.index} ({record.kind}): {len(got)} delivered, {len(sent)} sent, "
                f"{missing} missing, {extra} duplicated"
            )
    return delivered, expected, problems


class Intervals:
    """Time intervals (wall clock), searchable for overlap with another interval."""

    def __init__(self, spans: list[tuple[float, float]]) -> None:
        spans.sort()
        self.starts = [start for start, _ in spans]
        self.ends = [end for _, end in spans]
        self.longest = max((end - start for start, end in spans), default=0.0)

    def overlaps(self, start: float, end: float) -> bool:
        index = bisect.bisect_left(self.starts, start - self.longest)
        while index < len(self.starts) and self.starts[index] < end:
            if self.ends[index] > start:
                return True
            index += 1
        return False

    @classmethod
    def of_gc(cls, pauses: Sequence[GcPause]) -> Intervals:
        return cls([(at, at + seconds) for at, seconds, _, _ in pauses if seconds >= GC_PAUSE])

    @classmethod
    def of_lags(cls, lags: Sequence[tuple[float, float]]) -> Intervals:
        return cls([(at - lag, at) for at, lag in lags if lag >= STALL])


def attribute(result: ScaleResult, slow: list[tuple[float, float]]) -> list[tuple[str, int]]:
    """How many slow live events overlap each kind of pause (an event may overlap several)."""
    sources = {
        "a simulator GC pause": Intervals.of_gc(result.server_gc),
        "a simulator loop stall": Intervals.of_lags(result.server_lags),
        "a client GC pause": Intervals.of_gc(result.client_gc),
        "a client loop stall": Intervals.of_lags(result.client_lags),
    }
    counts = dict.fromkeys(sources, 0)
    unexplained = 0
    for created, received in slow:
        hit = False
        for name, intervals in sources.items():
            if intervals.overlaps(created, received):
                counts[name] += 1
                hit = True
        unexplained += not hit
    return [*counts.items(), ("none of these", unexplained)]


def gc_stats(pauses: Sequence[GcPause], window: Window) -> tuple[int, float, float, float]:
    """(full collections, total ms, longest ms, CPU ms of the longest) within ``window``."""
    inside = [(wall, cpu, g) for at, wall, cpu, g in pauses if window.start <= at <= window.end]
    full = sum(1 for _, _, generation in inside if generation == 2)
    total = sum(wall for wall, _, _ in inside) * 1000
    longest = max(inside, default=(0.0, 0.0, 0), key=lambda pause: pause[0])
    return full, total, longest[0] * 1000, longest[1] * 1000


def print_scale(result: ScaleResult, work: Workload) -> bool:
    """Print the tables; True when nothing failed (the exit status), targets aside."""
    n = result.streams
    records = result.records
    kinds = Counter(r.kind for r in records)
    failed = [r for r in records if r.error is not None or r.outcome != "completed"]
    delivered, expected, problems = check_delivery(result)
    sets, slow = delays(result)
    windows, cpu = result.windows, result.cpu
    before, idle = result.samples[0], result.samples[1]
    per_stream = (idle.rss_kib - before.rss_kib) / n
    steady_events = len(sets["live"].values) + len(sets["recovering"].values)
    rate = steady_events / windows["steady"].seconds if windows["steady"].seconds > 0 else 0.0
    firsts = sorted(r.first - r.sent for r in records if r.first is not None)
    opens = sorted(r.opened - r.sent for r in records if r.opened is not None)

    print()
    print(
        f"scale run: {n:,} streams through one GenieClient (connection_limit "
        f"{n + POOL_HEADROOM:,}): {kinds['steady']:,} steady, {kinds['confirm']:,} paused on a "
        f"confirmation, {kinds['abort']:,} cut (abort), {kinds['interrupt']:,} interrupted"
    )
    print(
        f"  each turn: open message, {work.idle:g} s idle (pings every {work.ping:g} s), "
        f"{work.messages} messages {work.interval:g} s apart"
    )
    slowest_first = firsts[-1] * 1000 if firsts else math.nan
    slowest_open = opens[-1] * 1000 if opens else math.nan
    print(
        f"  open: send -> processing.started p50 {_ms(percentile(firsts, 0.5) * 1000)} ms, "
        f"p99 {_ms(percentile(firsts, 0.99) * 1000)} ms, max {_ms(slowest_first)} ms; "
        f"all open after {windows['open'].seconds:.2f} s "
        f"(slowest open message {_ms(slowest_open)} ms)"
    )
    print(
        "  routes served: "
        + ", ".join(f"{route} {count:,}" for route, count in sorted(result.routes.items()))
    )
    print()
    print(
        f"  {'delay, server stamp -> consumer (ms)':<44}{'events':>9}{'p50':>9}{'p90':>9}"
        f"{'p99':>9}{'max':>10}"
    )
    for key in ("burst", "live", "recovering", "overall"):
        print(sets[key].row())
    print()
    header = (
        f"  {'resources':<22}{'RSS MiB':>9}{'fds':>7}{'tasks':>7}{'pool in use':>13}"
        f"{'pool idle':>11}{'GC-tracked':>12}{'full GC ms':>12}"
    )
    print(header)
    for s in result.samples:
        tracked = "-" if s.tracked is None else f"{s.tracked:,}"
        print(
            f"  {s.label:<22}{s.rss_kib / 1024:>9.1f}{s.fds:>7,}{s.tasks:>7,}{s.in_use:>13,}"
            f"{s.idle:>11,}{tracked:>12}"
            + (f"{s.collect_ms:>12.1f}" if s.collect_ms is not None else f"{'-':>12}")
        )
    print(f"  peak RSS (VmHWM) {result.peak_rss_kib / 1024:.1f} MiB")
    objects = (
        f", {(idle.tracked - before.tracked) / n:.0f} GC-tracked objects"
        if idle.tracked is not None and before.tracked is not None
        else ""
    )
    print(
        f"  per idle open stream: {per_stream:.1f} KiB RSS, "
        f"{(idle.fds - before.fds) / n:.2f} file descriptors{objects}"
    )
    print()
    print(
        f"  {'phase':<10}{'wall s':>8}{'client CPU s':>14}{'client CPU %':>14}"
        f"{'sim CPU %':>11}{'client lag p99/max ms':>23}{'sim lag p99/max ms':>20}"
    )
    for key in ("open", "idle", "steady", "run"):
        span = cpu[key]
        c99, cmax = lag_stats(result.client_lags, windows[key])
        s99, smax = lag_stats(result.server_lags, windows[key])
        print(
            f"  {key:<10}{span.window.seconds:>8.2f}{span.client:>14.2f}"
            f"{span.client_pct():>14.0f}{span.server_pct():>11.0f}"
            f"{_ms(c99) + ' / ' + _ms(cmax):>23}{_ms(s99) + ' / ' + _ms(smax):>20}"
        )
    print()
    print(
        f"  {'garbage collection':<10}{'client: full':>14}{'total ms':>10}"
        f"{'longest ms (CPU)':>20}{'sim: full':>11}{'total ms':>10}{'longest ms (CPU)':>20}"
    )
    for key in ("open", "idle", "steady", "run"):
        c_full, c_total, c_long, c_cpu = gc_stats(result.client_gc, windows[key])
        s_full, s_total, s_long, s_cpu = gc_stats(result.server_gc, windows[key])
        print(
            f"  {key:<10}{c_full:>14}{c_total:>10.0f}{f'{c_long:.1f} ({c_cpu:.1f})':>20}"
            f"{s_full:>11}{s_total:>10.0f}{f'{s_long:.1f} ({s_cpu:.1f})':>20}"
        )
    if slow:
        share = len(slow) / max(len(sets["live"].values), 1)
        print(
            f"  live events later than {SLOW * 1000:.0f} ms: {len(slow):,} "
            f"({share:.1%}); of these, in flight during "
            + ", ".join(f"{name}: {count:,}" for name, count in attribute(result, slow))
        )
    idle_cpu_per_stream = cpu["idle"].client / cpu["idle"].window.seconds / n * 1e6
    print(
        f"  idle: {idle_cpu_per_stream:.0f} µs of client CPU per stream per second "
        f"(one keep-alive every {work.ping:g} s per stream)"
    )
    print()

    live99 = percentile(sets["live"].values, 0.99) * 1000
    exact = not problems and delivered == expected
    print(f"  {'result':<46}{'value':>22}  {'target':<16}verdict")
    rows = [
        ("failed turns", f"{len(failed):,} of {n:,}", "0", not failed),
        (
            "hung turns (no end within the budget)",
            f"{len(result.hung):,}",
            "0",
            not result.hung,
        ),
        (
            "events delivered exactly once, in order",
            f"{delivered:,} / {expected:,}",
            "all",
            exact,
        ),
        (
            "p99 added delay, steady phase (live)",
            f"{live99:.1f} ms",
            f"< {TARGET_DELAY_P99_MS:g} ms",
            live99 < TARGET_DELAY_P99_MS,
        ),
        (
            "RSS per idle open stream",
            f"{per_stream:.1f} KiB",
            f"< {TARGET_RSS_KIB:g} KiB",
            per_stream < TARGET_RSS_KIB,
        ),
    ]
    for label, value, target, met in rows:
        print(f"  {label:<46}{value:>22}  {target:<16}{_verdict(met)}")
    print(
        f"  {'throughput, steady phase':<46}{rate:>18,.0f} ev/s  "
        f"({steady_events:,} events in {windows['steady'].seconds:.1f} s)"
    )
    print(
        f"  {'client CPU, whole run':<46}{cpu['run'].client:>20.1f} s  "
        f"({cpu['run'].client_pct():.0f}% of one core over {cpu['run'].window.seconds:.1f} s; "
        f"steady {cpu['steady'].client / max(steady_events, 1) * 1e6:.0f} µs per event)"
    )
    if result.left_idle_early:
        print(
            f"  note: {result.left_idle_early} streams left the idle pause before the idle "
            "sample ended (raise --idle): the RSS per idle stream is not clean"
        )
    for problem in problems[:5]:
        print(f"  DELIVERY: {problem}")
    for record in failed[:5]:
        print(f"  FAILED: #{record.index} ({record.kind}): {record.outcome} {record.error}")
    for record in result.hung[:5]:
        print(
            f"  HUNG: #{record.index} ({record.kind}): {len(record.event_ids)} events, "
            f"run {record.run_id}"
        )
    return not failed and exact and not result.hung


def print_pool(result: PoolResult) -> bool:
    turns = result.turns
    ok = [t for t in turns if t.error is None]
    errors = Counter(type(t.error).__name__ for t in turns if t.error is not None)
    waits = sorted((t.first - t.started) for t in ok if t.first is not None)
    fail_times = sorted((t.ended or 0) - t.started for t in turns if t.error is not None)
    print(f"  {result.title}")
    print(
        f"    {len(ok):,} of {result.streams:,} turns completed, "
        + (", ".join(f"{n} {name}" for name, n in errors.items()) or "no errors")
        + f", {result.hung} hung; wall {result.wall:.1f} s; most connections in use: "
        f"{result.most_in_use}"
    )
    if waits:
        print(
            f"    send -> first event: p50 {percentile(waits, 0.5):.2f} s, "
            f"p90 {percentile(waits, 0.9):.2f} s, max {waits[-1]:.2f} s"
        )
    if fail_times:
        print(
            f"    errors raised after {fail_times[0]:.2f}-{fail_times[-1]:.2f} s "
            f"(median {percentile(fail_times, 0.5):.2f} s)"
        )
    if result.retries:
        print(
            "    retries by the policy: "
            + ", ".join(f"{n:,} after {what}" for what, n in result.retries.items())
        )
    example = next((t.error for t in turns if t.error is not None), None)
    if example is not None:
        cause = example.__cause__
        print(f"    e.g. {type(example).__name__}: {example.message}")
        if example.hint:
            print(f"         hint: {example.hint}")
        while cause is not None and isinstance(cause, GenieError):
            print(f"         caused by {type(cause).__name__}: {cause.message}")
            cause = cause.__cause__
    return result.hung == 0


# --- main -------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    streams: int = args.streams
    work = Workload(
        messages=args.messages,
        interval=args.interval,
        idle=args.idle if args.idle is not None else 4.0 + 0.006 * streams,
        ping=args.ping,
    )
    _machine()
    print(
        f"workload      {streams:,} streams, {work.messages} messages each "
        f"{work.interval:g} s apart after {work.idle:g} s idle, pings every {work.ping:g} s\n",
        flush=True,
    )
    child = Child(work, collect=args.simulator_gc)
    profiler = cProfile.Profile() if args.profile else None
    pool_ok = True
    try:
        server = await child.start()
        result = await scale_run(child, server, streams, work, profiler, freeze=args.gc_freeze)
        if not args.skip_pool and profiler is None:
            print("\npool experiments…", flush=True)
            pools = [
                await pool_exhaustion(server, connect=Timeouts().connect, retry=True),
                await pool_exhaustion(server, connect=POOL_CONNECT, retry=True),
                await pool_exhaustion(server, connect=POOL_CONNECT, retry=False),
                await confirmation_starvation(server),
                await descriptor_limit(server),
            ]
        else:
            pools = []
    finally:
        await child.stop()
    ok = print_scale(result, work)
    if pools:
        print()
        print("pool experiments: what an exhausted pool or descriptor table does")
        for pool in pools:
            pool_ok = print_pool(pool) and pool_ok
        print(f"  nothing hung (every turn ended or raised within its budget): {_verdict(pool_ok)}")
    if profiler is not None:
        print("\ncProfile of the client during the scale run (it slows the client: no targets)")
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.strip_dirs().sort_stats(pstats.SortKey.TIME).print_stats(args.top)
    return 0 if ok and pool_ok else 1


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=DEFAULT_STREAMS, help="concurrent turns")
    parser.add_argument(
        "--quick", action="store_true", help=f"a small run: {QUICK_STREAMS} streams"
    )
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES, help="per turn")
    parser.add_argument(
        "--interval", type=float, default=DEFAULT_INTERVAL, help="s between two messages"
    )
    parser.add_argument(
        "--idle", type=float, default=None, help="s of idle pause per turn (4 + 0.006/stream)"
    )
    parser.add_argument("--ping", type=float, default=DEFAULT_PING, help="keep-alive interval")
    parser.add_argument("--skip-pool", action="store_true", help="only the scale run")
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() in the client once it is set up, before the streams open",
    )
    parser.add_argument(
        "--simulator-gc",
        action="store_true",
        help="leave the simulator's garbage collector on (its pauses then add to the delays)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the client's scale run (no pool runs)"
    )
    parser.add_argument("--top", type=int, default=30, help="functions listed by --profile")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        work = Workload(args.messages, args.interval, args.idle or 0.0, args.ping)
        asyncio.run(serve(work, collect=args.simulator_gc))
        return 0
    if args.quick:
        args.streams = QUICK_STREAMS
    if args.streams < 10 or args.messages < 2 or args.interval <= 0 or args.ping <= 0:
        parser.error("--streams must be >= 10, --messages >= 2, --interval and --ping > 0")
    if not Path("/proc/self/status").exists():
        parser.error("the benchmark reads /proc: Linux only")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
