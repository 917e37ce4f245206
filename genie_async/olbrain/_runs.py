"""Workflow runs: the handle, the §5.2 state machine, and watching a run by polling E4.

There is no run event stream for ``ak_`` callers (reference §7.1): :meth:`Run.watch` polls
``GET …/runs/{run_id}`` and yields each status change, backing off while nothing changes,
until the run is terminal. Control actions are checked against the documented state machine
before sending; a 409 from the server (the local view was stale) re-reads the run first, as
the seed advises, and never repeats the action.
"""

from __future__ import annotations

import asyncio
import contextlib
import types
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Mapping
from typing import Any, Literal, cast

from .._hints import OLBRAIN_CODE_HINTS
from .._http import Response, segment
from .._stream import unless_closed
from ..errors import (
    APIStatusError,
    ConfigurationError,
    GenieError,
    InvalidRequestError,
    InvalidStateTransitionError,
    StreamClosedError,
)
from . import _constants as OC
from ._api import AgentAPI, encode
from ._models import Approval, ApprovalResult, OutputFile, RunRecord, convert, items_of

__all__ = ["TRANSITIONS", "Run", "RunAction", "RunWatch"]

RunAction = Literal["cancel", "pause", "resume", "retry"]

TRANSITIONS: Mapping[RunAction, tuple[frozenset[str], str]] = {
    "cancel": (frozenset({"queued", "running"}), "cancelled"),
    "pause": (frozenset({"running"}), "paused"),
    "resume": (frozenset({"paused"}), "running"),
    "retry": (frozenset({"failed"}), "queued"),
}
"""The documented run state machine (§5.2): action -> (statuses it is legal from, target)."""

# Statuses the documented machine covers. Others (needs_review, triggered, anything new) are
# not refused locally: the server decides.
_DOCUMENTED = frozenset(
    {"queued", "running", "paused", "succeeded", "failed", "cancelled", "completed", "canceled"}
)
_RESOLUTIONS = frozenset({"approved", "rejected", "modified"})
# What a re-read may show once an action applied: its target, and where the target goes on
# its own (§5.2). Pause and cancel lead only to their targets; a run finishing instead did
# not take them.
_APPLIED: Mapping[RunAction, frozenset[str]] = {
    "cancel": frozenset({"cancelled", "canceled"}),
    "pause": frozenset({"paused"}),
    "resume": frozenset({"running", "needs_review", "succeeded", "failed", "completed"}),
    "retry": frozenset({"queued", "running", "needs_review", "succeeded", "completed"}),
}


def transition_allowed(action: RunAction, status: str) -> bool | None:
    """True or False by the documented machine; None when ``status`` is outside it."""
    if status not in _DOCUMENTED:
        return None
    return status in TRANSITIONS[action][0]


class Run:
    """A handle on one workflow run, holding its last known record.

    ``await run.refresh()`` re-reads it; ``run.watch()`` follows it until it is terminal;
    :meth:`pause`, :meth:`resume`, :meth:`cancel` and :meth:`retry` control it.
    """

    def __init__(self, api: AgentAPI, record: RunRecord) -> None:
        self._api = api
        self._record = record
        self._fetched_at = api.policy.clock()

    @property
    def run_id(self) -> str:
        return self._record.run_id

    @property
    def agent_id(self) -> str:
        return self._api.agent_id

    @property
    def record(self) -> RunRecord:
        """The run as last read (or as the last control action returned it)."""
        return self._record

    @property
    def status(self) -> str:
        """The last known status (a plain string; compare with :class:`RunStatus`)."""
        return self._record.status

    @property
    def terminal(self) -> bool:
        return self._record.terminal

    def __repr__(self) -> str:
        return f"<Run {self.run_id!r} status={self.status!r} agent={self.agent_id!r}>"

    @property
    def _path(self) -> str:
        return f"/runs/{segment(self.run_id, 'run_id')}"

    def _update(self, record: RunRecord) -> RunRecord:
        self._record = record
        self._fetched_at = self._api.policy.clock()
        return record

    async def refresh(self) -> RunRecord:
        """Re-read the run (E4) and return its record."""
        response = await self._api.get(self._path)
        return self._update(convert(response.payload, RunRecord, response, what="run"))

    def watch(
        self,
        *,
        interval: float = OC.RUN_POLL_INITIAL,
        max_interval: float = OC.RUN_POLL_MAX,
        backoff: float = OC.RUN_POLL_FACTOR,
    ) -> RunWatch:
        """Follow the run until it is terminal, yielding its record at each status change.

        Polls E4 every ``interval`` seconds, multiplied by ``backoff`` (up to
        ``max_interval``) while nothing changes and reset by a change. The first record is
        the current one. Transient errors are retried by the client's retry policy; the
        waits use its ``sleep``. Use ``async with run.watch() as changes:`` (or call
        ``aclose()``) when leaving early.
        """
        if not (interval > 0 and max_interval >= interval and backoff >= 1):
            raise ConfigurationError("watch() needs 0 < interval <= max_interval, backoff >= 1")
        return RunWatch(self, interval, max_interval, backoff)

    async def wait(self, **options: float) -> RunRecord:
        """Watch the run until it is terminal and return its final record."""
        async with self.watch(**options) as changes:
            async for _ in changes:
                pass
        return self._record

    # --- control (E5-E8) ---------------------------------------------------------------

    async def pause(self) -> RunRecord:
        """Pause a ``running`` run."""
        return await self._control("pause")

    async def resume(self) -> RunRecord:
        """Resume a ``paused`` run."""
        return await self._control("resume")

    async def cancel(self) -> RunRecord:
        """Cancel a ``queued`` or ``running`` run."""
        return await self._control("cancel")

    async def retry(self) -> RunRecord:
        """Retry a ``failed`` run with the same inputs."""
        return await self._control("retry")

    async def _control(self, action: RunAction) -> RunRecord:
        before = self.status
        if transition_allowed(action, before) is False:
            legal = ", ".join(sorted(TRANSITIONS[action][0]))
            error = InvalidStateTransitionError(
                f"Refused before sending: cannot {action} run {self.run_id} while it is "
                f"{before!r} ({action} needs {legal}).",
                status=409,
                error_code="invalid_state_transition",
                method="POST",
                path=self._api.prefix + self._path + f"/{action}",
                hint=f"Nothing was sent. If the run may have moved on, await run.refresh() "
                f"and decide again; {action} is legal from: {legal}.",
            )
            error.action, error.run_status, error.refused_locally = action, before, True
            raise error
        # One key per logical action, reused by every retry (the seed's body field).
        content = encode({OC.IDEMPOTENCY_FIELD: uuid.uuid4().hex})

        def earlier_attempt_applied(error: APIStatusError, attempt: int) -> bool:
            # A 409 on a retry may mean an earlier attempt got through but its answer was lost;
            # the run is re-read below to tell.
            return error.status == 409 and attempt > 1

        try:
            response = await self._api.post(
                f"{self._path}/{action}", content=content, accept_status=earlier_attempt_applied
            )
        except InvalidStateTransitionError as error:
            # The server's view differs from ours: re-read (never loop on the action).
            with contextlib.suppress(GenieError):
                await self.refresh()
            error.action, error.run_status = action, self.status
            raise
        if response.payload is None and response.status == 409:
            record = await self.refresh()
            if record.status == before or record.status not in _APPLIED[action]:
                refused = InvalidStateTransitionError(
                    f"cannot {action} run {self.run_id} while it is {record.status!r}",
                    status=409,
                    error_code="invalid_state_transition",
                    headers=response.headers,
                    method="POST",
                    path=self._api.prefix + self._path + f"/{action}",
                    request_id=response.request_id,
                    hint=OLBRAIN_CODE_HINTS["invalid_state_transition"],
                )
                refused.action, refused.run_status = action, record.status
                raise refused
            return record
        return await self._record_from(response)

    async def _record_from(self, response: Response) -> RunRecord:
        payload = response.payload
        if isinstance(payload, dict) and "run_id" in payload and "status" in payload:
            return self._update(convert(payload, RunRecord, response, what="run"))
        return await self.refresh()  # the response shape is undocumented (§12 row 2)

    # --- outputs and approvals ----------------------------------------------------------

    async def output_files(self, *, margin: float = OC.OUTPUT_URL_MARGIN) -> list[OutputFile]:
        """The run's output files, with signed URLs valid for at least ``margin`` seconds.

        The URLs live 15 minutes after the GET that returned them, so the run is re-read
        when the last read is older than that (less ``margin``), or the record has none.
        """
        age = self._api.policy.clock() - self._fetched_at
        if not self._record.output_files or age >= OC.OUTPUT_URL_LIFETIME - margin:
            await self.refresh()
        return list(self._record.output_files)

    async def approvals(self) -> list[Approval]:
        """The run's pending human-review gates (E14; experimental, SDK-only endpoint)."""
        response = await self._api.get(f"{self._path}/approvals")
        payload = response.payload
        items = items_of(response, "approvals", what="approvals") if payload is not None else []
        return [convert(item, Approval, response, what="approval") for item in items]

    async def resolve_approval(
        self,
        exception_id: str,
        resolution: Literal["approved", "rejected", "modified"],
        *,
        modified_data: Mapping[str, Any] | None = None,
    ) -> ApprovalResult:
        """Resolve one gate (E15; experimental). ``modified_data`` only with ``modified``."""
        if resolution not in _RESOLUTIONS:
            raise InvalidRequestError(
                f"resolution must be one of {', '.join(sorted(_RESOLUTIONS))}, not {resolution!r}."
            )
        if (modified_data is not None) != (resolution == "modified"):
            raise InvalidRequestError("modified_data goes with resolution='modified' only.")
        body: dict[str, Any] = {"exception_id": exception_id, "resolution": resolution}
        if modified_data is not None:
            body["modified_data"] = dict(modified_data)
        response = await self._api.post(f"{self._path}/approvals/resolve", content=encode(body))
        return convert(response.payload or {}, ApprovalResult, response, what="resolution")


class RunWatch:
    """The status changes of one run, as an async iterator and an async context manager."""

    def __init__(self, run: Run, interval: float, max_interval: float, backoff: float) -> None:
        self._run = run
        self._interval = interval
        self._max_interval = max_interval
        self._backoff = backoff
        self._agen = cast("types.AsyncGeneratorType[RunRecord, None]", self._poll())
        self._closed = False
        self._closed_event = asyncio.Event()  # a close from another task ends the poll
        self.polls = 0
        """How many times the run was read."""

    def __aiter__(self) -> AsyncIterator[RunRecord]:
        if self._closed:
            raise StreamClosedError("This watch has ended or was closed; call run.watch() again.")
        return self

    def __anext__(self) -> Awaitable[RunRecord]:
        if self._closed:
            raise StreamClosedError("This watch was closed.")
        return self._agen.__anext__()

    async def __aenter__(self) -> RunWatch:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop watching (idempotent), from any task. Nothing is left running."""
        if self._closed:
            return
        self._closed = True
        self._closed_event.set()
        if not self._agen.ag_running:
            await self._agen.aclose()

    async def _poll(self) -> AsyncGenerator[RunRecord, None]:
        run = self._run
        policy = run._api.policy
        wait = self._interval
        last: str | None = None
        closed = self._closed_event
        try:
            while True:
                record = await unless_closed(run.refresh(), closed, what="watch")
                self.polls += 1
                if record.status != last:
                    last = record.status
                    wait = self._interval
                    yield record
                if run.terminal:
                    return
                await unless_closed(policy.sleep(wait), closed, what="watch")
                wait = min(wait * self._backoff, self._max_interval)
        finally:
            self._closed = True

    def __repr__(self) -> str:
        return f"<RunWatch run={self._run.run_id!r} polls={self.polls} closed={self._closed}>"
