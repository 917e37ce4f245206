"""The Developer API stubs (reference §10): genies (get, start, stop), genie clients (list,
create, regenerate, attach, detach, delete) and the IAM user lookup.

In production these live on another host (``www.workato.com``); the simulator serves them
from the same app, under ``/api/agentic/…`` and ``/api/iam/…``. They authenticate with the
``wrkaus-`` Developer API token, answer ``{"data": …}`` (or flat, per the switch) and, on
failure, ``{"message": …}`` (reference §12 rows 37-38; the runtime's three-key error body is
not used here). HTTP faults (`GenieSimulator.fail`) use the route names in `ADMIN_ROUTES`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import msgspec
from aiohttp import web

from ._admin_state import (
    SimGenieClient,
    attach_client,
    create_client,
    delete_client,
    detach_client,
    regenerate_key,
)
from ._endpoint import Call, endpoint
from ._faults import HttpFault
from ._state import World

__all__ = ["ADMIN_ROUTES", "AdminHttpFault", "add_admin_routes"]

_encode = msgspec.json.Encoder().encode

AdminRouteName = Literal[
    "admin_get_genie",
    "admin_start_genie",
    "admin_stop_genie",
    "admin_find_users",
    "admin_list_clients",
    "admin_create_client",
    "admin_regenerate_key",
    "admin_attach_client",
    "admin_detach_client",
    "admin_delete_client",
]
#: Developer API route names accepted by `GenieSimulator.fail` and used in
#: `RequestRecord.route`.
ADMIN_ROUTES: frozenset[str] = frozenset(get_args(AdminRouteName))

_GENIES = "/api/agentic/genies"
_NO_PERMISSION = "You do not have permission to perform this action."
_CLIENT_NAME_MAX = 100


@dataclass(frozen=True)
class AdminHttpFault(HttpFault):
    """An `HttpFault` for a Developer API route (`ADMIN_ROUTES`)."""

    def __post_init__(self) -> None:
        if self.route not in ADMIN_ROUTES:
            expected = sorted(ADMIN_ROUTES)
            raise ValueError(f"unknown route {self.route!r}; expected one of {expected}")
        # Every other rule is the runtime's: check them on a twin with a plain runtime route.
        HttpFault(**{**dataclasses.asdict(self), "route": "get_conversation"})


class AdminError(Exception):
    """Raised by the handlers below; answered as ``{"message": …}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


AdminHandler = Callable[[Call], Awaitable[web.Response]]


def _admin(handler: AdminHandler, privileges: frozenset[str]) -> AdminHandler:
    """Developer API token check, then the role's privileges, then ``handler``."""

    async def handle(call: Call) -> web.Response:
        try:
            _check_token(call, privileges)
            return await handler(call)
        except AdminError as exc:
            return web.Response(
                status=exc.status,
                body=_encode({"message": exc.message}),
                content_type="application/json",
            )

    return handle


def _check_token(call: Call, privileges: frozenset[str]) -> None:
    admin = call.world.admin
    if call.request.headers.get("Authorization") != f"Bearer {admin.developer_token}":
        raise AdminError(401, "Unauthorized: the API token is invalid.")
    if not privileges <= admin.privileges:
        raise AdminError(403, _NO_PERMISSION)


def _data(call: Call, payload: object, status: int = 200) -> web.Response:
    body = {"data": payload} if call.world.admin.envelope == "data" else payload
    return web.Response(status=status, body=_encode(body), content_type="application/json")


def _genie(call: Call) -> None:
    """404 unless the path names the simulated genie."""
    if call.request.match_info["genie"] != call.world.genie_id:
        raise AdminError(404, "Genie not found.")


def _client(call: Call) -> SimGenieClient:
    client = call.world.admin.clients.get(call.request.match_info["client"])
    if client is None:
        raise AdminError(404, "Genie client not found.")
    return client


def _body(call: Call) -> dict[str, Any]:
    if not call.raw_body.strip():
        return {}
    if not isinstance(call.body, dict):
        raise AdminError(400, "The request body must be a JSON object.")
    return call.body


def _genie_json(world: World) -> dict[str, Any]:
    admin = world.admin
    client = admin.clients.get(admin.attached or "")
    chat_interface = None
    if client is not None:
        chat_interface = {
            "type": "custom",
            "genie_client_id": client.client_id,
            "auth_type": client.auth_type,
        }
    return {
        "id": world.genie_id,
        "name": admin.genie_name,
        "state": "active" if world.flags.genie_started else "stopped",
        "chat_interface": chat_interface,
    }


# --- genies ----------------------------------------------------------------------------------


async def get_genie(call: Call) -> web.Response:
    """GET /api/agentic/genies/:id: ``chat_interface`` is null when no client is attached."""
    _genie(call)
    return _data(call, _genie_json(call.world))


async def start_genie(call: Call) -> web.Response:
    """POST /api/agentic/genies/:id/start: the runtime replies again."""
    _genie(call)
    call.world.flags.genie_started = True
    return _data(call, {"id": call.world.genie_id, "state": "active"})


async def stop_genie(call: Call) -> web.Response:
    """POST /api/agentic/genies/:id/stop: streams stay open with pings only."""
    _genie(call)
    call.world.flags.genie_started = False
    return _data(call, {"id": call.world.genie_id, "state": "stopped"})


# --- IAM -------------------------------------------------------------------------------------


async def find_users(call: Call) -> web.Response:
    """GET /api/iam/users?query=<email>: exact, case-insensitive email match (all without)."""
    query = call.request.query.get("query", "").strip().lower()
    users = [
        {"id": user.user_id, "email": user.email, "name": user.name, "status": user.status}
        for user in call.world.users.values()
        if not query or (user.email or "").lower() == query
    ]
    return _data(call, users)


# --- genie clients ---------------------------------------------------------------------------


async def list_clients(call: Call) -> web.Response:
    """GET /api/agentic/genies/clients[?genie_ids=a,b]: the workspace's clients, no keys."""
    wanted = {
        genie_id
        for key in ("genie_ids", "genie_ids[]")
        for value in call.request.query.getall(key, [])
        for genie_id in value.split(",")
        if genie_id
    }
    clients = [
        client.to_json()
        for client in call.world.admin.clients.values()
        if not wanted or client.genie_id in wanted
    ]
    return _data(call, clients)


async def create(call: Call) -> web.Response:
    """POST /api/agentic/genies/clients: a new client; the API key is shown this once."""
    body = _body(call)
    name = body.get("client_name")
    if not isinstance(name, str) or not name.strip():
        raise AdminError(422, "Client name can't be blank")
    if len(name) > _CLIENT_NAME_MAX:
        raise AdminError(422, f"Client name is too long (maximum is {_CLIENT_NAME_MAX} characters)")
    auth = body.get("auth")
    auth_type = auth.get("type") if isinstance(auth, dict) else None
    redirect = auth.get("oauth_redirect_url") if isinstance(auth, dict) else None
    if auth_type == "api_key":
        client = create_client(call.world, name, "api_key")
    elif auth_type == "oauth":
        if not isinstance(redirect, str) or not redirect.startswith(("https://", "http://")):
            raise AdminError(422, "OAuth redirect URL must be a valid URL")
        client = create_client(call.world, name, "oauth", redirect)
    else:
        raise AdminError(422, "Auth type must be 'api_key' or 'oauth'")
    return _data(
        call,
        {
            "client_id": client.client_id,
            "api_key": client.api_key,
            "oauth_client_id": client.oauth_client_id,
        },
    )


async def regenerate(call: Call) -> web.Response:
    """POST /api/agentic/genies/clients/:client_id/regenerate: the old key dies at once."""
    client = _client(call)
    if client.auth_type != "api_key":
        raise AdminError(422, "Only API key clients have an API key to regenerate")
    key = regenerate_key(call.world, client)
    return _data(call, {"client_id": client.client_id, "api_key": key})


async def attach(call: Call) -> web.Response:
    """POST /api/agentic/genies/:id/clients: 409 when the genie already has one (1:1)."""
    _genie(call)
    client_id = _body(call).get("genie_client_id")
    if not isinstance(client_id, str) or not client_id:
        raise AdminError(422, "Genie client can't be blank")
    client = call.world.admin.clients.get(client_id)
    if client is None:
        raise AdminError(404, "Genie client not found.")
    if call.world.admin.attached is not None:
        raise AdminError(409, "The genie already has a client attached.")
    attach_client(call.world, client)
    return _data(call, {"genie_id": call.world.genie_id, "genie_client_id": client.client_id})


async def detach(call: Call) -> web.Response:
    """DELETE /api/agentic/genies/:id/clients/:client_id: the runtime answers 406 after."""
    _genie(call)
    client = _client(call)
    if call.world.admin.attached != client.client_id:
        raise AdminError(404, "The genie client is not attached to this genie.")
    detach_client(call.world)
    return _data(call, {"success": True})


async def delete(call: Call) -> web.Response:
    """DELETE /api/agentic/genies/clients/:client_id (detaching it first if attached)."""
    delete_client(call.world, _client(call))
    return _data(call, {"success": True})


def add_admin_routes(app: web.Application, world: World) -> None:
    """Register the Developer API routes (before any catch-all route)."""
    genies = frozenset({"genies"})
    read_clients = frozenset({"genie_clients"})
    manage_clients = frozenset({"genie_clients", "custom_chat_interface"})
    genie = _GENIES + "/{genie}"
    client = _GENIES + "/clients/{client}"
    routes: list[tuple[str, str, str, AdminHandler, frozenset[str]]] = [
        # The literal /clients paths first: {genie} would match "clients" too.
        ("GET", _GENIES + "/clients", "admin_list_clients", list_clients, read_clients),
        ("POST", _GENIES + "/clients", "admin_create_client", create, manage_clients),
        ("POST", client + "/regenerate", "admin_regenerate_key", regenerate, manage_clients),
        ("DELETE", client, "admin_delete_client", delete, read_clients),
        ("GET", genie, "admin_get_genie", get_genie, genies),
        ("POST", genie + "/start", "admin_start_genie", start_genie, genies),
        ("POST", genie + "/stop", "admin_stop_genie", stop_genie, genies),
        ("POST", genie + "/clients", "admin_attach_client", attach, manage_clients),
        ("DELETE", genie + "/clients/{client}", "admin_detach_client", detach, read_clients),
        ("GET", "/api/iam/users", "admin_find_users", find_users, frozenset()),
    ]
    for method, path, name, handler, privileges in routes:
        wrapped = _admin(handler, privileges)
        app.router.add_route(method, path, endpoint(world, name, wrapped, public=True), name=name)
