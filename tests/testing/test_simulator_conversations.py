"""Conversations, messages, uploads and their paging, in both envelopes."""

from __future__ import annotations

import asyncio
import hashlib
import io

import aiohttp
import pytest

from genie_async.testing import GenieSimulator, Say, Turn, Wait


async def test_create_with_and_without_body(api):
    """POST /conversations accepts {} or no body and answers 200 {conversation_id}."""
    with_body = await api.call("POST", "/conversations", json={})
    without = await api.call("POST", "/conversations")
    assert with_body.status == without.status == 200
    assert set(with_body.json) == {"result"}
    assert with_body.result["conversation_id"] != without.result["conversation_id"]


@pytest.mark.parametrize("envelope", ["wrapped", "flat"])
async def test_list_paging_and_order(make_api, envelope):
    """Most recently updated first; cursor only while more pages exist; list key per envelope."""
    async with GenieSimulator(envelope=envelope) as simulator:
        api = make_api(simulator)
        cids = [await api.conversation() for _ in range(5)]
        await api.send(cids[1], "bump")  # now the most recently updated
        key = "conversations" if envelope == "wrapped" else "list"
        first = await api.call("GET", "/conversations?limit=2")
        body = first.json["result"] if envelope == "wrapped" else first.json
        assert [c["conversation_id"] for c in body[key]] == [cids[1], cids[4]]
        assert body["total_count"] == 5
        seen = [c["conversation_id"] for c in body[key]]
        while "cursor" in body:
            reply = await api.call("GET", f"/conversations?limit=2&cursor={body['cursor']}")
            body = reply.json["result"] if envelope == "wrapped" else reply.json
            seen += [c["conversation_id"] for c in body[key]]
        assert seen == [cids[1], cids[4], cids[3], cids[2], cids[0]]
        item = body[key][0]
        assert set(item) == {
            "conversation_id",
            "topic",
            "created_at",
            "updated_at",
            "last_updated_at",
            "state",
            "last_event",
        }
        bumped = (await api.call("GET", "/conversations?limit=1")).result[key][0]
        assert bumped["topic"] == "bump"
        assert bumped["last_event"]["type"] == "processing.finished"


async def test_list_limits(api):
    """limit defaults to 20, is clamped to 100; bad limits and cursors are 400."""
    for _ in range(22):
        await api.conversation()
    assert len((await api.call("GET", "/conversations")).result["conversations"]) == 20
    assert len((await api.call("GET", "/conversations?limit=500")).result["conversations"]) == 22
    assert (await api.call("GET", "/conversations?limit=abc")).status == 400
    assert (await api.call("GET", "/conversations?limit=0")).status == 400
    assert (await api.call("GET", "/conversations?cursor=%%%")).status == 400


async def test_get_conversation_topic_placeholder(make_api):
    """GET single shows a digit-string topic until topic_delay after the first message."""
    async with GenieSimulator(topic_delay=2.0) as simulator:
        api = make_api(simulator)
        cid = await api.conversation()
        fresh = (await api.call("GET", f"/conversations/{cid}")).result
        assert "conversation_id" not in fresh  # production's wrapped form omits it
        assert fresh["state"] == "idle"
        assert fresh["last_event"] is None
        assert fresh["topic"].isdigit()
        await api.send(cid, "How much PTO do I have left this year, roughly? Asking for planning")
        body = (await api.call("GET", f"/conversations/{cid}")).result
        assert body["topic"] == fresh["topic"]
        listed = (await api.call("GET", "/conversations")).result["conversations"][0]
        assert listed["topic"] == "How much PTO do I have left this year, roughly? Asking for p"
        simulator.clock.advance(2.5)
        assert (await api.call("GET", f"/conversations/{cid}")).result["topic"] == listed["topic"]
        assert set(body) == {"state", "last_event", "topic", "created_at", "updated_at"}


async def test_get_conversation_flat_has_id(make_api):
    """The flat envelope includes conversation_id in GET single."""
    async with GenieSimulator(envelope="flat") as simulator:
        api = make_api(simulator)
        cid = await api.conversation()
        assert (await api.call("GET", f"/conversations/{cid}")).json["conversation_id"] == cid
        assert (await api.call("GET", "/conversations/unknown")).status == 404


async def test_delete_behind_flag(sim, api):
    """DELETE is 404 unless enable_delete, then 204 and the conversation is gone."""
    cid = await api.conversation()
    assert (await api.call("DELETE", f"/conversations/{cid}")).status == 404
    sim.enable_delete = True
    reply = await api.call("DELETE", f"/conversations/{cid}")
    assert (reply.status, reply.raw) == (204, b"")
    assert (await api.call("GET", f"/conversations/{cid}")).status == 404


async def test_message_validation(api):
    """message required (str, ≤ 12,288 chars), stream must be bool, unknown file_id is 400."""
    cid = await api.conversation()
    path = f"/conversations/{cid}/messages"
    cases = [
        {},
        {"message": 5},
        {"message": "x" * 12_289},
        {"message": "x", "stream": "yes"},
        {"message": "x", "file_id": "nope"},
    ]
    for body in cases:
        reply = await api.call("POST", path, json=body)
        assert reply.status == 400, body
        assert reply.json["error_code"] == "invalid_request"
    assert (await api.call("POST", path, data=b"not json")).status == 400
    ok = await api.call(
        "POST", path, json={"message": "x" * 12_288, "file_id": "", "stream": False}
    )
    assert ok.status == 200
    assert (
        await api.call("POST", "/conversations/nope/messages", json={"message": "x"})
    ).status == 404


async def test_stream_defaults_to_true(api):
    """Omitting stream gives an SSE response."""
    cid = await api.conversation()
    result = await api.stream("POST", f"/conversations/{cid}/messages", json={"message": "x"})
    assert result.event_types[-1] == "processing.finished"


async def test_busy_conflict(sim, api):
    """A second message while a turn runs is 409 conversation_busy."""
    sim.next_turn(Turn(Wait(0.2)))
    cid = await api.conversation()
    path = f"/conversations/{cid}/messages"
    assert (await api.call("POST", path, json={"message": "a", "stream": False})).status == 200
    reply = await api.call("POST", path, json={"message": "b", "stream": False})
    assert (reply.status, reply.json["error_code"]) == (409, "conversation_busy")
    await sim.wait_idle(cid)
    assert (await api.call("POST", path, json={"message": "c", "stream": False})).status == 200


async def test_message_history_paging(sim, api):
    """History is newest first with message fields; cursor pages through it."""
    sim.default_turn = Turn(Say("re: {message}"))
    cid = await api.conversation()
    for text in ["one", "two"]:
        await api.send(cid, text)
    first = (await api.call("GET", f"/conversations/{cid}/messages?limit=3")).result
    assert [m["content"] for m in first["messages"]] == ["re: two", "two", "re: one"]
    assert [m["source"] for m in first["messages"]] == ["genie", "user", "genie"]
    assert set(first["messages"][0]) == {
        "message_id",
        "source",
        "content",
        "genie_run_id",
        "created_at",
    }
    rest = await api.call("GET", f"/conversations/{cid}/messages?limit=3&cursor={first['cursor']}")
    assert [m["content"] for m in rest.result["messages"]] == ["one"]
    assert "cursor" not in rest.result


async def test_upload_and_attach(sim, api):
    """A single 'file' part is accepted (recorded with size and sha256) and attachable."""
    cid = await api.conversation()
    content = b"hello, file"
    form = aiohttp.FormData()
    form.add_field("file", content, filename="notes.txt", content_type="text/plain")
    reply = await api.call("POST", f"/conversations/{cid}/upload", data=form)
    assert reply.status == 200
    file_id = reply.result["file_id"]
    (record,) = sim.uploads
    assert (record.file_id, record.filename, record.content_type) == (
        file_id,
        "notes.txt",
        "text/plain",
    )
    assert record.size == len(content)
    assert record.sha256 == hashlib.sha256(content).hexdigest()
    body = {"message": "see file", "file_id": file_id, "stream": False}
    assert (await api.call("POST", f"/conversations/{cid}/messages", json=body)).status == 200
    history = (await api.call("GET", f"/conversations/{cid}/messages")).result["messages"]
    assert history[-1]["file_id"] == file_id
    other = await api.conversation()
    body["stream"] = False
    assert (await api.call("POST", f"/conversations/{other}/messages", json=body)).status == 400


async def test_upload_rejections(api):
    """Non-multipart, a wrong field name and several parts are 400 invalid_request."""
    cid = await api.conversation()
    path = f"/conversations/{cid}/upload"
    assert (await api.call("POST", path, json={"file": "x"})).status == 400
    wrong = aiohttp.FormData()
    wrong.add_field("document", b"x", filename="a.txt")
    assert (await api.call("POST", path, data=wrong)).status == 400
    several = aiohttp.FormData()
    several.add_field("file", b"x", filename="a.txt")
    several.add_field("file", b"y", filename="b.txt")
    reply = await api.call("POST", path, data=several)
    assert (reply.status, reply.json["error_code"]) == (400, "invalid_request")


async def test_upload_too_large(sim, api):
    """Over 20 * 1024 * 1024 bytes is 413 file_too_large; exactly the limit is accepted."""
    cid = await api.conversation()
    path = f"/conversations/{cid}/upload"
    limit = 20 * 1024 * 1024
    big = aiohttp.FormData()
    big.add_field("file", io.BytesIO(b"\0" * (limit + 1)), filename="big.bin")
    reply = await api.call("POST", path, data=big)
    assert (reply.status, reply.json["error_code"]) == (413, "file_too_large")
    exact = aiohttp.FormData()
    exact.add_field("file", io.BytesIO(b"\0" * limit), filename="ok.bin")
    assert (await api.call("POST", path, data=exact)).status == 200
    assert [u.size for u in sim.uploads] == [limit]


async def test_feedback(api):
    """Feedback on a run answers 202 with no content; an unknown run is 404."""
    cid = await api.conversation()
    reply = await api.call(
        "POST", f"/conversations/{cid}/messages", json={"message": "x", "stream": False}
    )
    run_id = reply.result["genie_run_id"]
    path = f"/conversations/{cid}/genie-runs/{run_id}/feedback"
    done = await api.call("POST", path, json={"reaction": "positive"})
    assert (done.status, done.raw) == (202, b"")
    missing = f"/conversations/{cid}/genie-runs/nope/feedback"
    assert (await api.call("POST", missing, json={})).status == 404


async def test_wait_idle_times_out(sim, api):
    """wait_idle raises TimeoutError while a turn keeps running."""
    sim.next_turn(Turn(Wait(None)))
    cid = await api.conversation()
    await api.call("POST", f"/conversations/{cid}/messages", json={"message": "x", "stream": False})
    with pytest.raises(TimeoutError):
        await sim.wait_idle(cid, timeout=0.05)
    await asyncio.sleep(0)
