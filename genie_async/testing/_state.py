"""The simulator's in-memory world and the bookkeeping operations on it.

Everything here is synchronous; the coroutines that drive turns live in `_turns` and the ones
that write streams in `_sse`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Literal

import msgspec

from ._admin_state import AdminState
from ._clock import SimClock, format_timestamp
from ._faults import FaultQueue, StreamFault
from ._framing import encode_frame
from ._ids import IdFactory
from ._model import (
    AuthAttempt,
    ConversationState,
    PendingApproval,
    Signal,
    SimConfig,
    SimConversation,
    SimEvent,
    SimFlags,
    SimMessage,
    SimRun,
    SimUser,
    StreamHandle,
)
from ._records import ApprovalRecord, RequestRecord, UploadRecord
from ._scenario import Script

__all__ = ["World"]

_encode = msgspec.json.Encoder().encode
_log = logging.getLogger("genie_async.testing")


class World:
    """All mutable simulator state plus the bookkeeping operations on it."""

    LINK_LIFETIME = 300.0
    RETENTION = 24 * 3600.0

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.flags = SimFlags()
        self.clock = SimClock()
        self.ids = IdFactory(config.seed)
        self.script = Script()
        self.faults = FaultQueue()
        self.genie_id = self.ids.genie_id()
        self.api_key = self.ids.api_key()
        # The Developer API side; it keeps `api_key` and `flags.client_attached` in step.
        self.admin = AdminState(config.seed, self.genie_id, self.api_key)
        self.users: dict[str, SimUser] = {}
        self.tokens: dict[str, str] = {}
        self.conversations: dict[str, SimConversation] = {}
        self.approvals: dict[str, PendingApproval] = {}
        self.attempts: dict[str, AuthAttempt] = {}
        self.log: list[RequestRecord] = []
        self.approval_log: list[ApprovalRecord] = []
        self.uploads: list[UploadRecord] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.open_streams = 0
        self.streams: set[StreamHandle] = set()
        self.closing = False
        self.closing_signal = Signal()
        self.provisioned_at = self.clock.now()
        self.base_url = ""

    # ---------------------------------------------------------------- users

    def add_user(
        self,
        *,
        status: Literal["active", "invited"] = "active",
        allow_listed: bool = True,
        user_id: str | None = None,
        email: str | None = None,
        name: str | None = None,
    ) -> str:
        """Register an Identity user and return its id (every user gets an email)."""
        if status not in ("active", "invited"):
            raise ValueError(f"status must be 'active' or 'invited', not {status!r}")
        uid = user_id if user_id is not None else self.ids.user_id()
        if email is None:
            email = f"user{len(self.users) + 1}@example.com"
        if name is None:
            name = email.partition("@")[0].replace(".", " ").title()
        self.users[uid] = SimUser(uid, status, allow_listed, email, name)
        return uid

    # -------------------------------------------------------- conversations

    def new_conversation(self, user_id: str) -> SimConversation:
        """Create an idle conversation owned by ``user_id``."""
        stamp = self.clock.stamp()
        conv = SimConversation(
            conversation_id=self.ids.uuid(),
            user_id=user_id,
            created_stamp=stamp,
            placeholder=self.ids.topic_placeholder(),
            updated_stamp=stamp,
        )
        self.conversations[conv.conversation_id] = conv
        return conv

    def topic_of(self, conv: SimConversation, *, generated: bool) -> str:
        """The topic: the generated one (if ``generated`` or ready) else the placeholder."""
        if conv.topic is None:
            return conv.placeholder
        ready = (
            conv.first_message_at is not None
            and self.clock.now() >= conv.first_message_at + self.config.topic_delay
        )
        return conv.topic if generated or ready else conv.placeholder

    def set_state(self, conv: SimConversation, state: ConversationState) -> None:
        """Change the conversation state and wake `wait_idle` callers."""
        conv.state = state
        conv.signal.notify()

    def add_message(
        self,
        conv: SimConversation,
        source: Literal["user", "genie"],
        content: str,
        run_id: str,
        file_id: str | None = None,
    ) -> SimMessage:
        """Append a history entry."""
        message = SimMessage(
            self.ids.uuid(), source, content, run_id, self.clock.stamp(), file_id or None
        )
        conv.messages.append(message)
        conv.updated_stamp = message.stamp
        if source == "user" and conv.topic is None:
            conv.topic = content[:60]
            conv.first_message_at = self.clock.now()
        return message

    def new_run(
        self, conv: SimConversation, faults: tuple[StreamFault, ...] = (), *, persisted: bool = True
    ) -> SimRun:
        """Create a run in ``conv``."""
        run = SimRun(self.ids.uuid(), conv.conversation_id, faults, persisted)
        conv.runs_by_id[run.run_id] = run
        return run

    # ---------------------------------------------------------------- events

    def emit(
        self,
        run: SimRun,
        event_type: str,
        fields: dict[str, Any] | None = None,
        *,
        raw_data: str | None = None,
    ) -> SimEvent:
        """Append an event to ``run`` (and to the conversation's persisted timeline) and wake
        the run's live readers."""
        conv = self.conversations.get(run.conversation_id)
        seq = len(run.events) + 1
        event_id = self.ids.uuid()
        stamp = self.clock.stamp()
        if raw_data is None:
            body: dict[str, Any] = {
                "type": event_type,
                "event_id": event_id,
                "conversation_id": run.conversation_id,
                "genie_run_id": run.run_id,
                "seq_num": seq,
                "created_at": format_timestamp(stamp),
            }
            body.update(fields or {})
            data = _encode(body)
        else:
            data = raw_data.encode()
        frame = encode_frame(
            event_type, data, event_id=event_id, line_ending=self.config.line_ending
        )
        event = SimEvent(
            event_type, event_id, run.conversation_id, run.run_id, seq, stamp, data, frame
        )
        run.events.append(event)
        if conv is not None and run.persisted:
            conv.events.append(event)
            conv.updated_stamp = stamp
            conv.signal.notify()
        run.signal.notify()
        return event

    def visible_events(self, conv: SimConversation) -> list[SimEvent]:
        """Persisted events still within the 24 h retention window (oldest first)."""
        horizon = int((self.clock.now() - self.RETENTION) * 1_000_000)
        return [event for event in conv.events if event.stamp >= horizon]

    # ------------------------------------------------------------- approvals

    def open_approval(
        self, conv: SimConversation, kind: Literal["skill", "business"]
    ) -> PendingApproval:
        """Register a pending confirmation with a fresh ``call_id``."""
        future: asyncio.Future[tuple[str, str | None]] = asyncio.get_running_loop().create_future()
        approval = PendingApproval(self.ids.call_id(), conv.conversation_id, kind, future)
        self.approvals[approval.call_id] = approval
        return approval

    # ---------------------------------------------------- runtime connection

    def open_attempt(self, conv: SimConversation, connector: str) -> AuthAttempt:
        """Register a runtime-connection attempt with a first auth link."""
        future: asyncio.Future[tuple[str, str | None]] = asyncio.get_running_loop().create_future()
        attempt_id = self.ids.uuid()
        attempt = AuthAttempt(attempt_id, conv.conversation_id, connector, "", 0.0, future)
        self.refresh_link(attempt)
        self.attempts[attempt_id] = attempt
        return attempt

    def refresh_link(self, attempt: AuthAttempt) -> None:
        """Issue a new auth link valid for 5 minutes of simulated time."""
        attempt.link_url = (
            f"{self.base_url}/sim/runtime_connection/{attempt.attempt_id}/authorize"
            f"?link={self.ids.link_token()}"
        )
        attempt.expires_at = self.clock.now() + self.LINK_LIFETIME

    def auth_link(self, attempt: AuthAttempt) -> dict[str, str]:
        """The ``auth_link`` object of the event and of the link endpoint."""
        return {
            "url": attempt.link_url,
            "connector_name": attempt.connector,
            "expires_at": format_timestamp(int(attempt.expires_at * 1_000_000)),
        }

    def resolve_attempt(self, attempt: AuthAttempt, outcome: str, reason: str | None) -> None:
        """Authorize or reject a parked attempt; the turn task does the rest."""
        attempt.status = "authorized" if outcome == "authorized" else "rejected"
        conv = self.conversations.get(attempt.conversation_id)
        if conv is not None:
            conv.parked_attempt = None
            # An authorized turn is busy from this instant, so `wait_idle` right after
            # `authorize()` waits for the resumed run rather than seeing the parked "idle".
            self.set_state(conv, "ai_running" if outcome == "authorized" else "idle")
        if not attempt.future.done():
            attempt.future.set_result((outcome, reason))

    # ------------------------------------------------------------------ tasks

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a turn coroutine, tracked so `close()` can cancel it."""
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._turn_done)
        return task

    def _turn_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        # A crashing turn is a simulator bug: say so loudly instead of leaving a silent stall.
        if not task.cancelled() and task.exception() is not None:
            _log.error("simulated turn crashed", exc_info=task.exception())
