"""Lifecycle, identity, determinism, clocks, and clean shutdown."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

import genie_async.testing as testing
from genie_async.testing import (
    Confirm,
    ConnectAuth,
    GenieSimulator,
    Say,
    SimClock,
    Skill,
    Turn,
    VirtualClock,
    Wait,
)


def test_public_surface_sorted_and_documented():
    """__all__ is isort-sorted (constants first, as ruff's RUF022 wants); exports are documented."""
    constants = [n for n in testing.__all__ if n.isupper()]
    others = [n for n in testing.__all__ if not n.isupper()]
    assert testing.__all__ == sorted(constants) + sorted(others)
    for name in testing.__all__:
        obj = getattr(testing, name)
        if isinstance(obj, type):
            assert obj.__doc__, name
    assert testing.__doc__
    assert "GenieSimulator" in testing.__doc__


async def test_identity_formats(sim):
    """url has no trailing slash; genie id, API key and user id have production shapes."""
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sim.url)
    assert re.fullmatch(r"gin-[A-Za-z0-9]{8}-[A-Za-z0-9]{6}-[A-Za-z0-9]{2}", sim.genie_id)
    assert re.fullmatch(r"[0-9a-f]{64}", sim.api_key)
    assert re.fullmatch(r"[A-Za-z0-9]{22}", sim.user_id)


async def _transcript(seed: int) -> list[str]:
    async with GenieSimulator(seed=seed) as simulator, aiohttp.ClientSession() as session:
        from_fixture = {
            "Authorization": f"Bearer {simulator.api_key}",
            "X-IDP-User-Id": simulator.user_id,
        }
        base = f"{simulator.url}/api/v1/genies/{simulator.genie_id}/chat"
        async with session.post(base + "/conversations", headers=from_fixture) as resp:
            cid = (await resp.json())["result"]["conversation_id"]
            request_id = resp.headers["x-request-id"]
        body = {"message": "hi", "stream": True}
        async with session.post(
            f"{base}/conversations/{cid}/messages", json=body, headers=from_fixture
        ) as resp:
            await resp.read()
        conv = simulator.conversation(cid)
        ids = [simulator.genie_id, simulator.api_key, simulator.user_id, cid, request_id]
        ids += [e.event_id for e in conv.events] + [m.message_id for m in conv.messages]
        return [*ids, conv.runs[0].run_id]


async def test_same_seed_same_ids():
    """Two simulators with the same seed and the same calls produce the same ids."""
    first, second, other = await asyncio.gather(_transcript(7), _transcript(7), _transcript(8))
    assert first == second
    assert set(first).isdisjoint(other)


async def test_start_close_and_context_manager():
    """start/close work without a context manager; url requires a started simulator."""
    simulator = GenieSimulator()
    with pytest.raises(RuntimeError):
        _ = simulator.url
    await simulator.start()
    with pytest.raises(RuntimeError):
        await simulator.start()
    assert simulator.url.startswith("http://")
    await simulator.close()
    await simulator.close()  # idempotent
    await simulator.start()  # a restart keeps the state (and gets a new port)
    await simulator.close()


async def test_close_with_open_streams_leaves_nothing(session):
    """close() with open streams ends promptly: no open streams, no pending simulator tasks."""
    before = asyncio.all_tasks()
    simulator = GenieSimulator(ping_interval=30)
    await simulator.start()
    simulator.default_turn = Turn(Say("working"), Wait(None))
    base = f"{simulator.url}/api/v1/genies/{simulator.genie_id}/chat"
    headers = {"Authorization": f"Bearer {simulator.api_key}", "X-IDP-User-Id": simulator.user_id}
    responses = []
    for _ in range(5):
        async with session.post(base + "/conversations", headers=headers) as resp:
            cid = (await resp.json())["result"]["conversation_id"]
        resp = await session.post(
            f"{base}/conversations/{cid}/messages", json={"message": "x"}, headers=headers
        )
        await resp.content.readuntil(b"agent.message")
        responses.append(resp)
    assert simulator.open_streams == 5
    loop = asyncio.get_running_loop()
    started = loop.time()
    await simulator.close()
    assert loop.time() - started < 1.0
    assert simulator.open_streams == 0
    for resp in responses:
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
        resp.release()
    await asyncio.sleep(0)
    leftover = {t for t in asyncio.all_tasks() - before if not t.done()}
    assert leftover <= {asyncio.current_task()}


async def test_open_streams_tracks_disconnects(sim, api):
    """A client disconnect closes the server-side stream promptly (open_streams drops to 0)."""
    sim.default_turn = Turn(Wait(None))
    cid = await api.conversation()
    await api.send(cid, "x", until=lambda r: bool(r.events))
    for _ in range(50):
        if sim.open_streams == 0:
            break
        await asyncio.sleep(0.01)
    assert sim.open_streams == 0


async def test_mountable_app(aiohttp_client):
    """sim.app can be served by pytest-aiohttp's test server."""
    simulator = GenieSimulator()
    client = await aiohttp_client(simulator.app)
    headers = {"Authorization": f"Bearer {simulator.api_key}", "X-IDP-User-Id": simulator.user_id}
    resp = await client.post(
        f"/api/v1/genies/{simulator.genie_id}/chat/conversations", headers=headers
    )
    assert resp.status == 200
    await simulator.close()


def test_sim_clock_stamps_unique_and_increasing():
    """stamp() never repeats, even when the clock is moved backwards."""
    clock = SimClock()
    stamps = [clock.stamp() for _ in range(1000)]
    clock.advance(-10)
    stamps.append(clock.stamp())
    assert stamps == sorted(set(stamps))
    clock.advance(3600 + 10)
    assert clock.stamp() > stamps[-1] + 3_000_000_000


async def test_virtual_clock():
    """VirtualClock.sleep returns at once, records durations and advances now()."""
    clock = VirtualClock()
    await clock.sleep(1.5)
    await clock.sleep(2)
    assert clock.sleeps == [1.5, 2]
    assert clock.now() == 3.5


def test_turn_validation():
    """Steps after ConnectAuth, pauses inside `then`, and non-steps are rejected."""
    with pytest.raises(ValueError, match="ConnectAuth"):
        Turn(ConnectAuth(), Say("late"))
    with pytest.raises(ValueError):
        ConnectAuth(then=[Confirm("x")])
    with pytest.raises(TypeError):
        Turn("hello")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Skill("x", outcome="exploded")  # type: ignore[arg-type]
    assert Confirm("Submit").approve_steps == (Skill("Submit"),)


async def test_matching_precedence(sim, api):
    """next_turn beats on_message; exact text, regex and predicates match; first rule wins."""
    sim.on_message("exact", Turn(Say("by text")))
    sim.on_message(re.compile(r"^sub"), Turn(Say("by regex")))
    sim.on_message(lambda text: text.endswith("!"), Turn(Say("by predicate")))
    sim.on_message(re.compile("exact"), Turn(Say("never")))
    cid = await api.conversation()

    async def reply(text):
        result = await api.send(cid, text)
        return result.events[1].json["message"]

    assert await reply("exact") == "by text"
    assert await reply("submit") == "by regex"
    assert await reply("wow!") == "by predicate"
    assert await reply("other") == "You said: other"
    sim.next_turn(Turn(Say("queued")))
    assert await reply("exact") == "queued"
    assert await reply("exact") == "by text"
