"""The Olbrain simulator's request pipeline: request ids, the request log, faults,
authentication and kind gating (§4.0 check order), bounded body reading, idempotent replay
and error rendering (§8)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from ._olbrain_faults import OlbrainFault
from ._olbrain_model import AgentKind, OlbrainAgent, OlbrainRequest, OlbrainRun, OlbrainSession
from ._olbrain_state import OlbrainWorld, Reply

__all__ = [
    "MAX_BODY_BYTES",
    "Call",
    "Handler",
    "OlbrainError",
    "endpoint",
    "field_error",
    "int_param",
    "render",
]

#: The trigger body limit (§10): 1 MiB; larger bodies get 413 without being parsed.
MAX_BODY_BYTES = 1 << 20
_CHUNK = 64 * 1024
_BEARER = re.compile(r"Bearer (ak_[A-Za-z0-9_\-.]+)")
_REDACTED = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})
_IDEMPOTENCY_FIELDS = ("Idempotency-Key", "idempotency_key")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_UNPARSED = object()


class OlbrainError(Exception):
    """Raised by handlers; rendered as the ``{"error": {…}}`` envelope (§8.1).

    ``extra`` adds keys inside ``error`` (the 422 ``fields`` list, §12 row 10).
    """

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def field_error(fields: list[dict[str, str]]) -> OlbrainError:
    """422 ``validation_error`` naming each offending field."""
    names = ", ".join(entry["field"] for entry in fields)
    return OlbrainError(
        422, "validation_error", f"The request failed validation: {names}.", fields=fields
    )


@dataclass
class Call:
    """One request as the handlers see it."""

    request: web.Request
    world: OlbrainWorld
    record: OlbrainRequest
    agent: OlbrainAgent | None = None
    raw_body: bytes = field(default=b"", repr=False)
    too_large: bool = False
    parsed: Any = field(default=_UNPARSED, repr=False)
    replay_slot: tuple[str, str, str] | None = None

    @property
    def request_id(self) -> str:
        """This request's ``req_…`` id."""
        return self.record.request_id

    def the_agent(self) -> OlbrainAgent:
        """The authorized agent of the path."""
        assert self.agent is not None
        return self.agent

    def run(self) -> OlbrainRun:
        """The path's run, which must belong to the path's agent (404 ``run_not_found``)."""
        run = self.world.runs.get(self.request.match_info["run_id"])
        if run is None or run.agent_id != self.the_agent().agent_id:
            raise OlbrainError(404, "run_not_found", "Run not found.")
        return run

    def session(self, session_id: str | None = None) -> OlbrainSession:
        """The session (default: the path's), which must belong to the path's agent."""
        if session_id is None:
            session_id = self.request.match_info["session_id"]
        session = self.world.sessions.get(session_id)
        if session is None or session.agent_id != self.the_agent().agent_id:
            raise OlbrainError(404, "session_not_found", "Session not found.")
        return session

    def json_object(self, *, required: bool) -> dict[str, Any]:
        """The JSON body as an object: 413 over 1 MiB (never parsed), 400 if unparseable
        (or absent when ``required``), 422 if not an object; an optional absent body is
        ``{}``."""
        if self.too_large:
            raise OlbrainError(
                413,
                "payload_too_large",
                "The request body exceeds 1 MiB. Upload large payloads and reference the fi_* id.",
            )
        if not self.raw_body.strip():
            if required:
                raise OlbrainError(400, "bad_request", "The request body is empty.")
            return {}
        if self.parsed is _UNPARSED:
            raise OlbrainError(400, "bad_request", "The request body is not valid JSON.")
        if not isinstance(self.parsed, dict):
            raise field_error([{"field": "body", "message": "Must be a JSON object."}])
        return self.parsed

    def idempotency_key(self, body: dict[str, Any]) -> str | None:
        """The body's idempotency key (§9.3 spelling first), recorded in the log; 422 if not
        a non-empty string."""
        for name in _IDEMPOTENCY_FIELDS:
            if name in body:
                value = body[name]
                if not isinstance(value, str) or not value:
                    raise field_error([{"field": name, "message": "Must be a non-empty string."}])
                self.record.idempotency_key = value
                return value
        return None

    async def once(
        self, scope: str, key: str | None, operation: Callable[[], Awaitable[Reply]]
    ) -> Reply:
        """Perform ``operation`` once per ``(agent, scope, key)`` in replay mode (the opt-in
        switch; by default, "off", every request performs it).

        A repeat (even concurrent) gets the first successful answer without performing
        anything. The operation runs as a shielded task, so a client that disconnects (or a
        502 ``upstream_timeout``) does not stop it, and its answer is still cached for the
        retry.
        """
        world = self.world
        if key is None or world.idempotency != "replay":
            return await asyncio.shield(world.spawn(operation()))
        slot = (self.the_agent().agent_id, scope, key)
        previous = world.replays.get(slot)
        if previous is not None:
            first = await asyncio.shield(previous)
            if first is not None:
                self.record.replayed = True
                return first
        future: asyncio.Future[Reply | None] = asyncio.get_running_loop().create_future()
        world.replays[slot] = future
        task = world.spawn(operation())

        def settle(done: asyncio.Task[Reply]) -> None:
            reply = None
            if not done.cancelled() and done.exception() is None:
                reply = done.result()
            if reply is None or reply.status >= 300:
                # Only successes are remembered: a retry after an error tries again.
                if world.replays.get(slot) is future:
                    del world.replays[slot]
                reply = None
            if not future.done():
                future.set_result(reply)

        task.add_done_callback(settle)
        return await asyncio.shield(task)


Handler = Callable[[Call], Awaitable["Reply | web.StreamResponse"]]


def render(reply: Reply, request_id: str) -> web.Response:
    """A JSON response carrying ``x-request-id`` (§12 row 12)."""
    return web.Response(
        status=reply.status,
        body=_encode(reply.payload),
        content_type="application/json",
        headers={"x-request-id": request_id},
    )


def error_reply(error: OlbrainError, request_id: str) -> Reply:
    """The §8.1 envelope for ``error``."""
    body = {"code": error.code, "message": error.message, "request_id": request_id}
    body.update(error.extra)
    return Reply(error.status, {"error": body})


def fault_response(request: web.Request, fault: OlbrainFault, request_id: str) -> web.Response:
    """The response a fault substitutes (status 0 aborts the connection instead)."""
    if fault.status == 0:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)  # never delivered: the transport is gone
    headers = {"x-request-id": request_id}
    if fault.retry_after is not None:
        headers["Retry-After"] = fault.retry_after
    payload = fault.payload(request_id)
    if payload is None:
        text = fault.text or ""
        return web.Response(
            status=fault.status, text=text, content_type="text/html", headers=headers
        )
    return web.Response(
        status=fault.status,
        body=_encode(payload),
        content_type="application/json",
        headers=headers,
    )


def endpoint(
    world: OlbrainWorld,
    route: str,
    handler: Handler,
    *,
    kinds: Collection[AgentKind] | None = ("conversational", "workflow"),
    read_body: bool = True,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap ``handler``: log, faults, then (unless ``kinds`` is None: a public route)
    authentication, agent lookup and kind gating, in the §4.0 order."""

    async def handle(request: web.Request) -> web.StreamResponse:
        request_id = world.ids.request_id()
        record = OlbrainRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={
                name: "<redacted>" if name.lower() in _REDACTED else value
                for name, value in request.headers.items()
            },
            route=route,
            request_id=request_id,
            agent_id=request.match_info.get("agent_id"),
            received_at=time.monotonic(),
        )
        world.requests.append(record)
        call = Call(request, world, record)
        fault = world.faults.take(request.method, request.path, after_accept=False)
        if fault is not None:
            response: web.StreamResponse = fault_response(request, fault, request_id)
        else:
            try:
                if read_body:
                    await _read_body(call)
                if kinds is not None:
                    _authorize(call, kinds)
                outcome = await handler(call)
            except OlbrainError as exc:
                outcome = error_reply(exc, request_id)
            if isinstance(outcome, Reply):
                late = None
                if outcome.status < 300:
                    late = world.faults.take(request.method, request.path, after_accept=True)
                if late is not None:
                    response = fault_response(request, late, request_id)
                else:
                    response = render(outcome, request_id)
                    if record.replayed:
                        response.headers["Idempotent-Replayed"] = "true"
            else:
                response = outcome
        record.status = 0 if fault is not None and fault.status == 0 else response.status
        return response

    return handle


async def _read_body(call: Call) -> None:
    """Read at most 1 MiB + 1 bytes: a declared or streamed larger body is flagged (413 at
    validation time, §4.0 step 5) and never buffered whole nor parsed."""
    request = call.request
    if not request.body_exists:
        return
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        call.too_large = True
        return
    data = bytearray()
    while True:
        chunk = await request.content.read(_CHUNK)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_BODY_BYTES:
            call.too_large = True
            return
    call.raw_body = bytes(data)
    if call.raw_body.strip():
        try:
            call.parsed = _decode(call.raw_body)
        except msgspec.DecodeError:
            return
        call.record.json = call.parsed


def _authorize(call: Call, kinds: Collection[AgentKind]) -> None:
    """401 ``unauthorized``, then uniform 404 ``agent_not_found``, then 400
    ``runtime_not_applicable`` (§3, §4.0)."""
    world = call.world
    header = call.request.headers.get("Authorization", "")
    match = _BEARER.fullmatch(header)
    if match is None:
        raise OlbrainError(401, "unauthorized", "Authorization header is missing or malformed.")
    key = world.keys.get(match.group(1))
    if key is None or not key.active:
        raise OlbrainError(401, "unauthorized", "The access key is invalid, revoked or expired.")
    agent = world.agents.get(call.request.match_info.get("agent_id", ""))
    if agent is None or agent.organization_id != key.organization_id:
        # Same answer for "missing" and "another org's": don't leak which (§3.1).
        raise OlbrainError(404, "agent_not_found", "Agent not found.")
    if agent.kind not in kinds:
        other = "workflow" if agent.kind == "conversational" else "conversational"
        raise OlbrainError(
            400,
            "runtime_not_applicable",
            f"This endpoint applies to {other} agents only; this agent is {agent.kind}.",
        )
    call.agent = agent


def int_param(
    call: Call, name: str, default: int, *, minimum: int, maximum: int | None = None
) -> int:
    """Integer query parameter ``name``: 422 if not an integer or below ``minimum``; clamped
    to ``maximum`` (the docs say "capped", not "rejected")."""
    raw = call.request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise field_error([{"field": name, "message": "Must be an integer."}]) from None
    if value < minimum:
        raise field_error([{"field": name, "message": f"Must be >= {minimum}."}])
    return value if maximum is None else min(value, maximum)
