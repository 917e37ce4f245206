"""What the simulator records for tests to assert on: requests, approvals and uploads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ApprovalRecord", "RequestRecord", "UploadRecord"]


@dataclass
class RequestRecord:
    """One request received by the simulator, in arrival order (``sim.log``).

    ``headers`` are as sent, except that the values of ``Authorization`` and
    ``X-IDP-User-Id`` read ``"<redacted>"``; ``has_auth`` says whether an ``Authorization``
    header was present and ``user_id`` is the user the request was made as (the
    ``X-IDP-User-Id`` value in API-key mode, the token's user in OAuth mode, else None).
    ``json`` is the parsed JSON body (None if absent or not JSON); ``status`` is the status
    answered (0 while still in progress, and for a connection reset); ``route`` is the route
    name used by `GenieSimulator.fail` (``"unknown"`` for unmatched paths);
    ``received_at`` is `time.monotonic()` at arrival (to check the spacing of retries).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any | None
    idempotency_key: str | None
    status: int
    request_id: str
    route: str
    has_auth: bool = False
    user_id: str | None = None
    received_at: float = field(default=0.0, compare=False)


@dataclass(frozen=True)
class ApprovalRecord:
    """One approval POST (skill or business), including rejected duplicates and 4xx answers.

    ``resolution`` is the value sent (None if absent), ``reason`` the ``rejection_reason``
    sent, ``status`` the HTTP status answered.
    """

    call_id: str
    resolution: str | None
    reason: str | None
    status: int
    kind: str = "skill"


@dataclass(frozen=True)
class UploadRecord:
    """One accepted upload: its ``file_id`` and what was received."""

    file_id: str
    conversation_id: str
    filename: str | None
    content_type: str | None
    size: int
    sha256: str
