"""Decisions for the two pauses of a turn, and the hook signatures that produce them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Union

from .events import AuthLink, RuntimeConnectionAuthRequired, SkillConfirmationRequired

__all__ = [
    "Approve",
    "AuthHook",
    "AuthRequest",
    "ConfirmationHook",
    "Decision",
    "DecisionRecord",
    "Decline",
    "Reject",
]


@dataclass(frozen=True)
class Approve:
    """Let the paused skill run."""


@dataclass(frozen=True)
class Reject:
    """Refuse the paused skill; the genie receives ``reason`` and usually quotes it."""

    reason: str | None = None


Decision = Union[Approve, Reject]  # noqa: UP007  # runtime alias used in isinstance checks


@dataclass(frozen=True)
class AuthRequest:
    """A runtime-connection pause, as handed to ``on_auth_required``.

    Show ``link.url`` to the end user. The hook is called again with a fresh link when the
    previous one expires (about 5 minutes). ``link`` is ``None`` only when neither the event
    nor the link endpoint provided one.
    """

    event: RuntimeConnectionAuthRequired
    link: AuthLink | None
    attempt_id: str | None


@dataclass(frozen=True)
class Decline:
    """Returned by ``on_auth_required`` to decline the connection; the turn then ends."""

    reason: str | None = None


ConfirmationHook = Callable[[SkillConfirmationRequired], Awaitable[Decision]]
"""``async def hook(event) -> Approve() | Reject(reason)``"""

AuthHook = Callable[[AuthRequest], Awaitable[Union[Decline, None]]]  # noqa: UP007
"""``async def hook(request) -> None | Decline(reason)``; ``None`` means "keep waiting"."""


@dataclass(frozen=True)
class DecisionRecord:
    """How a confirmation was decided: by the hook, by the consumer, or fail-closed.

    ``resolution`` is ``"already_decided"`` when the service answered that the call was no
    longer pending (409): another process holding the turn's cursor decided it first, or the
    run moved on. The turn goes on either way; its later events show what the genie did.
    """

    call_id: str
    resolution: Literal["approved", "rejected", "already_decided"]
    reason: str | None
    source: Literal["hook", "consumer", "timeout", "hook_error"]
