"""Streaming turns end to end against the simulator: exact sequences, pauses, recovery."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from aiohttp import web

from genie_async import (
    AgentMessage,
    Approve,
    AuthenticationError,
    AuthPauseTimeoutError,
    AuthRequest,
    Decline,
    EventsExpiredError,
    EventStream,
    EventTooLargeError,
    GenieClient,
    HookError,
    InvalidRequestError,
    MalformedEvent,
    Message,
    MessageNotConfirmedError,
    ProcessingFinished,
    ProcessingStarted,
    Reject,
    RetryPolicy,
    RuntimeConnectionAuthRequired,
    SkillCompleted,
    SkillConfirmationRequired,
    SkillFailed,
    SkillRunning,
    StreamClosedError,
    StreamCursor,
    StreamStalledError,
    Timeouts,
    UnknownEvent,
)
from genie_async.events import GenieEvent
from genie_async.testing import (
    Confirm,
    ConnectAuth,
    Emit,
    GenieSimulator,
    Say,
    Skill,
    StreamFault,
    Turn,
    VirtualClock,
    Wait,
)

from .conftest import assert_no_open_connections, make_client

EIGHT_PARTS = tuple(Say(f"part {i}") for i in range(8))
TEN_EVENTS = Turn(*EIGHT_PARTS)  # started + 8 messages + finished


async def collect(stream: EventStream) -> list[GenieEvent]:
    return [event async for event in stream]


async def consume_into(stream: EventStream, seen: list[GenieEvent]) -> None:
    """Read the whole stream inside async with, keeping what arrived before any error."""
    async with stream:
        async for event in stream:
            seen.append(event)


def kinds(events: list[GenieEvent]) -> list[type]:
    return [type(e) for e in events]


def texts(events: list[GenieEvent]) -> list[str]:
    return [e.text for e in events if isinstance(e, AgentMessage)]


def persisted_ids(sim: GenieSimulator, conversation_id: str, run_id: str | None) -> list[str]:
    assert run_id is not None
    return [e.event_id for e in sim.conversation(conversation_id).runs_by_id[run_id].events]


def delivered_ids(events: list[GenieEvent]) -> list[str | None]:
    return [e.event_id for e in events]


# --- plain turns -------------------------------------------------------------------------------


async def test_plain_turn_is_started_message_finished(client: GenieClient) -> None:
    """A plain reply arrives as exactly processing.started, agent.message, processing.finished."""
    conversation = await client.create_conversation()
    async with conversation.send("hello") as stream:
        events = await collect(stream)
    assert kinds(events) == [ProcessingStarted, AgentMessage, ProcessingFinished]
    assert texts(events) == ["You said: hello"]
    assert stream.outcome == "completed"
    assert stream.final_text == "You said: hello"
    assert stream.request_id


async def test_keepalives_never_reach_the_consumer(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """Pings during a slow turn are filtered; the consumer sees only meaningful events."""
    sim.default_turn = Turn(Say("thinking"), Wait(0.2), Say("done"))
    conversation = await client.create_conversation()
    async with conversation.send("slow") as stream:
        events = await collect(stream)
    assert kinds(events) == [ProcessingStarted, AgentMessage, AgentMessage, ProcessingFinished]
    assert all(e.type != "system.ping" for e in events)


async def test_skill_events_and_the_final_answer(sim: GenieSimulator, client: GenieClient) -> None:
    """Skills stream as running/completed/failed; the last agent.message is the final text."""
    sim.default_turn = Turn(
        Say("Checking"),
        Skill("Get PTO balance"),
        Skill("Notify manager", outcome="failed", error="Mailbox full"),
        Say("You have **12** days."),
    )
    conversation = await client.create_conversation()
    reply = await conversation.ask("How much PTO do I have?")
    assert kinds(reply.events) == [
        ProcessingStarted,
        AgentMessage,
        SkillRunning,
        SkillCompleted,
        SkillRunning,
        SkillFailed,
        AgentMessage,
        ProcessingFinished,
    ]
    failed = reply.events[5]
    assert isinstance(failed, SkillFailed)
    assert failed.error == "Mailbox full"
    assert reply.text == "You have **12** days."
    assert reply.genie_run_id == reply.events[0].genie_run_id


async def test_unknown_and_malformed_events_are_delivered_not_lost(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """An unknown type is an UnknownEvent; bad JSON and bad field types are MalformedEvents."""
    sim.default_turn = Turn(
        Emit("custom.progress", {"percent": 40}),
        Emit("agent.message", raw_data='{"type":"agent.message","message":42}'),
        Emit("agent.message", raw_data="{oops"),
        Say("still fine"),
    )
    conversation = await client.create_conversation()
    events = (await conversation.ask("x")).events
    assert kinds(events) == [
        ProcessingStarted,
        UnknownEvent,
        MalformedEvent,
        MalformedEvent,
        AgentMessage,
        ProcessingFinished,
    ]
    unknown = events[1]
    assert isinstance(unknown, UnknownEvent)
    assert unknown.type == "custom.progress"
    assert unknown.payload["percent"] == 40
    assert isinstance(events[3], MalformedEvent)
    assert events[3].raw == "{oops"


async def test_a_600_kb_message_streams_whole(sim: GenieSimulator, client: GenieClient) -> None:
    """A message larger than aiohttp's line limits (512 KiB) arrives intact."""
    big = "x" * 600_000
    sim.default_turn = Turn(Say(big))
    conversation = await client.create_conversation()
    assert (await conversation.ask("big")).text == big


async def test_event_over_the_size_cap_raises_after_what_came_before(
    sim: GenieSimulator, retry: RetryPolicy
) -> None:
    """An event over max_event_bytes raises EventTooLargeError; earlier events were delivered."""
    sim.default_turn = Turn(Say("small"), Say("y" * 5000))
    async with make_client(sim, retry, max_event_bytes=2048) as client:
        conversation = await client.create_conversation()
        seen: list[GenieEvent] = []
        with pytest.raises(EventTooLargeError) as info:
            await consume_into(conversation.send("x"), seen)
        assert kinds(seen) == [ProcessingStarted, AgentMessage]
        assert info.value.cursor is not None
        await assert_no_open_connections(client, sim)


@pytest.mark.parametrize("line_ending", ["\r", "\r\n"])
async def test_cr_and_crlf_line_endings(line_ending: str, retry: RetryPolicy) -> None:
    """Streams framed with CR or CRLF decode exactly like LF ones."""
    async with GenieSimulator(line_ending=line_ending, ping_interval=0.02) as sim:  # type: ignore[arg-type]
        sim.default_turn = TEN_EVENTS
        async with make_client(sim, retry) as client:
            conversation = await client.create_conversation()
            async with conversation.send("x") as stream:
                events = await collect(stream)
            assert texts(events) == [f"part {i}" for i in range(8)]
            assert delivered_ids(events) == persisted_ids(
                sim, conversation.conversation_id, stream.genie_run_id
            )


async def test_fragmented_writes(retry: RetryPolicy) -> None:
    """Events written in random small pieces are reassembled exactly."""
    async with GenieSimulator(fragment=True, ping_interval=0.02, seed=7) as sim:
        sim.default_turn = TEN_EVENTS
        async with make_client(sim, retry) as client:
            conversation = await client.create_conversation()
            events = (await conversation.ask("x")).events
            assert texts(events) == [f"part {i}" for i in range(8)]


# --- skill confirmation (procedure A) ------------------------------------------------------


async def test_confirmation_approved_by_hook_on_the_same_stream(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """The consumer sees the confirmation; the hook approves; the same stream continues."""
    sim.default_turn = Turn(Confirm("Submit Time Off Request", parameters={"days": 3}), Say("Done"))
    seen: list[SkillConfirmationRequired] = []

    async def approve(event: SkillConfirmationRequired) -> Approve:
        seen.append(event)
        return Approve()

    conversation = await client.create_conversation()
    async with conversation.send("book", on_skill_confirmation=approve) as stream:
        events = await collect(stream)
    assert kinds(events) == [
        ProcessingStarted,
        SkillConfirmationRequired,
        SkillRunning,
        SkillCompleted,
        AgentMessage,
        ProcessingFinished,
    ]
    assert seen == [events[1]]
    assert seen[0].skill_parameters == {"days": 3}
    [approval] = sim.approvals()
    assert (approval.call_id, approval.resolution) == (seen[0].call_id, "approved")
    assert stream.decisions[seen[0].call_id].source == "hook"
    assert sim.stream_connections(stream.genie_run_id or "") == 1
    assert sim.requests("reconnect") == []


async def test_confirmation_rejected_by_hook_with_reason(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """A Reject(reason) is posted; the genie's next message quotes it; no skill runs."""
    sim.default_turn = Turn(Confirm("Submit"))

    async def reject(event: SkillConfirmationRequired) -> Reject:
        return Reject("Wrong dates")

    conversation = await client.create_conversation()
    reply = await conversation.ask("book", on_skill_confirmation=reject)
    assert kinds(reply.events) == [
        ProcessingStarted,
        SkillConfirmationRequired,
        AgentMessage,
        ProcessingFinished,
    ]
    assert reply.text == "Rejected by user: Wrong dates"
    assert [(a.resolution, a.reason) for a in sim.approvals()] == [("rejected", "Wrong dates")]


async def test_hook_timeout_rejects_fail_closed(sim: GenieSimulator, retry: RetryPolicy) -> None:
    """A hook that does not answer within Timeouts.decision is rejected and the turn goes on."""
    sim.default_turn = Turn(Confirm("Submit"))

    async def never(event: SkillConfirmationRequired) -> Approve:
        await asyncio.sleep(60)
        return Approve()

    timeouts = Timeouts(decision=0.2, stall=10, read=10)
    async with make_client(sim, retry, timeouts=timeouts) as client:
        conversation = await client.create_conversation()
        async with conversation.send("book", on_skill_confirmation=never) as stream:
            events = await collect(stream)
        [approval] = sim.approvals()
        assert approval.resolution == "rejected"
        assert "No decision within" in (approval.reason or "")
        record = next(iter(stream.decisions.values()))
        assert record.source == "timeout"
        assert kinds(events)[-1] is ProcessingFinished
        await assert_no_open_connections(client, sim)


async def test_hook_exception_rejects_then_raises(sim: GenieSimulator, client: GenieClient) -> None:
    """A hook that raises: the skill is rejected (fail closed), then HookError from the cause."""
    sim.default_turn = Turn(Confirm("Submit"))

    async def broken(event: SkillConfirmationRequired) -> Approve:
        raise KeyError("ui gone")

    conversation = await client.create_conversation()
    with pytest.raises(HookError) as info:
        await conversation.ask("book", on_skill_confirmation=broken)
    assert isinstance(info.value.__cause__, KeyError)
    assert info.value.cursor is not None
    assert [a.resolution for a in sim.approvals()] == ["rejected"]


async def test_hook_returning_something_else_is_rejected(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """A hook must return Approve() or Reject(); anything else rejects and raises HookError."""
    sim.default_turn = Turn(Confirm("Submit"))

    async def sloppy(event: SkillConfirmationRequired) -> Approve:
        return True  # type: ignore[return-value]

    conversation = await client.create_conversation()
    with pytest.raises(HookError, match="expected Approve"):
        await conversation.ask("book", on_skill_confirmation=sloppy)
    assert [a.resolution for a in sim.approvals()] == ["rejected"]


async def test_without_a_hook_the_consumer_approves_through_the_stream(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """With no hook, the consumer gets the event and resolves it with stream.approve()."""
    sim.default_turn = Turn(Confirm("Submit"), Say("Submitted"))
    conversation = await client.create_conversation()
    events: list[GenieEvent] = []
    async with conversation.send("book") as stream:
        async for event in stream:
            events.append(event)
            if isinstance(event, SkillConfirmationRequired):
                assert stream.pending_confirmations == [event]
                await stream.approve()
                await stream.approve(event.call_id)  # a second click: no-op, never a 2nd POST
    assert texts(events) == ["Submitted"]
    assert [a.resolution for a in sim.approvals()] == ["approved"]
    assert stream.pending_confirmations == []
    assert next(iter(stream.decisions.values())).source == "consumer"


async def test_consumer_can_decide_from_another_task(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """A UI posting back from another task resolves the pause while the stream is being read."""
    sim.default_turn = Turn(Confirm("Submit"))
    conversation = await client.create_conversation()
    async with conversation.send("book") as stream:
        reader = asyncio.ensure_future(collect(stream))
        await sim.wait_for_event(conversation.conversation_id, "skill.confirmation_required")
        for _ in range(200):
            if stream.pending_confirmations:
                break
            await asyncio.sleep(0.01)
        [pending] = stream.pending_confirmations
        await stream.reject("Not now", call_id=pending.call_id)
        events = await asyncio.wait_for(reader, 5)
    assert texts(events) == ["Rejected by user: Not now"]


async def test_undecided_confirmation_is_rejected_after_the_timeout(
    sim: GenieSimulator, retry: RetryPolicy
) -> None:
    """With no hook and no decision within Timeouts.decision, the skill is rejected."""
    sim.default_turn = Turn(Confirm("Submit"))
    async with make_client(sim, retry, timeouts=Timeouts(decision=0.2, stall=10)) as client:
        conversation = await client.create_conversation()
        async with conversation.send("book") as stream:
            events = await collect(stream)
        assert kinds(events)[-1] is ProcessingFinished
        [approval] = sim.approvals()
        assert approval.resolution == "rejected"
        assert next(iter(stream.decisions.values())).source == "timeout"


@pytest.mark.parametrize("after_events", [2, 3])
async def test_a_decision_is_never_submitted_twice_across_a_reconnect(
    after_events: int, sim: GenieSimulator, client: GenieClient
) -> None:
    """A drop around a confirmation: the replay does not ask again or post again."""
    sim.default_turn = Turn(
        Confirm("Submit"), Say("Done"), faults=[StreamFault("abort", after_events=after_events)]
    )
    asked = 0

    async def approve(event: SkillConfirmationRequired) -> Approve:
        nonlocal asked
        asked += 1
        return Approve()

    conversation = await client.create_conversation()
    async with conversation.send("book", on_skill_confirmation=approve) as stream:
        events = await collect(stream)
    assert asked == 1
    assert len(sim.approvals()) == 1
    assert delivered_ids(events) == persisted_ids(
        sim, conversation.conversation_id, stream.genie_run_id
    )


# --- runtime-connection auth (procedure C) ----------------------------------------------------


async def test_auth_pause_resumes_with_the_reply_from_history(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """The hook gets the link; after authorization the resumed reply comes from history."""
    sim.default_turn = Turn(ConnectAuth("Salesforce", then=(Say("Your opportunities: 3"),)))
    requests: list[AuthRequest] = []

    async def show_link(request: AuthRequest) -> None:
        requests.append(request)
        asyncio.get_running_loop().call_later(0.1, sim.authorize)

    conversation = await client.create_conversation()
    async with conversation.send("my deals", on_auth_required=show_link) as stream:
        events = await collect(stream)
    assert kinds(events) == [ProcessingStarted, RuntimeConnectionAuthRequired, AgentMessage]
    pause = events[1]
    assert isinstance(pause, RuntimeConnectionAuthRequired)
    assert pause.auth_link is not None
    assert pause.auth_link.connector_name == "Salesforce"
    [request] = requests
    assert request.link == pause.auth_link
    assert request.attempt_id == pause.runtime_connection_attempt_id
    resumed = events[2]
    assert isinstance(resumed, AgentMessage)
    assert resumed.text == "Your opportunities: 3"
    assert resumed.genie_run_id != stream.genie_run_id  # a new run, found in the history
    history = sim.conversation(conversation.conversation_id).messages
    assert resumed.message_id == history[-1].message_id
    assert stream.outcome == "completed"
    assert sim.requests("reconnect") == []  # genie-runs does not surface the resumed run


async def test_auth_pause_without_the_link_endpoint(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """When the link endpoint 404s, the resumed reply is still found in the history."""
    sim.link_endpoint_available = False
    sim.default_turn = Turn(ConnectAuth("Jira", then=(Say("Ticket created"),)))

    async def authorize_soon(request: AuthRequest) -> None:
        asyncio.get_running_loop().call_later(0.1, sim.authorize)

    conversation = await client.create_conversation()
    reply = await conversation.ask("file it", on_auth_required=authorize_soon)
    assert reply.text == "Ticket created"
    assert reply.outcome == "completed"


async def test_auth_pause_without_a_hook(sim: GenieSimulator, client: GenieClient) -> None:
    """With no hook the consumer sees the link on the event and the turn still completes."""
    sim.default_turn = Turn(ConnectAuth("Salesforce", then=(Say("ok"),)))
    conversation = await client.create_conversation()
    async with conversation.send("x") as stream:
        async for event in stream:
            if isinstance(event, RuntimeConnectionAuthRequired):
                assert event.auth_link is not None
                asyncio.get_running_loop().call_later(0.1, sim.authorize)
    assert stream.final_text == "ok"


async def test_auth_link_is_fetched_when_the_event_has_only_the_attempt_id(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """An event carrying only runtime_connection_attempt_id is delivered with its link."""
    sim.default_turn = Turn(ConnectAuth("Jira", fields="attempt_id", then=(Say("done"),)))
    links: list[str] = []

    async def show(request: AuthRequest) -> None:
        assert request.link is not None
        links.append(request.link.url)
        asyncio.get_running_loop().call_later(0.05, sim.authorize)

    conversation = await client.create_conversation()
    reply = await conversation.ask("x", on_auth_required=show)
    pause = reply.events[1]
    assert isinstance(pause, RuntimeConnectionAuthRequired)
    assert pause.auth_link is not None
    assert pause.auth_link.connector_name == "Jira"
    assert links == [pause.auth_link.url]
    assert reply.text == "done"


async def test_auth_event_with_only_a_link_completes_from_history(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """Without an attempt id the link cannot be polled: the history alone shows the reply."""
    sim.default_turn = Turn(ConnectAuth("Jira", fields="auth_link", then=(Say("done"),)))

    async def show(request: AuthRequest) -> None:
        assert request.attempt_id is None
        asyncio.get_running_loop().call_later(0.1, sim.authorize)

    conversation = await client.create_conversation()
    reply = await conversation.ask("x", on_auth_required=show)
    assert reply.text == "done"
    assert sim.requests("link") == []


async def test_an_expired_link_is_renewed_and_shown_again(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """After the ~5-minute link expiry the next poll brings a new link, handed to the hook."""
    sim.default_turn = Turn(ConnectAuth("Salesforce", then=(Say("ok"),)))
    links: list[str] = []

    async def show(request: AuthRequest) -> None:
        assert request.link is not None
        links.append(request.link.url)
        if len(links) == 1:
            sim.clock.advance(301)  # the user wandered off: the link expires
        else:
            asyncio.get_running_loop().call_later(0.05, sim.authorize)

    conversation = await client.create_conversation()
    reply = await conversation.ask("x", on_auth_required=show)
    assert len(links) == 2
    assert links[0] != links[1]
    assert reply.text == "ok"


async def test_a_connection_rejected_by_the_user_ends_the_turn(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """When the link endpoint reports rejected, the turn ends with outcome connection_rejected."""
    sim.default_turn = Turn(ConnectAuth("Salesforce"))

    async def user_declines_elsewhere(request: AuthRequest) -> None:
        asyncio.get_running_loop().call_later(0.05, sim.reject_connection)

    conversation = await client.create_conversation()
    reply = await conversation.ask("x", on_auth_required=user_declines_elsewhere)
    assert reply.outcome == "connection_rejected"
    assert kinds(reply.events) == [ProcessingStarted, RuntimeConnectionAuthRequired]


async def test_auth_pause_declined_by_the_hook(sim: GenieSimulator, client: GenieClient) -> None:
    """Decline() rejects the connection and ends the turn with outcome connection_declined."""
    sim.default_turn = Turn(ConnectAuth("Salesforce"))

    async def decline(request: AuthRequest) -> Decline:
        return Decline("no thanks")

    conversation = await client.create_conversation()
    reply = await conversation.ask("x", on_auth_required=decline)
    assert reply.outcome == "connection_declined"
    assert sim.requests("reject")[0].json == {"reason": "no thanks"}
    await sim.wait_idle(conversation.conversation_id)


async def test_auth_pause_times_out(sim: GenieSimulator, retry: RetryPolicy) -> None:
    """If the user never authorizes, AuthPauseTimeoutError carries a cursor to resume later."""
    sim.default_turn = Turn(ConnectAuth("Salesforce"))
    async with make_client(sim, retry, timeouts=Timeouts(auth=0.3, stall=10)) as client:
        conversation = await client.create_conversation()
        with pytest.raises(AuthPauseTimeoutError) as info:
            await conversation.ask("x")
        cursor = info.value.cursor
        assert isinstance(cursor, StreamCursor)
        assert cursor.auth_attempt_id == sim.pending_auth_attempts()[0]
        sim.authorize()
        async with conversation.resume(cursor) as stream:
            events = await collect(stream)
        assert texts(events) == ["Connected to Salesforce."]
        await assert_no_open_connections(client, sim)


# --- drops and recovery (procedures B and E) -----------------------------------------------


@pytest.mark.parametrize("kind", ["abort", "abort_mid_event", "eof"])
@pytest.mark.parametrize("after_events", range(10))
async def test_a_drop_at_any_point_loses_and_repeats_nothing(
    kind: str, after_events: int, sim: GenieSimulator, client: GenieClient
) -> None:
    """Dropped at each event index of a 10-event turn (and mid-frame): each event once, in order."""
    fault = StreamFault(kind, after_events=after_events)  # type: ignore[arg-type]
    sim.default_turn = Turn(*EIGHT_PARTS, faults=[fault])
    conversation = await client.create_conversation()
    async with conversation.send("go") as stream:
        events = await collect(stream)
    assert delivered_ids(events) == persisted_ids(
        sim, conversation.conversation_id, stream.genie_run_id
    )
    assert texts(events) == [f"part {i}" for i in range(8)]
    assert stream.outcome == "completed"
    assert len(sim.requests("send")) == 1  # recovery never re-posts the message


async def test_interrupt_reconnects_with_last_event_id(
    sim: GenieSimulator, client: GenieClient, clock: VirtualClock
) -> None:
    """system.stream_interrupted: wait retry_after_ms, reconnect to the run with Last-Event-ID."""
    sim.default_turn = Turn(
        *EIGHT_PARTS, faults=[StreamFault("interrupt", after_events=3, retry_after_ms=250)]
    )
    conversation = await client.create_conversation()
    async with conversation.send("go") as stream:
        events = await collect(stream)
    ids = persisted_ids(sim, conversation.conversation_id, stream.genie_run_id)
    assert delivered_ids(events) == ids
    [reconnect] = sim.requests("reconnect")
    headers = {name.lower(): value for name, value in reconnect.headers.items()}
    assert headers["last-event-id"] == ids[2]
    assert 0.25 in clock.sleeps  # the server's retry_after_ms, not the backoff


async def test_reconnect_refused_falls_back_to_persisted_events(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """When genie-runs refuses, the rest of the turn is replayed from /conversations/events."""
    sim.default_turn = Turn(*EIGHT_PARTS, faults=[StreamFault("abort", after_events=3)])
    sim.fail("reconnect", 404)
    conversation = await client.create_conversation()
    async with conversation.send("go") as stream:
        events = await collect(stream)
    assert delivered_ids(events) == persisted_ids(
        sim, conversation.conversation_id, stream.genie_run_id
    )
    assert len(sim.requests("reconnect")) == 1
    assert sim.requests("events")


async def test_failing_reconnects_fall_back_after_the_attempt_limit(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """Three failed reconnects (503) then the persisted events: still nothing lost."""
    sim.default_turn = Turn(*EIGHT_PARTS, faults=[StreamFault("abort", after_events=4)])
    sim.fail("reconnect", 503, times=3)
    conversation = await client.create_conversation()
    async with conversation.send("go") as stream:
        events = await collect(stream)
    assert delivered_ids(events) == persisted_ids(
        sim, conversation.conversation_id, stream.genie_run_id
    )
    assert [r.status for r in sim.requests("reconnect")] == [503, 503, 503]


async def test_history_pages_failing_midway_are_retried(
    sim: GenieSimulator, retry: RetryPolicy
) -> None:
    """A page of persisted events failing mid-way is retried; the replay is still exact."""
    # More than one page of 100 (the client's page size) remains after the drop.
    parts = tuple(Say(f"part {i}") for i in range(250))
    async with GenieSimulator(ping_interval=0.02) as small_pages:
        small_pages.default_turn = Turn(*parts, faults=[StreamFault("abort", after_events=1)])
        small_pages.fail("reconnect", 404)
        small_pages.fail("events", 503, after_pages=1)
        async with make_client(small_pages, retry) as client:
            conversation = await client.create_conversation()
            async with conversation.send("go") as stream:
                events = await collect(stream)
            assert delivered_ids(events) == persisted_ids(
                small_pages, conversation.conversation_id, stream.genie_run_id
            )
            assert 503 in [r.status for r in small_pages.requests("events")]
            await assert_no_open_connections(client, small_pages)


async def test_fatal_status_on_reconnect_stops_with_a_typed_error(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """A 401 while reconnecting is not retried: it raises the typed authentication error."""
    sim.default_turn = Turn(*EIGHT_PARTS, faults=[StreamFault("abort", after_events=2)])
    sim.fail("reconnect", 401)
    conversation = await client.create_conversation()
    with pytest.raises(AuthenticationError):
        await conversation.ask("go")


async def test_502_after_accept_does_not_duplicate_the_message(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """The gateway fails after the message was accepted: the client attaches, never re-posts."""
    sim.default_turn = TEN_EVENTS
    sim.fail("send", 502, after_accept=True)
    conversation = await client.create_conversation()
    async with conversation.send("only once") as stream:
        events = await collect(stream)
    users = [
        m for m in sim.conversation(conversation.conversation_id).messages if m.source == "user"
    ]
    assert [m.content for m in users] == ["only once"]
    assert len(sim.requests("send")) == 1
    assert delivered_ids(events) == persisted_ids(
        sim, conversation.conversation_id, stream.genie_run_id
    )


async def test_502_before_accept_is_retried_once_accepted(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """A 502 that did not accept the message: the history shows nothing, so it is re-posted."""
    sim.fail("send", 502)
    conversation = await client.create_conversation()
    reply = await conversation.ask("hello")
    assert reply.text == "You said: hello"
    assert [r.status for r in sim.requests("send")] == [502, 200]
    users = [
        m for m in sim.conversation(conversation.conversation_id).messages if m.source == "user"
    ]
    assert len(users) == 1


async def test_send_without_stream_after_accept_502_returns_the_run(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """send(stream=False) uses the same accept check: one message, the real run id."""
    sim.fail("send", 502, after_accept=True)
    conversation = await client.create_conversation()
    handle = await conversation.send("once", stream=False)
    sim_conversation = sim.conversation(conversation.conversation_id)
    assert [m.content for m in sim_conversation.messages if m.source == "user"] == ["once"]
    assert handle.genie_run_id in sim_conversation.runs_by_id


@pytest.fixture
async def unconfirmed_server(aiohttp_server) -> str:  # type: ignore[no-untyped-def]
    """A server that opens a stream, drops it before any event, and has no such message."""

    async def send(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        assert request.transport is not None
        request.transport.abort()
        return response

    async def messages(request: web.Request) -> web.Response:
        return web.json_response({"result": {"messages": []}})

    async def conversation(request: web.Request) -> web.Response:
        return web.json_response({"result": {"state": "idle"}})

    app = web.Application()
    base = "/api/v1/genies/gin-x/chat/conversations/c1"
    app.router.add_post(f"{base}/messages", send)
    app.router.add_get(f"{base}/messages", messages)
    app.router.add_get(base, conversation)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def test_drop_before_any_event_without_the_message_is_not_resent(
    unconfirmed_server: str, retry: RetryPolicy
) -> None:
    """Dropped before the first event and absent from history: MessageNotConfirmedError."""
    async with GenieClient(
        "gin-x", base_url=unconfirmed_server, api_key="f" * 64, user_id="u", retry=retry
    ) as client:
        with pytest.raises(MessageNotConfirmedError, match="not in the conversation's history"):
            await client.conversation("c1").ask("hello?")


# --- stalls ----------------------------------------------------------------------------------


async def test_pings_only_stalls_with_a_typed_error(
    sim: GenieSimulator, retry: RetryPolicy
) -> None:
    """Keep-alives do not count as progress: a silent turn raises StreamStalledError."""
    sim.default_turn = Turn(Say("started"), Wait(None))
    async with make_client(sim, retry, timeouts=Timeouts(stall=0.3, read=10)) as client:
        conversation = await client.create_conversation()
        seen: list[GenieEvent] = []
        with pytest.raises(StreamStalledError) as info:
            await consume_into(conversation.send("x"), seen)
        assert kinds(seen) == [ProcessingStarted, AgentMessage]
        hint = info.value.hint or ""
        assert "not started" in hint
        assert "confirmation" in hint
        assert "authorize" in hint
        assert info.value.cursor.last_event_id == seen[-1].event_id
        await assert_no_open_connections(client, sim)


async def test_a_stopped_genie_stalls(sim: GenieSimulator, retry: RetryPolicy) -> None:
    """A stopped genie keeps the stream open with pings only: StreamStalledError."""
    sim.genie_started = False
    async with make_client(sim, retry, timeouts=Timeouts(stall=0.3, read=10)) as client:
        conversation = await client.create_conversation()
        with pytest.raises(StreamStalledError):
            await conversation.ask("anyone there?")
        await assert_no_open_connections(client, sim)


async def test_waiting_for_a_decision_does_not_count_as_a_stall(
    sim: GenieSimulator, retry: RetryPolicy
) -> None:
    """The stall clock stops while the hook deliberates."""
    sim.default_turn = Turn(Confirm("Submit"))

    async def slow(event: SkillConfirmationRequired) -> Approve:
        await asyncio.sleep(0.5)
        return Approve()

    async with make_client(sim, retry, timeouts=Timeouts(stall=0.3, decision=5)) as client:
        conversation = await client.create_conversation()
        reply = await conversation.ask("x", on_skill_confirmation=slow)
        assert kinds(reply.events)[-1] is ProcessingFinished


# --- cursors and resuming --------------------------------------------------------------------


async def test_resume_from_a_cursor_in_a_fresh_client(
    sim: GenieSimulator, client: GenieClient, retry: RetryPolicy
) -> None:
    """A second process resumes from a serialised cursor: together they see every event once."""
    sim.default_turn = Turn(*(Say(f"part {i}", delay=0.01) for i in range(8)))
    conversation = await client.create_conversation()
    first: list[GenieEvent] = []
    async with conversation.send("go") as stream:
        async for event in stream:
            first.append(event)
            if len(first) == 4:
                break
        saved = stream.cursor.to_json()
    async with make_client(sim, retry) as other:
        resumed = other.conversation(conversation.conversation_id).resume(
            StreamCursor.from_json(saved)
        )
        async with resumed:
            rest = await collect(resumed)
        await assert_no_open_connections(other, sim)
    run = StreamCursor.from_json(saved).genie_run_id
    assert delivered_ids(first + rest) == persisted_ids(sim, conversation.conversation_id, run)


async def test_a_cursor_past_retention_raises_events_expired(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """Recovering from events older than 24 h raises EventsExpiredError with the advice."""
    conversation = await client.create_conversation()
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=25)).isoformat()
    cursor = StreamCursor(
        conversation_id=conversation.conversation_id,
        genie_run_id="gone-run",
        last_event_id="gone-event",
        last_created_at=old,
    )
    with pytest.raises(EventsExpiredError) as info:
        await consume_into(conversation.resume(cursor), [])
    assert "24" in str(info.value)
    assert "messages" in (info.value.hint or "")


async def test_resume_checks_the_conversation(client: GenieClient) -> None:
    """A cursor from another conversation is refused before anything is sent."""
    cursor = StreamCursor(conversation_id="other")
    with pytest.raises(InvalidRequestError):
        client.conversation("mine").resume(cursor)


# --- closing on every exit path ----------------------------------------------------------------


async def test_break_releases_the_connection(sim: GenieSimulator, client: GenieClient) -> None:
    """Breaking out of the loop inside async with leaves nothing open."""
    sim.default_turn = Turn(Say("a"), Wait(0.5), Say("b"))
    conversation = await client.create_conversation()
    async with conversation.send("x") as stream:
        async for _event in stream:
            break
    assert stream.closed
    await assert_no_open_connections(client, sim)


async def test_cancellation_releases_the_connection(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """Cancelling the consumer mid-turn propagates CancelledError and leaves nothing open."""
    sim.default_turn = Turn(Say("a"), Wait(None))
    conversation = await client.create_conversation()
    started = asyncio.Event()

    async def consume() -> None:
        async with conversation.send("x") as stream:
            async for _event in stream:
                started.set()

    task = asyncio.ensure_future(consume())
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_no_open_connections(client, sim)


async def test_cancellation_inside_a_hook_releases_everything(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """Cancelled while the confirmation hook awaits: no decision posted, nothing left open."""
    sim.default_turn = Turn(Confirm("Submit"))
    in_hook = asyncio.Event()

    async def waits(event: SkillConfirmationRequired) -> Approve:
        in_hook.set()
        await asyncio.sleep(60)
        return Approve()

    conversation = await client.create_conversation()
    task = asyncio.ensure_future(conversation.ask("x", on_skill_confirmation=waits))
    await asyncio.wait_for(in_hook.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sim.approvals() == []
    await assert_no_open_connections(client, sim)


async def test_close_from_another_task_ends_the_read(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """aclose() while another task awaits the next event: that task gets StreamClosedError."""
    sim.default_turn = Turn(Say("a"), Wait(None))
    conversation = await client.create_conversation()
    stream = conversation.send("x")
    first = await stream.__anext__()
    assert isinstance(first, ProcessingStarted)
    reader = asyncio.ensure_future(collect(stream))
    await asyncio.sleep(0.1)
    await stream.aclose()
    await stream.aclose()  # idempotent
    with pytest.raises(StreamClosedError):
        await asyncio.wait_for(reader, 5)
    await assert_no_open_connections(client, sim)


async def test_closing_the_client_closes_its_streams(
    sim: GenieSimulator, retry: RetryPolicy
) -> None:
    """client.close() during an active stream closes it; the reader is told why."""
    sim.default_turn = Turn(Say("a"), Wait(None))
    client = make_client(sim, retry)
    conversation = await client.create_conversation()
    stream = conversation.send("x")
    await stream.__anext__()
    reader = asyncio.ensure_future(collect(stream))
    await asyncio.sleep(0.05)
    await client.close()
    with pytest.raises(StreamClosedError):
        await asyncio.wait_for(reader, 5)
    assert stream.closed
    for _ in range(100):
        if sim.open_streams == 0:
            break
        await asyncio.sleep(0.01)
    assert sim.open_streams == 0


async def test_an_ended_stream_cannot_be_iterated_again(client: GenieClient) -> None:
    """Iterating a finished stream again is a StreamClosedError, not a silent empty loop."""
    conversation = await client.create_conversation()
    async with conversation.send("x") as stream:
        await collect(stream)
    with pytest.raises(StreamClosedError):
        await collect(stream)


async def test_a_plain_async_for_without_async_with_releases_on_completion(
    sim: GenieSimulator, client: GenieClient
) -> None:
    """Fully consuming a stream without async with still releases its connection."""
    conversation = await client.create_conversation()
    events = [e async for e in conversation.send("x")]
    assert kinds(events)[-1] is ProcessingFinished
    await assert_no_open_connections(client, sim)


# --- convenience -----------------------------------------------------------------------------


async def test_timeline_merges_events_and_history(sim: GenieSimulator, client: GenieClient) -> None:
    """After a reload the timeline has user messages, persisted events and resumed replies."""
    conversation = await client.create_conversation()
    await conversation.ask("first")
    sim.default_turn = Turn(ConnectAuth("Salesforce", then=(Say("resumed answer"),)))

    async def authorize(request: AuthRequest) -> None:
        asyncio.get_running_loop().call_later(0.05, sim.authorize)

    await conversation.ask("second", on_auth_required=authorize)
    timeline = await conversation.timeline()
    described = [
        (type(item).__name__, getattr(item, "content", getattr(item, "text", "")))
        for item in timeline
        if isinstance(item, (Message, AgentMessage, RuntimeConnectionAuthRequired))
    ]
    assert described == [
        ("Message", "first"),
        ("AgentMessage", "You said: first"),
        ("Message", "second"),
        ("RuntimeConnectionAuthRequired", ""),
        ("Message", "resumed answer"),
    ]
