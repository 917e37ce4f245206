"""``EventStream``: one turn's events as an async iterator, with pauses and recovery.

The stream does the I/O; :class:`~genie_async._turn.TurnState` decides what each event
means. Procedures (reference §9):

A. ``skill.confirmation_required``: deliver it, get a decision (hook, or the consumer via
   :meth:`EventStream.approve` / :meth:`EventStream.reject`, fail closed after
   ``Timeouts.decision``), post it once, keep reading the same stream.
B. A drop (transport error, EOF before ``processing.finished``, ``system.stream_interrupted``):
   wait, reconnect to the run with ``Last-Event-ID``; after ``reconnect_attempts`` failures,
   replay ``/conversations/events`` (all pages first), then poll until the turn ends.
C. ``runtime_connection.auth_required``: hand the link to the hook, let the original stream
   end, poll the link until ``authorized``, then read the resumed reply (a new run) from the
   message history, de-duplicated by ``message_id``.
E. A drop before any event: find the message in the history and follow its run; never
   re-POST it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
import types
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, cast

import aiohttp
import msgspec

from . import _constants as C
from . import _hints
from ._config import RetryPolicy, Timeouts
from ._hooks import (
    Approve,
    AuthHook,
    AuthRequest,
    ConfirmationHook,
    Decision,
    DecisionRecord,
    Decline,
    Reject,
)
from ._http import TRANSPORT_ERRORS, release_response, request_id_of, to_genie_error
from ._turn import Action, StreamCursor, TurnState, format_timestamp, parse_timestamp, sort_key
from .errors import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APIStatusError,
    AuthPauseTimeoutError,
    ConflictError,
    EventsExpiredError,
    EventTooLargeError,
    GenieError,
    HookError,
    MessageNotConfirmedError,
    NotFoundError,
    RecoveryError,
    ServerError,
    StreamClosedError,
    StreamError,
    StreamStalledError,
    UsageError,
)
from .events import (
    AgentMessage,
    GenieEvent,
    RuntimeConnectionAuthRequired,
    SkillConfirmationRequired,
    decode_event,
    event_from_object,
)
from .sse import SSEDecoder

if TYPE_CHECKING:
    from ._models import ConversationInfo, EventPage, Message, Page, RuntimeConnectionLink

__all__ = ["EventStream", "Outcome"]

logger = logging.getLogger("genie_async")

T = TypeVar("T")

Outcome = Literal[
    "completed",
    "connection_declined",
    "connection_rejected",
    "connection_expired",
    "connection_failed",
]

_SILENT = frozenset({Action.KEEPALIVE, Action.DUPLICATE, Action.FOREIGN})
_FATAL_RECONNECT_STATUSES = frozenset({401, 403})
# How far before our own send time persisted events are fetched when nothing was received
# yet: client and server clocks disagree; events of other runs are filtered out anyway.
_CLOCK_SKEW = dt.timedelta(minutes=5)


class TurnAPI(Protocol):
    """The calls a stream makes; implemented by :class:`~genie_async.Conversation`."""

    conversation_id: str

    @property
    def known_runs(self) -> set[str]: ...

    def note_unresolved(self, text: str) -> None: ...

    @property
    def timeouts(self) -> Timeouts: ...

    @property
    def retry(self) -> RetryPolicy: ...

    @property
    def max_event_bytes(self) -> int: ...

    @property
    def host(self) -> str: ...

    async def post_message(
        self,
        text: str,
        sent_at: str,
        *,
        post: Callable[[str], Awaitable[T]],
        attach: Callable[[str], Awaitable[T]],
        retry: RetryPolicy | None = None,
    ) -> T: ...

    async def find_accepted_run(
        self, text: str | None, sent_at: str | None, *, started: float | None = None
    ) -> str | None: ...

    async def open_send(
        self, text: str, file_id: str | None, idempotency_key: str
    ) -> aiohttp.ClientResponse: ...

    async def open_run(self, run_id: str, last_event_id: str | None) -> aiohttp.ClientResponse: ...

    async def resolve_file(self, file: object) -> str | None: ...

    async def info(self) -> ConversationInfo: ...

    async def message_page(self, *, limit: int, cursor: str | None = None) -> Page[Message]: ...

    async def event_page(self, *, since: str | None, limit: int) -> EventPage: ...

    async def submit_decision(self, call_id: str, decision: Decision) -> None: ...

    async def connection_link(self, attempt_id: str) -> RuntimeConnectionLink: ...

    async def reject_connection(self, attempt_id: str, reason: str | None = None) -> None: ...

    def secrets(self) -> tuple[str, ...]: ...

    def track(self, stream: EventStream) -> None: ...

    def untrack(self, stream: EventStream) -> None: ...


class _HookTimeoutError(Exception):
    """A hook did not answer in time (kept apart from any TimeoutError the hook raises)."""


class _SendRequest:
    __slots__ = ("file", "text")

    def __init__(self, text: str, file: object) -> None:
        self.text = text
        self.file = file


class _Budget:
    """Backoff and wall-clock budget shared by the reconnects and replays after a drop."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.started: float | None = None
        self.waits = 0
        self.last_error: GenieError | None = None

    def reset(self) -> None:
        self.started = None
        self.waits = 0

    def next_wait(self, hint: float | None = None, *, cap: float | None = None) -> float:
        policy = self.policy
        if self.started is None:
            self.started = policy.clock()
        self.waits += 1
        wait = hint if hint is not None else policy.wait_for(self.waits, None)
        if cap is not None:
            wait = min(wait, cap)
        if policy.clock() - self.started + wait > policy.wait_budget:
            last = self.last_error
            raise RecoveryError(
                f"Gave up recovering the stream after {self.waits - 1} attempts "
                f"({policy.wait_budget:g} s retry budget)"
                + (f"; the last failure: {last.message}" if last else "."),
                hint="The service kept failing; stream.cursor can resume the turn later.",
                request_id=last.request_id if last else None,
            ) from last
        return wait


async def unless_closed(awaitable: Awaitable[T], closed: asyncio.Event, *, what: str) -> T:
    """``awaitable``'s result, unless ``closed`` is set first (then StreamClosedError).

    An async generator cannot be closed while it runs, so a close from another task sets
    ``closed`` and every await of the generator races it. The awaitable runs in its own task,
    cancelled and awaited on every path; a cancellation of the caller propagates untouched.
    """
    if closed.is_set():
        if asyncio.iscoroutine(awaitable):
            awaitable.close()  # never started: don't leave an un-awaited coroutine
        raise StreamClosedError(f"The {what} was closed.")
    task = asyncio.ensure_future(awaitable)
    waiter = asyncio.ensure_future(closed.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, waiter):
            if not pending.done():
                pending.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)
    if task.cancelled() or closed.is_set():  # a close wins, even over a result that instant
        raise StreamClosedError(f"The {what} was closed.")
    return task.result()


_EventT = TypeVar("_EventT")
_Self = TypeVar("_Self", bound="TurnIterator[Any]")


class TurnIterator(abc.ABC, Generic[_EventT]):
    """What a consumer holds for one turn, on either backend: an async iterator that is also
    an async context manager, entered once, closed idempotently from any task.

    Subclasses set ``_agen`` (the generator doing the work) and the three flags, and
    implement :meth:`aclose`.
    """

    _agen: types.AsyncGeneratorType[_EventT, None]
    _closed: bool
    _entered: bool
    _finished: bool

    @property
    def closed(self) -> bool:
        return self._closed

    async def until_done(self) -> list[_EventT]:
        """Consume the rest of the turn and return the events delivered by this call."""
        return [event async for event in self]

    def __aiter__(self) -> AsyncIterator[_EventT]:
        if self._finished or self._closed:
            raise StreamClosedError("This stream has ended or was closed; send a new turn.")
        return self

    def __anext__(self) -> Awaitable[_EventT]:
        # A plain method (no coroutine per event). Once closed, by this task or another,
        # nothing more is handed over: the reader learns why instead of the loop just ending.
        if self._closed:
            raise StreamClosedError("This stream was closed.")
        return self._agen.__anext__()

    async def __aenter__(self: _Self) -> _Self:
        if self._entered:
            raise UsageError("This stream was already entered.")
        self._entered = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop the turn and release what it holds. Idempotent."""


class EventStream(TurnIterator[GenieEvent]):
    """One turn's events. Use it as ``async with conversation.send(...) as stream:``.

    Iterating yields typed events (:mod:`genie_async.events`) exactly once each and in
    order: keep-alives are filtered, drops are recovered, the pauses are handled by the
    hooks. :meth:`aclose` (alias :meth:`close`) may be called at any time, from any task,
    any number of times.

    A plain ``async for`` (without ``async with``) releases the connection when the turn
    ends, but no iterator can notice a ``break``: after breaking out early, call
    :meth:`aclose`, or the connection stays open until garbage collection. ``async with``
    (or ``contextlib.aclosing``) makes that impossible to forget.

    Closing while a skill confirmation waits for a decision leaves it pending on the
    server (so another process can take over from :attr:`cursor`); decide it with
    ``Conversation.approve_skill`` / ``reject_skill`` or resume the turn.
    """

    def __init__(
        self,
        api: TurnAPI,
        state: TurnState,
        *,
        send: _SendRequest | None,
        on_skill_confirmation: ConfirmationHook | None,
        on_auth_required: AuthHook | None,
    ) -> None:
        self._api = api
        self._state = state
        self._send = send
        self._confirm_hook = on_skill_confirmation
        self._auth_hook = on_auth_required
        self._timeouts = api.timeouts
        self._policy = api.retry
        self._agen = cast("types.AsyncGeneratorType[GenieEvent, None]", self._run())
        self._entered = False
        self._started = False
        self._finished = False
        self._closed = False
        self._closed_event = asyncio.Event()
        self._response: aiohttp.ClientResponse | None = None
        self._request_id: str | None = None
        self._decisions: dict[str, DecisionRecord] = {}
        self._submitting: set[str] = set()
        self._awaiting_consumer: dict[str, SkillConfirmationRequired] = {}
        self._stall_paused_for: set[str] = set()  # confirmations the stall clock waits on
        self._background: set[asyncio.Task[None]] = set()
        self._background_error: BaseException | None = None
        self._declined: str | None = None
        self._outcome: Outcome | None = None
        # Stall watchdog: one timer, re-armed lazily, so progress costs one float store.
        self._watchdog: asyncio.TimerHandle | None = None
        self._last_progress = 0.0
        self._pauses = 0
        self._stalled = False
        self._interrupt_wait: float | None = None
        self._send_started: float | None = None  # time.monotonic() when the send began
        # The stall timer refers to the stream weakly: an abandoned stream can be collected.
        self._weak: weakref.ref[EventStream] = weakref.ref(self)
        self._recovering = send is None  # a resumed turn starts by recovering
        self._accepted = False  # the server took the message (the send returned a stream)
        api.track(self)

    # --- public surface -------------------------------------------------------------------

    @property
    def conversation_id(self) -> str:
        return self._state.conversation_id

    @property
    def genie_run_id(self) -> str | None:
        """The run of this turn, once known."""
        return self._state.genie_run_id

    @property
    def request_id(self) -> str | None:
        """``x-request-id`` of the request that produced the current (or last) connection."""
        return self._request_id

    @property
    def cursor(self) -> StreamCursor:
        """A serialisable checkpoint: ``Conversation.resume(cursor)`` continues from here."""
        return self._state.cursor()

    @property
    def final_text(self) -> str | None:
        """The text of the last genie message so far (the final answer once the turn ended)."""
        return self._state.final_text

    @property
    def outcome(self) -> Outcome | None:
        """How the turn ended, once it has: ``completed``, or a runtime-connection outcome."""
        return self._outcome

    @property
    def decisions(self) -> Mapping[str, DecisionRecord]:
        """Every confirmation decided by this stream, by ``call_id``."""
        return dict(self._decisions)

    @property
    def pending_confirmations(self) -> list[SkillConfirmationRequired]:
        """Confirmations waiting for :meth:`approve` / :meth:`reject` (no hook given)."""
        return list(self._awaiting_consumer.values())

    async def approve(self, call_id: str | None = None) -> DecisionRecord:
        """Approve a pending confirmation (the only one when ``call_id`` is omitted).

        Returns the decision recorded for the call: check ``resolution`` — if the pause was
        already decided (by the timeout, say), that earlier decision is returned unchanged.
        """
        return await self._consumer_decides(call_id, Approve())

    async def reject(
        self, reason: str | None = None, *, call_id: str | None = None
    ) -> DecisionRecord:
        """Reject a pending confirmation (the only one when ``call_id`` is omitted).

        Returns the decision recorded for the call, as :meth:`approve` does.
        """
        return await self._consumer_decides(call_id, Reject(reason))

    async def decline_connection(self, reason: str | None = None) -> None:
        """Decline the pending runtime connection; the turn then ends."""
        pause = self._state.auth_pause
        if pause is None or pause.runtime_connection_attempt_id is None:
            raise UsageError("No runtime-connection pause with an attempt id is pending.")
        await self._api.reject_connection(pause.runtime_connection_attempt_id, reason)
        self._declined = reason or ""

    async def aclose(self) -> None:
        """Release the connection and stop the turn's background work. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._closed_event.set()
        self._disarm_watchdog()
        response, self._response = self._response, None
        release_response(response)
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if not self._agen.ag_running:
            # Runs the generator's finally blocks now, never at garbage collection.
            await self._agen.aclose()
        self._api.untrack(self)

    close = aclose

    def __repr__(self) -> str:
        return (
            f"<EventStream conversation={self.conversation_id!r} run={self.genie_run_id!r} "
            f"delivered={self._state.delivered} closed={self._closed}>"
        )

    # --- the turn ----------------------------------------------------------------------------

    async def _run(self) -> AsyncGenerator[GenieEvent, None]:
        state = self._state
        policy = self._policy
        commit = state.commit
        try:
            response = await self._open_initial()
            pending = state.pending_confirmation
            if pending is not None:
                # Resumed from a cursor taken while a confirmation waited: ask again (§9.5).
                yield await self._before_delivery(pending, Action.CONFIRMATION)
                await self._after_pause_event(pending, Action.CONFIRMATION)
            budget = _Budget(policy)
            # Resuming or attaching: the first connection is a plain connect, not a retry
            # after a failure, so it does not wait a backoff step first.
            connect_now = self._send is None
            failed_reconnects = 0  # consecutive reconnects that delivered nothing
            reconnect_refused = False  # the endpoint will not serve this run: replay only
            idle_polls = 0
            while True:
                retry_after: float | None = None
                if response is not None:
                    delivered_before = state.delivered
                    # _read yields one batch per chunk (one generator hop per chunk, not per
                    # event) and returns right after the batch holding processing.finished.
                    async with contextlib.aclosing(self._read(response)) as live:
                        async for batch in live:
                            for event in batch:
                                commit(event)  # the cursor covers what the consumer received
                                yield event
                    retry_after = self._interrupt_wait
                    if state.delivered != delivered_before:
                        budget.reset()
                        failed_reconnects = 0
                        self._recovering = False
                    response = None
                if state.finished:
                    self._outcome = "completed"
                    return
                if state.auth_pause is not None:
                    async with contextlib.aclosing(self._complete_auth_pause()) as resumed:
                        async for event in resumed:
                            yield event
                    return
                self._recovering = True  # from here until a new connection delivers
                if state.genie_run_id is None:
                    await self._find_accepted_run()
                if not reconnect_refused and failed_reconnects < policy.reconnect_attempts:
                    failed_reconnects += 1
                    if connect_now:
                        connect_now = False
                    else:
                        await self._sleep(budget.next_wait(retry_after))
                    response, reconnect_refused = await self._try_reconnect(budget)
                    continue
                # Reconnecting failed: replay the persisted events (reference §9.3 step 4).
                delivered_before = state.delivered
                async with contextlib.aclosing(self._replay_persisted()) as replayed:
                    async for event in replayed:
                        commit(event)
                        yield event
                if state.is_finished():  # a method: the replay changed it behind mypy's back
                    self._outcome = "completed"
                    return
                if state.is_parked():  # the replay reached a runtime-connection pause
                    continue
                if state.delivered != delivered_before:
                    # Progress: a long turn is never cut short by the budget, and (unless
                    # refused) the live stream is worth trying again, e.g. after a decision.
                    budget.reset()
                    failed_reconnects = 0
                    idle_polls = 0
                    if not reconnect_refused:
                        continue
                if (await self._unless_closed(self._api.info())).is_idle:
                    idle_polls += 1
                    if idle_polls >= 2:
                        # Idle, yet no processing.finished was persisted: take the genie's
                        # reply from the history, the durable source of truth (§4.8).
                        async with contextlib.aclosing(self._history_replies()) as replies:
                            async for event in replies:
                                yield event
                        logger.warning(
                            "turn %s ended without a persisted processing.finished; "
                            "completed it from the message history",
                            state.genie_run_id,
                        )
                        state.record_end()
                        self._outcome = "completed"
                        return
                await self._sleep(budget.next_wait(cap=C.DEFAULT_POLL_MAX))
        except GenieError as exc:
            if self._closed and not isinstance(exc, StreamClosedError):
                # Closed (the stream or the whole client) while a call was in flight: that,
                # not the call's own failure (a closed session, say), is what happened.
                raise StreamClosedError("The stream was closed.") from exc
            if isinstance(exc, StreamError):
                if exc.cursor is None:
                    exc.cursor = self._state.cursor()
                raise
            if not isinstance(exc, (ServerError, APIConnectionError)) or not self._recovering:
                # Not while recovering a drop (the send itself, a decision, an auth pause):
                # the call's own error says best what failed.
                raise
            raise RecoveryError(
                f"The stream dropped and could not be recovered: {exc.message}",
                hint="The service kept failing; stream.cursor resumes the turn later "
                "(Conversation.resume).",
                request_id=exc.request_id,
                cursor=self._state.cursor(),
            ) from exc
        finally:
            self._finished = True
            self._disarm_watchdog()
            release_response(self._response)
            self._response = None
            for task in list(self._background):
                task.cancel()
            if state.genie_run_id is not None:
                self._api.known_runs.add(state.genie_run_id)
            elif self._accepted and self._send is not None:
                # Accepted, yet ended before its first event: the next send resolves the run
                # so that an identical re-send is never mistaken for this message.
                self._api.note_unresolved(self._send.text)

    async def _read(
        self, response: aiohttp.ClientResponse
    ) -> AsyncGenerator[list[GenieEvent], None]:
        """Deliver one connection's events until it ends, drops or the turn finishes.

        Yields the events of each chunk as one list. A pause event ends its batch: the
        generator resumes (and handles the pause) only after the consumer has received it.
        Sets ``_interrupt_wait`` when the server interrupted the stream.
        """
        state = self._state
        self._interrupt_wait = None
        if self._closed:  # closed while the request was in flight
            release_response(response)
            raise StreamClosedError("The stream was closed.")
        self._response = response
        self._request_id = request_id_of(response.headers, self._api.secrets())
        self._arm_watchdog()
        try:
            content = response.content
            decoder = SSEDecoder(max_event_bytes=self._api.max_event_bytes)
            observe = state.observe
            deliver = Action.DELIVER
            loop = asyncio.get_running_loop()
            while True:
                chunk = await content.readany()
                if self._is_closed():  # closed while we read: nothing more is handed over
                    break
                if not chunk:
                    break
                if self._background_error is not None:
                    raise self._background_error
                delivered_before = state.delivered
                interrupted = False
                too_large: EventTooLargeError | None = None
                try:
                    received = decoder.feed(chunk)
                except EventTooLargeError as exc:
                    received, too_large = exc.completed, exc  # deliver what came before it
                batch: list[GenieEvent] = []
                for sse in received:
                    if not sse.data:
                        continue  # `data:` with nothing after it: never JSON-decode empty data
                    event = decode_event(sse.data, sse.event)
                    action = observe(event)
                    if action is deliver:
                        batch.append(event)
                    elif action in _SILENT:
                        continue
                    elif action is Action.INTERRUPTED:
                        self._interrupt_wait = _retry_after_seconds(event)
                        interrupted = True
                        break
                    else:
                        if batch:  # hand over what came before the pause before any I/O
                            yield batch
                            batch = []
                        event = await self._before_delivery(event, action)
                        yield [event]
                        if action is Action.FINISHED:
                            return
                        await self._after_pause_event(event, action)
                if batch:
                    yield batch
                if state.delivered != delivered_before:
                    # Set after the consumer handed control back: holding events is no stall.
                    self._last_progress = loop.time()
                if too_large is not None:
                    too_large.request_id = self._request_id
                    raise too_large
                if interrupted:
                    break
        except TRANSPORT_ERRORS as exc:
            drop = to_genie_error(
                exc,
                method="GET",
                path="(event stream)",
                host=self._api.host,
                request_id=self._request_id,
                secrets=self._api.secrets(),
            )
            logger.debug("stream dropped: %s", drop)
        finally:
            self._disarm_watchdog()
            self._response = None
            release_response(response)
        # Only on the paths that end this connection normally or by a drop, never while a
        # cancellation or generator close is propagating.
        self._raise_if_stopped()

    async def _open_initial(self) -> aiohttp.ClientResponse | None:
        """The POST that sends the message, or ``None`` when resuming (recover first)."""
        if self._send is None:
            return None
        spec = self._send
        file_id = await self._api.resolve_file(spec.file)
        state = self._state
        state.sent_at = sent_at = format_timestamp(dt.datetime.now(dt.timezone.utc))
        self._send_started = time.monotonic()

        async def post(key: str) -> aiohttp.ClientResponse | None:
            return await self._api.open_send(spec.text, file_id, key)

        async def attach(run: str) -> aiohttp.ClientResponse | None:
            logger.debug("the message was accepted despite the error; attaching to %s", run)
            state.genie_run_id = run  # accepted: from here on the turn is recovered, not re-sent
            try:
                return await self._api.open_run(run, None)
            except APIStatusError as exc:
                if exc.status in _FATAL_RECONNECT_STATUSES:
                    raise
                logger.debug("attaching failed with %d; recovering the run", exc.status)
                return None
            except APIConnectionError as exc:
                logger.debug("attaching failed (%s); recovering the run", exc)
                return None

        response: aiohttp.ClientResponse | None = await self._api.post_message(
            spec.text,
            sent_at,
            post=post,
            attach=attach,
            retry=dataclasses.replace(self._policy, sleep=self._sleep),
        )
        self._accepted = True
        if self._closed:
            release_response(response)
            raise StreamClosedError("The stream was closed while the message was being sent.")
        return response  # None when the accepted run could not be attached: recover it

    async def _find_accepted_run(self) -> None:
        """Procedure E: dropped before any event. Follow the message's run, or give up."""
        budget = _Budget(self._policy)
        idle_without_message = 0
        while True:
            run = await self._unless_closed(
                self._api.find_accepted_run(
                    self._state.message, self._state.sent_at, started=self._send_started
                )
            )
            if run is not None:
                self._state.genie_run_id = run
                return
            info = await self._unless_closed(self._api.info())
            if info.is_idle:
                idle_without_message += 1
                if idle_without_message >= 2:
                    raise MessageNotConfirmedError(
                        "The stream dropped before the first event and the message is not in "
                        "the conversation's history.",
                        hint=_hints.NOT_CONFIRMED,
                        request_id=info.request_id,
                    )
            await self._sleep(
                budget.next_wait(cap=C.DEFAULT_POLL_MAX if idle_without_message else None)
            )

    async def _try_reconnect(self, budget: _Budget) -> tuple[aiohttp.ClientResponse | None, bool]:
        """One reconnect to the run with ``Last-Event-ID``: (response, refused).

        ``refused`` means a 4xx other than 401/403: the reconnect endpoint will not serve
        this run, so go straight to the persisted events. 401/403 are fatal.
        """
        state = self._state
        assert state.genie_run_id is not None
        try:
            response = await self._unless_closed(
                self._api.open_run(state.genie_run_id, state.last_event_id)
            )
            return response, False
        except APIStatusError as exc:
            if exc.status in _FATAL_RECONNECT_STATUSES:
                raise
            logger.debug("reconnect failed with %d", exc.status)
            budget.last_error = exc
            return None, exc.status < 500
        except APIConnectionError as exc:
            logger.debug("reconnect failed: %s", exc)
            budget.last_error = exc
            return None, False
        except APIResponseError as exc:
            # A 200 that is not an event stream (a proxy's page, say): replay instead.
            logger.debug("reconnect answered with something else: %s", exc)
            budget.last_error = exc
            return None, True

    async def _replay_persisted(self) -> AsyncGenerator[GenieEvent, None]:
        """One pass over the persisted events, delivered like live ones (§9.3 step 4)."""
        state = self._state
        for replayed in await self._persisted_events():
            action = state.observe(replayed)
            if action in _SILENT or action is Action.INTERRUPTED:
                continue
            event = await self._before_delivery(replayed, action)
            yield event
            if action is Action.FINISHED:
                return
            await self._after_pause_event(event, action)

    async def _persisted_events(self) -> list[GenieEvent]:
        """All pages of ``/conversations/events`` for this run, read before any is used."""
        state = self._state
        since = state.last_created_at
        if since is None:
            sent = parse_timestamp(state.sent_at)
            since = format_timestamp(sent - _CLOCK_SKEW) if sent else None
        moment = parse_timestamp(since)
        if (
            moment is not None
            and (dt.datetime.now(dt.timezone.utc) - moment).total_seconds()
            > C.EVENT_RETENTION_SECONDS
        ):
            raise EventsExpiredError(
                f"The turn's events since {since} are past the 24-hour retention window.",
                hint=_hints.RETENTION,
            )
        collected: dict[object, dict[str, Any]] = {}
        cursor = since
        for _ in range(C.MAX_PAGES):
            page = await self._unless_closed(
                self._api.event_page(since=cursor, limit=C.EVENTS_PAGE_LIMIT)
            )
            added = 0
            for raw in page.events:
                key: object = raw.get("event_id") or (raw.get("genie_run_id"), raw.get("seq_num"))
                if key not in collected:
                    collected[key] = raw
                    added += 1
            following = page.next_since_created_at
            # Stop when the server says so, or when a page brings nothing new (a loop guard).
            if following is None or added == 0:
                break
            if following == cursor:
                # More than a page of events share one timestamp: since_created_at cannot
                # page past them (an API limit); what is missing will come from the history.
                logger.warning("persisted events stuck at %s; paging cannot advance", cursor)
                break
            cursor = following
        run = state.genie_run_id
        mine = [raw for raw in collected.values() if raw.get("genie_run_id") in (run, None)]
        mine.sort(key=sort_key)
        return [event_from_object(raw) for raw in mine]

    async def _history_replies(self) -> AsyncGenerator[GenieEvent, None]:
        """Genie messages of this turn from the history that no event delivered yet."""
        state = self._state
        sent = parse_timestamp(state.sent_at)
        # Our clock, not the server's: reach back generously; the run id does the filtering.
        since = format_timestamp(sent - _CLOCK_SKEW) if sent else None
        delivered = state.delivered_message_ids()
        for message in await self._recent_messages(since):
            if message.source != "genie" or message.message_id in delivered:
                continue
            if message.genie_run_id not in (state.genie_run_id, None):
                continue
            state.record_history_message(message.message_id, message.content)
            yield _message_event(message, state.conversation_id)

    async def _recent_messages(self, since: str | None) -> list[Message]:
        """History entries created at or after ``since``, oldest first, each once."""
        floor = parse_timestamp(since)
        found: dict[str, Message] = {}
        cursors: set[str] = set()
        cursor: str | None = None
        for _ in range(C.MAX_PAGES):
            page = await self._unless_closed(
                self._api.message_page(limit=C.DEFAULT_PAGE_LIMIT, cursor=cursor)
            )
            reached_floor = False
            added = 0
            for message in page.items:  # newest first
                created = parse_timestamp(message.created_at)
                if floor is not None and created is not None and created < floor:
                    reached_floor = True
                    break
                if message.message_id not in found:
                    found[message.message_id] = message
                    added += 1
            # Stop at the floor, at the end, or when the server loops (a repeated cursor, or
            # a page with nothing new): a misbehaving server cannot keep us paging.
            if reached_floor or floor is None or page.cursor is None or not added:
                break
            if page.cursor in cursors:
                break
            cursors.add(page.cursor)
            cursor = page.cursor
        return list(reversed(found.values()))

    # --- pauses ------------------------------------------------------------------------------

    async def _before_delivery(self, event: GenieEvent, action: Action) -> GenieEvent:
        """Prepare a pause event so the consumer can act on it the moment it arrives."""
        if action is Action.AUTH_PAUSE:
            # Only keep-alives follow until the stream ends: the user, not the genie, is busy.
            self._pause_stall()
            return await self._with_link(event)
        if action is Action.CONFIRMATION and self._confirm_hook is None:
            assert isinstance(event, SkillConfirmationRequired)
            self._awaiting_consumer[event.call_id] = event  # stream.approve() works right away
        return event

    async def _after_pause_event(self, event: GenieEvent, action: Action) -> None:
        if action is Action.CONFIRMATION:
            assert isinstance(event, SkillConfirmationRequired)
            await self._decide(event)
        elif action is Action.AUTH_PAUSE:
            assert isinstance(event, RuntimeConnectionAuthRequired)
            await self._call_auth_hook(event, event.auth_link)

    async def _decide(self, event: SkillConfirmationRequired) -> None:
        call_id = event.call_id
        if call_id in self._state.decided:
            return
        if self._confirm_hook is None:
            # The consumer decides with approve()/reject() (maybe already did, while it held
            # the event); reject if nobody does in time.
            if call_id in self._awaiting_consumer:
                self._stall_paused_for.add(call_id)
                self._pause_stall()
                self._spawn(self._expire_decision(call_id))
            return
        self._pause_stall()
        try:
            try:
                decision: object = await self._bounded(
                    self._confirm_hook(event), self._timeouts.decision
                )
                source: Literal["hook", "timeout"] = "hook"
            except _HookTimeoutError:
                logger.warning(
                    "on_skill_confirmation gave no decision for %s within %g s; rejecting",
                    call_id,
                    self._timeouts.decision,
                )
                decision = Reject(f"No decision within {self._timeouts.decision:g} s.")
                source = "timeout"
            except (asyncio.CancelledError, StreamClosedError):
                raise
            except Exception as exc:
                await self._submit(call_id, Reject("The confirmation hook failed."), "hook_error")
                raise HookError(
                    f"on_skill_confirmation raised {type(exc).__name__} for {call_id}; the "
                    "skill was rejected.",
                    hint="Fix the hook; the rejection was posted so the turn could go on.",
                ) from exc
            if not isinstance(decision, (Approve, Reject)):
                await self._submit(call_id, Reject("Invalid decision."), "hook_error")
                raise HookError(
                    f"on_skill_confirmation returned {decision!r}; expected Approve() or "
                    "Reject(reason). The skill was rejected."
                )
            await self._submit(call_id, decision, source)
        finally:
            self._resume_stall()

    async def _consumer_decides(self, call_id: str | None, decision: Decision) -> DecisionRecord:
        if call_id is None:
            if len(self._awaiting_consumer) != 1:
                raise UsageError(
                    f"{len(self._awaiting_consumer)} confirmations are pending; pass call_id."
                )
            call_id = next(iter(self._awaiting_consumer))
        if call_id in self._submitting:
            raise UsageError(f"A decision for {call_id} is being submitted right now.")
        if call_id not in self._state.decided:
            await self._submit(call_id, decision, "consumer")
        recorded = self._decisions.get(call_id)
        if recorded is not None:
            return recorded
        # Decided before this stream existed (the cursor says so): report what was recorded.
        earlier = self._state.decided[call_id]
        resolution: Literal["approved", "rejected", "already_decided"] = "rejected"
        if earlier == "approved":
            resolution = "approved"
        elif earlier == "already_decided":
            resolution = "already_decided"
        return DecisionRecord(call_id, resolution, None, "consumer")

    async def _expire_decision(self, call_id: str) -> None:
        await asyncio.sleep(self._timeouts.decision)
        if call_id in self._state.decided or call_id in self._submitting:
            return
        logger.warning(
            "no decision for confirmation %s within %g s; rejecting",
            call_id,
            self._timeouts.decision,
        )
        try:
            await self._submit(
                call_id, Reject(f"No decision within {self._timeouts.decision:g} s."), "timeout"
            )
        except GenieError as exc:
            # Surfaced by the reading loop: the turn cannot continue undecided.
            self._background_error = exc

    async def _submit(
        self,
        call_id: str,
        decision: Decision,
        source: Literal["hook", "consumer", "timeout", "hook_error"],
    ) -> None:
        """Post a decision exactly once per ``call_id``, across reconnects."""
        if call_id in self._state.decided or call_id in self._submitting:
            return
        if self._closed:  # closing leaves the pause pending (another process may take over)
            raise StreamClosedError("The stream was closed; the confirmation stays pending.")
        self._submitting.add(call_id)
        resolution: Literal["approved", "rejected", "already_decided"] = (
            "approved" if isinstance(decision, Approve) else "rejected"
        )
        try:
            await self._api.submit_decision(call_id, decision)
        except ConflictError as exc:
            # The call is no longer pending: decided by whoever held the turn's cursor before
            # us (a decision posted just before a crash), or the run moved on. Either way the
            # turn goes on, and its next events show what happened.
            logger.warning(
                "confirmation %s was no longer pending (%s); continuing the turn", call_id, exc
            )
            resolution = "already_decided"
        finally:
            self._submitting.discard(call_id)
        reason = decision.reason if isinstance(decision, Reject) else None
        self._state.record_decision(call_id, resolution)
        self._decisions[call_id] = DecisionRecord(call_id, resolution, reason, source)
        self._awaiting_consumer.pop(call_id, None)
        if call_id in self._stall_paused_for:
            self._stall_paused_for.discard(call_id)
            self._resume_stall()

    async def _with_link(self, event: GenieEvent) -> GenieEvent:
        """Fill ``auth_link`` from the link endpoint when the event carries only the id."""
        if not isinstance(event, RuntimeConnectionAuthRequired) or event.auth_link is not None:
            return event
        attempt = event.runtime_connection_attempt_id
        if attempt is None:
            return event
        try:
            link = await self._unless_closed(self._api.connection_link(attempt))
        except APIError as exc:
            # 404s on some deployments (reference §4.12); any failure just means no link yet:
            # the pause is delivered anyway and the link polling tries again.
            logger.debug("could not fetch the auth link for %s: %s", attempt, exc)
            return event
        if link.auth_link is None:
            return event
        return msgspec.structs.replace(event, auth_link=link.auth_link)

    async def _call_auth_hook(self, event: RuntimeConnectionAuthRequired, link: Any) -> None:
        if self._auth_hook is None:
            return
        request = AuthRequest(
            event=event, link=link, attempt_id=event.runtime_connection_attempt_id
        )
        self._pause_stall()
        try:
            result: object = await self._bounded(self._auth_hook(request), self._timeouts.decision)
        except _HookTimeoutError:
            logger.warning("on_auth_required did not return within %g s", self._timeouts.decision)
            return
        except (asyncio.CancelledError, StreamClosedError):
            raise
        except Exception as exc:
            raise HookError(
                f"on_auth_required raised {type(exc).__name__}.",
                hint="Fix the hook; the turn is still parked and can be resumed from "
                "stream.cursor.",
            ) from exc
        finally:
            self._resume_stall()
        if isinstance(result, Decline) and event.runtime_connection_attempt_id is not None:
            await self._api.reject_connection(event.runtime_connection_attempt_id, result.reason)
            self._declined = result.reason or ""
        elif result is not None and not isinstance(result, Decline):
            raise HookError(f"on_auth_required returned {result!r}; expected None or Decline().")

    async def _complete_auth_pause(self) -> AsyncGenerator[GenieEvent, None]:
        """Procedure C: wait for the user's authorization, then read the resumed reply."""
        state = self._state
        pause = state.auth_pause
        assert pause is not None
        attempt = pause.runtime_connection_attempt_id
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeouts.auth
        self._pause_stall()
        poll = _Budget(
            RetryPolicy(
                wait_initial=C.DEFAULT_POLL_INITIAL,
                wait_max=C.DEFAULT_POLL_MAX,
                wait_budget=self._timeouts.auth,
                clock=self._policy.clock,
                sleep=self._policy.sleep,
                random=self._policy.random,
            )
        )
        last_link = pause.auth_link
        link_endpoint = attempt is not None
        while link_endpoint and self._declined is None:
            assert attempt is not None
            try:
                link = await self._unless_closed(self._api.connection_link(attempt))
            except NotFoundError:
                logger.debug("link endpoint unavailable; waiting on the message history instead")
                link_endpoint = False
                break
            if link.authorized:
                break
            if link.status != "auth_required":
                self._outcome = _link_outcome(link.status)
                return
            if link.auth_link is not None and link.auth_link != last_link:
                last_link = link.auth_link
                await self._call_auth_hook(pause, last_link)
            self._check_auth_deadline(loop, deadline)
            await self._sleep(self._poll_wait(poll))
        if self._declined is not None:
            self._outcome = "connection_declined"
            return
        # The resumed turn is a new run, only in the message history (reference §9.4). Replies
        # delivered before a cursor was taken count: they are skipped, not waited for again.
        seen_any = state.has_history_replies()
        while True:
            # The state is read before the history: if it was idle then, everything the
            # resumed run wrote is in the history read next.
            idle = (await self._unless_closed(self._api.info())).is_idle
            delivered = state.delivered_message_ids()
            fresh = 0
            for message in await self._recent_messages(state.auth_paused_at):
                if message.source != "genie" or message.message_id in delivered:
                    continue
                if message.genie_run_id == state.genie_run_id:
                    continue  # a progress note of the parked run, already streamed or not ours
                state.record_history_message(message.message_id, message.content)
                seen_any = True
                fresh += 1
                yield _message_event(message, state.conversation_id)
            # Idle can also mean "still parked" (a production quirk), so finish only once a
            # reply has come and an idle snapshot is followed by a read with nothing new.
            if seen_any and idle and not fresh:
                state.record_end()
                self._outcome = "completed"
                return
            self._check_auth_deadline(loop, deadline)
            if not fresh:
                await self._sleep(self._poll_wait(poll))

    def _poll_wait(self, budget: _Budget) -> float:
        try:
            return budget.next_wait()
        except RecoveryError:
            return C.DEFAULT_POLL_MAX  # the auth deadline, not the budget, bounds this wait

    def _check_auth_deadline(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        if loop.time() > deadline:
            raise AuthPauseTimeoutError(
                f"The end user did not authorize the connection within {self._timeouts.auth:g} s.",
                hint="Show the link again (the turn is still parked) and resume later from "
                "stream.cursor, or decline it with stream.decline_connection().",
            )

    # --- timers, sleeps and background work ------------------------------------------------

    def _arm_watchdog(self) -> None:
        stall = self._timeouts.stall
        if stall is None:
            return
        loop = asyncio.get_running_loop()
        self._last_progress = loop.time()
        self._disarm_watchdog()
        self._watchdog = loop.call_at(self._last_progress + stall, _check_stall, self._weak)

    def _disarm_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _check_stall(self) -> None:
        stall = self._timeouts.stall
        assert stall is not None
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = self._last_progress + stall
        if self._pauses > 0 or not self._agen.ag_running:
            # Paused, or the consumer holds an event (the generator waits at a yield).
            self._watchdog = loop.call_at(now + stall, _check_stall, self._weak)
            return
        if now < deadline:
            self._watchdog = loop.call_at(deadline, _check_stall, self._weak)
            return
        self._watchdog = None
        self._stalled = True
        logger.debug("no meaningful event for %g s; closing the stream", stall)
        if self._response is not None:
            self._response.close()  # the pending read raises; _raise_if_stopped explains why

    def _pause_stall(self) -> None:
        self._pauses += 1

    def _resume_stall(self) -> None:
        self._pauses = max(self._pauses - 1, 0)
        with contextlib.suppress(RuntimeError):
            self._last_progress = asyncio.get_running_loop().time()

    def _is_closed(self) -> bool:
        """``_closed``, read through a call: another task may set it while we await."""
        return self._closed

    def _raise_if_stopped(self) -> None:
        if self._closed:
            raise StreamClosedError("The stream was closed while it was being read.")
        if self._stalled:
            stall = self._timeouts.stall or 0.0
            raise StreamStalledError(
                f"No event other than keep-alives arrived for {stall:g} s.",
                hint=_hints.STALLED.format(seconds=stall),
                request_id=self._request_id,
            )

    async def _bounded(self, awaitable: Awaitable[T], timeout: float) -> T:
        """Await a hook with a timeout (raising ``_HookTimeoutError``), or until the stream closes.

        The hook runs in its own task; whatever happens (timeout, close, cancellation of the
        caller) that task is cancelled and awaited, and a cancellation of the caller
        propagates untouched.
        """
        task = asyncio.ensure_future(awaitable)
        closed = asyncio.ensure_future(self._closed_event.wait())
        try:
            done, _ = await asyncio.wait(
                {task, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for pending in (task, closed):
                if not pending.done():
                    pending.cancel()
            # return_exceptions: the tasks' own cancellation is collected, not raised; a
            # cancellation of this task while waiting here still propagates.
            await asyncio.gather(task, closed, return_exceptions=True)
        if self._closed:  # close wins, even over a hook that answered in the same instant
            raise StreamClosedError("The stream was closed while a hook was running.")
        if task in done:
            return task.result()
        raise _HookTimeoutError

    async def _unless_closed(self, awaitable: Awaitable[T]) -> T:
        """Await a call made while recovering or paused; a close from another task ends it."""
        return await unless_closed(awaitable, self._closed_event, what="stream")

    async def _sleep(self, seconds: float) -> None:
        """A recovery wait (the policy's injectable sleep) that a close interrupts."""
        if seconds <= 0:
            return
        sleeper = asyncio.ensure_future(self._policy.sleep(seconds))
        closed = asyncio.ensure_future(self._closed_event.wait())
        try:
            await asyncio.wait({sleeper, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, closed):
                task.cancel()
            await asyncio.gather(sleeper, closed, return_exceptions=True)
        self._raise_if_stopped()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _check_stall(stream: weakref.ref[EventStream]) -> None:
    live = stream()
    if live is not None:
        live._check_stall()


def _retry_after_seconds(event: GenieEvent) -> float | None:
    value = getattr(event, "retry_after_ms", None)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value / 1000.0
    return None


def _link_outcome(status: str) -> Outcome:
    if status in ("rejected", "declined"):
        return "connection_rejected"
    if status == "expired":
        return "connection_expired"
    return "connection_failed"


def _message_event(message: Message, conversation_id: str) -> AgentMessage:
    """A history entry as the ``agent.message`` the live stream would have carried."""
    return AgentMessage(
        message=message.content,
        message_id=message.message_id,
        conversation_id=conversation_id,
        genie_run_id=message.genie_run_id,
        created_at=message.created_at,
    )
