"""Scale: many concurrent streams in one process, woken by events rather than polling."""

from __future__ import annotations

import asyncio
import resource

import aiohttp
import pytest

from genie_async.testing import Confirm, GenieSimulator, Say, Turn

READERS = 1000


@pytest.fixture
def enough_file_descriptors():
    """Each stream needs two sockets here (client and server side)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * READERS + 256
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_events_are_pushed_not_polled():
    """With a 30 s ping interval, live events still arrive immediately (writers are woken)."""
    async with GenieSimulator(ping_interval=30) as sim, aiohttp.ClientSession() as session:
        sim.default_turn = Turn(Say("a"), Say("b", delay=0.05), Say("c", delay=0.05))
        base = f"{sim.url}/api/v1/genies/{sim.genie_id}/chat"
        headers = {"Authorization": f"Bearer {sim.api_key}", "X-IDP-User-Id": sim.user_id}
        async with session.post(base + "/conversations", headers=headers) as resp:
            cid = (await resp.json())["result"]["conversation_id"]
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with session.post(
            f"{base}/conversations/{cid}/messages", json={"message": "x"}, headers=headers
        ) as resp:
            body = await asyncio.wait_for(resp.read(), 2)
        assert loop.time() - started < 1.0
        assert body.count(b"event: agent.message") == 3
        assert b"system.ping" not in body


async def test_thousand_concurrent_streams(enough_file_descriptors):
    """1,000 open readers of one paused run are all woken by the approval and get the tail."""
    async with GenieSimulator(ping_interval=30) as sim:
        sim.default_turn = Turn(Say("start"), Confirm("Go", on_approve=[Say("done")]))
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            base = f"{sim.url}/api/v1/genies/{sim.genie_id}/chat"
            headers = {"Authorization": f"Bearer {sim.api_key}", "X-IDP-User-Id": sim.user_id}
            async with session.post(base + "/conversations", headers=headers) as resp:
                cid = (await resp.json())["result"]["conversation_id"]
            async with session.post(
                f"{base}/conversations/{cid}/messages",
                json={"message": "x", "stream": False},
                headers=headers,
            ) as resp:
                run_id = (await resp.json())["result"]["genie_run_id"]
            event = await sim.wait_for_event(cid, "skill.confirmation_required")
            url = f"{base}/conversations/{cid}/genie-runs/{run_id}"

            async def read_one() -> bytes:
                async with session.get(url, headers=headers) as resp:
                    return await resp.read()

            readers = asyncio.gather(*(read_one() for _ in range(READERS)))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while sim.open_streams < READERS and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            assert sim.open_streams == READERS
            approval = f"{base}/conversations/{cid}/skill_approval/{event.payload['call_id']}"
            async with session.post(
                approval, json={"resolution": "approved"}, headers=headers
            ) as resp:
                assert resp.status == 200
            bodies = await asyncio.wait_for(readers, 20)
        assert all(body.count(b"\nid: ") == 5 for body in bodies)
        assert all(body.endswith(b"}\n\n") for body in bodies)
        assert all(b"event: processing.finished" in body for body in bodies)
        assert sim.stream_connections(run_id) == READERS
        assert sim.open_streams == 0
