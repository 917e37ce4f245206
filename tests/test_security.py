"""The security guarantees of genie_async, end to end against real loopback servers.

Each section proves one guarantee of docs/pages/security.md: redirects are never followed, plain
http:// is refused off loopback, ids cannot alter request paths, a malicious server cannot
make the client allocate without bound, and credentials (API key, X-IDP-User-Id, OAuth
tokens, the Developer API token and API keys received from it) never appear in reprs, strs,
logs at any level, exception text or the CLI's output.

The servers are the simulator or small ``aiohttp_server`` apps that misbehave on purpose and
record what reaches them (raw paths, headers, bytes written), so every "nothing was sent" and
"the client stopped" is observed on the wire, not inferred.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import re
import socket
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote_to_bytes

import aiohttp
import aiohttp.abc
import msgspec
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

import genie_async._constants as C
from genie_async import (
    APIResponseError,
    Approve,
    AuthFailedError,
    EventStream,
    EventTooLargeError,
    FileTooLargeError,
    GenieClient,
    GenieError,
    HookError,
    InsecureURLError,
    InvalidIdError,
    MessageTooLongError,
    NotFoundError,
    PermissionDeniedError,
    RedirectError,
    RetryPolicy,
    StreamStalledError,
    Timeouts,
)
from genie_async.admin import AdminClient, GenieClientCredentials, Secret
from genie_async.events import AgentMessage, GenieEvent
from genie_async.testing import (
    Confirm,
    ConnectAuth,
    GenieSimulator,
    Say,
    StreamFault,
    Turn,
    VirtualClock,
    Wait,
)

from .conftest import TEST_TIMEOUTS, assert_no_open_connections, make_client

# Distinctive values, so that finding one in any text can only mean a leak.
API_KEY = "5ec7e7a9" * 8  # 64 hex characters, the shape of a genie client API key
USER_ID = "UsrSecret7Hq2ZpLw9Xk3Vb"
ACCESS_TOKEN = "eyJhbGciOi.SecretAccessToken7Qw.Sig9Zx"
DEVELOPER_TOKEN = "wrkaus-5ecret0developer1token2value3"
RECEIVED_KEY = "c0ffee15" * 8  # an API key a (malicious) Developer API hands out

GENIE = "gin-sec"
PREFIX = f"/api/v1/genies/{GENIE}/chat"
KIB = 1024
MIB = 1024 * 1024
# Endless malicious bodies stop here at the latest, so that a client that never stops
# reading fails the test instead of hanging it.
SERVER_CEILING = 512 * MIB
SERVER_DEADLINE = 20.0
STREAM_TIMEOUTS = Timeouts(connect=5, read=10, request=10, stall=0.3, decision=5, auth=10)
_FORMATTER = logging.Formatter("%(name)s %(levelname)s %(message)s")


# --- helpers ---------------------------------------------------------------------------------


def virtual_retry() -> RetryPolicy:
    """The default policy on a virtual clock: its waits take no real time."""
    clock = VirtualClock()
    return RetryPolicy(clock=clock.now, sleep=clock.sleep)


def leaks(texts: Iterable[tuple[str, str]], secrets: dict[str, str]) -> list[tuple[str, str]]:
    """(where, which secret) for every text containing a secret; never the texts."""
    return [
        (where, name) for where, text in texts for name, secret in secrets.items() if secret in text
    ]


def error_texts(label: str, error: BaseException) -> list[tuple[str, str]]:
    """Everything a developer could print or log of an error (its traceback includes the
    ``str`` of every chained exception, as ``logger.exception`` would show it)."""
    texts = [
        (f"{label} str", str(error)),
        (f"{label} repr", repr(error)),
        (f"{label} args", repr(error.args)),
        (f"{label} traceback", "".join(traceback.format_exception(error))),
    ]
    for attribute in ("message", "hint", "body", "headers", "request_id"):
        texts.append((f"{label}.{attribute}", repr(getattr(error, attribute, None))))
    return texts


def chained(error: BaseException) -> list[BaseException]:
    """The exceptions reachable from ``error`` through ``__cause__`` and ``__context__``."""
    found: list[BaseException] = []
    pending: list[BaseException | None] = [error.__cause__, error.__context__]
    while pending:
        current = pending.pop()
        if current is None or current is error or any(current is seen for seen in found):
            continue
        found.append(current)
        pending += [current.__cause__, current.__context__]
    return found


def log_texts(records: list[logging.LogRecord]) -> list[tuple[str, str]]:
    """Each record as a handler would format it (with its traceback), plus its raw parts."""
    texts = []
    for record in records:
        where = f"log {record.name} {record.levelname}"
        texts.append((where, _FORMATTER.format(record)))
        texts.append((f"{where} msg/args", f"{record.msg!r} {record.args!r}"))
        if record.stack_info:
            texts.append((f"{where} stack", record.stack_info))
    return texts


def capture_every_level(caplog: pytest.LogCaptureFixture) -> None:
    """Record everything: the root and every logger the client stack uses, at level 1."""
    for name in (
        None,
        "genie_async",
        "aiohttp",
        "aiohttp.client",
        "aiohttp.internal",
        "aiohttp.access",
        "aiohttp.server",
        "aiohttp.web",
        "asyncio",
    ):
        caplog.set_level(1, logger=name)


class Recorder:
    """A loopback app that records every request (raw path, query, headers) and then
    answers with ``respond``."""

    def __init__(self, respond: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
        self.respond = respond
        self.seen: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        async def handler(request: web.Request) -> web.StreamResponse:
            self.seen.append(
                {
                    "method": request.method,
                    "raw_path": request.raw_path,
                    "query": request.query_string,
                    "headers": dict(request.headers),
                }
            )
            return await self.respond(request)

        app = web.Application(client_max_size=32 * MIB)
        app.router.add_route("*", "/{tail:.*}", handler)
        return app

    async def serve(self, aiohttp_server: AiohttpServer) -> str:
        server = await aiohttp_server(self.app())
        return str(server.make_url("")).rstrip("/")


async def not_found(request: web.Request) -> web.Response:
    return web.json_response(
        {"error_code": "not_found", "error_message": "Not found"},
        status=404,
        headers={"x-request-id": "req-404"},
    )


def runtime_client(base_url: str, **kwargs: Any) -> GenieClient:
    options: dict[str, Any] = {"api_key": API_KEY, "user_id": USER_ID}
    options.update(kwargs)
    genie = options.pop("genie_id", GENIE)
    options.setdefault("retry", virtual_retry())
    options.setdefault("timeouts", TEST_TIMEOUTS)
    return GenieClient(genie, base_url=base_url, **options)


async def collect(stream: EventStream) -> list[GenieEvent]:
    async with stream:
        return [event async for event in stream]


class Endless:
    """A handler writing ``head`` then ``piece`` forever (up to a safety ceiling), counting
    the bytes it managed to write before the client went away."""

    def __init__(
        self,
        *,
        status: int = 200,
        content_type: str = "application/json",
        head: bytes = b"",
        piece: bytes = b"x" * (64 * KIB),
    ) -> None:
        self.status = status
        self.content_type = content_type
        self.head = head
        self.piece = piece
        self.written = 0
        self.requests = 0
        self.client_left = asyncio.Event()

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        response = web.StreamResponse(
            status=self.status, headers={"Content-Type": self.content_type}
        )
        await response.prepare(request)
        deadline = time.monotonic() + SERVER_DEADLINE
        try:
            await response.write(self.head)
            while self.written < SERVER_CEILING and time.monotonic() < deadline:
                await response.write(self.piece)
                self.written += len(self.piece)
            # Ceiling reached: hold the connection open (never end it cleanly).
            await asyncio.sleep(max(deadline - time.monotonic(), 0))
        except ConnectionError:
            self.client_left.set()
        except asyncio.CancelledError:  # aiohttp_server cancels the handler of a lost client
            self.client_left.set()
            raise
        return response


# --- redirects are never followed --------------------------------------------------------------

REDIRECTS = [301, 302, 303, 307, 308]


def _redirecting_to(target: str, status: int) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def respond(request: web.Request) -> web.Response:
        location = target + request.raw_path if target.startswith("http") else target
        return web.Response(
            status=status, headers={"Location": location, "x-request-id": "req-redirect"}
        )

    return respond


REDIRECTED_CALLS: dict[str, Callable[[GenieClient], Awaitable[object]]] = {
    "create_conversation": lambda c: c.create_conversation(),
    "conversation.info": lambda c: c.conversation("conv-1").info(),
    "send (stream)": lambda c: collect(c.conversation("conv-1").send("hi")),
    "send (stream=False)": lambda c: c.conversation("conv-1").send("hi", stream=False),
    "upload": lambda c: c.conversation("conv-1").upload(b"hello", filename="a.txt"),
    "access-token view": lambda c: c.with_access_token(ACCESS_TOKEN).create_conversation(),
}


@pytest.mark.parametrize("call", sorted(REDIRECTED_CALLS))
@pytest.mark.parametrize("status", REDIRECTS)
async def test_a_redirect_to_another_host_is_not_followed(
    status: int, call: str, aiohttp_server: AiohttpServer
) -> None:
    """3xx to another host: RedirectError; the other host receives nothing at all, so
    neither Authorization nor X-IDP-User-Id (nor the body) ever reaches it."""
    elsewhere = Recorder(not_found)
    target = await elsewhere.serve(aiohttp_server)
    origin = Recorder(_redirecting_to(target, status))
    async with runtime_client(await origin.serve(aiohttp_server)) as client:
        with pytest.raises(RedirectError) as caught:
            await REDIRECTED_CALLS[call](client)
    assert caught.value.status == status
    assert "never followed" in (caught.value.hint or "")
    assert len(origin.seen) == 1
    assert elsewhere.seen == []


@pytest.mark.parametrize("status", REDIRECTS)
async def test_an_admin_redirect_to_another_host_is_not_followed(
    status: int, aiohttp_server: AiohttpServer
) -> None:
    """The Developer API client shares the rule: its token never follows a redirect."""
    elsewhere = Recorder(not_found)
    target = await elsewhere.serve(aiohttp_server)
    origin = Recorder(_redirecting_to(target, status))
    base_url = await origin.serve(aiohttp_server)
    async with AdminClient(
        token=DEVELOPER_TOKEN, base_url=base_url, retry=virtual_retry()
    ) as admin:
        with pytest.raises(RedirectError):
            await admin.get_genie("gin-1")
        with pytest.raises(RedirectError):
            await admin.create_genie_client("x")
    assert len(origin.seen) == 2
    assert elsewhere.seen == []


@pytest.mark.parametrize("location", ["relative", "absolute"])
async def test_a_redirect_on_the_same_host_is_not_followed_either(
    location: str, aiohttp_server: AiohttpServer
) -> None:
    """Redirects are never followed, not even to the same origin: the API never redirects,
    so a 3xx means a wrong base_url or a proxy, and following it could change the path or
    downgrade the scheme with the credentials attached. One request, one RedirectError."""
    origin = Recorder(not_found)
    base_url = await origin.serve(aiohttp_server)
    target = "/somewhere/else" if location == "relative" else base_url + "/somewhere/else"
    origin.respond = _redirecting_to(target, 307)
    async with runtime_client(base_url) as client:
        with pytest.raises(RedirectError) as caught:
            await client.create_conversation()
    assert caught.value.status == 307
    assert [seen["raw_path"] for seen in origin.seen] == [f"{PREFIX}/conversations"]


# --- plain http:// is refused off loopback -----------------------------------------------------


class _PinnedResolver(aiohttp.abc.AbstractResolver):
    """Resolves every name to 127.0.0.1: a non-loopback *name* that reaches our server."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


async def test_plain_http_to_a_remote_host_is_refused_before_anything_is_sent(
    aiohttp_server: AiohttpServer,
) -> None:
    """http:// to a name that is not loopback raises InsecureURLError at construction and
    nothing reaches the server behind that name; allow_insecure_http=True is the opt-in.
    (The URL rule itself: tests/test_config.py::test_plain_http_*.)"""
    server = Recorder(not_found)
    port = int((await server.serve(aiohttp_server)).rsplit(":", 1)[1])
    remote = f"http://genie.internal.example:{port}"
    connector = aiohttp.TCPConnector(resolver=_PinnedResolver())
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(InsecureURLError, match="allow_insecure_http"):
            runtime_client(remote, session=session)
        with pytest.raises(InsecureURLError):
            AdminClient(token=DEVELOPER_TOKEN, base_url=remote, session=session)
        assert server.seen == []
        # The same name with the explicit opt-in does reach the server: the refusal above
        # was the client's decision, not an unreachable host.
        async with runtime_client(remote, session=session, allow_insecure_http=True) as client:
            with pytest.raises(NotFoundError):
                await client.create_conversation()
    assert len(server.seen) == 1
    assert server.seen[0]["headers"]["Host"] == f"genie.internal.example:{port}"


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost.evil.example",
        "http://127.0.0.1.nip.io",
        "http://0.0.0.0",
        "http://10.0.0.1",
        "HTTP://genie-api.workato.com",
    ],
)
def test_loopback_look_alikes_are_not_loopback(url: str) -> None:
    """Names that merely start like loopback, and private or unspecified addresses, are
    remote: http:// to them is refused."""
    with pytest.raises(InsecureURLError):
        runtime_client(url)


# --- ids cannot alter request paths ----------------------------------------------------------

# Refused before anything is sent: they would add, remove or rewrite path segments, or split
# the request line.
REFUSED_IDS = [
    "",
    "/",
    "a/b",
    "/a",
    "a/",
    "..",
    ".",
    "a\\b",
    "a\nb",
    "a\rb",
    "a\x00b",
    "a\tb",
    "\x1b[31m",
    "\x7f",
]
# Sent, each as exactly one percent-encoded path segment.
ENCODED_IDS = [
    "a?b",
    "?",
    "a#b",
    "#",
    "%2F",
    "%2e%2e",
    "..x",
    "...",
    "a b",
    "a;b",
    "a&b=c",
    "+",
    "a%00b",
    "é",
    "日本語",
    "\u2028",
    "\x85",
    "\u202e",
    "\uff0e\uff0e",
]

# Each id-taking call: (how to make it, the path template it must hit; {} is the id).
Call = Callable[[GenieClient, str], Awaitable[object]]
ID_CALLS: dict[str, tuple[Call, str]] = {
    "conversation_id": (
        lambda c, v: c.conversation(v).info(),
        f"{PREFIX}/conversations/{{}}",
    ),
    "genie_run_id (attach)": (
        lambda c, v: collect(c.conversation("conv-1").attach(v)),
        f"{PREFIX}/conversations/conv-1/genie-runs/{{}}",
    ),
    "call_id (approve_skill)": (
        lambda c, v: c.conversation("conv-1").approve_skill(v),
        f"{PREFIX}/conversations/conv-1/skill_approval/{{}}",
    ),
    "call_id (reject_skill)": (
        lambda c, v: c.conversation("conv-1").reject_skill(v, "no"),
        f"{PREFIX}/conversations/conv-1/skill_approval/{{}}",
    ),
    "attempt_id (runtime_connection_link)": (
        lambda c, v: c.runtime_connection_link(v),
        f"{PREFIX}/runtime_connection/{{}}/link",
    ),
    "attempt_id (reject_runtime_connection)": (
        lambda c, v: c.reject_runtime_connection(v),
        f"{PREFIX}/runtime_connection/{{}}/reject",
    ),
    "genie_id (constructor)": (
        lambda c, v: _create_as_genie(c.base_url, v),
        "/api/v1/genies/{}/chat/conversations",
    ),
}


async def _create_as_genie(base_url: str, genie_id: str) -> None:
    async with runtime_client(base_url, genie_id=genie_id) as client:
        await client.create_conversation()


_ENCODED_SEGMENT = re.compile(r"(?:[A-Za-z0-9._~-]|%[0-9A-F]{2})+")


def assert_one_segment(raw_path: str, template: str, value: str) -> None:
    """``raw_path`` is ``template`` with ``value`` as exactly one percent-encoded segment,
    with no query and no fragment."""
    assert "?" not in raw_path
    assert "#" not in raw_path
    expected = template.split("/")
    actual = raw_path.split("/")
    assert len(actual) == len(expected), raw_path
    slot = expected.index("{}")
    assert actual[:slot] + actual[slot + 1 :] == expected[:slot] + expected[slot + 1 :]
    encoded = actual[slot]
    assert _ENCODED_SEGMENT.fullmatch(encoded), encoded
    assert encoded not in (".", "..")
    assert unquote_to_bytes(encoded).decode("utf-8") == value


async def _call_with_id(call: Call, base_url: str, value: str) -> None:
    async with runtime_client(base_url) as client:
        await call(client, value)


@pytest.mark.parametrize("value", ENCODED_IDS)
@pytest.mark.parametrize("what", sorted(ID_CALLS))
async def test_an_odd_id_is_exactly_one_encoded_segment(
    what: str, value: str, aiohttp_server: AiohttpServer
) -> None:
    """'?', '#', '%2F', unicode, spaces and lookalike dots go out percent-encoded in their
    own segment: the server's raw path has the expected segments and no query."""
    call, template = ID_CALLS[what]
    server = Recorder(not_found)
    base_url = await server.serve(aiohttp_server)
    with pytest.raises(NotFoundError):
        await _call_with_id(call, base_url, value)
    assert server.seen, "nothing was sent"
    assert_one_segment(server.seen[0]["raw_path"], template, value)
    assert server.seen[0]["query"] == ""


@pytest.mark.parametrize("value", REFUSED_IDS)
@pytest.mark.parametrize("what", sorted(ID_CALLS))
async def test_an_id_that_would_alter_the_path_is_refused_before_sending(
    what: str, value: str, aiohttp_server: AiohttpServer
) -> None:
    """'/', '\\', '.', '..', control characters and empty ids: InvalidIdError, no request."""
    call, _ = ID_CALLS[what]
    server = Recorder(not_found)
    base_url = await server.serve(aiohttp_server)
    with pytest.raises(InvalidIdError):
        await _call_with_id(call, base_url, value)
    assert server.seen == []


@pytest.mark.parametrize("value", ["a?b#c", "%2F", "gin/../x", "..", "é"])
async def test_admin_ids_are_one_segment_or_refused(
    value: str, aiohttp_server: AiohttpServer
) -> None:
    """The Developer API client builds its paths the same way."""
    server = Recorder(not_found)
    base_url = await server.serve(aiohttp_server)
    async with AdminClient(
        token=DEVELOPER_TOKEN, base_url=base_url, retry=virtual_retry()
    ) as admin:
        if "/" in value or value == "..":
            with pytest.raises(InvalidIdError):
                await admin.get_genie(value)
            with pytest.raises(InvalidIdError):
                await admin.regenerate_api_key(value)
            assert server.seen == []
            return
        with pytest.raises(NotFoundError):
            await admin.get_genie(value)
        with pytest.raises(NotFoundError):
            await admin.regenerate_api_key(value)
    assert_one_segment(server.seen[0]["raw_path"], "/api/agentic/genies/{}", value)
    assert_one_segment(
        server.seen[1]["raw_path"], "/api/agentic/genies/clients/{}/regenerate", value
    )


# --- bounded allocation: REST bodies -----------------------------------------------------------


async def test_an_endless_json_body_stops_at_the_response_ceiling(
    aiohttp_server: AiohttpServer,
) -> None:
    """A 200 whose JSON body never ends: APIResponseError once MAX_RESPONSE_BYTES (64 MiB)
    are exceeded, and the connection is dropped (the server sees the client leave)."""
    endless = Endless(head=b'{"conversation_id": "')
    base_url = await Recorder(endless).serve(aiohttp_server)
    async with runtime_client(base_url) as client:
        with pytest.raises(APIResponseError, match="exceeds the 67,108,864-byte limit"):
            await client.create_conversation()
    await asyncio.wait_for(endless.client_left.wait(), 5)
    assert C.MAX_RESPONSE_BYTES <= endless.written < C.MAX_RESPONSE_BYTES + 32 * MIB


async def test_a_declared_oversized_body_is_refused_unread(aiohttp_server: AiohttpServer) -> None:
    """A Content-Length over the ceiling is refused from the headers alone."""
    declared = C.MAX_RESPONSE_BYTES + 1

    async def respond(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={"Content-Type": "application/json", "Content-Length": str(declared)},
        )
        await response.prepare(request)
        try:
            await response.write(b"{")
            await asyncio.sleep(SERVER_DEADLINE)
        except ConnectionError:
            pass
        return response

    base_url = await Recorder(respond).serve(aiohttp_server)
    async with runtime_client(base_url) as client:
        started = time.monotonic()
        with pytest.raises(APIResponseError, match="exceeds the"):
            await client.create_conversation()
    assert time.monotonic() - started < 5  # not read until the server gave up


async def test_a_compressed_body_is_bounded_after_decompression(
    aiohttp_server: AiohttpServer,
) -> None:
    """A ~1 MiB gzip body inflating to 256 MiB (a zip bomb) stops at the same ceiling: the
    limit counts decompressed bytes."""
    import zlib  # noqa: PLC0415  # only this test needs it

    packer = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip framing
    zeros = b"\0" * (16 * MIB)
    parts = [packer.compress(b'{"conversation_id": "')]
    parts += [packer.compress(zeros) for _ in range(16)]  # 256 MiB: 4x the ceiling
    bomb = b"".join(parts) + packer.flush()
    assert len(bomb) < 2 * MIB

    async def respond(request: web.Request) -> web.Response:
        return web.Response(
            body=bomb, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
        )

    base_url = await Recorder(respond).serve(aiohttp_server)
    async with runtime_client(base_url) as client:
        with pytest.raises(APIResponseError, match="exceeds the 67,108,864-byte limit"):
            await client.create_conversation()


@pytest.mark.parametrize("status", [400, 404, 409, 503])
async def test_an_endless_error_body_is_truncated(
    status: int, aiohttp_server: AiohttpServer
) -> None:
    """An error whose body never ends: the typed error keeps the first MAX_ERROR_BODY_BYTES
    (256 KiB) and the connection is dropped; a retried 503 does the same on every attempt."""
    endless = Endless(status=status, content_type="text/html", piece=b"<p>" + b"e" * 4093)
    base_url = await Recorder(endless).serve(aiohttp_server)
    async with runtime_client(base_url) as client:
        with pytest.raises(GenieError) as caught:
            await client.create_conversation()
    error = caught.value
    assert getattr(error, "status", None) == status
    body = getattr(error, "body", None)
    assert isinstance(body, str)
    assert len(body) == C.MAX_ERROR_BODY_BYTES
    assert f"{C.MAX_ERROR_BODY_BYTES} bytes" in error.message
    await asyncio.wait_for(endless.client_left.wait(), 5)


async def test_an_endless_non_event_stream_answer_is_truncated(
    aiohttp_server: AiohttpServer,
) -> None:
    """A 200 with the wrong content type on a streaming call (a buffering proxy's page that
    never ends): APIResponseError keeping at most MAX_ERROR_BODY_BYTES of it."""
    endless = Endless(content_type="text/html")
    base_url = await Recorder(endless).serve(aiohttp_server)
    async with runtime_client(base_url) as client:
        with pytest.raises(APIResponseError, match="Expected an event stream") as caught:
            await collect(client.conversation("conv-1").send("hi"))
    assert isinstance(caught.value.body, str)
    assert len(caught.value.body) <= C.MAX_ERROR_BODY_BYTES
    await asyncio.wait_for(endless.client_left.wait(), 5)


# --- bounded allocation: event streams -------------------------------------------------------

SMALL_EVENT_CAP = 64 * KIB

OVERSIZED_STREAMS = {
    "one data line, no newline": (b"data: ", b"x" * (16 * KIB)),
    "one comment line, no newline": (b": ", b"c" * (16 * KIB)),
    "one line without a colon": (b"", b"z" * (16 * KIB)),
    "data lines, never a blank line": (b"", b"data: " + b"y" * 1000 + b"\n"),
    "data lines ending in CR, never a blank line": (b"", b"data: " + b"y" * 1000 + b"\r"),
}


@pytest.mark.parametrize("shape", sorted(OVERSIZED_STREAMS))
async def test_an_event_that_never_ends_stops_at_max_event_bytes(
    shape: str, aiohttp_server: AiohttpServer
) -> None:
    """A huge line without a newline (or data lines never dispatched): EventTooLargeError at
    max_event_bytes, and the connection is closed."""
    head, piece = OVERSIZED_STREAMS[shape]
    endless = Endless(content_type="text/event-stream", head=head, piece=piece)
    base_url = await Recorder(endless).serve(aiohttp_server)
    async with runtime_client(base_url, max_event_bytes=SMALL_EVENT_CAP) as client:
        with pytest.raises(EventTooLargeError) as caught:
            await collect(client.conversation("conv-1").send("hi"))
    assert caught.value.limit == SMALL_EVENT_CAP
    await asyncio.wait_for(endless.client_left.wait(), 5)
    assert endless.written < 64 * MIB
    assert endless.requests == 1  # not retried: the stream is closed, the error raised


KEEPALIVES = {
    "comment lines": b": keep-alive\n" * 256,
    "long comment lines": (b":" + b"k" * 8000 + b"\n") * 4,
    "blank lines": b"\n" * 1024,
    "id-only frames": b"id: 7\n\n" * 256,
    "retry-only frames": b"retry: 1000\n\n" * 256,
    "event-name-only frames": b"event: system.ping\n\n" * 256,
    "empty data frames": b"data:\n\n" * 256,
    "CRLF comment lines": b": keep-alive\r\n" * 256,
}


@pytest.mark.parametrize("kind", sorted(KEEPALIVES))
async def test_endless_keepalives_use_bounded_memory_and_end_at_the_stall_deadline(
    kind: str, aiohttp_server: AiohttpServer
) -> None:
    """A server sending only comments (or other frames carrying no data) as fast as it can:
    nothing accumulates (far more than max_event_bytes flows through without an
    EventTooLargeError) and the stall deadline ends the turn with StreamStalledError."""
    endless = Endless(content_type="text/event-stream", piece=KEEPALIVES[kind])
    base_url = await Recorder(endless).serve(aiohttp_server)
    cap = 4 * KIB if kind != "long comment lines" else 16 * KIB
    async with runtime_client(base_url, max_event_bytes=cap, timeouts=STREAM_TIMEOUTS) as client:
        started = time.monotonic()
        with pytest.raises(StreamStalledError):
            await collect(client.conversation("conv-1").send("hi"))
    assert time.monotonic() - started < 5
    await asyncio.wait_for(endless.client_left.wait(), 5)
    assert endless.written > 64 * cap
    assert endless.requests == 1


# --- bounded allocation: paging ----------------------------------------------------------------

PAGE_LIMIT_FOR_TESTS = 25


class Pager:
    """A listing endpoint whose cursor misbehaves.

    ``repeat``: every page names the cursor it was asked for (the first names ``c-0``).
    ``cycle``: the cursors alternate ``c-a``, ``c-b``, ``c-a``… with the same items.
    ``stale``: a new cursor every time, but never a new item (no progress).
    ``fresh``: a new cursor and new items every time, forever.
    """

    def __init__(self, kind: str, mode: str) -> None:
        self.kind = kind
        self.mode = mode
        self.queries: list[dict[str, list[str]]] = []

    async def __call__(self, request: web.Request) -> web.Response:
        query = parse_qs(request.query_string, keep_blank_values=True)
        self.queries.append(query)
        number = len(self.queries)
        values = query.get("since_created_at") or query.get("cursor")
        asked = values[0] if values else None
        if self.mode == "repeat":
            following = asked or "c-0"
        elif self.mode == "cycle":
            following = "c-a" if number % 2 else "c-b"
        else:
            following = f"c-{number}"
        if self.kind == "events":
            # Timestamps as cursors: the since value is echoed, or a new instant.
            if self.mode == "repeat":
                following = asked or "2026-01-01T00:00:00Z"
            elif self.mode == "cycle":
                following = f"2026-01-01T00:00:0{number % 2}Z"
            else:
                following = f"2026-01-01T00:{number // 60:02d}:{number % 60:02d}Z"
        item = number if self.mode == "fresh" else 1
        body: dict[str, Any]
        if self.kind == "conversations":
            body = {"conversations": [{"conversation_id": f"conv-{item}"}], "cursor": following}
        elif self.kind == "messages":
            message = {
                "message_id": f"msg-{item}",
                "source": "user",
                "content": "hi",
                "created_at": "2026-01-01T00:00:00Z",
            }
            body = {"messages": [message], "cursor": following}
        else:
            event = {
                "type": "agent.message",
                "event_id": f"evt-{item}",
                "conversation_id": "conv-1",
                "genie_run_id": "run-1",
                "seq_num": item,
                "created_at": "2026-01-01T00:00:00Z",
                "message": {"content": "hi"},
            }
            body = {"events": [event], "next_since_created_at": following}
        return web.json_response(body)


LISTINGS: dict[str, Callable[[GenieClient], AsyncIterator[object]]] = {
    "conversations": lambda c: c.conversations(),
    "messages": lambda c: c.conversation("conv-1").messages(),
    "messages (newest first)": lambda c: c.conversation("conv-1").messages(newest_first=True),
    "events": lambda c: c.conversation("conv-1").events(since="2025-12-31T00:00:00Z"),
}


def _kind(listing: str) -> str:
    return listing.split(" ", maxsplit=1)[0]


async def _page_through(
    listing: str, mode: str, aiohttp_server: AiohttpServer
) -> tuple[Pager, list[object]]:
    pager = Pager(_kind(listing), mode)
    base_url = await Recorder(pager).serve(aiohttp_server)
    async with runtime_client(base_url) as client:
        items = [item async for item in LISTINGS[listing](client)]
    return pager, items


@pytest.fixture
def few_pages(monkeypatch: pytest.MonkeyPatch) -> int:
    """MAX_PAGES (10,000 in production) lowered so that a loop that only stops at the
    ceiling fails in milliseconds instead of after 10,000 requests."""
    monkeypatch.setattr(C, "MAX_PAGES", PAGE_LIMIT_FOR_TESTS)
    return PAGE_LIMIT_FOR_TESTS


@pytest.mark.parametrize("listing", sorted(LISTINGS))
async def test_a_cursor_repeated_back_stops_paging_at_once(
    listing: str, few_pages: int, aiohttp_server: AiohttpServer
) -> None:
    """A page naming the very cursor it was fetched with ends the listing immediately."""
    pager, items = await _page_through(listing, "repeat", aiohttp_server)
    assert len(pager.queries) <= 2
    assert len(items) == 1


@pytest.mark.parametrize("listing", sorted(LISTINGS))
async def test_a_cursor_cycle_stops_paging(
    listing: str, few_pages: int, aiohttp_server: AiohttpServer
) -> None:
    """Cursors that come round again (a, b, a, b…) end the listing as soon as one repeats,
    not after MAX_PAGES requests."""
    pager, items = await _page_through(listing, "cycle", aiohttp_server)
    assert len(pager.queries) <= 3, f"{len(pager.queries)} pages for a 2-cursor cycle"
    assert len(items) == 1


@pytest.mark.parametrize("listing", sorted(LISTINGS))
async def test_pages_without_anything_new_stop_paging(
    listing: str, few_pages: int, aiohttp_server: AiohttpServer
) -> None:
    """Ever-new cursors that never bring a new item (no progress) end the listing at the
    first page that adds nothing."""
    pager, items = await _page_through(listing, "stale", aiohttp_server)
    assert len(pager.queries) <= 2, f"{len(pager.queries)} pages without a new item"
    assert len(items) == 1


@pytest.mark.parametrize("listing", sorted(LISTINGS))
async def test_endless_fresh_pages_stop_at_max_pages(
    listing: str, few_pages: int, aiohttp_server: AiohttpServer
) -> None:
    """A server with a new cursor and new items forever: exactly MAX_PAGES requests, so what
    is collected is bounded by MAX_PAGES pages of at most MAX_RESPONSE_BYTES each."""
    pager, items = await _page_through(listing, "fresh", aiohttp_server)
    assert len(pager.queries) == few_pages
    assert len(items) == few_pages


async def test_a_server_cursor_stays_one_query_value(aiohttp_server: AiohttpServer) -> None:
    """A cursor full of '&', '=', '#' and '/' goes back as the value of ``cursor`` only: it
    cannot add parameters or change the path. The same for a conversation id in the events
    query."""
    sneaky = "x&limit=100000&cursor=y#frag/../../admin?z"
    queries: list[tuple[str, dict[str, list[str]]]] = []

    async def respond(request: web.Request) -> web.Response:
        query = parse_qs(request.query_string, keep_blank_values=True)
        queries.append((request.raw_path.split("?")[0], query))
        if request.path.endswith("/events"):
            return web.json_response({"events": []})
        cursor = None if "cursor" in query else sneaky
        # One message per page: a page bringing nothing new ends paging (a loop guard).
        page = [{"message_id": f"m{len(queries)}", "source": "user", "content": "hi"}]
        return web.json_response({"messages": page, "cursor": cursor})

    base_url = await Recorder(respond).serve(aiohttp_server)
    conversation_id = "c&since_created_at=1999#x"
    async with runtime_client(base_url) as client:
        conversation = client.conversation(conversation_id)
        _ = [m async for m in conversation.messages()]
        _ = [e async for e in conversation.events(since="2026-01-01T00:00:00Z")]
    messages_path = f"{PREFIX}/conversations/c%26since_created_at%3D1999%23x/messages"
    assert queries[0] == (messages_path, {"limit": ["50"]})
    assert queries[1] == (messages_path, {"limit": ["50"], "cursor": [sneaky]})
    assert queries[2] == (
        f"{PREFIX}/conversations/events",
        {
            "conversation_id": [conversation_id],
            "limit": ["100"],
            "since_created_at": ["2026-01-01T00:00:00Z"],
        },
    )


async def test_history_paging_after_an_auth_pause_stops_on_a_repeating_cursor(
    few_pages: int, retry: RetryPolicy
) -> None:
    """After a runtime-connection pause the resumed reply is read from the message history.
    A history whose cursor never changes must not be paged MAX_PAGES times (collecting a
    copy of the same messages on every page), and the reply is delivered once."""
    history_pages: list[str | None] = []

    @web.middleware
    async def repeating_cursor(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.method != "GET" or not request.path.endswith("/messages"):
            return await handler(request)
        history_pages.append(request.query.get("cursor"))
        response = await handler(request.clone(rel_url=request.rel_url.with_query({})))
        assert isinstance(response, web.Response)
        assert isinstance(response.body, bytes)
        body = json.loads(response.body)
        body["result"]["messages"] = body["result"]["messages"][:1]  # the newest only
        body["result"]["cursor"] = "the-same-cursor"
        return web.json_response(body, headers={"x-request-id": "req-page"})

    sim = GenieSimulator(ping_interval=0.02, auth_interrupt_after=0.05)
    sim.app.middlewares.append(repeating_cursor)
    sim.default_turn = Turn(ConnectAuth("Salesforce", then=(Say("resumed reply"),)))

    async def authorize_soon(request: object) -> None:
        asyncio.get_running_loop().call_later(0.1, sim.authorize)

    async with sim, make_client(sim, retry) as client:
        conversation = await client.create_conversation()
        events = await collect(conversation.send("deals?", on_auth_required=authorize_soon))
    replies = [e.text for e in events if isinstance(e, AgentMessage)]
    assert replies == ["resumed reply"]
    # Each read of the history starts without a cursor and stops as soon as the cursor
    # repeats: the repeating cursor is never requested twice in a row. (The history is
    # polled a few times while the resumed run finishes; each poll is one short pass.)
    followed_twice = [
        i
        for i in range(1, len(history_pages))
        if history_pages[i - 1] == history_pages[i] == "the-same-cursor"
    ]
    assert followed_twice == [], history_pages
    assert len(history_pages) < few_pages


# --- bounded allocation: uploads and messages are refused before any byte is sent --------------


class ByteCounter:
    """A raw TCP listener counting connections and bytes: proof that nothing was sent."""

    def __init__(self) -> None:
        self.connections = 0
        self.received = 0
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ByteCounter:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            while data := await reader.read(65536):
                self.received += len(data)
            writer.close()

        self._server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


def _sparse_file(path: Path, size: int) -> Path:
    with path.open("wb") as handle:
        handle.truncate(size)
    return path


class _EndlessFile:
    """A binary file object with no size: it produces bytes for as long as it is read."""

    name = "endless.bin"

    def read(self, size: int = -1) -> bytes:
        assert size > 0, "an unbounded read of an endless file"
        return b"\0" * size


async def test_oversized_uploads_and_messages_never_reach_the_network(tmp_path: Path) -> None:
    """A file over 20 MB (a path, bytes, a file object, an endless file object; uploaded or
    attached to a message) or a message over 12,288 characters: refused locally; the server
    sees no connection and no byte. (Against the simulator:
    tests/test_rest.py::test_files_over_20_mb_are_refused_before_sending.)"""
    big_path = _sparse_file(tmp_path / "big.bin", C.MAX_UPLOAD_BYTES + 1)
    over = C.MAX_UPLOAD_BYTES + 1
    files: list[Any] = [big_path, b"\0" * over, bytearray(over), _EndlessFile()]
    clock = VirtualClock()
    quick = RetryPolicy(clock=clock.now, sleep=clock.sleep, wait_budget=1)
    fast = Timeouts(connect=2, read=2, request=2)  # a regression fails fast, never hangs
    async with (
        ByteCounter() as counter,
        runtime_client(counter.url, retry=quick, timeouts=fast) as client,
    ):
        conversation = client.conversation("conv-1")
        with pytest.raises(FileTooLargeError, match="Nothing was sent"):
            await conversation.upload(str(big_path))  # a str path (send() takes a file_id)
        for file in files:
            with pytest.raises(FileTooLargeError, match="Nothing was sent"):
                await conversation.upload(file)
            with pytest.raises(FileTooLargeError):
                await collect(conversation.send("see attached", file=file))
            with pytest.raises(FileTooLargeError):
                await conversation.send("see attached", file=file, stream=False)
        with pytest.raises(MessageTooLongError):
            conversation.send("x" * (C.MAX_MESSAGE_CHARS + 1))
        await asyncio.sleep(0.05)
    assert (counter.connections, counter.received) == (0, 0)


# --- credentials never leak: logs at every level ---------------------------------------------


async def _eventful_session(sim: GenieSimulator, client: GenieClient) -> list[BaseException]:
    """Retries, typed errors, a dropped and recovered stream, a confirmation, an auth pause,
    a stall, an upload and the history: everything that logs."""
    errors: list[BaseException] = []

    async def expect(cls: type[BaseException], call: Awaitable[object]) -> None:
        with pytest.raises(cls) as caught:
            await call
        errors.append(caught.value)

    sim.fail("create_conversation", 503, times=2)
    conversation = await client.create_conversation()
    sim.next_turn(
        Turn(
            *(Say(f"part {i}") for i in range(4)),
            faults=[StreamFault("abort_mid_event", after_events=2)],
        )
    )
    await conversation.ask("drop me")
    sim.next_turn(Turn(Confirm("Book", parameters={"days": 2}), Say("booked")))
    await conversation.ask("book", on_skill_confirmation=_approve)
    sim.next_turn(Turn(ConnectAuth("Salesforce", then=(Say("connected"),))))

    async def authorize_soon(request: object) -> None:
        asyncio.get_running_loop().call_later(0.05, sim.authorize)

    await conversation.ask("deals", on_auth_required=authorize_soon)
    await conversation.upload(b"notes", filename="notes.txt")
    _ = [m async for m in conversation.messages()]
    _ = await conversation.timeline()
    sim.fail("messages", 500, times=1)
    _ = [m async for m in conversation.messages()]
    await expect(NotFoundError, client.conversation("no-such").info())
    sim.fail("get_conversation", 401)
    await expect(AuthFailedError, conversation.info())
    sim.fail("create_conversation", 307)
    await expect(RedirectError, client.create_conversation())
    sim.fail("create_conversation", 503, times=1000)
    await expect(GenieError, client.create_conversation())
    sim.clear_faults()
    # Short decision and stall deadlines: a hook timing out, a confirmation nobody decides,
    # a failing hook and a stall, each logged at WARNING or DEBUG.
    hurried = Timeouts(connect=5, read=10, request=10, stall=0.3, decision=0.2, auth=10)
    cid = conversation.conversation_id
    async with make_client(sim, client._core.retry, timeouts=hurried) as other:
        same = other.conversation(cid)
        sim.next_turn(Turn(Confirm("Book"), Say("not booked")))
        await same.ask("book, slowly", on_skill_confirmation=_slow_decision)
        sim.next_turn(Turn(Confirm("Book"), Say("not booked")))
        await collect(same.send("book, undecided"))
        sim.next_turn(Turn(Confirm("Book"), Say("not booked")))
        await expect(HookError, same.ask("book, badly", on_skill_confirmation=_failing_decision))
        await sim.wait_idle(cid)
        sim.next_turn(Turn(Say("then silence"), Wait(None)))
        await expect(StreamStalledError, collect(same.send("hello?")))
    return errors


async def _approve(event: object) -> Approve:
    return Approve()


async def _slow_decision(event: object) -> Approve:
    await asyncio.sleep(5)
    return Approve()


async def _failing_decision(event: object) -> Approve:
    raise RuntimeError("the decision service is down")


async def test_logs_at_every_level_never_contain_a_credential(
    sim: GenieSimulator, retry: RetryPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    """Every logger (genie_async, aiohttp, asyncio, the root) at level 1, through retries,
    errors, a recovered stream, pauses and a stall: no API key, user id, access token or
    Authorization header value in any record, its arguments or its traceback."""
    capture_every_level(caplog)
    access_token = sim.issue_access_token(sim.user_id)
    secrets = {
        "api_key": sim.api_key,
        "user_id": sim.user_id,
        "access_token": access_token,
        "authorization": f"Bearer {sim.api_key}",
        "oauth authorization": f"Bearer {access_token}",
    }
    errors: list[BaseException] = []
    async with make_client(sim, retry) as client:
        errors += await _eventful_session(sim, client)
        errors += await _eventful_session(sim, client.with_access_token(access_token))
        await assert_no_open_connections(client, sim)
    texts = log_texts(caplog.records)
    for index, error in enumerate(errors):
        texts += error_texts(f"error {index}", error)
    names = {record.name for record in caplog.records}
    assert "genie_async" in names
    levels = {record.levelno for record in caplog.records}
    assert logging.DEBUG in levels
    assert logging.WARNING in levels
    assert any("retrying" in text for _, text in texts)
    assert leaks(texts, secrets) == []


# --- credentials never leak: echoes in response headers and in malformed responses ------------

ECHO_CLIENTS = ["api_key", "access_token", "admin"]


def _echo_secrets(kind: str) -> dict[str, str]:
    if kind == "api_key":
        return {"api_key": API_KEY, "user_id": USER_ID}
    if kind == "access_token":
        return {"access_token": ACCESS_TOKEN}
    return {"developer_token": DEVELOPER_TOKEN}


async def _call_as(kind: str, base_url: str) -> object:
    """One call with the given credential kind; returns what it returned."""
    if kind == "admin":
        async with AdminClient(
            token=DEVELOPER_TOKEN, base_url=base_url, retry=virtual_retry()
        ) as admin:
            return await admin.get_genie("gin-1")
    options: dict[str, Any] = (
        {"api_key": API_KEY, "user_id": USER_ID}
        if kind == "api_key"
        else {"api_key": None, "user_id": None, "access_token": ACCESS_TOKEN}
    )
    async with runtime_client(base_url, **options) as client:
        return await client.list_conversations()


def _credential_echo(request: web.Request) -> str:
    """What a hostile server or proxy could repeat back: the credential headers it got."""
    return " ".join(
        value
        for value in (request.headers.get("Authorization"), request.headers.get("X-IDP-User-Id"))
        if value
    )


HEADER_ECHOES: dict[str, Callable[[str], web.Response]] = {
    "x-request-id of an error": lambda echo: web.json_response(
        {"error_code": "auth_failed", "error_message": "denied"},
        status=401,
        headers={"x-request-id": echo},
    ),
    "WWW-Authenticate of an error": lambda echo: web.json_response(
        {"error_code": "auth_failed", "error_message": "denied"},
        status=401,
        headers={"WWW-Authenticate": f'Bearer error="invalid_token", token="{echo}"'},
    ),
    "Location of a redirect": lambda echo: web.Response(
        status=302,
        headers={"Location": "https://login.example/continue?as=" + echo.replace(" ", "+")},
    ),
    "x-request-id of a success": lambda echo: web.json_response(
        {"data": {"id": "gin-1"}, "conversations": []}, headers={"x-request-id": echo}
    ),
}


@pytest.mark.parametrize("kind", ECHO_CLIENTS)
@pytest.mark.parametrize("where", sorted(HEADER_ECHOES))
async def test_a_credential_echoed_in_a_response_header_is_redacted(
    where: str, kind: str, aiohttp_server: AiohttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Bodies echoing the credential are scrubbed (tests/test_secrets.py); headers must be
    too: error.request_id, error.headers, the redirect hint (which quotes Location), the
    returned model's request_id, and the logs that mention the request id."""
    capture_every_level(caplog)

    async def respond(request: web.Request) -> web.Response:
        return HEADER_ECHOES[where](_credential_echo(request))

    base_url = await Recorder(respond).serve(aiohttp_server)
    texts: list[tuple[str, str]] = []
    try:
        result = await _call_as(kind, base_url)
    except GenieError as error:
        texts += error_texts(where, error)
    else:
        texts += [("result repr", repr(result)), ("result str", str(result))]
    texts += log_texts(caplog.records)
    assert leaks(texts, _echo_secrets(kind)) == []


class RawServer:
    """A TCP server answering every request with raw bytes built from the request head:
    responses no HTTP server library would produce."""

    def __init__(self, answer: Callable[[dict[str, bytes]], bytes]) -> None:
        self.answer = answer
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower().decode()] = value.strip()
                writer.write(self.answer(headers))
                await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self._server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


def _raw_echo(headers: dict[str, bytes]) -> bytes:
    return b" ".join(
        value for value in (headers.get("authorization"), headers.get("x-idp-user-id")) if value
    )


MALFORMED: dict[str, Callable[[bytes], bytes]] = {
    "status line": lambda echo: b"HTTP/1.1 2x0 " + echo + b"\r\n\r\n",
    "header line without a colon": lambda echo: (
        b"HTTP/1.1 200 OK\r\n" + echo + b"\r\nContent-Length: 2\r\n\r\n{}"
    ),
    "header line too long": lambda echo: (
        b"HTTP/1.1 200 OK\r\nX-Echo: " + echo + b"a" * 9000 + b"\r\nContent-Length: 2\r\n\r\n{}"
    ),
    "content-length": lambda echo: b"HTTP/1.1 200 OK\r\nContent-Length: " + echo + b"\r\n\r\n{}",
    "chunk size": lambda echo: (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + echo + b"\r\n"
    ),
}


@pytest.mark.parametrize("kind", ECHO_CLIENTS)
@pytest.mark.parametrize("shape", sorted(MALFORMED))
async def test_a_credential_echoed_in_a_malformed_response_is_redacted(
    shape: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A response aiohttp cannot parse, repeating the credential where the parser quotes
    it in its message: the resulting error's text never contains the credential."""
    capture_every_level(caplog)
    texts: list[tuple[str, str]] = []
    async with RawServer(lambda headers: MALFORMED[shape](_raw_echo(headers))) as server:
        with pytest.raises(GenieError) as caught:
            await _call_as(kind, server.url)
    texts += error_texts(shape, caught.value)
    texts += log_texts(caplog.records)
    assert leaks(texts, _echo_secrets(kind)) == []


@pytest.mark.parametrize("kind", ECHO_CLIENTS)
@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 9000 + b"\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 2x0 Nonsense\r\n\r\n",
    ],
    ids=["header too long", "bad status"],
)
async def test_the_exceptions_chained_to_an_error_never_hold_a_credential(
    answer: bytes, kind: str
) -> None:
    """The transport exception kept as ``__cause__`` is part of the error too: repr() of
    every exception in the chain (as error reporters and debuggers show it) must not
    contain the request's Authorization or X-IDP-User-Id values."""
    async with RawServer(lambda headers: answer) as server:
        with pytest.raises(APIResponseError) as caught:
            await _call_as(kind, server.url)
    chain = chained(caught.value)
    assert chain, "the transport exception is kept as the cause"
    texts = [(f"cause {type(e).__name__} repr", repr(e)) for e in chain]
    texts += [(f"cause {type(e).__name__} args", repr(e.args)) for e in chain]
    assert leaks(texts, _echo_secrets(kind)) == []


# --- credentials never leak: the Developer API client ---------------------------------------


def _key_handing_app() -> web.Application:
    """A Developer API that hands out RECEIVED_KEY and then fails in every way."""
    calls = itertools.count()

    async def create(request: web.Request) -> web.Response:
        if next(calls) == 0:
            return web.json_response({"message": "busy"}, status=503)  # retried
        return web.json_response({"data": {"client_id": "gincl-1", "api_key": RECEIVED_KEY}})

    async def regenerate(request: web.Request) -> web.Response:
        return web.json_response({"data": {"client_id": "gincl-1", "api_key": RECEIVED_KEY}})

    async def get_genie(request: web.Request) -> web.Response:
        return web.json_response(
            {"message": f"key {RECEIVED_KEY} and {_credential_echo(request)} refused"},
            status=403,
        )

    async def start(request: web.Request) -> web.Response:
        return web.json_response({"data": {"id": 42, "note": RECEIVED_KEY}})

    async def delete(request: web.Request) -> web.Response:
        return web.Response(status=500, text=f"<html>{RECEIVED_KEY}</html>")

    app = web.Application()
    app.router.add_post("/api/agentic/genies/clients", create)
    app.router.add_post("/api/agentic/genies/clients/gincl-1/regenerate", regenerate)
    app.router.add_get("/api/agentic/genies/gin-1", get_genie)
    app.router.add_post("/api/agentic/genies/gin-1/start", start)
    app.router.add_delete("/api/agentic/genies/clients/gincl-1", delete)
    return app


async def test_admin_secrets_never_leak(
    aiohttp_server: AiohttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The Developer API token and the API keys it hands out: not in the models however they
    are rendered, not in logs at any level, not in the errors of later calls that repeat
    them (403 JSON, 500 HTML, an unusable 2xx). (Against the simulator:
    tests/test_admin.py::test_the_api_key_never_leaks.)"""
    capture_every_level(caplog)
    server = await aiohttp_server(_key_handing_app())
    texts: list[tuple[str, str]] = []
    admin = AdminClient(
        token=DEVELOPER_TOKEN, base_url=str(server.make_url("")), retry=virtual_retry()
    )
    async with admin:
        created = await admin.create_genie_client("portal")
        regenerated = await admin.regenerate_api_key("gincl-1")
        for label, call, cls in (
            ("403 echo", admin.get_genie("gin-1"), PermissionDeniedError),
            ("unusable 2xx", admin.start_genie("gin-1"), APIResponseError),
            ("500 html", admin.delete_client("gincl-1"), GenieError),
        ):
            with pytest.raises(cls) as caught:
                await call
            texts += error_texts(label, caught.value)
    assert isinstance(created, GenieClientCredentials)
    assert isinstance(created.api_key, Secret)
    assert created.api_key.reveal() == RECEIVED_KEY  # the application can still read it
    for label, model in (("created", created), ("regenerated", regenerated)):
        as_dict = msgspec.structs.asdict(model)
        texts += [
            (f"{label} repr", repr(model)),
            (f"{label} str", str(model)),
            (f"{label} format", f"{model} {model!r} {model.api_key} {model.api_key!r}"),
            (f"{label} asdict", repr(as_dict)),
            (f"{label} json default=str", json.dumps(as_dict, default=str)),
        ]
        with pytest.raises(TypeError):
            msgspec.json.encode(model)
    texts += [("admin repr", repr(admin)), ("admin str", str(admin))]
    texts += [("credentials", repr(admin._credentials))]
    texts += log_texts(caplog.records)
    assert any("retrying" in text for _, text in texts)
    secrets = {"developer_token": DEVELOPER_TOKEN, "received_key": RECEIVED_KEY}
    assert leaks(texts, secrets) == []


# --- credentials never leak: the CLI's output ------------------------------------------------


def _cli() -> list[str]:
    """The installed ``genie-async`` console script (the module when not installed)."""
    script = Path(sys.executable).with_name("genie-async")
    return [str(script)] if script.exists() else [sys.executable, "-m", "genie_async._cli"]


async def run_cli(*args: str, env: dict[str, str], stdin: str = "") -> tuple[int, str]:
    """Run the command with only ``env``'s GENIE_* variables; stdout and stderr together."""
    full_env = {key: value for key, value in os.environ.items() if not key.startswith("GENIE_")}
    full_env.update({"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb", **env})
    process = await asyncio.create_subprocess_exec(
        *_cli(),
        *args,
        env=full_env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 90)
    assert process.returncode is not None
    return process.returncode, out.decode("utf-8", "replace") + err.decode("utf-8", "replace")


def _cli_secrets(env: dict[str, str]) -> dict[str, str]:
    secrets = {name: value for name, value in env.items() if name != "GENIE_USER_EMAIL"}
    for name in ("GENIE_API_KEY", "GENIE_ACCESS_TOKEN", "GENIE_DEVELOPER_TOKEN"):
        if name in env:
            secrets[f"Authorization with {name}"] = f"Bearer {env[name]}"
    return secrets


CHATS = ["key accepted", "key rejected", "user not allow-listed", "token accepted", "revoked"]


@pytest.mark.parametrize("case", CHATS)
async def test_the_chat_command_never_prints_a_credential(case: str, sim: GenieSimulator) -> None:
    """``genie-async chat --base-url … --genie …`` with credentials in the environment, good
    and bad, through a turn, /history (once failing with 401) and /quit: stdout and stderr
    never contain the key, the user id, the token or an Authorization value."""
    sim.default_turn = Turn(Say("hello back"))
    env = {"GENIE_API_KEY": sim.api_key, "GENIE_USER_ID": sim.user_id}
    if case == "key rejected":
        env["GENIE_API_KEY"] = "deadbeef" * 8
    elif case == "user not allow-listed":
        env["GENIE_USER_ID"] = sim.add_user(allow_listed=False)
    elif case in ("token accepted", "revoked"):
        env = {"GENIE_ACCESS_TOKEN": sim.issue_access_token(sim.user_id)}
        if case == "revoked":
            sim.revoke_access_token(env["GENIE_ACCESS_TOKEN"])
    accepted = case in ("key accepted", "token accepted")
    if accepted:
        sim.fail("messages", 401)  # the first /history fails: an error line is printed
    code, output = await run_cli(
        "chat",
        "--base-url",
        sim.url,
        "--genie",
        sim.genie_id,
        env=env,
        stdin="hi there\n/history\n/history\n/quit\n",
    )
    if accepted:
        assert code == 0, output
        assert "hello back" in output
        assert "AuthFailedError" in output
    else:
        assert code == 1, output
        assert "Error" in output
    assert "Traceback" not in output
    assert [name for name, value in _cli_secrets(env).items() if value in output] == []


DOCTORS = ["healthy", "wrong developer token", "user not allow-listed", "rotated key", "token"]


@pytest.mark.parametrize("case", DOCTORS)
async def test_the_doctor_command_never_prints_a_credential(case: str, sim: GenieSimulator) -> None:
    """``genie-async doctor`` with a runtime credential, a Developer API token and the
    user's email, healthy and failing at different checks: no secret in its output.
    (A healthy and a 406 run: tests/test_doctor.py::test_the_command_exit_code_and_output.)"""
    env = {
        "GENIE_API_KEY": sim.api_key,
        "GENIE_USER_ID": sim.user_id,
        "GENIE_DEVELOPER_TOKEN": sim.developer_token,
        "GENIE_USER_EMAIL": sim.user_email,
    }
    if case == "wrong developer token":
        env["GENIE_DEVELOPER_TOKEN"] = DEVELOPER_TOKEN
    elif case == "user not allow-listed":
        env["GENIE_USER_EMAIL"] = "otto@example.com"
        env["GENIE_USER_ID"] = sim.add_user(allow_listed=False, email=env["GENIE_USER_EMAIL"])
    elif case == "rotated key":
        sim.regenerate_api_key()  # the key in the environment is now the old one
    elif case == "token":
        del env["GENIE_API_KEY"], env["GENIE_USER_ID"]
        env["GENIE_ACCESS_TOKEN"] = sim.issue_access_token(sim.user_id)
    code, output = await run_cli(
        "doctor", "--genie", sim.genie_id, "--base-url", sim.url, "--stream-timeout", "3", env=env
    )
    assert code == (0 if case in ("healthy", "token") else 1), output
    assert "Traceback" not in output
    assert [name for name, value in _cli_secrets(env).items() if value in output] == []
