"""The Olbrain simulator's records and identifiers (reference: olbrain-agent-api.md §4-§6).

Every record renders itself in the wire shape (``to_json``). Times are epoch seconds on the
simulator's clock and are rendered as RFC 3339 UTC with milliseconds and ``Z``.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ._clock import format_timestamp

__all__ = [
    "ACTIONS",
    "LEGAL_TRANSITIONS",
    "RUN_STATUSES",
    "TERMINAL_STATUSES",
    "AgentKind",
    "Clock",
    "OlbrainAgent",
    "OlbrainApproval",
    "OlbrainIds",
    "OlbrainMessage",
    "OlbrainRequest",
    "OlbrainRun",
    "OlbrainSession",
    "OlbrainUpload",
    "ReplyFunc",
    "RunAction",
    "iso",
]

AgentKind = Literal["conversational", "workflow"]
RunAction = Literal["cancel", "pause", "resume", "retry"]
#: The control actions of E5-E8, in endpoint order.
ACTIONS: tuple[RunAction, ...] = ("cancel", "pause", "retry", "resume")
#: Every run status the simulator produces (§5.1; ``triggered``/``completed``/``canceled`` are
#: accepted by `OlbrainSimulator.set_run_status` but never produced on its own).
RUN_STATUSES: tuple[str, ...] = (
    "queued",
    "running",
    "paused",
    "needs_review",
    "succeeded",
    "failed",
    "cancelled",
)
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "completed", "canceled"})
#: §5.2 exactly: (action, from-status) -> to-status. Every other pair is 409
#: ``invalid_state_transition`` (cancel on ``paused`` included: the docs list queued/running).
LEGAL_TRANSITIONS: Mapping[tuple[str, str], str] = {
    ("cancel", "queued"): "cancelled",
    ("cancel", "running"): "cancelled",
    ("pause", "running"): "paused",
    ("resume", "paused"): "running",
    ("retry", "failed"): "queued",
}

#: A conversational agent's brain: ``reply(text, metadata)`` returns the reply text (or an
#: awaitable of it). Raising makes the trigger answer 502 ``upstream_error``.
ReplyFunc = Callable[[str, "dict[str, Any]"], "str | Awaitable[str]"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class Clock(Protocol):
    """Anything with ``now() -> epoch seconds`` (`SimClock`, `VirtualClock`)."""

    def now(self) -> float: ...


def iso(seconds: float | None) -> str | None:
    """Epoch seconds as ``2026-05-27T08:14:22.381Z`` (None stays None)."""
    if seconds is None:
        return None
    text = format_timestamp(int(seconds * 1_000_000))
    return text[:23] + "Z"


class OlbrainIds:
    """Seeded id generators shaped like production's (§6): ULID-like with a type prefix.

    Request ids come from their own stream so entity ids do not depend on how many requests a
    test made.
    """

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"olbrain-sim:{seed}:ids")
        self._requests = random.Random(f"olbrain-sim:{seed}:requests")
        self._secrets = random.Random(f"olbrain-sim:{seed}:secrets")

    def _ulid(self, prefix: str) -> str:
        return prefix + "01" + "".join(self._rng.choice(_CROCKFORD) for _ in range(24))

    def agent_id(self) -> str:
        """``agt_01…`` (26 characters after the prefix)."""
        return self._ulid("agt_")

    def organization_id(self) -> str:
        """``org_01…``."""
        return self._ulid("org_")

    def project_id(self) -> str:
        """``proj_01…``."""
        return self._ulid("proj_")

    def session_id(self) -> str:
        """``sess_01…``."""
        return self._ulid("sess_")

    def message_id(self) -> str:
        """``msg_01…``."""
        return self._ulid("msg_")

    def run_id(self) -> str:
        """``run_01…``."""
        return self._ulid("run_")

    def exception_id(self) -> str:
        """``exc_01…`` (approval gates, §4.11; the prefix is invented)."""
        return self._ulid("exc_")

    def file_id(self) -> str:
        """``fi_`` + 32 lowercase hex characters (§4.2)."""
        return f"fi_{self._rng.getrandbits(128):032x}"

    def request_id(self) -> str:
        """``req_`` + 8 hex characters, like the seed's ``req_3f9a1b2c``."""
        return f"req_{self._requests.getrandbits(32):08x}"

    def access_key(self) -> str:
        """An ``ak_`` key: 40 lowercase hex characters after the prefix."""
        return f"ak_{self._secrets.getrandbits(160):040x}"

    def signature(self) -> str:
        """The hex signature of a simulated V4 signed URL."""
        return f"{self._secrets.getrandbits(256):064x}"


@dataclass
class OlbrainAgent:
    """A simulated agent. ``kind`` gates routes (§1.1); the rest configures its behaviour."""

    agent_id: str
    kind: AgentKind
    name: str
    organization_id: str
    project_id: str
    reply: ReplyFunc | None = None
    auto_advance: bool = True
    fail: bool | int = False
    needs_review: bool = False
    output_files: dict[str, bytes] = field(default_factory=dict)
    required_inputs: tuple[str, ...] = ()


@dataclass
class OlbrainMessage:
    """One message of a session (user or assistant), as E11/E12 list it."""

    message_id: str
    session_id: str
    role: Literal["user", "assistant"]
    content: str
    created_at: float
    token_usage: dict[str, int] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    status: str = "completed"
    idempotency_key: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The E11/E12 record (§12 row 7: ``status``, ``created_at``, ``token_usage``)."""
        return {
            "message_id": self.message_id,
            "session_id": self.session_id,
            "role": self.role,
            "content": self.content,
            "status": self.status,
            "created_at": iso(self.created_at),
            "token_usage": dict(self.token_usage) if self.token_usage else None,
            "metadata": dict(self.metadata),
        }


@dataclass
class OlbrainSession:
    """A conversational session, created implicitly by the first trigger (§6)."""

    session_id: str
    agent_id: str
    organization_id: str
    created_at: float
    last_message_at: float
    user_id: str | None = None
    title: str = ""
    status: str = "active"
    channel: str = "webhook"
    metadata: dict[str, Any] = field(default_factory=dict)
    messages: list[OlbrainMessage] = field(default_factory=list)

    def token_usage(self) -> dict[str, int]:
        """Summed token usage of the session's assistant messages."""
        total = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        for message in self.messages:
            for name, value in (message.token_usage or {}).items():
                total[name] = total.get(name, 0) + value
        return total

    def summary_json(self) -> dict[str, Any]:
        """The E9 list entry (§4.6)."""
        return {
            "session_id": self.session_id,
            "agent_id": self.agent_id,
            "status": self.status,
            "channel": self.channel,
            "user_id": self.user_id,
            "created_at": iso(self.created_at),
            "last_message_at": iso(self.last_message_at),
            "message_count": len(self.messages),
            "total_tokens": self.token_usage()["total_tokens"],
        }

    def to_json(self) -> dict[str, Any]:
        """The E10 record: the union of the §6 fields."""
        usage = self.token_usage()
        return {
            **self.summary_json(),
            "organization_id": self.organization_id,
            "title": self.title,
            "updated_at": iso(self.last_message_at),
            "token_usage": usage,
            # Invented price (§12 row 8): deterministic, so tests can compare it.
            "cost": round(usage["total_tokens"] * 0.000002, 6),
            "metadata": dict(self.metadata),
        }


@dataclass
class OlbrainApproval:
    """A human-review gate of a run (E14/E15); ``resolution`` is None while pending."""

    exception_id: str
    step_id: str
    item_id: str | None
    data: dict[str, Any] | None
    error: str
    requires_human_review: bool = True
    blocking: bool = True
    resolution: str | None = None
    modified_data: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The E14 entry (§4.11)."""
        return {
            "exception_id": self.exception_id,
            "step_id": self.step_id,
            "item_id": self.item_id,
            "data": self.data,
            "error": self.error,
            "requires_human_review": self.requires_human_review,
            "blocking": self.blocking,
        }


@dataclass
class OlbrainRun:
    """A workflow run. ``history`` lists every status it has had, oldest first.

    ``attempt`` counts executions (1, then +1 per retry that keeps the id); ``retry_of`` is the
    failed run a new-id retry came from.
    """

    run_id: str
    agent_id: str
    inputs: Any
    created_at: float
    status: str = "queued"
    started_at: float | None = None
    completed_at: float | None = None
    error: str | None = None
    attempt: int = 1
    idempotency_key: str | None = None
    retry_of: str | None = None
    reviewed: bool = False
    approvals: list[OlbrainApproval] = field(default_factory=list)
    history: list[str] = field(default_factory=lambda: ["queued"])

    @property
    def terminal(self) -> bool:
        """Whether the status is terminal (§5.1 library rule)."""
        return self.status in TERMINAL_STATUSES

    def to_json(self, output_files: list[dict[str, Any]]) -> dict[str, Any]:
        """The E4 record (§4.4), with ``output_files`` freshly signed by the caller."""
        duration = None
        if self.started_at is not None and self.completed_at is not None:
            duration = round(self.completed_at - self.started_at, 3)
        return {
            "run_id": self.run_id,
            "workflow_id": self.agent_id,
            "agent_id": self.agent_id,
            "status": self.status,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "completed_at": iso(self.completed_at),
            "duration_seconds": duration,
            "progress_percent": 100 if self.status == "succeeded" else 0,
            "inputs": self.inputs,
            "error": self.error,
            "attempt": self.attempt,
            "retry_of": self.retry_of,
            "steps": [],  # §12 row 15: the step-results field name is unknown
            "output_files": output_files,
        }


@dataclass(frozen=True)
class OlbrainUpload:
    """One accepted upload (E2). ``content`` is kept only for files up to 8 MiB."""

    file_id: str
    agent_id: str
    filename: str | None
    content_type: str | None
    size_bytes: int
    sha256: str
    created_at: float
    content: bytes | None = field(default=None, repr=False)


@dataclass
class OlbrainRequest:
    """One request the simulator received, in arrival order (``sim.requests``).

    ``headers`` are as sent except ``Authorization`` (and any cookie), whose values read
    ``"<redacted>"``; ``json`` is the parsed JSON body (None if absent, oversized, multipart or
    not JSON); ``idempotency_key`` is the body's ``"Idempotency-Key"`` (or ``idempotency_key``)
    field; ``status`` is the status answered (0 while in progress, or for a dropped
    connection); ``route`` names the endpoint (``"trigger"``, ``"get_run"``, …, ``"unknown"``);
    ``agent_id`` is the path's agent id; ``received_at`` is `time.monotonic()` at arrival.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    route: str
    request_id: str
    agent_id: str | None = None
    json: Any = None
    idempotency_key: str | None = None
    status: int = 0
    replayed: bool = False
    received_at: float = field(default=0.0, compare=False)
