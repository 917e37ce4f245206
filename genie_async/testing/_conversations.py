"""Routes for conversations and their records: list, create, get, delete, message history,
persisted events, uploads and feedback (reference §4.2 to §4.5, §4.8 to §4.10, §4.16)."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from aiohttp import BodyPartReader, web

from ._clock import format_timestamp, parse_timestamp
from ._endpoint import Call
from ._http import (
    ApiError,
    decode_cursor,
    empty,
    encode_cursor,
    invalid,
    not_found,
    ok,
    parse_limit,
)
from ._model import SimConversation, SimEvent, SimFile
from ._records import UploadRecord
from ._state import World

__all__ = [
    "create_conversation",
    "delete_conversation",
    "feedback",
    "get_conversation",
    "list_conversations",
    "list_events",
    "list_messages",
    "upload",
]

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
_CHUNK = 64 * 1024


def _raw(event: SimEvent | None) -> msgspec.Raw | None:
    # Events are spliced in exactly as they went out on the stream.
    return None if event is None else msgspec.Raw(event.data)


def _summary(world: World, conv: SimConversation) -> dict[str, Any]:
    updated = format_timestamp(conv.updated_stamp)
    return {
        "conversation_id": conv.conversation_id,
        "topic": world.topic_of(conv, generated=True),
        "created_at": format_timestamp(conv.created_stamp),
        "updated_at": updated,
        "last_updated_at": updated,
        "state": conv.state,
        "last_event": _raw(conv.last_event),
    }


def _page(items: list[Any], call: Call, key: str, default: int) -> dict[str, Any]:
    offset = decode_cursor(call.request.query)
    limit = parse_limit(call.request.query, default)
    body: dict[str, Any] = {key: items[offset : offset + limit], "total_count": len(items)}
    if offset + limit < len(items):
        body["cursor"] = encode_cursor(offset + limit)
    return body


async def list_conversations(call: Call) -> web.StreamResponse:
    """GET /conversations: most recently updated first, paged by an opaque cursor."""
    world = call.world
    mine = [c for c in world.conversations.values() if c.user_id == call.user_id]
    mine.sort(key=lambda c: (c.updated_stamp, c.created_stamp), reverse=True)
    key = "conversations" if world.config.envelope == "wrapped" else "list"
    items = [_summary(world, c) for c in mine]
    return ok(world, _page(items, call, key, 20), call.request_id)


async def create_conversation(call: Call) -> web.StreamResponse:
    """POST /conversations: 200 with the new conversation_id."""
    call.json_object()
    conv = call.world.new_conversation(call.user_id)
    return ok(call.world, {"conversation_id": conv.conversation_id}, call.request_id)


async def get_conversation(call: Call) -> web.StreamResponse:
    """GET /conversations/{cid}: state, last_event, topic (placeholder for a while)."""
    world = call.world
    conv = call.conversation()
    body: dict[str, Any] = {
        "state": conv.state,
        "last_event": _raw(conv.last_event),
        "topic": world.topic_of(conv, generated=False),
        "created_at": format_timestamp(conv.created_stamp),
        "updated_at": format_timestamp(conv.updated_stamp),
    }
    if world.config.envelope == "flat":
        # Production's wrapped form omits the id (reference §12 row 32).
        body = {"conversation_id": conv.conversation_id, **body}
    return ok(world, body, call.request_id)


async def delete_conversation(call: Call) -> web.StreamResponse:
    """DELETE /conversations/{cid}: 204 when enabled, else 404 (unconfirmed route)."""
    if not call.world.flags.enable_delete:
        raise not_found("Route")
    conv = call.conversation()
    if conv.task is not None:
        conv.task.cancel()
    del call.world.conversations[conv.conversation_id]
    return empty(204, call.request_id)


async def list_messages(call: Call) -> web.StreamResponse:
    """GET /conversations/{cid}/messages: history, newest first."""
    conv = call.conversation()
    items = [m.to_json() for m in reversed(conv.messages)]
    return ok(call.world, _page(items, call, "messages", 20), call.request_id)


async def list_events(call: Call) -> web.StreamResponse:
    """GET /conversations/events: persisted events oldest first, paged by created_at."""
    world = call.world
    query = call.request.query
    cid = query.get("conversation_id")
    if cid:
        convs = [call.conversation(cid)]
    else:
        convs = [c for c in world.conversations.values() if c.user_id == call.user_id]
    since: int | None = None
    if query.get("since_created_at"):
        try:
            since = parse_timestamp(query["since_created_at"])
        except ValueError:
            raise invalid("since_created_at must be an RFC 3339 timestamp.") from None
    limit = parse_limit(query, world.config.events_page_size)
    events = [e for conv in convs for e in world.visible_events(conv)]
    if since is not None:
        inclusive = world.config.events_inclusive
        events = [e for e in events if e.stamp > since or (inclusive and e.stamp == since)]
    events.sort(key=lambda e: (e.stamp, e.event_id))
    page = events[:limit]
    body: dict[str, Any] = {"events": [msgspec.Raw(e.data) for e in page]}
    if len(events) > limit:
        body["next_since_created_at"] = page[-1].created_at
    return ok(world, body, call.request_id)


async def upload(call: Call) -> web.StreamResponse:
    """POST /conversations/{cid}/upload: one multipart ``file`` part, at most 20 MiB."""
    world = call.world
    conv = call.conversation()
    request = call.request
    if request.content_type != "multipart/form-data":
        raise invalid("Upload must be multipart/form-data with a single 'file' field.")
    try:
        reader = await request.multipart()
        part = await reader.next()
    except (ValueError, AssertionError):
        raise invalid("Malformed multipart body.") from None
    if not isinstance(part, BodyPartReader) or part.name != "file":
        raise invalid("Upload must have exactly one part named 'file'.")
    digest = hashlib.sha256()
    size = 0
    while chunk := await part.read_chunk(_CHUNK):
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            await request.release()  # discard the rest without buffering it
            raise ApiError(413, "file_too_large", "The file exceeds the 20 MB limit.")
        digest.update(chunk)
    filename, content_type = part.filename, part.headers.get("Content-Type")
    if await reader.next() is not None:
        raise invalid("Upload must have exactly one part named 'file'.")
    file_id = world.ids.uuid()
    conv.files[file_id] = SimFile(file_id, conv.conversation_id, world.clock.now())
    world.uploads.append(
        UploadRecord(
            file_id, conv.conversation_id, filename, content_type, size, digest.hexdigest()
        )
    )
    return ok(world, {"file_id": file_id}, call.request_id)


async def feedback(call: Call) -> web.StreamResponse:
    """POST …/genie-runs/{run}/feedback: 202 with no content."""
    call.run(call.conversation())
    return empty(202, call.request_id)
