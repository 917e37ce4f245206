"""The per-request pipeline shared by every route: request id, log record, HTTP faults,
access checks, error rendering."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from ._http import ApiError, authenticate, error_response, fault_response, not_found
from ._model import SimConversation, SimRun
from ._records import RequestRecord
from ._state import World

__all__ = ["Call", "Handler", "endpoint"]

_REDACTED = frozenset({"authorization", "x-idp-user-id"})
_decode = msgspec.json.Decoder().decode


@dataclass
class Call:
    """One request as the handlers see it."""

    request: web.Request
    world: World
    request_id: str
    record: RequestRecord
    user_id: str = ""
    body: Any = None
    raw_body: bytes = field(default=b"", repr=False)

    def conversation(self, cid: str | None = None) -> SimConversation:
        """The caller's conversation (another user's id is indistinguishable from unknown)."""
        if cid is None:
            cid = self.request.match_info["cid"]
        conv = self.world.conversations.get(cid)
        if conv is None or conv.user_id != self.user_id:
            raise not_found("Conversation")
        return conv

    def run(self, conv: SimConversation) -> SimRun:
        """The run named in the path, within ``conv``."""
        run = conv.runs_by_id.get(self.request.match_info["run"])
        if run is None:
            raise not_found("Genie run")
        return run

    def json_object(self) -> dict[str, Any]:
        """The JSON body as an object (absent body = ``{}``), else 400."""
        if not self.raw_body.strip():
            return {}
        if not isinstance(self.body, dict):
            raise ApiError(400, "invalid_request", "The request body must be a JSON object.")
        return self.body


Handler = Callable[[Call], Awaitable[web.StreamResponse]]


def endpoint(
    world: World, route: str, handler: Handler, *, public: bool = False
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap ``handler`` with logging, fault injection and (unless ``public``) access checks."""

    async def handle(request: web.Request) -> web.StreamResponse:
        request_id = world.ids.request_id()
        if not world.base_url:
            # Mounted in someone else's server (sim.app): learn our origin for auth links.
            world.base_url = str(request.url.origin())
        headers = {
            name: "<redacted>" if name.lower() in _REDACTED else value
            for name, value in request.headers.items()
        }
        record = RequestRecord(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=headers,
            json=None,
            idempotency_key=request.headers.get("Idempotency-Key"),
            status=0,
            request_id=request_id,
            route=route,
            has_auth="Authorization" in request.headers,
            received_at=time.monotonic(),
        )
        world.log.append(record)
        call = Call(request, world, request_id, record)
        try:
            if route != "upload":
                await _read_json(call)
            fault = world.faults.take(route)
            if fault is not None:
                if fault.kind == "reset":
                    # A reset before any response: the client sees the connection drop.
                    if request.transport is not None:
                        request.transport.abort()
                    return web.Response(status=500)
                response: web.StreamResponse = fault_response(world, fault, request_id)
            else:
                if not public:
                    _check_access(call)
                response = await handler(call)
        except ApiError as exc:
            response = error_response(world, exc.status, exc.code, exc.message, request_id)
        if not response.prepared:
            response.headers["x-request-id"] = request_id
        record.status = response.status
        return response

    return handle


async def _read_json(call: Call) -> None:
    if not call.request.body_exists:
        return
    try:
        call.raw_body = await call.request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(400, "invalid_request", "The request body is too large.") from None
    try:
        call.body = _decode(call.raw_body) if call.raw_body.strip() else None
    except msgspec.DecodeError:
        call.body = None
    call.record.json = call.body


def _check_access(call: Call) -> None:
    """Gateway and genie checks, in order: propagation window, credentials, headless
    enablement, attached client, genie handle."""
    world = call.world
    flags = world.flags
    if world.clock.now() < world.provisioned_at + flags.propagation_window:
        raise ApiError(403, "access_denied", "Access denied.")
    user_id, error = authenticate(world, call.request.headers)
    call.record.user_id = user_id
    if error is not None:
        raise error
    assert user_id is not None
    call.user_id = user_id
    if not flags.headless_enabled:
        raise ApiError(
            403, "headless_not_enabled", "The Headless API is not enabled for this workspace."
        )
    if not flags.client_attached:
        raise ApiError(406, "no_client_attached", "No genie client is attached to this genie.")
    if call.request.match_info.get("genie") != world.genie_id:
        raise ApiError(404, "not_found", "Genie not found.")
