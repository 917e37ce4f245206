"""The streaming benchmark's server: one pre-generated Genie turn served over loopback.

Run by ``bench_stream.py`` in a separate process (``python benchmarks/_server.py --events N``)
so the client being measured has its own interpreter and CPU. The body is generated once at
start-up and every request gets the very same bytes, written in large chunks so that the
client's parsing, not the server, is the bottleneck.

Routes:

* ``GET /stream``: the raw SSE body (contestants a, b, c);
* ``POST /api/v1/genies/{genie}/chat/conversations/{cid}/messages``: the same body in the
  shape genie_async expects (``text/event-stream``, ``x-request-id``).

When it is listening it prints one JSON line on stdout (``port`` and the facts of the body:
``bytes``, ``frames``, ``events``, ``pings``, ``message_bytes``), then serves until killed.
Running it by hand is handy for a look at the stream::

    python benchmarks/_server.py --events 3 &
    curl -sN http://127.0.0.1:<port>/stream
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import socket
import sys
import uuid
from dataclasses import dataclass

from aiohttp import web

#: Target size of one ``agent.message`` frame, framing included (the issue's "about 340").
#: The envelope alone (five UUIDs: the ``id:`` line, ``event_id``, ``conversation_id``,
#: ``genie_run_id``, ``message_id``) already takes about 375 bytes, so in practice every
#: message gets :data:`MIN_MESSAGE` characters and frames come out a little larger.
EVENT_BYTES = 340
#: The shortest message text (a short real reply, never an empty string).
MIN_MESSAGE = 24
#: A ``system.ping`` keep-alive after every this many messages.
PING_EVERY = 1_000
#: Size of each ``write`` of the body.
WRITE_CHUNK = 64 * 1024

CREATED_AT = "2026-06-08T12:00:00.123456Z"
PING_FRAME = (
    b'event: system.ping\ndata: {"type":"system.ping","timestamp":"2026-06-08T12:00:32Z"}\n\n'
)
# Plain markdown-ish prose; repeated and cut to the length each message needs.
_FILLER = (
    "Your **PTO balance** is 12.5 days; 3 days are pending approval for Nov 1-3. "
    "Requests over 5 days need a manager's sign-off, see the HR policy for details. "
)


@dataclass(frozen=True)
class Body:
    """The bytes every client receives, and what they contain."""

    data: bytes
    frames: int  # every SSE frame, keep-alives included
    events: int  # frames a client should deliver: started + messages + finished
    pings: int
    message_bytes: int  # size of one agent.message frame


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _frame(name: str, event_id: str, payload: dict[str, object]) -> bytes:
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return f"event: {name}\nid: {event_id}\ndata: {data}\n\n".encode()


def build_body(messages: int, *, seed: int = 2026) -> Body:
    """``processing.started``, ``messages`` agent messages, ``processing.finished``, with a
    ``system.ping`` after every :data:`PING_EVERY` messages. Deterministic for a seed."""
    rng = random.Random(seed)
    conversation_id = _uuid(rng)
    run_id = _uuid(rng)

    def envelope(kind: str, seq: int) -> tuple[str, dict[str, object]]:
        event_id = _uuid(rng)
        return event_id, {
            "type": kind,
            "event_id": event_id,
            "conversation_id": conversation_id,
            "genie_run_id": run_id,
            "seq_num": seq,
            "created_at": CREATED_AT,
        }

    parts: list[bytes] = []
    event_id, payload = envelope("processing.started", 1)
    parts.append(_frame("processing.started", event_id, payload))
    pings = 0
    message_bytes = 0
    for index in range(messages):
        event_id, payload = envelope("agent.message", index + 2)
        payload["message"] = ""
        payload["message_id"] = _uuid(rng)
        bare = len(_frame("agent.message", event_id, payload))
        payload["message"] = (_FILLER * 8)[: max(EVENT_BYTES - bare, MIN_MESSAGE)]
        frame = _frame("agent.message", event_id, payload)
        message_bytes = len(frame)
        parts.append(frame)
        if (index + 1) % PING_EVERY == 0:
            parts.append(PING_FRAME)
            pings += 1
    event_id, payload = envelope("processing.finished", messages + 2)
    parts.append(_frame("processing.finished", event_id, payload))
    events = messages + 2
    return Body(b"".join(parts), events + pings, events, pings, message_bytes)


def make_app(body: Body) -> web.Application:
    view = memoryview(body.data)

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "x-request-id": f"req-{uuid.uuid4()}",
            },
        )
        await response.prepare(request)
        for start in range(0, len(view), WRITE_CHUNK):
            await response.write(view[start : start + WRITE_CHUNK])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/stream", stream)
    app.router.add_post("/api/v1/genies/{genie}/chat/conversations/{cid}/messages", stream)
    return app


async def serve(messages: int) -> None:
    body = build_body(messages)
    runner = web.AppRunner(make_app(body), access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # a free port chosen by the kernel
    site = web.SockSite(runner, sock)
    await site.start()
    ready = {
        "port": sock.getsockname()[1],
        "bytes": len(body.data),
        "frames": body.frames,
        "events": body.events,
        "pings": body.pings,
        "message_bytes": body.message_bytes,
    }
    print(json.dumps(ready), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000, help="agent.message events")
    args = parser.parse_args(argv)
    if args.events < 1:
        parser.error("--events must be at least 1")
    asyncio.run(serve(args.events))
    return 0


if __name__ == "__main__":
    sys.exit(main())
