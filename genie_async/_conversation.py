"""``Conversation``: one end user's conversation with a genie, and every call on it."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import io
import logging
import mimetypes
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, TypeVar, Union, overload

import aiohttp
import msgspec

from . import _constants as C
from ._config import RetryPolicy, Timeouts
from ._hooks import Approve, AuthHook, ConfirmationHook, Decision, Reject
from ._http import segment
from ._models import (
    ConversationInfo,
    EventPage,
    Message,
    Page,
    RunHandle,
    RuntimeConnectionLink,
    UploadedFile,
    parse_event_page,
    parse_model,
    parse_page,
)
from ._retry import call_with_retry
from ._stream import EventStream, Outcome, _SendRequest
from ._turn import StreamCursor, TurnState, format_timestamp, parse_timestamp, sort_key
from .errors import (
    APIConnectionError,
    APIStatusError,
    ConflictError,
    FileTooLargeError,
    InvalidRequestError,
    MessageTooLongError,
)
from .events import AgentMessage, GenieEvent, event_from_object

if TYPE_CHECKING:
    from ._client import GenieClient

__all__ = ["Conversation", "FileInput", "Reply"]

logger = logging.getLogger("genie_async")

T = TypeVar("T")

FileInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]
"""A file to upload: a path (``str`` or ``PathLike``), the bytes, or a binary file object."""

# Only the newest user message can be the one just sent; it is near the top of the history.
_ACCEPT_CHECK_PAGE = 20
_ACCEPT_CHECK_PAGES = 10  # the newest user message is found within this many pages
_CLOCK_SKEW = dt.timedelta(minutes=5)
_DATE_RESOLUTION = dt.timedelta(seconds=2)


@dataclass(frozen=True)
class Reply:
    """What :meth:`Conversation.ask` returns: the final answer and everything that led to it."""

    text: str
    events: list[GenieEvent] = field(repr=False)
    conversation_id: str
    genie_run_id: str | None
    outcome: Outcome | None
    request_id: str | None


class Conversation:
    """A conversation between the genie and the client's end user.

    Cheap to create (no request): ``client.conversation(conversation_id)``. Create a new one
    on the server with ``await client.create_conversation()``.
    """

    def __init__(self, client: GenieClient, conversation_id: str) -> None:
        self._client = client
        self._path = f"{client._prefix}/conversations/{segment(conversation_id, 'conversation_id')}"
        self.conversation_id = conversation_id
        self._memory = client._shared.memory(conversation_id)

    @property
    def known_runs(self) -> set[str]:
        """Runs of this conversation already streamed in this process (by any handle)."""
        return self._memory.runs

    def note_unresolved(self, text: str) -> None:
        """A message was accepted but its run never became known (see ``post_message``)."""
        self._memory.unresolved.append(text)

    # --- TurnAPI attributes (used by EventStream) ----------------------------------------

    @property
    def timeouts(self) -> Timeouts:
        return self._client._core.timeouts

    @property
    def retry(self) -> RetryPolicy:
        return self._client._core.retry

    @property
    def max_event_bytes(self) -> int:
        return self._client._max_event_bytes

    @property
    def host(self) -> str:
        return self._client._core.host

    def __repr__(self) -> str:
        return f"<Conversation {self.conversation_id!r}>"

    # --- turns ---------------------------------------------------------------------------

    @overload
    def send(
        self,
        text: str,
        *,
        file: str | UploadedFile | FileInput | None = None,
        on_skill_confirmation: ConfirmationHook | None = None,
        on_auth_required: AuthHook | None = None,
        stream: Literal[True] = True,
    ) -> EventStream: ...

    @overload
    def send(
        self,
        text: str,
        *,
        file: str | UploadedFile | FileInput | None = None,
        on_skill_confirmation: None = None,
        on_auth_required: None = None,
        stream: Literal[False],
    ) -> Awaitable[RunHandle]: ...

    def send(
        self,
        text: str,
        *,
        file: str | UploadedFile | FileInput | None = None,
        on_skill_confirmation: ConfirmationHook | None = None,
        on_auth_required: AuthHook | None = None,
        stream: bool = True,
    ) -> EventStream | Awaitable[RunHandle]:
        """Send a message. Returns the turn's :class:`EventStream`, or with ``stream=False``
        an awaitable run handle. The message is posted when the stream is first iterated;
        entering ``async with`` only scopes its cleanup.

        ``file`` is a ``file_id`` string or an :class:`UploadedFile`, or anything
        :meth:`upload` accepts (a path-like, bytes, a binary file object), uploaded first.
        """
        _check_message(text, has_file=file is not None)
        if not stream:
            return self._send_without_stream(text, file)
        state = TurnState(self.conversation_id, message=text)
        return EventStream(
            self,
            state,
            send=_SendRequest(text, file),
            on_skill_confirmation=on_skill_confirmation,
            on_auth_required=on_auth_required,
        )

    async def ask(
        self,
        text: str,
        *,
        file: str | UploadedFile | FileInput | None = None,
        on_skill_confirmation: ConfirmationHook | None = None,
        on_auth_required: AuthHook | None = None,
    ) -> Reply:
        """Send a message, wait for the whole turn, and return the final reply."""
        async with self.send(
            text,
            file=file,
            on_skill_confirmation=on_skill_confirmation,
            on_auth_required=on_auth_required,
        ) as stream:
            events = [event async for event in stream]
        return Reply(
            text=stream.final_text or "",
            events=events,
            conversation_id=self.conversation_id,
            genie_run_id=stream.genie_run_id,
            outcome=stream.outcome,
            request_id=stream.request_id,
        )

    def resume(
        self,
        cursor: StreamCursor,
        *,
        on_skill_confirmation: ConfirmationHook | None = None,
        on_auth_required: AuthHook | None = None,
    ) -> EventStream:
        """Continue a turn from ``stream.cursor`` (possibly saved by another process).

        Events at or before the cursor are not delivered again; decisions it records are
        not submitted again.
        """
        if cursor.conversation_id != self.conversation_id:
            raise InvalidRequestError(
                f"The cursor belongs to conversation {cursor.conversation_id!r}, not "
                f"{self.conversation_id!r}."
            )
        return EventStream(
            self,
            TurnState.from_cursor(cursor),
            send=None,
            on_skill_confirmation=on_skill_confirmation,
            on_auth_required=on_auth_required,
        )

    def attach(
        self,
        genie_run_id: str,
        *,
        on_skill_confirmation: ConfirmationHook | None = None,
        on_auth_required: AuthHook | None = None,
    ) -> EventStream:
        """Follow a run from its first event (e.g. one started with ``stream=False``)."""
        segment(genie_run_id, "genie_run_id")
        return self.resume(
            StreamCursor(conversation_id=self.conversation_id, genie_run_id=genie_run_id),
            on_skill_confirmation=on_skill_confirmation,
            on_auth_required=on_auth_required,
        )

    async def _send_without_stream(
        self, text: str, file: str | UploadedFile | FileInput | None
    ) -> RunHandle:
        file_id = await self.resolve_file(file)
        sent_at = _now()

        async def post(key: str) -> RunHandle:
            response = await self._client._core.request_once(
                "POST",
                f"{self._path}/messages",
                credentials=self._client._credentials,
                json=_message_body(text, file_id, stream=False),
                idempotency_key=key,
            )
            return parse_model(
                response,
                RunHandle,
                expected=("genie_run_id", "conversation_id"),
                defaults={"conversation_id": self.conversation_id},
                what="run handle",
            )

        async def attach(run: str) -> RunHandle:
            return RunHandle(conversation_id=self.conversation_id, genie_run_id=run)

        handle = await self.post_message(text, sent_at, post=post, attach=attach)
        if handle.genie_run_id is not None:
            self.known_runs.add(handle.genie_run_id)
        return handle

    # --- TurnAPI (used by EventStream) ---------------------------------------------------

    async def post_message(
        self,
        text: str,
        sent_at: str,
        *,
        post: Callable[[str], Awaitable[T]],
        attach: Callable[[str], Awaitable[T]],
        retry: RetryPolicy | None = None,
    ) -> T:
        """POST a message with retries that never duplicate it (reference §9.6).

        A 5xx, or a connection lost after the request left, may mean the server accepted
        the message. Before any retry the history is checked: if the message is there, its
        run is attached to instead of posting again. A 409 on a retry is checked the same way
        (the busy turn may be ours, or someone else's).
        """
        if self._memory.unresolved:
            await self._resolve_unresolved()
        key = uuid.uuid4().hex
        started = time.monotonic()
        maybe_accepted = False

        async def attempt(number: int) -> T:
            nonlocal maybe_accepted
            if maybe_accepted:
                run = await self.find_accepted_run(text, sent_at, started=started)
                if run is not None:
                    return await attach(run)
            try:
                return await post(key)
            except ConflictError:
                if maybe_accepted:
                    run = await self.find_accepted_run(text, sent_at, started=started)
                    if run is not None:
                        return await attach(run)
                raise
            except APIStatusError as exc:
                maybe_accepted = maybe_accepted or exc.status >= 500
                raise
            except APIConnectionError as exc:
                maybe_accepted = maybe_accepted or exc.request_sent
                raise

        return await call_with_retry(
            retry or self.retry, attempt, what=f"POST {self._path}/messages", resend_safe=True
        )

    async def _resolve_unresolved(self) -> None:
        """Learn the runs of earlier accepted messages whose streams ended before any event.

        Done before posting anything new, when the newest user message with such a text can
        only be that earlier one; otherwise a quick identical re-send ("yes", "ok") could be
        mistaken for it.
        """
        pending = self._memory.unresolved
        page = await self.message_page(limit=_ACCEPT_CHECK_PAGE)
        for message in page.items:  # newest first
            if message.source != "user" or message.content not in pending:
                continue
            if message.genie_run_id is not None and message.genie_run_id not in self.known_runs:
                self.known_runs.add(message.genie_run_id)
                pending.remove(message.content)
            if not pending:
                break
        pending.clear()  # unresolvable ones are older than a page: no longer in the way

    async def find_accepted_run(
        self, text: str | None, sent_at: str | None, *, started: float | None = None
    ) -> str | None:
        """The run of a just-sent message if the history shows the server accepted it.

        Only the newest user message can be ours, and only if it was created after we began
        sending. That moment is taken on the server's clock when possible (its ``Date``
        header minus the time we have spent since ``started``, a ``time.monotonic()``
        reading), so an identical earlier message ("yes") is never mistaken for this one.
        Without those, the client clock with a generous allowance for skew is the fallback.
        """
        floor: dt.datetime | None = None
        cursor: str | None = None
        for _ in range(_ACCEPT_CHECK_PAGES):
            params: dict[str, str | int] = {"limit": _ACCEPT_CHECK_PAGE}
            if cursor is not None:
                params["cursor"] = cursor
            response = await self._client._core.request(
                "GET",
                f"{self._path}/messages",
                credentials=self._client._credentials,
                params=params,
            )
            page = parse_page(response, Message, "messages", what="messages")
            if floor is None:
                floor = _send_floor(response.headers.get("date"), started, sent_at)
            for message in page.items:  # newest first
                created = parse_timestamp(message.created_at)
                if floor is not None and created is not None and created < floor:
                    return None  # older than our send: nothing newer was ours
                if message.source != "user":
                    continue  # a chatty turn can put many genie replies above it
                ours = (
                    message.content == text
                    and message.genie_run_id is not None
                    and message.genie_run_id not in self.known_runs
                    and (floor is None or created is not None)
                )
                logger.debug(
                    "accept check: newest user message %s (run %s, created %s, same text: %s) "
                    "against the send at %s: %s",
                    message.message_id,
                    message.genie_run_id,
                    message.created_at,
                    message.content == text,
                    floor.isoformat() if floor else "?",
                    "ours" if ours else "not ours",
                )
                return message.genie_run_id if ours else None
            if page.cursor is None or page.cursor == cursor:
                return None
            cursor = page.cursor
        return None

    async def open_send(
        self, text: str, file_id: str | None, idempotency_key: str
    ) -> aiohttp.ClientResponse:
        return await self._client._core.open_event_stream(
            "POST",
            f"{self._path}/messages",
            credentials=self._client._credentials,
            json=_message_body(text, file_id, stream=True),
            idempotency_key=idempotency_key,
        )

    async def open_run(self, run_id: str, last_event_id: str | None) -> aiohttp.ClientResponse:
        headers = {"Last-Event-ID": last_event_id} if last_event_id else None
        return await self._client._core.open_event_stream(
            "GET",
            f"{self._path}/genie-runs/{segment(run_id, 'genie_run_id')}",
            credentials=self._client._credentials,
            headers=headers,
        )

    async def resolve_file(self, file: object) -> str | None:
        if file is None:
            return None
        if isinstance(file, UploadedFile):
            return file.file_id
        if isinstance(file, str):
            if not file:
                raise InvalidRequestError("file must be a non-empty file_id.")
            return file
        return (await self.upload(file)).file_id  # type: ignore[arg-type]

    async def submit_decision(self, call_id: str, decision: Decision) -> None:
        """Post a skill-confirmation decision (``skill_approval/{call_id}``)."""
        body: dict[str, str] = {"resolution": "approved"}
        if isinstance(decision, Reject):
            body = {"resolution": "rejected"}
            if decision.reason:
                body["rejection_reason"] = decision.reason
        await self._client._core.request(
            "POST",
            f"{self._path}/skill_approval/{segment(call_id, 'call_id')}",
            credentials=self._client._credentials,
            json=body,
            # A 409 on a retry means the earlier attempt got through but its answer was lost.
            accept_status=lambda error, attempt: error.status == 409 and attempt > 1,
        )

    async def connection_link(self, attempt_id: str) -> RuntimeConnectionLink:
        return await self._client.runtime_connection_link(attempt_id)

    async def reject_connection(self, attempt_id: str, reason: str | None = None) -> None:
        await self._client.reject_runtime_connection(attempt_id, reason)

    def secrets(self) -> tuple[str, ...]:
        """The credentials' secrets, to scrub from anything taken from a response."""
        return tuple(self._client._credentials.secrets())

    def track(self, stream: EventStream) -> None:
        self._client._shared.streams.add(stream)

    def untrack(self, stream: EventStream) -> None:
        self._client._shared.streams.discard(stream)

    # --- REST calls ------------------------------------------------------------------------

    async def info(self) -> ConversationInfo:
        """The conversation's state, topic and last event.

        When ``topic`` is still the numeric placeholder, ``display_topic`` falls back to the
        first user message, as the troubleshooting guide advises.
        """
        response = await self._client._core.request(
            "GET", self._path, credentials=self._client._credentials
        )
        info = parse_model(
            response,
            ConversationInfo,
            expected=("conversation_id", "state", "topic"),
            defaults={"conversation_id": self.conversation_id},
            what="conversation",
        )
        display = None if info.topic is None else str(info.topic)
        if info.topic_is_placeholder:
            display = None
            async for message in self.messages():
                if message.source == "user":
                    display = message.content
                    break
        return _replace(info, display_topic=display)

    async def approve_skill(self, call_id: str) -> None:
        """Approve a paused skill outside a stream (e.g. after a reload)."""
        await self.submit_decision(call_id, Approve())

    async def reject_skill(self, call_id: str, reason: str | None = None) -> None:
        """Reject a paused skill outside a stream."""
        await self.submit_decision(call_id, Reject(reason))

    async def message_page(
        self, *, limit: int = C.DEFAULT_PAGE_LIMIT, cursor: str | None = None
    ) -> Page[Message]:
        """One page of the history, newest first, as the API returns it."""
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await self._client._core.request(
            "GET", f"{self._path}/messages", credentials=self._client._credentials, params=params
        )
        return parse_page(response, Message, "messages", what="messages")

    async def messages(
        self, *, newest_first: bool = False, page_size: int = C.DEFAULT_PAGE_LIMIT
    ) -> AsyncIterator[Message]:
        """The whole history, oldest first (all pages are read, then reversed), or newest
        first page by page. De-duplicated by ``message_id``."""
        seen: set[str] = set()
        collected: list[Message] = []
        cursors: set[str] = set()
        cursor: str | None = None
        for _ in range(C.MAX_PAGES):
            page = await self.message_page(limit=page_size, cursor=cursor)
            added = 0
            for message in page.items:
                if message.message_id in seen:
                    continue
                seen.add(message.message_id)
                added += 1
                if newest_first:
                    yield message
                else:
                    collected.append(message)
            # A repeated cursor (a cycle) or a page with nothing new means the server loops.
            if page.cursor is None or page.cursor in cursors or not added:
                break
            cursors.add(page.cursor)
            cursor = page.cursor
        for message in reversed(collected):
            yield message

    async def event_page(self, *, since: str | None, limit: int = C.EVENTS_PAGE_LIMIT) -> EventPage:
        """One page of persisted events since ``since`` (RFC 3339, inclusive)."""
        params: dict[str, str | int] = {"conversation_id": self.conversation_id, "limit": limit}
        if since is not None:
            params["since_created_at"] = since
        response = await self._client._core.request(
            "GET",
            f"{self._client._prefix}/conversations/events",
            credentials=self._client._credentials,
            params=params,
        )
        return parse_event_page(response)

    async def events(
        self, *, since: str | dt.datetime | None = None, page_size: int = C.EVENTS_PAGE_LIMIT
    ) -> AsyncIterator[GenieEvent]:
        """Persisted events (kept 24 h), oldest first, every page, de-duplicated by id.

        ``since`` defaults to 24 hours ago, the whole retention window.
        """
        if since is None:
            since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(
                seconds=C.EVENT_RETENTION_SECONDS
            )
        cursor = format_timestamp(since) if isinstance(since, dt.datetime) else since
        seen: set[object] = set()
        for _ in range(C.MAX_PAGES):
            page = await self.event_page(since=cursor, limit=page_size)
            fresh = []
            for raw in page.events:
                key = raw.get("event_id") or (raw.get("genie_run_id"), raw.get("seq_num"))
                if key not in seen:
                    seen.add(key)
                    fresh.append(raw)
            fresh.sort(key=sort_key)
            for raw in fresh:
                yield event_from_object(raw)
            following = page.next_since_created_at
            if following is None or following == cursor or not fresh:
                break
            cursor = following

    async def timeline(self) -> list[GenieEvent | Message]:
        """The conversation rebuilt after a reload: persisted events merged with the message
        history (user messages, and replies no event carries, such as a turn resumed after a
        runtime-connection pause), de-duplicated by ``message_id``, oldest first."""
        events = [event async for event in self.events()]
        covered = {e.message_id for e in events if isinstance(e, AgentMessage) and e.message_id}
        window = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=C.EVENT_RETENTION_SECONDS)
        merged: list[GenieEvent | Message] = list(events)
        async for message in self.messages():
            if message.message_id in covered:
                continue
            created = parse_timestamp(message.created_at)
            if message.source == "user" or created is None or created >= window:
                merged.append(message)
        earliest = dt.datetime.min.replace(tzinfo=dt.timezone.utc)

        def when(item: GenieEvent | Message) -> tuple[dt.datetime, int]:
            # A user message sorts before the events its run emits at the same instant.
            moment = parse_timestamp(item.created_at) or earliest
            return moment, 0 if isinstance(item, Message) else 1

        merged.sort(key=when)
        return merged

    async def upload(
        self,
        file: FileInput,
        *,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> UploadedFile:
        """Upload a file (at most 20 MB) to the conversation; pass the result to ``send``.

        Larger files are refused before anything is sent.
        """
        if isinstance(file, (bytes, bytearray, memoryview)):
            data, name = _read_upload(file)
        else:
            # Up to 20 MB from a disk or a file object: read it off the event loop.
            data, name = await asyncio.to_thread(_read_upload, file)
        name = filename or name
        ctype = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"

        def form() -> aiohttp.FormData:
            # Built per attempt: a FormData body can be sent only once.
            payload = aiohttp.FormData()
            # A file object, not bytes: aiohttp streams it instead of blocking the loop.
            payload.add_field("file", io.BytesIO(data), filename=name, content_type=ctype)
            return payload

        response = await self._client._core.request(
            "POST", f"{self._path}/upload", credentials=self._client._credentials, form=form
        )
        return parse_model(
            response,
            UploadedFile,
            expected=("file_id",),
            defaults={"filename": name, "size": len(data)},
            what="upload",
        )


def _check_message(text: object, *, has_file: bool) -> None:
    if not isinstance(text, str):
        raise InvalidRequestError(f"The message must be a str, not {type(text).__name__}.")
    if len(text) > C.MAX_MESSAGE_CHARS:
        raise MessageTooLongError(
            f"The message has {len(text):,} characters; the API accepts at most "
            f"{C.MAX_MESSAGE_CHARS:,}.",
            hint="Split it, or upload the long part as a file and pass file=.",
        )
    if not text.strip() and not has_file:
        raise InvalidRequestError("The message is empty.")


def _message_body(text: str, file_id: str | None, *, stream: bool) -> dict[str, Any]:
    # `stream` is always sent: its default when omitted is undocumented (reference §4.6).
    body: dict[str, Any] = {"message": text, "stream": stream}
    if file_id:
        body["file_id"] = file_id
    return body


def _read_upload(file: FileInput) -> tuple[bytes, str]:
    """The bytes to upload and a file name, refusing anything over the 20 MB limit."""
    limit = C.MAX_UPLOAD_BYTES
    if isinstance(file, (bytes, bytearray, memoryview)):
        data = bytes(file)
        name = "upload.bin"
    elif isinstance(file, (str, os.PathLike)):
        path = os.fspath(file)
        size = os.stat(path).st_size
        if size > limit:
            raise _too_large(size)
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
        name = os.path.basename(path) or "upload.bin"
    elif isinstance(file, (io.IOBase,)) or hasattr(file, "read"):
        data = file.read(limit + 1)
        if not isinstance(data, bytes):
            raise InvalidRequestError("The file object must be opened in binary mode ('rb').")
        raw_name = getattr(file, "name", None)
        name = os.path.basename(raw_name) if isinstance(raw_name, str) else "upload.bin"
    else:
        raise InvalidRequestError(
            f"Cannot upload a {type(file).__name__}: pass a path, bytes or a binary file object."
        )
    if len(data) > limit:
        raise _too_large(len(data))
    return data, name


def _too_large(size: int) -> FileTooLargeError:
    return FileTooLargeError(
        f"The file has {size:,} bytes; uploads are limited to {C.MAX_UPLOAD_BYTES:,} (20 MB). "
        "Nothing was sent.",
        hint="Reduce or split the file.",
    )


def _send_floor(date: str | None, started: float | None, sent_at: str | None) -> dt.datetime | None:
    """When the send began, on the server's clock if possible (see ``find_accepted_run``)."""
    server_now = _http_date(date)
    if server_now is not None and started is not None:
        elapsed = dt.timedelta(seconds=time.monotonic() - started)
        return server_now - elapsed - _DATE_RESOLUTION  # Date has one-second resolution
    sent = parse_timestamp(sent_at)
    return sent - _CLOCK_SKEW if sent else None


def _http_date(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo is not None else None


def _now() -> str:
    return format_timestamp(dt.datetime.now(dt.timezone.utc))


def _replace(info: ConversationInfo, **changes: Any) -> ConversationInfo:
    return msgspec.structs.replace(info, **changes)
