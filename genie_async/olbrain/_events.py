"""The events of an Olbrain conversational turn.

Olbrain answers a turn synchronously (no event stream for ``ak_`` callers, reference §7.1),
so a turn's stream yields the genie backend's :class:`~genie_async.AgentMessage` with the
reply, then :class:`TurnFinished`, a :class:`~genie_async.ProcessingFinished` that also
carries the token usage: code written for either backend can match on the same classes.
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

from ..events import AgentMessage, ProcessingFinished
from ._models import TokenUsage

__all__ = ["OlbrainEvent", "TurnFinished"]


class TurnFinished(ProcessingFinished, tag="olbrain.turn_finished", frozen=True):
    """The end of an Olbrain turn (``type`` is ``processing.finished``, as for genie).

    ``conversation_id`` is the session id (carried to the next turn), ``message_id`` the
    agent reply's id, ``token_usage`` what the turn cost; ``recovered`` is True when the
    reply was read back from the session's history after an ambiguous failure (§7.2).
    """

    session_id: str | None = None
    message_id: str | None = None
    token_usage: TokenUsage | None = None
    processing_time: float | None = None
    files: list[Any] = msgspec.field(default_factory=list)
    recovered: bool = False


OlbrainEvent = Union[AgentMessage, TurnFinished]  # noqa: UP007  # a runtime alias, like GenieEvent
"""Any event an Olbrain turn's stream yields."""
