"""``OlbrainClient`` and ``Agent``: the session manager and one agent's calls."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import aiohttp

from .._config import RetryPolicy, Timeouts
from .._http import OLBRAIN_DIALECT, HTTPCore, OwnsCore, resolve_base_url, segment
from ..errors import APIResponseError, InvalidRequestError
from . import _constants as OC
from ._api import AgentAPI, KnownRuns, encode, send_with_recovery
from ._auth import AccessKeyCredentials
from ._conversation import Conversation, too_large
from ._models import RunRecord, Session, UploadedFile, convert, items_of
from ._runs import Run
from ._trigger import SentTrigger, build_trigger
from ._uploads import UploadInput, form_factory, read_upload

__all__ = ["Agent", "OlbrainClient"]

logger = logging.getLogger("genie_async")


class OlbrainClient(OwnsCore):
    """An asyncio client for Olbrain's agent API, holding one ``aiohttp`` session.

    ::

        async with OlbrainClient(api_key="ak_…") as client:
            reply = await client.agent(AGENT_ID).conversation().ask("Hello")

    The same habits as :class:`~genie_async.GenieClient`: use it as an async context
    manager (or call :meth:`close`); ``session`` is an ``aiohttp.ClientSession`` of yours,
    used as is and never closed here; ``timeouts`` and ``retry`` are the same
    :class:`~genie_async.Timeouts` and :class:`~genie_async.RetryPolicy` (the seed's policy:
    502/503/504 backed off from 1 s doubling to 60 s for about 10 minutes, a 500 once, never a
    4xx). ``base_url`` defaults to ``https://webhook.olbrain.com``; plain ``http://`` is
    refused except to loopback unless ``allow_insecure_http=True``. The key is never shown
    in a ``repr``, a log line or an error.

    The default ``timeouts`` allow a chat turn 120 s of silence (the turn's reply is
    synchronous, and the official SDK waits that long).
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        allow_insecure_http: bool = False,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        connection_limit: int = 100,
        connection_limit_per_host: int = 0,
    ) -> None:
        self._credentials = AccessKeyCredentials(api_key)
        self._core = HTTPCore(
            base_url=resolve_base_url(
                data_center=None,
                base_url=base_url or OC.DEFAULT_BASE_URL,
                allow_insecure_http=allow_insecure_http,
            ),
            timeouts=timeouts
            or Timeouts(read=OC.TURN_READ_TIMEOUT, request=OC.TURN_REQUEST_TIMEOUT),
            retry=retry or RetryPolicy(),
            session=session,
            connection_limit=connection_limit,
            connection_limit_per_host=connection_limit_per_host,
            dialect=OLBRAIN_DIALECT,
        )
        self._known_runs = KnownRuns()  # runs this client's triggers returned (§7.2 matching)

    def __repr__(self) -> str:
        return f"<OlbrainClient base_url={self.base_url!r} credentials=api_key(<redacted>)>"

    def agent(self, agent_id: str) -> Agent:
        """A handle on one agent (no request is made)."""
        api = AgentAPI(self._core, self._credentials, agent_id, self._known_runs)
        return Agent(api, self._core.timeouts)


class Agent:
    """One Olbrain agent: conversations and sessions (conversational agents), runs
    (workflow agents), and uploads (both). Calling a route of the other kind raises
    :class:`~genie_async.RuntimeNotApplicableError`."""

    def __init__(self, api: AgentAPI, timeouts: Timeouts) -> None:
        self._api = api
        self._timeouts = timeouts

    @property
    def agent_id(self) -> str:
        return self._api.agent_id

    def __repr__(self) -> str:
        return f"<Agent {self.agent_id!r}>"

    # --- conversational ----------------------------------------------------------------

    def conversation(
        self, session_id: str | None = None, *, user_id: str | None = None
    ) -> Conversation:
        """A conversation: a new session (the first turn creates it) or ``session_id``'s.

        ``user_id`` labels the end user in every turn's body (optional).
        """
        return Conversation(
            self._api, session_id, user_id=user_id, turn_timeout=self._timeouts.read
        )

    async def sessions(
        self,
        *,
        limit: int = 20,
        status: str | None = None,
        since: str | None = None,
    ) -> list[Session]:
        """The agent's production sessions, most recently active first (E9).

        ``limit`` is at most 100; ``status`` filters (e.g. ``active``); ``since`` (RFC 3339)
        keeps sessions active after it: the way to page further back.
        """
        if not 1 <= limit <= OC.SESSIONS_PAGE_LIMIT:
            raise InvalidRequestError(f"limit must be 1..{OC.SESSIONS_PAGE_LIMIT}.")
        params: dict[str, str | int] = {"limit": limit}
        if status is not None:
            params["status"] = status
        if since is not None:
            params["since"] = since
        response = await self._api.get("/sessions", params)
        return [
            convert(item, Session, response, what="session")
            for item in items_of(response, "sessions", what="sessions")
        ]

    async def session(self, session_id: str) -> Session:
        """One session's full record (E10)."""
        response = await self._api.get(f"/sessions/{segment(session_id, 'session_id')}")
        return convert(response.payload, Session, response, what="session")

    # --- workflow ------------------------------------------------------------------------

    async def trigger(
        self,
        inputs: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        body: Mapping[str, Any] | None = None,
        inject_idempotency_key: bool = True,
    ) -> Run:
        """Start a run of a workflow agent (E1) and return its handle: exactly one run.

        The body is ``{"inputs": inputs}`` (or ``body`` as given, for agents configured to
        read another shape). An ``Idempotency-Key`` field (``idempotency_key``, default a new
        UUID) is added inside ``inputs`` (or inside the body's ``inputs``, else at the body's
        top level), where the workflow sees it and the run record echoes it; a key the
        caller put there already is kept. If an attempt fails after the server may have
        taken it (a 5xx, or a connection lost or timed out after sending), the agent's
        recent runs are read before any retry and the run carrying the key is adopted (or,
        without a key in the run's inputs, one created since the send with the same inputs);
        only when there is none is the same body sent again (reference §7.2). The platform
        does not de-duplicate it for you (§9.3).

        ``inject_idempotency_key=False`` leaves the body untouched, for agents whose schema
        rejects unknown fields; recovery then matches on inputs and time only. A body over
        1 MiB is refused before sending (:class:`~genie_async.RequestTooLargeError`): upload
        the large part (:meth:`upload`) and reference its ``fi_…`` id.
        """
        payload, key = build_trigger(
            inputs, body, idempotency_key=idempotency_key, inject=inject_idempotency_key
        )
        path = f"/api/agents/webhook/{segment(self.agent_id, 'agent_id')}"
        try:
            content = encode(payload)
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(f"The inputs are not JSON-serialisable: {exc}") from exc
        if len(content) > OC.MAX_TRIGGER_BYTES:
            raise too_large(len(content), path=path)
        api = self._api
        sent = SentTrigger.of(content, key)

        async def send() -> RunRecord:
            response = await api.core.request_once(
                "POST", path, credentials=api.credentials, content=content
            )
            data = response.payload
            if not isinstance(data, dict) or not isinstance(data.get("run_id"), str):
                raise APIResponseError(
                    "The trigger response has no run_id (is this a conversational agent? use "
                    "agent.conversation()).",
                    status=response.status,
                    body=data,
                    request_id=response.request_id,
                )
            return convert(data, RunRecord, response, what="run")

        async def recover() -> RunRecord | None:
            return await self._find_triggered(sent)

        record = await send_with_recovery(api.policy, send, recover, what=f"POST {path}")
        api.known_runs.add(record.run_id)
        return Run(api, record)

    async def _find_triggered(self, sent: SentTrigger) -> RunRecord | None:
        """§7.2: the run an ambiguous trigger created, from E3, or None to send it again.

        One unfiltered page (every status: a fast run may already be running, paused,
        waiting for review or finished); if that page is full, and so may have cut the run
        off, each status a new run can have reached is listed on its own.
        """
        api = self._api
        limit = OC.RECOVERY_RUNS_LIMIT
        queries: list[dict[str, str | int]] = [{"limit": limit}]
        queries += [{"status": status, "limit": limit} for status in OC.RECOVERY_STATUSES]
        for index, params in enumerate(queries):
            response = await api.get("/runs", params)
            records = [
                convert(item, RunRecord, response, what="run")
                for item in items_of(response, "runs", what="runs")
            ]
            found = sent.find(records, date=response.headers.get("date"), known=api.known_runs)
            if found is not None:
                api.known_runs.add(found.run_id)  # before any await: a concurrent twin skips it
                return found
            if index == 0 and len(records) < limit:
                break  # the whole list was seen
        logger.debug("trigger recovery: no run of ours among the agent's runs; sending again")
        return None

    def run(self, run_id: str) -> Run:
        """A handle on an existing run, its status unknown until :meth:`Run.refresh`."""
        segment(run_id, "run_id")
        return Run(self._api, RunRecord(run_id=run_id))

    async def get_run(self, run_id: str) -> Run:
        """An existing run, read now (E4)."""
        run = self.run(run_id)
        await run.refresh()
        return run

    async def runs(self, *, status: str | None = None, limit: int | None = None) -> list[Run]:
        """The agent's runs (E3), optionally only those with ``status``."""
        params: dict[str, str | int] = {}
        if status is not None:
            params["status"] = status
        if limit is not None:
            params["limit"] = limit
        response = await self._api.get("/runs", params)
        return [
            Run(self._api, convert(item, RunRecord, response, what="run"))
            for item in items_of(response, "runs", what="runs")
        ]

    # --- uploads -------------------------------------------------------------------------

    async def upload(
        self,
        file: UploadInput,
        *,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> UploadedFile:
        """Upload a file (E2) as one multipart part named ``file``; reference the returned
        ``file_id`` (``fi_…``) from a trigger's JSON. Only this agent can use it."""
        data, name = await read_upload(file, filename)
        response = await self._api.post("/upload", form=form_factory(data, name, content_type))
        return convert(response.payload, UploadedFile, response, what="upload")
