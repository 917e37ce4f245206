"""The Olbrain agent API (§4.0 catalogue) as an `aiohttp.web.Application`: the route table,
the E2 upload, the signed output-file URLs and the catch-alls."""

from __future__ import annotations

import hashlib
import mimetypes
from typing import Any

from aiohttp import BodyPartReader, web

from ._olbrain_http import Call, OlbrainError, endpoint
from ._olbrain_model import AgentKind, OlbrainUpload
from ._olbrain_runs import (
    control,
    get_run,
    list_approvals,
    list_runs,
    resolve_approval,
    workflow_trigger,
)
from ._olbrain_sessions import get_message, get_session, list_messages, list_sessions, trigger
from ._olbrain_state import OlbrainWorld, Reply

__all__ = ["build_olbrain_app"]

_KEEP_CONTENT = 8 << 20  # uploads up to 8 MiB stay inspectable in sim.uploads
_CHUNK = 64 * 1024
_EXPIRED = (
    "<?xml version='1.0' encoding='UTF-8'?><Error><Code>ExpiredToken</Code>"
    "<Message>The provided token has expired.</Message></Error>"
)
_BAD_SIGNATURE = (
    "<?xml version='1.0' encoding='UTF-8'?><Error><Code>SignatureDoesNotMatch</Code>"
    "<Message>The request signature we calculated does not match the signature you "
    "provided.</Message></Error>"
)


async def upload(call: Call) -> Reply:
    """E2: one multipart part named ``file``, streamed (never buffered past 8 MiB)."""
    request = call.request
    if request.content_type != "multipart/form-data":
        raise OlbrainError(
            415,
            "unsupported_media_type",
            "Send multipart/form-data with one part named file.",
        )
    cap = call.world.max_upload_bytes
    if cap is not None and request.content_length is not None and request.content_length > cap:
        raise OlbrainError(413, "payload_too_large", "The file is too large.")
    try:
        reader = await request.multipart()
        found: dict[str, Any] | None = None
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name != "file":
                await part.release()  # extra parts are ignored, as form fields would be
                continue
            if found is not None:
                raise OlbrainError(400, "bad_request", "Send exactly one part named file.")
            found = await _receive(part, cap)
    except (ValueError, AssertionError, KeyError) as exc:
        # aiohttp's multipart reader signals a malformed body (no boundary, bad framing) so.
        raise OlbrainError(400, "bad_request", "The multipart body is malformed.") from exc
    if found is None or found["size"] == 0:
        raise OlbrainError(400, "bad_request", "Send one non-empty part named file.")
    world = call.world
    record = OlbrainUpload(
        file_id=world.ids.file_id(),
        agent_id=call.the_agent().agent_id,
        filename=found["filename"],
        content_type=found["content_type"],
        size_bytes=found["size"],
        sha256=found["sha256"],
        created_at=world.clock.now(),
        content=found["content"],
    )
    world.uploads[record.file_id] = record
    return Reply(
        200,
        {
            "file_id": record.file_id,
            "size_bytes": record.size_bytes,
            "content_type": record.content_type,
            "filename": record.filename,
        },
    )


async def _receive(part: BodyPartReader, cap: int | None) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    kept: bytearray | None = bytearray()
    while chunk := await part.read_chunk(_CHUNK):
        size += len(chunk)
        if cap is not None and size > cap:
            raise OlbrainError(413, "payload_too_large", "The file is too large.")
        digest.update(chunk)
        if kept is not None:
            kept += chunk
            if len(kept) > _KEEP_CONTENT:
                kept = None
    content_type = part.headers.get("Content-Type") or "application/octet-stream"
    return {
        "filename": part.filename,
        "content_type": content_type,
        "size": size,
        "sha256": digest.hexdigest(),
        "content": bytes(kept) if kept is not None else None,
    }


async def signed_file(call: Call) -> web.StreamResponse:
    """A signed output-file URL: 403 (XML, as cloud storage answers) once expired or when the
    signature is unknown or for another file."""
    world = call.world
    info = world.signed.get(call.request.query.get("X-Goog-Signature", ""))
    run_id = call.request.match_info["run_id"]
    name = call.request.match_info["name"]
    if info is None or (info.run_id, info.name) != (run_id, name):
        return web.Response(status=403, text=_BAD_SIGNATURE, content_type="application/xml")
    if world.clock.now() >= info.expires_at:
        return web.Response(status=403, text=_EXPIRED, content_type="application/xml")
    run = world.runs[run_id]
    content = world.agents[run.agent_id].output_files.get(name, b"")
    guessed = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return web.Response(body=content, content_type=guessed)


async def research(call: Call) -> Reply:
    """Research routes need an Olbrain sign-in: an ``ak_`` key gets 404 (§4.12)."""
    raise OlbrainError(404, "agent_not_found", "Agent not found.")


async def unknown(call: Call) -> Reply:
    """Any other path or method."""
    raise OlbrainError(404, "not_found", "Route not found.")


def build_olbrain_app(world: OlbrainWorld) -> web.Application:
    """The aiohttp application serving ``world``."""
    # Bodies are read by hand with explicit caps (1 MiB JSON, streamed uploads).
    app = web.Application(client_max_size=1 << 40)
    agents = "/api/agents/{agent_id}"
    run = agents + "/runs/{run_id}"
    session = agents + "/sessions/{session_id}"
    workflow = ("workflow",)
    chat = ("conversational",)
    routes: list[tuple[str, str, str, Any, Any]] = [
        ("POST", "/api/agents/webhook/{agent_id}", "trigger", trigger, None),
        (
            "POST",
            "/api/workflows/{agent_id}/trigger",
            "workflow_trigger",
            workflow_trigger,
            workflow,
        ),
        ("POST", agents + "/upload", "upload", upload, None),
        ("GET", agents + "/runs", "list_runs", list_runs, workflow),
        ("GET", run, "get_run", get_run, workflow),
        ("POST", run + "/cancel", "cancel_run", control("cancel"), workflow),
        ("POST", run + "/pause", "pause_run", control("pause"), workflow),
        ("POST", run + "/retry", "retry_run", control("retry"), workflow),
        ("POST", run + "/resume", "resume_run", control("resume"), workflow),
        ("GET", run + "/approvals", "list_approvals", list_approvals, workflow),
        ("POST", run + "/approvals/resolve", "resolve_approval", resolve_approval, workflow),
        ("GET", agents + "/sessions", "list_sessions", list_sessions, chat),
        ("GET", session, "get_session", get_session, chat),
        ("GET", session + "/messages", "list_messages", list_messages, chat),
        ("GET", session + "/messages/{message_id}", "get_message", get_message, chat),
    ]
    for method, path, name, handler, kinds in routes:
        gate: tuple[AgentKind, ...] = kinds or ("conversational", "workflow")
        app.router.add_route(
            method,
            path,
            endpoint(world, name, handler, kinds=gate, read_body=name != "upload"),
            name=name,
        )
    app.router.add_route("*", agents + "/research{tail:.*}", endpoint(world, "research", research))
    app.router.add_get("/_files/{run_id}/{name}", endpoint(world, "file", signed_file, kinds=None))
    app.router.add_route("*", "/{tail:.*}", endpoint(world, "unknown", unknown, kinds=None))
    return app
