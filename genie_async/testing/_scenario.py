"""The scenario API: how tests script what the simulated genie does on each turn.

A `Turn` is a sequence of steps executed in one run (one ``genie_run_id``). The simulator picks
the turn for an accepted message from, in order: the `GenieSimulator.next_turn` FIFO, the first
matching `GenieSimulator.on_message` rule, then `GenieSimulator.default_turn` (an echo).

Text placeholders: ``{message}`` (the user's message), ``{reason}`` (a rejection reason) and
``{connector}`` (inside `ConnectAuth`) are substituted in `Say` texts; nothing else is
interpreted, so literal braces are safe.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from ._faults import StreamFault

__all__ = [
    "Confirm",
    "ConnectAuth",
    "Emit",
    "MessageMatcher",
    "Say",
    "Script",
    "Skill",
    "Step",
    "Turn",
    "Wait",
]


@dataclass(frozen=True)
class Step:
    """Base class of turn steps; ``delay`` seconds pass (real time) before the step runs."""

    delay: float = field(default=0.0, kw_only=True)

    def __post_init__(self) -> None:
        if self.delay < 0:
            raise ValueError("delay must be >= 0")


@dataclass(frozen=True)
class Say(Step):
    """One ``agent.message`` event plus a ``genie`` history message with the same id."""

    text: str


@dataclass(frozen=True)
class Skill(Step):
    """``skill.running``, ``duration`` seconds, then ``skill.completed``/``failed``/``stopped``.

    The conversation reads ``skill_processing`` meanwhile. ``error`` is the string carried by
    ``skill.failed``; ``result`` (if not None) is added to ``skill.completed``. ``skill_id``
    defaults to a stable ``recipe:<n>`` derived from the name.
    """

    name: str
    skill_id: str | None = field(default=None, kw_only=True)
    outcome: Literal["completed", "failed", "stopped"] = field(default="completed", kw_only=True)
    error: str = field(default="Skill execution failed.", kw_only=True)
    duration: float = field(default=0.0, kw_only=True)
    result: Any = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.outcome not in ("completed", "failed", "stopped"):
            raise ValueError(f"unknown skill outcome {self.outcome!r}")
        if self.duration < 0:
            raise ValueError("duration must be >= 0")


@dataclass(frozen=True)
class Confirm(Step):
    """``skill.confirmation_required``, then wait (pings continue) for the approval POST.

    On approval the ``on_approve`` steps run in the same run (default: the skill itself); on
    rejection the ``on_reject`` steps run (default: ``Say("Rejected by user: {reason}")``).
    ``schema`` defaults to one text field per parameter. With ``business=True`` the event is
    ``business_approval.required`` instead, resolved through the business-approval route
    (enabled by ``sim.enable_business_approval``).
    """

    skill_name: str
    parameters: Mapping[str, Any] | None = field(default=None, kw_only=True)
    schema: list[dict[str, Any]] | None = field(default=None, kw_only=True)
    skill_id: str | None = field(default=None, kw_only=True)
    on_approve: Sequence[Step] | None = field(default=None, kw_only=True)
    on_reject: Sequence[Step] = field(default=(Say("Rejected by user: {reason}"),), kw_only=True)
    business: bool = field(default=False, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        approve = (
            (Skill(self.skill_name, skill_id=self.skill_id),)
            if self.on_approve is None
            else tuple(self.on_approve)
        )
        object.__setattr__(self, "on_approve", approve)
        object.__setattr__(self, "on_reject", tuple(self.on_reject))
        _check_steps(approve, where="Confirm.on_approve")
        _check_steps(self.on_reject, where="Confirm.on_reject")

    @property
    def approve_steps(self) -> tuple[Step, ...]:
        """The steps run after approval (never None once constructed)."""
        return tuple(self.on_approve or ())


@dataclass(frozen=True)
class ConnectAuth(Step):
    """``runtime_connection.auth_required``: park the turn until authorized or rejected.

    Live streams write pings for ``auth_interrupt_after`` seconds, then
    ``system.stream_interrupted`` (reason ``runtime_connection_pending``). After
    `GenieSimulator.authorize` the ``then`` steps run as a NEW run whose messages reach history
    only (no events anywhere). Must be the last step of its turn; ``then`` may not pause again.
    """

    connector: str = "Salesforce"
    then: Sequence[Step] = field(default=(Say("Connected to {connector}."),), kw_only=True)
    fields: Literal["both", "attempt_id", "auth_link"] = field(default="both", kw_only=True)
    """Which of the two observed shapes the event carries: the attempt id (one source), the
    ``auth_link`` object (another), or both (the default)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "then", tuple(self.then))
        _check_steps(self.then, where="ConnectAuth.then")
        if any(isinstance(step, (Confirm, ConnectAuth)) for step in self.then):
            raise ValueError("a resumed turn emits no events, so it cannot pause again")


@dataclass(frozen=True)
class Emit(Step):
    """A persisted event of any ``type``: the common fields plus ``payload`` (which wins).

    With ``raw_data`` the given text is written verbatim as the ``data:`` of the event (split
    into several ``data:`` lines if it has line breaks) and spliced verbatim into ``/events``
    pages and ``last_event``, for malformed-payload tests.
    """

    type: str
    payload: Mapping[str, Any] | None = None
    raw_data: str | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.payload is not None and self.raw_data is not None:
            raise ValueError("give either payload or raw_data, not both")


@dataclass(frozen=True)
class Wait(Step):
    """Nothing happens for ``seconds`` (pings continue); ``None`` stalls the turn forever."""

    seconds: float | None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.seconds is not None and self.seconds < 0:
            raise ValueError("seconds must be >= 0 or None")


def _check_steps(steps: Iterable[object], *, where: str) -> None:
    steps = tuple(steps)
    for index, step in enumerate(steps):
        if not isinstance(step, Step):
            raise TypeError(f"{where}: {step!r} is not a step")
        if isinstance(step, ConnectAuth) and index != len(steps) - 1:
            raise ValueError(f"{where}: no steps may follow ConnectAuth; use its `then`")


@dataclass(frozen=True, init=False)
class Turn:
    """What the genie does for one message: ``Turn(Say("Hi"), Skill("x"), faults=[...])``.

    Every turn starts with ``processing.started`` and ends with ``processing.finished``
    (unless it parks on `ConnectAuth` or stalls on ``Wait(None)``). ``faults`` are
    `StreamFault`\\ s applied to the run's SSE connections; the first fault matching a
    connection is the one it gets.
    """

    steps: tuple[Step, ...]
    faults: tuple[StreamFault, ...]

    def __init__(self, *steps: Step, faults: Iterable[StreamFault] = ()) -> None:
        _check_steps(steps, where="Turn")
        fault_tuple = tuple(faults)
        for fault in fault_tuple:
            if not isinstance(fault, StreamFault):
                raise TypeError(f"{fault!r} is not a StreamFault")
        object.__setattr__(self, "steps", tuple(steps))
        object.__setattr__(self, "faults", fault_tuple)


#: What `GenieSimulator.on_message` accepts: exact text, a compiled regex, or a predicate.
MessageMatcher: TypeAlias = str | re.Pattern[str] | Callable[[str], bool]

ECHO_TURN = Turn(Say("You said: {message}"))


class Script:
    """Chooses the `Turn` for each accepted message."""

    def __init__(self) -> None:
        self.default_turn: Turn = ECHO_TURN
        self._queued: collections.deque[Turn] = collections.deque()
        self._rules: list[tuple[MessageMatcher, Turn]] = []

    def on_message(self, matcher: MessageMatcher, turn: Turn) -> None:
        """Add a rule: exact text, a regex (``search``), or a predicate. First match wins."""
        if not isinstance(turn, Turn):
            raise TypeError(f"{turn!r} is not a Turn")
        self._rules.append((matcher, turn))

    def next_turn(self, turn: Turn) -> None:
        """Queue ``turn`` for the next message, whatever its text."""
        if not isinstance(turn, Turn):
            raise TypeError(f"{turn!r} is not a Turn")
        self._queued.append(turn)

    def choose(self, text: str) -> Turn:
        """The turn for ``text`` (consumes a queued turn if there is one)."""
        if self._queued:
            return self._queued.popleft()
        for matcher, turn in self._rules:
            if isinstance(matcher, str):
                matched = matcher == text
            elif isinstance(matcher, re.Pattern):
                matched = matcher.search(text) is not None
            else:
                matched = bool(matcher(text))
            if matched:
                return turn
        return self.default_turn
