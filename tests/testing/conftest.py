"""Fixtures for the simulator's own tests: a fast simulator and a raw aiohttp helper.

These tests talk to the simulator with plain aiohttp and a tiny SSE splitter written here,
never with the genie_async client, so the simulator is checked independently of it.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from genie_async.testing import GenieSimulator

FAST_PING = 0.02


@dataclass
class Frame:
    """One dispatched SSE event as a raw client sees it."""

    event: str | None
    id: str | None
    data: str

    @property
    def json(self) -> Any:
        return json.loads(self.data)


def parse_sse(raw: bytes) -> list[Frame]:
    """Split complete SSE events out of ``raw`` (CR, LF or CRLF); drop an unterminated tail."""
    lines = re.split(r"\r\n|\r|\n", raw.decode("utf-8", errors="replace"))
    frames: list[Frame] = []
    event: str | None = None
    event_id: str | None = None
    data: list[str] = []
    for line in lines[:-1]:  # the last piece has no line terminator yet
        if line == "":
            if data:
                frames.append(Frame(event, event_id, "\n".join(data)))
            event, event_id, data = None, None, []
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "id":
            event_id = value
        elif name == "data":
            data.append(value)
    return frames


@dataclass
class Reply:
    """A non-streaming response."""

    status: int
    headers: Any
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    @property
    def result(self) -> Any:
        """The payload, unwrapped from ``{"result": …}`` when wrapped."""
        body = self.json
        return body["result"] if isinstance(body, dict) and "result" in body else body


@dataclass
class StreamResult:
    """Everything a raw client saw on one SSE response."""

    status: int
    headers: Any
    raw: bytes = b""
    chunks: int = 0
    error: BaseException | None = None
    clean_eof: bool = False
    frames: list[Frame] = field(default_factory=list)

    @property
    def types(self) -> list[str]:
        return [f.event or "" for f in self.frames]

    @property
    def events(self) -> list[Frame]:
        """Frames other than pings."""
        return [f for f in self.frames if f.event != "system.ping"]

    @property
    def event_types(self) -> list[str]:
        return [f.event or "" for f in self.events]


class Api:
    """Raw HTTP helper bound to one simulator and one session."""

    def __init__(self, sim: GenieSimulator, session: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.session = session

    @property
    def base(self) -> str:
        return f"{self.sim.url}/api/v1/genies/{self.sim.genie_id}/chat"

    def auth(self, user_id: str | None = None) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.sim.api_key}",
            "X-IDP-User-Id": user_id or self.sim.user_id,
        }

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        data: Any = None,
    ) -> Reply:
        hdrs = {**(self.auth() if auth else {}), **(headers or {})}
        async with self.session.request(
            method, self.base + path, json=json, headers=hdrs, data=data
        ) as resp:
            return Reply(resp.status, resp.headers, await resp.read())

    async def conversation(self) -> str:
        reply = await self.call("POST", "/conversations", json={})
        assert reply.status == 200, reply.raw
        cid: str = reply.result["conversation_id"]
        return cid

    async def stream(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        until: Callable[[StreamResult], bool] | None = None,
        timeout: float = 5.0,
    ) -> StreamResult:
        """Read an SSE response to its end (or until ``until`` holds, or ``timeout``)."""
        hdrs = {**self.auth(), "Accept": "text/event-stream", **(headers or {})}
        async with self.session.request(method, self.base + path, json=json, headers=hdrs) as resp:
            result = StreamResult(resp.status, resp.headers)
            if resp.status != 200 or resp.content_type != "text/event-stream":
                result.raw = await resp.read()
                return result
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            try:
                while True:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        chunk = await asyncio.wait_for(resp.content.readany(), remaining)
                    except asyncio.TimeoutError:
                        break
                    if not chunk:
                        result.clean_eof = True
                        break
                    result.raw += chunk
                    result.chunks += 1
                    result.frames = parse_sse(result.raw)
                    if until is not None and until(result):
                        break
            except aiohttp.ClientPayloadError as exc:
                result.error = exc
            result.frames = parse_sse(result.raw)
            return result

    async def send(self, cid: str, message: str, **kw: Any) -> StreamResult:
        body = {"message": message, "stream": True}
        return await self.stream("POST", f"/conversations/{cid}/messages", json=body, **kw)

    async def reconnect(
        self, cid: str, run_id: str, last_event_id: str | None = None, **kw: Any
    ) -> StreamResult:
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        return await self.stream(
            "GET", f"/conversations/{cid}/genie-runs/{run_id}", headers=headers, **kw
        )


@pytest.fixture
async def sim() -> AsyncIterator[GenieSimulator]:
    async with GenieSimulator(ping_interval=FAST_PING) as simulator:
        yield simulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def api(sim: GenieSimulator, session: aiohttp.ClientSession) -> Api:
    return Api(sim, session)


@pytest.fixture
def make_api(session: aiohttp.ClientSession) -> Callable[[GenieSimulator], Api]:
    """An `Api` for a simulator a test configured itself."""
    return lambda simulator: Api(simulator, session)
