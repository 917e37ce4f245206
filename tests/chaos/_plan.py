"""Seeded turn plans: what the genie does, how the consumer decides, which faults fire.

`make_plans(seed, n)` is a pure function of ``seed``: turn ``i``'s plan depends only on the
seed and ``i`` (a master `random.Random(seed)` hands every turn its own seed), so a longer run
starts with exactly the turns of a shorter one and one turn can be replayed alone.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, cast

from genie_async.testing import (
    Confirm,
    ConnectAuth,
    Emit,
    HttpFault,
    Say,
    Skill,
    Step,
    StreamFault,
    Turn,
    Wait,
)
from genie_async.testing._faults import StreamFaultKind

Scenario = Literal["plain", "multi", "long", "skills", "confirm", "auth", "stall"]
Decider = Literal["hook", "consumer", "consumer_task", "consumer_twice"]
AuthDecider = Literal["hook", "consumer"]
AuthOutcome = Literal["authorize", "decline", "reject"]

SCENARIOS: tuple[tuple[Scenario, float], ...] = (
    ("plain", 0.17),
    ("multi", 0.20),
    ("long", 0.03),
    ("skills", 0.15),
    ("confirm", 0.22),
    ("auth", 0.18),
    ("stall", 0.05),
)
DROP_KINDS = frozenset({"abort", "abort_mid_event", "abort_at_byte", "eof", "interrupt"})
FRAME_FLOOR = 240  # bytes: every event frame the simulator writes is longer than this
FRAME_MEAN = 480  # bytes: a generous mean frame size, before the texts the events carry

# Multi-byte UTF-8 (2, 3 and 4 bytes), SSE field names and separators inside the JSON, so a
# drop at a random byte lands inside characters and look-alike lines.
WORDS = (
    "PTO", "balance", "días", "naïve", "façade", "Ωmega", "Привет", "日本語", "テスト",
    "中文", "🚀", "🙂", "👩‍💻", "über", "straße", "café", "data:", "id: 7", "event:",
    "retry:", ": comment", "a\nb", "c\r\nd", "e\rf", "tab\there", "\u2028", "{brace}",
    "quote\"d", "back\\slash", "ok", "12", "days", "manager", "ticket", "approved",
)  # fmt: skip
SKILLS = ("Get PTO balance", "Create Jira ticket", "Notify manager", "Submit Time Off Request")
CONNECTORS = ("Salesforce", "Jira", "Google Drive", "ServiceNow")


def sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def _no_braces(text: str) -> str:
    # `{message}`/`{reason}`/`{connector}` are simulator placeholders; keep random text inert.
    return text.replace("{", "(").replace("}", ")")


@dataclass(frozen=True)
class HttpFaultSpec:
    """One `HttpFault` to queue for the turn's conversation."""

    route: str
    status: int = 0
    times: int = 1
    retry_after: str | None = None
    body: Literal["json", "html", "empty"] = "json"
    after_accept: bool = False
    after_pages: int = 0
    kind: Literal["status", "reset"] = "status"

    def build(self) -> HttpFault:
        return HttpFault(
            self.route,
            self.status,
            times=self.times,
            retry_after=self.retry_after,
            body=self.body,
            after_accept=self.after_accept,
            after_pages=self.after_pages,
            kind=self.kind,
        )

    def describe(self) -> str:
        text = f"{self.route}:{'reset' if self.kind == 'reset' else self.status}"
        if self.times > 1:
            text += f"x{self.times}"
        extras = []
        if self.after_accept:
            extras.append("after-accept")
        if self.after_pages:
            extras.append(f"after {self.after_pages} page(s)")
        if self.retry_after is not None:
            extras.append(f"Retry-After={self.retry_after}")
        if self.kind == "status" and self.body != "json":
            extras.append(self.body)
        return text + (f"({', '.join(extras)})" if extras else "")


@dataclass(frozen=True)
class Decision:
    """What the consumer decides on one skill confirmation."""

    approve: bool
    reason: str | None = None


@dataclass(frozen=True)
class TurnPlan:
    """Everything turn ``index`` will do, and what the client must then have delivered."""

    index: int
    seed: int
    scenario: Scenario
    text: str
    repeat: bool  # send the conversation's stock reply instead of `text` (a repeated message)
    steps: tuple[Step, ...]
    stream_faults: tuple[StreamFault, ...]
    http_faults: tuple[HttpFaultSpec, ...]
    decisions: tuple[Decision, ...]
    decider: Decider
    auth_decider: AuthDecider
    auth_outcome: AuthOutcome  # the user authorizes; the app declines; the user rejects
    resume: bool  # after the expected stall, the consumer resumes from the error's cursor
    delay: float  # seconds a hook / the consumer / the user takes to decide or authorize
    expected_types: tuple[str, ...]  # the run's persisted event types, in order
    final: str | None  # expected stream.final_text ("{message}" = the text sent)

    @property
    def turn(self) -> Turn:
        return Turn(*self.steps, faults=self.stream_faults)

    @property
    def expect_stall(self) -> bool:
        return any(fault.kind == "stall" for fault in self.stream_faults)

    @property
    def stall_after(self) -> int:
        return next(f.after_events for f in self.stream_faults if f.kind == "stall")

    @property
    def parks(self) -> bool:
        return bool(self.steps) and isinstance(self.steps[-1], ConnectAuth)

    def message(self, stock: str) -> str:
        return stock if self.repeat else self.text

    def expected_final(self, message: str) -> str | None:
        return None if self.final is None else self.final.replace("{message}", message)

    def describe(self) -> str:
        parts = [f"{self.scenario}", f"{len(self.expected_types)} events"]
        if self.decisions:
            choices = ",".join("approve" if d.approve else "reject" for d in self.decisions)
            parts.append(f"confirm[{choices}] by {self.decider}")
        if self.parks:
            parts.append(f"auth by {self.auth_decider}: {self.auth_outcome}")
        if self.expect_stall:
            parts.append("then resumed" if self.resume else "then given up")
        if self.repeat:
            parts.append("repeated text")
        faults = [describe_stream_fault(f) for f in self.stream_faults]
        faults += [f.describe() for f in self.http_faults]
        parts.append("faults: " + ("; ".join(faults) if faults else "none"))
        return ", ".join(parts)


def describe_stream_fault(fault: StreamFault) -> str:
    where = "every connection" if fault.connection is None else f"connection {fault.connection}"
    text = f"{fault.kind} after {fault.after_events} event(s)"
    if fault.kind == "abort_at_byte":
        text += f" + {fault.at_byte} byte(s)"
    elif fault.kind == "trickle":
        text += f" ({fault.piece_bytes}-byte pieces, {fault.piece_delay * 1000:g} ms)"
    elif fault.kind == "interrupt":
        text += f" (retry_after_ms={fault.retry_after_ms})"
    return f"{text} on {where}"


def make_plans(seed: int, count: int) -> list[TurnPlan]:
    """The first ``count`` turn plans of ``seed``."""
    master = random.Random(seed)
    return [plan_turn(index, master.getrandbits(64)) for index in range(count)]


# --- one turn ---------------------------------------------------------------------------------


def _weighted(rng: random.Random, choices: Sequence[tuple[str, float]]) -> str:
    names = [name for name, _ in choices]
    weights = [weight for _, weight in choices]
    return rng.choices(names, weights)[0]


def plan_turn(index: int, seed: int) -> TurnPlan:
    rng = random.Random(seed)
    scenario: Scenario = _weighted(rng, SCENARIOS)  # type: ignore[assignment]
    text = _no_braces(f"{sentence(rng, 1, 6)} #{index}")
    repeat = rng.random() < 0.1
    decisions: list[Decision] = []
    builders = {
        "plain": _plain,
        "multi": _multi,
        "long": _long,
        "skills": _skills,
        "confirm": _confirm,
        "auth": _auth,
        "stall": _multi,
    }
    steps = builders[scenario](rng, decisions)
    types, final = expected(steps, decisions)
    stream_faults, http_faults = _faults(rng, scenario, steps, decisions, len(types))
    decider: Decider = _weighted(  # type: ignore[assignment]
        rng,
        [("hook", 0.45), ("consumer", 0.25), ("consumer_task", 0.2), ("consumer_twice", 0.1)],
    )
    auth_decider: AuthDecider = "hook" if rng.random() < 0.7 else "consumer"
    delay = round(rng.uniform(0, 0.03), 4)
    auth_outcome: AuthOutcome = "authorize"
    last = steps[-1]
    if isinstance(last, ConnectAuth) and last.fields != "auth_link":  # needs the attempt id
        auth_outcome = _weighted(  # type: ignore[assignment]
            rng, [("authorize", 0.8), ("decline", 0.1), ("reject", 0.1)]
        )
        types, final = expected(steps, decisions, resumed=auth_outcome == "authorize")
    resume = scenario == "stall" and rng.random() < 0.6
    return TurnPlan(
        index=index,
        seed=seed,
        scenario=scenario,
        text=text,
        repeat=repeat,
        steps=tuple(steps),
        stream_faults=tuple(stream_faults),
        http_faults=tuple(http_faults),
        decisions=tuple(decisions),
        decider=decider,
        auth_decider=auth_decider,
        auth_outcome=auth_outcome,
        resume=resume,
        delay=delay,
        expected_types=tuple(types),
        final=final,
    )


def _say(rng: random.Random, low: int = 1, high: int = 8) -> Say:
    if rng.random() < 0.05:  # a big message: frames over many TCP reads
        return Say(_no_braces(sentence(rng, 150, 600)))
    return Say(_no_braces(sentence(rng, low, high)), delay=rng.choice((0.0, 0.0, 0.0, 0.002)))


def _plain(rng: random.Random, decisions: list[Decision]) -> list[Step]:
    if rng.random() < 0.3:
        return [Say("You said: {message}")]
    return [_say(rng)]


def _multi(rng: random.Random, decisions: list[Decision]) -> list[Step]:
    steps: list[Step] = []
    for _ in range(rng.randint(2, 10)):
        if rng.random() < 0.15:
            steps.append(Emit("custom.progress", {"percent": rng.randint(0, 100)}))
        if rng.random() < 0.05:
            steps.append(Wait(0.01))
        steps.append(_say(rng))
    return steps


def _long(rng: random.Random, decisions: list[Decision]) -> list[Step]:
    # More than one page (100) of persisted events, for history pages failing mid-way.
    return [Say(f"part {i} {rng.choice(WORDS)}") for i in range(rng.randint(110, 200))]


def _skill(rng: random.Random, name: str | None = None) -> Skill:
    outcome = _weighted(rng, [("completed", 0.7), ("failed", 0.2), ("stopped", 0.1)])
    return Skill(
        name or rng.choice(SKILLS),
        outcome=outcome,  # type: ignore[arg-type]
        error=_no_braces(sentence(rng, 1, 4)),
        duration=rng.choice((0.0, 0.0, 0.003)),
        result={"days": rng.randint(0, 30)} if rng.random() < 0.5 else None,
    )


def _skills(rng: random.Random, decisions: list[Decision]) -> list[Step]:
    steps: list[Step] = [_say(rng)] if rng.random() < 0.6 else []
    for _ in range(rng.randint(1, 3)):
        steps.append(_skill(rng))
        if rng.random() < 0.4:
            steps.append(_say(rng))
    steps.append(_say(rng))
    return steps


def _confirm_step(rng: random.Random, decisions: list[Decision]) -> Confirm:
    name = rng.choice(SKILLS)
    decisions.append(
        Decision(
            approve=rng.random() < 0.6,
            reason=None if rng.random() < 0.3 else _no_braces(sentence(rng, 1, 5)),
        )
    )
    on_approve: tuple[Step, ...] = (_skill(rng, name), Say(f"{name} done: {rng.choice(WORDS)}"))
    on_reject: tuple[Step, ...] = (Say("Rejected by user: {reason}"),)
    return Confirm(
        name,
        parameters={"days": rng.randint(1, 10), "note": _no_braces(sentence(rng, 1, 3))},
        on_approve=on_approve,
        on_reject=on_reject,
    )


def _confirm(rng: random.Random, decisions: list[Decision]) -> list[Step]:
    steps: list[Step] = [_say(rng)] if rng.random() < 0.5 else []
    for _ in range(1 if rng.random() < 0.75 else 2):
        steps.append(_confirm_step(rng, decisions))
    if rng.random() < 0.5:
        steps.append(_say(rng))
    return steps


def _auth(rng: random.Random, decisions: list[Decision]) -> list[Step]:
    steps: list[Step] = [_say(rng)] if rng.random() < 0.6 else []
    if rng.random() < 0.3:
        steps.append(_skill(rng))
    if rng.random() < 0.15:
        steps.append(_confirm_step(rng, decisions))
    connector = rng.choice(CONNECTORS)
    then = [Say("Connected to {connector}.")] if rng.random() < 0.3 else []
    then += [_say(rng, 1, 6) for _ in range(rng.randint(1, 3))]
    fields = _weighted(rng, [("both", 0.5), ("attempt_id", 0.25), ("auth_link", 0.25)])
    steps.append(ConnectAuth(connector, then=tuple(then), fields=fields))  # type: ignore[arg-type]
    return steps


# --- what the client must deliver ---------------------------------------------------------------


def expected(
    steps: Sequence[Step], decisions: Sequence[Decision], *, resumed: bool = True
) -> tuple[list[str], str | None]:
    """The run's event types (in order) and the final text, as the simulator will play it
    (``resumed``: after a runtime-connection pause, the resumed run's replies count)."""
    types = ["processing.started"]
    context = {"message": "{message}", "reason": "", "connector": ""}
    final: list[str] = []
    choices = iter(decisions)
    parked = _walk(steps, choices, context, types, final, resumed)
    if not parked:
        types.append("processing.finished")
    return types, final[-1] if final else None


def _fill(text: str, context: dict[str, str]) -> str:
    for key, value in context.items():
        text = text.replace("{" + key + "}", value)
    return text


def _walk(
    steps: Sequence[Step],
    choices: Iterator[Decision],
    context: dict[str, str],
    types: list[str],
    final: list[str],
    resumed: bool,
) -> bool:
    for step in steps:
        if isinstance(step, Say):
            types.append("agent.message")
            final.append(_fill(step.text, context))
        elif isinstance(step, Skill):
            types += ["skill.running", f"skill.{step.outcome}"]
        elif isinstance(step, Emit):
            types.append(step.type)
        elif isinstance(step, Confirm):
            types.append("skill.confirmation_required")
            decision = next(choices)
            if decision.approve:
                branch = step.approve_steps
            else:
                context["reason"] = decision.reason or ""
                branch = tuple(step.on_reject)
            if _walk(branch, choices, context, types, final, resumed):
                return True
        elif isinstance(step, ConnectAuth):
            types.append("runtime_connection.auth_required")
            if resumed:
                then = {**context, "connector": step.connector}
                final += [_fill(s.text, then) for s in step.then if isinstance(s, Say)]
            return True
    return False


# --- faults -----------------------------------------------------------------------------------


def _faults(
    rng: random.Random,
    scenario: Scenario,
    steps: Sequence[Step],
    decisions: Sequence[Decision],
    events: int,
) -> tuple[list[StreamFault], list[HttpFaultSpec]]:
    parks = isinstance(steps[-1], ConnectAuth)
    stream: list[StreamFault] = []
    http: list[HttpFaultSpec] = []
    if scenario == "stall":
        stream.append(StreamFault("stall", after_events=rng.randint(0, events - 1)))
    elif scenario == "long":
        if rng.random() < 0.7:
            # Reconnect refused: the rest (> 1 page) comes from /events, whose 2nd page fails.
            stream.append(StreamFault("abort", after_events=rng.randint(1, 10)))
            http.append(HttpFaultSpec("reconnect", 404))
            http.append(HttpFaultSpec("events", rng.choice((502, 503, 504)), after_pages=1))
    elif rng.random() < 0.05:
        stream.append(
            StreamFault(
                "interrupt", after_events=rng.randint(1, 3), connection=None, retry_after_ms=0
            )
        )
    elif rng.random() < 0.62:
        size = events * FRAME_MEAN + _said_bytes(steps)  # an upper bound of the body
        stream.append(_stream_fault(rng, events, parks, size, connection=0))
        if stream[0].kind in DROP_KINDS and rng.random() < 0.3:
            stream.append(_stream_fault(rng, 3, False, size, connection=1))
    drop = any(fault.kind in DROP_KINDS for fault in stream)
    if rng.random() < 0.55:
        candidates: list[tuple[str, float]] = [
            ("send_storm", 3),
            ("send_500", 1),
            ("send_accept", 1.5),
            ("send_reset", 1),
            ("messages_storm", 1),
            ("info_storm", 0.5),
        ]
        if drop:
            candidates += [
                ("reconnect_refused", 2.5),
                ("reconnect_storm", 1.5),
                ("reconnect_reset", 1),
                ("events_midway", 1.5),
                ("events_storm", 1),
            ]
        if decisions:
            candidates += [("approval_storm", 2), ("approval_reset", 1)]
        if parks:
            candidates += [("link_storm", 1.5), ("messages_storm", 2)]
        for name in sorted({_weighted(rng, candidates) for _ in range(rng.randint(1, 3))}):
            http += _http_faults(rng, name)
    return stream, http


def _said_bytes(steps: Sequence[Step]) -> int:
    """Bytes of every text the run may stream (both branches of a confirmation), escaped."""
    total = 0
    for step in steps:
        if isinstance(step, Say):
            total += len(step.text.encode()) * 2
        elif isinstance(step, Confirm):
            total += _said_bytes(step.approve_steps) + _said_bytes(step.on_reject)
    return total


def _stream_fault(
    rng: random.Random, events: int, parks: bool, size: int, *, connection: int
) -> StreamFault:
    weights = [
        ("abort_at_byte", 0.3),
        ("abort", 0.12),
        ("abort_mid_event", 0.1),
        ("eof", 0.1),
        ("interrupt", 0.18),
        ("trickle", 0.2),
    ]
    kind = cast("StreamFaultKind", _weighted(rng, weights))
    # At most the last event: the fault then fires before processing.finished is written (a
    # parked turn has no finished, so a boundary fault may also fire right after the pause).
    last = events if parks and kind in ("abort", "eof", "interrupt") else events - 1
    after = rng.randint(0, max(last, 0))
    if kind == "abort_at_byte":
        at = rng.randint(0, FRAME_FLOOR) if rng.random() < 0.7 else rng.randint(0, 3000)
        return StreamFault(kind, after_events=after, at_byte=at, connection=connection)
    if kind == "trickle":
        piece = rng.choice((1, 4, 16, 64, 256))
        delay = rng.choice((0.0, 0.001, 0.002))
        # A timer never fires sooner than ~1 ms, so each delayed piece costs at least that:
        # keep the whole trickle well under Timeouts.stall (a gap of that long between two
        # events is a stall by definition, however many bytes trickle in meanwhile).
        pieces = size * 2 / (piece + 1)  # bytes / mean piece size
        if pieces * delay * 1.5 > 0.25:
            delay = 0.0
        return StreamFault(
            kind,
            after_events=after,
            piece_bytes=piece,
            piece_delay=round(delay, 6),
            seed=rng.getrandbits(32),
            connection=connection,
        )
    if kind == "interrupt":
        retry = rng.choice((None, 0, 10, 50, 1000))
        return StreamFault(kind, after_events=after, retry_after_ms=retry, connection=connection)
    return StreamFault(kind, after_events=after, connection=connection)


_RETRY_AFTER = (None, None, "0", "1", "2", "120", "Wed, 21 Oct 2015 07:28:00 GMT")


def _gateway(rng: random.Random, route: str, low: int, high: int) -> HttpFaultSpec:
    return HttpFaultSpec(
        route,
        rng.choice((502, 503, 504)),
        times=rng.randint(low, high),
        retry_after=rng.choice(_RETRY_AFTER),
        body=rng.choice(("json", "json", "html", "empty")),
    )


def _http_faults(rng: random.Random, name: str) -> list[HttpFaultSpec]:
    if name == "send_storm":
        return [_gateway(rng, "send", 1, 5)]
    if name == "send_500":
        return [HttpFaultSpec("send", 500)]
    if name == "send_accept":
        return [HttpFaultSpec("send", rng.choice((502, 504)), after_accept=True)]
    if name == "send_reset":
        return [HttpFaultSpec("send", kind="reset")]
    if name == "messages_storm":
        return [_gateway(rng, "messages", 1, 3)]
    if name == "info_storm":
        return [_gateway(rng, "get_conversation", 1, 2)]
    if name == "reconnect_refused":
        return [HttpFaultSpec("reconnect", rng.choice((404, 404, 410)))]
    if name == "reconnect_storm":
        return [_gateway(rng, "reconnect", 1, 4)]
    if name == "reconnect_reset":
        return [HttpFaultSpec("reconnect", kind="reset", times=rng.randint(1, 2))]
    if name == "events_midway":
        # A refused reconnect sends the client to /events, whose pages then fail.
        return [
            HttpFaultSpec("reconnect", 404),
            HttpFaultSpec(
                "events", rng.choice((502, 503, 504)), after_pages=rng.randint(0, 1), times=2
            ),
        ]
    if name == "events_storm":
        return [HttpFaultSpec("reconnect", 404), _gateway(rng, "events", 1, 3)]
    if name == "approval_storm":
        return [_gateway(rng, "skill_approval", 1, 3)]
    if name == "approval_reset":
        return [HttpFaultSpec("skill_approval", kind="reset")]
    if name == "link_storm":
        return [_gateway(rng, "link", 1, 2)]
    raise AssertionError(name)
