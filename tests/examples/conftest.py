"""Fixtures for the examples in docs/examples: each is loaded from its path (they are not a
package) or run as a subprocess, against a real GenieSimulator on loopback."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from genie_async.sse import SSEDecoder
from genie_async.testing import GenieSimulator

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "docs" / "examples"


def load_example(relative: str) -> ModuleType:
    """Import an example module from its file (registered under a private name)."""
    path = EXAMPLES / relative
    name = "genie_example_" + path.stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def webapp() -> ModuleType:
    return load_example("webapp/app.py")


@pytest.fixture
async def webapp_sim(webapp: ModuleType) -> AsyncIterator[GenieSimulator]:
    """The web app's scripted genie; tests may queue their own turns with next_turn()."""
    async with GenieSimulator(ping_interval=0.2, auth_interrupt_after=0.05) as sim:
        webapp.script_demo_genie(sim)
        yield sim


@pytest.fixture
async def webapp_server(
    webapp: ModuleType, webapp_sim: GenieSimulator
) -> AsyncIterator[TestServer]:
    """The web app served on loopback (TestServer runs it with handler_cancellation, as the
    example's own serve() does)."""
    sim = webapp_sim
    settings = webapp.GenieSettings(sim.genie_id, sim.api_key, sim.user_id, base_url=sim.url)
    # Plain HTTP on loopback, as the example's own serve() does for 127.0.0.1.
    app = webapp.create_app(settings, webapp.simulator_end_users(sim), secure_cookies=False)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


class Frame:
    """One SSE event from the web app, with its JSON data decoded."""

    def __init__(self, name: str, data: dict[str, Any], event_id: str | None) -> None:
        self.name = name
        self.data = data
        self.id = event_id

    def __repr__(self) -> str:
        return f"Frame({self.name!r}, id={self.id!r}, {self.data!r})"


class EventReader:
    """Reads a turn's SSE response frame by frame."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.raw = bytearray()
        self._decoder = SSEDecoder()
        self._pending: list[Frame] = []

    async def next(self) -> Frame | None:
        """The next frame, or None at the end of the response."""
        while not self._pending:
            chunk = await self.response.content.readany()
            if not chunk:
                return None
            self.raw.extend(chunk)
            for sse in self._decoder.feed(chunk):
                self._pending.append(Frame(sse.event, json.loads(sse.data), sse.id))
        return self._pending.pop(0)

    async def until(self, name: str, **fields: Any) -> list[Frame]:
        """Frames up to and including the first named ``name`` whose data has ``fields``."""
        frames: list[Frame] = []
        while True:
            frame = await self.next()
            assert frame is not None, f"the response ended before {name} {fields}: {frames}"
            frames.append(frame)
            if frame.name == name and all(frame.data.get(k) == v for k, v in fields.items()):
                return frames

    async def rest(self) -> list[Frame]:
        frames: list[Frame] = []
        while (frame := await self.next()) is not None:
            frames.append(frame)
        return frames


class Browser:
    """What the page's JavaScript does, over plain HTTP: one cookie session."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def open_page(self) -> str:
        async with self.session.get(self.base + "/") as response:
            assert response.status == 200
            return await response.text()

    async def post(self, path: str, body: object) -> tuple[int, dict[str, Any]]:
        async with self.session.post(self.base + path, json=body) as response:
            return response.status, await response.json()

    async def new_conversation(self) -> str:
        status, body = await self.post("/api/conversations", {})
        assert status == 201, body
        return str(body["conversation_id"])

    async def send(self, conversation_id: str, text: str) -> dict[str, Any]:
        status, body = await self.post(
            f"/api/conversations/{conversation_id}/messages", {"text": text}
        )
        assert status == 202, body
        return body

    async def decide(
        self, turn_id: str, call_id: str, decision: str, reason: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"decision": decision}
        if reason is not None:
            body["reason"] = reason
        return await self.post(f"/api/turns/{turn_id}/confirmations/{call_id}", body)

    def events(self, url: str, last_event_id: str | None = None) -> _Events:
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        return _Events(self.session.get(self.base + url, headers=headers))


class _Events:
    def __init__(self, request: Any) -> None:
        self._request = request
        self._response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> EventReader:
        self._response = await self._request.__aenter__()
        assert self._response is not None
        assert self._response.status == 200, await self._response.text()
        assert self._response.headers["Content-Type"].startswith("text/event-stream")
        return EventReader(self._response)

    async def __aexit__(self, *exc: object) -> None:
        await self._request.__aexit__(*exc)


@pytest.fixture
async def browser(webapp_server: TestServer) -> AsyncIterator[Browser]:
    # unsafe=True: the app is on 127.0.0.1, and aiohttp keeps no cookies for IP hosts otherwise.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        page = Browser(session, str(webapp_server.make_url("")).rstrip("/"))
        await page.open_page()
        yield page


@pytest.fixture(scope="session")
def bot() -> ModuleType:
    return load_example("bot.py")


@pytest.fixture(scope="session")
def worker() -> ModuleType:
    return load_example("worker.py")
