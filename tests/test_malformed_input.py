"""Malformed input end to end: every bad thing a server can send gives a typed error, or a
MalformedEvent, and nothing received before it is lost (real loopback servers, no mocks)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
from aiohttp import web

from genie_async import (
    AgentMessage,
    APIResponseError,
    BadGatewayError,
    EventStream,
    EventTooLargeError,
    GenieClient,
    MalformedEvent,
    ProcessingStarted,
    RetryPolicy,
    StreamStalledError,
)
from genie_async.events import GenieEvent, event_from_object
from genie_async.testing import VirtualClock

from .conftest import TEST_TIMEOUTS

KEY = "f" * 64
CONVERSATION = "/api/v1/genies/gin-x/chat/conversations/c1"
EVENTS = "/api/v1/genies/gin-x/chat/conversations/events"
RUN = "run-1"
# Recent enough for the 24-hour retention check of the persisted-events replay.
T0 = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(minutes=5)
STALL = dataclasses.replace(TEST_TIMEOUTS, stall=0.3)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def stamp(seq: int) -> str:
    return (T0 + dt.timedelta(seconds=seq)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def wire(kind: str, seq: int, **fields: Any) -> dict[str, Any]:
    """An event as the server persists and streams it."""
    return {
        "type": kind,
        "event_id": f"ev-{seq}",
        "conversation_id": "c1",
        "genie_run_id": RUN,
        "seq_num": seq,
        "created_at": stamp(seq),
        **fields,
    }


def frame(obj: dict[str, Any]) -> bytes:
    return (
        f"event: {obj['type']}\nid: {obj['event_id']}\ndata: ".encode()
        + msgspec.json.encode(obj)
        + b"\n\n"
    )


def frames(*objs: dict[str, Any]) -> bytes:
    return b"".join(frame(obj) for obj in objs)


STARTED = wire("processing.started", 1)
ONE = wire("agent.message", 2, message="one", message_id="m1")
PING = b'event: system.ping\ndata: {"type":"system.ping","timestamp":"t"}\n\n'


def decoded(*objs: dict[str, Any]) -> list[GenieEvent]:
    """The typed events the consumer must receive for these wire objects."""
    return [event_from_object(obj) for obj in objs]


class FakeGenie:
    """A loopback server for one conversation: records requests, counts open streams."""

    def __init__(self, aiohttp_server: Any) -> None:
        self._aiohttp_server = aiohttp_server
        self.url = ""
        self.open_streams = 0
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path, headers

    async def start(
        self,
        *,
        send: Handler,
        run: Handler | None = None,
        events: Handler | None = None,
    ) -> str:
        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            self.requests.append((request.method, request.path, dict(request.headers)))
            return await handler(request)

        async def no_messages(request: web.Request) -> web.Response:
            return web.json_response({"result": {"messages": []}})

        async def idle(request: web.Request) -> web.Response:
            return web.json_response({"result": {"conversation_id": "c1", "state": "idle"}})

        app = web.Application(middlewares=[record])
        app.router.add_post(f"{CONVERSATION}/messages", send)
        app.router.add_get(f"{CONVERSATION}/messages", no_messages)
        app.router.add_get(CONVERSATION, idle)
        if run is not None:
            app.router.add_get(f"{CONVERSATION}/genie-runs/{{run}}", run)
        if events is not None:
            app.router.add_get(EVENTS, events)
        server = await self._aiohttp_server(app)
        self.url = str(server.make_url("")).rstrip("/")
        return self.url

    def calls(self, method: str, path: str) -> list[dict[str, str]]:
        """Headers of every request made to ``method path``."""
        return [headers for m, p, headers in self.requests if (m, p) == (method, path)]

    @asynccontextmanager
    async def sse(self, request: web.Request, request_id: str) -> AsyncIterator[web.StreamResponse]:
        """An open event-stream response, counted while open; a client hang-up ends it quietly."""
        self.open_streams += 1
        try:
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "x-request-id": request_id}
            )
            await response.prepare(request)
            yield response
        except ConnectionError:
            pass  # the client closed the stream: expected for the endless ones
        finally:
            self.open_streams -= 1


@pytest.fixture
def genie(aiohttp_server: Any) -> FakeGenie:
    return FakeGenie(aiohttp_server)


@asynccontextmanager
async def connect(
    genie: FakeGenie, retry: RetryPolicy, **options: Any
) -> AsyncIterator[GenieClient]:
    """A client of the fake genie; on the way out, nothing may be left open on either side."""
    options.setdefault("timeouts", TEST_TIMEOUTS)
    async with GenieClient(
        "gin-x", base_url=genie.url, api_key=KEY, user_id="u", retry=retry, **options
    ) as client:
        yield client
        session = client._core._session
        if session is not None and session.connector is not None:
            acquired = session.connector._acquired
            assert not acquired, f"{len(acquired)} connection(s) still checked out"
        for _ in range(200):  # the server notices a closed socket on its next write
            if genie.open_streams == 0:
                break
            await asyncio.sleep(0.01)
        assert genie.open_streams == 0, "an event stream is still open on the server"


async def consume_into(stream: EventStream, seen: list[GenieEvent]) -> None:
    """Read the whole stream inside async with, keeping what arrived before any error."""
    async with stream:
        async for event in stream:
            seen.append(event)


def streaming(genie: FakeGenie, *parts: bytes, request_id: str = "req-1") -> Handler:
    """A send handler that writes ``parts`` one write each, then ends the response."""

    async def send(request: web.Request) -> web.StreamResponse:
        await request.read()
        async with genie.sse(request, request_id) as response:
            for part in parts:
                await response.write(part)
                await asyncio.sleep(0.005)  # let the client read each part on its own
            await response.write_eof()
        return response

    return send


# --- bad data inside a well-formed stream ------------------------------------------------------


async def test_invalid_utf8_in_data_is_replaced_and_the_turn_continues(
    genie: FakeGenie, retry: RetryPolicy
) -> None:
    """Invalid UTF-8 becomes U+FFFD (per the SSE spec): in a string, the event still decodes;
    in the JSON structure, it is a MalformedEvent with the replaced text. The turn goes on."""
    in_string = frame(wire("agent.message", 3, message="@@")).replace(
        b"@@", b"caf\xe9 cr\xc3\xa8me"
    )
    split = in_string.index(b"\xc3") + 1  # a valid two-byte character cut between two writes
    structural = b'event: agent.message\ndata: {"type":"agent.message",\xff"message":"x"}\n\n'
    two = wire("agent.message", 4, message="two")
    finished = wire("processing.finished", 5)
    await genie.start(
        send=streaming(
            genie,
            frames(STARTED, ONE),
            in_string[:split],
            in_string[split:],
            structural,
            frames(two, finished),
        )
    )
    async with connect(genie, retry) as client, client.conversation("c1").send("hi") as stream:
        seen = [event async for event in stream]
    replaced = event_from_object(wire("agent.message", 3, message="caf\ufffd cr\u00e8me"))
    assert seen[:3] == [*decoded(STARTED, ONE), replaced]
    malformed = seen[3]
    assert isinstance(malformed, MalformedEvent)
    assert malformed.type == "agent.message"
    assert malformed.raw == '{"type":"agent.message",\ufffd"message":"x"}'
    assert malformed.error.startswith("invalid JSON")
    assert seen[4:] == decoded(two, finished)
    assert stream.outcome == "completed"
    assert stream.final_text == "two"


async def test_invalid_json_in_data_is_a_malformed_event_and_the_turn_continues(
    genie: FakeGenie, retry: RetryPolicy
) -> None:
    """Data that is not JSON is a MalformedEvent with .raw and .error; the turn goes on."""
    broken = '{"type":"agent.message","message":"cut off'
    two = wire("agent.message", 3, message="two")
    finished = wire("processing.finished", 4)
    bad = b"event: agent.message\nid: ev-x\ndata: " + broken.encode() + b"\n\n"
    await genie.start(send=streaming(genie, frames(STARTED, ONE), bad, frames(two, finished)))
    async with connect(genie, retry) as client, client.conversation("c1").send("hi") as stream:
        seen = [event async for event in stream]
    malformed = seen[2]
    assert isinstance(malformed, MalformedEvent)
    assert (malformed.type, malformed.raw) == ("agent.message", broken)
    assert malformed.error == "invalid JSON: Input data was truncated"
    assert malformed.event_id is None  # the SSE id: line is not the event's envelope
    assert seen == [*decoded(STARTED, ONE), malformed, *decoded(two, finished)]
    assert stream.outcome == "completed"
    assert stream.cursor.last_seq_num == 4


async def test_wrong_field_types_give_a_malformed_event_with_its_envelope(
    genie: FakeGenie, retry: RetryPolicy
) -> None:
    """A known type with wrong field types is a MalformedEvent keeping event_id and seq_num;
    a confirmation without call_id is delivered as malformed, never decided. The turn goes on."""
    wrong = wire("agent.message", 3, message=42, message_id=["m3"])
    no_call = wire("skill.confirmation_required", 4, skill_name="Submit")
    two = wire("agent.message", 5, message="two")
    finished = wire("processing.finished", 6)
    await genie.start(send=streaming(genie, frames(STARTED, ONE, wrong, no_call, two, finished)))
    async with connect(genie, retry) as client, client.conversation("c1").send("hi") as stream:
        seen = [event async for event in stream]
    assert seen[:2] == decoded(STARTED, ONE)
    assert seen[4:] == decoded(two, finished)
    for event, obj in ((seen[2], wrong), (seen[3], no_call)):
        assert isinstance(event, MalformedEvent)
        assert event.type == obj["type"]
        assert (event.event_id, event.seq_num) == (obj["event_id"], obj["seq_num"])
        assert (event.conversation_id, event.genie_run_id) == ("c1", RUN)
        assert event.created_at == obj["created_at"]
        assert event.raw == msgspec.json.encode(obj).decode()
    wrong_event, no_call_event = seen[2], seen[3]
    assert isinstance(wrong_event, MalformedEvent)
    assert isinstance(no_call_event, MalformedEvent)
    assert "$.message" in wrong_event.error
    assert "call_id" in no_call_event.error
    assert stream.decisions == {}
    assert not any("skill_approval" in path for _, path, _ in genie.requests)
    assert stream.outcome == "completed"


# --- a send that answers with something other than an event stream ----------------------------


async def test_json_content_type_on_the_send_is_an_api_response_error(
    genie: FakeGenie, retry: RetryPolicy
) -> None:
    """A 200 with application/json instead of an event stream is an APIResponseError carrying
    the status, the scrubbed body and the request id; the message is not sent twice."""
    body = msgspec.json.encode({"result": {"genie_run_id": RUN, "echo": f"Bearer {KEY}"}})

    async def send(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(
            body=body, content_type="application/json", headers={"x-request-id": "req-json"}
        )

    await genie.start(send=send)
    async with connect(genie, retry) as client:
        seen: list[GenieEvent] = []
        with pytest.raises(APIResponseError) as info:
            await consume_into(client.conversation("c1").send("hi"), seen)
    error = info.value
    assert type(error) is APIResponseError
    assert seen == []
    assert error.status == 200
    assert error.request_id == "req-json"
    assert error.body == body.decode().replace(KEY, "<redacted>")
    assert KEY not in str(error)
    assert KEY not in str(error.body)
    assert "application/json" in error.message
    assert (error.method, error.path) == ("POST", f"{CONVERSATION}/messages")
    assert len(genie.calls("POST", f"{CONVERSATION}/messages")) == 1


HTML_502 = (
    "<html><head><title>502 Bad Gateway</title></head>"
    "<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)


async def test_an_html_502_on_the_send_is_a_bad_gateway_error_once_retries_give_up(
    genie: FakeGenie,
) -> None:
    """An HTML 502 page is retried until the budget is spent, then raised as BadGatewayError
    with the status, the last request id and a message naming the HTML body."""
    clock = VirtualClock()
    retry = RetryPolicy(wait_budget=5, wait_jitter=0, clock=clock.now, sleep=clock.sleep)
    attempts = 0

    async def send(request: web.Request) -> web.Response:
        nonlocal attempts
        await request.read()
        attempts += 1
        return web.Response(
            status=502,
            text=HTML_502,
            content_type="text/html",
            headers={"x-request-id": f"req-502-{attempts}"},
        )

    await genie.start(send=send)
    async with connect(genie, retry) as client:
        seen: list[GenieEvent] = []
        with pytest.raises(BadGatewayError) as info:
            await consume_into(client.conversation("c1").send("hi"), seen)
    error = info.value
    assert seen == []
    assert error.status == 502
    assert error.request_id == "req-502-3"
    assert error.attempts == 3
    assert error.message == f"Bad Gateway (non-JSON body: text/html, {len(HTML_502)} bytes)"
    assert error.body == HTML_502
    assert clock.sleeps == [1.0, 2.0]  # a third wait (4 s) would pass the 5 s budget
    assert attempts == 3
    # Before each retry the history was checked for the message (it was not there).
    assert len(genie.calls("GET", f"{CONVERSATION}/messages")) == 2


# --- a body cut off in the middle of an event -------------------------------------------------

TURN = [
    STARTED,
    ONE,
    wire("agent.message", 3, message="two"),
    wire("agent.message", 4, message="three, cut in half on the first connection"),
    wire("agent.message", 5, message="four"),
    wire("processing.finished", 6),
]


@pytest.mark.parametrize("recovery", ["reconnect", "replay"])
async def test_a_truncated_chunked_body_recovers_without_loss_or_repeats(
    genie: FakeGenie, retry: RetryPolicy, recovery: str
) -> None:
    """The server aborts mid-event: the stream reconnects with Last-Event-ID (or, when the run
    endpoint 404s, replays the persisted events); every event arrives exactly once, in order."""
    cut = frame(TURN[3])

    async def send(request: web.Request) -> web.StreamResponse:
        await request.read()
        async with genie.sse(request, "req-send") as response:
            await response.write(frames(*TURN[:3]))
            await response.write(cut[: len(cut) // 2])
            await asyncio.sleep(0.05)  # the client reads the whole events and half of one
            assert request.transport is not None
            request.transport.abort()
        return response

    async def run(request: web.Request) -> web.StreamResponse:
        if recovery == "replay":
            return web.json_response(
                {"error": {"code": "not_found", "message": "No such run"}}, status=404
            )
        last = request.headers.get("Last-Event-ID")
        ids = [obj["event_id"] for obj in TURN]
        start = ids.index(last) if last in ids else 0  # replays from (and including) it
        async with genie.sse(request, "req-run") as response:
            await response.write(frames(*TURN[start:]))
            await response.write_eof()
        return response

    async def events(request: web.Request) -> web.Response:
        since = request.query.get("since_created_at", "")
        persisted = [obj for obj in TURN if obj["created_at"] >= since]  # inclusive, as the API
        return web.json_response({"result": {"events": persisted, "next_since_created_at": None}})

    await genie.start(send=send, run=run, events=events)
    async with connect(genie, retry) as client, client.conversation("c1").send("hi") as stream:
        seen = [event async for event in stream]
    assert seen == decoded(*TURN)
    assert stream.outcome == "completed"
    assert len(genie.calls("POST", f"{CONVERSATION}/messages")) == 1  # never re-sent
    reconnects = genie.calls("GET", f"{CONVERSATION}/genie-runs/{RUN}")
    assert [headers.get("Last-Event-ID") for headers in reconnects] == ["ev-3"]
    replays = [(m, p) for m, p, _ in genie.requests if p == EVENTS]
    assert len(replays) == (1 if recovery == "replay" else 0)


async def test_a_non_sse_200_on_a_reconnect_falls_back_to_the_persisted_events(
    genie: FakeGenie, retry: RetryPolicy
) -> None:
    """After a drop, a reconnect answered 200 text/html (a proxy page) counts as a failed
    reconnect: the turn completes from the persisted events, each event exactly once."""

    async def send(request: web.Request) -> web.StreamResponse:
        await request.read()
        async with genie.sse(request, "req-send") as response:
            await response.write(frames(*TURN[:3]))
            await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.abort()
        return response

    async def run(request: web.Request) -> web.Response:
        return web.Response(
            text="<html>maintenance</html>",
            content_type="text/html",
            headers={"x-request-id": "req-proxy"},
        )

    async def events(request: web.Request) -> web.Response:
        since = request.query.get("since_created_at", "")
        persisted = [obj for obj in TURN if obj["created_at"] >= since]
        return web.json_response({"result": {"events": persisted, "next_since_created_at": None}})

    await genie.start(send=send, run=run, events=events)
    async with connect(genie, retry) as client:
        seen: list[GenieEvent] = []
        await consume_into(client.conversation("c1").send("hi"), seen)
    assert seen == decoded(*TURN)
    reconnects = genie.calls("GET", f"{CONVERSATION}/genie-runs/{RUN}")
    assert 1 <= len(reconnects) <= retry.reconnect_attempts
    assert len(genie.calls("GET", EVENTS)) >= 1


# --- size and liveness bounds -----------------------------------------------------------------


async def test_an_event_over_the_size_cap_raises_after_the_events_before_it(
    genie: FakeGenie, retry: RetryPolicy
) -> None:
    """An event over max_event_bytes raises EventTooLargeError with a cursor; the events before
    it in the same chunk were delivered, and the stream is not recovered."""
    two = wire("agent.message", 3, message="two")
    big = wire("agent.message", 4, message="y" * 4000)
    finished = wire("processing.finished", 5)
    await genie.start(
        send=streaming(genie, frames(STARTED, ONE, two, big, finished), request_id="req-big")
    )
    async with connect(genie, retry, max_event_bytes=1024) as client:
        seen: list[GenieEvent] = []
        with pytest.raises(EventTooLargeError) as info:
            await consume_into(client.conversation("c1").send("hi"), seen)
    error = info.value
    assert seen == decoded(STARTED, ONE, two)
    assert error.limit == 1024
    assert error.request_id == "req-big"
    assert error.cursor is not None
    assert (error.cursor.last_event_id, error.cursor.last_seq_num) == ("ev-3", 3)
    assert error.cursor.genie_run_id == RUN
    assert not genie.calls("GET", f"{CONVERSATION}/genie-runs/{RUN}")


ENDLESS_LIMIT = 64 * 1024 * 1024  # the server gives up here; the client must stop far sooner


async def test_a_line_that_never_ends_raises_event_too_large_quickly(
    genie: FakeGenie, retry: RetryPolicy
) -> None:
    """A data line that never ends is cut off at max_event_bytes: EventTooLargeError, fast,
    after the events before it, while the server was still writing."""
    written = 0

    async def send(request: web.Request) -> web.StreamResponse:
        nonlocal written
        await request.read()
        async with genie.sse(request, "req-line") as response:
            await response.write(frame(STARTED) + b"event: agent.message\ndata: ")
            while written < ENDLESS_LIMIT:
                await response.write(b"x" * 16384)
                written += 16384
                await asyncio.sleep(0)
        return response

    await genie.start(send=send)
    async with connect(genie, retry, max_event_bytes=65536) as client:
        seen: list[GenieEvent] = []
        started = time.monotonic()
        with pytest.raises(EventTooLargeError) as info:
            await consume_into(client.conversation("c1").send("hi"), seen)
        elapsed = time.monotonic() - started
    assert seen == decoded(STARTED)
    assert info.value.limit == 65536
    assert info.value.cursor.last_seq_num == 1
    assert elapsed < 5
    assert written < ENDLESS_LIMIT  # the client hung up; the server did not run out of data


def endless(genie: FakeGenie, unit: bytes, request_id: str) -> tuple[Handler, list[int]]:
    """A send handler: one event, then 20 ``unit`` every 5 ms until the client hangs up."""
    written = [0]

    async def send(request: web.Request) -> web.StreamResponse:
        await request.read()
        async with genie.sse(request, request_id) as response:
            await response.write(frame(STARTED))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                await response.write(unit * 20)
                written[0] += 20 * len(unit)
                await asyncio.sleep(0.005)
        return response

    return send, written


@pytest.mark.parametrize(
    ("unit", "what"),
    [
        (b": " + b"c" * 98 + b"\n", "comments"),
        (PING, "pings"),
        (b"retry: 1000\nid: ev-1\n\n", "id-only-frames"),
    ],
    ids=["comments", "pings", "id-only-frames"],
)
async def test_endless_keepalives_stall_with_bounded_memory(
    genie: FakeGenie, retry: RetryPolicy, unit: bytes, what: str
) -> None:
    """Endless comments, pings or id-only frames never count as progress: StreamStalledError
    after the stall timeout, although far more than max_event_bytes of them arrived."""
    send, written = endless(genie, unit, f"req-{what}")
    await genie.start(send=send)
    async with connect(genie, retry, timeouts=STALL, max_event_bytes=1024) as client:
        seen: list[GenieEvent] = []
        started = time.monotonic()
        with pytest.raises(StreamStalledError) as info:
            await consume_into(client.conversation("c1").send("hi"), seen)
        elapsed = time.monotonic() - started
    assert seen == decoded(STARTED)
    assert isinstance(seen[0], ProcessingStarted)
    assert info.value.request_id == f"req-{what}"
    assert info.value.cursor.last_seq_num == 1
    assert 0.3 <= elapsed < 5
    # Complete keep-alive lines cost nothing: over 8x the cap went by without a size error.
    assert written[0] > 8 * 1024


async def test_the_final_text_is_not_taken_from_a_malformed_message(
    genie: FakeGenie, retry: RetryPolicy
) -> None:
    """A malformed agent.message after a good one leaves final_text at the good one."""
    bad = wire("agent.message", 3, message=["not", "text"])
    finished = wire("processing.finished", 4)
    await genie.start(send=streaming(genie, frames(STARTED, ONE, bad, finished)))
    async with connect(genie, retry) as client:
        reply = await client.conversation("c1").ask("hi")
    assert [type(e) for e in reply.events][1:3] == [AgentMessage, MalformedEvent]
    assert reply.text == "one"
