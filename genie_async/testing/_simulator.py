"""`GenieSimulator`: lifecycle, identity, switches, scenario hooks and the inspection API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

from aiohttp import web

from ._admin_routes import ADMIN_ROUTES, AdminHttpFault
from ._admin_state import regenerate_key, set_client_attached
from ._app import build_app
from ._clock import SimClock
from ._faults import HttpFault
from ._model import AuthAttempt, SimConfig, SimConversation, SimEvent
from ._records import ApprovalRecord, RequestRecord, UploadRecord
from ._scenario import MessageMatcher, Turn
from ._server import LoopbackServer
from ._state import World

__all__ = ["GenieSimulator"]


class GenieSimulator(LoopbackServer[World]):
    """A local, faithful stand-in for the Genie Headless API, served on loopback.

    Use it as an async context manager (or `start` / `close`)::

        async with GenieSimulator(ping_interval=0.05) as sim:
            sim.on_message("hi", Turn(Say("Hello!")))
            # point a client at sim.url with sim.genie_id, sim.api_key and sim.user_id

    Settings: ``envelope`` (``"wrapped"`` ``{"result": …}`` bodies, or ``"flat"``),
    ``error_style`` (``"workato"`` three-key bodies, or ``"nested"`` ``{"error": {…}}``),
    ``ping_interval`` seconds of stream silence before a ``system.ping``, ``seed`` for every
    id, ``line_ending`` of SSE lines, ``fragment`` (write SSE in seeded random pieces),
    ``topic_delay`` (seconds the numeric topic placeholder lasts after the first message),
    ``events_inclusive`` (``since_created_at`` is ``>=`` rather than ``>``),
    ``events_page_size`` (default ``/events`` page size), ``auth_interrupt_after`` (seconds of
    pings between ``runtime_connection.auth_required`` and ``system.stream_interrupted``),
    ``host`` and ``port`` (0 = any free port).

    The same app serves the Developer API stubs (``/api/agentic/…``, ``/api/iam/…``; in
    production another host): authenticate with `developer_token`; genie start/stop flip
    `genie_started`; detaching, attaching and regenerating genie clients change what the
    runtime accepts (`client_attached`, `api_key`); `developer_privileges` is the token's role.
    """

    def __init__(
        self,
        *,
        envelope: Literal["wrapped", "flat"] = "wrapped",
        error_style: Literal["workato", "nested"] = "workato",
        ping_interval: float = 30.0,
        seed: int = 0,
        line_ending: Literal["\n", "\r", "\r\n"] = "\n",
        fragment: bool = False,
        topic_delay: float = 2.0,
        events_inclusive: bool = True,
        events_page_size: int = 50,
        auth_interrupt_after: float = 0.05,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        config = SimConfig(
            envelope=envelope,
            error_style=error_style,
            ping_interval=ping_interval,
            seed=seed,
            line_ending=line_ending,
            fragment=fragment,
            topic_delay=topic_delay,
            events_inclusive=events_inclusive,
            events_page_size=events_page_size,
            auth_interrupt_after=auth_interrupt_after,
        )
        self._world = World(config)
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.app: web.Application = build_app(self._world)
        """The runtime API application (mountable in ``aiohttp_server`` too)."""
        self.user_id: str = self._world.add_user()
        """An active, allow-listed Identity user id for ``X-IDP-User-Id``."""
        self.user_email: str = self._world.users[self.user_id].email or ""
        """The email of `user_id` (what ``GET /api/iam/users?query=`` finds it by)."""

    # ------------------------------------------------------------------ lifecycle

    def _on_start(self) -> None:
        self._world.closing = False  # a closed simulator may be started again, state intact

    def _on_serving(self) -> None:
        self._world.provisioned_at = self._world.clock.now()

    def _on_close(self) -> None:
        # Stop: wake every waiting turn, and drop every open stream.
        world = self._world
        world.closing = True
        world.closing_signal.notify()
        for stream in list(world.streams):
            stream.abort()

    # ------------------------------------------------------------------- identity

    @property
    def genie_id(self) -> str:
        """The simulated genie's id (the ``{genie_handle}`` path segment)."""
        return self._world.genie_id

    @property
    def api_key(self) -> str:
        """The API key the runtime accepts: the attached genie client's current key (64
        lowercase hex characters). Changes when a client is attached or its key regenerated."""
        return self._world.api_key

    @property
    def developer_token(self) -> str:
        """The valid ``wrkaus-…`` Developer API token; any other bearer gets 401 there."""
        return self._world.admin.developer_token

    @property
    def developer_privileges(self) -> set[str]:
        """The Developer API token's role privileges (a live, mutable set): ``genies``,
        ``genie_clients`` and ``custom_chat_interface`` by default. Without
        ``custom_chat_interface``, creating, regenerating or attaching a client gets 403."""
        return self._world.admin.privileges

    @developer_privileges.setter
    def developer_privileges(self, value: set[str]) -> None:
        self._world.admin.privileges = set(value)

    @property
    def client_id(self) -> str | None:
        """The id of the genie client attached to the genie (None when detached)."""
        return self._world.admin.attached

    @property
    def admin_envelope(self) -> Literal["data", "flat"]:
        """Developer API success bodies: ``"data"`` (``{"data": …}``, default) or ``"flat"``."""
        return self._world.admin.envelope

    @admin_envelope.setter
    def admin_envelope(self, value: Literal["data", "flat"]) -> None:
        if value not in ("data", "flat"):
            raise ValueError(f"admin_envelope must be 'data' or 'flat', not {value!r}")
        self._world.admin.envelope = value

    def add_user(
        self,
        *,
        status: Literal["active", "invited"] = "active",
        allow_listed: bool = True,
        user_id: str | None = None,
        email: str | None = None,
        name: str | None = None,
    ) -> str:
        """Register an Identity user; returns its id (generated unless ``user_id`` given).

        Every user has an ``email`` (``userN@example.com`` unless given) and a ``name``, as
        the IAM user lookup reports them."""
        return self._world.add_user(
            status=status, allow_listed=allow_listed, user_id=user_id, email=email, name=name
        )

    def issue_access_token(self, user_id: str) -> str:
        """An OAuth access token for ``user_id`` (use it without ``X-IDP-User-Id``)."""
        if user_id not in self._world.users:
            raise KeyError(f"unknown user {user_id!r}")
        token = self._world.ids.access_token()
        self._world.tokens[token] = user_id
        return token

    def revoke_access_token(self, token: str) -> None:
        """Make ``token`` fail with 401 ``auth_failed`` from now on."""
        self._world.tokens.pop(token, None)

    def regenerate_api_key(self) -> str:
        """Issue a new API key; the previous one now gets 401 ``auth_failed``."""
        world = self._world
        client = world.admin.clients.get(world.admin.runtime_client or "")
        if client is None:
            world.api_key = world.ids.api_key()
            return world.api_key
        return regenerate_key(world, client, world.ids.api_key())

    def mark_provisioned(self) -> None:
        """Restart the `propagation_window` (as if the client or allow-list just changed)."""
        self._world.provisioned_at = self._world.clock.now()

    # ------------------------------------------------------------------- switches

    @property
    def genie_started(self) -> bool:
        """False = a stopped genie: streams stay open with pings only and never reply."""
        return self._world.flags.genie_started

    @genie_started.setter
    def genie_started(self, value: bool) -> None:
        self._world.flags.genie_started = value

    @property
    def client_attached(self) -> bool:
        """False = no genie client attached: every runtime call gets 406. Setting it detaches
        the client (as the Developer API does), or attaches the last one again."""
        return self._world.flags.client_attached

    @client_attached.setter
    def client_attached(self, value: bool) -> None:
        set_client_attached(self._world, value)

    @property
    def headless_enabled(self) -> bool:
        """False = workspace without the Headless API: 403 ``headless_not_enabled``."""
        return self._world.flags.headless_enabled

    @headless_enabled.setter
    def headless_enabled(self, value: bool) -> None:
        self._world.flags.headless_enabled = value

    @property
    def propagation_window(self) -> float:
        """Seconds (sim clock) after start / `mark_provisioned` during which every call
        gets 403 ``access_denied``."""
        return self._world.flags.propagation_window

    @propagation_window.setter
    def propagation_window(self, value: float) -> None:
        self._world.flags.propagation_window = value

    @property
    def enable_delete(self) -> bool:
        """True = ``DELETE …/conversations/{cid}`` answers 204 (else 404)."""
        return self._world.flags.enable_delete

    @enable_delete.setter
    def enable_delete(self, value: bool) -> None:
        self._world.flags.enable_delete = value

    @property
    def enable_business_approval(self) -> bool:
        """True = the business-approval route exists (else 404)."""
        return self._world.flags.enable_business_approval

    @enable_business_approval.setter
    def enable_business_approval(self, value: bool) -> None:
        self._world.flags.enable_business_approval = value

    @property
    def link_endpoint_available(self) -> bool:
        """False = the runtime-connection link endpoint 404s (June 2026 production)."""
        return self._world.flags.link_endpoint_available

    @link_endpoint_available.setter
    def link_endpoint_available(self, value: bool) -> None:
        self._world.flags.link_endpoint_available = value

    # ------------------------------------------------------------------- scenario

    def on_message(self, matcher: MessageMatcher, turn: Turn) -> None:
        """Play ``turn`` for messages matching ``matcher``: exact text, a compiled regex
        (searched) or a predicate. Rules are tried in registration order."""
        self._world.script.on_message(matcher, turn)

    def next_turn(self, turn: Turn) -> None:
        """Play ``turn`` for the next message whatever its text (FIFO; beats `on_message`)."""
        self._world.script.next_turn(turn)

    @property
    def default_turn(self) -> Turn:
        """The turn played when nothing else matches (default: echo ``You said: …``)."""
        return self._world.script.default_turn

    @default_turn.setter
    def default_turn(self, turn: Turn) -> None:
        if not isinstance(turn, Turn):
            raise TypeError(f"{turn!r} is not a Turn")
        self._world.script.default_turn = turn

    def authorize(self, attempt_id: str | None = None) -> None:
        """Complete a pending runtime connection (None = the only pending one); the parked
        turn resumes as a new run whose replies reach history only."""
        self._world.resolve_attempt(self._pending_attempt(attempt_id), "authorized", None)

    def reject_connection(self, attempt_id: str | None = None, reason: str | None = None) -> None:
        """Decline a pending runtime connection (as the reject endpoint does)."""
        self._world.resolve_attempt(self._pending_attempt(attempt_id), "rejected", reason)

    def pending_approvals(self) -> list[str]:
        """Call ids of confirmations still waiting for their approval POST."""
        return [c for c, a in self._world.approvals.items() if not a.resolved]

    def pending_auth_attempts(self) -> list[str]:
        """Ids of runtime-connection attempts still waiting for authorization."""
        return [a.attempt_id for a in self._world.attempts.values() if a.status == "auth_required"]

    def _pending_attempt(self, attempt_id: str | None) -> AuthAttempt:
        pending = self.pending_auth_attempts()
        if attempt_id is None:
            if len(pending) != 1:
                raise LookupError(f"expected exactly one pending attempt, found {len(pending)}")
            attempt_id = pending[0]
        if attempt_id not in pending:
            raise LookupError(f"no pending runtime-connection attempt {attempt_id!r}")
        return self._world.attempts[attempt_id]

    # ---------------------------------------------------------------------- faults

    def fail(
        self,
        route: str,
        status: int = 0,
        *,
        times: int = 1,
        retry_after: str | None = None,
        body: Literal["json", "html", "empty"] = "json",
        after_accept: bool = False,
        after_pages: int = 0,
        kind: Literal["status", "reset"] = "status",
    ) -> HttpFault:
        """Queue a faulty response for ``route`` (see `HttpFault`; `ROUTES` and, for the
        Developer API, `ADMIN_ROUTES`); returns the fault."""
        fault_class = AdminHttpFault if route in ADMIN_ROUTES else HttpFault
        fault = fault_class(
            route,
            status,
            times=times,
            retry_after=retry_after,
            body=body,
            after_accept=after_accept,
            after_pages=after_pages,
            kind=kind,
        )
        self._world.faults.push(fault)
        return fault

    def clear_faults(self) -> None:
        """Drop every queued HTTP fault."""
        self._world.faults.clear()

    # ------------------------------------------------------------------ inspection

    @property
    def clock(self) -> SimClock:
        """The simulator's clock; ``sim.clock.advance(s)`` moves simulated time forward."""
        return self._world.clock

    @property
    def log(self) -> list[RequestRecord]:
        """Every request received, in arrival order."""
        return self._world.log

    def requests(self, route: str) -> list[RequestRecord]:
        """The logged requests of one route (e.g. ``"send"``, ``"reconnect"``)."""
        return [record for record in self._world.log if record.route == route]

    def conversation(self, conversation_id: str) -> SimConversation:
        """Read-only view of a conversation: ``.state``, ``.messages`` (oldest first),
        ``.events`` (persisted, oldest first), ``.runs`` (each with ``.events``,
        ``.finished``)."""
        return self._world.conversations[conversation_id]

    @property
    def conversations(self) -> list[SimConversation]:
        """Every conversation, in creation order."""
        return list(self._world.conversations.values())

    def approvals(self, call_id: str | None = None) -> list[ApprovalRecord]:
        """Every approval POST received (optionally only for ``call_id``)."""
        return [a for a in self._world.approval_log if call_id is None or a.call_id == call_id]

    @property
    def uploads(self) -> list[UploadRecord]:
        """Every accepted upload."""
        return self._world.uploads

    @property
    def open_streams(self) -> int:
        """SSE responses currently open."""
        return self._world.open_streams

    def stream_connections(self, run_id: str) -> int:
        """How many SSE connections run ``run_id`` has had."""
        for conv in self._world.conversations.values():
            run = conv.runs_by_id.get(run_id)
            if run is not None:
                return run.connections
        raise KeyError(f"unknown run {run_id!r}")

    async def wait_idle(self, conversation_id: str, timeout: float = 5.0) -> None:
        """Wait until the conversation reads ``idle`` and no turn is running (a turn parked
        on a runtime connection counts as idle, as production reports it)."""
        conv = self._world.conversations[conversation_id]
        await self._wait(conv, lambda: conv.state == "idle", timeout, f"{conv.state!r}")

    async def wait_for_event(
        self, conversation_id: str, event_type: str, *, count: int = 1, timeout: float = 5.0
    ) -> SimEvent:
        """Wait until the conversation has persisted ``count`` events of ``event_type`` and
        return the ``count``-th (e.g. to read a ``call_id`` before approving)."""
        conv = self._world.conversations[conversation_id]

        def matches() -> list[SimEvent]:
            return [event for event in conv.events if event.type == event_type]

        await self._wait(conv, lambda: len(matches()) >= count, timeout, f"no {event_type}")
        return matches()[count - 1]

    @staticmethod
    async def _wait(
        conv: SimConversation, ready: Callable[[], bool], timeout: float, what: str
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not ready():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"conversation {conv.conversation_id}: {what} after {timeout} s")
            await asyncio.wait((conv.signal.future(),), timeout=remaining)
