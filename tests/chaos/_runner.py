"""Playing turn plans against the simulator through one client, and checking each against
the simulator's own record of what happened.

Turns run in rounds: in each round every conversation slot plays one turn, all slots
concurrently (one turn at a time per conversation), then the pool and the server are checked
for leaked connections. A slot moves to a fresh conversation every `TURNS_PER_CONVERSATION`
turns, or after a turn that left its conversation busy.

Per turn, against the simulator: the run's persisted event ids were delivered exactly once and
in order (and, after a runtime-connection pause, the resumed run's history replies); no
keep-alive or ``system.stream_interrupted`` reached the consumer; each confirmation has exactly
one approval POST with the planned resolution; the turn stored its user message exactly once;
the final text and the outcome are the ones the script implies. A stall turn must raise
`StreamStalledError` (exactly the events before it delivered), and when the plan says so the
consumer resumes from the error's cursor and the two streams together must deliver the run.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from genie_async import (
    AgentMessage,
    Approve,
    AuthRequest,
    Conversation,
    Decline,
    EventStream,
    GenieClient,
    Reject,
    RetryPolicy,
    RuntimeConnectionAuthRequired,
    SkillConfirmationRequired,
    StreamStalledError,
    Timeouts,
)
from genie_async.events import GenieEvent
from genie_async.testing import GenieSimulator, SimConversation, SimRun

from ._plan import Decision, TurnPlan, make_plans
from ._scoped import ScopedFaults, TurnClocks

TURNS_PER_CONVERSATION = 20
TURN_TIMEOUT = 60.0  # a turn still running after this is reported as hung
STALL_TIMEOUT = 0.5
CONTROL_TYPES = frozenset({"system.ping", "system.stream_interrupted"})
_ATTEMPT_IN_URL = re.compile(r"/runtime_connection/([^/?]+)/authorize")
_AUTH_OUTCOMES = {
    "authorize": "completed",
    "decline": "connection_declined",
    "reject": "connection_rejected",
}


@dataclass(frozen=True)
class ChaosConfig:
    seed: int
    turns: int
    concurrency: int = 8
    only: tuple[int, ...] = ()  # replay just the conversations leading to these turns
    test_name: str = "test_chaos_ci"

    def reproduce(self, index: int | None = None) -> str:
        command = f"pytest tests/chaos -k {self.test_name} --chaos-seed={self.seed}"
        if self.test_name == "test_chaos_long":
            command += " --chaos-long"
        else:
            command += f" --chaos-turns={self.turns}"
        if self.concurrency != 8:
            command += f" --chaos-concurrency={self.concurrency}"
        return command if index is None else f"{command} --chaos-only={index}"


def conversation_turns(index: int, concurrency: int) -> list[int]:
    """Turn ``index`` and the turns its conversation played before it, in order.

    Turn ``i`` plays in slot ``i % concurrency`` in round ``i // concurrency``; a slot starts a
    fresh conversation every `TURNS_PER_CONVERSATION` rounds (unless a failed turn left the
    previous one busy, which a replay cannot know).
    """
    slot, round_ = index % concurrency, index // concurrency
    first = round_ - round_ % TURNS_PER_CONVERSATION
    return [r * concurrency + slot for r in range(first, round_ + 1)]


@dataclass
class TurnOutcome:
    plan: TurnPlan
    conversation: str
    problems: list[str] = field(default_factory=list)
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    control: int = 0
    faults: int = 0


@dataclass
class ChaosReport:
    config: ChaosConfig
    turns: int = 0
    faults: int = 0
    events: int = 0
    lost: int = 0
    duplicated: int = 0
    control: int = 0
    leaked: int = 0
    leak_notes: list[str] = field(default_factory=list)
    failures: list[TurnOutcome] = field(default_factory=list)
    scenarios: collections.Counter[str] = field(default_factory=collections.Counter)
    fault_kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    elapsed: float = 0.0
    virtual_sleep: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.control or self.leaked or self.failures)

    def summary(self) -> str:
        return (
            f"chaos: seed={self.config.seed} turns={self.turns} faults={self.faults:,} "
            f"events={self.events:,} lost={self.lost} duplicated={self.duplicated} "
            f"keepalives_delivered={self.control} leaked_connections={self.leaked} "
            f"failed_turns={len(self.failures)} in {self.elapsed:.1f} s"
        )

    def details(self) -> str:
        scenarios = " ".join(f"{k}={v}" for k, v in sorted(self.scenarios.items()))
        kinds = " ".join(f"{k}={v}" for k, v in sorted(self.fault_kinds.items()))
        return (
            f"chaos: scenarios: {scenarios}\nchaos: faults served: {kinds}\n"
            f"chaos: virtual backoff slept: {self.virtual_sleep:,.0f} s"
        )

    def failure_text(self, limit: int = 10) -> str:
        lines = [self.summary()]
        lines += self.leak_notes
        for outcome in self.failures[:limit]:
            plan = outcome.plan
            lines.append(
                f"turn {plan.index} (seed {self.config.seed}, conversation "
                f"{outcome.conversation}): {plan.describe()}"
            )
            lines += [f"    - {problem}" for problem in outcome.problems]
            lines.append(f"    reproduce (whole run): {self.config.reproduce()}")
            lines.append(
                f"    reproduce (this turn's conversation only): "
                f"{self.config.reproduce(plan.index)}"
            )
        if len(self.failures) > limit:
            lines.append(f"... and {len(self.failures) - limit} more failed turns")
        return "\n".join(lines)


@dataclass
class _Slot:
    tag: str
    conversation: Conversation | None = None
    generation: int = 0
    turns: int = 0

    @property
    def stock_text(self) -> str:
        return f"ok, go on ({self.tag})"  # the text a repeat turn sends, again and again


class _OneShot:
    """A message matcher that matches ``text`` once (so repeated texts get their own turn)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.live = True

    def __call__(self, text: str) -> bool:
        if self.live and text == self.text:
            self.live = False
            return True
        return False


async def run_chaos(config: ChaosConfig) -> ChaosReport:
    """Play the plans of ``config`` and return the tally (never raises for a failed turn)."""
    plans = make_plans(config.seed, config.turns)
    if config.only:
        # Each selected turn with the turns of its conversation before it, one slot each.
        chains = [
            [plans[j] for j in conversation_turns(i, config.concurrency)] for i in config.only
        ]
    else:
        chains = [plans[slot :: config.concurrency] for slot in range(config.concurrency)]
    report = ChaosReport(config)
    started = time.perf_counter()
    sim = GenieSimulator(
        ping_interval=0.02,
        auth_interrupt_after=0.03,
        topic_delay=0.3,
        line_ending="\r\n",  # so drops at a random byte also land between CR and LF
        seed=config.seed,
    )
    faults = ScopedFaults.install(sim)
    clocks = TurnClocks()
    retry = RetryPolicy(
        clock=clocks.now, sleep=clocks.sleep, random=random.Random(config.seed).random
    )
    timeouts = Timeouts(connect=5, read=5, request=5, stall=STALL_TIMEOUT, decision=5, auth=10)
    async with sim:
        client = GenieClient(
            sim.genie_id,
            base_url=sim.url,
            api_key=sim.api_key,
            user_id=sim.user_id,
            retry=retry,
            timeouts=timeouts,
        )
        async with client:
            player = _Player(sim, client, faults, clocks)
            slots = [_Slot(f"c{n}") for n in range(len(chains))]
            open_before = 0
            for round_ in range(max((len(chain) for chain in chains), default=0)):
                batch = [
                    (slots[n], chain[round_])
                    for n, chain in enumerate(chains)
                    if round_ < len(chain)
                ]
                outcomes = await asyncio.gather(*(player.play(slot, plan) for slot, plan in batch))
                for outcome in outcomes:
                    _tally(report, outcome)
                first = batch[0][1].index
                open_before = await _check_leaks(client, sim, report, open_before, first)
    report.fault_kinds.update(faults.served_routes)
    report.elapsed = time.perf_counter() - started
    report.virtual_sleep = clocks.slept
    return report


def _tally(report: ChaosReport, outcome: TurnOutcome) -> None:
    report.turns += 1
    report.faults += outcome.faults
    report.events += outcome.delivered
    report.lost += outcome.lost
    report.duplicated += outcome.duplicated
    report.control += outcome.control
    report.scenarios[outcome.plan.scenario] += 1
    for fault in outcome.plan.stream_faults:
        report.fault_kinds[f"stream:{fault.kind}"] += 1
    if outcome.problems:
        report.failures.append(outcome)


async def _check_leaks(
    client: GenieClient, sim: GenieSimulator, report: ChaosReport, open_before: int, first: int
) -> int:
    """Count connections still checked out of the pool or open on the server after a round."""
    session = client._core._session
    acquired = 0
    for _ in range(200):  # the server notices a closed socket on its next loop iteration
        acquired = 0
        if session is not None and session.connector is not None:
            acquired = len(session.connector._acquired)  # aiohttp's checked-out connections
        if acquired == 0 and sim.open_streams == 0:
            return 0
        await asyncio.sleep(0.01)
    leaked = acquired + max(sim.open_streams - open_before, 0)
    if leaked:
        report.leaked += leaked
        report.leak_notes.append(
            f"after the round starting at turn {first}: {acquired} connection(s) checked out "
            f"of the pool, {sim.open_streams} SSE response(s) open on the server"
        )
    return sim.open_streams


class _Player:
    """Plays one turn plan on one conversation slot and checks it."""

    def __init__(
        self, sim: GenieSimulator, client: GenieClient, faults: ScopedFaults, clocks: TurnClocks
    ) -> None:
        self.sim = sim
        self.client = client
        self.faults = faults
        self.clocks = clocks

    async def play(self, slot: _Slot, plan: TurnPlan) -> TurnOutcome:
        self.clocks.bind()  # this turn's own virtual clock (see TurnClocks)
        if slot.conversation is None or slot.turns >= TURNS_PER_CONVERSATION:
            slot.conversation = await self.client.create_conversation()
            slot.generation += 1
            slot.turns = 0
        conversation = slot.conversation
        cid = conversation.conversation_id
        slot.turns += 1
        outcome = TurnOutcome(plan, f"{slot.tag}#{slot.generation} {cid}")
        message = plan.message(slot.stock_text)
        rule = _OneShot(message)
        self.sim.on_message(rule, plan.turn)
        for spec in plan.http_faults:
            self.faults.push_for(cid, spec.build())
        served_before = self.faults.served[cid]
        stored_before = _stored(self.sim.conversation(cid), message)
        turn = _Turn(self.sim, plan)
        stream: EventStream | None = None
        error: BaseException | None = None
        try:
            stream = await asyncio.wait_for(turn.consume(conversation, message), TURN_TIMEOUT)
        except asyncio.TimeoutError:
            error = TimeoutError(f"the turn hung for {TURN_TIMEOUT:g} s")
            stream = turn.stream
        except Exception as exc:
            error = exc
            stream = turn.stream
        finally:
            rule.live = False
            await turn.settle()
        try:
            await self.sim.wait_idle(cid, timeout=3)
        except TimeoutError:
            outcome.problems.append("the conversation never became idle after the turn")
        if self.sim.conversation(cid).busy:
            # Still running or parked (a failed turn): the next message would get a 409.
            slot.conversation = None
        outcome.faults = self.faults.served[cid] - served_before
        self.faults.discard_for(cid)
        _Checker(self.sim, plan, outcome, turn, stream, error, message, stored_before).check()
        return outcome


class _Turn:
    """The consumer side of one turn: hooks, consumer decisions, authorizations."""

    def __init__(self, sim: GenieSimulator, plan: TurnPlan) -> None:
        self.sim = sim
        self.plan = plan
        self.events: list[GenieEvent] = []
        self.stream: EventStream | None = None
        self.stalled: StreamStalledError | None = None  # the expected stall, before resuming
        self.assigned: dict[str, Decision] = {}  # call_id -> the plan's decision for it
        self.hook_calls: collections.Counter[str] = collections.Counter()
        self.problems: list[str] = []
        self.authorizing: dict[str, asyncio.Task[None]] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def decision_for(self, call_id: str) -> Decision:
        if call_id not in self.assigned:
            taken = len(self.assigned)
            if taken >= len(self.plan.decisions):
                self.problems.append(f"unplanned confirmation {call_id} (#{taken + 1})")
                self.assigned[call_id] = Decision(approve=False, reason="unplanned")
            else:
                self.assigned[call_id] = self.plan.decisions[taken]
        return self.assigned[call_id]

    async def hook(self, event: SkillConfirmationRequired) -> Approve | Reject:
        self.hook_calls[event.call_id] += 1
        await asyncio.sleep(self.plan.delay)
        decision = self.decision_for(event.call_id)
        return Approve() if decision.approve else Reject(decision.reason)

    async def decide(self, stream: EventStream, call_id: str) -> None:
        decision = self.decision_for(call_id)
        if decision.approve:
            await stream.approve(call_id)
        else:
            await stream.reject(decision.reason, call_id=call_id)

    async def decide_later(self, stream: EventStream, call_id: str) -> None:
        await asyncio.sleep(self.plan.delay)
        await self.decide(stream, call_id)

    async def auth_hook(self, request: AuthRequest) -> Decline | None:
        if self.plan.auth_outcome == "decline":
            return Decline("not now")
        url = request.link.url if request.link is not None else None
        self.authorize_soon(request.attempt_id, url)
        return None

    def authorize_soon(self, attempt_id: str | None, url: str | None) -> None:
        """The end user authorizes (or rejects) after `plan.delay`, once per attempt."""
        if attempt_id is None and url is not None:
            match = _ATTEMPT_IN_URL.search(url)
            attempt_id = match.group(1) if match else None
        if attempt_id is None:
            self.problems.append("an auth pause came with neither an attempt id nor a link")
            return
        if attempt_id not in self.authorizing:
            self.authorizing[attempt_id] = asyncio.ensure_future(self._authorize(attempt_id))

    async def _authorize(self, attempt_id: str) -> None:
        await asyncio.sleep(self.plan.delay)
        if attempt_id not in self.sim.pending_auth_attempts():
            return
        if self.plan.auth_outcome == "reject":
            self.sim.reject_connection(attempt_id, "the user said no")
        else:
            self.sim.authorize(attempt_id)

    async def consume(self, conversation: Conversation, message: str) -> EventStream:
        """Send ``message`` and read the turn; after an expected stall, resume the cursor."""
        plan = self.plan
        confirm = self.hook if plan.decider == "hook" else None
        auth = self.auth_hook if plan.auth_decider == "hook" else None
        stream = conversation.send(message, on_skill_confirmation=confirm, on_auth_required=auth)
        self.stream = stream
        try:
            await self.read(stream)
        except StreamStalledError as exc:
            if not plan.expect_stall:
                raise
            self.stalled = exc
            if not plan.resume:
                return stream  # the consumer gives up (and may send the same text again)
            # Or it picks the turn up where it stopped.
            stream = conversation.resume(
                exc.cursor, on_skill_confirmation=confirm, on_auth_required=auth
            )
            self.stream = stream
            await self.read(stream)
        return stream

    async def read(self, stream: EventStream) -> None:
        plan = self.plan
        async with stream:
            async for event in stream:
                self.events.append(event)
                if isinstance(event, SkillConfirmationRequired) and plan.decider != "hook":
                    if plan.decider == "consumer":
                        await self.decide(stream, event.call_id)
                    elif plan.decider == "consumer_twice":  # a double click: one POST only
                        await self.decide(stream, event.call_id)
                        await self.decide(stream, event.call_id)
                    else:
                        self.tasks.append(
                            asyncio.ensure_future(self.decide_later(stream, event.call_id))
                        )
                elif (
                    isinstance(event, RuntimeConnectionAuthRequired)
                    and plan.auth_decider == "consumer"
                ):
                    if plan.auth_outcome == "decline":
                        await stream.decline_connection("not now")
                    else:
                        url = event.auth_link.url if event.auth_link is not None else None
                        self.authorize_soon(event.runtime_connection_attempt_id, url)

    async def settle(self) -> None:
        """Finish (or cancel) the background decisions and authorizations of the turn."""
        pending = [*self.tasks, *self.authorizing.values()]
        if not pending:
            return
        done, still = await asyncio.wait(pending, timeout=3)
        for task in still:
            task.cancel()
        await asyncio.gather(*still, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                self.problems.append(f"a consumer decision failed: {task.exception()!r}")


class _Checker:
    """Compares what the consumer received with the simulator's own log."""

    def __init__(
        self,
        sim: GenieSimulator,
        plan: TurnPlan,
        outcome: TurnOutcome,
        turn: _Turn,
        stream: EventStream | None,
        error: BaseException | None,
        message: str,
        stored_before: int,
    ) -> None:
        self.sim = sim
        self.plan = plan
        self.outcome = outcome
        self.turn = turn
        self.stream = stream
        self.error = error
        self.message = message
        self.stored_before = stored_before  # copies of the text in the history before the turn
        self.problems = outcome.problems

    def check(self) -> None:
        self.problems += self.turn.problems
        events = self.turn.events
        self.outcome.delivered = len(events)
        control = [e for e in events if e.type in CONTROL_TYPES]
        self.outcome.control = len(control)
        if control:
            self.problems.append(f"control frames delivered: {[e.type for e in control]}")
        self._check_error()
        if self.stream is None:
            return
        conv = self.sim.conversation(self.stream.conversation_id)
        run = self._check_user_message(conv)
        if run is None:
            return
        self._check_events(conv, run, events)
        self._check_confirmations(events)
        self._check_final()

    def _check_error(self) -> None:
        plan, error = self.plan, self.error
        if plan.expect_stall and self.turn.stalled is None:
            self.problems.append(f"expected StreamStalledError, got {error!r}")
        if error is not None:
            self.problems.append(f"the turn raised {type(error).__name__}: {error}")

    def _check_user_message(self, conv: SimConversation) -> SimRun | None:
        stored = [m for m in conv.messages if m.source == "user" and m.content == self.message]
        added = stored[self.stored_before :]
        if len(added) != 1:
            self.problems.append(
                f"user message {self.message!r} stored {len(added)} time(s) by this turn"
            )
        assert self.stream is not None
        if not added:
            followed = self.stream.genie_run_id
            owner = [m for m in conv.messages if m.source == "user" and m.genie_run_id == followed]
            whose = (
                f"the run of an earlier message {owner[0].content!r} created {owner[0].created_at}"
                if owner and owner[0] in stored
                else "no run of this turn"
            )
            self.problems.append(
                f"the stream followed run {followed} ({whose}) and delivered "
                f"{_short(self.stream.final_text)}"
            )
            return None
        run_id = added[-1].genie_run_id
        if self.stream.genie_run_id not in (run_id, None):
            self.problems.append(
                f"stream followed run {self.stream.genie_run_id}, the message's run is {run_id}"
            )
        return conv.runs_by_id.get(run_id)

    def _check_events(self, conv: SimConversation, run: SimRun, events: list[GenieEvent]) -> None:
        plan = self.plan
        self.outcome.faults += sum(
            1 for fault in plan.stream_faults if run.connections > (fault.connection or 0)
        )
        persisted = [e.event_id for e in run.events]
        if plan.expect_stall and not plan.resume:
            persisted = persisted[: plan.stall_after]  # exactly what came before it
        delivered = [e.event_id for e in events if e.event_id is not None]
        distinct = set(delivered)
        self.outcome.duplicated = len(delivered) - len(distinct)
        self.outcome.lost = len(set(persisted) - distinct)
        if delivered != persisted:
            self.problems.append(_diff("persisted events", persisted, delivered, run))
        types = [e.type for e in run.events]
        wanted = list(plan.expected_types)
        if types != wanted:
            self.problems.append(
                f"the simulator played {_runs(types)}, the plan expected {_runs(wanted)}"
            )
        # Replies that reach only the history (the resumed run after an auth pause).
        from_history = [
            e.message_id for e in events if e.event_id is None and isinstance(e, AgentMessage)
        ]
        resumed = _resumed_run(conv, run) if plan.parks else None
        wanted_history = [
            m.message_id
            for m in conv.messages
            if resumed is not None and m.source == "genie" and m.genie_run_id == resumed.run_id
        ]
        if from_history != wanted_history:
            self.problems.append(
                f"history replies delivered {from_history}, the resumed run has {wanted_history}"
            )
            self.outcome.duplicated += len(from_history) - len(set(from_history))
            self.outcome.lost += len(set(wanted_history) - set(from_history))

    def _check_confirmations(self, events: list[GenieEvent]) -> None:
        asked = [e.call_id for e in events if isinstance(e, SkillConfirmationRequired)]
        if len(asked) != len(self.plan.decisions):
            self.problems.append(
                f"{len(asked)} confirmation(s) delivered, {len(self.plan.decisions)} planned"
            )
        for call_id, decision in self.turn.assigned.items():
            wanted = "approved" if decision.approve else "rejected"
            records = self.sim.approvals(call_id)
            got = [(r.resolution, r.status) for r in records]
            if got != [(wanted, 200)]:
                self.problems.append(f"confirmation {call_id}: posted {got}, expected {wanted}")
            if self.plan.decider == "hook" and self.turn.hook_calls[call_id] != 1:
                self.problems.append(
                    f"confirmation hook called {self.turn.hook_calls[call_id]} times for {call_id}"
                )
        undecided = set(asked) - set(self.turn.assigned)
        if undecided:
            self.problems.append(f"confirmations never decided: {sorted(undecided)}")

    def _check_final(self) -> None:
        if self.error is not None or (self.plan.expect_stall and not self.plan.resume):
            return
        assert self.stream is not None
        wanted = self.plan.expected_final(self.message)
        final = self.stream.final_text
        if self.turn.stalled is not None:
            # A resumed stream knows only what it delivered itself: take the last message
            # the consumer received from either stream.
            said = [e.text for e in self.turn.events if isinstance(e, AgentMessage)]
            final = said[-1] if said else None
        if final != wanted:
            self.problems.append(f"final text {_short(final)}, expected {_short(wanted)}")
        outcome = "completed"
        if self.plan.parks:
            outcome = _AUTH_OUTCOMES[self.plan.auth_outcome]
        if self.stream.outcome != outcome:
            self.problems.append(f"outcome {self.stream.outcome!r}, expected {outcome!r}")


def _stored(conv: SimConversation, text: str) -> int:
    return sum(1 for m in conv.messages if m.source == "user" and m.content == text)


def _resumed_run(conv: SimConversation, run: SimRun) -> SimRun | None:
    runs = conv.runs
    position = runs.index(run)
    if position + 1 < len(runs) and not runs[position + 1].persisted:
        return runs[position + 1]
    return None


def _runs(types: list[str]) -> str:
    """``a, b x3, c``: event types with repeats collapsed."""
    parts: list[str] = []
    for kind, group in itertools.groupby(types):
        count = len(list(group))
        parts.append(kind if count == 1 else f"{kind} x{count}")
    return "[" + ", ".join(parts) + "]"


def _short(text: str | None, width: int = 80) -> str:
    if text is None:
        return "None"
    return repr(text if len(text) <= width else text[:width] + "…")


def _diff(what: str, wanted: list[str], got: Sequence[str | None], run: SimRun) -> str:
    seq = {e.event_id: e.seq_num for e in run.events}
    wanted_seqs = [seq.get(i) for i in wanted]
    got_seqs = [seq.get(i or "", "?") for i in got]
    missing = [seq.get(i) for i in wanted if i not in got]
    counts = collections.Counter(got)
    repeated = sorted({seq.get(i or "", "?") for i, n in counts.items() if n > 1}, key=str)
    return (
        f"{what}: expected seqs {wanted_seqs}, delivered {got_seqs} "
        f"(missing {missing}, repeated {repeated}) in run {run.run_id}"
    )
