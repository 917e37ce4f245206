"""Typed records of the Olbrain API's JSON, decoded leniently with msgspec.

Unknown fields are ignored and most fields are optional: the reference marks many shapes as
unknown (§6, §12), so only the identifying fields are required. Every record keeps the raw
JSON object it came from in ``raw`` and the ``request_id`` of its response.
"""

from __future__ import annotations

import enum
from typing import Any, TypeVar

import msgspec

from .._auth import scrub
from .._http import Response
from ..errors import APIResponseError
from ._constants import TERMINAL_STATUSES_SET

__all__ = [
    "Approval",
    "ApprovalResult",
    "Message",
    "OutputFile",
    "RunRecord",
    "RunStatus",
    "Session",
    "TokenUsage",
    "UploadedFile",
]

T = TypeVar("T", bound="_Record")


class _Record(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    request_id: str | None = None
    raw: dict[str, Any] = msgspec.field(default_factory=dict)


class TokenUsage(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """Tokens a turn (or a session) used; ``cost`` when the server reports one."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: float | None = None


class RunStatus(str, enum.Enum):
    """The run statuses the reference documents (§5.1). A run's ``status`` stays a plain
    string so an unknown value is kept as sent; compare with these (``str`` members)."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    NEEDS_REVIEW = "needs_review"
    TRIGGERED = "triggered"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        """Whether the run is over (``failed`` too, though it can be retried)."""
        return self.value in TERMINAL_STATUSES_SET

    @classmethod
    def parse(cls, value: str) -> RunStatus | None:
        """The member for ``value``, or None for a status this version does not know."""
        try:
            return cls(value)
        except ValueError:
            return None


class OutputFile(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """A run's output file. ``url`` is signed and lives 15 minutes after the GET that
    returned it: use :meth:`Run.output_files`, which re-fetches when it is about to expire."""

    name: str | None = None
    url: str | None = None
    size_bytes: int | None = None
    url_expires_at: str | None = None
    content_type: str | None = None


class RunRecord(_Record, frozen=True):
    """A workflow run as E4 (or E3) returns it. ``status`` is the raw string."""

    run_id: str
    status: str = ""
    workflow_id: str | None = None
    agent_id: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    inputs: Any = None
    error: str | None = None
    progress_percent: float | None = None
    duration_seconds: float | None = None
    output_files: list[OutputFile] = msgspec.field(default_factory=list)

    @property
    def run_status(self) -> RunStatus | None:
        """``status`` as a :class:`RunStatus`, or None when this version does not know it."""
        return RunStatus.parse(self.status)

    @property
    def terminal(self) -> bool:
        """Whether the run is over: succeeded, failed, cancelled (or the SDK's spellings)."""
        return self.status in TERMINAL_STATUSES_SET


class Session(_Record, frozen=True):
    """A conversational session (E9 entry or E10 record); ``status`` is any string."""

    session_id: str
    agent_id: str | None = None
    organization_id: str | None = None
    status: str | None = None
    channel: str | None = None
    user_id: str | None = None
    title: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    last_message_at: str | None = None
    message_count: int | None = None
    total_tokens: int | None = None
    token_usage: TokenUsage | None = None
    cost: float | None = None
    metadata: dict[str, Any] | None = None


class Message(_Record, frozen=True):
    """One message of a session (E11/E12): ``role`` is ``user`` or ``assistant``."""

    message_id: str
    role: str = ""
    content: str = ""
    status: str | None = None
    created_at: str | None = None
    session_id: str | None = None
    token_usage: TokenUsage | None = None
    metadata: dict[str, Any] | None = None


class Approval(_Record, frozen=True):
    """A human-review gate of a run waiting in ``needs_review`` (E14; experimental)."""

    exception_id: str
    step_id: str | None = None
    item_id: str | None = None
    data: Any = None
    error: str | None = None
    requires_human_review: bool | None = None
    blocking: bool | None = None


class ApprovalResult(_Record, frozen=True):
    """What resolving an approval returned (E15): ``resumed`` once none blocks the run."""

    exception_id: str | None = None
    resolution: str | None = None
    all_resolved: bool | None = None
    resumed: bool | None = None


class UploadedFile(_Record, frozen=True):
    """An uploaded file (E2). Reference ``file_id`` (``fi_…``) from a trigger's JSON."""

    file_id: str
    size_bytes: int | None = None
    content_type: str | None = None
    filename: str | None = None


def convert(obj: Any, cls: type[T], response: Response, *, what: str) -> T:
    """``obj`` (one JSON object of ``response``) as ``cls``, or an APIResponseError."""
    if isinstance(obj, dict):
        try:
            record = msgspec.convert(obj, cls, strict=False)
        except msgspec.ValidationError as exc:
            problem = str(exc)
        else:
            return msgspec.structs.replace(record, request_id=response.request_id, raw=obj)
    else:
        problem = f"expected a JSON object, got {type(obj).__name__}"
    raise APIResponseError(
        f"Unexpected {what} from the Olbrain API: {problem}.",
        status=response.status,
        body=scrub(response.payload, response.secrets),
        request_id=response.request_id,
    )


def items_of(response: Response, key: str, *, what: str) -> list[Any]:
    """The list of a list response: ``{key: [...]}`` or a bare array (both seen, §11)."""
    payload = response.payload
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict) and isinstance(payload.get(key), list):
        return list(payload[key])
    raise APIResponseError(
        f"Unexpected {what} from the Olbrain API: no {key!r} list.",
        status=response.status,
        body=scrub(payload, response.secrets),
        request_id=response.request_id,
    )
