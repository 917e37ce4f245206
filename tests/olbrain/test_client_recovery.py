"""§7.2: a turn that failed after the server may have taken it is looked up before re-sending."""

from __future__ import annotations

from genie_async import RetryPolicy
from genie_async.olbrain import OlbrainClient
from genie_async.testing import OlbrainSimulator

from .conftest import make_client


async def test_a_502_after_accept_is_recovered_from_the_history(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """The turn was persisted but answered 502: the reply is read back, nothing re-sent."""
    agent_id = sim.add_conversational_agent()
    conversation = client.agent(agent_id).conversation()
    await conversation.ask("first")
    sim.fail_next("POST", "/api/agents/webhook/*", 502, after_accept=True)
    reply = await conversation.ask("second")
    assert reply.recovered
    assert reply.text == "Echo: second"
    assert reply.message_id == sim.messages(reply.session_id)[-1].message_id
    assert [r.status for r in sim.requests_to("trigger")] == [200, 502]
    assert len(sim.messages(reply.session_id)) == 4


async def test_a_lost_first_turn_finds_its_new_session(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """Without a session id yet, the new session is located with E9 since=<send time>."""
    agent_id = sim.add_conversational_agent()
    sim.add_conversational_agent()  # another agent's sessions are never candidates
    sim.fail_next("POST", "/api/agents/webhook/*", 502, after_accept=True)
    conversation = client.agent(agent_id).conversation(user_id="u1")
    reply = await conversation.ask("hello")
    assert reply.recovered
    assert conversation.session_id == reply.session_id
    assert list(sim.sessions) == [reply.session_id]
    assert len(sim.requests_to("trigger")) == 1
    assert "since" in sim.requests_to("list_sessions")[0].query


async def test_a_turn_that_never_arrived_is_sent_again_with_the_same_key(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """A 503 before the server took the turn: the history shows nothing, so it is re-sent."""
    agent_id = sim.add_conversational_agent()
    conversation = client.agent(agent_id).conversation()
    await conversation.ask("first")
    sim.fail_next("POST", "/api/agents/webhook/*", 503)
    reply = await conversation.ask("first")  # the same text as an earlier, delivered turn
    assert not reply.recovered
    triggers = sim.requests_to("trigger")
    assert [r.status for r in triggers] == [200, 503, 200]
    assert sim.requests_to("list_messages")  # the history was checked before re-sending
    assert len(sim.messages(reply.session_id)) == 4


async def test_a_dropped_connection_is_checked_then_resent(
    sim: OlbrainSimulator, client: OlbrainClient
) -> None:
    """The connection drops with no answer: ambiguous, so the history is read, then re-sent."""
    agent_id = sim.add_conversational_agent()
    conversation = client.agent(agent_id).conversation()
    await conversation.ask("one")
    sim.fail_next("POST", "/api/agents/webhook/*", 0)
    reply = await conversation.ask("two")
    assert reply.text == "Echo: two"
    assert len(sim.requests_to("list_messages")) == 1
    assert len(sim.messages(reply.session_id)) == 4


async def test_a_slow_turn_answered_upstream_timeout_waits_for_its_reply(
    sim: OlbrainSimulator,
) -> None:
    """502 upstream_timeout while the turn still runs: the history is polled until the reply
    lands, and the message is not sent twice."""
    agent_id = sim.add_conversational_agent()
    policy = RetryPolicy(wait_initial=0.01, wait_max=0.05, wait_jitter=0.0)
    async with make_client(sim, policy) as client:
        conversation = client.agent(agent_id).conversation()
        await conversation.ask("warm up")
        sim.reply_delay = 0.3
        sim.upstream_timeout = 0.05
        reply = await conversation.ask("slow one")
    assert reply.recovered
    assert reply.text == "Echo: slow one"
    assert len(sim.requests_to("trigger")) == 2
    assert len(sim.messages(reply.session_id)) == 4
