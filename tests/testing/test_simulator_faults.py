"""Deterministic fault injection: stream faults per SSE connection, HTTP faults per route."""

from __future__ import annotations

import aiohttp
import pytest

from genie_async.testing import GenieSimulator, HttpFault, Say, StreamFault, Turn

FOUR = ["processing.started", "agent.message", "agent.message", "processing.finished"]


def _turn(*faults: StreamFault) -> Turn:
    return Turn(Say("a"), Say("b"), faults=faults)


async def _stored_frames(sim, cid, count):
    return b"".join(e.frame for e in sim.conversation(cid).runs[0].events[:count])


async def test_abort_after_events(sim, api):
    """abort: exactly N events arrive, then the transport drops (a payload error, no EOF)."""
    sim.next_turn(_turn(StreamFault("abort", after_events=2)))
    cid = await api.conversation()
    result = await api.send(cid, "x")
    assert isinstance(result.error, aiohttp.ClientPayloadError)
    assert not result.clean_eof
    assert result.raw == await _stored_frames(sim, cid, 2)
    await sim.wait_idle(cid)
    assert sim.conversation(cid).runs[0].finished  # the run continued server-side


async def test_abort_mid_event(sim, api):
    """abort_mid_event: N whole events plus the first half of the next one, then a drop."""
    sim.next_turn(_turn(StreamFault("abort_mid_event", after_events=1)))
    cid = await api.conversation()
    result = await api.send(cid, "x")
    assert isinstance(result.error, aiohttp.ClientPayloadError)
    events = sim.conversation(cid).runs[0].events
    assert result.raw == events[0].frame + events[1].frame[: len(events[1].frame) // 2]
    assert result.event_types == ["processing.started"]


async def test_eof_without_finished(sim, api):
    """eof: N events, then a clean end of the response without processing.finished."""
    sim.next_turn(_turn(StreamFault("eof", after_events=3)))
    cid = await api.conversation()
    result = await api.send(cid, "x")
    assert result.clean_eof
    assert result.error is None
    assert result.raw == await _stored_frames(sim, cid, 3)


async def test_interrupt(sim, api):
    """interrupt: N events, then stream_interrupted (timeout, retry_after_ms, last_seq_num)."""
    sim.next_turn(_turn(StreamFault("interrupt", after_events=2, retry_after_ms=75)))
    cid = await api.conversation()
    result = await api.send(cid, "x")
    assert result.clean_eof
    run_id = result.events[0].json["genie_run_id"]
    assert result.raw.startswith(await _stored_frames(sim, cid, 2))
    tail = result.raw[len(await _stored_frames(sim, cid, 2)) :]
    assert tail == (
        b"event: system.stream_interrupted\n"
        b'data: {"type":"system.stream_interrupted","genie_run_id":"'
        + run_id.encode()
        + b'","last_seq_num":2,"reason":"timeout","retry_after_ms":75}\n\n'
    )
    resumed = await api.reconnect(cid, run_id, result.events[1].id)
    assert [f.json["seq_num"] for f in resumed.events] == [3, 4]


async def test_stall(sim, api):
    """stall: after N events only pings, while the run finishes server-side."""
    sim.next_turn(_turn(StreamFault("stall", after_events=1)))
    cid = await api.conversation()
    result = await api.send(cid, "x", timeout=0.2)
    assert result.event_types == ["processing.started"]
    assert result.types.count("system.ping") >= 3
    assert sim.conversation(cid).runs[0].finished
    run_id = result.events[0].json["genie_run_id"]
    assert (await api.reconnect(cid, run_id)).event_types == FOUR


async def test_fault_targets_one_connection(sim, api):
    """connection=1 spares the POST stream and hits the first reconnect only."""
    sim.next_turn(_turn(StreamFault("eof", after_events=0, connection=1)))
    cid = await api.conversation()
    first = await api.send(cid, "x")
    assert first.event_types == FOUR
    run_id = first.events[0].json["genie_run_id"]
    second = await api.reconnect(cid, run_id)
    assert second.raw == b""
    assert second.clean_eof
    third = await api.reconnect(cid, run_id)
    assert third.event_types == FOUR


async def test_fault_on_every_connection(sim, api):
    """connection=None applies the fault to every connection; after_events counts per connection."""
    sim.next_turn(_turn(StreamFault("interrupt", after_events=1, connection=None)))
    cid = await api.conversation()
    first = await api.send(cid, "x")
    run_id = first.events[0].json["genie_run_id"]
    second = await api.reconnect(cid, run_id, first.events[0].id)
    assert first.event_types == ["processing.started", "system.stream_interrupted"]
    assert second.event_types == ["agent.message", "system.stream_interrupted"]
    assert second.events[-1].json["last_seq_num"] == 2


def test_stream_fault_validation():
    """Invalid stream faults are rejected at construction."""
    with pytest.raises(ValueError, match="kind"):
        StreamFault("explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        StreamFault("abort", after_events=-1)
    with pytest.raises(TypeError):
        Turn(Say("x"), faults=["abort"])  # type: ignore[list-item]


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_gateway_statuses_json(sim, api, status):
    """5xx faults carry the documented code names in the three-key body plus Retry-After."""
    sim.fail("create_conversation", status, retry_after="2")
    reply = await api.call("POST", "/conversations", json={})
    assert reply.status == status
    assert reply.headers["Retry-After"] == "2"
    code = {502: "bad_gateway", 503: "service_unavailable", 504: "gateway_timeout"}[status]
    assert reply.json["error_code"] == code
    assert reply.json["request_id"] == reply.headers["x-request-id"]
    assert (await api.call("POST", "/conversations", json={})).status == 200


async def test_html_and_empty_bodies(sim, api):
    """body='html' gives a text/html gateway page; body='empty' gives no body."""
    sim.fail("list_conversations", 502, body="html")
    sim.fail("list_conversations", 503, body="empty")
    html = await api.call("GET", "/conversations")
    assert html.status == 502
    assert html.headers["Content-Type"].startswith("text/html")
    assert html.raw == b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    empty = await api.call("GET", "/conversations")
    assert (empty.status, empty.raw) == (503, b"")
    assert "Retry-After" not in empty.headers
    assert (await api.call("GET", "/conversations")).status == 200


async def test_times_and_fifo(sim, api):
    """A fault with times=n answers n requests; faults of a route are consumed in order."""
    sim.fail("get_conversation", 503, times=2)
    sim.fail("get_conversation", 429, retry_after="Wed, 21 Oct 2026 07:28:00 GMT")
    cid = await api.conversation()
    statuses = [(await api.call("GET", f"/conversations/{cid}")).status for _ in range(4)]
    assert statuses == [503, 503, 429, 200]
    assert [r.status for r in sim.requests("get_conversation")] == statuses


async def test_after_accept(sim, api):
    """after_accept: the message is accepted (history + run) but the response is the error."""
    sim.fail("send", 504, after_accept=True)
    cid = await api.conversation()
    result = await api.send(cid, "hello")
    assert result.status == 504
    await sim.wait_idle(cid)
    conv = sim.conversation(cid)
    assert [m.content for m in conv.messages] == ["hello", "You said: hello"]
    assert conv.runs[0].finished
    assert (await api.reconnect(cid, conv.runs[0].run_id)).event_types[-1] == "processing.finished"


async def test_after_accept_waits_for_an_accept(sim, api):
    """An after_accept fault is not consumed by a send that is refused before acceptance."""
    sim.fail("send", 502, after_accept=True)
    cid = await api.conversation()
    refused = await api.call("POST", f"/conversations/{cid}/messages", json={"message": 1})
    assert refused.status == 400
    assert (await api.send(cid, "ok")).status == 502


async def test_after_pages(sim, api):
    """after_pages=k: k pages of a listing succeed, the next request fails, then it is consumed."""
    cid = await api.conversation()
    await api.send(cid, "one")
    sim.fail("events", 503, after_pages=1, times=2)
    path = f"/conversations/events?conversation_id={cid}&limit=1"
    statuses = [(await api.call("GET", path)).status for _ in range(5)]
    assert statuses == [200, 503, 200, 503, 200]


async def test_reset_without_response(sim, api, session):
    """kind='reset' drops the connection before any response is written."""
    cid = await api.conversation()
    sim.fail("send", kind="reset")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.call("POST", f"/conversations/{cid}/messages", json={"message": "x"})
    record = sim.requests("send")[-1]
    assert record.status == 0
    assert sim.conversation(cid).messages == []  # nothing was accepted
    assert (await api.send(cid, "x")).status == 200


def test_http_fault_validation():
    """Unknown routes and misplaced options are rejected."""
    with pytest.raises(ValueError, match="route"):
        HttpFault("nope", 500)
    with pytest.raises(ValueError, match="after_accept"):
        HttpFault("events", 500, after_accept=True)
    with pytest.raises(ValueError, match="after_pages"):
        HttpFault("send", 500, after_pages=2)
    with pytest.raises(ValueError):
        HttpFault("send", 700)


async def test_fault_requests_are_logged(make_api):
    """Faulted requests appear in the log with their status, route and request id."""
    async with GenieSimulator(error_style="nested") as simulator:
        api = make_api(simulator)
        simulator.fail("create_conversation", 500)
        reply = await api.call("POST", "/conversations", json={})
        assert reply.json == {
            "error": {
                "code": "internal_error",
                "message": "Internal Server Error.",
                "request_id": reply.headers["x-request-id"],
            }
        }
        record = simulator.log[-1]
        assert (record.route, record.status) == ("create_conversation", 500)
        assert record.request_id == reply.headers["x-request-id"]
