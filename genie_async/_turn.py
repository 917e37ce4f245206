"""What each event means for a turn: pure state, no I/O.

:meth:`TurnState.observe` decides, for every decoded event, whether the consumer sees it and
what the stream must do next (pause, end, recover). The stream class only does I/O and calls
it, which is what makes recovery testable without a network.

Rules (reference §9.3, §9.7):

* keep-alives and ``system.stream_interrupted`` are control frames: never delivered, never
  advance the resume cursor;
* an event is a duplicate when its ``seq_num`` was seen in the run (never a bare seq: it
  restarts at 1 for every run; events of other runs are foreign), or, for an event without
  one, its ``event_id`` was; or when it lies at or before the cursor the turn resumed from;
* only persisted events advance the cursor, and only as they are handed to the consumer
  (:meth:`TurnState.commit`), never when they are merely read off the wire.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from typing import Any

import msgspec

from .events import (
    KEEPALIVE_TYPE,
    AgentMessage,
    GenieEvent,
    RuntimeConnectionAuthRequired,
    SkillConfirmationRequired,
)

__all__ = ["StreamCursor"]  # the rest is internal to the stream

_AGENT_MESSAGE = "agent.message"
_FINISHED = "processing.finished"
_INTERRUPTED = "system.stream_interrupted"
_CONFIRMATION = "skill.confirmation_required"
_AUTH_REQUIRED = "runtime_connection.auth_required"


class Action(enum.Enum):
    """What the stream does with an observed event."""

    KEEPALIVE = "keepalive"  # drop silently
    INTERRUPTED = "interrupted"  # the server ended this connection early: recover
    DUPLICATE = "duplicate"  # already delivered
    FOREIGN = "foreign"  # belongs to another run (seen when replaying by time)
    DELIVER = "deliver"
    CONFIRMATION = "confirmation"  # deliver, then get a decision
    AUTH_PAUSE = "auth_pause"  # deliver, then wait for the user's authorization
    FINISHED = "finished"  # deliver, then end the turn


class StreamCursor(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A small serialisable checkpoint of a turn, for ``Conversation.resume(cursor)``.

    Store ``cursor.to_json()`` anywhere (a queue message, a database row); another process
    rebuilds it with :meth:`from_json` and picks the turn up with no event lost or repeated.
    """

    conversation_id: str
    genie_run_id: str | None = None
    last_event_id: str | None = None
    last_created_at: str | None = None
    last_seq_num: int | None = None
    sent_at: str | None = None
    message: str | None = None
    decided: dict[str, str] = msgspec.field(default_factory=dict)
    auth_attempt_id: str | None = None
    auth_paused_at: str | None = None
    pending_confirmation: SkillConfirmationRequired | None = None
    # message_id of each reply taken from the message history rather than an event stream
    # (after a runtime-connection pause the resumed run has no stream): their position.
    history_message_ids: list[str] = msgspec.field(default_factory=list)
    finished: bool = False

    def to_json(self) -> str:
        return msgspec.json.encode(self).decode()

    @classmethod
    def from_json(cls, data: str | bytes) -> StreamCursor:
        return msgspec.json.decode(data, type=cls)


_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?$"
)


def parse_timestamp(value: str | None) -> dt.datetime | None:
    """A tolerant RFC 3339 parser: fractions of any length, ``Z``, an offset, or none (UTC).

    Written out rather than ``datetime.fromisoformat``, which on Python 3.10 accepts neither
    ``Z`` nor fractions other than 3 or 6 digits.
    """
    if not value:
        return None
    match = _RFC3339.match(value.strip())
    if match is None:
        return None
    date, hour, minute, second, fraction, _zulu, sign, off_hours, off_minutes = match.groups()
    zone = dt.timezone.utc
    if sign is not None:
        offset = dt.timedelta(hours=int(off_hours), minutes=int(off_minutes))
        zone = dt.timezone(offset if sign == "+" else -offset)
    try:
        year, month, day = (int(part) for part in date.split("-"))
        moment = dt.datetime(
            year,
            month,
            day,
            int(hour),
            int(minute),
            int(second),
            int(((fraction or "") + "000000")[:6]),
            tzinfo=zone,
        )
    except ValueError:  # e.g. month 13
        return None
    return moment.astimezone(dt.timezone.utc)


def format_timestamp(moment: dt.datetime) -> str:
    return (
        moment.astimezone(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )


class _SeqSet:
    """The set of ``seq_num`` values seen in one run, in O(1) space while they arrive in order.

    A contiguous prefix (everything below ``next``) plus the few seen beyond a gap: exact set
    semantics, so an event arriving late after a gap is still delivered, never dropped.
    """

    __slots__ = ("beyond", "next")

    def __init__(self, floor: int | None) -> None:
        # None: nothing seen yet, so the first seq starts the prefix (seqs may start anywhere,
        # at 0 or below included).
        self.next: int | None = None if floor is None else floor + 1
        self.beyond: set[int] = set()

    def add(self, seq: int) -> bool:
        """Record ``seq``; False when it was already seen (or lies before the floor)."""
        following = self.next
        if following is None or seq == following:
            following = seq + 1
            beyond = self.beyond
            while following in beyond:  # a gap just closed: absorb what was beyond it
                beyond.discard(following)
                following += 1
            self.next = following
            return True
        if seq < following or seq in self.beyond:
            return False
        self.beyond.add(seq)
        return True


class TurnState:
    """Everything a turn has learnt so far. Mutated only through :meth:`observe` and the
    few ``record_*`` methods; serialised by :meth:`cursor`."""

    __slots__ = (
        "_history_message_ids",
        "_history_text",
        "_last_message",
        "_message_ids",
        "_seqs",
        "auth_pause",
        "auth_paused_at",
        "conversation_id",
        "decided",
        "delivered",
        "finished",
        "floor_event_id",
        "genie_run_id",
        "last_created_at",
        "last_event_id",
        "last_seq_num",
        "message",
        "pending_confirmation",
        "seen_ids",
        "sent_at",
    )

    def __init__(
        self,
        conversation_id: str,
        *,
        genie_run_id: str | None = None,
        message: str | None = None,
        sent_at: str | None = None,
        floor_seq: int | None = None,
    ) -> None:
        self.conversation_id = conversation_id
        self.genie_run_id = genie_run_id
        self.message = message
        self.sent_at = sent_at
        self.last_event_id: str | None = None
        self.last_created_at: str | None = None
        self.last_seq_num: int | None = None
        self._seqs = _SeqSet(floor_seq)
        self.seen_ids: set[str] = set()  # only for events without a seq_num
        self.floor_event_id: str | None = None
        self.finished = False
        self.decided: dict[str, str] = {}
        self.pending_confirmation: SkillConfirmationRequired | None = None
        self.auth_pause: RuntimeConnectionAuthRequired | None = None
        self.auth_paused_at: str | None = None
        self._last_message: AgentMessage | None = None
        self._history_text: str | None = None
        self._message_ids: list[str] = []
        self._history_message_ids: list[str] = []
        self.delivered = 0

    @classmethod
    def from_cursor(cls, cursor: StreamCursor) -> TurnState:
        # Everything at or before the cursor was delivered by whoever held it.
        state = cls(
            cursor.conversation_id,
            genie_run_id=cursor.genie_run_id,
            message=cursor.message,
            sent_at=cursor.sent_at,
            floor_seq=cursor.last_seq_num,
        )
        state.last_event_id = cursor.last_event_id
        state.last_created_at = cursor.last_created_at
        state.last_seq_num = cursor.last_seq_num
        state.floor_event_id = cursor.last_event_id
        state.decided = dict(cursor.decided)
        pending = cursor.pending_confirmation
        if pending is not None and pending.call_id not in state.decided:
            state.pending_confirmation = pending  # re-asked first when the turn resumes
        state.finished = cursor.finished
        state._history_message_ids = list(cursor.history_message_ids)
        state._message_ids.extend(cursor.history_message_ids)
        state.auth_paused_at = cursor.auth_paused_at
        if cursor.auth_attempt_id is not None or cursor.auth_paused_at is not None:
            state.auth_pause = RuntimeConnectionAuthRequired(
                runtime_connection_attempt_id=cursor.auth_attempt_id,
                conversation_id=cursor.conversation_id,
                genie_run_id=cursor.genie_run_id,
                created_at=cursor.auth_paused_at,
            )
        return state

    def cursor(self) -> StreamCursor:
        pause = self.auth_pause
        return StreamCursor(
            conversation_id=self.conversation_id,
            genie_run_id=self.genie_run_id,
            last_event_id=self.last_event_id,
            last_created_at=self.last_created_at,
            last_seq_num=self.last_seq_num,
            sent_at=self.sent_at,
            message=self.message,
            decided=dict(self.decided),
            auth_attempt_id=pause.runtime_connection_attempt_id if pause else None,
            auth_paused_at=self.auth_paused_at,
            pending_confirmation=self.pending_confirmation,
            history_message_ids=list(self._history_message_ids),
            finished=self.finished,
        )

    @property
    def final_text(self) -> str | None:
        """The last genie message of the turn so far."""
        if self._history_text is not None:
            return self._history_text
        return None if self._last_message is None else self._last_message.text

    def delivered_message_ids(self) -> set[str]:
        """``message_id`` of every genie message delivered (built on demand: rarely needed)."""
        return set(self._message_ids)

    def observe(self, event: GenieEvent) -> Action:
        """Classify ``event``: what the stream does with it. Never moves the cursor.

        On the hot path: a few attribute reads, one comparison of the seq against the next
        expected one, and a counter.
        """
        kind = event.type
        if kind == KEEPALIVE_TYPE:
            return Action.KEEPALIVE
        if kind == _INTERRUPTED:
            return Action.INTERRUPTED
        run = event.genie_run_id
        if run != self.genie_run_id and run is not None:
            if self.genie_run_id is not None:
                return Action.FOREIGN
            self.genie_run_id = run
        seq = event.seq_num
        if seq is not None:
            if not self._seqs.add(seq):
                return Action.DUPLICATE
        else:
            event_id = event.event_id
            if event_id is not None:
                if event_id in self.seen_ids or event_id == self.floor_event_id:
                    return Action.DUPLICATE
                self.seen_ids.add(event_id)
        self.delivered += 1
        if kind == _AGENT_MESSAGE:
            return Action.DELIVER
        if kind == _FINISHED:
            return Action.FINISHED
        if kind == _CONFIRMATION and isinstance(event, SkillConfirmationRequired):
            return Action.DELIVER if event.call_id in self.decided else Action.CONFIRMATION
        if kind == _AUTH_REQUIRED and isinstance(event, RuntimeConnectionAuthRequired):
            return Action.AUTH_PAUSE
        return Action.DELIVER

    def commit(self, event: GenieEvent) -> None:
        """Fold ``event`` into what the turn has delivered: the consumer is receiving it now.

        Everything the cursor reports (position, end, pending pauses, final text) changes
        here and only here, so a consumer who stops in the middle of a chunk leaves a cursor
        that covers exactly what it received.
        """
        event_id = event.event_id
        if event_id is not None:
            self.last_event_id = event_id
        created_at = event.created_at
        if created_at is not None:
            self.last_created_at = created_at
        seq = event.seq_num
        if seq is not None and (self.last_seq_num is None or seq > self.last_seq_num):
            self.last_seq_num = seq
        kind = event.type
        if kind == _AGENT_MESSAGE and isinstance(event, AgentMessage):
            self._last_message = event
            if event.message_id is not None:
                self._message_ids.append(event.message_id)
        elif kind == _FINISHED:
            self.finished = True
        elif kind == _CONFIRMATION and isinstance(event, SkillConfirmationRequired):
            if event.call_id not in self.decided:
                self.pending_confirmation = event
            return
        elif kind == _AUTH_REQUIRED and isinstance(event, RuntimeConnectionAuthRequired):
            self.auth_pause = event
            self.auth_paused_at = event.created_at
        # Any later event of the run means an earlier confirmation pause is over.
        self.pending_confirmation = None

    def is_finished(self) -> bool:
        """Whether ``processing.finished`` was delivered."""
        return self.finished

    def is_parked(self) -> bool:
        """Whether the turn reached a runtime-connection pause."""
        return self.auth_pause is not None

    def record_decision(self, call_id: str, resolution: str) -> None:
        self.decided[call_id] = resolution
        if self.pending_confirmation is not None and self.pending_confirmation.call_id == call_id:
            self.pending_confirmation = None

    def record_history_message(self, message_id: str, text: str) -> None:
        """A reply taken from the message history, handed to the consumer now."""
        self._message_ids.append(message_id)
        self._history_message_ids.append(message_id)
        self._history_text = text

    def has_history_replies(self) -> bool:
        """Whether any reply of this turn was taken from the history (this process or before)."""
        return bool(self._history_message_ids)

    def record_end(self) -> None:
        """The turn ended without a ``processing.finished`` event (an auth-pause outcome)."""
        self.finished = True


def sort_key(event: dict[str, Any]) -> tuple[dt.datetime, int, str]:
    """Order persisted events by (created_at, seq_num, event_id) (reference §4.9, §9.3)."""
    created = event.get("created_at")
    moment = parse_timestamp(created if isinstance(created, str) else None)
    seq = event.get("seq_num")
    return (
        moment or dt.datetime.min.replace(tzinfo=dt.timezone.utc),
        seq if isinstance(seq, int) else 0,
        str(event.get("event_id") or ""),
    )
