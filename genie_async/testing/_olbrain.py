"""`OlbrainSimulator`: a local stand-in for Olbrain's agent API ("Webhooks v1"), on loopback.

It serves E1-E15 of ``olbrain-agent-api.md`` with the documented error envelope, the §5.2 run
state machine, sessions and messages, multipart uploads, signed output-file URLs that expire,
and deterministic fault injection. Tests drive runs with hooks (`OlbrainSimulator.advance`,
`OlbrainSimulator.set_run_status`) or let each ``GET`` of a run advance it one step.

Example::

    from genie_async.testing import OlbrainSimulator

    async def test_order() -> None:
        async with OlbrainSimulator() as sim:
            chat = sim.add_conversational_agent(reply=lambda text, meta: f"Got {text!r}")
            flow = sim.add_workflow_agent(output_files={"report.csv": b"id\\n1\\n"})
            sim.fail_next("POST", f"/api/agents/webhook/{flow}", 502, after_accept=True)
            # point a client at sim.url with api_key=sim.api_key ...
            # the client finds the run (E3) before re-sending, so no second run is made
            assert len(sim.runs_for(flow)) == 1
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from aiohttp import web

from ._clock import SimClock
from ._olbrain_app import build_olbrain_app
from ._olbrain_faults import DEFAULT_CODES, OlbrainFault, default_message
from ._olbrain_model import (
    Clock,
    OlbrainMessage,
    OlbrainRequest,
    OlbrainRun,
    OlbrainSession,
    OlbrainUpload,
    ReplyFunc,
)
from ._olbrain_state import OlbrainWorld
from ._server import LoopbackServer

__all__ = ["OlbrainSimulator"]
_BODY_STYLES = {
    False: "envelope",
    True: "detail",
    "string": "detail",
    "object": "detail_object",
}


class OlbrainSimulator(LoopbackServer[OlbrainWorld]):
    """A faithful local Olbrain agent API (reference ``olbrain-agent-api.md``), served by
    aiohttp on ``host:port`` (default ``127.0.0.1:0``, any free port).

    Use it as an async context manager, or call `start` and `close`.

    Settings:

    - ``api_key``: the valid ``ak_…`` key of the default organization (generated if None).
    - ``seed``: seeds every id, so two simulators fed the same calls agree on every id.
    - ``clock``: anything with ``now() -> epoch seconds``; default a `SimClock` (real time plus
      an offset ``sim.clock.advance(s)`` moves). Timestamps and signed-URL expiry follow it.
    - ``idempotency``: ``"off"`` (default) records every body ``"Idempotency-Key"`` (or
      ``idempotency_key``) but never deduplicates: the docs promise no gateway-level
      deduplication (§9.3), so a client must not rely on it. ``"replay"`` is the switch that
      answers a trigger or control POST repeating a key already seen for the same agent and
      endpoint with the first response, doing nothing again, whatever the rest of the body
      says (keyed on ``(agent, key)`` alone), modelling a workflow that dedupes against the
      key. A workflow trigger's key is read from the body's top level or, where the library
      puts it, from inside ``inputs``; the run's ``inputs`` keep it as sent (the ``inputs``
      object, else the whole body). The ``Idempotency-Key`` *header* is recorded but never
      deduplicates: the documented place is the body.
    - ``retry_new_run_id``: E7 retry mints a new run (``retry_of`` = the failed one) instead
      of re-queueing the same ``run_id`` (§12 row 2).
    - ``runs_list_shape``: E3 answers ``{"runs": [...], "limit": N}`` (``"envelope"``) or a
      bare JSON array (``"array"``) (§11).
    - ``max_upload_bytes``: an upload size cap answered with 413 (None, the default, is the
      documented "no fixed cap").
    - ``upstream_timeout``: seconds after which a slow conversational turn is answered with
      502 ``upstream_timeout`` (None = wait for the reply); the turn still completes
      server-side, so its messages appear in E11 (§7.2 recovery).
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        seed: int = 0,
        clock: Clock | None = None,
        idempotency: Literal["replay", "off"] = "off",
        retry_new_run_id: bool = False,
        runs_list_shape: Literal["envelope", "array"] = "envelope",
        max_upload_bytes: int | None = None,
        upstream_timeout: float | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if idempotency not in ("replay", "off"):
            raise ValueError(f"idempotency must be 'replay' or 'off', not {idempotency!r}")
        if runs_list_shape not in ("envelope", "array"):
            raise ValueError(f"runs_list_shape must be 'envelope' or 'array': {runs_list_shape!r}")
        self._world = OlbrainWorld(seed=seed, clock=clock if clock is not None else SimClock())
        world = self._world
        world.idempotency = idempotency
        world.retry_new_run_id = retry_new_run_id
        world.runs_list_shape = runs_list_shape
        world.max_upload_bytes = max_upload_bytes
        world.upstream_timeout = upstream_timeout
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.organization_id: str = world.add_organization()
        """The default organization: `api_key` and agents added without ``organization_id``
        belong to it."""
        self._api_key = self.add_key(api_key)
        self.app: web.Application = build_olbrain_app(world)
        """The aiohttp application (mountable in ``aiohttp_server`` too)."""

    # ------------------------------------------------------------------ lifecycle

    # ------------------------------------------------------------------- identity

    @property
    def api_key(self) -> str:
        """The default organization's valid ``ak_…`` key (the constructor's ``api_key``)."""
        return self._api_key

    @property
    def clock(self) -> Any:
        """The clock every timestamp and signed-URL expiry is measured on: the constructor's
        ``clock``, else a `SimClock` (so ``sim.clock.advance(901)`` expires fresh output URLs).
        Typed ``Any`` because its type is whatever was passed in."""
        return self._world.clock

    def add_organization(self) -> str:
        """Create another organization and return its ``org_…`` id (for cross-org tests)."""
        return self._world.add_organization()

    def add_key(self, key: str | None = None, *, organization_id: str | None = None) -> str:
        """Register an active access key (generated ``ak_…`` if None) for ``organization_id``
        (default: the default organization; an unknown id creates that organization) and
        return it. Keys are case-sensitive. Re-adding a revoked key reactivates it."""
        return self._world.add_key(key, organization_id or self.organization_id)

    def revoke_key(self, key: str) -> None:
        """Revoke ``key``: from now on it gets 401 ``unauthorized`` (production's ~30 s lag is
        not simulated). Unknown keys raise `KeyError`."""
        self._world.revoke_key(key)

    # --------------------------------------------------------------------- agents

    def add_conversational_agent(
        self,
        agent_id: str | None = None,
        *,
        name: str = "Assistant",
        reply: ReplyFunc | None = None,
        organization_id: str | None = None,
    ) -> str:
        """Add a conversational agent and return its id (``agt_01…`` if ``agent_id`` is None).

        ``reply(text, metadata)`` returns the reply to each message (a string, or an awaitable
        of one); raising makes the trigger answer 502 ``upstream_error``. The default reply is
        deterministic: ``"Echo: <text>"``.
        """
        return self._world.add_agent(
            agent_id,
            kind="conversational",
            name=name,
            organization_id=organization_id or self.organization_id,
            reply=reply,
        )

    def add_workflow_agent(
        self,
        agent_id: str | None = None,
        *,
        name: str = "Workflow",
        auto_advance: bool = True,
        fail: bool | int = False,
        needs_review: bool = False,
        output_files: Mapping[str, bytes] | None = None,
        required_inputs: Sequence[str] = (),
        organization_id: str | None = None,
    ) -> str:
        """Add a workflow agent and return its id (``agt_01…`` if ``agent_id`` is None).

        - ``auto_advance``: each E4 ``GET`` of one of its runs moves the run one step along
          ``queued → running → succeeded`` (or ``failed`` / ``needs_review``) before answering;
          ``paused`` and ``needs_review`` never move on their own, and terminal runs stay.
          With False only `advance` and `set_run_status` move runs.
        - ``fail``: True makes every execution end ``failed``; an int ``n`` makes the first
          ``n`` executions of each run fail (so a retry can then succeed).
        - ``needs_review``: a running run stops once in ``needs_review`` with one blocking
          approval (E14); resolving it (E15) puts the run back to ``running``.
        - ``output_files``: ``{name: content}`` listed in a succeeded run's ``output_files``
          with signed URLs (default one small ``report.csv``; pass ``{}`` for none).
        - ``required_inputs``: names that must be keys of the trigger's ``inputs`` object, else
          422 ``validation_error`` with ``fields`` (the agent's input schema).
        """
        files = {"report.csv": b"id,status\n1,ok\n"} if output_files is None else output_files
        return self._world.add_agent(
            agent_id,
            kind="workflow",
            name=name,
            organization_id=organization_id or self.organization_id,
            auto_advance=auto_advance,
            fail=fail,
            needs_review=needs_review,
            output_files=dict(files),
            required_inputs=tuple(required_inputs),
        )

    # --------------------------------------------------------------------- faults

    def fail_next(
        self,
        method: str,
        path: str | re.Pattern[str],
        status: int,
        *,
        code: str | None = None,
        count: int = 1,
        after_accept: bool = False,
        retry_after: str | float | None = None,
        detail_body: bool | Literal["string", "object"] = False,
        message: str | None = None,
        text: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests matching ``method`` (``"*"`` = any) and ``path``
        (a glob over the whole path, e.g. ``"/api/agents/*/runs/*"``, or a compiled regex,
        searched) with ``status`` instead of the real response.

        - ``code``: the error code (default per status: 500 ``internal_error``, 502
          ``upstream_error``, 503 ``service_unavailable``, 504 ``gateway_timeout``, 402
          ``insufficient_funds``, 429 ``rate_limited``, …). Use ``"upstream_timeout"`` or a
          billing code (``"billing_unavailable"`` with 503, …) as needed.
        - ``after_accept``: the server first PERFORMS the operation (creates the run, persists
          the turn, applies the action), THEN answers the fault. By default a retry performs
          it again (no gateway dedupe, §9.3): the client must look before re-sending (§7.2).
          With ``idempotency="replay"`` the replay entry is recorded first, so a retry carrying
          the same ``"Idempotency-Key"`` gets the original response. Such a fault fires only
          on a request that would have succeeded.
        - ``retry_after``: the raw ``Retry-After`` header value (seconds or an HTTP date).
        - ``detail_body``: False = the ``{"error": {code, message, request_id}}`` envelope;
          True or ``"string"`` = FastAPI ``{"detail": message}``; ``"object"`` =
          ``{"detail": {"code", "message"}}``.
        - ``text``: a non-JSON body (e.g. a load balancer's HTML page), sent as ``text/html``.
        - ``status=0`` drops the connection without any response.

        Faults are consumed in the order queued; a fault fires before authentication, like a
        gateway's (except ``after_accept`` ones).
        """
        if code is None:
            code = DEFAULT_CODES.get(status, "error")
        if detail_body not in _BODY_STYLES:
            raise ValueError(f"detail_body must be a bool, 'string' or 'object': {detail_body!r}")
        style = "text" if text is not None else _BODY_STYLES[detail_body]
        self._world.faults.push(
            OlbrainFault(
                method=method,
                path=path,
                status=status,
                code=code,
                message=message or default_message(code),
                count=count,
                after_accept=after_accept,
                retry_after=None if retry_after is None else _retry_after(retry_after),
                body=style,  # type: ignore[arg-type]
                text=text,
            )
        )

    def pending_faults(self) -> int:
        """How many faulty responses are still queued."""
        return self._world.faults.pending()

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        self._world.faults.clear()

    # ------------------------------------------------------------------ run hooks

    def advance(self, run_id: str) -> str:
        """Move run ``run_id`` one lifecycle step (``queued → running → succeeded`` or
        ``failed`` / ``needs_review`` per its agent) and return the new status. A ``paused``,
        ``needs_review`` or terminal run does not move. Unknown ids raise `KeyError`."""
        return self._world.step(self._world.runs[run_id])

    def set_run_status(self, run_id: str, status: str, *, error: str | None = None) -> None:
        """Force run ``run_id`` into ``status`` (any string; the §5.1 ones behave as
        documented), setting timestamps as a real transition would; ``error`` is the
        ``failed`` message. Entering ``needs_review`` creates a pending approval if none is.
        Unknown ids raise `KeyError`."""
        self._world.force_status(self._world.runs[run_id], status, error=error)

    # ------------------------------------------------------------------ inspection

    @property
    def runs(self) -> dict[str, OlbrainRun]:
        """Every run by id, in creation order (a live dict; don't mutate)."""
        return self._world.runs

    def runs_for(self, agent_id: str) -> list[OlbrainRun]:
        """The runs of ``agent_id``, oldest first: ``len(sim.runs_for(a))`` counts the runs
        that triggers actually created."""
        return [run for run in self._world.runs.values() if run.agent_id == agent_id]

    @property
    def sessions(self) -> dict[str, OlbrainSession]:
        """Every session by id, in creation order; ``.messages`` holds its messages."""
        return self._world.sessions

    def messages(self, session_id: str) -> list[OlbrainMessage]:
        """The messages of ``session_id``, oldest first (user and assistant)."""
        return list(self._world.sessions[session_id].messages)

    @property
    def uploads(self) -> dict[str, OlbrainUpload]:
        """Every accepted upload by ``file_id``."""
        return self._world.uploads

    @property
    def requests(self) -> list[OlbrainRequest]:
        """Every request received, in arrival order (secrets redacted)."""
        return self._world.requests

    def requests_to(self, route: str, agent_id: str | None = None) -> list[OlbrainRequest]:
        """The logged requests of ``route`` (e.g. ``"trigger"``, ``"get_run"``, ``"upload"``,
        ``"cancel_run"``; see `ROUTE_NAMES`), optionally only those for ``agent_id``."""
        return [
            record
            for record in self._world.requests
            if record.route == route and (agent_id is None or record.agent_id == agent_id)
        ]

    #: Route names used in `OlbrainRequest.route`.
    ROUTE_NAMES: tuple[str, ...] = (
        "trigger",
        "workflow_trigger",
        "upload",
        "list_runs",
        "get_run",
        "cancel_run",
        "pause_run",
        "retry_run",
        "resume_run",
        "list_approvals",
        "resolve_approval",
        "list_sessions",
        "get_session",
        "list_messages",
        "get_message",
        "file",
        "unknown",
    )

    # ------------------------------------------------------------------ switches

    @property
    def reply_delay(self) -> float:
        """Seconds every conversational turn takes before replying (default 0): a slow turn
        for read-timeout tests (§12.1 item 8). The turn runs shielded, so a client that gives
        up still finds its messages in E11."""
        return self._world.reply_delay

    @reply_delay.setter
    def reply_delay(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("reply_delay must be >= 0")
        self._world.reply_delay = seconds

    @property
    def upstream_timeout(self) -> float | None:
        """See the constructor's ``upstream_timeout``."""
        return self._world.upstream_timeout

    @upstream_timeout.setter
    def upstream_timeout(self, seconds: float | None) -> None:
        self._world.upstream_timeout = seconds

    @property
    def idempotency(self) -> Literal["replay", "off"]:
        """See the constructor's ``idempotency``."""
        return self._world.idempotency

    @idempotency.setter
    def idempotency(self, value: Literal["replay", "off"]) -> None:
        if value not in ("replay", "off"):
            raise ValueError(f"idempotency must be 'replay' or 'off', not {value!r}")
        self._world.idempotency = value

    @property
    def retry_new_run_id(self) -> bool:
        """See the constructor's ``retry_new_run_id``."""
        return self._world.retry_new_run_id

    @retry_new_run_id.setter
    def retry_new_run_id(self, value: bool) -> None:
        self._world.retry_new_run_id = value

    @property
    def runs_list_shape(self) -> Literal["envelope", "array"]:
        """See the constructor's ``runs_list_shape``."""
        return self._world.runs_list_shape

    @runs_list_shape.setter
    def runs_list_shape(self, value: Literal["envelope", "array"]) -> None:
        if value not in ("envelope", "array"):
            raise ValueError(f"runs_list_shape must be 'envelope' or 'array', not {value!r}")
        self._world.runs_list_shape = value

    def __repr__(self) -> str:
        # Never the keys: reprs end up in logs.
        where = self._world.base_url or "not started"
        return f"<OlbrainSimulator {where} agents={len(self._world.agents)}>"


def _retry_after(value: str | float) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)
