"""Conversational agents: a session's turns as async event streams, and its history.

An Olbrain turn is one synchronous ``POST /api/agents/webhook/{agent_id}`` whose response
holds the whole reply (no event stream for ``ak_`` callers, reference §7.1). ``send()`` still
returns an async iterator, as the genie backend does, yielding
:class:`~genie_async.AgentMessage` then :class:`TurnFinished` (with the token usage).

Recovery (§7.2): when a turn fails after the server may have accepted it (a 5xx, or the
connection dropped or timed out after sending), the retry first reads the session's history.
If the message is there, its reply is taken from the history (waited for, up to the turn
timeout) and nothing is re-sent; only when it is not is the turn sent again, with the same
``Idempotency-Key`` body field.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import types
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec

from .._conversation import _CLOCK_SKEW
from .._http import Response, segment
from .._stream import TurnIterator, unless_closed
from .._turn import format_timestamp, parse_timestamp
from ..errors import (
    APIResponseError,
    InvalidRequestError,
    RecoveryError,
    RequestTooLargeError,
    UsageError,
)
from ..events import AgentMessage
from . import _constants as OC
from ._api import AgentAPI, encode, send_with_recovery
from ._events import OlbrainEvent, TurnFinished
from ._models import Message, Session, TokenUsage, convert, items_of

__all__ = ["Conversation", "Reply", "TurnStream"]

logger = logging.getLogger("genie_async")


@dataclass(frozen=True)
class Reply:
    """What :meth:`Conversation.ask` returns: the agent's reply to one turn."""

    text: str
    session_id: str
    message_id: str | None
    token_usage: TokenUsage | None
    request_id: str | None
    recovered: bool = False
    events: list[OlbrainEvent] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class _Outcome:
    text: str
    session_id: str
    message_id: str | None
    token_usage: TokenUsage | None
    request_id: str | None
    timestamp: str | None = None
    processing_time: float | None = None
    files: list[Any] = field(default_factory=list)
    recovered: bool = False


def too_large(size: int, *, path: str) -> RequestTooLargeError:
    """The local refusal of a trigger body over 1 MiB (the server would answer 413)."""
    return RequestTooLargeError(
        f"Refused before sending: the trigger body is {size:,} bytes, over the "
        f"{OC.MAX_TRIGGER_BYTES:,}-byte (1 MiB) limit.",
        status=413,
        error_code=None,
        method="POST",
        path=path,
        hint="Nothing was sent. Upload the large content with agent.upload() and reference "
        "the returned fi_… id from the JSON instead.",
    )


class Conversation:
    """One conversational session with an agent (``client.agent(id).conversation()``).

    Without a ``session_id`` the first turn starts a new session; its id is then carried
    to every later turn (:attr:`session_id`). Turns of one conversation run one at a time.
    """

    def __init__(
        self,
        api: AgentAPI,
        session_id: str | None,
        *,
        user_id: str | None,
        turn_timeout: float,
    ) -> None:
        if session_id is not None:
            segment(session_id, "session_id")
        self._api = api
        self._session_id = session_id
        self._user_id = user_id
        self._turn_timeout = turn_timeout
        self._lock: asyncio.Lock | None = None
        self._replies: set[str] = set()  # reply message ids already delivered here

    @property
    def session_id(self) -> str | None:
        """The session's id: None until the first turn of a new session was answered."""
        return self._session_id

    @property
    def agent_id(self) -> str:
        return self._api.agent_id

    def __repr__(self) -> str:
        return f"<Conversation agent={self.agent_id!r} session={self._session_id!r}>"

    # --- turns ---------------------------------------------------------------------------

    def send(
        self,
        text: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        user_id: str | None = None,
        model: str | None = None,
        idempotency_key: str | None = None,
    ) -> TurnStream:
        """Send one message; the returned stream yields the reply's events.

        ``idempotency_key`` (default: a new UUID per call) goes in the body's
        ``Idempotency-Key`` field and is reused by every retry of this turn. Refused before
        sending, with nothing sent: an empty message (:class:`InvalidRequestError`) and a
        body over 1 MiB (:class:`RequestTooLargeError`).
        """
        if not isinstance(text, str) or not text.strip():  # type: ignore[redundant-expr]  # untyped callers
            raise InvalidRequestError("The message must be a non-empty string.")
        turn = _Turn(
            text=text,
            metadata=dict(metadata) if metadata is not None else None,
            user_id=user_id if user_id is not None else self._user_id,
            model=model,
            key=idempotency_key or uuid.uuid4().hex,
        )
        turn.encode(self._session_id, path=self._trigger_path)  # the 1 MiB check, now
        return TurnStream(self, turn)

    async def ask(self, text: str, **options: Any) -> Reply:
        """Send one message and return the reply (``send`` + consume the stream)."""
        async with self.send(text, **options) as stream:
            events = [event async for event in stream]
        finished = events[-1]
        assert isinstance(finished, TurnFinished)
        return Reply(
            text=stream.final_text or "",
            session_id=finished.session_id or "",
            message_id=finished.message_id,
            token_usage=finished.token_usage,
            request_id=stream.request_id,
            recovered=finished.recovered,
            events=events,
        )

    @property
    def _trigger_path(self) -> str:
        return f"/api/agents/webhook/{segment(self._api.agent_id, 'agent_id')}"

    async def _deliver(self, turn: _Turn) -> _Outcome:
        """The turn, with retries (§9) and the ambiguity check before any re-send (§7.2)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            api = self._api
            # Clocks disagree: history this much older than the send may still be ours.
            sent_after = dt.datetime.now(dt.timezone.utc) - _CLOCK_SKEW

            async def send() -> _Outcome:
                response = await api.core.request_once(
                    "POST",
                    self._trigger_path,
                    credentials=api.credentials,
                    content=turn.encode(self._session_id, path=self._trigger_path),
                    idempotency_key=turn.key,
                )
                return self._outcome(response)

            async def recover() -> _Outcome | None:
                return await self._recover(turn, sent_after)

            outcome = await send_with_recovery(
                api.policy, send, recover, what=f"POST {self._trigger_path}"
            )
            self._session_id = outcome.session_id
            if outcome.message_id is not None:
                self._replies.add(outcome.message_id)
            return outcome

    def _outcome(self, response: Response) -> _Outcome:
        payload = response.payload
        if not isinstance(payload, dict):
            raise APIResponseError(
                "Unexpected trigger response from the Olbrain API: not a JSON object.",
                status=response.status,
                request_id=response.request_id,
            )
        if payload.get("success") is False:  # tolerated by the SDK on a 200
            error = payload.get("error")
            raise APIResponseError(
                f"The agent reported a failure: {error if isinstance(error, str) else 'unknown'}",
                status=response.status,
                body=payload,
                request_id=response.request_id,
            )
        session_id = payload.get("session_id") or self._session_id
        text = payload.get("response")
        if not isinstance(session_id, str) or not isinstance(text, str):
            raise APIResponseError(
                "Unexpected trigger response from the Olbrain API: no session_id or response "
                "(is this a workflow agent? use agent.trigger()).",
                status=response.status,
                body=payload,
                request_id=response.request_id,
            )
        usage = payload.get("token_usage")
        message_id = payload.get("message_id")
        timestamp = payload.get("timestamp")
        processing = payload.get("processing_time")
        files = payload.get("files")
        return _Outcome(
            text=text,
            session_id=session_id,
            message_id=message_id if isinstance(message_id, str) else None,
            token_usage=_usage(usage),
            request_id=response.request_id,
            timestamp=timestamp if isinstance(timestamp, str) else None,
            processing_time=processing if isinstance(processing, (int, float)) else None,
            files=files if isinstance(files, list) else [],
        )

    async def _recover(self, turn: _Turn, sent_after: dt.datetime) -> _Outcome | None:
        """The turn's reply from the history if the server took it, else None (re-send)."""
        session_id = self._session_id
        if session_id is None:
            session_id = await self._find_new_session(turn, sent_after)
            if session_id is None:
                return None
        policy = self._api.policy
        deadline = policy.clock() + self._turn_timeout
        wait = OC.HISTORY_POLL_INITIAL
        while True:
            messages = [m async for m in self._history(session_id)]
            found, reply = self._match(messages, turn.text, sent_after)
            if not found:
                logger.debug("turn not in session %s's history; sending it again", session_id)
                return None
            if reply is not None:
                logger.debug("turn found in session %s's history; not re-sending", session_id)
                return _Outcome(
                    text=reply.content,
                    session_id=session_id,
                    message_id=reply.message_id,
                    token_usage=reply.token_usage,
                    request_id=reply.request_id,
                    timestamp=reply.created_at,
                    recovered=True,
                )
            if policy.clock() + wait > deadline:
                raise RecoveryError(
                    f"The message reached session {session_id} but no reply arrived within "
                    f"{self._turn_timeout:g} s.",
                    hint="The agent may still answer: read conversation.messages() later "
                    "rather than sending the message again.",
                )
            await policy.sleep(wait)
            wait = min(wait * 2, OC.HISTORY_POLL_MAX)

    def _match(
        self, messages: list[Message], text: str, sent_after: dt.datetime
    ) -> tuple[bool, Message | None]:
        """(the message was found, its reply if it already came): the newest user message
        with this text since the send whose reply (if any) was not delivered here before."""
        for index in range(len(messages) - 1, -1, -1):
            message = messages[index]
            if message.role != "user" or message.content != text:
                continue
            created = parse_timestamp(message.created_at)
            if created is not None and created < sent_after:
                break
            reply = next((m for m in messages[index + 1 :] if m.role == "assistant"), None)
            if reply is not None and reply.message_id in self._replies:
                break  # an earlier, identical turn of ours
            return True, reply
        return False, None

    async def _find_new_session(self, turn: _Turn, sent_after: dt.datetime) -> str | None:
        """The session a lost first turn created: E9 ``since`` the send, first message ours."""
        params: dict[str, str | int] = {
            "limit": OC.SESSIONS_PAGE_LIMIT,
            "since": format_timestamp(sent_after),
        }
        response = await self._api.get("/sessions", params)
        sessions = [
            convert(item, Session, response, what="session")
            for item in items_of(response, "sessions", what="sessions")
        ]
        for session in sessions:  # most recently active first
            if turn.user_id is not None and session.user_id not in (None, turn.user_id):
                continue
            page = await self._message_page(session.session_id, limit=2, offset=0)
            first = next((m for m in page if m.role == "user"), None)
            if first is not None and first.content == turn.text:
                return session.session_id
        return None

    # --- history -------------------------------------------------------------------------

    def _require_session(self) -> str:
        if self._session_id is None:
            raise UsageError("This conversation has no session yet: send a message first.")
        return self._session_id

    async def info(self) -> Session:
        """The session's full record (E10)."""
        session_id = self._require_session()
        response = await self._api.get(f"/sessions/{segment(session_id, 'session_id')}")
        return convert(response.payload, Session, response, what="session")

    async def message(self, message_id: str) -> Message:
        """One message of the session, with its status, content and token usage (E12)."""
        session_id = self._require_session()
        response = await self._api.get(
            f"/sessions/{segment(session_id, 'session_id')}/messages/"
            f"{segment(message_id, 'message_id')}"
        )
        return convert(response.payload, Message, response, what="message")

    async def message_page(
        self, *, limit: int = OC.MESSAGES_PAGE_LIMIT, offset: int = 0
    ) -> list[Message]:
        """One page of the session's messages, oldest first (E11)."""
        return await self._message_page(self._require_session(), limit=limit, offset=offset)

    async def _message_page(self, session_id: str, *, limit: int, offset: int) -> list[Message]:
        if not 1 <= limit <= OC.MESSAGES_PAGE_LIMIT or offset < 0:
            raise InvalidRequestError(f"limit must be 1..{OC.MESSAGES_PAGE_LIMIT} and offset >= 0.")
        response = await self._api.get(
            f"/sessions/{segment(session_id, 'session_id')}/messages",
            {"limit": limit, "offset": offset},
        )
        return [
            convert(item, Message, response, what="message")
            for item in items_of(response, "messages", what="messages")
        ]

    async def messages(self, *, page_size: int = OC.MESSAGES_PAGE_LIMIT) -> AsyncIterator[Message]:
        """Every message of the session, oldest first, each once.

        Pages by ``limit``/``offset``; a message the API hides between two pages can make a
        page overlap the previous one, so messages are de-duplicated by ``message_id``.
        """
        async for message in self._history(self._require_session(), page_size=page_size):
            yield message

    async def _history(
        self, session_id: str, *, page_size: int = OC.MESSAGES_PAGE_LIMIT
    ) -> AsyncIterator[Message]:
        seen: set[str] = set()
        offset = 0
        for _ in range(OC.MAX_PAGES):
            page = await self._message_page(session_id, limit=page_size, offset=offset)
            for message in page:
                if message.message_id not in seen:
                    seen.add(message.message_id)
                    yield message
            if len(page) < page_size:
                return
            offset += len(page)


@dataclass
class _Turn:
    text: str
    metadata: dict[str, Any] | None
    user_id: str | None
    model: str | None
    key: str

    def encode(self, session_id: str | None, *, path: str) -> bytes:
        body: dict[str, Any] = {"message": self.text, "response_mode": "sync"}
        if session_id is not None:
            body["session_id"] = session_id
        if self.user_id is not None:
            body["user_id"] = self.user_id
        if self.metadata is not None:
            body["metadata"] = self.metadata
        if self.model is not None:
            body["model"] = self.model
        body[OC.IDEMPOTENCY_FIELD] = self.key
        try:
            content = encode(body)
        except (TypeError, msgspec.EncodeError) as exc:
            raise InvalidRequestError(f"The metadata is not JSON-serialisable: {exc}") from exc
        if len(content) > OC.MAX_TRIGGER_BYTES:
            raise too_large(len(content), path=path)
        return content


def _usage(value: object) -> TokenUsage | None:
    if not isinstance(value, dict):
        return None
    try:
        return msgspec.convert(value, TokenUsage, strict=False)
    except msgspec.ValidationError:
        return None


class TurnStream(TurnIterator[OlbrainEvent]):
    """One turn's events: ``async with conversation.send(text) as stream: async for …``.

    Yields :class:`~genie_async.AgentMessage` (the reply) then :class:`TurnFinished` (the
    session id, the reply's ``message_id`` and the token usage). The request is made when
    iteration starts. ``aclose()`` may be called at any time, from any task, any number of
    times.
    """

    def __init__(self, conversation: Conversation, turn: _Turn) -> None:
        self._conversation = conversation
        self._turn = turn
        self._agen = cast("types.AsyncGeneratorType[OlbrainEvent, None]", self._run())
        self._entered = False
        self._closed = False
        self._finished = False
        self._closed_event = asyncio.Event()  # a close from another task ends the request
        self._outcome: _Outcome | None = None

    @property
    def idempotency_key(self) -> str:
        """The body's ``Idempotency-Key``, the same on every retry of this turn."""
        return self._turn.key

    @property
    def session_id(self) -> str | None:
        return self._outcome.session_id if self._outcome else self._conversation.session_id

    @property
    def final_text(self) -> str | None:
        """The reply text, once received."""
        return self._outcome.text if self._outcome else None

    @property
    def token_usage(self) -> TokenUsage | None:
        return self._outcome.token_usage if self._outcome else None

    @property
    def request_id(self) -> str | None:
        """The request id of the response that carried the reply."""
        return self._outcome.request_id if self._outcome else None

    async def aclose(self) -> None:
        """Stop the turn (idempotent), from any task. A request in flight is abandoned."""
        if self._closed:
            return
        self._closed = True
        self._closed_event.set()
        if not self._agen.ag_running:
            await self._agen.aclose()

    close = aclose

    def __repr__(self) -> str:
        return f"<TurnStream session={self.session_id!r} closed={self._closed}>"

    async def _run(self) -> AsyncGenerator[OlbrainEvent, None]:
        try:
            outcome = await unless_closed(
                self._conversation._deliver(self._turn), self._closed_event, what="stream"
            )
            self._outcome = outcome
            yield AgentMessage(
                message=outcome.text,
                message_id=outcome.message_id,
                conversation_id=outcome.session_id,
                created_at=outcome.timestamp,
            )
            yield TurnFinished(
                conversation_id=outcome.session_id,
                created_at=outcome.timestamp,
                session_id=outcome.session_id,
                message_id=outcome.message_id,
                token_usage=outcome.token_usage,
                processing_time=outcome.processing_time,
                files=outcome.files,
                recovered=outcome.recovered,
            )
        finally:
            self._finished = True
