"""Routes that drive turns: send a message, reconnect to a run, resolve skill and business
approvals, and runtime-connection links (reference §4.6, §4.7, §4.11 to §4.13, §4.15)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ._endpoint import Call
from ._http import ApiError, empty, fault_response, invalid, not_found, ok
from ._model import AuthAttempt, PendingApproval
from ._records import ApprovalRecord
from ._sse import serve_run
from ._turns import run_turn

__all__ = [
    "authorize_page",
    "business_approval",
    "connection_link",
    "connection_reject",
    "reconnect",
    "send_message",
    "skill_approval",
]

MAX_MESSAGE_CHARS = 12_288


async def send_message(call: Call) -> web.StreamResponse:
    """POST /conversations/{cid}/messages: accept a turn; SSE or a run handle."""
    world = call.world
    conv = call.conversation()
    body = call.json_object()
    text = body.get("message")
    if not isinstance(text, str):
        raise invalid("message is required and must be a string.")
    if len(text) > MAX_MESSAGE_CHARS:
        raise invalid(f"message exceeds {MAX_MESSAGE_CHARS} characters.")
    file_id = body.get("file_id")
    if file_id is not None and not isinstance(file_id, str):
        raise invalid("file_id must be a string.")
    if file_id:
        stored = conv.files.get(file_id)
        if stored is None or world.clock.now() > stored.uploaded_at + world.RETENTION:
            raise invalid("file_id is unknown or expired.")
    stream = body.get("stream", True)
    if not isinstance(stream, bool):
        raise invalid("stream must be a boolean.")
    if conv.busy:
        raise ApiError(409, "conversation_busy", "The conversation is busy.")

    # Accept: the history entry, the run and (if the genie is running) the turn task.
    started = world.flags.genie_started
    turn = world.script.choose(text) if started else None
    run = world.new_run(conv, turn.faults if turn is not None else ())
    world.add_message(conv, "user", text, run.run_id, file_id)
    if turn is not None:
        world.set_state(conv, "ai_running")
        conv.task = world.spawn(run_turn(world, conv, run, turn, text))

    fault = world.faults.take_after_accept("send")
    if fault is not None:
        return fault_response(world, fault, call.request_id)
    if not stream:
        body = {"conversation_id": conv.conversation_id, "genie_run_id": run.run_id}
        return ok(world, body, call.request_id)
    call.record.status = 200
    return await serve_run(call.request, world, run, after_seq=0, request_id=call.request_id)


async def reconnect(call: Call) -> web.StreamResponse:
    """GET …/genie-runs/{run}: replay after Last-Event-ID, then live."""
    conv = call.conversation()
    run = call.run(conv)
    if not run.persisted:
        raise not_found("Genie run")  # a resumed run never surfaces on a stream
    after_seq = run.seq_of(call.request.headers.get("Last-Event-ID"))
    call.record.status = 200
    return await serve_run(
        call.request, call.world, run, after_seq=after_seq, request_id=call.request_id
    )


def _pending_approval(call: Call, kind: str, resolution: object, reason: object) -> PendingApproval:
    """The approval a POST may resolve, or the 404 / 400 / 409 it gets instead."""
    conv = call.conversation()
    approval = call.world.approvals.get(call.request.match_info["call_id"])
    if approval is None or approval.conversation_id != conv.conversation_id:
        raise not_found("Call")
    if approval.kind != kind:
        raise not_found("Call")
    if resolution not in ("approved", "rejected"):
        raise invalid("resolution must be 'approved' or 'rejected'.")
    if reason is not None and not isinstance(reason, str):
        raise invalid("rejection_reason must be a string.")
    if approval.resolved:
        raise ApiError(409, "conversation_busy", "The call is not pending.")
    return approval


async def _resolve_approval(call: Call, kind: str) -> web.StreamResponse:
    resolution: Any = None
    reason: Any = None
    status = 500
    try:
        body = call.json_object()
        resolution, reason = body.get("resolution"), body.get("rejection_reason")
        approval = _pending_approval(call, kind, resolution, reason)
        approval.future.set_result((resolution, reason if resolution == "rejected" else None))
        status = 200 if kind == "skill" else 204
        return empty(status, call.request_id)
    except ApiError as exc:
        status = exc.status
        raise
    finally:
        call.world.approval_log.append(
            ApprovalRecord(
                call.request.match_info["call_id"],
                resolution if isinstance(resolution, str) else None,
                reason if isinstance(reason, str) else None,
                status,
                kind,
            )
        )


async def skill_approval(call: Call) -> web.StreamResponse:
    """POST …/skill_approval/{call_id}: 200 with an empty body."""
    return await _resolve_approval(call, "skill")


async def business_approval(call: Call) -> web.StreamResponse:
    """POST …/business_approval/{call_id}: 204 when enabled, else 404."""
    if not call.world.flags.enable_business_approval:
        raise not_found("Route")
    return await _resolve_approval(call, "business")


def _attempt(call: Call) -> AuthAttempt:
    attempt = call.world.attempts.get(call.request.match_info["attempt"])
    conv = None if attempt is None else call.world.conversations.get(attempt.conversation_id)
    if attempt is None or conv is None or conv.user_id != call.user_id:
        raise not_found("Runtime connection attempt")
    return attempt


async def connection_link(call: Call) -> web.StreamResponse:
    """POST /runtime_connection/{id}/link: status, and a fresh link once expired."""
    world = call.world
    if not world.flags.link_endpoint_available:
        raise not_found("Route")  # the June 2026 production behaviour
    attempt = _attempt(call)
    if attempt.status != "auth_required":
        return ok(world, {"status": attempt.status}, call.request_id)
    if world.clock.now() >= attempt.expires_at:
        world.refresh_link(attempt)
    body = {"status": "auth_required", "auth_link": world.auth_link(attempt)}
    return ok(world, body, call.request_id)


async def connection_reject(call: Call) -> web.StreamResponse:
    """POST /runtime_connection/{id}/reject: 204; the parked turn ends."""
    attempt = _attempt(call)
    body = call.json_object()
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise invalid("reason must be a string.")
    if attempt.status != "auth_required":
        raise ApiError(409, "conversation_busy", "The runtime connection is not pending.")
    call.world.resolve_attempt(attempt, "rejected", reason)
    return empty(204, call.request_id)


async def authorize_page(call: Call) -> web.StreamResponse:
    """Simulator-only: opening an ``auth_link`` URL authorizes the attempt (for demos)."""
    attempt = call.world.attempts.get(call.request.match_info["attempt"])
    if attempt is None:
        raise not_found("Runtime connection attempt")
    if attempt.status == "auth_required":
        call.world.resolve_attempt(attempt, "authorized", None)
    page = f"<html><body><p>{attempt.connector}: {attempt.status}.</p></body></html>"
    return web.Response(text=page, content_type="text/html")
