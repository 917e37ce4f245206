"""SSE turns: every step kind, pauses, replay with Last-Event-ID, framing options."""

from __future__ import annotations

import asyncio
import json

import pytest

from genie_async.testing import (
    Confirm,
    ConnectAuth,
    Emit,
    GenieSimulator,
    Say,
    Skill,
    Turn,
    Wait,
)

COMMON = {"type", "event_id", "conversation_id", "genie_run_id", "seq_num", "created_at"}


async def test_echo_turn_wire_format(api):
    """The default turn echoes; each event has event/id/data lines and the common fields."""
    cid = await api.conversation()
    result = await api.send(cid, "hello")
    assert result.status == 200
    assert result.headers["Content-Type"] == "text/event-stream"
    assert result.headers["Cache-Control"] == "no-store"
    assert result.headers["x-request-id"]
    assert result.clean_eof
    assert result.error is None
    assert result.event_types == ["processing.started", "agent.message", "processing.finished"]
    run_ids = {f.json["genie_run_id"] for f in result.events}
    assert len(run_ids) == 1
    for seq, frame in enumerate(result.events, start=1):
        body = frame.json
        assert body.keys() >= COMMON
        assert frame.id == body["event_id"]
        assert body["type"] == frame.event
        assert body["seq_num"] == seq
        assert body["conversation_id"] == cid
        assert body["created_at"].endswith("Z")
        assert len(body["created_at"]) == 27
    assert result.events[1].json["message"] == "You said: hello"
    assert b'"seq_num":1,' in result.raw  # compact JSON on the wire
    assert result.raw.startswith(b"event: processing.started\nid: ")


async def test_agent_message_id_matches_history(sim, api):
    """agent.message carries message_id equal to the genie history entry's id."""
    sim.next_turn(Turn(Say("one"), Say("two")))
    cid = await api.conversation()
    result = await api.send(cid, "hi")
    messages = [f.json for f in result.events if f.event == "agent.message"]
    history = sim.conversation(cid).messages
    assert [m.source for m in history] == ["user", "genie", "genie"]
    assert [m["message_id"] for m in messages] == [m.message_id for m in history[1:]]
    assert [m["message"] for m in messages] == ["one", "two"]
    assert history[0].genie_run_id == messages[0]["genie_run_id"]


async def test_skill_outcomes(sim, api):
    """Skill emits running then completed/failed (with error)/stopped, with recipe skill ids."""
    sim.next_turn(
        Turn(
            Skill("A", result={"n": 1}),
            Skill("B", outcome="failed", error="boom"),
            Skill("C", outcome="stopped", skill_id="recipe:42"),
        )
    )
    cid = await api.conversation()
    result = await api.send(cid, "go")
    assert result.event_types == [
        "processing.started",
        "skill.running",
        "skill.completed",
        "skill.running",
        "skill.failed",
        "skill.running",
        "skill.stopped",
        "processing.finished",
    ]
    bodies = [f.json for f in result.events]
    assert bodies[1]["skill_name"] == "A"
    assert bodies[1]["skill_id"].startswith("recipe:")
    assert "call_id" not in bodies[1]
    assert bodies[2]["result"] == {"n": 1}
    assert bodies[4]["error"] == "boom"
    assert bodies[6]["skill_id"] == "recipe:42"


async def test_skill_state_is_skill_processing(sim, api):
    """The conversation reads skill_processing while a skill runs, idle afterwards."""
    sim.next_turn(Turn(Skill("slow", duration=0.3)))
    cid = await api.conversation()
    reply = await api.call(
        "POST", f"/conversations/{cid}/messages", json={"message": "x", "stream": False}
    )
    assert reply.status == 200
    await sim.wait_for_event(cid, "skill.running")
    state = (await api.call("GET", f"/conversations/{cid}")).result
    assert state["state"] == "skill_processing"
    assert state["last_event"]["type"] == "skill.running"
    await sim.wait_idle(cid)
    assert (await api.call("GET", f"/conversations/{cid}")).result["state"] == "idle"


async def _resolve(api, cid, call_id, body, delay=0.08):
    await asyncio.sleep(delay)
    return await api.call("POST", f"/conversations/{cid}/skill_approval/{call_id}", json=body)


async def test_confirm_approved_same_stream(sim, api):
    """Approval resumes the same stream: pings during the pause, then the skill and reply."""
    sim.next_turn(Turn(Confirm("Submit", parameters={"days": 3}), Say("Done.")))
    cid = await api.conversation()

    async def approve_when_asked() -> None:
        event = await sim.wait_for_event(cid, "skill.confirmation_required")
        assert sim.pending_approvals() == [event.payload["call_id"]]
        state = (await api.call("GET", f"/conversations/{cid}")).result
        assert state["state"] == "skill_processing"
        assert state["last_event"]["type"] == "skill.confirmation_required"
        reply = await _resolve(api, cid, event.payload["call_id"], {"resolution": "approved"})
        assert reply.status == 200
        assert reply.raw == b""

    approver = asyncio.create_task(approve_when_asked())
    result = await api.send(cid, "submit")
    await approver
    assert result.event_types == [
        "processing.started",
        "skill.confirmation_required",
        "skill.running",
        "skill.completed",
        "agent.message",
        "processing.finished",
    ]
    pause = result.types.index("skill.confirmation_required")
    assert "system.ping" in result.types[pause:]
    confirm = result.events[1].json
    assert confirm["call_id"].startswith("call_")
    assert len(confirm["call_id"]) == 27
    assert confirm["skill_parameters"] == {"days": 3}
    assert confirm["skill_parameter_schema"][0]["name"] == "days"
    assert confirm["skill_id"].startswith("recipe:")
    assert [a.resolution for a in sim.approvals()] == ["approved"]


async def test_confirm_rejected_with_reason(sim, api):
    """Rejection runs on_reject with {reason}: no skill events, then the turn ends."""
    sim.next_turn(Turn(Confirm("Submit")))
    cid = await api.conversation()

    async def reject() -> None:
        event = await sim.wait_for_event(cid, "skill.confirmation_required")
        body = {"resolution": "rejected", "rejection_reason": "nope"}
        await _resolve(api, cid, event.payload["call_id"], body)

    task = asyncio.create_task(reject())
    result = await api.send(cid, "submit")
    await task
    assert result.event_types == [
        "processing.started",
        "skill.confirmation_required",
        "agent.message",
        "processing.finished",
    ]
    assert result.events[2].json["message"] == "Rejected by user: nope"
    assert sim.approvals()[0].reason == "nope"


async def test_approval_errors_and_records(sim, api):
    """Unknown call 404, bad resolution 400, duplicate 409; every POST is recorded."""
    sim.next_turn(Turn(Confirm("Submit")))
    cid = await api.conversation()
    await api.call("POST", f"/conversations/{cid}/messages", json={"message": "x", "stream": False})
    await sim.wait_for_event(cid, "skill.confirmation_required")
    call_id = sim.conversation(cid).events[-1].payload["call_id"]
    path = f"/conversations/{cid}/skill_approval/"
    assert (
        await api.call("POST", path + "call_unknown", json={"resolution": "approved"})
    ).status == 404
    assert (await api.call("POST", path + call_id, json={"resolution": "maybe"})).status == 400
    assert (await api.call("POST", path + call_id, json={"resolution": "approved"})).status == 200
    dup = await api.call("POST", path + call_id, json={"resolution": "approved"})
    assert dup.status == 409
    await sim.wait_idle(cid)
    assert [(a.call_id == call_id, a.status) for a in sim.approvals()] == [
        (False, 404),
        (True, 400),
        (True, 200),
        (True, 409),
    ]
    assert len(sim.approvals(call_id)) == 3


async def test_business_approval_behind_flag(sim, api):
    """business_approval.required is resolved through the flagged business-approval route."""
    sim.next_turn(Turn(Confirm("Pay vendor", business=True, on_approve=[Say("Paid.")])))
    cid = await api.conversation()
    await api.call("POST", f"/conversations/{cid}/messages", json={"message": "x", "stream": False})
    await sim.wait_for_event(cid, "business_approval.required")
    event = sim.conversation(cid).events[-1]
    assert event.type == "business_approval.required"
    call_id = event.payload["call_id"]
    path = f"/conversations/{cid}/business_approval/{call_id}"
    assert (await api.call("POST", path, json={"resolution": "approved"})).status == 404
    sim.enable_business_approval = True
    assert (await api.call("POST", path, json={"resolution": "approved"})).status == 204
    await sim.wait_idle(cid)
    assert sim.conversation(cid).messages[-1].content == "Paid."


async def test_connect_auth_pause(sim, api):
    """auth_required, pings, then stream_interrupted (runtime_connection_pending); 409 if parked."""
    sim.next_turn(Turn(Say("Let me connect."), ConnectAuth("Salesforce", then=[Say("Opps: 3")])))
    cid = await api.conversation()
    result = await api.send(cid, "sf")
    assert result.clean_eof
    assert result.event_types == [
        "processing.started",
        "agent.message",
        "runtime_connection.auth_required",
        "system.stream_interrupted",
    ]
    assert result.types[-2] == "system.ping"
    auth = result.events[2].json
    attempt_id = auth["runtime_connection_attempt_id"]
    assert auth["auth_link"]["connector_name"] == "Salesforce"
    assert auth["auth_link"]["url"].startswith("http")
    assert auth["auth_link"]["expires_at"].endswith("Z")
    interrupt = result.events[3]
    assert interrupt.id is None
    assert interrupt.json == {
        "type": "system.stream_interrupted",
        "genie_run_id": auth["genie_run_id"],
        "last_seq_num": 3,
        "reason": "runtime_connection_pending",
        "retry_after_ms": 1000,
    }
    state = (await api.call("GET", f"/conversations/{cid}")).result
    assert state["state"] == "idle"
    assert state["last_event"]["type"] == "runtime_connection.auth_required"
    busy = await api.call("POST", f"/conversations/{cid}/messages", json={"message": "again"})
    assert busy.status == 409
    assert busy.json["error_code"] == "conversation_busy"
    assert sim.pending_auth_attempts() == [attempt_id]

    link = await api.call("POST", f"/runtime_connection/{attempt_id}/link")
    assert link.status == 200
    assert link.result["status"] == "auth_required"
    assert link.result["auth_link"] == auth["auth_link"]

    # A reconnect replays up to the pause, then pings, then the same interrupt.
    again = await api.reconnect(cid, auth["genie_run_id"])
    assert again.event_types == result.event_types

    sim.authorize()
    await sim.wait_idle(cid)
    assert (await api.call("POST", f"/runtime_connection/{attempt_id}/link")).result == {
        "status": "authorized"
    }
    history = sim.conversation(cid).messages
    assert history[-1].content == "Opps: 3"
    assert history[-1].genie_run_id != auth["genie_run_id"]
    # The resumed run is in history only: no persisted events, no stream.
    assert [e.type for e in sim.conversation(cid).events][-1] == "runtime_connection.auth_required"
    resumed = await api.reconnect(cid, history[-1].genie_run_id)
    assert resumed.status == 404
    assert (await api.send(cid, "next")).event_types[-1] == "processing.finished"


async def test_auth_link_refresh_after_expiry(sim, api):
    """A link call after the 5-minute expiry (sim clock) issues a fresh url and expires_at."""
    sim.next_turn(Turn(ConnectAuth()))
    cid = await api.conversation()
    await api.call("POST", f"/conversations/{cid}/messages", json={"message": "x", "stream": False})
    await sim.wait_for_event(cid, "runtime_connection.auth_required")
    (attempt_id,) = sim.pending_auth_attempts()
    first = (await api.call("POST", f"/runtime_connection/{attempt_id}/link")).result["auth_link"]
    same = (await api.call("POST", f"/runtime_connection/{attempt_id}/link")).result["auth_link"]
    assert same == first
    sim.clock.advance(301)
    fresh = (await api.call("POST", f"/runtime_connection/{attempt_id}/link")).result["auth_link"]
    assert fresh["url"] != first["url"]
    assert fresh["expires_at"] > first["expires_at"]
    assert (await api.call("POST", "/runtime_connection/nope/link")).status == 404
    sim.link_endpoint_available = False
    assert (await api.call("POST", f"/runtime_connection/{attempt_id}/link")).status == 404


async def test_connection_reject_frees_conversation(sim, api):
    """Reject answers 204, ends the parked turn without a resumed run, frees the conversation."""
    sim.next_turn(Turn(ConnectAuth()))
    cid = await api.conversation()
    await api.call("POST", f"/conversations/{cid}/messages", json={"message": "x", "stream": False})
    await sim.wait_for_event(cid, "runtime_connection.auth_required")
    (attempt_id,) = sim.pending_auth_attempts()
    reply = await api.call(
        "POST", f"/runtime_connection/{attempt_id}/reject", json={"reason": "no"}
    )
    assert reply.status == 204
    assert (await api.call("POST", f"/runtime_connection/{attempt_id}/reject")).status == 409
    link = await api.call("POST", f"/runtime_connection/{attempt_id}/link")
    assert link.result == {"status": "rejected"}
    await sim.wait_idle(cid)
    assert [m.source for m in sim.conversation(cid).messages] == ["user"]
    assert (await api.send(cid, "free")).status == 200


async def test_authorize_via_link_url(sim, api, session):
    """Opening the auth_link URL authorizes the attempt (simulator convenience for demos)."""
    sim.next_turn(Turn(ConnectAuth("Jira")))
    cid = await api.conversation()
    result = await api.send(cid, "x")
    url = result.events[-2].json["auth_link"]["url"]
    async with session.get(url) as resp:
        assert resp.status == 200
    await sim.wait_idle(cid)
    assert sim.conversation(cid).messages[-1].content == "Connected to Jira."


async def test_authorize_requires_unambiguous_attempt(sim):
    """authorize() without an id raises when no (or several) attempts are pending."""
    with pytest.raises(LookupError):
        sim.authorize()


async def test_emit_payload_and_raw(sim, api):
    """Emit adds any event type; raw_data goes out verbatim and is persisted as given."""
    sim.next_turn(
        Turn(
            Emit("custom.progress", {"pct": 50}),
            Emit("agent.message", raw_data='{"type":"agent.message","message":'),
            Emit("agent.message", {"message": 7}),
        )
    )
    cid = await api.conversation()
    result = await api.send(cid, "x")
    assert result.event_types[1:4] == ["custom.progress", "agent.message", "agent.message"]
    assert result.events[1].json["pct"] == 50
    assert result.events[1].json.keys() >= COMMON
    assert result.events[2].data == '{"type":"agent.message","message":'
    assert result.events[2].id is not None
    assert result.events[3].json["message"] == 7
    stored = sim.conversation(cid).events[2]
    assert stored.payload is None
    assert stored.data == b'{"type":"agent.message","message":'


async def test_emit_multiline_raw_data(sim, api):
    """Line breaks in raw_data become several data: lines that a parser joins back."""
    sim.next_turn(Turn(Emit("x.y", raw_data="line1\nline2")))
    cid = await api.conversation()
    result = await api.send(cid, "x")
    assert b"data: line1\ndata: line2\n" in result.raw
    assert result.events[1].data == "line1\nline2"


async def test_wait_pings_then_continues(sim, api):
    """Wait(s) keeps the stream alive with pings (no id line), then the turn continues."""
    sim.next_turn(Turn(Wait(0.12), Say("late")))
    cid = await api.conversation()
    result = await api.send(cid, "x")
    assert result.event_types == ["processing.started", "agent.message", "processing.finished"]
    pings = [f for f in result.frames if f.event == "system.ping"]
    assert len(pings) >= 2
    assert all(p.id is None and set(p.json) == {"type", "timestamp"} for p in pings)


async def test_wait_none_stalls_forever(sim, api):
    """Wait(None) stalls the turn: only pings, state stays ai_running."""
    sim.next_turn(Turn(Wait(None)))
    cid = await api.conversation()
    result = await api.send(cid, "x", timeout=0.15)
    assert result.event_types == ["processing.started"]
    assert result.types.count("system.ping") >= 3
    assert sim.conversation(cid).state == "ai_running"


async def test_step_delay(sim, api):
    """A step's delay passes before it runs."""
    sim.next_turn(Turn(Say("a"), Say("b", delay=0.1)))
    cid = await api.conversation()
    result = await api.send(cid, "x")
    events = sim.conversation(cid).events
    assert result.event_types[-1] == "processing.finished"
    gap = events[2].stamp - events[1].stamp
    assert gap >= 90_000


async def test_stopped_genie_pings_only(sim, api):
    """A stopped genie keeps the stream open with pings only; the message is in history."""
    sim.genie_started = False
    cid = await api.conversation()
    result = await api.send(cid, "anyone?", timeout=0.15)
    assert result.events == []
    assert result.types.count("system.ping") >= 3
    assert not result.clean_eof
    conv = sim.conversation(cid)
    assert [m.content for m in conv.messages] == ["anyone?"]
    assert conv.state == "idle"
    assert conv.events == []


async def test_reconnect_with_last_event_id(sim, api):
    """genie-runs replays events after Last-Event-ID; unknown or absent id replays from seq 1."""
    sim.next_turn(Turn(Say("a"), Say("b")))
    cid = await api.conversation()
    first = await api.send(cid, "x")
    run_id = first.events[0].json["genie_run_id"]
    after = await api.reconnect(cid, run_id, first.events[1].id)
    assert [f.json["seq_num"] for f in after.events] == [3, 4]
    assert after.clean_eof
    full = await api.reconnect(cid, run_id, "not-an-id")
    assert [f.json["seq_num"] for f in full.events] == [1, 2, 3, 4]
    assert [f.json["seq_num"] for f in (await api.reconnect(cid, run_id)).events] == [1, 2, 3, 4]
    assert (await api.reconnect(cid, "no-such-run")).status == 404
    nothing_left = await api.reconnect(cid, run_id, first.events[-1].id)
    assert nothing_left.raw == b""
    assert nothing_left.clean_eof
    assert sim.stream_connections(run_id) == 5


async def test_reconnect_live_tail(sim, api):
    """A reader attached mid-turn gets the replay and then live events until finished."""
    sim.next_turn(Turn(Say("a"), Say("b", delay=0.15)))
    cid = await api.conversation()
    reply = await api.call(
        "POST", f"/conversations/{cid}/messages", json={"message": "x", "stream": False}
    )
    run_id = reply.result["genie_run_id"]
    assert reply.result["conversation_id"] == cid
    await sim.wait_for_event(cid, "agent.message")
    result = await api.reconnect(cid, run_id)
    assert result.event_types == [
        "processing.started",
        "agent.message",
        "agent.message",
        "processing.finished",
    ]


async def test_client_disconnect_does_not_affect_run(sim, api, session):
    """Dropping the POST stream early leaves the run to finish server-side."""
    sim.next_turn(Turn(Say("a"), Say("b", delay=0.1)))
    cid = await api.conversation()
    result = await api.send(cid, "x", until=lambda r: len(r.events) >= 1)
    assert "processing.finished" not in result.event_types
    await sim.wait_idle(cid)
    assert sim.conversation(cid).runs[0].finished
    await asyncio.sleep(0.05)
    assert sim.open_streams == 0


async def test_large_event(sim, api):
    """A 600,000-character agent.message goes out as one event."""
    sim.next_turn(Turn(Say("x" * 600_000)))
    cid = await api.conversation()
    result = await api.send(cid, "x")
    assert len(result.events[1].json["message"]) == 600_000


@pytest.mark.parametrize("ending", ["\n", "\r", "\r\n"])
async def test_line_endings(make_api, ending):
    """Every SSE line ends with the configured line ending."""
    async with GenieSimulator(ping_interval=0.02, line_ending=ending) as simulator:
        simulator.next_turn(Turn(Wait(0.05), Say("hi")))
        api = make_api(simulator)
        cid = await api.conversation()
        result = await api.send(cid, "x")
        assert result.event_types == ["processing.started", "agent.message", "processing.finished"]
        eol = ending.encode()
        assert result.raw.endswith(b"}" + eol + eol)
        assert b"event: system.ping" + eol in result.raw
        other = {"\n": [b"\r"], "\r": [b"\n"], "\r\n": []}[ending]
        for stray in other:
            assert stray not in result.raw


async def test_fragmented_writes(make_api):
    """fragment=True splits events into many small chunks with identical content."""
    async with GenieSimulator(ping_interval=0.02, fragment=True, seed=3) as simulator:
        simulator.next_turn(Turn(Say("fragmented reply " * 20)))
        api = make_api(simulator)
        cid = await api.conversation()
        result = await api.send(cid, "x")
        assert result.event_types == ["processing.started", "agent.message", "processing.finished"]
        assert result.chunks > 10
        assert result.events[1].json["message"] == "fragmented reply " * 20
        stored = b"".join(e.frame for e in simulator.conversation(cid).runs[0].events)
        assert result.raw == stored


async def test_conversation_state_during_turn(sim, api):
    """ai_running while the genie works; last_event follows the persisted timeline."""
    sim.next_turn(Turn(Say("a"), Wait(0.2)))
    cid = await api.conversation()
    await api.call("POST", f"/conversations/{cid}/messages", json={"message": "x", "stream": False})
    await sim.wait_for_event(cid, "agent.message")
    body = (await api.call("GET", f"/conversations/{cid}")).result
    assert body["state"] == "ai_running"
    assert body["last_event"]["type"] == "agent.message"
    assert json.loads(sim.conversation(cid).events[-1].data)["type"] == "agent.message"
    await sim.wait_idle(cid)
