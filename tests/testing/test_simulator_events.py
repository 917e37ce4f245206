"""Persisted events: paging with since_created_at, inclusivity, scope and retention."""

from __future__ import annotations

import asyncio
import itertools

from genie_async.testing import ConnectAuth, GenieSimulator, Say, Turn


async def _page(api, query):
    reply = await api.call("GET", f"/conversations/events?{query}")
    assert reply.status == 200, reply.raw
    return reply.result


async def test_inclusive_paging_repeats_one_boundary_event(sim, api):
    """Inclusive since: each next page starts with the previous page's last event."""
    sim.default_turn = Turn(Say("a"), Say("b"), Say("c"))
    cid = await api.conversation()
    await api.send(cid, "one")
    await api.send(cid, "two")
    stored = [e.event_id for e in sim.conversation(cid).events]
    assert len(stored) == 10
    first = await _page(api, f"conversation_id={cid}&limit=4")
    ids = [e["event_id"] for e in first["events"]]
    assert ids == stored[:4]
    assert first["next_since_created_at"] == first["events"][-1]["created_at"]
    pages = [first]
    while "next_since_created_at" in pages[-1]:
        since = pages[-1]["next_since_created_at"]
        pages.append(await _page(api, f"conversation_id={cid}&limit=4&since_created_at={since}"))
    for previous, page in itertools.pairwise(pages):
        assert page["events"][0]["event_id"] == previous["events"][-1]["event_id"]
    seen = list(dict.fromkeys(e["event_id"] for p in pages for e in p["events"]))
    assert seen == stored
    assert "next_since_created_at" not in pages[-1]
    stamps = [e["created_at"] for p in pages for e in p["events"]]
    assert stamps == sorted(stamps)


async def test_exclusive_paging(make_api):
    """events_inclusive=False: since is strict, so pages never overlap."""
    async with GenieSimulator(events_inclusive=False) as simulator:
        simulator.default_turn = Turn(Say("a"), Say("b"))
        api = make_api(simulator)
        cid = await api.conversation()
        await api.send(cid, "x")
        first = await _page(api, f"conversation_id={cid}&limit=2")
        since = first["next_since_created_at"]
        second = await _page(api, f"conversation_id={cid}&limit=2&since_created_at={since}")
        assert [e["seq_num"] for e in first["events"] + second["events"]] == [1, 2, 3, 4]


async def test_default_page_size_and_clamp(make_api):
    """events_page_size sets the default limit; limit is clamped to 100."""
    async with GenieSimulator(events_page_size=3) as simulator:
        simulator.default_turn = Turn(*[Say(str(i)) for i in range(120)])
        api = make_api(simulator)
        cid = await api.conversation()
        await api.send(cid, "x")
        assert len((await _page(api, f"conversation_id={cid}"))["events"]) == 3
        assert len((await _page(api, f"conversation_id={cid}&limit=1000"))["events"]) == 100


async def test_without_conversation_id_lists_all_of_the_users(sim, api):
    """No conversation_id: all of the caller's conversations, merged oldest first."""
    a = await api.conversation()
    b = await api.conversation()
    await api.send(a, "1")
    await api.send(b, "2")
    other_user = sim.add_user()
    headers = {"X-IDP-User-Id": other_user}
    other = (await api.call("POST", "/conversations", headers=headers)).result["conversation_id"]
    await api.send(other, "3", headers=headers)
    page = await _page(api, "limit=100")
    assert {e["conversation_id"] for e in page["events"]} == {a, b}
    assert len(page["events"]) == 6
    assert (await api.call("GET", f"/conversations/events?conversation_id={other}")).status == 404


async def test_retention_24h(sim, api):
    """Events older than 24 h (sim clock) are not returned."""
    cid = await api.conversation()
    await api.send(cid, "old")
    sim.clock.advance(12 * 3600)
    await api.send(cid, "new")
    assert len((await _page(api, f"conversation_id={cid}"))["events"]) == 6
    sim.clock.advance(12 * 3600 + 1)
    events = (await _page(api, f"conversation_id={cid}"))["events"]
    assert [e["seq_num"] for e in events] == [1, 2, 3]
    assert {e["genie_run_id"] for e in events} == {sim.conversation(cid).runs[1].run_id}


async def test_since_parsing(sim, api):
    """since_created_at accepts RFC 3339 variants; garbage is 400; since_ms is ignored."""
    cid = await api.conversation()
    await api.send(cid, "x")
    events = sim.conversation(cid).events
    second = events[1].created_at  # e.g. 2026-…T…:….123456Z
    offset = second.replace("Z", "+00:00")
    for since in [second, offset.replace("+", "%2B")]:
        page = await _page(api, f"conversation_id={cid}&since_created_at={since}")
        assert [e["seq_num"] for e in page["events"]] == [2, 3]
    assert (await api.call("GET", "/conversations/events?since_created_at=yesterday")).status == 400
    page = await _page(api, f"conversation_id={cid}&since_ms=0")
    assert len(page["events"]) == 3


async def test_events_stop_at_runtime_connection_pause(sim, api):
    """A turn resumed after a runtime-connection pause adds nothing to /events."""
    sim.next_turn(Turn(ConnectAuth(then=[Say("resumed")])))
    cid = await api.conversation()
    await api.send(cid, "x")
    sim.authorize()
    await sim.wait_idle(cid)
    await asyncio.sleep(0)
    page = await _page(api, f"conversation_id={cid}")
    assert [e["type"] for e in page["events"]] == [
        "processing.started",
        "runtime_connection.auth_required",
    ]
    assert sim.conversation(cid).messages[-1].content == "resumed"


async def test_flat_envelope_events(make_api):
    """The flat envelope returns events and next_since_created_at at the top level."""
    async with GenieSimulator(envelope="flat") as simulator:
        api = make_api(simulator)
        cid = await api.conversation()
        await api.send(cid, "x")
        body = (await api.call("GET", f"/conversations/events?conversation_id={cid}&limit=1")).json
        assert set(body) == {"events", "next_since_created_at"}
