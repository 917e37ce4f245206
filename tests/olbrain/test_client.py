"""OlbrainClient's lifecycle and conversational calls against the simulator on loopback."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest

from genie_async import (
    AgentMessage,
    ClientClosedError,
    ConfigurationError,
    InsecureURLError,
    InvalidRequestError,
    ProcessingFinished,
    RetryPolicy,
    StreamClosedError,
    UsageError,
)
from genie_async.olbrain import OlbrainClient, TokenUsage, TurnFinished
from genie_async.testing import OlbrainSimulator

from .conftest import make_client

# --- construction and lifecycle ------------------------------------------------------------


def test_the_default_base_url_is_olbrains() -> None:
    """Without base_url the client targets https://webhook.olbrain.com."""
    assert OlbrainClient(api_key="ak_" + "0" * 40).base_url == "https://webhook.olbrain.com"


@pytest.mark.parametrize("key", ["sk_live_abc", "AK_abc", "org_live_x", "wrkaus-abc"])
def test_a_key_without_the_ak_prefix_is_refused_without_echoing_it(key: str) -> None:
    """Only ak_ access keys are accepted, and the refused value never appears in the error."""
    with pytest.raises(ConfigurationError, match="ak_") as info:
        OlbrainClient(api_key=key)
    assert key not in str(info.value)


@pytest.mark.parametrize("key", ["", " ak_x", "ak_x\n", "ak_x y\r\n"])
def test_a_malformed_key_is_refused(key: str) -> None:
    """Whitespace or control characters (a split header) are refused before any request."""
    with pytest.raises(ConfigurationError):
        OlbrainClient(api_key=key)


def test_plain_http_is_refused_except_to_loopback() -> None:
    """The loopback rule of GenieClient: http:// only to loopback unless opted in."""
    with pytest.raises(InsecureURLError):
        OlbrainClient(api_key="ak_x", base_url="http://webhook.example.com")
    assert OlbrainClient(api_key="ak_x", base_url="http://127.0.0.1:9").base_url
    opted = OlbrainClient(
        api_key="ak_x", base_url="http://webhook.example.com", allow_insecure_http=True
    )
    assert opted.base_url == "http://webhook.example.com"


def test_repr_never_shows_the_key() -> None:
    """The key stays out of the client's, the agent's and the credential's reprs."""
    key = "ak_" + "f" * 40
    client = OlbrainClient(api_key=key)
    agent = client.agent("agt_1")
    for text in (repr(client), repr(agent), repr(client._credentials), str(vars(client))):
        assert key not in text


async def test_owned_session_is_closed_and_a_closed_client_refuses_calls(
    sim: OlbrainSimulator, retry: RetryPolicy
) -> None:
    """The session created lazily is closed by close(); later calls raise ClientClosedError."""
    agent_id = sim.add_conversational_agent()
    client = make_client(sim, retry)
    async with client:
        await client.agent(agent_id).sessions()
        session = client._core._session
        assert session is not None
    assert session.closed
    assert client.closed
    with pytest.raises(ClientClosedError):
        await client.agent(agent_id).sessions()


async def test_a_borrowed_session_is_never_closed(
    sim: OlbrainSimulator, retry: RetryPolicy
) -> None:
    """A caller's aiohttp session is used as is and left open."""
    agent_id = sim.add_conversational_agent()
    async with aiohttp.ClientSession() as session:
        async with make_client(sim, retry, session=session) as client:
            await client.agent(agent_id).conversation().ask("hi")
        assert not session.closed
        assert len(sim.requests_to("trigger")) == 1


async def test_the_key_is_sent_as_bearer_and_never_logged(
    sim: OlbrainSimulator, client: OlbrainClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Authorization: Bearer ak_… reaches the server; DEBUG logs never contain the key."""
    agent_id = sim.add_conversational_agent()
    sim.fail_next("POST", "/api/agents/webhook/*", 503)
    with caplog.at_level(logging.DEBUG, logger="genie_async"):
        await client.agent(agent_id).conversation().ask("hi")
    assert sim.api_key not in caplog.text
    assert "503" in caplog.text  # the retry was logged, without the key
    assert all(r.headers.get("Authorization") == "<redacted>" for r in sim.requests)


# --- conversational turns ------------------------------------------------------------------


async def test_send_yields_the_reply_then_a_finished_event_with_usage(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """One synchronous reply becomes AgentMessage + TurnFinished (a ProcessingFinished)."""
    agent_id = sim.add_conversational_agent(reply=lambda text, meta: f"Got {text} from {meta}")
    conversation = client.agent(agent_id).conversation()
    assert conversation.session_id is None
    async with conversation.send("order 4421", metadata={"source": "shop"}) as stream:
        events = [event async for event in stream]
    message, finished = events
    assert isinstance(message, AgentMessage)
    assert message.text == "Got order 4421 from {'source': 'shop'}"
    assert isinstance(finished, TurnFinished)
    assert isinstance(finished, ProcessingFinished)
    assert finished.type == "processing.finished"
    assert isinstance(finished.token_usage, TokenUsage)
    assert finished.token_usage.total_tokens > 0
    session_id = conversation.session_id
    assert session_id is not None
    assert session_id in sim.sessions
    assert finished.session_id == message.conversation_id == session_id
    assert finished.message_id == message.message_id == sim.messages(session_id)[-1].message_id
    assert stream.final_text == message.text
    assert stream.token_usage == finished.token_usage
    body = sim.requests_to("trigger")[0].json
    assert body["message"] == "order 4421"
    assert body["response_mode"] == "sync"
    assert body["metadata"] == {"source": "shop"}
    assert "session_id" not in body
    assert body["Idempotency-Key"] == stream.idempotency_key


async def test_the_session_id_is_carried_to_the_next_turn(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """The second turn sends the session id the first one returned; one session holds both."""
    agent_id = sim.add_conversational_agent()
    conversation = client.agent(agent_id).conversation(user_id="user-42")
    first = await conversation.ask("one")
    second = await conversation.ask("two")
    assert first.session_id == second.session_id == conversation.session_id
    assert len(sim.sessions) == 1
    bodies = [r.json for r in sim.requests_to("trigger")]
    assert "session_id" not in bodies[0]
    assert bodies[1]["session_id"] == first.session_id
    assert bodies[0]["user_id"] == bodies[1]["user_id"] == "user-42"
    assert bodies[0]["Idempotency-Key"] != bodies[1]["Idempotency-Key"]
    assert second.text == "Echo: two"
    assert second.request_id is not None


async def test_an_existing_session_is_continued(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """conversation(session_id=...) continues that session."""
    agent_id = sim.add_conversational_agent()
    first = await client.agent(agent_id).conversation().ask("one")
    again = client.agent(agent_id).conversation(session_id=first.session_id)
    await again.ask("two")
    assert [m.content for m in sim.messages(first.session_id)] == [
        "one",
        "Echo: one",
        "two",
        "Echo: two",
    ]


async def test_a_caller_supplied_turn_key_is_sent(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """idempotency_key= replaces the generated key in the body."""
    agent_id = sim.add_conversational_agent()
    await client.agent(agent_id).conversation().ask("hi", idempotency_key="turn-7")
    assert sim.requests_to("trigger")[0].idempotency_key == "turn-7"


async def test_an_empty_message_is_refused_before_sending(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """An empty or blank message raises InvalidRequestError; nothing is sent."""
    agent_id = sim.add_conversational_agent()
    for text in ("", "   "):
        with pytest.raises(InvalidRequestError):
            client.agent(agent_id).conversation().send(text)
    assert sim.requests == []


async def test_a_stream_is_consumed_once(sim: OlbrainSimulator, client: OlbrainClient) -> None:
    """Iterating an ended stream, or entering it twice, is a usage error."""
    agent_id = sim.add_conversational_agent()
    stream = client.agent(agent_id).conversation().send("hi")
    async with stream:
        assert len(await stream.until_done()) == 2
        with pytest.raises(UsageError):
            await stream.__aenter__()
    with pytest.raises(StreamClosedError):
        stream.__aiter__()


async def test_closing_a_stream_before_iterating_sends_nothing(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """The request is made when iteration starts: a stream closed first sends nothing."""
    agent_id = sim.add_conversational_agent()
    async with client.agent(agent_id).conversation().send("hi") as stream:
        pass
    assert stream.closed
    assert sim.requests == []


# --- sessions and messages -----------------------------------------------------------------


async def test_sessions_list_and_get(sim: OlbrainSimulator, client: OlbrainClient) -> None:
    """E9 lists sessions (most recent first, filtered) and E10 reads one."""
    agent_id = sim.add_conversational_agent()
    agent = client.agent(agent_id)
    first = await agent.conversation(user_id="u1").ask("one")
    second = await agent.conversation(user_id="u2").ask("two")
    sessions = await agent.sessions()
    assert [s.session_id for s in sessions] == [second.session_id, first.session_id]
    assert sessions[0].user_id == "u2"
    assert sessions[0].message_count == 2
    assert sim.requests_to("list_sessions")[0].query == {"limit": "20"}
    assert [s.session_id for s in await agent.sessions(limit=1, status="active")] == [
        second.session_id
    ]
    assert await agent.sessions(status="closed") == []
    record = await agent.session(first.session_id)
    assert record.session_id == first.session_id
    assert record.agent_id == agent_id
    assert record.token_usage is not None
    assert record.token_usage.total_tokens > 0
    assert record.request_id == sim.requests[-1].request_id
    info = await agent.conversation(session_id=first.session_id).info()
    assert info.session_id == first.session_id


async def test_sessions_limit_is_checked_locally(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """limit outside 1..100 is refused before sending."""
    with pytest.raises(InvalidRequestError):
        await client.agent("agt_x").sessions(limit=101)
    assert sim.requests == []


async def test_messages_page_by_offset_oldest_first(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """messages() walks limit/offset pages oldest first; message() reads one (E12)."""
    agent_id = sim.add_conversational_agent()
    conversation = client.agent(agent_id).conversation()
    for n in range(3):
        await conversation.ask(f"m{n}")
    contents = [m.content async for m in conversation.messages(page_size=2)]
    assert contents == ["m0", "Echo: m0", "m1", "Echo: m1", "m2", "Echo: m2"]
    offsets = [r.query["offset"] for r in sim.requests_to("list_messages")]
    assert offsets == ["0", "2", "4", "6"]
    page = await conversation.message_page(limit=2, offset=2)
    assert [m.role for m in page] == ["user", "assistant"]
    one = await conversation.message(page[1].message_id)
    assert one.content == "Echo: m1"
    assert one.role == "assistant"
    assert one.token_usage is not None


async def test_messages_are_deduplicated_when_pages_overlap(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """A page shifted by a hidden message overlaps the previous one: each id is yielded once."""
    agent_id = sim.add_conversational_agent()
    conversation = client.agent(agent_id).conversation()
    await conversation.ask("a")
    await conversation.ask("b")
    session_id = conversation.session_id
    assert session_id is not None
    expected = [m.message_id for m in sim.messages(session_id)]
    seen = []
    async for message in conversation.messages(page_size=2):
        seen.append(message.message_id)
        if len(seen) == 2:
            # Test setup: shift the history by one between two pages (what the API's
            # soft-discard does), so the next page repeats the last message of this one.
            stored = sim.sessions[session_id].messages
            stored.insert(0, stored[0].__class__(**{**vars(stored[0]), "message_id": "msg_x"}))
    assert seen == expected
    offsets = [r.query["offset"] for r in sim.requests_to("list_messages")]
    assert offsets[:2] == ["0", "2"]


async def test_history_needs_a_session(client: OlbrainClient) -> None:
    """Reading the history of a conversation that has no session yet is a usage error."""
    with pytest.raises(UsageError):
        await client.agent("agt_1").conversation().info()


async def test_a_close_from_another_task_abandons_the_request_in_flight(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """aclose() from another task ends the reader's wait at once: nothing is handed over."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def held(text: str, metadata: dict[str, Any]) -> str:
        arrived.set()
        await release.wait()  # the agent answers only when the test lets it
        return "late"

    agent_id = sim.add_conversational_agent(reply=held)
    stream = client.agent(agent_id).conversation().send("slow")
    received: list[object] = []

    async def read() -> None:
        async with stream:
            async for event in stream:
                received.append(event)

    reader = asyncio.create_task(read())
    try:
        await arrived.wait()  # the request is in flight
        await stream.aclose()
        with pytest.raises(StreamClosedError):
            await asyncio.wait_for(reader, timeout=10)  # without the close: never
    finally:
        release.set()
    assert received == []
    assert stream._agen.ag_frame is None  # the turn's generator has finished


async def test_cancelling_the_reader_mid_turn_propagates_and_frees_the_conversation(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """The reader's cancellation is raised, not swallowed; the next turn can be sent."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def held(text: str, metadata: dict[str, Any]) -> str:
        if text == "slow":
            arrived.set()
            await release.wait()
        return f"Echo: {text}"

    agent_id = sim.add_conversational_agent(reply=held)
    conversation = client.agent(agent_id).conversation()
    reader = asyncio.create_task(conversation.ask("slow"))
    try:
        await arrived.wait()
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
    finally:
        release.set()
    reply = await asyncio.wait_for(conversation.ask("next"), timeout=10)  # the lock was freed
    assert reply.text == "Echo: next"
