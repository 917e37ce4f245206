"""The runtime API (reference §3.1, §4) as an `aiohttp.web.Application`: the route table.

The Developer API stubs (reference §10) are served by the same app (`_admin_routes`)."""

from __future__ import annotations

import datetime
import email.utils

from aiohttp import web

from ._admin_routes import add_admin_routes
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

    async def stamp_date(request: web.Request, response: web.StreamResponse) -> None:
        # The Date header follows the simulator's clock, like every created_at it serves, so
        # a test that moves the clock sees one consistent notion of "now".
        now = datetime.datetime.fromtimestamp(world.clock.now(), tz=datetime.timezone.utc)
        response.headers["Date"] = email.utils.format_datetime(now, usegmt=True)

    app.on_response_prepare.append(stamp_date)
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
    add_admin_routes(app, world)
    app.router.add_get(
        "/sim/runtime_connection/{attempt}/authorize",
        endpoint(world, "sim_authorize", authorize_page, public=True),
    )
    app.router.add_route("*", "/{tail:.*}", endpoint(world, "unknown", unknown, public=True))
    return app
