"""The simulator's data model: configuration, switches, and the records of users,
conversations, runs, events, messages, files, pending approvals and connection attempts.

Live readers of a run wait on its `Signal`, a future swapped on every change, so one
notification wakes any number of SSE writers without a task per event or per reader.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import msgspec

from ._clock import format_timestamp
from ._faults import StreamFault

__all__ = [
    "AuthAttempt",
    "ConversationState",
    "PendingApproval",
    "Signal",
    "SimConfig",
    "SimConversation",
    "SimEvent",
    "SimFile",
    "SimFlags",
    "SimMessage",
    "SimRun",
    "SimUser",
    "StreamHandle",
]

ConversationState = Literal["idle", "ai_running", "skill_processing"]


class StreamHandle(Protocol):
    """An open SSE connection, as far as shutdown is concerned."""

    def abort(self) -> None:
        """Drop the connection at once."""


class Signal:
    """A broadcast wake-up: waiters ``await`` `future()`; `notify()` wakes them all at once."""

    __slots__ = ("_future",)

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    def future(self) -> asyncio.Future[None]:
        """The future the next `notify()` resolves (created lazily in the running loop)."""
        if self._future is None or self._future.done():
            self._future = asyncio.get_running_loop().create_future()
        return self._future

    def notify(self) -> None:
        """Wake every current waiter."""
        if self._future is not None and not self._future.done():
            self._future.set_result(None)
        self._future = None


@dataclass(frozen=True)
class SimConfig:
    """Construction-time settings of a `GenieSimulator` (see its docstring)."""

    envelope: Literal["wrapped", "flat"] = "wrapped"
    error_style: Literal["workato", "nested"] = "workato"
    ping_interval: float = 30.0
    seed: int = 0
    line_ending: Literal["\n", "\r", "\r\n"] = "\n"
    fragment: bool = False
    topic_delay: float = 2.0
    events_inclusive: bool = True
    events_page_size: int = 50
    auth_interrupt_after: float = 0.05

    def __post_init__(self) -> None:
        if self.envelope not in ("wrapped", "flat"):
            raise ValueError(f"envelope must be 'wrapped' or 'flat', not {self.envelope!r}")
        if self.error_style not in ("workato", "nested"):
            raise ValueError(f"error_style must be 'workato' or 'nested', not {self.error_style!r}")
        if self.line_ending not in ("\n", "\r", "\r\n"):
            raise ValueError("line_ending must be '\\n', '\\r' or '\\r\\n'")
        if self.ping_interval <= 0:
            raise ValueError("ping_interval must be > 0")
        if not 1 <= self.events_page_size <= 100:
            raise ValueError("events_page_size must be within 1..100")
        if self.topic_delay < 0 or self.auth_interrupt_after < 0:
            raise ValueError("delays must be >= 0")


@dataclass
class SimFlags:
    """Switches tests flip at runtime (exposed as `GenieSimulator` properties)."""

    genie_started: bool = True
    client_attached: bool = True
    headless_enabled: bool = True
    propagation_window: float = 0.0
    enable_delete: bool = False
    enable_business_approval: bool = False
    link_endpoint_available: bool = True


@dataclass
class SimUser:
    """A Workato Identity end user known to the simulator."""

    user_id: str
    status: Literal["active", "invited"] = "active"
    allow_listed: bool = True
    email: str | None = None
    name: str | None = None

    @property
    def may_chat(self) -> bool:
        """Active and in an allow-listed user group."""
        return self.status == "active" and self.allow_listed


@dataclass(frozen=True)
class SimEvent:
    """A persisted (or resumed-run) event; ``data`` is its JSON text exactly as sent."""

    type: str
    event_id: str
    conversation_id: str
    genie_run_id: str
    seq_num: int
    stamp: int
    data: bytes = field(repr=False)
    frame: bytes = field(repr=False)

    @property
    def created_at(self) -> str:
        """RFC 3339 creation time (unique across the simulator)."""
        return format_timestamp(self.stamp)

    @property
    def payload(self) -> Any:
        """The decoded JSON payload, or None if the data is not valid JSON (raw `Emit`)."""
        try:
            return msgspec.json.decode(self.data)
        except msgspec.DecodeError:
            return None


@dataclass(frozen=True)
class SimMessage:
    """One history entry (``source`` is ``"user"`` or ``"genie"``)."""

    message_id: str
    source: Literal["user", "genie"]
    content: str
    genie_run_id: str
    stamp: int
    file_id: str | None = None

    @property
    def created_at(self) -> str:
        """RFC 3339 creation time."""
        return format_timestamp(self.stamp)

    def to_json(self) -> dict[str, Any]:
        """The wire form used by ``GET …/messages``."""
        body: dict[str, Any] = {
            "message_id": self.message_id,
            "source": self.source,
            "content": self.content,
            "genie_run_id": self.genie_run_id,
            "created_at": self.created_at,
        }
        if self.file_id is not None:
            body["file_id"] = self.file_id
        return body


@dataclass(eq=False)
class SimRun:
    """One run (turn). ``persisted`` is False for a run resumed after a runtime-connection
    pause: its events reach no stream and no ``/events`` page."""

    run_id: str
    conversation_id: str
    faults: tuple[StreamFault, ...] = ()
    persisted: bool = True
    events: list[SimEvent] = field(default_factory=list)
    finished: bool = False
    parked: bool = False
    connections: int = 0
    signal: Signal = field(default_factory=Signal, repr=False)

    def seq_of(self, event_id: str | None) -> int:
        """The seq of ``event_id`` in this run, or 0 if unknown (replay from the start)."""
        if event_id:
            for event in self.events:
                if event.event_id == event_id:
                    return event.seq_num
        return 0


@dataclass(eq=False)
class SimFile:
    """An uploaded file (scoped to its conversation, valid 24 h)."""

    file_id: str
    conversation_id: str
    uploaded_at: float


@dataclass(eq=False)
class SimConversation:
    """A conversation and everything that happened in it."""

    conversation_id: str
    user_id: str
    created_stamp: int
    placeholder: str
    updated_stamp: int = 0
    state: ConversationState = "idle"
    topic: str | None = None
    first_message_at: float | None = None
    parked_attempt: str | None = None
    messages: list[SimMessage] = field(default_factory=list)
    runs_by_id: dict[str, SimRun] = field(default_factory=dict)
    events: list[SimEvent] = field(default_factory=list)
    files: dict[str, SimFile] = field(default_factory=dict)
    # Wakes `wait_idle` / `wait_for_event` on state changes and new persisted events.
    signal: Signal = field(default_factory=Signal, repr=False)
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def runs(self) -> list[SimRun]:
        """Runs in creation order."""
        return list(self.runs_by_id.values())

    @property
    def busy(self) -> bool:
        """Whether a new message must be refused with 409 (also while parked, though
        ``state`` then reads ``idle``, as production does)."""
        return self.state != "idle" or self.parked_attempt is not None

    @property
    def last_event(self) -> SimEvent | None:
        """The last persisted event, if any."""
        return self.events[-1] if self.events else None


@dataclass(eq=False)
class PendingApproval:
    """A ``skill.confirmation_required`` (or business approval) awaiting its POST."""

    call_id: str
    conversation_id: str
    kind: Literal["skill", "business"]
    future: asyncio.Future[tuple[str, str | None]]

    @property
    def resolved(self) -> bool:
        """Whether a resolution was already accepted."""
        return self.future.done()


@dataclass(eq=False)
class AuthAttempt:
    """A runtime-connection attempt parked on the user's authorization."""

    attempt_id: str
    conversation_id: str
    connector: str
    link_url: str
    expires_at: float
    future: asyncio.Future[tuple[str, str | None]]
    status: Literal["auth_required", "authorized", "rejected"] = "auth_required"
