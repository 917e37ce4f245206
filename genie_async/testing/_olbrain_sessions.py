"""Conversational routes: the E1 trigger (dispatching workflow agents to the run module), the
synchronous turn, and the session endpoints E9-E12 (§4.1, §4.6-§4.9, §6)."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from ._clock import parse_timestamp
from ._olbrain_http import Call, OlbrainError, field_error, int_param
from ._olbrain_model import OlbrainAgent, OlbrainMessage, OlbrainSession, iso
from ._olbrain_runs import trigger_workflow
from ._olbrain_state import OlbrainWorld, Reply

__all__ = ["get_message", "get_session", "list_messages", "list_sessions", "trigger"]

_OPTIONAL_STRINGS = ("session_id", "user_id", "model", "response_mode")


async def trigger(call: Call) -> Reply:
    """E1: a conversational turn (200, synchronous) or a new workflow run (202)."""
    agent = call.the_agent()
    body = call.json_object(required=True)
    key = call.idempotency_key(body)
    if agent.kind == "workflow":
        # The run's inputs are what the workflow receives: the "inputs" object, else the
        # whole body; either way as sent, a key in it included (the workflow can dedupe
        # against it, §9.3; §7.2 recovery matches on it).
        inputs = body.get("inputs", body)
        if key is None and inputs is not body and isinstance(inputs, dict):
            key = call.idempotency_key(inputs)
        return await trigger_workflow(call, body, key, inputs=inputs)
    fields = []
    message = body.get("message")
    if not isinstance(message, str) or not message.strip():
        fields.append({"field": "message", "message": "Required: a non-empty string."})
    fields.extend(
        {"field": name, "message": "Must be a string."}
        for name in _OPTIONAL_STRINGS
        if body.get(name) is not None and not isinstance(body[name], str)
    )
    if body.get("metadata") is not None and not isinstance(body["metadata"], dict):
        fields.append({"field": "metadata", "message": "Must be an object."})
    if fields:
        raise field_error(fields)
    assert isinstance(message, str)
    session_id = body.get("session_id")
    if session_id is not None:
        call.session(session_id)  # 404 session_not_found before anything is persisted
    world = call.world
    pending = call.once(
        "trigger",
        key,
        lambda: _converse(
            world, agent=agent, session_id=session_id, message=message, body=body, key=key
        ),
    )
    if world.upstream_timeout is None:
        return await pending
    try:
        return await asyncio.wait_for(pending, world.upstream_timeout)
    except asyncio.TimeoutError:
        # The turn carries on (shielded) and persists its reply: the §7.2 ambiguity.
        raise OlbrainError(
            502, "upstream_timeout", "The agent runtime did not respond in time."
        ) from None


async def _converse(
    world: OlbrainWorld,
    *,
    agent: OlbrainAgent,
    session_id: str | None,
    message: str,
    body: dict[str, Any],
    key: str | None,
) -> Reply:
    metadata: dict[str, Any] = dict(body.get("metadata") or {})
    now = world.clock.now()
    if session_id is None:
        session = OlbrainSession(
            session_id=world.ids.session_id(),
            agent_id=agent.agent_id,
            organization_id=agent.organization_id,
            created_at=now,
            last_message_at=now,
            user_id=body.get("user_id"),
            title=message[:80],
            metadata=metadata,
        )
        world.sessions[session.session_id] = session
    else:
        session = world.sessions[session_id]
    session.messages.append(
        OlbrainMessage(
            message_id=world.ids.message_id(),
            session_id=session.session_id,
            role="user",
            content=message,
            created_at=now,
            metadata=metadata,
            idempotency_key=key,
        )
    )
    session.last_message_at = now
    if world.reply_delay > 0:
        await asyncio.sleep(world.reply_delay)
    try:
        produced = agent.reply(message, metadata) if agent.reply else f"Echo: {message}"
        text = await produced if inspect.isawaitable(produced) else produced
    except Exception as exc:
        raise OlbrainError(502, "upstream_error", "The agent runtime failed.") from exc
    if not isinstance(text, str):
        raise OlbrainError(502, "upstream_error", "The agent runtime failed.")
    # Deterministic stand-in for a tokenizer: about four characters a token.
    prompt, completion = len(message) // 4 + 1, len(text) // 4 + 1
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    answered = world.clock.now()
    reply = OlbrainMessage(
        message_id=world.ids.message_id(),
        session_id=session.session_id,
        role="assistant",
        content=text,
        created_at=answered,
        token_usage=usage,
    )
    session.messages.append(reply)
    session.last_message_at = answered
    return Reply(
        200,
        {
            "success": True,
            "session_id": session.session_id,
            "message_id": reply.message_id,
            "agent_id": agent.agent_id,
            "organization_id": agent.organization_id,
            "project_id": agent.project_id,
            "response": text,
            "files": [],
            "token_usage": dict(usage),
            "processing_time": round(world.reply_delay, 3),
            "timestamp": iso(answered),
        },
    )


async def list_sessions(call: Call) -> Reply:
    """E9: most recently active first; ``limit`` (default 20, capped at 100), ``status``,
    ``since`` (only sessions active after it)."""
    limit = int_param(call, "limit", 20, minimum=1, maximum=100)
    status = call.request.query.get("status")
    since_text = call.request.query.get("since")
    since = None
    if since_text is not None:
        try:
            since = parse_timestamp(since_text) / 1_000_000
        except ValueError:
            raise field_error(
                [{"field": "since", "message": "Must be an ISO 8601 timestamp."}]
            ) from None
    agent_id = call.the_agent().agent_id
    sessions = [
        session
        for session in call.world.sessions.values()
        if session.agent_id == agent_id
        and (status is None or session.status == status)
        and (since is None or session.last_message_at > since)
    ]
    # Creation order breaks ties, so equal timestamps still list newest first.
    order = {sid: index for index, sid in enumerate(call.world.sessions)}
    sessions.sort(key=lambda s: (s.last_message_at, order[s.session_id]), reverse=True)
    return Reply(200, {"sessions": [s.summary_json() for s in sessions[:limit]], "limit": limit})


async def get_session(call: Call) -> Reply:
    """E10: the full session record."""
    return Reply(200, call.session().to_json())


async def list_messages(call: Call) -> Reply:
    """E11: oldest first; ``limit`` (default 20, capped at 200) and ``offset``."""
    limit = int_param(call, "limit", 20, minimum=1, maximum=200)
    offset = int_param(call, "offset", 0, minimum=0)
    messages = call.session().messages[offset : offset + limit]
    return Reply(
        200,
        {"messages": [m.to_json() for m in messages], "limit": limit, "offset": offset},
    )


async def get_message(call: Call) -> Reply:
    """E12: one message of the session (404 ``message_not_found`` otherwise)."""
    session = call.session()
    wanted = call.request.match_info["message_id"]
    for message in session.messages:
        if message.message_id == wanted:
            return Reply(200, message.to_json())
    raise OlbrainError(404, "message_not_found", "Message not found.")
