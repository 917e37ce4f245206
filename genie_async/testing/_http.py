"""HTTP conventions of the runtime API: envelopes, error bodies, authentication, paging."""

from __future__ import annotations

import base64
import binascii
import http
from collections.abc import Mapping
from typing import Any

import msgspec
from aiohttp import web

from ._faults import HttpFault
from ._state import World

__all__ = [
    "ApiError",
    "authenticate",
    "decode_cursor",
    "encode_cursor",
    "error_response",
    "fault_response",
    "ok",
    "parse_limit",
]

_encode = msgspec.json.Encoder().encode

AUTH_FAILED = "Authentication failed."
USER_NONACTIVE = "The user was not found in this environment or has not accepted their invitation."
# Invented codes (reference §12 row 20) for statuses production leaves undocumented.
_CODES = {
    400: "invalid_request",
    401: "auth_failed",
    403: "access_denied",
    404: "not_found",
    406: "no_client_attached",
    409: "conversation_busy",
    413: "file_too_large",
    422: "unprocessable_entity",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


class ApiError(Exception):
    """Raised by handlers; turned into an error response in the configured style."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def not_found(what: str) -> ApiError:
    """404 ``not_found`` for an unknown id."""
    return ApiError(404, "not_found", f"{what} not found.")


def invalid(message: str) -> ApiError:
    """400 ``invalid_request``."""
    return ApiError(400, "invalid_request", message)


def ok(
    world: World, payload: Mapping[str, Any], request_id: str, *, status: int = 200
) -> web.Response:
    """A JSON success response, wrapped in ``{"result": …}`` unless the envelope is flat."""
    body = {"result": payload} if world.config.envelope == "wrapped" else payload
    return web.Response(
        status=status,
        body=_encode(body),
        content_type="application/json",
        headers={"x-request-id": request_id},
    )


def empty(status: int, request_id: str) -> web.Response:
    """A success response with no body (approvals, reject, feedback, delete)."""
    return web.Response(status=status, headers={"x-request-id": request_id})


def error_response(
    world: World, status: int, code: str, message: str, request_id: str
) -> web.Response:
    """An error body in the configured style (``workato`` three keys, or ``nested``)."""
    if world.config.error_style == "nested":
        body: dict[str, Any] = {
            "error": {"code": code, "message": message, "request_id": request_id}
        }
    else:
        body = {"error_code": code, "error_message": message, "request_id": request_id}
    return web.Response(
        status=status,
        body=_encode(body),
        content_type="application/json",
        headers={"x-request-id": request_id},
    )


def fault_response(world: World, fault: HttpFault, request_id: str) -> web.Response:
    """The response an `HttpFault` of kind ``status`` asks for."""
    phrase = _phrase(fault.status)
    if fault.body == "json":
        code = _CODES.get(fault.status, f"http_{fault.status}")
        response = error_response(world, fault.status, code, phrase + ".", request_id)
    elif fault.body == "html":
        page = f"<html><body><h1>{fault.status} {phrase}</h1></body></html>"
        response = web.Response(
            status=fault.status,
            text=page,
            content_type="text/html",
            headers={"x-request-id": request_id},
        )
    else:
        response = web.Response(status=fault.status, headers={"x-request-id": request_id})
    if fault.retry_after is not None:
        response.headers["Retry-After"] = fault.retry_after
    return response


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def authenticate(world: World, headers: Mapping[str, str]) -> tuple[str | None, ApiError | None]:
    """Resolve the caller: ``(user_id, None)`` on success, ``(asserted_user, error)`` else.

    Rules, in order: ``Authorization`` must be exactly ``Bearer <token>``; a ``wrkaus-``
    Developer API token is refused; the current API key needs an active, allow-listed
    ``X-IDP-User-Id``; a known OAuth access token names its user; anything else is refused.
    """
    header = headers.get("Authorization")
    asserted = headers.get("X-IDP-User-Id")
    failed = ApiError(401, "auth_failed", AUTH_FAILED)
    if header is None or not header.startswith("Bearer "):
        return None, failed
    token = header[len("Bearer ") :]
    if not token or token != token.strip() or " " in token or token.startswith("wrkaus-"):
        return None, failed
    if token == world.api_key:
        user = world.users.get(asserted) if asserted and "@" not in asserted else None
        if user is None or not user.may_chat:
            return asserted, ApiError(401, "user_nonactive_or_missing", USER_NONACTIVE)
        return user.user_id, None
    owner = world.tokens.get(token)
    if owner is None:
        return None, failed
    user = world.users.get(owner)
    if user is None or not user.may_chat:
        return owner, ApiError(401, "user_nonactive_or_missing", USER_NONACTIVE)
    return owner, None


def parse_limit(query: Mapping[str, str], default: int, maximum: int = 100) -> int:
    """``limit`` from the query: default when absent, clamped to ``maximum``."""
    raw = query.get("limit")
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid("limit must be an integer.") from None
    if value < 1:
        raise invalid("limit must be >= 1.")
    return min(value, maximum)


def encode_cursor(offset: int) -> str:
    """An opaque cursor: base64 of the offset of the next page."""
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def decode_cursor(query: Mapping[str, str]) -> int:
    """The offset a ``cursor`` query parameter points at (0 when absent)."""
    raw = query.get("cursor")
    if not raw:
        return 0
    try:
        text = base64.urlsafe_b64decode(raw.encode()).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid("cursor is not valid.") from None
    prefix, _, number = text.partition(":")
    if prefix != "offset" or not (number.isascii() and number.isdigit()):
        raise invalid("cursor is not valid.")
    return int(number)
