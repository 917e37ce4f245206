"""The runtime API (reference §3.1, §4) as an `aiohttp.web.Application`: the route table."""

from __future__ import annotations

from aiohttp import web

from ._conversations import (
    MAX_UPLOAD_BYTES,
    create_conversation,
    delete_conversation,
    feedback,
    get_conversation,
    list_conversations,
    list_events,
    list_messages,
    upload,
)
from ._endpoint import Call, endpoint
from ._http import not_found
from ._state import World
from ._turn_routes import (
    authorize_page,
    business_approval,
    connection_link,
    connection_reject,
    reconnect,
    send_message,
    skill_approval,
)

__all__ = ["build_app"]

BASE = "/api/v1/genies/{genie}/chat"


async def unknown(call: Call) -> web.StreamResponse:
    raise not_found("Route")


def build_app(world: World) -> web.Application:
    """The runtime API application serving ``world``."""
    app = web.Application(client_max_size=MAX_UPLOAD_BYTES)
    conv = BASE + "/conversations/{cid}"
    routes = [
        ("GET", BASE + "/conversations", "list_conversations", list_conversations),
        ("POST", BASE + "/conversations", "create_conversation", create_conversation),
        ("GET", BASE + "/conversations/events", "events", list_events),
        ("GET", conv, "get_conversation", get_conversation),
        ("DELETE", conv, "delete_conversation", delete_conversation),
        ("POST", conv + "/messages", "send", send_message),
        ("GET", conv + "/messages", "messages", list_messages),
        ("GET", conv + "/genie-runs/{run}", "reconnect", reconnect),
        ("POST", conv + "/genie-runs/{run}/feedback", "feedback", feedback),
        ("POST", conv + "/upload", "upload", upload),
        ("POST", conv + "/skill_approval/{call_id}", "skill_approval", skill_approval),
        ("POST", conv + "/business_approval/{call_id}", "business_approval", business_approval),
        ("POST", BASE + "/runtime_connection/{attempt}/link", "link", connection_link),
        ("POST", BASE + "/runtime_connection/{attempt}/reject", "reject", connection_reject),
    ]
    for method, path, name, handler in routes:
        app.router.add_route(method, path, endpoint(world, name, handler), name=name)
    app.router.add_get(
        "/sim/runtime_connection/{attempt}/authorize",
        endpoint(world, "sim_authorize", authorize_page, public=True),
    )
    app.router.add_route("*", "/{tail:.*}", endpoint(world, "unknown", unknown, public=True))
    return app
