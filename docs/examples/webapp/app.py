"""A browser chat with a genie: an aiohttp web app that relays each turn to the page as SSE.

Against the bundled simulator (then open http://127.0.0.1:8080/)::

    python docs/examples/webapp/app.py --simulator

Against your genie, with the credentials in the environment as for ``genie-async chat``::

    export GENIE_API_KEY=… GENIE_USER_ID=…
    python docs/examples/webapp/app.py --genie gin-… --data-center us

How it works. One ``GenieClient`` lives as long as the app; each browser session acts as its
own end user through ``client.as_user(...)``. The page posts a message and gets a turn id
back, then reads the turn with ``EventSource`` from ``GET /api/turns/{turn_id}/events``.
Every relayed event carries an SSE ``id`` and the app keeps the ``stream.cursor`` taken right
after it, so the browser's automatic reconnect (which sends ``Last-Event-ID``) continues the
turn with ``conversation.resume(cursor)``: nothing lost, nothing repeated. A skill
confirmation becomes a card whose Approve/Reject buttons post back to the app, which calls
``stream.approve()`` / ``stream.reject()``; a runtime-connection pause becomes a card with
the auth link. Reply text only ever reaches the DOM through ``textContent`` (static/app.js).

Browser-facing protections: an HttpOnly, SameSite=Strict session cookie (also ``Secure``
unless the app serves plain HTTP on loopback), a same-origin-only Content-Security-Policy, and
on every API POST a same-origin check (``Sec-Fetch-Site``, else ``Origin``) plus a JSON-only
body, so another site cannot approve or reject a skill as the user.

The HTTP API (JSON bodies; the session cookie is set by ``GET /``)::

    POST /api/conversations                             -> 201 {"conversation_id"}
    POST /api/conversations/{conversation_id}/messages  {"text"} -> 202 {"turn_id", "events_url"}
    GET  /api/turns/{turn_id}/events                    text/event-stream: reply, skill,
                                                        confirmation, auth, progress (each
                                                        with an id), then done or failed
    POST /api/turns/{turn_id}/confirmations/{call_id}   {"decision": "approve" | "reject",
                                                        "reason"?} -> {"resolution", "source"}

Sections excerpted by the documentation (``--8<--`` markers): ``client-lifecycle``,
``end-users``, ``start-turn``, ``relay``, ``sse-writer``, ``confirmation-endpoint``,
``auth-card``, ``auth-hook``, ``serve``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from genie_async import (
    AgentMessage,
    AuthLink,
    AuthRequest,
    Conversation,
    EventStream,
    GenieClient,
    GenieError,
    GenieEvent,
    InvalidRequestError,
    NotFoundError,
    RuntimeConnectionAuthRequired,
    SkillCompleted,
    SkillConfirmationRequired,
    SkillFailed,
    SkillRunning,
    SkillStopped,
    StreamClosedError,
    StreamCursor,
    UsageError,
)
from genie_async.testing import Confirm, ConnectAuth, GenieSimulator, Say, Skill, Turn

log = logging.getLogger("genie_webapp")

STATIC_DIR = Path(__file__).resolve().parent / "static"
SESSION_COOKIE = "genie_session"
KEEPALIVE_SECONDS = 15.0  # an SSE comment this often keeps proxies from closing a quiet turn
RECONNECT_MS = 1000  # how soon the browser reconnects after a drop (the SSE `retry:` field)
MAX_SESSIONS = 10_000  # browser sessions and turns remembered; the oldest are forgotten
MAX_TURNS = 10_000
# Same-origin only: no inline script, no third-party anything (the page needs no CDN).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

K = TypeVar("K")
V = TypeVar("V")


class Recent(collections.OrderedDict[K, V]):
    """A dict that forgets its least recently added entries beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


# --- configuration -----------------------------------------------------------------------


@dataclass(frozen=True)
class GenieSettings:
    """Which genie, where, and this backend's genie client credentials."""

    genie_id: str
    api_key: str = field(repr=False)  # never logged
    user_id: str  # the end user the client itself acts as; views act as the others
    data_center: str | None = None
    base_url: str | None = None


EndUsers = Callable[[str], Awaitable[str]]
"""Maps a browser session id to that person's Workato Identity user id (``X-IDP-User-Id``)."""


# --8<-- [start:end-users]
def single_end_user(user_id: str) -> EndUsers:
    """Every browser acts as one end user: a demo stand-in for your login system.

    A real app knows who is logged in and looks up (or stores) that person's Workato
    Identity id; the genie then sees each person's own conversations and connections.
    """

    async def resolve(session: str) -> str:
        return user_id

    return resolve


def simulator_end_users(sim: GenieSimulator) -> EndUsers:
    """With the simulator, every new browser session becomes a new simulated end user."""
    users: Recent[str, str] = Recent(MAX_SESSIONS)

    async def resolve(session: str) -> str:
        if session not in users:
            users[session] = sim.add_user()
        return users[session]

    return resolve


# --8<-- [end:end-users]


# --- application state -------------------------------------------------------------------


@dataclass(eq=False)
class TurnRecord:
    """One turn as the app tracks it across the browser's (re)connections."""

    turn_id: str
    session: str
    conversation: Conversation  # bound to the session's end user
    unsent: EventStream | None = None  # created by the POST, sent when the page first reads
    # cursors[n - 1] is stream.cursor right after the event sent with SSE id n.
    cursors: list[StreamCursor] = field(default_factory=list)
    genie_run_id: str | None = None
    checkpoint: StreamCursor | None = None  # the last reader's cursor when it stopped
    live: EventStream | None = None  # the stream a connected page is reading, if any
    sink: SSESink | None = None  # where to push a refreshed auth link
    reader: asyncio.Lock = field(default_factory=asyncio.Lock)  # one reader at a time

    # --8<-- [start:auth-hook]
    async def on_auth_required(self, request: AuthRequest) -> None:
        """The stream calls this at each runtime-connection pause and again with every fresh
        link (a link expires after about 5 minutes): show the newest one."""
        if self.sink is not None and request.link is not None:
            await self.sink.send("auth", auth_card(request.attempt_id, request.link))

    # --8<-- [end:auth-hook]


GENIE_SETTINGS = web.AppKey("genie_settings", GenieSettings)
END_USERS = web.AppKey[EndUsers]("end_users")
CLIENT = web.AppKey("client", GenieClient)
SESSIONS = web.AppKey[Recent[str, set[str]]]("sessions")  # session -> its conversations
TURNS = web.AppKey[Recent[str, TurnRecord]]("turns")
SECURE_COOKIES = web.AppKey("secure_cookies", bool)
SESSION = web.RequestKey("session", str)  # the browser's session id (cookie)
END_USER = web.RequestKey("end_user", str)  # its end user's Workato Identity id


# --8<-- [start:client-lifecycle]
async def genie_client_context(app: web.Application) -> AsyncIterator[None]:
    """One client (one connection pool) for the app's whole life, closed at shutdown."""
    settings = app[GENIE_SETTINGS]
    async with GenieClient(
        settings.genie_id,
        api_key=settings.api_key,
        user_id=settings.user_id,
        data_center=settings.data_center,
        base_url=settings.base_url,
        # Each open turn holds a connection for its whole length, and decisions need one
        # too: size the pool above the turns you expect to stream at once.
        connection_limit=200,
    ) as client:
        app[CLIENT] = client
        yield
    # Leaving the block closed every stream still open, then the session.


async def close_live_turns(app: web.Application) -> None:
    """At shutdown, end every relay now rather than wait for its turn: the browsers
    reconnect (with Last-Event-ID) to the next instance of the app."""
    for turn in list(app[TURNS].values()):
        if turn.live is not None:
            await turn.live.aclose()


def conversation_for(request: web.Request, conversation_id: str) -> Conversation:
    """The conversation as the requesting browser's end user (a cheap view: no request)."""
    return request.app[CLIENT].as_user(request[END_USER]).conversation(conversation_id)


# --8<-- [end:client-lifecycle]


@web.middleware
async def identify(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Give each browser a session cookie (on the page) and resolve its end user (on the API)."""
    session = request.cookies.get(SESSION_COOKIE)
    if request.path.startswith("/api/"):
        if not session or session not in request.app[SESSIONS]:
            raise json_error(web.HTTPUnauthorized, "No session: reload the page.")
        if request.method == "POST":
            # CSRF: refuse a POST another origin's page made (a sibling subdomain included,
            # which SameSite does not stop), and accept JSON only, which no cross-site form
            # can send without a CORS preflight this app never grants.
            if not same_origin(request):
                raise json_error(web.HTTPForbidden, "Cross-origin request refused.")
            if request.content_type != "application/json":
                raise json_error(web.HTTPUnsupportedMediaType, "Send application/json.")
        request[SESSION] = session
        request[END_USER] = await request.app[END_USERS](session)
        return await handler(request)
    response = await handler(request)
    # Only the page itself mints a session: static files and unknown paths never do, so a
    # flood of stray requests cannot push real sessions out of the bounded table.
    is_page = request.path == "/" and response.status == 200
    if is_page and (not session or session not in request.app[SESSIONS]):
        session = secrets.token_urlsafe(24)
        request.app[SESSIONS][session] = set()
        response.set_cookie(
            SESSION_COOKIE,
            session,
            httponly=True,
            samesite="Strict",
            secure=request.app[SECURE_COOKIES],
            path="/",
        )
    response.headers["Content-Security-Policy"] = CSP
    return response


def same_origin(request: web.Request) -> bool:
    """Whether a browser says the request comes from this app's own page.

    ``Sec-Fetch-Site`` is sent by every current browser; ``Origin`` covers older ones. A
    request with neither is not a browser's cross-site request (curl, a test client).
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urllib.parse.urlsplit(origin).netloc == request.host


def json_error(kind: type[web.HTTPException], message: str) -> web.HTTPException:
    return kind(text=json.dumps({"error": message}), content_type="application/json")


async def read_json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise json_error(web.HTTPBadRequest, "The body is not JSON.") from None
    if not isinstance(body, dict):
        raise json_error(web.HTTPBadRequest, "The body must be a JSON object.")
    return body


def owned_turn(request: web.Request) -> TurnRecord:
    turn = request.app[TURNS].get(request.match_info["turn_id"])
    if turn is None or turn.session != request[SESSION]:
        raise json_error(web.HTTPNotFound, "No such turn.")
    return turn


# --- pages and conversations -------------------------------------------------------------


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


async def create_conversation(request: web.Request) -> web.StreamResponse:
    client = request.app[CLIENT].as_user(request[END_USER])
    try:
        conversation = await client.create_conversation()
    except GenieError as exc:
        raise upstream_error(exc) from exc
    request.app[SESSIONS][request[SESSION]].add(conversation.conversation_id)
    return web.json_response({"conversation_id": conversation.conversation_id}, status=201)


# --8<-- [start:start-turn]
async def post_message(request: web.Request) -> web.StreamResponse:
    """Accept a message; the page then reads the turn from the returned ``events_url``."""
    conversation_id = request.match_info["conversation_id"]
    if conversation_id not in request.app[SESSIONS][request[SESSION]]:
        raise json_error(web.HTTPNotFound, "No such conversation.")
    text = (await read_json(request)).get("text")
    if not isinstance(text, str):
        raise json_error(web.HTTPBadRequest, 'Send {"text": "..."}.')
    turn = TurnRecord(
        turn_id=secrets.token_urlsafe(16),
        session=request[SESSION],
        conversation=conversation_for(request, conversation_id),
    )
    try:
        # Nothing is sent yet: send() checks the text (empty, too long) and returns the
        # turn's stream, which posts the message when the page's EventSource first reads it.
        # No confirmation hook: the page decides, through approve/reject below.
        turn.unsent = turn.conversation.send(text, on_auth_required=turn.on_auth_required)
    except InvalidRequestError as exc:
        raise json_error(web.HTTPBadRequest, exc.message) from None
    request.app[TURNS][turn.turn_id] = turn
    events_url = f"/api/turns/{turn.turn_id}/events"
    return web.json_response({"turn_id": turn.turn_id, "events_url": events_url}, status=202)


# --8<-- [end:start-turn]


# --- the relay -----------------------------------------------------------------------------


# --8<-- [start:sse-writer]
class SSESink:
    """A ``text/event-stream`` response: named JSON events, and a keep-alive comment when
    the turn is quiet (a paused turn can be silent for minutes; proxies close idle
    responses, and a write is also how a vanished page is noticed)."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # nginx: pass each event on at once
            }
        )
        self._lock = asyncio.Lock()  # the keep-alive task writes too: whole frames only
        self._keepalive: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SSESink:
        await self.response.prepare(self.request)
        await self._write(f"retry: {RECONNECT_MS}\n\n")
        self._keepalive = asyncio.create_task(self._keep_alive())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            # asyncio.wait, not `await task` under suppress(CancelledError): that would also
            # swallow a cancellation of this handler arriving meanwhile.
            await asyncio.wait({self._keepalive})

    async def send(self, name: str, data: object, *, event_id: int | None = None) -> None:
        # json.dumps escapes line breaks, so the data always fits on one `data:` line.
        frame = f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
        if event_id is not None:
            frame = f"id: {event_id}\n{frame}"
        await self._write(frame)

    async def _write(self, frame: str) -> None:
        async with self._lock:
            await self.response.write(frame.encode())

    async def _keep_alive(self) -> None:
        with contextlib.suppress(ConnectionResetError):  # the page left: the relay ends too
            while True:
                await asyncio.sleep(KEEPALIVE_SECONDS)
                await self._write(": keep-alive\n\n")


# --8<-- [end:sse-writer]


# --8<-- [start:relay]
async def turn_events(request: web.Request) -> web.StreamResponse:
    """Relay a turn to the page as SSE, from its start or, on a reconnect, from the event
    after ``Last-Event-ID``."""
    turn = owned_turn(request)
    last_id = last_event_id(request, turn)
    if turn.live is not None:
        # A reconnect can arrive before the old connection is noticed dead: it takes over.
        await turn.live.aclose()
    async with turn.reader, SSESink(request) as sink:
        stream = open_stream(turn, last_id)
        turn.live, turn.sink = stream, sink
        try:
            await relay(turn, stream, sink)
        except ConnectionResetError:
            log.info("turn %s: the page went away", turn.turn_id)
        finally:
            # Also reached when aiohttp cancels the handler because the page left. relay()
            # has closed the genie stream; the turn stays resumable from its cursors.
            turn.live = turn.sink = None
            turn.checkpoint = stream.cursor
            turn.genie_run_id = stream.genie_run_id or turn.genie_run_id
    return sink.response


def last_event_id(request: web.Request, turn: TurnRecord) -> int:
    """How many of the turn's events the page already has (0 on a first connection)."""
    raw = request.headers.get("Last-Event-ID", "")
    if not raw:
        return 0
    if not raw.isdigit() or not 0 < int(raw) <= len(turn.cursors):
        raise json_error(web.HTTPBadRequest, "Unknown Last-Event-ID.")
    return int(raw)


def open_stream(turn: TurnRecord, last_id: int) -> EventStream:
    """The genie stream that continues the turn right after the page's last event."""
    del turn.cursors[last_id:]  # events past it never reached the page: they come again
    if last_id:
        cursor = turn.cursors[last_id - 1]
        return turn.conversation.resume(cursor, on_auth_required=turn.on_auth_required)
    if turn.unsent is not None:  # the first read sends the message
        stream, turn.unsent = turn.unsent, None
        return stream
    # The page has none of this turn's events (a reload, or a drop before the first one).
    if turn.genie_run_id is not None:
        return turn.conversation.attach(turn.genie_run_id, on_auth_required=turn.on_auth_required)
    assert turn.checkpoint is not None  # a reader ran, and stopped before the run was known
    return turn.conversation.resume(turn.checkpoint, on_auth_required=turn.on_auth_required)


async def relay(turn: TurnRecord, stream: EventStream, sink: SSESink) -> None:
    async with stream:
        try:
            async for event in stream:
                # Taken before any await, so it covers exactly the events the page is sent.
                turn.cursors.append(stream.cursor)
                name, data = sse_event(event)
                await sink.send(name, data, event_id=len(turn.cursors))
        except StreamClosedError:
            return  # closed by a newer connection of the page, or by shutdown
        except GenieError as exc:
            log.warning("turn %s failed: %s", turn.turn_id, exc)
            await sink.send("failed", {"message": exc.message, "request_id": exc.request_id})
            return
        await sink.send("done", {"outcome": stream.outcome})


# --8<-- [end:relay]


# --8<-- [start:auth-card]
def sse_event(event: GenieEvent) -> tuple[str, dict[str, Any]]:
    """The SSE event name and JSON data the page renders for a genie event (``type`` is
    the genie's own event type, for logs and tests)."""
    name, data = _render(event)
    return name, {"type": event.type, **data}


def _render(event: GenieEvent) -> tuple[str, dict[str, Any]]:
    match event:
        case AgentMessage():
            return "reply", {"text": event.text, "message_id": event.message_id}
        case SkillRunning():
            return "skill", {"call_id": event.call_id, "name": event.skill_name, "state": "running"}
        case SkillCompleted() | SkillStopped():
            return "skill", {"call_id": event.call_id, "name": event.skill_name, "state": "done"}
        case SkillFailed():
            return "skill", {"call_id": event.call_id, "name": event.skill_name, "state": "failed"}
        case SkillConfirmationRequired():
            return "confirmation", confirmation_card(event)
        case RuntimeConnectionAuthRequired():
            return "auth", auth_card(event.runtime_connection_attempt_id, event.auth_link)
        case _:
            # processing.started/finished, and types this version does not know: the page
            # needs only their ids, so that a reconnect resumes after them.
            return "progress", {}


def auth_card(attempt_id: str | None, link: AuthLink | None) -> dict[str, Any]:
    """What the page needs for a runtime-connection card. The turn goes on by itself once
    the user has authorized (the stream polls for it): the card needs no button back."""
    return {
        "attempt_id": attempt_id,
        "connector": link.connector_name if link else None,
        "url": link.url if link else None,  # None: the link is not known yet; it follows
        "expires_at": link.expires_at if link else None,
    }


# --8<-- [end:auth-card]


def confirmation_card(event: SkillConfirmationRequired) -> dict[str, Any]:
    labels = {p.name: p.label for p in event.skill_parameter_schema if p.name and p.label}
    return {
        "call_id": event.call_id,
        "skill": event.skill_name,
        "parameters": [
            {"label": labels.get(name, name), "value": str(value)}
            for name, value in event.skill_parameters.items()
        ],
    }


# --8<-- [start:confirmation-endpoint]
async def decide(request: web.Request) -> web.StreamResponse:
    """Approve or reject a skill confirmation the page showed."""
    turn = owned_turn(request)
    call_id = request.match_info["call_id"]
    body = await read_json(request)
    decision, reason = body.get("decision"), body.get("reason")
    if decision not in ("approve", "reject") or not isinstance(reason, (str, type(None))):
        raise json_error(web.HTTPBadRequest, 'Send {"decision": "approve" | "reject"}.')
    stream = turn.live
    waiting = {c.call_id for c in stream.pending_confirmations} if stream else set()
    if stream is None or (call_id not in waiting and call_id not in stream.decisions):
        # Not connected right now (the page reconnects by itself and is asked again), or
        # not a confirmation this turn is waiting on.
        raise json_error(web.HTTPConflict, "This confirmation is not waiting for a decision.")
    try:
        if decision == "approve":
            record = await stream.approve(call_id)
        else:
            record = await stream.reject(reason, call_id=call_id)
    except (UsageError, StreamClosedError) as exc:  # being decided right now, or just closed
        raise json_error(web.HTTPConflict, exc.message) from None
    except NotFoundError as exc:
        raise json_error(web.HTTPConflict, exc.message) from None
    except GenieError as exc:
        raise upstream_error(exc) from exc
    # The cursors kept for the SSE ids up to the card predate the decision: record it in
    # them, so that a page reconnecting with one of those ids is not asked again.
    for index, kept in enumerate(turn.cursors):
        pending = kept.pending_confirmation
        if pending is not None and pending.call_id == call_id:
            turn.cursors[index] = msgspec.structs.replace(
                kept,
                pending_confirmation=None,
                decided={**kept.decided, call_id: record.resolution},
            )
    # `resolution` may differ from what was asked: e.g. already rejected by the timeout.
    return web.json_response({"resolution": record.resolution, "source": record.source})


# --8<-- [end:confirmation-endpoint]


def upstream_error(exc: GenieError) -> web.HTTPException:
    log.warning("genie call failed: %s", exc)
    return json_error(web.HTTPBadGateway, f"The genie could not be reached: {exc.message}")


def create_app(
    settings: GenieSettings, end_users: EndUsers, *, secure_cookies: bool = True
) -> web.Application:
    """The app. ``secure_cookies=False`` only for plain HTTP on loopback (the demo)."""
    app = web.Application(middlewares=[identify])
    app[GENIE_SETTINGS] = settings
    app[SECURE_COOKIES] = secure_cookies
    app[END_USERS] = end_users
    app[SESSIONS] = Recent(MAX_SESSIONS)
    app[TURNS] = Recent(MAX_TURNS)
    app.cleanup_ctx.append(genie_client_context)
    app.on_shutdown.append(close_live_turns)
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC_DIR)
    app.router.add_post("/api/conversations", create_conversation)
    app.router.add_post("/api/conversations/{conversation_id}/messages", post_message)
    app.router.add_get("/api/turns/{turn_id}/events", turn_events)
    app.router.add_post("/api/turns/{turn_id}/confirmations/{call_id}", decide)
    return app


# --- running it ------------------------------------------------------------------------------


def script_demo_genie(sim: GenieSimulator) -> None:
    """What the simulated genie does: a reply after a skill, a confirmation, a connection."""
    sim.on_message(
        lambda text: "pto" in text.lower() or "balance" in text.lower(),
        Turn(
            Say("Let me look that up…"),
            Skill("Get PTO balance", duration=0.4),
            Say("You have **12 days** of PTO left this year.", delay=0.2),
        ),
    )
    sim.on_message(
        lambda text: "book" in text.lower() or "time off" in text.lower(),
        Turn(
            Say("I can submit this request for you."),
            Confirm(
                "Submit Time Off Request",
                parameters={"start_date": "2026-12-21", "end_date": "2026-12-23", "type": "PTO"},
                schema=[
                    {"name": "start_date", "label": "First day"},
                    {"name": "end_date", "label": "Last day"},
                    {"name": "type", "label": "Type"},
                ],
                on_approve=[
                    Skill("Submit Time Off Request", duration=0.3),
                    Say("Done: **Dec 21-23** are booked off. Enjoy the break!"),
                ],
                on_reject=[Say("Okay, I did not submit anything.")],
            ),
        ),
    )
    sim.on_message(
        lambda text: "deal" in text.lower() or "salesforce" in text.lower(),
        Turn(
            Say("I need access to your Salesforce account for that."),
            ConnectAuth(
                "Salesforce",
                then=[Say("You have **3** open opportunities, worth $42,000 in total.")],
            ),
        ),
    )
    sim.default_turn = Turn(
        Say(
            "You said: *{message}*. Try asking for your PTO balance, to book time off, "
            "or about your Salesforce deals."
        )
    )


def settings_from_environment(args: argparse.Namespace) -> GenieSettings:
    """The genie from the command line or GENIE_ID, the credentials from the environment
    (never the command line: shell history keeps it), as ``genie-async chat`` does."""
    genie_id = args.genie or os.environ.get("GENIE_ID")
    api_key, user_id = os.environ.get("GENIE_API_KEY"), os.environ.get("GENIE_USER_ID")
    data_center = args.data_center or os.environ.get("GENIE_DATA_CENTER")
    base_url = args.base_url or os.environ.get("GENIE_BASE_URL")
    if not (genie_id and api_key and user_id and (data_center or base_url)):
        raise SystemExit(
            "Pass --simulator, or --genie (or GENIE_ID) with --data-center (or "
            "GENIE_DATA_CENTER) and GENIE_API_KEY + GENIE_USER_ID in the environment: a genie "
            "client API key (as_user() needs one) and a default end user's Workato Identity id."
        )
    return GenieSettings(
        genie_id,
        api_key,
        user_id,
        data_center=data_center,
        base_url=None if data_center else base_url,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--simulator", action="store_true", help="serve a simulated genie")
    parser.add_argument("--genie", help="the genie id (gin-…); default $GENIE_ID")
    parser.add_argument("--data-center", help="us, eu, jp, sg, au, il or in")
    parser.add_argument("--base-url", help="an explicit API origin instead of a data center")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    return parser.parse_args(argv)


# --8<-- [start:serve]
async def serve(args: argparse.Namespace) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if args.simulator:
            sim = await stack.enter_async_context(GenieSimulator(ping_interval=5.0))
            script_demo_genie(sim)
            settings = GenieSettings(sim.genie_id, sim.api_key, sim.user_id, base_url=sim.url)
            end_users = simulator_end_users(sim)
        else:
            settings = settings_from_environment(args)
            end_users = single_end_user(settings.user_id)
        # handler_cancellation: when a page goes away, aiohttp cancels its handler, which
        # closes that turn's genie stream at once instead of at its next write.
        # Browsers drop a Secure cookie sent over plain HTTP: only loopback may go without.
        loopback = args.host in ("127.0.0.1", "::1", "localhost")
        app = create_app(settings, end_users, secure_cookies=not loopback)
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)  # on_shutdown, then the client closes
        await web.TCPSite(runner, args.host, args.port).start()
        log.info("serving the genie chat on http://%s:%d/ (Ctrl-C to stop)", args.host, args.port)
        await shutdown_requested()


async def shutdown_requested() -> None:
    """Wait for SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


# --8<-- [end:serve]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
