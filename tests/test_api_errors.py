"""Every API error class, built from real responses of the simulator over loopback HTTP.

Each error is checked against the request the simulator logged: the class, the status, the
error code, the request id (the simulator's ``x-request-id``), the decoded body in both error
envelopes (Workato's three keys and the nested ``{"error": {...}}``) and the hint.
"""

from __future__ import annotations

import email.utils
import http
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from genie_async import (
    APIStatusError,
    AuthenticationError,
    AuthFailedError,
    BadGatewayError,
    BadRequestError,
    ConflictError,
    GatewayTimeoutError,
    GenieClient,
    InternalServerError,
    NotAcceptableError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RedirectError,
    RequestTooLargeError,
    RetryPolicy,
    ServerError,
    ServiceUnavailableError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
    UserNotActiveError,
)
from genie_async.testing import Confirm, GenieSimulator, Turn, VirtualClock

from .conftest import assert_no_open_connections, make_client

ErrorStyle = Literal["workato", "nested"]
CREATE_PATH = "/api/v1/genies/{genie}/chat/conversations"


@pytest.fixture(params=["workato", "nested"])
def error_style(request: pytest.FixtureRequest) -> ErrorStyle:
    """Both error envelopes: Workato's three keys and the nested {"error": {...}} one."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def esim(error_style: ErrorStyle, envelope: str) -> AsyncIterator[GenieSimulator]:
    """The simulator in one error style and one success envelope."""
    async with GenieSimulator(
        error_style=error_style,
        envelope=envelope,  # type: ignore[arg-type]
        ping_interval=0.02,
        topic_delay=0.3,
    ) as s:
        yield s


@pytest.fixture
async def eclient(esim: GenieSimulator, retry: RetryPolicy) -> AsyncIterator[GenieClient]:
    """A client for the styled simulator's active user; checked for leaks after use."""
    async with make_client(esim, retry) as c:
        yield c
        await assert_no_open_connections(c, esim)


@pytest.fixture
def no_retry(clock: VirtualClock) -> RetryPolicy:
    """A policy under which nothing is retried: the first wait already exceeds the budget."""
    return RetryPolicy(
        wait_budget=0.001, retry_server_error_once=False, clock=clock.now, sleep=clock.sleep
    )


def _body(style: str, code: str, message: str, request_id: str) -> dict[str, Any]:
    if style == "nested":
        return {"error": {"code": code, "message": message, "request_id": request_id}}
    return {"error_code": code, "error_message": message, "request_id": request_id}


def _assert_from_response(
    error: APIStatusError,
    sim: GenieSimulator,
    route: str,
    *,
    status: int,
    code: str | None,
    message: str,
    style: str,
) -> None:
    """The error matches the last response of ``route`` the simulator logged."""
    record = sim.requests(route)[-1]
    assert record.status == status
    assert error.status == status
    assert error.error_code == code
    assert error.message == message
    assert error.request_id == record.request_id
    assert error.method == record.method
    assert error.path == record.path
    if code is not None:
        assert error.body == _body(style, code, message, record.request_id)
    if status != 418:  # statuses without troubleshooting advice have no hint
        assert error.hint


# --- 401 ------------------------------------------------------------------------------------


def _assert_auth_failed_hint(error: AuthFailedError, sim: GenieSimulator) -> None:
    hint = error.hint or ""
    assert "wrkaus-" in hint
    assert "data center" in hint
    assert "127.0.0.1" in hint  # the host this client called
    assert "regenerating" in hint
    assert "Authorization: Bearer <token>" in hint
    assert "\nHint: " + hint in str(error)


async def test_wrong_api_key_is_auth_failed(
    esim: GenieSimulator, retry: RetryPolicy, clock: VirtualClock, error_style: str
) -> None:
    """A key the gateway does not know is AuthFailedError, with the four-point hint."""
    async with make_client(esim, retry, api_key="0" * 64) as client:
        with pytest.raises(AuthFailedError) as caught:
            await client.create_conversation()
        await assert_no_open_connections(client, esim)
    error = caught.value
    _assert_from_response(
        error,
        esim,
        "create_conversation",
        status=401,
        code="auth_failed",
        message="Authentication failed.",
        style=error_style,
    )
    _assert_auth_failed_hint(error, esim)
    assert len(esim.requests("create_conversation")) == 1
    assert clock.sleeps == []


async def test_regenerated_key_is_auth_failed(
    esim: GenieSimulator, eclient: GenieClient, error_style: str
) -> None:
    """After the client's key is regenerated, the old key gets AuthFailedError."""
    conversation = await eclient.create_conversation()
    esim.regenerate_api_key()
    with pytest.raises(AuthFailedError) as caught:
        await conversation.info()
    _assert_from_response(
        caught.value,
        esim,
        "get_conversation",
        status=401,
        code="auth_failed",
        message="Authentication failed.",
        style=error_style,
    )
    _assert_auth_failed_hint(caught.value, esim)


def _user_for(sim: GenieSimulator, kind: str) -> dict[str, object]:
    """Client credentials naming a user the gateway will not accept."""
    if kind == "invited":
        return {"user_id": sim.add_user(status="invited")}
    if kind == "not_allow_listed":
        return {"user_id": sim.add_user(allow_listed=False)}
    if kind == "email":
        sim.add_user(user_id="jane@example.com", email="jane@example.com")
        return {"user_id": "jane@example.com"}
    if kind == "oauth_invited":
        token = sim.issue_access_token(sim.add_user(status="invited"))
        return {"api_key": None, "user_id": None, "access_token": token}
    return {"user_id": "NoSuchUser0000000000000"}


@pytest.mark.parametrize(
    "kind", ["invited", "unknown", "not_allow_listed", "email", "oauth_invited"]
)
async def test_unusable_end_user_is_user_not_active(
    kind: str, esim: GenieSimulator, retry: RetryPolicy, error_style: str
) -> None:
    """Invited, unknown, not allow-listed or e-mail user ids are UserNotActiveError."""
    credentials = _user_for(esim, kind)
    async with make_client(esim, retry, **credentials) as client:  # type: ignore[arg-type]
        with pytest.raises(UserNotActiveError) as caught:
            await client.create_conversation()
        await assert_no_open_connections(client, esim)
    error = caught.value
    assert isinstance(error, AuthenticationError)
    _assert_from_response(
        error,
        esim,
        "create_conversation",
        status=401,
        code="user_nonactive_or_missing",
        message=(
            "The user was not found in this environment or has not accepted their invitation."
        ),
        style=error_style,
    )
    hint = error.hint or ""
    assert "invited" in hint
    assert "allow-listed" in hint
    assert "GET /api/iam/users?query=<email>" in hint
    assert "not an email address" in hint
    assert len(esim.requests("create_conversation")) == 1


# --- 403, 404, 406, 409, 400 ------------------------------------------------------------------


async def test_propagation_window_is_permission_denied(
    esim: GenieSimulator, eclient: GenieClient, clock: VirtualClock, error_style: str
) -> None:
    """Right after provisioning every call is a 403 whose hint says to wait 30-60 s."""
    esim.propagation_window = 60
    esim.mark_provisioned()
    with pytest.raises(PermissionDeniedError) as caught:
        await eclient.create_conversation()
    _assert_from_response(
        caught.value,
        esim,
        "create_conversation",
        status=403,
        code="access_denied",
        message="Access denied.",
        style=error_style,
    )
    assert "30-60 s" in (caught.value.hint or "")
    assert clock.sleeps == []
    esim.clock.advance(61)
    await eclient.create_conversation()


async def test_headless_not_enabled_is_permission_denied(
    esim: GenieSimulator, eclient: GenieClient, error_style: str
) -> None:
    """A workspace without the Headless API: 403 headless_not_enabled, hint names the beta."""
    esim.headless_enabled = False
    with pytest.raises(PermissionDeniedError) as caught:
        await eclient.create_conversation()
    _assert_from_response(
        caught.value,
        esim,
        "create_conversation",
        status=403,
        code="headless_not_enabled",
        message="The Headless API is not enabled for this workspace.",
        style=error_style,
    )
    hint = caught.value.hint or ""
    assert "not enabled for this workspace" in hint
    assert "Customer Success Manager" in hint
    assert "propagat" not in hint  # the code-specific hint, not the generic 403 advice


async def test_unknown_conversation_is_not_found(
    esim: GenieSimulator, eclient: GenieClient, error_style: str
) -> None:
    """A conversation id the user does not own is NotFoundError with the ownership hint."""
    with pytest.raises(NotFoundError) as caught:
        await eclient.conversation("3b241101-e2bb-4255-8caf-4136c566a962").info()
    _assert_from_response(
        caught.value,
        esim,
        "get_conversation",
        status=404,
        code="not_found",
        message="Conversation not found.",
        style=error_style,
    )
    assert "another user's conversation id is a 404" in (caught.value.hint or "")


async def test_no_client_attached_is_not_acceptable(
    esim: GenieSimulator, eclient: GenieClient, error_style: str
) -> None:
    """A genie without a client attached answers 406; the hint says how to attach one."""
    esim.client_attached = False
    with pytest.raises(NotAcceptableError) as caught:
        await eclient.create_conversation()
    _assert_from_response(
        caught.value,
        esim,
        "create_conversation",
        status=406,
        code="no_client_attached",
        message="No genie client is attached to this genie.",
        style=error_style,
    )
    assert "POST /api/agentic/genies/:id/clients" in (caught.value.hint or "")


async def test_send_while_a_confirmation_waits_is_conflict(
    esim: GenieSimulator, eclient: GenieClient, clock: VirtualClock, error_style: str
) -> None:
    """A message sent while a skill confirmation is pending is ConflictError (busy hint)."""
    esim.default_turn = Turn(Confirm("Submit"))
    conversation = await eclient.create_conversation()
    await conversation.send("first", stream=False)
    await esim.wait_for_event(conversation.conversation_id, "skill.confirmation_required")
    with pytest.raises(ConflictError) as caught:
        await conversation.send("second", stream=False)
    _assert_from_response(
        caught.value,
        esim,
        "send",
        status=409,
        code="conversation_busy",
        message="The conversation is busy.",
        style=error_style,
    )
    assert "busy" in (caught.value.hint or "")
    assert len(esim.requests("send")) == 2
    assert clock.sleeps == []
    users = esim.conversation(conversation.conversation_id).messages
    assert [m.content for m in users if m.source == "user"] == ["first"]


async def test_unknown_file_id_is_bad_request(
    esim: GenieSimulator, eclient: GenieClient, error_style: str
) -> None:
    """A file_id the conversation never received is a 400 BadRequestError."""
    conversation = await eclient.create_conversation()
    with pytest.raises(BadRequestError) as caught:
        await conversation.send("x", file="no-such-file", stream=False)
    _assert_from_response(
        caught.value,
        esim,
        "send",
        status=400,
        code="invalid_request",
        message="file_id is unknown or expired.",
        style=error_style,
    )
    assert "file_id" in (caught.value.hint or "")
    assert esim.requests("send")[-1].json == {
        "message": "x",
        "stream": False,
        "file_id": "no-such-file",
    }


# --- statuses only faults produce -------------------------------------------------------------

FAULTS: list[tuple[int, type[APIStatusError], str]] = [
    (413, RequestTooLargeError, "file_too_large"),
    (415, UnsupportedMediaTypeError, "http_415"),
    (422, UnprocessableEntityError, "unprocessable_entity"),
    (429, RateLimitError, "rate_limited"),
    (500, InternalServerError, "internal_error"),
    (502, BadGatewayError, "bad_gateway"),
    (503, ServiceUnavailableError, "service_unavailable"),
    (504, GatewayTimeoutError, "gateway_timeout"),
    (501, ServerError, "http_501"),
    (418, APIStatusError, "http_418"),
]
PHRASES = {
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    418: "I'm a Teapot",
}


@pytest.mark.parametrize(("status", "cls", "code"), FAULTS, ids=[str(f[0]) for f in FAULTS])
async def test_injected_status_gets_its_exact_class(
    status: int,
    cls: type[APIStatusError],
    code: str,
    esim: GenieSimulator,
    no_retry: RetryPolicy,
    clock: VirtualClock,
    error_style: str,
) -> None:
    """Each injected status raises exactly its class, with status, code, request id, body."""
    esim.fail("create_conversation", status)
    async with make_client(esim, no_retry) as client:
        with pytest.raises(APIStatusError) as caught:
            await client.create_conversation()
        await assert_no_open_connections(client, esim)
    error = caught.value
    assert type(error) is cls
    assert error.attempts == 1
    assert len(esim.requests("create_conversation")) == 1
    assert clock.sleeps == []
    _assert_from_response(
        error,
        esim,
        "create_conversation",
        status=status,
        code=code,
        message=http.HTTPStatus(status).phrase + ".",
        style=error_style,
    )


async def test_two_500s_are_internal_server_error_after_two_attempts(
    esim: GenieSimulator, eclient: GenieClient, error_style: str
) -> None:
    """500 twice under the default policy: InternalServerError, attempts 2, the last id."""
    esim.fail("create_conversation", 500, times=2)
    with pytest.raises(InternalServerError) as caught:
        await eclient.create_conversation()
    error = caught.value
    first, last = esim.requests("create_conversation")
    assert error.attempts == 2
    assert error.request_id == last.request_id != first.request_id
    assert error.body == _body(
        error_style, "internal_error", "Internal Server Error.", last.request_id
    )
    assert "(gave up after 2 attempts)" in str(error)


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_429_exposes_retry_after(
    form: str, sim: GenieSimulator, client: GenieClient, clock: VirtualClock
) -> None:
    """A 429's Retry-After (seconds or HTTP-date) is RateLimitError.retry_after in seconds."""
    retry_after = (
        "12" if form == "seconds" else email.utils.formatdate(time.time() + 12, usegmt=True)
    )
    sim.fail("create_conversation", 429, retry_after=retry_after)
    with pytest.raises(RateLimitError) as caught:
        await client.create_conversation()
    assert caught.value.retry_after == pytest.approx(12, abs=2)
    assert clock.sleeps == []


async def test_redirect_is_not_followed(sim: GenieSimulator, no_retry: RetryPolicy) -> None:
    """A 3xx is a RedirectError, never followed; the hint explains why."""
    sim.fail("create_conversation", 307)
    async with make_client(sim, no_retry) as client:
        with pytest.raises(RedirectError) as caught:
            await client.create_conversation()
        await assert_no_open_connections(client, sim)
    assert caught.value.status == 307
    assert caught.value.request_id == sim.requests("create_conversation")[-1].request_id
    assert "never followed" in (caught.value.hint or "")
    assert len(sim.log) == 1


async def test_error_headers_are_case_insensitive(sim: GenieSimulator, client: GenieClient) -> None:
    """error.headers answers any spelling of a header name, as HTTP (and aiohttp) does."""
    sim.fail("create_conversation", 429, retry_after="12")
    with pytest.raises(RateLimitError) as caught:
        await client.create_conversation()
    headers = caught.value.headers
    record = sim.requests("create_conversation")[-1]
    assert headers.get("Retry-After") == "12"
    assert headers.get("retry-after") == "12"
    assert headers.get("x-request-id") == record.request_id
    assert headers.get("X-Request-Id") == record.request_id


# --- non-JSON bodies ------------------------------------------------------------------------

NON_JSON: list[tuple[int, type[APIStatusError]]] = [
    (400, BadRequestError),
    (401, AuthenticationError),
    (403, PermissionDeniedError),
    (404, NotFoundError),
    (409, ConflictError),
    (429, RateLimitError),
    (500, InternalServerError),
    (502, BadGatewayError),
    (503, ServiceUnavailableError),
    (504, GatewayTimeoutError),
]


@pytest.mark.parametrize(("status", "cls"), NON_JSON, ids=[str(s) for s, _ in NON_JSON])
@pytest.mark.parametrize("body", ["html", "empty"])
async def test_non_json_error_bodies_are_still_typed(
    status: int,
    cls: type[APIStatusError],
    body: Literal["html", "empty"],
    sim: GenieSimulator,
    no_retry: RetryPolicy,
) -> None:
    """An HTML page or an empty body still gives the typed error, status and header id."""
    sim.fail("create_conversation", status, body=body)
    async with make_client(sim, no_retry) as client:
        with pytest.raises(APIStatusError) as caught:
            await client.create_conversation()
        await assert_no_open_connections(client, sim)
    error = caught.value
    record = sim.requests("create_conversation")[-1]
    assert type(error) is cls
    assert error.status == status
    assert error.error_code is None
    assert error.request_id == record.request_id
    assert f"[request_id={record.request_id}]" in str(error)
    if body == "html":
        assert "non-JSON body: text/html" in error.message
        assert isinstance(error.body, str)
        assert error.body.startswith("<html>")
    else:
        assert "non-JSON" not in error.message
        assert error.message
        assert error.body is None


# --- request id from the body only ----------------------------------------------------------


async def test_request_id_falls_back_to_the_body(
    error_style: ErrorStyle, retry: RetryPolicy, aiohttp_server: AiohttpServer
) -> None:
    """Without an x-request-id header, the body's request_id (either envelope) is used."""

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(_body(error_style, "not_found", "Nope.", "body-rid-1"), status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = await aiohttp_server(app)
    base_url = str(server.make_url("")).rstrip("/")
    async with GenieClient(
        "gin-x", base_url=base_url, api_key="k" * 64, user_id="u" * 22, retry=retry
    ) as client:
        with pytest.raises(NotFoundError) as caught:
            await client.conversation("c1").info()
    error = caught.value
    assert error.request_id == "body-rid-1"
    assert "x-request-id" not in {k.lower() for k in error.headers}
    assert error.error_code == "not_found"
    assert error.message == "Nope."


# --- str() ------------------------------------------------------------------------------------


async def test_str_names_call_status_code_request_id_and_hint(
    esim: GenieSimulator, eclient: GenieClient
) -> None:
    """str(error) carries the method, path, status, code, request id and the hint."""
    esim.client_attached = False
    with pytest.raises(NotAcceptableError) as caught:
        await eclient.create_conversation()
    record = esim.requests("create_conversation")[-1]
    text = str(caught.value)
    path = CREATE_PATH.format(genie=esim.genie_id)
    assert text.startswith(f"POST {path} -> 406 no_client_attached: ")
    assert f"[request_id={record.request_id}]" in text
    assert "\nHint: " in text
    assert str(record.request_id) in text
