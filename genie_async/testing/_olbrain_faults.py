"""Fault injection for the Olbrain simulator: queued replacement responses per method + path.

A fault matches a request by method (``"*"`` = any) and path (a glob string matched against
the whole path, or a compiled regex searched in it). Faults fire in the order they were queued;
each answers ``count`` matching responses, then is gone.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["DEFAULT_CODES", "BodyStyle", "FaultQueue", "OlbrainFault"]

BodyStyle = Literal["envelope", "detail", "detail_object", "text"]

#: Codes for statuses the docs leave without one (§8.2, invented) plus the documented 502 one.
DEFAULT_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    402: "insufficient_funds",
    403: "forbidden",
    404: "not_found",
    409: "invalid_state_transition",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "gateway_timeout",
}
_MESSAGES: dict[str, str] = {
    "internal_error": "Unexpected server error.",
    "upstream_error": "The agent runtime failed.",
    "upstream_timeout": "The agent runtime did not respond in time.",
    "service_unavailable": "The service is temporarily unavailable.",
    "gateway_timeout": "The gateway timed out.",
    "rate_limited": "Too many requests.",
    "insufficient_funds": "The organization has insufficient funds.",
    "credit_limit_exceeded": "The organization's credit limit is exceeded.",
    "subscription_suspended": "The organization's subscription is suspended.",
    "subscription_inactive": "The organization's subscription is inactive.",
    "billing_unavailable": "Billing is temporarily unavailable.",
}


def default_message(code: str) -> str:
    """A fixed customer-facing phrase for ``code`` (§8.1: messages are fixed phrases)."""
    return _MESSAGES.get(code, code.replace("_", " ").capitalize() + ".")


@dataclass
class OlbrainFault:
    """One queued fault (see `OlbrainSimulator.fail_next`). ``status == 0`` drops the
    connection without answering."""

    method: str
    path: str | re.Pattern[str]
    status: int
    code: str
    message: str
    count: int = 1
    after_accept: bool = False
    retry_after: str | None = None
    body: BodyStyle = "envelope"
    text: str | None = None
    remaining: int = field(default=0)

    def __post_init__(self) -> None:
        if self.status != 0 and not 100 <= self.status <= 599:
            raise ValueError(f"invalid status {self.status}")
        if self.count < 1:
            raise ValueError("count must be >= 1")
        if self.body not in ("envelope", "detail", "detail_object", "text"):
            raise ValueError(f"unknown body style {self.body!r}")
        self.method = self.method.upper()
        self.remaining = self.count

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault applies to a ``method`` request of ``path``."""
        if self.method not in ("*", method.upper()):
            return False
        if isinstance(self.path, re.Pattern):
            return self.path.search(path) is not None
        return fnmatch.fnmatchcase(path, self.path)

    def payload(self, request_id: str) -> Any:
        """The JSON error body in this fault's style (None for ``text``)."""
        if self.body == "detail":
            return {"detail": self.message}
        if self.body == "detail_object":
            return {"detail": {"code": self.code, "message": self.message}}
        if self.body == "text":
            return None
        return {"error": {"code": self.code, "message": self.message, "request_id": request_id}}


class FaultQueue:
    """The queued faults, in order."""

    def __init__(self) -> None:
        self._faults: list[OlbrainFault] = []

    def push(self, fault: OlbrainFault) -> None:
        """Queue ``fault`` behind the others."""
        self._faults.append(fault)

    def pending(self) -> int:
        """How many faulty responses are still queued in total."""
        return sum(fault.remaining for fault in self._faults)

    def clear(self) -> None:
        """Drop every queued fault."""
        self._faults.clear()

    def take(self, method: str, path: str, *, after_accept: bool) -> OlbrainFault | None:
        """Consume one response of the first queued fault matching the request and the phase
        (``after_accept`` faults fire only once the operation has succeeded)."""
        for fault in self._faults:
            if fault.after_accept == after_accept and fault.matches(method, path):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None
