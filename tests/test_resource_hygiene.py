"""Resource hygiene: however a turn ends, nothing outlives it.

Counted after every ending: the client's tasks (hook tasks, decision timers, the
``_bounded`` / ``_unless_closed`` / ``_sleep`` helper tasks, aiohttp's own), the pool's
checked-out connections, the SSE responses still open on the simulator, and (for long runs)
the process's file descriptors. The endings: cancellation, ``stream.aclose()`` and
``client.close()`` from another task at every event-loop iteration of a turn (so at every
suspension point, inside hooks and recovery sleeps included), hook exceptions,
``client.close()`` under several live streams, ``break`` at every event, a stream dropped
without being closed, and 200 turns in a row (the counts stay flat).

Run with ``-s`` to see, per sweep, how many interruptions landed and where.

Warnings are recorded per case (a never-awaited coroutine, an unclosed response or session,
a task destroyed while pending): each case asserts it produced none, which pinpoints the
case rather than failing the whole test at teardown.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import os
import traceback
import types
import warnings
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from genie_async import (
    Approve,
    AuthenticationError,
    AuthPauseTimeoutError,
    AuthRequest,
    BadRequestError,
    ClientClosedError,
    Conversation,
    Decision,
    EventStream,
    GenieClient,
    HookError,
    RetryPolicy,
    SkillConfirmationRequired,
    StreamClosedError,
    Timeouts,
)
from genie_async.events import GenieEvent
from genie_async.testing import (
    Confirm,
    ConnectAuth,
    GenieSimulator,
    Say,
    Skill,
    StreamFault,
    Turn,
    VirtualClock,
    Wait,
)

from .conftest import TEST_TIMEOUTS, make_client

# --- counting what is left ---------------------------------------------------------------------

_SERVER_MARKERS = (
    f"{os.sep}aiohttp{os.sep}web_",  # the simulator's HTTP server: connection/request handlers
    f"{os.sep}genie_async{os.sep}testing{os.sep}",  # the simulator's turn tasks
)


def _coro_file(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    return code.co_filename if code is not None else ""


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def pooled_connections(client: GenieClient) -> tuple[int, int]:
    """(checked out, idle in the pool) of the client's own connector."""
    session = client._core._session
    if session is None or session.closed or session.connector is None:
        return 0, 0
    connector = session.connector
    idle = sum(len(conns) for conns in connector._conns.values())
    return len(connector._acquired), idle


@dataclass
class Leftovers:
    tasks: list[asyncio.Task[Any]]
    acquired: int
    open_streams: int

    @property
    def clean(self) -> bool:
        return not self.tasks and self.acquired == 0 and self.open_streams == 0

    def __str__(self) -> str:
        described = [f"{t.get_coro()!r} ({_coro_file(t)})" for t in self.tasks]
        return (
            f"{len(self.tasks)} client task(s) {described}, {self.acquired} connection(s) "
            f"checked out, {self.open_streams} SSE response(s) open on the server"
        )


class Hygiene:
    """Counts what a client leaves behind, against a baseline taken while it is idle.

    The simulator serves from this event loop, so its tasks (aiohttp's request handlers, the
    scripted turns, parked ones included) are told apart and ignored; every other task that
    was not alive at the baseline is the client's (hook tasks run test code, the close
    watchers run ``asyncio.Event.wait``: they count).
    """

    def __init__(self, client: GenieClient, sim: GenieSimulator) -> None:
        self.client = client
        self.sim = sim
        self._baseline: frozenset[asyncio.Task[Any]] = frozenset()

    def _is_server_task(self, task: asyncio.Task[Any]) -> bool:
        if task in self.sim._world.tasks:
            return True
        filename = _coro_file(task)
        return any(marker in filename for marker in _SERVER_MARKERS)

    def client_tasks(self) -> list[asyncio.Task[Any]]:
        current = asyncio.current_task()
        return [
            task
            for task in asyncio.all_tasks()
            if task is not current
            and task not in self._baseline
            and not task.done()
            and not self._is_server_task(task)
        ]

    def snapshot(self) -> Leftovers:
        acquired, _idle = pooled_connections(self.client)
        return Leftovers(self.client_tasks(), acquired, self.sim.open_streams)

    async def baseline(self) -> None:
        """Wait until the client is idle, then remember the tasks alive (normally none)."""
        self._baseline = frozenset()
        left = await self.settle()
        self._baseline = frozenset(left.tasks)

    async def settle(self, *, iterations: int = 100, server_grace: float = 2.0) -> Leftovers:
        """Give the loop a few iterations to finish closing, as cleanup takes: cancelled
        tasks need one or two to unwind. No real time is granted to the client, so a
        straggler still sleeping (even briefly) counts; the server alone gets a moment to
        notice a closed socket."""
        for _ in range(iterations):
            left = self.snapshot()
            if left.clean:
                return left
            await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + server_grace
        left = self.snapshot()
        while not left.tasks and not left.acquired and left.open_streams:
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.005)
            left = self.snapshot()
        return left

    async def assert_clean(self, what: str) -> None:
        left = await self.settle()
        assert left.clean, f"{what}: {left}"


@contextlib.contextmanager
def no_warnings(what: str) -> Iterator[None]:
    """Fail if the block (or the garbage it leaves) warns or reports a loop error.

    ``gc.collect()`` runs the finalizers of anything left unreachable, so a never-awaited
    coroutine or an unclosed response warns here, attributed to this block.
    """
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
            gc.collect()
    finally:
        loop.set_exception_handler(previous)
    assert not caught, f"{what}: warnings {[str(w.message) for w in caught]}"
    assert not errors, f"{what}: event-loop errors {[e.get('message') for e in errors]}"


def decisions_posted_once(sim: GenieSimulator) -> None:
    posts = collections.Counter(record.call_id for record in sim.approvals())
    twice = {call_id: n for call_id, n in posts.items() if n > 1}
    assert not twice, f"decisions posted more than once: {twice}"


# --- interrupting after exactly k loop iterations --------------------------------------------


class Ticker:
    """Counts event-loop iterations: a ``call_soon`` callback that re-schedules itself runs
    exactly once per iteration. Calls ``action`` in iteration ``at``."""

    def __init__(self, at: int, action: Callable[[], None]) -> None:
        self.count = 0
        self._at = at
        self._action = action
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.Handle | None = self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self.count += 1
        if self.count == self._at:
            self._action()
        self._handle = self._loop.call_soon(self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


_AWAITABLE_TYPES = (types.CoroutineType, types.AsyncGeneratorType, types.GeneratorType)


def _frames(task: asyncio.Task[Any]) -> list[types.FrameType]:
    """The task's await chain, outermost first, through async generators too.

    ``Task.get_stack`` stops at an ``async for`` (an ``async_generator_asend`` has no public
    link to its generator); ``gc.get_referents`` finds the generator it drives.
    """
    frames: list[types.FrameType] = []
    node: object = task.get_coro()
    for _ in range(200):
        if isinstance(node, types.CoroutineType):
            frame, node = node.cr_frame, node.cr_await
        elif isinstance(node, types.AsyncGeneratorType):
            frame, node = node.ag_frame, node.ag_await
        elif isinstance(node, types.GeneratorType):
            frame, node = node.gi_frame, node.gi_yieldfrom
        elif isinstance(node, asyncio.Future):
            break
        else:
            # An async_generator_asend, a coroutine_wrapper (``__await__`` of a coroutine, as
            # aiohttp's request context manager returns): follow what it drives.
            inner = [r for r in gc.get_referents(node) if isinstance(r, _AWAITABLE_TYPES)]
            frame, node = None, (inner[0] if inner else None)
        if frame is not None:
            frames.append(frame)
    return frames


def _is_library(frame: types.FrameType) -> bool:
    filename = frame.f_code.co_filename
    return f"{os.sep}genie_async{os.sep}" in filename and f"{os.sep}testing{os.sep}" not in filename


def _qualname(frame: types.FrameType) -> str:
    """``Class.method`` of a frame (``co_qualname`` is new in Python 3.11)."""
    qualname = getattr(frame.f_code, "co_qualname", None)
    if isinstance(qualname, str):
        return qualname
    owner = frame.f_locals.get("self")
    name = frame.f_code.co_name
    return f"{type(owner).__name__}.{name}" if owner is not None else name


def suspension_point(task: asyncio.Task[Any]) -> tuple[str, frozenset[str]]:
    """Where the task waits: its innermost genie_async frame and the innermost frame, plus
    every genie_async function on the way there."""
    frames = _frames(task)
    if not frames:
        return "(not started)", frozenset()
    ours = [frame for frame in frames if _is_library(frame)]
    inner = frames[-1]
    where = f"{inner.f_code.co_name}@{os.path.basename(inner.f_code.co_filename)}:{inner.f_lineno}"
    functions = frozenset(_qualname(frame) for frame in ours)
    if not ours:
        return where, functions
    return f"{_qualname(ours[-1])}:{ours[-1].f_lineno} -> {where}", functions


Interrupt = Literal["cancel", "close-stream", "close-client"]


@dataclass
class Sweep:
    """What an interruption sweep covered, and what went wrong (by kind, with the k)."""

    landed: int = 0  # k values whose interruption landed before the turn completed
    last_landed: int = 0
    first_completed: int = 0  # the first k at which the turn completed first
    points: collections.Counter[str] = field(default_factory=collections.Counter)
    functions: set[str] = field(default_factory=set)  # genie_async functions interrupted
    violations: dict[str, list[str]] = field(default_factory=dict)

    def violate(self, kind: str, detail: str) -> None:
        self.violations.setdefault(kind, []).append(detail)

    def assert_none(self, *kinds: str) -> None:
        found = {kind: self.violations[kind] for kind in kinds if kind in self.violations}
        summary = "\n".join(
            f"{kind}: {len(cases)} case(s), e.g.\n    " + "\n    ".join(cases[:3])
            for kind, cases in found.items()
        )
        assert not found, f"\n{summary}"

    def report(self, name: str) -> None:
        print(
            f"\n{name}: {self.landed} interruptions landed (k=1..{self.last_landed}) at "
            f"{len(self.points)} distinct suspension points; first completion at "
            f"k={self.first_completed}"
        )
        for point, count in sorted(self.points.items()):
            print(f"  {count:5d}  {point}")
        for kind, cases in self.violations.items():
            print(f"  VIOLATION {kind}: {len(cases)} case(s)")


@dataclass(frozen=True)
class Scenario:
    name: str
    turn: Turn
    fail: tuple[tuple[str, int], ...] = ()  # (route, status) queued before every attempt
    confirm_hook: bool = False
    consumer_approves: bool = False
    auth_hook: bool = False
    real_sleeps: bool = False
    #: genie_async functions a cancellation must have landed in (proves the sweep got there).
    must_reach: frozenset[str] = frozenset()


DROP_AFTER_ONE = Turn(Say("one"), Say("two"), faults=[StreamFault("abort", after_events=2)])

SCENARIOS = [
    Scenario(
        "plain",
        Turn(Say("hi")),
        must_reach=frozenset({"EventStream._open_initial", "EventStream._read"}),
    ),
    Scenario(
        "confirmation-hook-awaits",
        Turn(Confirm("Submit", on_approve=(Say("done"),))),
        confirm_hook=True,
        must_reach=frozenset({"EventStream._bounded", "EventStream._submit"}),
    ),
    Scenario(
        "confirmation-consumer-approves",
        Turn(Confirm("Submit", on_approve=(Say("done"),))),
        consumer_approves=True,
        must_reach=frozenset({"EventStream.approve", "EventStream._read"}),
    ),
    Scenario(
        "auth-pause",
        Turn(ConnectAuth("Salesforce", then=(Say("synced"),))),
        auth_hook=True,
        must_reach=frozenset(
            {
                "EventStream._call_auth_hook",
                "EventStream._bounded",
                "EventStream._complete_auth_pause",
                "EventStream._recent_messages",
            }
        ),
    ),
    Scenario(
        "drop-reconnect",
        DROP_AFTER_ONE,
        must_reach=frozenset({"EventStream._sleep", "EventStream._try_reconnect"}),
    ),
    Scenario(
        "drop-reconnect-real-sleep",
        DROP_AFTER_ONE,
        real_sleeps=True,
        must_reach=frozenset({"EventStream._sleep", "EventStream._try_reconnect"}),
    ),
    Scenario(
        "drop-before-first-event",
        Turn(Say("hi"), faults=[StreamFault("abort", after_events=0)]),
        must_reach=frozenset({"EventStream._find_accepted_run", "EventStream._try_reconnect"}),
    ),
    Scenario(
        "reconnect-refused-replay",
        DROP_AFTER_ONE,
        fail=(("reconnect", 404),),
        must_reach=frozenset({"EventStream._try_reconnect", "EventStream._persisted_events"}),
    ),
    Scenario(
        "send-503-backoff-real-sleep",
        Turn(Say("hi")),
        fail=(("send", 503),),
        real_sleeps=True,
        must_reach=frozenset({"EventStream._sleep", "Conversation.find_accepted_run"}),
    ),
]

#: The sweep ends once this many consecutive k let the turn complete first. Real sleeps and
#: keep-alive timers make a turn's length in loop iterations vary a little from run to run,
#: so one early completion does not yet mean every later point was reached.
COMPLETIONS_TO_STOP = 20


@pytest.fixture
async def quick_sim() -> AsyncIterator[GenieSimulator]:
    """Frequent pings, and the auth pause interrupted at once: short turns, short sweeps."""
    async with GenieSimulator(ping_interval=0.01, auth_interrupt_after=0.0) as sim:
        yield sim


async def _approve_after_awaiting(event: SkillConfirmationRequired) -> Approve:
    for _ in range(3):
        await asyncio.sleep(0)  # a hook doing some async work first
    return Approve()


class Turns:
    """Starts and reads the scenario's turn as an application would, noting anything the
    stream does after it was closed: events handed over, decisions posted."""

    def __init__(self, scenario: Scenario, sim: GenieSimulator) -> None:
        self.scenario = scenario
        self.sim = sim
        self.events_after_close: list[str] = []
        self.decisions_after_close: list[str] = []

    async def _on_auth(self, request: AuthRequest) -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        self.sim.authorize(request.attempt_id)  # the user clicks the link

    def send(self, conversation: Conversation) -> EventStream:
        scenario = self.scenario
        stream = conversation.send(
            "go",
            on_skill_confirmation=_approve_after_awaiting if scenario.confirm_hook else None,
            on_auth_required=self._on_auth if scenario.auth_hook else None,
        )
        submit = conversation.submit_decision

        async def watched_submit(call_id: str, decision: Decision) -> None:
            if stream.closed and not scenario.consumer_approves:
                self.decisions_after_close.append(call_id)
            await submit(call_id, decision)

        vars(conversation)["submit_decision"] = watched_submit  # what the stream calls
        return stream

    async def read(self, stream: EventStream) -> tuple[str | None, list[GenieEvent]]:
        events: list[GenieEvent] = []
        async with stream:
            async for event in stream:
                events.append(event)
                if stream.closed:
                    self.events_after_close.append(type(event).__name__)
                if self.scenario.consumer_approves and isinstance(event, SkillConfirmationRequired):
                    try:
                        await stream.approve(event.call_id)
                    except (StreamClosedError, ClientClosedError):
                        # Closed meanwhile by another task: the decision may fail; reading
                        # on, the loop itself must now end with StreamClosedError.
                        if not stream.closed:
                            raise
        return stream.outcome, events


def _describe(task: asyncio.Task[Any]) -> str:
    """How the task ended; for an error, the genie_async frames it came through."""
    if task.cancelled():
        return "ended cancelled"
    error = task.exception()
    if error is None:
        return f"returned {task.result()!r:.200}"
    frames = [
        f"{os.path.basename(f.filename)}:{f.lineno} {f.name}"
        for f in traceback.extract_tb(error.__traceback__)
        if f"{os.sep}genie_async{os.sep}" in f.filename
    ]
    return f"raised {error!r} via {' > '.join(frames)}"


def _judge(sweep: Sweep, interrupt: Interrupt, task: asyncio.Task[Any], what: str) -> None:
    """File what a landed interruption did to the reader under its kind of violation."""
    if interrupt == "cancel":
        if not task.cancelled():  # swallowed, or turned into another error
            sweep.violate("cancellation not propagated", f"{what}: the task {_describe(task)}")
        return
    if task.cancelled() or task.exception() is not None:
        if not isinstance(task.exception(), StreamClosedError):
            sweep.violate("reader error other than StreamClosedError", f"{what}: {_describe(task)}")
        return
    outcome, events = task.result()
    if outcome != "completed":
        sweep.violate(
            "reader loop ended silently (no StreamClosedError, turn not completed)",
            f"{what}: outcome={outcome!r} after {[type(e).__name__ for e in events]}",
        )


async def sweep_interruptions(
    sim: GenieSimulator,
    scenario: Scenario,
    interrupt: Interrupt,
    new_client: Callable[[], GenieClient],
    *,
    limit: int = 3000,
) -> Sweep:
    """Interrupt the turn after k = 1, 2, 3, … loop iterations until it completes first.

    ``cancel``: the reading task is cancelled. ``close-stream``: another task calls
    ``stream.aclose()``. ``close-client``: another task calls ``client.close()`` (then a
    fresh client for the next k). Anything left behind fails at once; how the reader ended
    is collected in ``Sweep.violations`` for the test to judge.
    """
    sim.default_turn = scenario.turn
    turns = Turns(scenario, sim)
    loop = asyncio.get_running_loop()
    client = new_client()
    hygiene = Hygiene(client, sim)
    await client.create_conversation()  # warm the pool: the baseline is an idle client
    await hygiene.baseline()
    sweep = Sweep()
    # Everything alive now is moved out of the collector's sight, so the gc.collect() after
    # each k scans only what that k allocated: milliseconds instead of tens of them.
    gc.collect()
    gc.freeze()
    try:
        consecutive_completions = 0
        for k in range(1, limit + 1):
            if client.closed:
                client = hygiene.client = new_client()
            conversation = await client.create_conversation()
            sim.clear_faults()
            for route, status in scenario.fail:
                sim.fail(route, status)
            turns.events_after_close.clear()
            turns.decisions_after_close.clear()
            what = f"{interrupt} after k={k}"
            with no_warnings(f"{scenario.name}: {what}"):
                stream = turns.send(conversation)
                task = loop.create_task(turns.read(stream))
                landed: list[tuple[str, frozenset[str]]] = []
                closers: list[asyncio.Task[None]] = []

                def act(
                    task: asyncio.Task[Any] = task,
                    stream: EventStream = stream,
                    client: GenieClient = client,
                    landed: list[tuple[str, frozenset[str]]] = landed,
                    closers: list[asyncio.Task[None]] = closers,
                ) -> None:
                    if task.done():
                        return
                    landed.append(suspension_point(task))
                    if interrupt == "cancel":
                        task.cancel()
                    elif interrupt == "close-stream":
                        closers.append(loop.create_task(stream.aclose()))
                    else:
                        closers.append(loop.create_task(client.close()))

                ticker = Ticker(k, act)
                try:
                    await asyncio.wait({task})
                finally:
                    ticker.stop()
                await asyncio.gather(*closers)
                if landed:
                    point, functions = landed[0]
                    what += f" in {point}"
                    sweep.landed += 1
                    sweep.last_landed = k
                    sweep.points[point] += 1
                    sweep.functions |= functions
                    consecutive_completions = 0
                    _judge(sweep, interrupt, task, what)
                    if turns.events_after_close:
                        sweep.violate(
                            "events handed over after the stream was closed",
                            f"{what}: {turns.events_after_close}",
                        )
                    if turns.decisions_after_close:
                        sweep.violate("a hook's decision posted after the stream was closed", what)
                else:
                    outcome, events = task.result()  # finished first: it must have succeeded
                    assert outcome == "completed", (what, outcome, events)
                    sweep.first_completed = sweep.first_completed or k
                    consecutive_completions += 1
                if interrupt == "close-client":
                    if not landed:
                        await client.close()
                    session = client._core._session
                    assert session is None or session.closed, f"{what}: the session is open"
                await hygiene.assert_clean(f"{scenario.name}: {what}")
                decisions_posted_once(sim)
                del task, stream, act
            if consecutive_completions >= COMPLETIONS_TO_STOP:
                return sweep
    finally:
        gc.unfreeze()
        await client.close()
    pytest.fail(f"{scenario.name}: the turn never completed within {limit} loop iterations")


def _retry_for(scenario: Scenario) -> RetryPolicy:
    if scenario.real_sleeps:
        # Real, short sleeps: interruptions land inside a running asyncio.sleep.
        return RetryPolicy(wait_initial=0.0005, wait_max=0.001, wait_jitter=0.0, wait_budget=5)
    clock = VirtualClock()
    return RetryPolicy(clock=clock.now, sleep=clock.sleep)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_cancelling_at_every_loop_iteration_leaves_nothing(
    quick_sim: GenieSimulator, scenario: Scenario
) -> None:
    """Cancel after k = 1, 2, 3, … loop iterations: CancelledError out, nothing left behind."""
    retry = _retry_for(scenario)
    reached: set[str] = set()
    points: list[str] = []
    # Every sweep must leave nothing behind. Which suspension points a sweep hits depends on
    # timing (on a loaded machine a short request can complete within one loop iteration),
    # so the coverage check may take up to three sweeps together.
    for _ in range(3):
        sweep = await sweep_interruptions(
            quick_sim, scenario, "cancel", lambda: make_client(quick_sim, retry)
        )
        sweep.report(f"{scenario.name} / cancel")
        assert sweep.landed >= sweep.first_completed - 1
        sweep.assert_none("cancellation not propagated")
        reached |= sweep.functions
        points.extend(sweep.points)
        if scenario.must_reach <= reached:
            break
    missing = scenario.must_reach - reached
    assert not missing, f"no cancellation landed in {sorted(missing)}: {sorted(set(points))}"


CLOSE_CASES = [
    pytest.param(scenario, interrupt, id=f"{scenario.name}-{interrupt}")
    for scenario in SCENARIOS
    for interrupt in ("close-stream", "close-client")
]


@pytest.mark.parametrize(("scenario", "interrupt"), CLOSE_CASES)
async def test_closing_at_every_loop_iteration_leaves_nothing(
    quick_sim: GenieSimulator, scenario: Scenario, interrupt: Interrupt
) -> None:
    """stream.aclose() / client.close() from another task after k = 1, 2, 3, … iterations:
    nothing left behind, and the reader gets StreamClosedError (or the turn completed)."""
    retry = _retry_for(scenario)
    sweep = await sweep_interruptions(
        quick_sim, scenario, interrupt, lambda: make_client(quick_sim, retry)
    )
    sweep.report(f"{scenario.name} / {interrupt}")
    assert sweep.landed >= sweep.first_completed - 1
    sweep.assert_none(
        "reader error other than StreamClosedError",
        "reader loop ended silently (no StreamClosedError, turn not completed)",
    )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_a_closed_stream_hands_over_and_decides_nothing_more(
    quick_sim: GenieSimulator, scenario: Scenario
) -> None:
    """Once ``stream.closed`` (aclose() from another task, after k = 1, 2, 3, … iterations),
    the reader is handed no further event and no hook decision is posted.

    Closing is how a worker hands a turn over: it saves ``stream.cursor`` and another
    process resumes from it. Events delivered after that are processed twice, and the
    EventStream docs promise that closing leaves a waiting confirmation pending.
    """
    retry = _retry_for(scenario)
    sweep = await sweep_interruptions(
        quick_sim, scenario, "close-stream", lambda: make_client(quick_sim, retry)
    )
    sweep.report(f"{scenario.name} / close-stream")
    sweep.assert_none(
        "events handed over after the stream was closed",
        "a hook's decision posted after the stream was closed",
    )


# --- hook exceptions ---------------------------------------------------------------------------


async def _confirm_raises(event: SkillConfirmationRequired) -> Approve:
    raise KeyError("the approvals UI is gone")


async def _confirm_raises_after_awaiting(event: SkillConfirmationRequired) -> Approve:
    await asyncio.sleep(0.01)
    raise RuntimeError("the approvals service failed")


async def _confirm_returns_garbage(event: SkillConfirmationRequired) -> Approve:
    return "yes"  # type: ignore[return-value]


async def _confirm_hangs(event: SkillConfirmationRequired) -> Approve:
    await asyncio.sleep(60)
    return Approve()


async def _auth_raises(request: AuthRequest) -> None:
    raise KeyError("no browser")


async def _auth_raises_after_awaiting(request: AuthRequest) -> None:
    await asyncio.sleep(0.01)
    raise RuntimeError("the notification service failed")


async def _auth_returns_garbage(request: AuthRequest) -> None:
    return "ok"  # type: ignore[return-value]


async def _auth_hangs(request: AuthRequest) -> None:
    await asyncio.sleep(60)


@dataclass(frozen=True)
class HookCase:
    name: str
    confirm: Callable[[SkillConfirmationRequired], Awaitable[Approve]] | None = None
    auth: Callable[[AuthRequest], Awaitable[None]] | None = None
    raises: type[Exception] | None = HookError
    fail_approval: bool = False  # the fail-closed rejection itself gets a 400


HOOK_CASES = [
    HookCase("confirm-raises", confirm=_confirm_raises),
    HookCase("confirm-raises-after-awaiting", confirm=_confirm_raises_after_awaiting),
    HookCase("confirm-returns-garbage", confirm=_confirm_returns_garbage),
    HookCase(
        "confirm-raises-and-the-rejection-fails",
        confirm=_confirm_raises,
        raises=BadRequestError,
        fail_approval=True,
    ),
    HookCase("confirm-times-out", confirm=_confirm_hangs, raises=None),
    HookCase("auth-raises", auth=_auth_raises),
    HookCase("auth-raises-after-awaiting", auth=_auth_raises_after_awaiting),
    HookCase("auth-returns-garbage", auth=_auth_returns_garbage),
    HookCase("auth-times-out", auth=_auth_hangs, raises=AuthPauseTimeoutError),
]


@pytest.mark.parametrize("plain_for", [False, True], ids=["async-with", "plain-async-for"])
@pytest.mark.parametrize("case", HOOK_CASES, ids=[c.name for c in HOOK_CASES])
async def test_a_failing_hook_leaves_nothing(
    quick_sim: GenieSimulator, retry: RetryPolicy, case: HookCase, plain_for: bool
) -> None:
    """A hook raising, returning garbage or timing out: the error comes out, nothing stays.

    ``plain_for``: iterated without ``async with`` and never closed; the error ending the
    generator must release everything by itself.
    """
    sim = quick_sim
    if case.confirm is not None:
        sim.default_turn = Turn(Confirm("Submit", on_approve=(Say("done"),)), Say("after"))
    else:
        sim.default_turn = Turn(ConnectAuth("Salesforce", then=(Say("synced"),)))
    timeouts = Timeouts(connect=5, read=10, request=10, stall=10, decision=0.2, auth=0.5)
    async with make_client(sim, retry, timeouts=timeouts) as client:
        hygiene = Hygiene(client, sim)
        conversation = await client.create_conversation()
        await hygiene.baseline()
        if case.fail_approval:
            sim.fail("skill_approval", 400)
        with no_warnings(case.name):
            stream = conversation.send(
                "go", on_skill_confirmation=case.confirm, on_auth_required=case.auth
            )
            error: BaseException | None = None
            try:
                if plain_for:
                    async for _event in stream:
                        pass
                else:
                    async with stream:
                        async for _event in stream:
                            pass
            except Exception as exc:
                error = exc
            if case.raises is None:
                assert error is None, repr(error)
                assert stream.outcome == "completed"
            else:
                assert isinstance(error, case.raises), repr(error)
            await hygiene.assert_clean(case.name)
            decisions_posted_once(sim)
            if case.fail_approval:
                assert [r.status for r in sim.requests("skill_approval")] == [400]
            elif case.confirm is not None:
                assert [a.resolution for a in sim.approvals()] == ["rejected"]
            del stream, error


async def test_a_failing_stream_stops_its_decision_timer(
    quick_sim: GenieSimulator, retry: RetryPolicy
) -> None:
    """A confirmation held by its consumer (no hook: the decision timer runs), then the turn
    fails (the reconnect is refused with 401) in a plain ``async for`` that never closes the
    stream: the error ends the timer too, so no rejection is posted later for a dead turn."""
    sim = quick_sim
    sim.default_turn = Turn(
        Confirm("Submit"), faults=[StreamFault("abort", after_events=2, connection=None)]
    )
    timeouts = Timeouts(connect=5, read=10, request=10, stall=10, decision=0.3, auth=10)
    async with make_client(sim, retry, timeouts=timeouts) as client:
        hygiene = Hygiene(client, sim)
        conversation = await client.create_conversation()
        await hygiene.baseline()
        sim.fail("reconnect", 401)
        held: list[SkillConfirmationRequired] = []

        async def read_without_deciding(stream: EventStream) -> None:
            async for event in stream:
                if isinstance(event, SkillConfirmationRequired):
                    held.extend(stream.pending_confirmations)  # left for the consumer

        with no_warnings("a failing stream holding a confirmation"):
            stream = conversation.send("go")
            with pytest.raises(AuthenticationError):
                await read_without_deciding(stream)
            assert held, "the confirmation should have been delivered first"
            await hygiene.assert_clean("the stream failed")
            await asyncio.sleep(0.5)  # past the decision timeout
            assert sim.approvals() == []
            del stream


# --- client.close() under live streams -------------------------------------------------------


async def test_closing_the_client_under_many_live_streams_leaves_nothing() -> None:
    """client.close() while streams of several conversations are in every kind of wait.

    Mid-read; a confirmation hook awaiting; a confirmation held by its consumer (decision
    timer running); a 60 s server-requested wait before a reconnect; recovery polling after a
    refused reconnect; a 30 s send backoff after a 503; an auth pause polling its link. Every
    reader gets StreamClosedError, close() returns at once, and nothing is left.
    """
    async with GenieSimulator(ping_interval=0.02, auth_interrupt_after=0.05) as sim:
        sim.on_message("read", Turn(Say("a"), Wait(None)))
        sim.on_message("hook", Turn(Say("a"), Confirm("Submit")))
        sim.on_message("consumer", Turn(Say("a"), Confirm("Pay")))
        sim.on_message(
            "interrupted",
            Turn(
                Say("a"),
                Wait(None),
                faults=[StreamFault("interrupt", after_events=2, retry_after_ms=60_000)],
            ),
        )
        sim.on_message(
            "refused",
            Turn(Say("a"), Wait(None), faults=[StreamFault("abort", after_events=2)]),
        )
        sim.on_message("backoff", Turn(Say("a")))
        sim.on_message("auth", Turn(Say("a"), ConnectAuth("Salesforce")))
        # Fast retries, except where the server asks for long waits (Retry-After, retry_after_ms).
        retry = RetryPolicy(wait_initial=0.01, wait_max=60, wait_jitter=0.0, wait_budget=600)
        async with make_client(sim, retry, timeouts=TEST_TIMEOUTS) as client:
            await _close_under_live_streams(sim, client)


async def _close_under_live_streams(sim: GenieSimulator, client: GenieClient) -> None:
    """The body of the test above; ``async with`` there closes the client if this fails."""
    hygiene = Hygiene(client, sim)
    await client.create_conversation()
    await hygiene.baseline()
    hook_entered = asyncio.Event()
    seen: dict[str, list[GenieEvent]] = collections.defaultdict(list)

    async def waits_forever(event: SkillConfirmationRequired) -> Approve:
        hook_entered.set()
        await asyncio.Event().wait()
        return Approve()

    async def auth_noted(request: AuthRequest) -> None:
        return None  # shows the link; the user never authorizes

    async def read(text: str) -> BaseException | None:
        conversation = await client.create_conversation()
        stream = conversation.send(
            text,
            on_skill_confirmation=waits_forever if text == "hook" else None,
            on_auth_required=auth_noted if text == "auth" else None,
        )
        try:
            async with stream:
                async for event in stream:
                    seen[text].append(event)
        except Exception as exc:
            return exc
        return None

    with no_warnings("client.close() under live streams"):
        sim.fail("send", 503, retry_after="30")
        readers = {"backoff": asyncio.ensure_future(read("backoff"))}
        for _ in range(500):
            if sim.requests("send"):
                break
            await asyncio.sleep(0.01)
        sim.fail("reconnect", 404, times=1000)
        for text in ("read", "hook", "consumer", "interrupted", "refused", "auth"):
            readers[text] = asyncio.ensure_future(read(text))
        await asyncio.wait_for(hook_entered.wait(), 5)
        for _ in range(500):
            if all(seen[text] for text in ("read", "consumer", "interrupted", "refused")):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # the auth pause is polling; the others are waiting
        assert sim.pending_approvals(), "the confirmations should be waiting"
        assert sim.pending_auth_attempts(), "the auth pause should be waiting"
        loop = asyncio.get_running_loop()
        started = loop.time()
        await client.close()
        results = dict(
            zip(
                readers,
                await asyncio.wait_for(asyncio.gather(*readers.values()), 5),
                strict=True,
            )
        )
        elapsed = loop.time() - started
        # None of these turns can finish on its own: every reader must be told it closed.
        wrong = {
            text: repr(result)
            for text, result in results.items()
            if not isinstance(result, StreamClosedError)
        }
        assert not wrong, f"readers ended with something other than StreamClosedError: {wrong}"
        assert elapsed < 2, f"close() and the readers took {elapsed:.2f} s"
        session = client._core._session
        assert session is not None
        assert session.closed
        await hygiene.assert_clean("after client.close()")
        assert sim.approvals() == []  # nothing was decided on anyone's behalf
        del readers, results


# --- break at every event ----------------------------------------------------------------------


BREAK_TURN = Turn(
    Say("one"),
    Skill("Lookup"),
    Say("two"),
    Confirm("Submit", on_approve=(Say("approved"),)),
    Say("three"),
    faults=[StreamFault("abort", after_events=4)],  # a reconnect in the middle
)


async def _read_turn(
    stream: EventStream, *, approve: bool, stop_after: int | None = None
) -> list[GenieEvent]:
    """Read a turn inside ``async with``; ``break`` right after event ``stop_after``."""
    events: list[GenieEvent] = []
    async with stream:
        async for event in stream:
            events.append(event)
            if len(events) - 1 == stop_after:
                break
            if approve and isinstance(event, SkillConfirmationRequired):
                await stream.approve(event.call_id)
    return events


@pytest.mark.parametrize("hook", [True, False], ids=["hook-decides", "consumer-decides"])
async def test_breaking_out_at_every_event_leaves_nothing(
    quick_sim: GenieSimulator, retry: RetryPolicy, hook: bool
) -> None:
    """``break`` inside ``async with`` right after each event of a multi-event turn."""
    sim = quick_sim
    sim.default_turn = BREAK_TURN
    decide = _approve_after_awaiting if hook else None
    async with make_client(sim, retry) as client:
        hygiene = Hygiene(client, sim)
        conversation = await client.create_conversation()
        stream = conversation.send("go", on_skill_confirmation=decide)
        full = await _read_turn(stream, approve=not hook)
        assert stream.outcome == "completed"
        # started, "one", skill running/completed, "two", the confirmation, "approved",
        # "three", finished; the stream drops after the skill and is reconnected.
        assert len(full) == 9, full
        await hygiene.baseline()
        for index in range(len(full)):
            conversation = await client.create_conversation()
            what = f"break after event {index} ({type(full[index]).__name__}) of {len(full)}"
            with no_warnings(what):
                stream = conversation.send("go", on_skill_confirmation=decide)
                events = await _read_turn(stream, approve=not hook, stop_after=index)
                assert [type(e) for e in events] == [type(e) for e in full[: index + 1]], what
                assert stream.closed
                await hygiene.assert_clean(what)
                decisions_posted_once(sim)
                del stream, events


# --- an abandoned stream -----------------------------------------------------------------------


def _timers_holding(obj: object) -> list[str]:
    """Scheduled loop timers whose callback is a method of ``obj`` (what keeps it alive)."""
    loop = asyncio.get_running_loop()
    return [
        repr(handle)
        for handle in loop._scheduled  # type: ignore[attr-defined]
        if getattr(handle._callback, "__self__", None) is obj
    ]


@pytest.mark.parametrize("stall", [None, 10.0], ids=["no-stall-watchdog", "stall-watchdog"])
async def test_an_abandoned_stream_is_released_when_garbage_collected(
    quick_sim: GenieSimulator, retry: RetryPolicy, stall: float | None
) -> None:
    """``break`` out of a plain ``async for`` and drop the stream without aclose().

    The EventStream docs: "after breaking out early, call aclose(), or the connection stays
    open until garbage collection". So once nothing references the stream and the collector
    has run, its connection and the server's SSE response must be gone. (The default
    Timeouts have a 300 s stall watchdog, so this is the everyday configuration.)
    """
    sim = quick_sim
    sim.default_turn = Turn(Say("a"), Say("b"), Wait(None))
    timeouts = Timeouts(connect=5, read=10, request=10, stall=stall, decision=5, auth=10)
    async with make_client(sim, retry, timeouts=timeouts) as client:
        hygiene = Hygiene(client, sim)
        conversation = await client.create_conversation()
        await hygiene.baseline()
        with no_warnings("an abandoned stream"):
            stream = conversation.send("go")
            async for _event in stream:
                break
            ref = weakref.ref(stream)
            del stream, _event
            for _ in range(5):
                gc.collect()
                await asyncio.sleep(0.01)
            alive = ref()
            if alive is not None:
                holders = _timers_holding(alive)
                del alive
                pytest.fail(f"the abandoned stream is never collected; held by {holders}")
            await hygiene.assert_clean("an abandoned stream, collected")


# --- many turns on one client ------------------------------------------------------------------


def _mixed_script(sim: GenieSimulator) -> list[str]:
    """Message texts that pick plain, multi-message, skill, confirmation and drop turns."""
    sim.on_message("plain", Turn(Say("Hello")))
    sim.on_message("multi", Turn(Say("One"), Say("Two"), Say("Three")))
    sim.on_message("skill", Turn(Say("Checking"), Skill("Get PTO balance"), Say("12 days")))
    sim.on_message("confirm", Turn(Confirm("Submit", on_approve=(Say("Submitted"),))))
    sim.on_message(
        "drop",
        Turn(Say("one"), Say("two"), Say("three"), faults=[StreamFault("abort", after_events=2)]),
    )
    return ["plain", "multi", "skill", "confirm", "plain", "drop", "multi", "plain"]


@dataclass(frozen=True)
class Counts:
    client_tasks: int
    all_tasks: int
    checked_out: int
    pooled: int
    fds: int

    def __str__(self) -> str:
        return (
            f"client tasks {self.client_tasks}, all tasks {self.all_tasks}, connections "
            f"checked out {self.checked_out} / pooled {self.pooled}, fds {self.fds}"
        )


async def _counts(hygiene: Hygiene) -> Counts:
    left = await hygiene.settle()
    gc.collect()
    checked_out, pooled = pooled_connections(hygiene.client)
    return Counts(len(left.tasks), len(asyncio.all_tasks()), checked_out, pooled, open_fds())


async def test_many_sequential_turns_keep_every_count_flat(retry: RetryPolicy) -> None:
    """200 mixed turns on one client: tasks, pooled connections and file descriptors after
    the run equal (within a small constant) the counts after the first few turns."""
    async with GenieSimulator(ping_interval=0.05) as sim:
        texts = _mixed_script(sim)
        async with make_client(sim, retry) as client:
            hygiene = Hygiene(client, sim)
            conversation = await client.create_conversation()

            async def turn(number: int) -> None:
                nonlocal conversation
                if number % 10 == 0:
                    conversation = await client.create_conversation()
                reply = await conversation.ask(
                    texts[number % len(texts)], on_skill_confirmation=_approve_after_awaiting
                )
                assert reply.outcome == "completed"

            with no_warnings("200 sequential turns"):
                for number in range(10):
                    await turn(number)
                warm = await _counts(hygiene)
                for number in range(10, 200):
                    await turn(number)
                after = await _counts(hygiene)
            print(f"\nafter 10 turns:  {warm}\nafter 200 turns: {after}")
            assert after.client_tasks == warm.client_tasks == 0
            assert after.checked_out == warm.checked_out == 0
            assert after.pooled <= warm.pooled + 1
            assert after.all_tasks <= warm.all_tasks + 2
            assert after.fds <= warm.fds + 4  # a pooled connection is 2 fds here (both ends)
            assert len(sim.requests("reconnect")) >= 20  # the drops really were recovered


# --- the checks themselves ---------------------------------------------------------------------


async def test_the_leak_checks_can_see_leaks(quick_sim: GenieSimulator, retry: RetryPolicy) -> None:
    """A stray task, a held connection, an open SSE response and a never-awaited coroutine
    are all seen: the checks above are not vacuous."""
    sim = quick_sim
    sim.default_turn = Turn(Say("a"), Wait(None))
    async with make_client(sim, retry) as client:
        hygiene = Hygiene(client, sim)
        conversation = await client.create_conversation()
        await hygiene.baseline()
        stray = asyncio.ensure_future(asyncio.Event().wait())
        stream = conversation.send("x")
        await stream.__anext__()
        left = hygiene.snapshot()
        assert left.tasks == [stray]
        assert (left.acquired, left.open_streams) == (1, 1)
        stray.cancel()
        await stream.aclose()
        await hygiene.assert_clean("after tidying up")
        with (  # noqa: PT012
            pytest.raises(AssertionError, match="never awaited"),
            no_warnings("a coroutine never awaited"),
        ):
            forgotten = asyncio.sleep(0)
            del forgotten


async def test_finished_turns_leave_nothing_for_the_cyclic_garbage_collector(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """A finished turn is freed by reference counting alone: under load, cyclic garbage
    lengthens the collector's pauses (measured: 59 objects per turn before this was fixed)."""
    conversation = await client.create_conversation()
    for _ in range(5):
        await conversation.ask("warm up")
    gc.collect()
    gc.disable()
    try:
        for _ in range(50):
            await conversation.ask("x")
        unreachable = gc.collect()
    finally:
        gc.enable()
    assert unreachable < 50, f"{unreachable / 50:.1f} cyclic objects per turn"
